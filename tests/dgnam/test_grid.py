"""dgnam.grid: images to bytes as PNG files store them, and captioned grids."""

import numpy as np
import torch
from PIL import Image

from dgnam.grid import labelled_grid, save_png, to_uint8


def test_to_uint8_rounds_and_clamps_like_a_png():
    images = torch.tensor([0.0, 0.6 / 255, 0.4 / 255, 1.0, -0.2, 1.7, 128.4 / 255]).view(1, 1, 1, 7).expand(1, 3, 1, 7)
    out = to_uint8(images)
    assert out.shape == (1, 1, 7, 3) and out.dtype == np.uint8
    assert out[0, 0, :, 0].tolist() == [0, 1, 0, 255, 0, 255, 128]


def test_save_png_reads_back_as_the_same_bytes(tmp_path):
    image = torch.rand(3, 5, 7, generator=torch.Generator().manual_seed(0))
    path = save_png(image, tmp_path / "x.png")
    with Image.open(path) as im:
        assert im.size == (7, 5)
        assert np.array_equal(np.asarray(im), to_uint8(image[None])[0])
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_labelled_grid_layout_and_tiles():
    images = torch.zeros(5, 3, 32, 32)
    for i in range(5):
        images[i, i % 3] = 1.0  # tile i is pure red, green or blue
    grid = labelled_grid(images, [f"unit {i}" for i in range(5)], ncol=3)
    tile, pad, caption = 96, 4, 14  # 32 px upscaled x3 to at least 96, as the docstring says
    assert grid.size == (3 * (tile + pad) + pad, 2 * (tile + caption + pad) + pad)
    pixels = np.asarray(grid)
    for i in range(5):
        r, c = divmod(i, 3)
        x, y = pad + c * (tile + pad), pad + r * (tile + caption + pad)
        block = pixels[y:y + tile, x:x + tile]
        expected = np.zeros(3, dtype=np.uint8)
        expected[i % 3] = 255
        assert (block == expected).all(), i  # the whole tile, nearest-neighbour upscaled
    assert (pixels[:pad] == 255).all()  # white margin
    assert (pixels[pad + tile + 1:pad + tile + caption, pad:pad + tile] < 128).any()  # a caption under tile 0
