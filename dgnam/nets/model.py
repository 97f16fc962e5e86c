"""Model access for any ``nn.Module``: preprocessing, layer addressing and activation capture.

Layers are addressed by dotted module name (``layer4.1.bn2``), by ``output`` for the model's output
(logits), or by ``name@k`` for the k-th call (0-based) of a module that runs several times per
forward (torchvision ResNet blocks call one ``relu`` module two or three times).

Capture is correct under in-place operations: a hook clones the module's output at the moment the
module returns, so a later ``ReLU(inplace=True)`` or in-place residual add (``out += identity``)
cannot overwrite what was captured. The clone stays in the autograd graph, so gradients of an
objective flow back to the input through it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dgnam.errors import DgnamError, first_line
from dgnam.nets.layout import CONV, SPATIAL, Layout, by_shape, infer_layouts, parse_layout
from dgnam.nets.layout import TraceEvent as LayoutEvent

OUTPUT = "output"
INPUT = "input"
_CALL_SUFFIX = re.compile(r"^(?P<name>.*)@(?P<call>\d+)$")
# A first convolution built for other than RGB input (torch's message).
_CHANNELS = re.compile(r"to have (?P<want>\d+) channels, but got 3 channels")


class Model(nn.Module):
    """A classifier as dgnam sees it: takes RGB images in [0, 1], shape (B, 3, H, W).

    Preprocessing: images whose size differs from ``input_size`` are centre-cropped
    (``fit="crop"``, the paper's 256 -> 227 for CaffeNet) or resized (``fit="resize"``), then
    normalised with ``mean``/``std`` if given. Layer names are those of the wrapped ``module``.
    ``classes`` names the output units (a classifier's classes; empty when unknown) and ``metadata``
    holds what a checkpoint says about the model (training data, accuracy, ...). ``layouts`` declares
    how layers hold their units (``{"blocks.5": "tokens:1"}``, see :mod:`dgnam.nets.layout`); every other
    layer's layout is detected (:meth:`layout`). The forward returns a tensor: an output object's
    ``.logits`` (Hugging Face) or a tuple's first tensor, unwrapped here for every caller.

    Example: ``Model(torchvision.models.resnet18(), input_size=224, mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225))``
    """

    def __init__(self, module: nn.Module, input_size: int | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 fit: str = "resize", name: str | None = None, classes: Sequence[str] = (),
                 metadata: dict | None = None, layouts: dict[str, str | Layout] | None = None) -> None:
        super().__init__()
        if fit not in ("resize", "crop"):
            raise DgnamError(f"fit must be 'resize' or 'crop', got {fit!r}")
        if (mean is None) != (std is None):
            raise DgnamError("give both mean and std for normalisation, or neither")
        # The module keeps its mode: the user's module, handed to the API, is returned as it came. Every
        # forward dgnam runs switches to eval mode for its duration (eval_mode); the loaders make theirs eval.
        self.module = module
        self.input_size = input_size
        self.fit = fit
        self.name = name or type(module).__name__
        self.classes = list(classes)
        self.metadata = dict(metadata or {})
        self.normalize = mean is not None
        self.layouts = {layer: parse_layout(value) for layer, value in (layouts or {}).items()}
        self._detected: dict[str, list[Layout]] | None = None  # filled by the first layout() call
        self._last_size: int | None = None  # the side of the last input run() saw, for layout detection
        self.register_buffer("mean", torch.tensor(list(mean or (0.0, 0.0, 0.0)), dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(list(std or (1.0, 1.0, 1.0)), dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise DgnamError(f"{self.name} expects RGB images (B, 3, H, W), got shape {tuple(images.shape)}")
        size = self.input_size
        if size is not None and images.shape[-2:] != (size, size):
            h, w = images.shape[-2:]
            if self.fit == "crop" and h >= size and w >= size:
                top, left = (h - size) // 2, (w - size) // 2
                images = images[..., top:top + size, left:left + size]
            else:
                images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        if self.normalize:
            images = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        return images

    def preprocessing(self) -> dict:
        """What every image goes through before the module, as manifests record it: the input size and fit,
        the mean and std applied (None when the input is not normalised) and where they came from."""
        return {"input_size": self.input_size, "fit": self.fit,
                "mean": [round(v, 6) for v in self.mean.flatten().tolist()] if self.normalize else None,
                "std": [round(v, 6) for v in self.std.flatten().tolist()] if self.normalize else None,
                "preprocessing_source": self.metadata.get("preprocessing")}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._output(self._forward_checked(self.preprocess(images)))

    def _forward_checked(self, x: torch.Tensor):
        """The wrapped module's forward; an exception raised inside the user's model becomes one line
        naming the model and the setting that most likely caused it."""
        try:
            return self.module(x)
        except (DgnamError, _StopForward):
            raise
        except Exception as exc:
            first = first_line(exc)
            channels = _CHANNELS.search(str(exc))
            if channels and channels["want"] != "3":  # no input size helps: dgnam's images are RGB
                raise DgnamError(f"{self.name} takes {channels['want']}-channel input but dgnam feeds it 3-channel RGB "
                                 f"images; wrap the model so it takes 3-channel RGB input (e.g. convert to grey "
                                 f"first in its forward)") from None
            if _shape_error(exc):
                raise DgnamError(f"{self.name} failed on input of shape {tuple(x.shape)} ({type(exc).__name__}: "
                                 f"{first}); set the model's input size (CLI: --input-size) to what it was built "
                                 f"for") from None
            raise DgnamError(f"{self.name} raised {type(exc).__name__} in its forward on input of shape "
                             f"{tuple(x.shape)} ({first}); check the model (--model) and its preprocessing "
                             f"(--input-size, --mean/--std)") from None

    def layout(self, layer: str) -> Layout:
        """How ``layer`` (``name@k`` too) holds its units: declared in ``layouts``, else detected once on a
        forward of the model's input size (or the size :meth:`run` last saw); see :mod:`dgnam.nets.layout`."""
        if layer in self.layouts:
            return self.layouts[layer]
        name, call = parse_layer(layer)
        if name in self.layouts and call == 0:
            return self.layouts[name]
        if layer == INPUT:
            return CONV
        if layer == OUTPUT and isinstance(self.module, torch.jit.ScriptModule):
            # TorchScript takes no hooks, so nothing can be traced; its output is read by its shape alone.
            size = self.input_size or self._last_size
            if size is None:
                raise DgnamError(f"{self.name} is a TorchScript model with no input size; pass --input-size")
            p = next(self.module.parameters(), None)
            with torch.no_grad(), eval_mode(self.module):
                out = self(torch.zeros(1, 3, size, size, device=p.device if p is not None else "cpu"))
            return by_shape(tuple(out.shape[1:]))
        if self._detected is None:
            self._detected = detect_layouts(self, self.input_size or self._last_size)
        calls = self._detected.get(name, [])
        if call >= len(calls):
            resolve_layer(self.module, layer)  # an unknown name fails with the closest ones
            raise DgnamError(f"layer {name!r} runs {len(calls)} time(s) per forward of {self.name}; pick a layer "
                             f"from `dgnam layers` or a smaller @call index")
        return calls[call]

    def run(self, images: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """Forward ``images`` and return ``{layer: activation}`` for the requested layers.

        The forward stops early once every requested layer is captured, unless ``output`` is asked for.
        """
        layers = list(dict.fromkeys(layers))
        want_output = OUTPUT in layers
        hooked = [layer for layer in layers if layer not in (OUTPUT, INPUT)]
        acts: dict[str, torch.Tensor] = {}
        if INPUT in layers:
            acts[INPUT] = images
        x = self.preprocess(images)
        self._last_size = x.shape[-1]
        if not hooked:
            acts[OUTPUT] = self._output(self._forward_checked(x))
            return acts
        with LayerCapture(self.module, hooked, stop_early=not want_output) as capture:
            try:
                out = self._forward_checked(x)
            except _StopForward:
                out = None
        missing = [layer for layer in hooked if layer not in capture.activations]
        if missing:
            raise DgnamError(f"layer {missing[0]!r} did not run in {self.name}'s forward "
                             f"(it ran {capture.calls.get(parse_layer(missing[0])[0], 0)} times); "
                             f"pick a layer from `dgnam layers` or a smaller @call index")
        acts.update(capture.activations)
        if want_output:
            acts[OUTPUT] = self._output(out)
        return acts

    def _output(self, value) -> torch.Tensor:
        """The forward's output as one tensor of shape (B, units...) and a floating dtype (a score per unit that
        gradients flow through); anything else is one line naming the fix."""
        out = first_tensor(value, OUTPUT)
        if not out.is_floating_point():
            raise DgnamError(f"{self.name}'s output is {str(out.dtype).replace('torch.', '')}, not floating point; "
                             f"return the scores (logits) from its forward, not e.g. their argmax")
        if out.ndim < 2:
            raise DgnamError(f"{self.name}'s output has shape {tuple(out.shape)}, not (batch, units); return one row "
                             f"of scores per image from its forward (e.g. out.unsqueeze(1))")
        return out


def _shape_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(k in text for k in ("shape", "size", "dimension", "channels", "expected", "height", "width",
                                   "doesn't match", "does not match"))


def first_tensor(value, where: str) -> torch.Tensor:
    """A module's output as one tensor: itself, a tuple's first tensor, or an output object's ``.logits``;
    otherwise a one-line error naming ``where``."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    if hasattr(value, "logits") and isinstance(value.logits, torch.Tensor):  # e.g. GoogLeNetOutputs
        return value.logits
    raise DgnamError(f"{where} returned {type(value).__name__}, not a tensor; wrap the model so it returns one")


def as_model(model: nn.Module | Model) -> Model:
    """Wrap a bare ``nn.Module`` (assumed to take RGB [0,1] at any size) into a :class:`Model`."""
    return model if isinstance(model, Model) else Model(model)


class _StopForward(Exception):
    """Raised from a hook once every requested layer is captured, to skip the rest of the forward."""


def parse_layer(layer: str) -> tuple[str, int]:
    """``'layer1.0.relu@1'`` -> ``('layer1.0.relu', 1)``; a plain name is call 0."""
    match = _CALL_SUFFIX.match(layer)
    if match:
        return match["name"], int(match["call"])
    return layer, 0


def layer_names(module: nn.Module) -> list[str]:
    """All addressable (dotted) module names of ``module``, in definition order."""
    return [name for name, _ in module.named_modules() if name]


def _require_hooks(module: nn.Module) -> None:
    if isinstance(module, torch.jit.ScriptModule):
        raise DgnamError("a TorchScript model exposes only its output (layer 'output'); to address inner layers "
                         "pass the Python model (--model FILE.py:factory)")


def resolve_layer(module: nn.Module, layer: str) -> tuple[nn.Module, int]:
    """Return ``(submodule, call_index)`` for a layer name, or raise with the closest names."""
    _require_hooks(module)
    name, call = parse_layer(layer)
    modules = dict(module.named_modules())
    if name and name in modules:
        return modules[name], call
    names = layer_names(module)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = (f"did you mean {', '.join(repr(c) for c in close)}?" if close
            else f"valid names include {', '.join(names[:6])}, ...")
    raise DgnamError(f"unknown layer {layer!r} in {type(module).__name__}; {hint} (list all with `dgnam layers`)")


class LayerCapture:
    """Context manager that records activations of named layers of a plain ``nn.Module`` (of a
    :class:`Model`, its ``.module``; :meth:`Model.run` does this for you); hooks are always removed on exit.

    Example::

        with LayerCapture(resnet18, ["layer4.1.bn2", "layer4.1.relu@1"]) as cap:
            resnet18(x)
        cap.activations["layer4.1.bn2"]   # pre-add, pre-ReLU values
    """

    def __init__(self, module: nn.Module, layers: Iterable[str], stop_early: bool = False) -> None:
        self.module = module
        self.layers = list(dict.fromkeys(layers))
        self.stop_early = stop_early
        self.activations: dict[str, torch.Tensor] = {}
        self.calls: dict[str, int] = {}
        self._handles: list = []
        by_module: dict[str, list[tuple[int, str]]] = {}
        self._targets: dict[str, nn.Module] = {}
        for layer in self.layers:
            sub, call = resolve_layer(module, layer)
            name = parse_layer(layer)[0]
            self._targets[name] = sub
            by_module.setdefault(name, []).append((call, layer))
        self._by_module = by_module

    def _hook(self, name: str):
        wanted = dict(self._by_module[name])

        def hook(mod, inputs, output):
            call = self.calls.get(name, 0)
            self.calls[name] = call + 1
            if call in wanted:
                # Clone now: an in-place op later in the forward would otherwise overwrite it.
                self.activations[wanted[call]] = first_tensor(output, name).clone()
                if self.stop_early and len(self.activations) == len(self.layers):
                    raise _StopForward
        return hook

    def __enter__(self) -> LayerCapture:
        self.activations.clear()
        self.calls.clear()
        try:
            for name, sub in self._targets.items():
                self._handles.append(sub.register_forward_hook(self._hook(name)))
        except BaseException:
            self._remove()
            raise
        return self

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __exit__(self, *exc) -> bool:
        self._remove()
        return False


@dataclass(frozen=True)
class LayerInfo:
    name: str
    type: str
    call_shapes: tuple[tuple[int, ...], ...]  # output shape (no batch dim) of each call, in order
    n_params: int
    call_layouts: tuple[Layout, ...] = ()  # the layout of each call's output (see dgnam.nets.layout)

    @property
    def calls(self) -> int:
        return len(self.call_shapes)

    @property
    def shape(self) -> tuple[int, ...] | None:
        """Shape of the first call's output; None if the layer never ran."""
        return self.call_shapes[0] if self.call_shapes else None

    @property
    def layout(self) -> Layout | None:
        """Layout of the first call's output; None if the layer never ran."""
        return self.call_layouts[0] if self.call_layouts else None

    def units(self, call: int = 0) -> int | None:
        """Units of the ``call``-th output (None when its layout cannot be read)."""
        layout, shape = self.call_layouts[call], self.call_shapes[call]
        if layout.kind == "other" or len(shape) != layout.ndim:
            return None
        return layout.n_units(shape)


# The trace runs two images: a tensor whose first dimension is not 2 folds something into the batch.
TRACE_BATCH = 2


def _trace(model: Model, image_size: int | None, record, skip: tuple[type, ...] = ()) -> torch.Tensor:
    """One no-grad forward on zero images with ``record(name, module, input, output)`` hooked on every named
    module (except instances of ``skip``; ``input`` is the first tensor argument or None) and on the root
    as ``output``; hooks are removed whatever happens. Returns the preprocessed input."""
    size = image_size or model.input_size
    if size is None:
        raise DgnamError("cannot infer the model's input size; pass image_size (CLI: --input-size)")
    _require_hooks(model.module)
    handles = []

    def hook(name):
        def on_output(mod, args, kwargs, output):
            first = next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), None)
            record(name, mod, first, output)
        return on_output

    try:
        for name, sub in model.module.named_modules():
            if not isinstance(sub, skip):
                handles.append(sub.register_forward_hook(hook(name or OUTPUT), with_kwargs=True))
        with torch.no_grad(), eval_mode(model.module):  # a module in training mode keeps its BatchNorm statistics
            p = next(model.module.parameters(), None)
            x = model.preprocess(torch.zeros(TRACE_BATCH, 3, size, size, device=p.device if p is not None else "cpu"))
            model._forward_checked(x)
    finally:
        for handle in handles:
            handle.remove()
    return x


