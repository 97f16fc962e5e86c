"""dgnam: synthesise the preferred inputs of neurons in any PyTorch model through a learned generator
prior (DGN-AM, Nguyen et al. 2016), with pixel and Fourier baselines through the same loop.

The public API below loads on first use (``dgnam.visualize``, ``from dgnam import probe``), not on ``import
dgnam``: the ``dgnam`` command's entry point (:mod:`dgnam.cli.entry`) lives in this package, and a Ctrl-C
during the seconds torch takes to import must reach code that can turn it into one line, not a traceback.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_HOMES = {
    "dgnam.engine.objectives": ("capped", "channel", "class_logit", "code_prior", "match", "total_variation", "unit"),
    "dgnam.engine.optim": ("Adam", "NormalizedAscent"),
    "dgnam.engine.param": ("Fourier", "GeneratorCode", "Pixels", "SeededCode"),
    "dgnam.engine.preferred": ("accentuate", "visualize"),
    "dgnam.engine.render": ("Result", "synthesize"),
    "dgnam.engine.transforms": ("GaussianBlur", "Jitter"),
    "dgnam.errors": ("DgnamError",),
    "dgnam.examples.probe": ("Probe", "probe"),
    "dgnam.nets.classifiers": ("load_classifier",),
    "dgnam.nets.layout": ("Layout",),
    "dgnam.nets.model": ("OUTPUT", "LayerCapture", "Model", "describe_layers"),
    "dgnam.nets.zoo": ("load_model",),
    "dgnam.prior.generator": ("UpconvGenerator", "cifar_arch", "fc6_arch", "load_generator"),
    "dgnam.prior.sampler": ("CodeSampler", "load_code_sampler"),
}

__all__ = sorted(name for names in _HOMES.values() for name in names)


def _load() -> None:
    """Import every module of the public API, as an eager ``__init__`` would: its names, and the subpackages
    they bring (``dgnam.examples``, ``dgnam.engine.render``, ...), become attributes of ``dgnam``."""
    for module, names in _HOMES.items():
        home = importlib.import_module(module)
        globals().update({name: getattr(home, name) for name in names})


def __getattr__(name: str) -> Any:
    if name in __all__ or name in {module.split(".")[1] for module in _HOMES}:
        _load()  # a public name, or a subpackage an eager import used to bring (``dgnam.engine.render``)
        return globals()[name]
    if not name.startswith("__"):  # introspection (``__wrapped__``) loads nothing
        # Any other submodule alone: ``from dgnam import checks`` runs while the API's own modules import.
        try:
            return importlib.import_module(f"dgnam.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"dgnam.{name}":
                raise
    raise AttributeError(f"module 'dgnam' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what type checkers and editors read: the same names, imported eagerly
    from dgnam.engine.objectives import capped, channel, class_logit, code_prior, match, total_variation, unit
    from dgnam.engine.optim import Adam, NormalizedAscent
    from dgnam.engine.param import Fourier, GeneratorCode, Pixels, SeededCode
    from dgnam.engine.preferred import accentuate, visualize
    from dgnam.engine.render import Result, synthesize
    from dgnam.engine.transforms import GaussianBlur, Jitter
    from dgnam.errors import DgnamError
    from dgnam.examples.probe import Probe, probe
    from dgnam.nets.classifiers import load_classifier
    from dgnam.nets.layout import Layout
    from dgnam.nets.model import OUTPUT, LayerCapture, Model, describe_layers
    from dgnam.nets.zoo import load_model
    from dgnam.prior.generator import UpconvGenerator, cifar_arch, fc6_arch, load_generator
    from dgnam.prior.sampler import CodeSampler, load_code_sampler
