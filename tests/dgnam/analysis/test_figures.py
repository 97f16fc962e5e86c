"""dgnam.analysis.figures: the colour maps and the similarity heat map, by their anchor colours."""

import numpy as np
import torch

from dgnam.analysis.figures import heat, overlay, signed_gradient_image, similarity_heatmap


def test_heat_scales_each_map_by_its_own_peak():
    maps = torch.tensor([[[0.0, 1.0, 2.0]], [[0.0, 50.0, 100.0]]])  # (2, 1, 3): the second is 50x the first
    rgb = heat(maps).float()
    assert rgb.shape == (2, 3, 1, 3)
    torch.testing.assert_close(rgb[0], rgb[1])
    torch.testing.assert_close(rgb[0, :, 0, 0], torch.tensor([0.0, 0.0, 0.5]))  # zero: dark blue
    torch.testing.assert_close(rgb[0, :, 0, 2], torch.tensor([0.5, 0.0, 0.0]))  # the peak: dark red
    torch.testing.assert_close(rgb[0, :, 0, 1], torch.tensor([0.5, 1.0, 0.5]))  # half-way: between cyan and yellow
    images = torch.ones(2, 3, 1, 3)
    torch.testing.assert_close(overlay(images, maps, alpha=0.25).float(), 0.75 * images + 0.25 * rgb)


def test_signed_gradient_image_is_grey_at_zero_and_spans_three_std():
    grads = torch.tensor([-1.0, 1.0]).repeat(24).view(1, 3, 4, 4)  # mean 0, std ~1
    image = signed_gradient_image(grads)
    std = float(grads.std())
    torch.testing.assert_close(image, (0.5 + grads / (6 * std)).clamp(0, 1))
    torch.testing.assert_close(signed_gradient_image(torch.zeros(1, 3, 2, 2)), torch.full((1, 3, 2, 2), 0.5))


def test_similarity_heatmap_colours_each_cell_by_its_value():
    matrix = torch.tensor([[-1.0, 0.0, 1.0]])
    cell = 44
    image = similarity_heatmap(matrix, ["row"], ["a", "b", "c"], "model A", "model B", cell=cell)
    label_w, top = 70, 34
    assert image.size == (label_w + 3 * cell + 8, top + cell + 30)
    pixels = np.asarray(image)
    corner = [tuple(pixels[top + 2, label_w + j * cell + 2]) for j in range(3)]  # away from the printed value
    assert corner == [(33, 102, 171), (247, 247, 247), (178, 23, 43)]  # blue, white, red anchors x 255
