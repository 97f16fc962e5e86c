"""dgnam/examples/topk.py: streaming top-k with known answers (a model whose unit i fires only on colour i)."""

import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import dgnam.images
from dgnam.errors import DgnamError
from dgnam.examples.topk import PERCENTILES, dataset_examples
from dgnam.images import list_images
from dgnam.nets.model import Model

from helpers import ColourNet, colour_folder


@pytest.fixture
def colours(tmp_path):
    return colour_folder(tmp_path), tmp_path


def test_unit_i_gets_exactly_the_images_of_colour_i_ranked_by_area(colours):
    truth, folder = colours
    ex = dataset_examples(Model(ColourNet(), input_size=32), "fc", folder, k=3, batch_size=5)
    assert ex.n_images == 16 and ex.skipped == []
    for row, u in enumerate(ex.units):
        got = [f.name for f in ex.top_files(row)]
        assert {truth[name][0] for name in got} == {u}
        assert [truth[name][1] for name in got] == [12, 9, 6]  # biggest patch first
        assert ex.values[row].tolist() == pytest.approx([s * s / 1024 for s in (12, 9, 6)])
    assert ex.locations is None and ex.reading == "unit"


def test_conv_channel_spatial_max_marks_the_patch(colours):
    truth, folder = colours
    ex = dataset_examples(Model(ColourNet(), input_size=32), "detect", folder, units=[2, 0], k=3, batch_size=4)
    assert ex.units == [2, 0] and ex.map_size == (32, 32)
    for row, u in enumerate(ex.units):
        assert ex.values[row].tolist() == [1.0, 1.0, 1.0]
        for file, (y, x) in zip(ex.top_files(row), ex.locations[row].tolist()):
            colour, side, (top, left) = truth[file.name]
            assert colour == u
            assert top <= y < top + side and left <= x < left + side
    # Read at one position instead: only images whose patch covers it fire there.
    at = dataset_examples(Model(ColourNet(), input_size=32), "detect", folder, k=3, reading="position",
                          position=(16, 16))
    assert at.locations is None and at.position == (16, 16)
    for row, u in enumerate(at.units):
        covering = sum(1 for c, s, (t, left) in truth.values() if c == u and t <= 16 < t + s and left <= 16 < left + s)
        assert int((at.values[row] == 1.0).sum()) == covering


def test_streaming_equals_one_batch_and_percentiles_are_exact_on_small_data(colours):
    truth, folder = colours
    model = Model(ColourNet(), input_size=32)
    one = dataset_examples(model, "fc", folder, k=4, batch_size=64)
    many = dataset_examples(model, "fc", folder, k=4, batch_size=3)
    assert torch.equal(one.values, many.values) and torch.equal(one.indices, many.indices)
    # Below the reservoir size, percentiles are numpy's over every image.
    files = list_images(folder)
    acts = np.array([[((truth[f.name][0] == u) * truth[f.name][1] ** 2) / 1024 for u in range(4)] for f in files])
    assert many.percentiles.numpy() == pytest.approx(np.percentile(acts, PERCENTILES, axis=0), abs=1e-6)
    assert many.mean.numpy() == pytest.approx(acts.mean(0), abs=1e-6)


def test_reservoir_bounds_memory_and_keeps_ends_exact(colours):
    _, folder = colours
    ex = dataset_examples(Model(ColourNet(), input_size=32), "fc", folder, k=2, batch_size=4, reservoir=5)
    assert ex.percentiles[-1].tolist() == ex.values[:, 0].tolist()  # max: exact
    assert ex.percentiles[0].tolist() == [0.0] * 4  # min: exact (grey images)


def test_corrupt_image_is_counted_and_skipped(colours):
    _, folder = colours
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "empty.jpg").write_bytes(b"")
    ex = dataset_examples(Model(ColourNet(), input_size=32), "fc", folder, k=3, batch_size=4)
    assert ex.n_images == 16
    assert sorted(f.name for f in ex.skipped) == ["broken.png", "empty.jpg"]
    assert all(i >= 0 for i in ex.indices.flatten().tolist())


