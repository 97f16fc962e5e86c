"""Layer layouts: how to read a captured activation, declared or detected once per layer.

A layer's output is read as one of

- ``units``: (B, U), one value per unit (fc layers, logits);
- ``conv``: (B, C, H, W), a channel per unit at every position (the torchvision CNN convention);
- ``channels_last``: (B, H, W, C), the same map with channels last (torchvision Swin and ConvNeXt blocks);
- ``tokens``: (B, T, D), a unit per feature of every token, the first ``prefix_tokens`` of which (CLS
  first when the model has one, then e.g. distillation or register tokens) precede the patch tokens of a
  square grid (ViTs);
- ``other``: anything else (attention heads (B, heads, T, d), windows ...), which is refused.

:func:`detect_layouts` names each layer's layout from what is certain: the module's type (convolutions
and pools make ``conv``; ``Linear``/``LayerNorm`` keep the features last), torchvision's ``Permute``
modules, the layout of the module's input (a block whose output has its input's shape keeps its input's
layout), and the model's family (timm, torchvision and Hugging Face vision transformers and their
prefix tokens). A (B, ..., ...) tensor is never taken as a conv map from its rank alone in a model that
has channels-last or token layers. :func:`parse_layout` reads an explicit override (CLI ``--layout``).

Example::

    layout = model.layout("blocks.5.mlp.fc1")     # Layout(kind='tokens', prefix_tokens=1, cls=True)
    layout.n_units((197, 1536))                  # 1536
    layout.read(act, token="cls")                # (B, 1536): every unit at the CLS token
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange, reduce
from torch import nn

from dgnam.errors import DgnamError

KINDS = ("units", "conv", "channels_last", "tokens", "other")
SPATIAL = ("conv", "channels_last", "tokens")
LAYOUT_HELP = ("units, conv, channels_last, tokens or tokens:N (N prefix tokens before the patches, CLS first; "
               "tokens:N:no-cls when none is a CLS token, e.g. registers alone)")
NO_CLS = "no-cls"


@dataclass(frozen=True)
class Layout:
    """How a layer's output (batch first) holds its units; see the module docstring."""

    kind: str
    prefix_tokens: int = 0  # tokens only: leading non-patch tokens
    cls: bool = True  # tokens only: whether the first prefix token is a CLS token (a ViT with registers alone: no)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DgnamError(f"unknown layout {self.kind!r}; use {LAYOUT_HELP}")
        if not self.prefix_tokens:  # no prefix, no CLS to speak of: one value, so equal layouts compare equal
            object.__setattr__(self, "cls", True)

    def __str__(self) -> str:
        if self.kind != "tokens" or not self.prefix_tokens:
            return self.kind
        return f"tokens:{self.prefix_tokens}" + ("" if self.cls else f":{NO_CLS}")

    @property
    def has_cls(self) -> bool:
        return self.kind == "tokens" and self.prefix_tokens > 0 and self.cls

    @property
    def ndim(self) -> int:
        """Dimensions of one sample's output in this layout."""
        return {"units": 1, "conv": 3, "channels_last": 3, "tokens": 2}.get(self.kind, 0)

    def check(self, shape: tuple[int, ...], layer: str) -> None:
        """Refuse a (per-sample) shape this layout cannot read, in one line naming the fix."""
        if self.kind == "other" or len(shape) != self.ndim:
            raise DgnamError(f"layer {layer!r} has output shape {tuple(shape)}, which dgnam cannot read as units "
                             f"(detected layout: {self}); pick a layer from `dgnam layers` whose layout is not "
                             f"'other', or declare how it holds its units (CLI: --layout conv|channels_last|tokens:N)")
        if self.kind == "tokens" and shape[0] <= self.prefix_tokens:
            raise DgnamError(f"layer {layer!r} has {shape[0]} tokens but its layout names {self.prefix_tokens} "
                             f"prefix tokens; fix --layout tokens:N")

    def n_units(self, shape: tuple[int, ...]) -> int:
        """Units of a layer whose per-sample output has ``shape``: U, C or D."""
        if self.kind in ("units", "conv"):
            return shape[0]
        return shape[-1]

    def grid(self, act: torch.Tensor) -> tuple[int, int]:
        """(H, W) of the layer's positions (the patch grid of a token layer)."""
        if self.kind == "conv":
            return tuple(act.shape[-2:])
        if self.kind == "channels_last":
            return tuple(act.shape[1:3])
        if self.kind == "tokens":
            patches = act.shape[1] - self.prefix_tokens
            side = math.isqrt(patches)
            if side * side != patches:
                raise DgnamError(f"a token layer with {patches} patch tokens has no square grid; read it at a token "
                                 f"(--token N) or declare the prefix tokens (--layout tokens:N)")
            return side, side
        raise DgnamError(f"a {self.kind} layer has no positions; drop --position/--token")

    def as_map(self, act: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) channels-first map of a spatial layer; a token layer's patch tokens on their grid
        (pytorch-grad-cam's ``reshape_transform`` for ViTs)."""
        if self.kind == "conv":
            return act
        if self.kind == "channels_last":
            return rearrange(act, "b h w c -> b c h w")
        if self.kind == "tokens":
            h, w = self.grid(act)
            return rearrange(act[:, self.prefix_tokens:], "b (h w) d -> b d h w", h=h, w=w)
        raise DgnamError(f"a {self.kind} layer is not a spatial map")

    def canonical(self, act: torch.Tensor, layer: str = "") -> torch.Tensor:
        """The activation as a (B, U) or channels-first (B, C, H, W) tensor: how readings that know only
        those two (dataset examples) see any layer; a token layer's patch tokens on their grid."""
        self.check(tuple(act.shape[1:]), layer)
        return act if self.kind in ("units", "conv") else self.as_map(act)

    def read(self, act: torch.Tensor, position: tuple[int, int] | torch.Tensor | None = None,
             token: int | str | None = None, mean: bool = False, layer: str = "") -> torch.Tensor:
        """(B, U) value of every unit, read where the objective asks.

        ``units``: as they are. ``conv``/``channels_last``: at ``position`` (default: the centre; a (B, 2)
        tensor: one position per row) or the spatial mean (``mean``). ``tokens``: at ``token`` (an index or
        ``"cls"``), at ``position`` of the patch grid, the mean over patch tokens (``mean`` or
        ``token="mean"``), by default the CLS token when there is one and the patch mean otherwise.
        """
        self.check(tuple(act.shape[1:]), layer)
        if self.kind == "units":
            if position is not None or token is not None or mean:
                raise DgnamError(f"layer {layer!r} holds plain units (shape {tuple(act.shape[1:])}); drop the "
                                 f"position/token/spatial mean, they apply to spatial and token layers")
            return act
        if token is not None and self.kind != "tokens":
            raise DgnamError(f"layer {layer!r} is a {self.kind} map, not tokens; use --position instead of --token")
        if self.kind == "tokens":
            if token == "mean":
                token, mean = None, True
            if token is not None and position is not None:
                raise DgnamError("give a token or a position, not both")
            if token == "cls":
                if not self.has_cls:
                    raise DgnamError(f"layer {layer!r} has no CLS token (layout {self}); read a token index, "
                                     f"--token mean, or declare one (--layout tokens:N, CLS first)")
                token = 0
            if token is not None:
                t = int(token)
                if not 0 <= t < act.shape[1]:
                    raise DgnamError(f"token {t} is out of range for layer {layer!r}, which has {act.shape[1]} "
                                     f"tokens (valid: 0-{act.shape[1] - 1})")
                return act[:, t]
            if mean:
                return reduce(act[:, self.prefix_tokens:], "b t d -> b d", "mean")
            if position is None:  # the default: the CLS token, else the mean over the patch tokens
                return act[:, 0] if self.has_cls else reduce(act[:, self.prefix_tokens:], "b t d -> b d", "mean")
        if mean:
            if position is not None:
                raise DgnamError("give a position or the spatial mean, not both")
            return reduce(self.as_map(act), "b c h w -> b c", "mean")
        spatial = self.as_map(act)
        h, w = spatial.shape[-2:]
        if isinstance(position, torch.Tensor):
            return self._read_per_row(spatial, position, layer)
        y, x = position if position is not None else (h // 2, w // 2)
        if not (0 <= y < h and 0 <= x < w):
            raise DgnamError(f"position ({y}, {x}) is outside layer {layer!r}'s {h}x{w} map; use 0-{h - 1}, 0-{w - 1}")
        return spatial[:, :, y, x]

    @staticmethod
    def _read_per_row(spatial: torch.Tensor, position: torch.Tensor, layer: str) -> torch.Tensor:
        """(B, C): row i of ``spatial`` (B, C, H, W) at its own (row, column) ``position[i]``."""
        h, w = spatial.shape[-2:]
        if position.shape != (len(spatial), 2):
            raise DgnamError(f"per-row positions have shape {tuple(position.shape)} but the batch has {len(spatial)} "
                             f"rows; give one (row, column) per row")
        y, x = position.to(spatial.device).long().unbind(1)
        if not bool(((y >= 0) & (y < h) & (x >= 0) & (x < w)).all()):
            raise DgnamError(f"a per-row position is outside layer {layer!r}'s {h}x{w} map; use 0-{h - 1}, 0-{w - 1}")
        return spatial[torch.arange(len(spatial), device=spatial.device), :, y, x]


UNITS, CONV, CHANNELS_LAST, OTHER = Layout("units"), Layout("conv"), Layout("channels_last"), Layout("other")


def parse_layout(text: str | Layout | None) -> Layout | None:
    """``"conv"``, ``"channels_last"``, ``"tokens"``, ``"tokens:1"`` (one CLS token first), ``"tokens:4:no-cls"``
    (four register tokens, no CLS), ``"units"``."""
    if text is None or isinstance(text, Layout):
        return text
    kind, _, prefix = text.strip().partition(":")
    prefix, _, cls = prefix.partition(":")
    if kind not in KINDS or kind == "other" or (prefix and kind != "tokens") or cls not in ("", NO_CLS):
        raise DgnamError(f"unknown layout {text!r}; use {LAYOUT_HELP}")
    try:
        n = int(prefix) if prefix else 0
    except ValueError:
        n = -1
    if n < 0 or (cls and n == 0):
        raise DgnamError(f"layout {text!r}: the prefix tokens N of tokens:N must be a whole number >= 0 (>= 1 with "
                         f":{NO_CLS})")
    return Layout(kind, n, cls != NO_CLS)


def by_shape(shape: tuple[int, ...]) -> Layout:
    """The reading of a bare activation with no model to ask (objectives called on raw tensors):
    (U,) units, (C, H, W) conv, anything else refused."""
    return {1: UNITS, 3: CONV}.get(len(shape), OTHER)


# --- detection --------------------------------------------------------------------------------------
def token_layout(root: nn.Module) -> Layout | None:
    """The layout of a known vision transformer's token layers (timm, torchvision, Hugging Face): how many prefix
    tokens precede the patches and whether the first is a CLS token; None when ``root`` is not one."""
    n = getattr(root, "num_prefix_tokens", None)  # timm VisionTransformer, DeiT, EVA, ...
    if isinstance(n, int) and hasattr(root, "patch_embed"):
        # num_prefix_tokens counts CLS, distillation and register tokens alike; a model built with registers and
        # no class token (e.g. timm's *_reg4_gap) has cls_token None, and its token 0 is a register.
        return Layout("tokens", n, getattr(root, "cls_token", None) is not None)
    if type(root).__name__ == "VisionTransformer" and hasattr(root, "class_token"):  # torchvision
        return Layout("tokens", 1)
    config = getattr(root, "config", None)
    if config is not None and hasattr(config, "model_type"):  # Hugging Face: every known one has a CLS token
        known = {"vit": 1, "deit": 2, "dinov2": 1, "beit": 1, "data2vec-vision": 1, "vit_msn": 1, "vit_hybrid": 1}
        if config.model_type == "dinov2_with_registers":
            return Layout("tokens", 1 + int(getattr(config, "num_register_tokens", 0)))
        n = known.get(config.model_type)
        return None if n is None else Layout("tokens", n)
    return None


_CONV_TYPES = (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
               nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
               nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


def _features_last(module: nn.Module) -> bool:
    """Modules that act on the last dimension: the features stay last (timm's LayerNorm2d is channels-first)."""
    if isinstance(module, nn.Linear):
        return True
    return (isinstance(module, nn.LayerNorm) and not type(module).__name__.endswith("2d")
            and len(module.normalized_shape) == 1)


def _permute(module: nn.Module) -> Layout | None:
    """torchvision's ``Permute`` between the channels-first and channels-last parts of Swin and ConvNeXt."""
    dims = getattr(module, "dims", None)
    if type(module).__name__ != "Permute" or dims is None:
        return None
    return {(0, 2, 3, 1): CHANNELS_LAST, (0, 3, 1, 2): CONV}.get(tuple(dims), OTHER)


def _key(t: torch.Tensor) -> tuple:
    return t.data_ptr(), tuple(t.shape), t.stride()


@dataclass
class TraceEvent:
    """One module call of a trace: its name, the module, its first tensor input and its output tensor."""

    name: str
    module: nn.Module
    input: torch.Tensor | None
    output: torch.Tensor | None


def infer_layouts(events: list[TraceEvent], image: torch.Tensor, root: nn.Module) -> dict[str, list[Layout]]:
    """Each event's layout, in the order hooks fired (children before parents, producers before users).

    ``image`` is the preprocessed model input (a conv map); the tensors of ``events`` are alive, so equal
    keys mean the same tensor.
    """
    batch = image.shape[0]
    prefix = token_layout(root)
    # Channels-last or token evidence anywhere: then a 4-D tensor of unknown origin is not taken as conv.
    evidence = prefix is not None or any(
        _permute(e.module) is not None or (_features_last(e.module) and e.output is not None and e.output.ndim >= 3)
        for e in events)
    known = {_key(image): CONV}
    layouts: dict[str, list[Layout]] = {}
    for e in events:
        layout = OTHER
        out = e.output
        if out is not None:
            source = known.get(_key(e.input)) if e.input is not None else None
            layout = _infer_one(e.module, out, e.input, source, batch, prefix, evidence)
            # A module returning a tensor a child returned reads it as the child did, unless only the
            # parent knows (a residual block whose last op is an in-place add on an unhooked expression).
            if known.get(_key(out), OTHER) == OTHER:
                known[_key(out)] = layout
            layout = known[_key(out)]
        layouts.setdefault(e.name, []).append(layout)
    return layouts


def _infer_one(module: nn.Module, out: torch.Tensor, inp: torch.Tensor | None, source: Layout | None, batch: int,
               prefix: Layout | None, evidence: bool) -> Layout:
    if out.ndim < 2 or out.shape[0] != batch:  # windows, heads folded into the batch, scalars
        return OTHER
    permuted = _permute(module)
    if permuted is not None:
        return permuted if out.ndim == 4 else OTHER
    if out.ndim == 2:
        return UNITS
    if out.ndim == 4 and (isinstance(module, _CONV_TYPES) or type(module).__name__.lower().endswith("2d")):
        return CONV  # convolutions, pools and norms, PyTorch's own and the ...2d ones of torchvision and timm
    if _features_last(module):
        if source is not None:
            return source if source.kind in ("tokens", "channels_last") and source.ndim + 1 == out.ndim else OTHER
        if out.ndim == 4 and prefix is None:  # a LayerNorm after a permute written in the forward
            return CHANNELS_LAST
    if source is not None and source.kind != "other" and inp is not None and tuple(out.shape) == tuple(inp.shape):
        return source  # a block, activation, dropout or norm keeps its input's layout
    if out.ndim == 4 and source == CONV and not evidence:
        return CONV  # a CNN block that resamples its map
    if out.ndim == 3 and prefix is not None:
        if source is not None and source.kind == "tokens":
            return source
        # All tokens (the prefix, then a square grid of patches), or the patch tokens alone.
        tokens, patches_alone = out.shape[1], Layout("tokens")
        fits = [t for t in dict.fromkeys((prefix, patches_alone))
                if tokens > t.prefix_tokens and math.isqrt(tokens - t.prefix_tokens) ** 2 == tokens - t.prefix_tokens]
        if source == CONV and patches_alone in fits:
            return patches_alone  # made from an image or a map: a patch embedding, before any prefix token joins
        if len(fits) == 1:
            return fits[0]
    return OTHER  # unknown, or tokens that read as a grid both with and without the prefix: declare --layout