def _tensor_or_none(output) -> torch.Tensor | None:
    try:
        return first_tensor(output, "")
    except DgnamError:
        return None


def detect_layouts(model: Model | nn.Module, image_size: int | None = None) -> dict[str, list[Layout]]:
    """The detected layout of every call of every named module (and of ``output``), from one forward on
    zero images of ``image_size`` (default: the model's input size); see :mod:`dgnam.nets.layout`."""
    model = as_model(model)
    events: list[LayoutEvent] = []  # holds every output alive, so equal data pointers mean the same tensor
    x = _trace(model, image_size, lambda name, mod, inp, out: events.append(
        LayoutEvent(name, mod, inp, _tensor_or_none(out))))
    return infer_layouts(events, x, model.module)


def describe_layers(model: Model | nn.Module, image_size: int | None = None) -> list[LayerInfo]:
    """Names, output shapes and layouts (per call), call counts and parameter counts of every layer.

    Runs one forward on zero images of ``image_size`` (default: the model's input size).
    """
    model = as_model(model)
    shapes: dict[str, list[tuple[int, ...]]] = {}
    events: list[LayoutEvent] = []

    def record(name: str, mod, inp, output) -> None:
        out = _tensor_or_none(output)
        shapes.setdefault(name, []).append(tuple(out.shape[1:]) if out is not None else ())
        events.append(LayoutEvent(name, mod, inp, out))

    x = _trace(model, image_size, record)
    detected = infer_layouts(events, x, model.module)
    module = model.module
    infos = []
    for name, sub in module.named_modules():
        if not name:
            continue
        calls = shapes.get(name, [])
        layouts = [model.layouts.get(name if i == 0 else f"{name}@{i}", layout)
                   for i, layout in enumerate(detected.get(name, []))]
        own_params = sum(p.numel() for p in sub.parameters(recurse=False))
        infos.append(LayerInfo(name, type(sub).__name__, tuple(calls), own_params, tuple(layouts)))
    return infos