def test_fewer_images_than_k_leave_empty_slots(tmp_path):
    colour_folder(tmp_path, per_colour=1, greys=0)
    ex = dataset_examples(Model(ColourNet(), input_size=32), "fc", tmp_path, k=6)
    assert (ex.indices[:, 4:] == -1).all() and len(ex.top_files(0)) == 4


@pytest.mark.parametrize("kwargs, message", [
    ({"k": 0}, "k must be >= 1"),
    ({"units": [4]}, "unit 4 is out of range"),
    ({"reading": "median"}, "reading must be one of"),
])
def test_bad_arguments(colours, kwargs, message):
    _, folder = colours
    with pytest.raises(DgnamError, match=message):
        dataset_examples(Model(ColourNet(), input_size=32), "detect", folder, **kwargs)


def test_the_dataset_pass_counts_fifos_and_files_pil_warns_about_as_skipped(tmp_path, monkeypatch, recwarn):
    """FIFOs and devices under the folder (or in a list of files: never opened) and an image PIL warns
    about are in ``skipped``; no warning reaches the user raw."""
    folder = tmp_path / "data"
    folder.mkdir()
    colour_folder(folder, 2)
    os.mkfifo(folder / "pipe.jpg")
    to_rgb = dgnam.images.to_rgb

    def warns_on_the_first(image):
        if image.filename.endswith(sorted(p.name for p in folder.rglob("*.png"))[0]):
            warnings.warn("Corrupt EXIF data", UserWarning, stacklevel=2)
        return to_rgb(image)

    monkeypatch.setattr(dgnam.images, "to_rgb", warns_on_the_first)
    ex = dataset_examples(Model(ColourNet(), input_size=32), "fc", folder, k=1)
    assert len(ex.skipped) == 2 and ex.n_images == len(list(folder.rglob("*.png"))) - 1
    assert "pipe.jpg" in {p.name for p in ex.skipped}
    listed = dataset_examples(Model(ColourNet(), input_size=32), "fc", [folder / "pipe.jpg", *folder.rglob("*.png")],
                              k=1)
    assert len(listed.skipped) == 2
    assert not [w for w in recwarn if "EXIF" in str(w.message)]


class _NaNOnBright(torch.nn.Module):
    """Unit 0: the image's mean; unit 1: the same, but NaN on images brighter than 0.5."""

    def forward(self, x):
        mean = x.mean((1, 2, 3))
        return torch.stack([mean, torch.where(mean > 0.5, float("nan"), mean)], 1)


def test_a_model_nan_on_the_data_is_one_line_naming_the_model_and_the_first_image(tmp_path):
    """NaN would sort above every number and fill the top-k and the statistics; the pass stops at the first
    batch with one, even one after finite batches (here the third), and names the cause and the image."""
    for name, grey in (("a", 20), ("b", 40), ("c", 60), ("d", 80), ("z", 230)):
        Image.fromarray(np.full((8, 8, 3), grey, np.uint8)).save(tmp_path / f"{name}.png")
    model = Model(_NaNOnBright(), input_size=8, name="bright")
    with pytest.raises(DgnamError) as info:
        dataset_examples(model, "output", tmp_path, batch_size=2)
    message = str(info.value)
    assert "the model's output (bright, layer 'output') is NaN/inf on finite images" in message
    assert message.endswith(f"(first on '{tmp_path / 'z.png'}')") and "\n" not in message
    with pytest.raises(DgnamError, match="is NaN/inf on finite images"):  # the probe's pass, through the API
        dgnam.probe(model, "output", data=tmp_path, steps=0, data_batch_size=2)
    assert dataset_examples(model, "output", tmp_path, units=[0], batch_size=2).n_images == 5  # unit 1 unread
