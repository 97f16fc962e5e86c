"""Fixtures shared by the test modules; plain helpers (tiny nets, CLI runners, training arguments) are in
helpers.py."""

import math
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from dgnam.nets.model import Model
from dgnam.prior.importers import deepsim_fc6_shapes

from helpers import CODE_LAYER, CONVS, USER_MODEL, USER_MODELS, TinyNet, _image, tiny_generator


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)  # small nets: threading overhead dominates and makes timings noisy


@pytest.fixture
def tiny_model():
    return Model(TinyNet(), input_size=32)


@pytest.fixture
def tiny_gen():
    return tiny_generator()


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    """A tiny ImageFolder tree (train/test x red/blue noise JPEGs) for training entry points."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 4)):
        for cls, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                img = np.clip(np.array(colour) + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{i:04d}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    """What a user hands the CLI: model factory files (``mynet.py:make``; ``nets.py:make_a``, ``:make_b``),
    a tiny generator ``gen.pt`` and an image ``x.png``."""
    root = tmp_path_factory.mktemp("user")
    (root / "mynet.py").write_text(USER_MODEL)
    (root / "nets.py").write_text(USER_MODELS)
    tiny_generator().save(root / "gen.pt")
    Image.fromarray((_image(3).permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(root / "x.png")
    return root


# --- PPGN's code prior: a tiny encoder and a 32-d generator that inverts its relu1 ------------------
@pytest.fixture
def encoder():
    return Model(TinyNet(seed=0), input_size=32)


@pytest.fixture
def gen32():
    gen = tiny_generator(code_dim=32)
    gen.encoder_layer = CODE_LAYER
    return gen


# --- the published DeePSiM fc6 generator --------------------------------------------------------------
@pytest.fixture(scope="module")
def port_state_dict():
    """Random tensors under the port's keys, scaled so the raw output lands mostly inside 0-255 BGR."""
    gen = torch.Generator().manual_seed(0)
    sd = {}
    for key, shape in deepsim_fc6_shapes().items():
        if key.endswith(".bias"):
            # FC biases are learned; the transposed convolutions' stayed at Caffe's 0.
            sd[key] = 0.1 * torch.randn(shape, generator=gen) if key.startswith("defc") else torch.zeros(shape)
            continue
        if len(shape) == 2:
            fan_in = shape[1]
        else:  # ConvTranspose2d (in, out, k, k): each output pixel sums in * (k / stride)^2 terms
            stride = dict(CONVS)[key.split(".")[0]]
            fan_in = shape[0] * (shape[2] // stride) ** 2
        sd[key] = torch.randn(shape, generator=gen) * math.sqrt(2 / fan_in)
    sd["deconv0.weight"] *= 40  # raw output of tens, like the original's mean-subtracted pixels
    return sd


# --- a real browser (the gallery site, every _repr_html_) ----------------------------------------------
@pytest.fixture(scope="session")
def browser():
    """Headless Chromium from Debian's package (``.ci/run`` installs it when absent), driven through Playwright
    with ``executable_path``: no browser download. Without it the tests fail, so CI cannot pass by skipping
    them; ``DGNAM_SKIP_BROWSER=1`` skips them explicitly."""
    if os.environ.get("DGNAM_SKIP_BROWSER") == "1":
        pytest.skip("DGNAM_SKIP_BROWSER=1: browser test skipped on request")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium (or set DGNAM_SKIP_BROWSER=1 to skip)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test]' (or set DGNAM_SKIP_BROWSER=1 to skip)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True)
        yield browser
        browser.close()
