"""dgnam/examples/probe.py: dataset examples beside synthesised images, inline display and the gallery files."""

import io
import json

import pytest
import torch
from PIL import Image

import dgnam
from dgnam.errors import DgnamError
from dgnam.nets.model import Model

from helpers import ColourNet, colour_folder


@pytest.fixture
def colours(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    return colour_folder(folder), folder


def test_probe_pairs_synthesis_with_the_same_units_top_images(colours, tiny_gen):
    truth, folder = colours
    p = dgnam.probe(Model(ColourNet(), input_size=32), "detect", [1, 3], data=folder, generator=tiny_gen,
                    restarts=2, steps=30, k=3)
    assert isinstance(p, dgnam.Probe) and p.units == [1, 3]
    assert p.synthesis.extra["unit"] == [1, 1, 3, 3]  # one batched synthesis, unit-major
    for row, u in enumerate(p.units):
        assert {truth[f.name][0] for f in p.examples.top_files(row)} == {u}
    # Synthesised images are read as the real ones (the channel's spatial max), so the ratio is comparable.
    ratios = p.ratios()
    assert all(r is not None and 0 <= r <= 1.0 + 1e-6 for r in ratios)
    best = [max(v for v, u in zip(p.synthesis_values.tolist(), p.synthesis.extra["unit"]) if u == unit)
            for unit in p.units]
    assert ratios == pytest.approx(best)  # the real max of a colour channel is exactly 1


def test_inline_display_and_show(colours, tiny_gen, monkeypatch):
    _, folder = colours
    p = dgnam.probe(Model(ColourNet(), input_size=32), "fc", data=folder, generator=tiny_gen, steps=3, k=2)
    png = p._repr_png_()
    with Image.open(io.BytesIO(png)) as im:
        width, height = im.size
    assert png.startswith(b"\x89PNG") and height > width  # 4 unit rows of 3 tiles (1 synthesised, 2 real)
    html = p._repr_html_()
    assert "<img src=\"data:image/png;base64," in html and "4 units" in html
    shown = []
    monkeypatch.setattr(Image.Image, "show", lambda self, *a, **k: shown.append(self.size))
    assert p.show().size == shown[0] == (width, height)


def test_save_writes_the_gallery_once(colours, tiny_gen, tmp_path):
    _, folder = colours
    p = dgnam.probe(Model(ColourNet(), input_size=32), "detect", data=folder, generator=tiny_gen, steps=3, k=3,
                    baseline="fourier")
    out = p.save(tmp_path / "site")
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["units"]) == 4 and manifest["reading"] == "max"
    named = [item["file"] for u in manifest["units"] for key in ("synthesized", "baseline", "top") for item in u[key]]
    assert len(named) == 4 * (1 + 1 + 3) and all((out / f).is_file() for f in named)
    # A real image shared by several units is written once; every top image carries its peak's box.
    assert len(list((out / "images" / "real").iterdir())) == len({f for f in named if "/real/" in f})
    assert all(len(t["box"]) == 4 for u in manifest["units"] for t in u["top"])
    data_js = (out / "data.js").read_text()
    assert data_js.startswith("window.DGNAM_PROBE = {") and json.loads(data_js[21:-2]) == manifest
    with pytest.raises(DgnamError, match="not empty"):
        p.save(out)


def test_no_synthesis_with_zero_steps(colours):
    _, folder = colours
    p = dgnam.probe(Model(ColourNet(), input_size=32), "fc", data=folder, steps=0, k=1)
    assert p.synthesis is None and p.ratios() == [None] * 4
    assert p._repr_png_().startswith(b"\x89PNG")


def test_synthesised_readings_equal_what_synthesis_reports_run_to_run(colours, tiny_gen):
    """On a BatchNorm + Dropout network as the loaders hand it over (network in eval mode, wrapper not), the
    probe reads each synthesised image with the running statistics and no dropout: the value synthesis
    computed for that image, the same in two runs."""
    _, folder = colours
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.BatchNorm2d(8),
                              torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, 10))
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
    model = Model(net.eval(), input_size=32)
    runs = [dgnam.probe(model, "output", [0, 3], data=folder, generator=tiny_gen, restarts=2, steps=5, k=2)
            for _ in range(2)]
    for p in runs:
        torch.testing.assert_close(p.synthesis_values, p.synthesis.values, rtol=0, atol=1e-5)
    torch.testing.assert_close(runs[0].synthesis_values, runs[1].synthesis_values, rtol=0, atol=0)
    assert not net.training


def test_a_seeded_probe_starts_each_unit_at_its_top_image_and_raises_it_where_that_image_peaks(image_root, gen32):
    from dgnam import Model, probe

    from helpers import TinyNet
    net = Model(TinyNet(seed=0), input_size=32)  # its relu1 is gen32's code: it reads the seeds' codes too
    p = probe(net, "conv", [0, 3, 5], data=image_root / "test", generator=gen32, code_encoder=net, k=2, restarts=2,
              steps=5, code_prior=0.5)
    assert p.settings["init"] == "data" and p.settings["steps"] == 5
    # Step 0 reads each seed itself at its own peak: exactly the dataset pass's value of that image.
    torch.testing.assert_close(p.synthesis.history[0], p.examples.values[:, :2].flatten(), atol=1e-4, rtol=0)
    assert p.synthesis.settings["param"] == "SeededCode"
    noise = probe(net, "conv", [0], data=image_root / "test", generator=gen32, k=2, steps=3)  # no encoder: noise
    assert noise.settings["init"] == "noise"
