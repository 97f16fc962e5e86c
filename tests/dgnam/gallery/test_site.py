"""The gallery site (dgnam/gallery) opened in a real headless Chromium from file://: no console errors,
one card per unit, every image decoded, sorting, filtering, pages, the detail view.

The ``browser`` fixture (tests/conftest.py) is Debian's Chromium driven through Playwright: no browser download.
"""

import json

import numpy as np
import pytest
from PIL import Image

import dgnam
from dgnam.gallery import write_site
from dgnam.nets.model import Model

from helpers import TinyNet, _image


def open_page(browser, site):
    """The site's index.html from file://, with every console error, page error and failed request recorded."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("requestfailed", lambda req: errors.append(f"failed: {req.url}"))
    page.goto((site / "index.html").as_uri())
    page.wait_for_load_state("load")
    return page, errors


def decoded(page, scope="body"):
    """(images under ``scope``, those decoded: naturalWidth > 0), once every image has finished loading."""
    images = f"Array.from(document.querySelectorAll('{scope} img'))"
    page.wait_for_function(f"{images}.every(i => i.complete)")
    return page.evaluate(f"[{images}.length, {images}.filter(i => i.naturalWidth > 0).length]")


def card_units(page):
    return page.eval_on_selector_all("#cards .card", "cards => cards.map(c => +c.dataset.unit)")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A probe of TinyNet's conv layer after its ReLU (8 channels, read as their spatial max) over 12 images."""
    root = tmp_path_factory.mktemp("gallery")
    data = root / "data"
    data.mkdir()
    for i in range(12):
        Image.fromarray((_image(i).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(data / f"{i:02d}.png")
    from helpers import tiny_generator

    p = dgnam.probe(Model(TinyNet(), input_size=32), "relu", data=data, generator=tiny_generator(), steps=5,
                    restarts=2, k=4)
    return p.save(root / "site")


def test_gallery_renders_every_card_and_image_and_sorts(browser, site):
    manifest = json.loads((site / "manifest.json").read_text())
    page, errors = open_page(browser, site)
    assert card_units(page) == list(range(8))
    assert decoded(page) == [16, 16]  # synthesised + top real image per card
    assert page.locator(".card .box").count() == 8  # each top image's peak is boxed

    page.select_option("#sort", "ratio-desc")
    by_ratio = card_units(page)
    # Units that never fire on the data have no ratio: last, whichever the direction.
    def expected(sign):
        return [u["unit"] for u in sorted(manifest["units"], key=lambda u: (u["ratio"] is None,
                                                                             sign * (u["ratio"] or 0), u["unit"]))]
    assert by_ratio == expected(-1) and by_ratio != list(range(8))
    page.select_option("#sort", "ratio-asc")
    assert card_units(page) == expected(1)

    page.fill("#filter", "3")
    assert card_units(page) == [3]
    page.fill("#filter", "2-5")
    assert sorted(card_units(page)) == [2, 3, 4, 5]

    page.click("#cards .card[data-unit='3']")
    page.wait_for_selector("#detail-view:not([hidden]) .row")
    assert page.locator("#detail-view figure").count() == 2 + 4
    assert decoded(page, "#detail-view") == [6, 6]
    assert page.locator("#detail-view .strip .tick").count() == len(manifest["percentile_levels"])
    page.go_back()
    page.wait_for_selector("#index-view:not([hidden])")
    assert errors == []


def test_large_layer_is_paginated(browser, tmp_path):
    """600 units: pages of 60 cards, so opening the index loads 120 images, not 1200."""
    tile = Image.new("RGB", (8, 8), (200, 40, 40))
    units = [{"unit": u, "label": f"fc:{u}", "ratio": (u * 37 % 600) / 600, "max": 1.0, "mean": 0.1,
              "percentiles": [0, 0.5, 1], "synthesized": [{"file": "images/s.png", "seed": 0, "restart": 0,
                                                           "activation": 1.0, "objective": 1.0, "relative": 1.0}],
              "baseline": [], "top": [{"file": "images/r.png", "source": "x/r.png", "activation": 1.0, "box": None}]}
             for u in range(600)]
    manifest = {"model": "m", "layer": "fc", "k": 1, "reading": "unit", "position": None, "map_size": None,
                "n_images": 1, "skipped_count": 0, "skipped": [], "percentile_levels": [0, 50, 100],
                "settings": {"param": "dgn", "baseline": None}, "units": units}
    write_site(tmp_path, manifest, {"images/s.png": tile, "images/r.png": tile})
    page, errors = open_page(browser, tmp_path)
    assert len(card_units(page)) == 60 and decoded(page) == [120, 120]
    assert page.inner_text("#page") == "page 1 of 10"
    page.click("#next")
    assert card_units(page) == list(range(60, 120))
    page.fill("#filter", "599")
    assert card_units(page) == [599] and page.inner_text("#page") == "page 1 of 1"
    assert errors == []
