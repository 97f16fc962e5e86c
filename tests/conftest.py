"""Fixtures shared by the test modules; plain helpers (tiny nets, CLI runners, training arguments) are in
helpers.py."""

import numpy as np
import pytest
import torch
from PIL import Image

from dgnam.nets.model import Model

from helpers import TinyNet, tiny_generator


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