def execution_order(model: Model | nn.Module, image_size: int | None = None) -> list[str]:
    """Every named module that runs in the forward pass, in the order its first call returns
    (one forward on a zero image): leaves in data-flow order, each container after its children."""
    model = as_model(model)
    order: dict[str, None] = {}
    _trace(model, image_size, lambda name, *_: order.setdefault(name, None) if name != OUTPUT else None)
    return list(order)


def non_finite_cause(model: Model, layer: str) -> str:
    """Why ``model``'s ``layer`` is NaN/inf on finite images, in words that name the fix: its normalisation
    (a zero or non-finite --std, a non-finite --mean) or else its own weights and forward. Shared by synthesis
    and the dataset pass, so the same model fails with the same line in both."""
    if model.normalize and not (torch.isfinite(model.std).all() and (model.std > 0).all()
                                and torch.isfinite(model.mean).all()):
        return f"{model.name}'s normalisation is not finite; fix --mean/--std (std > 0)"
    return (f"the model's output ({model.name}, layer {layer!r}) is NaN/inf on finite images; check the model's "
            f"weights and forward")


@contextmanager
def eval_mode(*modules: nn.Module):
    """Put modules in eval mode and freeze their parameters for the duration; restore afterwards."""
    # Every submodule's own flag is recorded: a Model wrapper is in training mode while its network is
    # not, and restoring the wrapper with train(True) would flip the network's BatchNorm to batch stats.
    states = [([(sub, sub.training) for sub in m.modules()], [(p, p.requires_grad) for p in m.parameters()])
              for m in modules]
    try:
        for m in modules:
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
        yield
    finally:
        for modes, params in states:
            for sub, training in modes:
                sub.training = training
            for p, flag in params:
                p.requires_grad_(flag)


