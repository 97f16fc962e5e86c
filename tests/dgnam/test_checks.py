"""dgnam.checks and the public API's error contract on bad input: a one-line DgnamError naming the fix, raised
before any compute (sizes are refused before anything of that size is allocated), the user's model unchanged."""

import numpy as np
import pytest
import torch
from PIL import Image

import dgnam
from dgnam import checks
from dgnam.engine.param import Fourier, GeneratorCode, Pixels
from dgnam.engine.transforms import GaussianBlur, Jitter
from dgnam.errors import DgnamError
from dgnam.examples import dataset_examples
from dgnam.nets.model import Model

from helpers import TinyNet, tiny_generator

HUGE = 10 ** 9  # the sizes of the sweep: each would fill the memory (or be killed) before any other check


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for i in range(3):
        Image.fromarray(np.full((32, 32, 3), 60 * i, np.uint8)).save(root / f"{i}.png")
    return root


def _model():
    return Model(TinyNet(), input_size=32)


# (call, a phrase of the message); every call would otherwise raise a raw exception, allocate far more than
# any machine holds, or silently do something else than asked.
CASES = {
    "probe units range(10**9)": (lambda d: dgnam.probe(_model(), "output", range(HUGE), data=d, param="pixel"),
                                 "number of units"),
    "probe k 10**12": (lambda d: dgnam.probe(_model(), "output", [0], data=d, k=10 ** 12, steps=0), "k (CLI: --k)"),
    "probe restarts": (lambda d: dgnam.probe(_model(), "output", [0], data=d, param="pixel", restarts=10 ** 12),
                       "restarts"),
    "visualize units range(10**9)": (lambda d: dgnam.visualize(_model(), range(HUGE), param="pixel"), "units"),
    "visualize steps": (lambda d: dgnam.visualize(_model(), [0], param="pixel", steps=10 ** 13), "steps"),
    "synthesize seeds": (lambda d: dgnam.synthesize(dgnam.class_logit(0), Pixels(32), model=_model(),
                                                    seeds=range(10 ** 12)), "seeds"),
    "dataset_examples units": (lambda d: dataset_examples(_model(), "output", d, range(HUGE)), "units"),
    "dataset_examples batch of huge images": (
        lambda d: dataset_examples(Model(TinyNet(), input_size=100_000), "output", d), "input size"),
    "Pixels(100000)": (lambda d: Pixels(100_000), "image_size"),
    "Fourier(0)": (lambda d: Fourier(0), "image_size must be >= 1"),
    "units as a string": (lambda d: dgnam.visualize(_model(), "0-9", param="pixel", steps=1), "list of whole numbers"),
    "unit 1.7": (lambda d: dgnam.visualize(_model(), [1.7], param="pixel", steps=1), "got 1.7"),
    "unit -1": (lambda d: dgnam.visualize(_model(), [-1], param="pixel", steps=1), "units must be whole numbers >= 0"),
    "seed -5": (lambda d: dgnam.visualize(_model(), [0], param="pixel", steps=1, seed=-5), "seed must be between"),
    "seed 2**64": (lambda d: dgnam.visualize(_model(), [0], param="pixel", steps=1, seed=2 ** 64),
                   "seed must be between"),
    "probe seed -5": (lambda d: dgnam.probe(_model(), "output", [0], data=d, param="pixel", steps=1, seed=-5),
                      "seed must be between"),
    "bound_k -1": (lambda d: GeneratorCode(tiny_generator(), bound_k=-1.0), "bound_k"),
    "Jitter(-2)": (lambda d: Jitter(-2), "Jitter pixels"),
    "GaussianBlur(-1)": (lambda d: GaussianBlur(-1.0), "GaussianBlur sigma"),
    "device tpu": (lambda d: dgnam.visualize(_model(), [0], param="pixel", steps=1, device="tpu"), "not supported"),
}
if not torch.cuda.is_available():
    CASES["device cuda without a GPU"] = (lambda d: dgnam.visualize(_model(), [0], param="pixel", steps=1,
                                                                    device="cuda"), "no CUDA GPU")


@pytest.mark.parametrize("name", list(CASES))
def test_bad_api_arguments_are_one_line_dgnam_errors(name, data):
    call, phrase = CASES[name]
    with pytest.raises(DgnamError) as err:
        call(data)
    message = str(err.value)
    assert phrase in message and "\n" not in message, message


def test_check_fits_names_the_size_and_what_to_lower(monkeypatch):
    monkeypatch.setattr(checks, "available_bytes", lambda device: 2 ** 30)
    checks.check_fits(2 ** 30, "x", "y")
    with pytest.raises(DgnamError, match=r"the top 9 images needs at least 1\.5 GiB, more than the 1\.0 GiB of "
                                         r"system memory available; lower --k"):
        checks.check_fits(3 * 2 ** 29, "the top 9 images", "--k")


def test_available_memory_is_positive_and_below_the_physical():
    import os
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < checks.available_bytes("cpu") <= physical


def test_indices_accept_integer_types_and_build_the_list():
    assert checks.indices([np.int64(3), torch.tensor(2), 0]) == [3, 2, 0]
    assert checks.indices(range(3)) == [0, 1, 2]
    assert checks.seed(2 ** 64 - 2, count=2) == 2 ** 64 - 2
