"""Any model as a dgnam :class:`~dgnam.nets.model.Model`, from a command-line spec (:func:`load_model`):
torchvision's, timm's and Hugging Face's models with their own preprocessing, a factory, a dgnam
classifier or a TorchScript file.

Preprocessing comes from the model's own config: torchvision's weights metadata, timm's ``pretrained_cfg``
(with the input size the model was built for), a Hugging Face folder's image processor and config; a
factory's timm or Hugging Face model is read the same way. ``--mean``/``--std``/``--input-size`` win.
Random-initialised models are built under a seed (:func:`seeded`), so two runs, and every rank of a
sharded run, build the same model.

Torchvision weights are downloaded by torchvision into ``$TORCH_HOME/hub/checkpoints``; offline, a clear error
says which file to place there. timm and Hugging Face weights are read from the local cache or folder
only: nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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
            raise DgnamError(f"{name} has no weights {weights!r}; choose one of "
                             f"{', '.join(w.name for w in enum)}") from None
        preprocess = chosen.transforms()
        mean, std = tuple(preprocess.mean), tuple(preprocess.std)
        size = input_size or int(preprocess.crop_size[0])
        classes = list(chosen.meta.get("categories", []))
        try:
            net = builder(weights=chosen)
        except (OSError, RuntimeError) as exc:  # URLError is an OSError
            file = chosen.url.rsplit("/", 1)[-1]
            raise DgnamError(f"cannot download {name} weights ({type(exc).__name__}, offline?); place {file} in "
                             f"{torch.hub.get_dir()}/checkpoints/ or use random weights (weights=None; CLI: "
                             "torchvision:NAME:none)") from None
    return Model(net.eval(), input_size=size, mean=mean, std=std, name=name, classes=classes).to(device)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a model's construction under ``seed`` (random weights identical across runs and ranks) without
    touching the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def ecosystem_preprocessing(net: nn.Module) -> dict:
    """``input_size``, ``mean``, ``std`` (and ``source``) a timm or Hugging Face model declares; {} for others.

    timm: ``pretrained_cfg`` through ``timm.data.resolve_model_data_config``, the input size the model was built
    for (``patch_embed.img_size``) winning over the config's. Hugging Face: ``config.image_size`` (mean and std
    live in the image processor, see :func:`load_hf`).
    """
    cfg = getattr(net, "pretrained_cfg", None)
    if isinstance(cfg, dict) and cfg:
        from timm.data import resolve_model_data_config

        data = resolve_model_data_config(net)
        size = int(data["input_size"][-1])
        built = getattr(getattr(net, "patch_embed", None), "img_size", None)
        if built is not None and not getattr(net, "dynamic_img_size", False):
            size = int(built[-1] if isinstance(built, (tuple, list)) else built)
        return {"input_size": size, "mean": tuple(data["mean"]), "std": tuple(data["std"]),
                "source": "timm pretrained_cfg"}
    config = getattr(net, "config", None)
    size = getattr(config, "image_size", None)
    if config is not None and size is not None:
        return {"input_size": int(size[-1] if isinstance(size, (tuple, list)) else size),
                "source": "Hugging Face config"}
    return {}


def _ecosystem_model(net: nn.Module, name: str, input_size: int | None, declared: dict,
                     device: str | torch.device) -> Model:
    size = input_size or declared.get("input_size")
    return Model(net.eval(), input_size=size, mean=declared.get("mean"), std=declared.get("std"), name=name,
                 classes=_class_names(net), metadata={"preprocessing": declared.get("source")}).to(device)


def _class_names(net: nn.Module) -> list[str]:
    labels = getattr(getattr(net, "config", None), "id2label", None)  # Hugging Face
    if isinstance(labels, dict) and labels and not all(str(v).startswith("LABEL_") for v in labels.values()):
        return [str(labels[i]) for i in sorted(labels)]
    return []


def load_timm(name: str, pretrained: bool = True, input_size: int | None = None,
              device: str | torch.device = "cpu", **kwargs) -> Model:
    """``timm.create_model(name, pretrained)`` with its ``pretrained_cfg`` preprocessing (mean, std, input size).

    Pretrained weights are read from the local Hugging Face / timm cache only. ``kwargs`` go to timm
    (``img_size=32, depth=2``). Example: ``load_timm("vit_tiny_patch16_224", pretrained=False)``.
    """
    try:
        import timm
    except ImportError:
        raise DgnamError("timm is not installed; pip install 'dgnam[timm]' (or pip install timm)") from None
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:5]
        raise DgnamError(f"timm has no model {name!r}" + (f"; try {', '.join(close)}" if close else ""))
    try:
        with _hub_offline():
            net = timm.create_model(name, pretrained=pretrained, **kwargs)
    except Exception as exc:
        if not pretrained:
            raise DgnamError(f"timm could not build {name} ({type(exc).__name__}: {first_line(exc)})") from None
        raise DgnamError(f"timm weights for {name} are not available offline ({type(exc).__name__}); put them in the "
                         f"Hugging Face cache first (timm.create_model({name!r}, pretrained=True) where there is "
                         f"a network) or use random weights (CLI: timm:{name}:none)") from None
    return _ecosystem_model(net, name, input_size, ecosystem_preprocessing(net), device)


@contextmanager
def _hub_offline() -> Iterator[None]:
    """The Hugging Face hub's offline mode for the duration: weights come from the cache or not at all."""
    try:
        import huggingface_hub.constants as hub
    except ImportError:
        yield
        return
    previous = hub.HF_HUB_OFFLINE
    hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = previous