def last_spatial_layer(model: Model | nn.Module, image_size: int | None = None) -> str:
    """The module whose output is the last spatial feature map (H*W > 1) before global pooling.

    Only real maps count: a conv or channels-last layer, or a token layer's patch grid (see
    :mod:`dgnam.nets.layout`); a 4-D tensor of attention heads does not. Among modules returning that
    same tensor (``layer4.1.relu``, ``layer4.1``, ``layer4`` in a torchvision ResNet) the outermost is
    chosen, i.e. the block output, not a branch conv. In a vision transformer the last token layers
    after the final attention feed the classifier through the CLS token alone, so their patch tokens
    carry no gradient: the last token layer whose patch tokens move the output is chosen (timm's
    ``blocks[-1].norm1``, as pytorch-grad-cam advises).
    """
    model = as_model(model)
    events: list[LayoutEvent] = []
    # Adaptive pools (torchvision VGG's avgpool to 7x7) resample the last map; they are not features.
    x = _trace(model, image_size,
               lambda name, mod, inp, out: events.append(LayoutEvent(name, mod, inp, _tensor_or_none(out))),
               skip=(nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))
    detected = infer_layouts(events, x, model.module)
    seen: dict[str, int] = {}
    spatial: list[tuple[str, int, tuple, Layout]] = []
    for e in events:
        call = seen.get(e.name, 0)
        seen[e.name] = call + 1
        layout = model.layouts.get(e.name, detected[e.name][call])
        if e.name == OUTPUT or e.output is None or layout.kind not in SPATIAL or e.output.ndim != layout.ndim + 1:
            continue
        try:
            h, w = layout.grid(e.output)
        except DgnamError:
            continue
        if h * w > 1:
            spatial.append((e.name, e.output.data_ptr(), tuple(e.output.shape), layout))
    if not spatial:
        raise DgnamError(f"{model.name} has no spatial (C, H, W), channels-last or token-grid layer; pass the layer "
                         f"explicitly")
    if spatial[-1][3].kind == "tokens":
        return _last_token_layer_with_gradient(model, [s for s in spatial if s[3].kind == "tokens"], image_size)
    _, ptr, shape, _ = spatial[-1]
    # Hooks fire inner-first, so the trailing run of events sharing this tensor ends at the outermost module.
    same = [name for name, p, s, _ in spatial if p == ptr and s == shape]
    return min(same, key=lambda n: (n.count("."), -[e[0] for e in spatial].index(n)))


