"""Any model as a dgnam :class:`~dgnam.nets.model.Model`, from a command-line spec (:func:`load_model`):
torchvision's pretrained models with their own preprocessing, a factory, a dgnam classifier or a
TorchScript file.

Torchvision weights are downloaded by torchvision into ``$TORCH_HOME/hub/checkpoints``; offline, a clear error
says which file to place there.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import torch
from torch import nn

from dgnam.errors import DgnamError, first_line
from dgnam.io import is_torchscript
from dgnam.nets.classifiers import load_classifier
from dgnam.nets.model import Model


def load_torchvision(name: str, weights: str | None = "DEFAULT", input_size: int | None = None,
                     device: str | torch.device = "cpu") -> Model:
    """``torchvision.models.<name>`` with ``weights`` (an enum member name, ``DEFAULT``, or None for random).

    Mean/std, the input (crop) size and the class names come from the weights' metadata.
    Example: ``load_torchvision("resnet50")``.
    """
    import torchvision

    try:
        builder = torchvision.models.get_model_builder(name)
    except ValueError:
        names = ", ".join(sorted(torchvision.models.list_models(torchvision.models))[:8])
        raise DgnamError(f"torchvision has no model {name!r}; try one of {names}, ...") from None
    if weights is None:
        mean, std, size = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), input_size or 224
        classes = []
        net = builder(weights=None)
    else:
        enum = torchvision.models.get_model_weights(name)
        try:
            chosen = enum.DEFAULT if weights == "DEFAULT" else enum[weights]
        except KeyError:
            raise DgnamError(f"{name} has no weights {weights!r}; choose one of {', '.join(w.name for w in enum)}") from None
        preprocess = chosen.transforms()
        mean, std = tuple(preprocess.mean), tuple(preprocess.std)
        size = input_size or int(preprocess.crop_size[0])
        classes = list(chosen.meta.get("categories", []))
        try:
            net = builder(weights=chosen)
        except (OSError, RuntimeError) as exc:  # URLError is an OSError
            file = chosen.url.rsplit("/", 1)[-1]
            raise DgnamError(f"cannot download {name} weights ({type(exc).__name__}, offline?); place {file} in "
                             f"{torch.hub.get_dir()}/checkpoints/ or use random weights (weights=None; CLI: torchvision:NAME:none)") from None
    return Model(net.eval(), input_size=size, mean=mean, std=std, name=name, classes=classes).to(device)


def _import_factory(spec: str):
    """``path/to/file.py:factory`` or ``package.module:factory`` -> the callable."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise DgnamError(f"model spec {spec!r} needs the form FILE.py:factory or module:factory")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise DgnamError(f"model file '{path}' does not exist; check the path in --model")
        name = f"dgnam_user_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # dataclasses and pickling look the module up here
        try:
            module_spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:  # sys.exit(0) in the file must not end dgnam with success
            del sys.modules[name]
            raise DgnamError(f"importing '{path}' failed ({type(exc).__name__}: {first_line(exc)}); fix the file") from None
    else:
        if "/" in target or "\\" in target or target.startswith("."):  # a path without .py, not a module name
            raise DgnamError(f"model spec {spec!r} names neither a .py file nor a module; write the file's name "
                             f"with .py, e.g. {target}.py:{attr}")
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise DgnamError(f"cannot import module {target!r} ({first_line(exc)}); is it installed / on PYTHONPATH?") from None
    if not hasattr(module, attr):
        raise DgnamError(f"{target} has no attribute {attr!r}; name the function that builds the model")
    return getattr(module, attr)


def load_model(spec: str, *, input_size: int | None = None, mean: list[float] | None = None,
               std: list[float] | None = None, device: str | torch.device = "cpu") -> Model:
    """Load a model from a CLI-style spec.

    ``torchvision:NAME[:WEIGHTS]`` (preprocessing from the weights' metadata), ``FILE.py:factory`` or
    ``package.module:factory`` (the factory returns an ``nn.Module`` taking RGB [0,1] unless
    ``mean``/``std`` are given), a dgnam classifier ``.pt``, or a TorchScript file.
    """
    if spec.startswith("torchvision:"):
        parts = spec.split(":")
        weights = parts[2] if len(parts) > 2 else "DEFAULT"
        model = load_torchvision(parts[1], None if weights.lower() == "none" else weights, input_size, device)
        return _override_preprocessing(model, mean, std)
    path = Path(spec)
    if path.suffix in (".pt", ".pth", ".ts", ".jit") and not spec.endswith(".py") and ":" not in path.name:
        if not path.is_file():
            raise DgnamError(f"model file '{path}' does not exist; check the path in --model")
        if not is_torchscript(path):
            return _override_preprocessing(load_classifier(path, device), mean, std, input_size)
        try:
            net = torch.jit.load(str(path), map_location=device)
        except Exception:
            raise DgnamError(f"'{path}' is neither a dgnam classifier nor a TorchScript file; export it with "
                             f"torch.jit.script/trace, or pass FILE.py:factory") from None
        return Model(net.eval(), input_size=input_size, mean=mean, std=std, name=path.stem).to(device)
    factory = _import_factory(spec)
    try:
        net = factory()
    except (Exception, SystemExit) as exc:  # sys.exit(0) in the factory must not end dgnam with success
        raise DgnamError(f"calling {spec} failed ({type(exc).__name__}: {first_line(exc)}); the factory must take no arguments") from None
    if isinstance(net, Model):
        net.module.eval()
        return _override_preprocessing(net, mean, std, input_size).to(device)
    if not isinstance(net, nn.Module):
        raise DgnamError(f"{spec} returned {type(net).__name__}, not an nn.Module")
    return Model(net.eval(), input_size=input_size, mean=mean, std=std, name=spec.rpartition(":")[2]).to(device)


def _override_preprocessing(model: Model, mean, std, input_size: int | None = None) -> Model:
    if (mean is None) != (std is None):
        raise DgnamError("give both --mean and --std, or neither")
    if mean is not None:
        model.normalize = True
        model.mean = torch.tensor(mean, dtype=torch.float32, device=model.mean.device).view(1, -1, 1, 1)
        model.std = torch.tensor(std, dtype=torch.float32, device=model.std.device).view(1, -1, 1, 1)
    if input_size is not None:
        model.input_size = input_size
    return model