def load_hf(name_or_path: str, pretrained: bool = True, input_size: int | None = None,
            device: str | torch.device = "cpu") -> Model:
    """A Hugging Face image classifier (``AutoModelForImageClassification``) from a local folder or the local
    cache, its normalisation and input size from the image processor's config (``preprocessor_config.json``,
    see :func:`hf_preprocessing`) or, for the size, the model's config. ``pretrained=False``: the config alone,
    random weights.
    Example: ``load_hf("models/vit-tiny")``.
    """
    try:
        from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise DgnamError("transformers is not installed; pip install 'dgnam[hf]' (or pip install transformers)") \
            from None
    hf_logging.disable_progress_bar()  # a bar per weight file would interleave with dgnam's own output
    try:
        with _hub_offline():
            if pretrained:
                net = AutoModelForImageClassification.from_pretrained(name_or_path, local_files_only=True)
            else:
                net = AutoModelForImageClassification.from_config(
                    AutoConfig.from_pretrained(name_or_path, local_files_only=True))
    except Exception as exc:
        raise DgnamError(f"cannot load the Hugging Face model {name_or_path!r} offline ({type(exc).__name__}: "
                         f"{first_line(exc, 100)}); pass a local folder written by save_pretrained, or download it "
                         f"into the cache first") from None
    declared = ecosystem_preprocessing(net)
    try:
        with _hub_offline():
            processor = AutoImageProcessor.from_pretrained(name_or_path, local_files_only=True)
    except Exception:  # no preprocessor_config.json: the config's size only
        processor = None
    if processor is not None:
        declared.update(hf_preprocessing(processor, name_or_path, sized=input_size is not None))
    name = Path(name_or_path.rstrip("/")).name  # a folder's or a hub id's last part: it names the output folder
    return _ecosystem_model(net, name, input_size, declared, device)


def hf_preprocessing(processor: object, name: str, sized: bool = False) -> dict:
    """What a Hugging Face image processor does to an image, as dgnam's ``mean``, ``std`` and ``input_size``.

    The processor maps 8-bit pixels p = 255 x (x: dgnam's [0, 1] image) to (p r - m) / s, with r its rescale
    factor (1 without ``do_rescale``) and m, s its image mean and std (0 and 1 without ``do_normalize``): the
    same as normalising x with mean m / (255 r) and std s / (255 r). The input size is what the processor
    hands the model: the centre crop when it crops, else its resize (not read when ``sized``: the caller gives
    the size).
    """
    r = float(getattr(processor, "rescale_factor", 1 / 255)) if getattr(processor, "do_rescale", True) else 1.0
    normalise = getattr(processor, "do_normalize", True) and getattr(processor, "image_mean", None) is not None
    m = list(processor.image_mean) if normalise else [0.0, 0.0, 0.0]
    s = list(processor.image_std) if normalise else [1.0, 1.0, 1.0]
    declared: dict = {"source": "Hugging Face image processor"}
    scale = round(255 * r, 9)  # 1 for the usual 1/255
    if normalise or scale != 1:  # otherwise the model takes the [0, 1] image as it is
        declared.update(mean=tuple(v / scale for v in m), std=tuple(v / scale for v in s))
    cropped = getattr(processor, "do_center_crop", False) and getattr(processor, "crop_size", None)
    size = processor.crop_size if cropped else getattr(processor, "size", None)
    if not sized and size is not None and hasattr(size, "get"):  # a dict, or transformers' SizeDict
        height, width = size.get("height"), size.get("width")
        if height and width and height != width:
            raise DgnamError(f"the image processor of {name!r} makes {height}x{width} inputs; dgnam reads square "
                             f"images: pass --input-size")
        side = height or size.get("shortest_edge")
        if side:
            declared["input_size"] = int(side)
    return declared


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
            raise DgnamError(f"importing '{path}' failed ({type(exc).__name__}: {first_line(exc)}); fix the "
                             "file") from None
    else:
        if "/" in target or "\\" in target or target.startswith("."):  # a path without .py, not a module name
            raise DgnamError(f"model spec {spec!r} names neither a .py file nor a module; write the file's name "
                             f"with .py, e.g. {target}.py:{attr}")
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise DgnamError(f"cannot import module {target!r} ({first_line(exc)}); is it installed / on "
                             "PYTHONPATH?") from None
    if not hasattr(module, attr):
        raise DgnamError(f"{target} has no attribute {attr!r}; name the function that builds the model")
    return getattr(module, attr)


