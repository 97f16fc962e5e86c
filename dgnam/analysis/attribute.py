"""Attribution with captum: which pixels drove a decision.

Vanilla saliency (|d logit / d pixel|) and guided backprop by captum, Grad-CAM and guided Grad-CAM
(guided backprop times the upsampled Grad-CAM map, as captum computes it) here, all on the
:class:`~dgnam.nets.model.Model` (so gradients are taken w.r.t. the RGB [0, 1] image, through the model's
own preprocessing). The Grad-CAM layer defaults to :func:`~dgnam.nets.model.last_spatial_layer`: the
last spatial feature map before global pooling, taken at the block output rather than a residual
branch. Grad-CAM reads the layer through its layout (:mod:`dgnam.nets.layout`): a channels-last map is
put channels-first and a token layer's patch tokens on their grid (pytorch-grad-cam's
``reshape_transform`` for ViTs), so the channel weights average over real positions only.

Guided backprop changes the backward pass of ``nn.ReLU`` *modules* only (captum hooks them; in-place
ReLUs are fine because captum's hook hands the module a copy of its input). A ReLU applied as a
function (``F.relu``, ``torch.relu``, ``x.relu()``) keeps its plain gradient, which silently turns
guided backprop into something else; :func:`functional_relu_calls` detects that case and
:func:`attribute` refuses it with a one-line error.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from dgnam.analysis.figures import heat, overlay, signed_gradient_image
from dgnam.errors import DgnamError
from dgnam.grid import labelled_grid, save_png
from dgnam.nets.layout import Layout
from dgnam.nets.model import (
    Model,
    as_model,
    describe_layers,
    eval_mode,
    first_tensor,
    last_spatial_layer,
    parse_layer,
    resolve_layer,
)

METHODS = ("saliency", "gradcam", "guided_backprop", "guided_gradcam")
GUIDED_METHODS = ("guided_backprop", "guided_gradcam")
_RELU_FUNCTIONS = {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}
# Deletion check: the share of pixels greyed out, most (or least) attributed first.
DELETED_FRACTION = 0.25


@dataclass
class AttributionResult:
    """Attributions of a batch of images for one target class each.

    Attributes:
        images: (N, 3, H, W) the explained images, RGB in [0, 1].
        targets: class explained for each image; ``predicted`` the model's top class.
        probabilities: (N,) softmax probability of the target.
        layer: the Grad-CAM layer.
        maps: per method; ``saliency`` and ``gradcam`` are (N, H, W) and non-negative,
            ``guided_backprop`` and ``guided_gradcam`` (N, 3, H, W) and signed.
        deletion: per method, (N, 2) target probability after greying the 25% of pixels the method
            ranks highest (column 0) and lowest (column 1); a faithful map drops column 0 far more.
    """

    images: torch.Tensor
    targets: list[int]
    predicted: list[int]
    probabilities: torch.Tensor
    layer: str
    maps: dict[str, torch.Tensor]
    deletion: dict[str, torch.Tensor]

    def tiles(self, index: int) -> tuple[torch.Tensor, list[str]]:
        """(1 + methods, 3, H, W) viewable tiles for one image (the image, then one per method) and their names."""
        image = self.images[index:index + 1]
        tiles, names = [image[0]], ["image"]
        for method, values in self.maps.items():
            one = values[index:index + 1]
            if method == "saliency":
                tiles.append(heat(one)[0])
            elif method == "gradcam":
                tiles.append(overlay(image, one)[0])
            else:
                tiles.append(signed_gradient_image(one)[0])
            names.append(method)
        return torch.stack(tiles), names

    def save_overlays(self, path: str | Path, class_names: Sequence[str] = ()) -> Path:
        """One PNG: a row per image with the image and each method's map (Grad-CAM over the image)."""
        tiles, captions = [], []
        for i in range(len(self.images)):
            row, names = self.tiles(i)
            tiles.append(row)
            target = class_names[self.targets[i]] if self.targets[i] < len(class_names) else str(self.targets[i])
            captions += [f"{target} p={float(self.probabilities[i]):.2f}"] + names[1:]
        return save_png(labelled_grid(torch.cat(tiles), captions, ncol=len(captions) // len(self.images)), path)


def gradcam_layer(model: Model | nn.Module, layer: str | None = None,
                  image_size: int | None = None) -> tuple[str, nn.Module]:
    """The Grad-CAM layer's name and module: ``layer`` if given, else the last spatial layer.

    The layer must run once per forward (its module is hooked, so a reused module would mix its calls)
    and hold a spatial map: conv, channels-last, or tokens on a square patch grid (see
    :mod:`dgnam.nets.layout`); ``image_size`` (default: the model's) is what the check runs on.
    Example: ``gradcam_layer(Model(resnet18(), input_size=224))[0] == "layer4"``.
    """
    model = as_model(model)
    name = layer or last_spatial_layer(model, image_size)
    module_name, call = parse_layer(name)
    if call or "@" in name:
        raise DgnamError(f"Grad-CAM hooks a whole module, so it cannot take one call ({name!r}); name a module "
                         f"that runs once per forward, e.g. the block that holds it")
    submodule, _ = resolve_layer(model.module, module_name)  # raises with the closest names
    info = next(i for i in describe_layers(model, image_size) if i.name == module_name)
    if info.calls != 1:
        raise DgnamError(f"layer {module_name!r} runs {info.calls} time(s) per forward; Grad-CAM needs a module that "
                         f"runs once (e.g. the block output; see `dgnam layers`)")
    layout = model.layouts.get(module_name, info.layout)
    if layout is None or layout.kind not in ("conv", "channels_last", "tokens") or len(info.shape) != layout.ndim:
        raise DgnamError(f"layer {module_name!r} has output shape {info.shape} (layout {layout}); Grad-CAM needs a "
                         f"spatial map: conv (C, H, W), channels-last (H, W, C) or tokens on a patch grid "
                         f"(declare it with --layout if detection cannot tell)")
    if layout.kind == "tokens":
        layout.grid(torch.zeros(1, *info.shape))  # no square patch grid: refused here, in one line
    return module_name, submodule


def grad_cam(model: Model, images: torch.Tensor, targets: torch.Tensor, module: nn.Module,
             layout: Layout) -> torch.Tensor:
    """(N, h, w) Grad-CAM of ``targets`` at ``module``'s output, read as ``layout`` (Selvaraju et al. 2017):
    ReLU of the channels summed with weights = their gradient's mean over positions."""
    held: list[torch.Tensor] = []

    def keep(mod, inputs, output):
        held.append(first_tensor(output, "the Grad-CAM layer"))

    handle = module.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = model(images)
            score = logits.gather(1, targets[:, None]).sum()
            (grad,) = torch.autograd.grad(score, held[0])
    finally:
        handle.remove()
    act, grad = layout.as_map(held[0].detach()), layout.as_map(grad)  # (N, C, h, w) each
    weights = grad.mean((2, 3), keepdim=True)
    return (weights * act).sum(1).clamp_min(0).float()


def functional_relu_calls(model: Model | nn.Module, images: torch.Tensor) -> int:
    """How many ReLUs one forward of ``images`` applies as functions rather than ``nn.ReLU`` modules.

    Guided backprop (captum) only changes the backward of ``nn.ReLU`` modules, so it is correct when
    this is 0. ``nn.ReLU`` itself calls ``F.relu``; those calls are counted and subtracted.
    """
    model = as_model(model)
    relu_calls = 0
    module_calls = 0

    class CountRelu(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            nonlocal relu_calls
            relu_calls += func in _RELU_FUNCTIONS
            return func(*args, **(kwargs or {}))

    def count_module(module, inputs) -> None:
        nonlocal module_calls
        module_calls += 1

    handles = [m.register_forward_pre_hook(count_module) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad(), eval_mode(model), CountRelu():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    return relu_calls - module_calls


def _per_pixel(values: torch.Tensor) -> torch.Tensor:
    """(N, H, W) or (N, 3, H, W) attribution -> (N, H, W) magnitude per pixel."""
    return values.abs().amax(1) if values.ndim == 4 else values


def _deletion(model: Model, images: torch.Tensor, targets: torch.Tensor,
              maps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Target probability after greying the most / least attributed quarter of the pixels, per method."""
    n, _, h, w = images.shape
    k = max(1, round(DELETED_FRACTION * h * w))
    batches = []
    for values in maps.values():
        order = _per_pixel(values).flatten(1).argsort(dim=1, descending=True)  # (N, H*W), most attributed first
        for chosen in (order[:, :k], order[:, -k:]):
            mask = torch.zeros(n, h * w, device=images.device).scatter_(1, chosen, 1.0).view(n, 1, h, w)
            batches.append(images * (1 - mask) + 0.5 * mask)
    with torch.no_grad():
        probs = model(torch.cat(batches)).softmax(1)
    target_probs = probs.gather(1, targets.repeat(2 * len(maps))[:, None]).view(len(maps), 2, n)
    return {method: target_probs[i].T.contiguous() for i, method in enumerate(maps)}


def _checked_methods(methods: Sequence[str]) -> list[str]:
    """``methods`` without repeats, each a known one."""
    methods = list(dict.fromkeys(methods))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise DgnamError(f"unknown attribution method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    if not methods:
        raise DgnamError(f"no attribution method given; choose from {', '.join(METHODS)}")
    return methods


def _targets(target: int | Sequence[int] | None, predicted: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(N,) the class explained on each image: ``target`` for all, one per image, or the predicted class."""
    if target is None:
        return predicted
    n = len(predicted)
    targets = torch.as_tensor(target, dtype=torch.long, device=predicted.device)
    if targets.ndim > 1 or (targets.ndim == 1 and len(targets) != n):
        raise DgnamError(f"give one target class, or one per image ({n}); got shape {tuple(targets.shape)}")
    targets = targets.expand(n).clone()
    bad = targets[(targets < 0) | (targets >= n_classes)]
    if len(bad):
        raise DgnamError(f"target class {int(bad[0])} is out of range; the model has {n_classes} classes "
                         f"(valid: 0-{n_classes - 1})")
    return targets


def _check_guided(model: Model, images: torch.Tensor) -> None:
    """Refuse guided backprop on a model it cannot reach: one that applies ReLU as a function."""
    functional = functional_relu_calls(model, images[:1])
    if functional:
        raise DgnamError(f"{model.name} applies ReLU {functional} time(s) as a function (F.relu/torch.relu), which "
                         "guided backprop cannot reach (captum overrides nn.ReLU modules only); use nn.ReLU "
                         f"modules or leave out {' and '.join(GUIDED_METHODS)}")


def _maps(model: Model, images: torch.Tensor, targets: torch.Tensor, methods: list[str], layer_name: str | None,
          layer_module: nn.Module | None) -> dict[str, torch.Tensor]:
    """Each method's attribution of ``targets`` on ``images`` (float, detached, on the images' device)."""
    from captum.attr import GuidedBackprop, Saliency

    maps: dict[str, torch.Tensor] = {}
    cam = None
    size = tuple(images.shape[-2:])
    if layer_module is not None:
        cam = grad_cam(model, images, targets, layer_module, model.layout(layer_name))
        cam = F.interpolate(cam[:, None], size=size, mode="bilinear")[:, 0]  # (N, H, W), as captum upsamples
    guided = GuidedBackprop(model).attribute(images, target=targets) if set(GUIDED_METHODS) & set(methods) else None
    for method in methods:
        if method == "saliency":
            maps[method] = Saliency(model).attribute(images, target=targets, abs=True).amax(1)
        elif method == "gradcam":
            maps[method] = cam
        elif method == "guided_backprop":
            maps[method] = guided
        else:
            maps[method] = guided * cam[:, None]
    return {method: values.detach().float() for method, values in maps.items()}


def attribute(model: nn.Module | Model, images: torch.Tensor, target: int | Sequence[int] | None = None, *,
              layer: str | None = None, methods: Sequence[str] = METHODS,
              device: str | torch.device = "cpu") -> AttributionResult:
    """Explain the model's logit for ``target`` on each image with the chosen captum methods.

    Args:
        model: the classifier.
        images: (N, 3, H, W) or (3, H, W), RGB in [0, 1].
        target: one class for all images, one per image, or None for each image's predicted class.
        layer: the Grad-CAM layer (default: :func:`~dgnam.nets.model.last_spatial_layer`).
        methods: any of ``saliency``, ``gradcam``, ``guided_backprop``, ``guided_gradcam``.

    Example::

        res = attribute(net, x, target=3)
        res.layer                       # 'layer4' for a torchvision ResNet
        res.save_overlays("attribution.png", net.classes)
    """
    model = as_model(model)
    methods = _checked_methods(methods)
    images = images[None] if images.ndim == 3 else images
    device = torch.device(device)
    model.to(device)
    # captum would set requires_grad itself, with a warning per call.
    images = images.detach().float().to(device).requires_grad_(True)
    with torch.no_grad(), eval_mode(model):
        logits = model(images)
    predicted = logits.argmax(1)
    targets = _targets(target, predicted, logits.shape[1])
    layer_name, layer_module = None, None
    if {"gradcam", "guided_gradcam"} & set(methods):
        layer_name, layer_module = gradcam_layer(model, layer, image_size=images.shape[-1])
    if GUIDED_METHODS[0] in methods or GUIDED_METHODS[1] in methods:
        _check_guided(model, images)
    with eval_mode(model), warnings.catch_warnings():
        # captum warns on every guided call that it sets (and removes) hooks on the ReLUs.
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
        maps = _maps(model, images, targets, methods, layer_name, layer_module)
        deletion = _deletion(model, images.detach(), targets, maps)
    probabilities = logits.softmax(1).gather(1, targets[:, None]).squeeze(1)
    return AttributionResult(images=images.detach().cpu(), targets=targets.tolist(), predicted=predicted.tolist(),
                             probabilities=probabilities.cpu(), layer=layer_name or "",
                             maps={m: v.cpu() for m, v in maps.items()},
                             deletion={m: v.cpu() for m, v in deletion.items()})
