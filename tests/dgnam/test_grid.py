"""dgnam.grid: images to bytes as PNG files store them, captioned grids, and the HTML of every ``_repr_html_``."""

import html
import importlib
import inspect
import pkgutil
from collections import OrderedDict

import numpy as np
import torch
from PIL import Image

import dgnam
from dgnam.grid import labelled_grid, save_png, to_uint8
from dgnam.nets.model import Model


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



def test_captions_from_checkpoints_with_newlines_and_escapes_are_drawn_as_text():
    # PIL refuses to measure a caption with a newline; class names come from checkpoints and may hold one.
    names = ["new\nline", "\x1b[2J\x1b]0;pwn\x07", "cr\rOVERWRITE", "x" * 5000]
    grid = labelled_grid(torch.rand(4, 3, 8, 8), names, ncol=4)
    assert grid.size == (4 * (96 + 4) + 4, 96 + 14 + 2 * 4)

# --- every _repr_html_ escapes the names it shows (they come from files and checkpoints) ---------------
# A handler that would run if inserted as markup, and the text it must show as instead. No "." in it: it is
# also a layer name (a module name cannot hold a dot).
HOSTILE = '<img src=x onerror="self[`pwned`]=1"><script>self[`pwned`]=2</script>'


def _hostile_reprs(tmp_path) -> dict[str, str]:
    """The HTML of every class with a ``_repr_html_``, for a model and a layer named ``HOSTILE``."""
    net = torch.nn.Sequential(OrderedDict([(HOSTILE, torch.nn.Conv2d(3, 4, 3)), ("pool", torch.nn.AdaptiveAvgPool2d(1)),
                                           ("flat", torch.nn.Flatten())]))
    model = Model(net, input_size=16, name=HOSTILE)
    Image.new("RGB", (16, 16), (200, 30, 30)).save(tmp_path / "red.png")
    return {
        "Result": dgnam.visualize(model, [0], layer=HOSTILE, param="pixel", steps=1)._repr_html_(),
        "Probe": dgnam.probe(model, HOSTILE, [0], data=tmp_path, param="pixel", steps=1, k=1)._repr_html_(),
    }


def _classes_with_repr_html() -> set[str]:
    found = set()
    for info in pkgutil.walk_packages(dgnam.__path__, "dgnam."):
        module = importlib.import_module(info.name)
        found |= {name for name, cls in inspect.getmembers(module, inspect.isclass)
                  if cls.__module__ == info.name and "_repr_html_" in vars(cls)}
    return found


def test_every_repr_html_is_covered_and_escapes_names(tmp_path):
    reprs = _hostile_reprs(tmp_path)
    assert set(reprs) == _classes_with_repr_html()  # a new _repr_html_ must join this test
    for name, text in reprs.items():
        assert HOSTILE not in text and html.escape(HOSTILE) in text, name


def test_every_repr_html_shows_hostile_names_as_text_in_a_browser(browser, tmp_path):
    for name, text in _hostile_reprs(tmp_path).items():
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
        page.set_content(f"<html><body>{text}</body></html>")
        assert page.evaluate("self.pwned") is None, name  # no injected handler or script ran
        assert page.locator("img").count() == 1 and page.locator("script").count() == 0, name
        assert HOSTILE in page.inner_text("body"), name  # the name is shown, as text
        assert errors == [], name
        page.close()