def load_model(spec: str, *, input_size: int | None = None, mean: list[float] | None = None,
               std: list[float] | None = None, device: str | torch.device = "cpu", seed: int = 0) -> Model:
    """Load a model from a CLI-style spec.

    ``torchvision:NAME[:WEIGHTS]`` (preprocessing from the weights' metadata), ``timm:NAME[:none]``
    (``pretrained_cfg``), ``hf:NAME_OR_PATH[:none]`` (image processor and config), ``FILE.py:factory`` or
    ``package.module:factory`` (the factory returns an ``nn.Module`` taking RGB [0,1] unless ``mean``/``std``
    are given or it is a timm or Hugging Face model, whose own config is read), a dgnam classifier ``.pt``,
    or a TorchScript file. Whatever is built with random weights is built under ``seed``.
    """
    with seeded(seed):
        return _load_model(spec, input_size, mean, std, device)


def _ecosystem_spec(spec: str, prefix: str) -> tuple[str, bool]:
    """``timm:NAME[:none]`` -> (NAME, pretrained); a path's own colons are kept (``hf:C:/models/vit``)."""
    body = spec[len(prefix):]
    if body.lower().endswith(":none"):
        return body[:-5], False
    return body, True


def _load_model(spec: str, input_size: int | None, mean, std, device) -> Model:
    if spec.startswith("torchvision:"):
        parts = spec.split(":")
        weights = parts[2] if len(parts) > 2 else "DEFAULT"
        model = load_torchvision(parts[1], None if weights.lower() == "none" else weights, input_size, device)
        return _override_preprocessing(model, mean, std)
    for prefix, loader in (("timm:", load_timm), ("hf:", load_hf)):
        if spec.startswith(prefix):
            name, pretrained = _ecosystem_spec(spec, prefix)
            if not name:
                raise DgnamError(f"--model {spec!r} names no model; give {prefix}NAME")
            return _override_preprocessing(loader(name, pretrained, input_size, device), mean, std)
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
        raise DgnamError(f"calling {spec} failed ({type(exc).__name__}: {first_line(exc)}); the factory must take no "
                         "arguments") from None
    _check_factory_weights(net.module if isinstance(net, Model) else net, spec)
    if isinstance(net, Model):
        net.module.eval()
        return _override_preprocessing(net, mean, std, input_size).to(device)
    if not isinstance(net, nn.Module):
        raise DgnamError(f"{spec} returned {type(net).__name__}, not an nn.Module")
    declared = ecosystem_preprocessing(net)
    if declared:  # a timm or Hugging Face model built by the factory: its own config, unless flags say otherwise
        model = _ecosystem_model(net, spec.rpartition(":")[2], input_size, declared, device)
        return _override_preprocessing(model, mean, std)
    return Model(net.eval(), input_size=input_size, mean=mean, std=std, name=spec.rpartition(":")[2]).to(device)


def _check_factory_weights(net, spec: str) -> None:
    """A factory's model must hold real float32 weights: dgnam moves it to --device and feeds it float32 images."""
    if not isinstance(net, nn.Module):
        return
    tensors = [*net.parameters(), *net.buffers()]
    if any(t.is_meta for t in tensors):
        raise DgnamError(f"{spec} returned a model on the meta device (it has no weights); build it on the CPU in "
                         f"the factory (or call .to_empty(device='cpu') and load its state_dict)")
    odd = next((t.dtype for t in tensors if t.is_floating_point() and t.dtype != torch.float32), None)
    if odd is not None:
        raise DgnamError(f"{spec} returned a model with {str(odd).replace('torch.', '')} weights; dgnam feeds it "
                         f"float32 images: return model.float() from the factory")


def _override_preprocessing(model: Model, mean, std, input_size: int | None = None) -> Model:
    if (mean is None) != (std is None):
        raise DgnamError("give both --mean and --std, or neither")
    if mean is not None:
        model.metadata["preprocessing"] = "--mean/--std"
        model.normalize = True
        model.mean = torch.tensor(mean, dtype=torch.float32, device=model.mean.device).view(1, -1, 1, 1)
        model.std = torch.tensor(std, dtype=torch.float32, device=model.std.device).view(1, -1, 1, 1)
    if input_size is not None:
        model.input_size = input_size
    return model