def _last_token_layer_with_gradient(model: Model, candidates: list[tuple[str, int, tuple, Layout]],
                                    image_size: int | None) -> str:
    """The last of the token layers ``candidates`` whose patch tokens get a gradient from the output
    (one forward and backward on a fixed random image)."""
    modules = dict(model.module.named_modules())

    def in_attention(name: str) -> bool:  # q, k, v projections: not the token map pytorch-grad-cam reads
        parts = name.split(".")
        return any("Attention" in type(modules[".".join(parts[:i])]).__name__ for i in range(1, len(parts) + 1))

    names = list(dict.fromkeys(name for name, *_ in candidates if "@" not in name and not in_attention(name)))
    layouts = {name: layout for name, _, _, layout in candidates}
    held: dict[str, torch.Tensor] = {}
    handles = []

    def hook(name):
        def keep(mod, inputs, output):
            if name not in held:
                held[name] = first_tensor(output, name)
        return keep

    size = image_size or model.input_size
    p = next(model.module.parameters(), None)
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    image = image.to(p.device if p is not None else "cpu").requires_grad_(True)
    try:
        for name in names:
            handles.append(modules[name].register_forward_hook(hook(name)))
        with eval_mode(model.module), torch.enable_grad():
            out = model(image)
            kept = [n for n in names if n in held and held[n].requires_grad]
            grads = torch.autograd.grad(out.sum(), [held[n] for n in kept], allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
    moving = [n for n, g in zip(kept, grads)
              if g is not None and g[:, layouts[n].prefix_tokens:].abs().sum() > 0]
    if not moving:
        raise DgnamError(f"no token layer of {model.name} moves its output through its patch tokens; pass the "
                         f"Grad-CAM layer explicitly")
    return moving[-1]
