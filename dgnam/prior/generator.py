"""The DeePSiM "upconv" generator (Dosovitskiy & Brox 2016): a code h -> an image.

Fully connected layers from the code, a reshape to a small feature map, then 4x4 stride-2
transposed convolutions (each doubles the resolution) alternating with 3x3 stride-1 ones,
LeakyReLU(0.3) after every layer but the last (linear output). An architecture may instead
upsample with ``"upsample": "nearest"``: x2 nearest-neighbour resize then a 3x3 convolution, which
cannot make the checkerboard that 4x4 stride-2 transposed convolutions leave (Odena et al. 2016,
"Deconvolution and Checkerboard Artifacts").

A generator carries what synthesis needs: ``code_dim``, ``image_size``, the per-unit
``code_upper_bound`` buffer (a_i = mean_i + k std_i of the encoder code over real images), the
encoder layer it inverts, and the space of its raw output, which :meth:`UpconvGenerator.to_rgb`
maps to RGB in [0, 1].
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from dgnam import checks
from dgnam.errors import DgnamError
from dgnam.io import atomic_save, load_checkpoint, shipped

GENERATOR_FORMAT = "dgnam.generator"
# The shipped priors by short name: the conv-map prior (the default) and the paper's fc6-code prior.
SHIPPED_GENERATORS = {"conv": "cifar10/generator.pt", "fc6": "cifar10/generator_fc6.pt"}
# Raw output spaces a generator may have; to_rgb() maps each to RGB in [0, 1].
OUTPUT_SPACES = ("rgb01", "rgb11", "caffe_bgr")
CAFFE_BGR_MEAN = (104.0, 117.0, 123.0)
UPSAMPLING = ("transposed", "nearest")


class ResizeConv2d(nn.Conv2d):
    """x2 nearest-neighbour upsampling, then a 3x3/1/1 convolution (same state-dict keys as a conv)."""

    def __init__(self, c_in: int, c_out: int, bias: bool = True) -> None:
        super().__init__(c_in, c_out, 3, 1, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.interpolate(x, scale_factor=2, mode="nearest"))


def fc_layers(dims: list[int]) -> list[list]:
    """FC layers ``[[name, out_dim], ...]`` of the given widths, named as the paper's (..., defc6, defc5:
    the last one feeds the start map)."""
    return [[f"defc{len(dims) + 4 - i}", int(d)] for i, d in enumerate(dims)]


def cifar_arch(code_dim: int = 512, fc_dims: tuple[int, ...] = (1024,), start_channels: int = 128,
               widths: tuple[int, ...] = (128, 64, 32), spatial_code: bool = False,
               start_convs: bool = False, upsample: str = "transposed") -> dict[str, Any]:
    """A 32x32 generator: code -> (start_channels, 4, 4) -> 3 x (upconv, conv) -> 3x3 conv to RGB.

    ``upsample``: ``transposed`` (4x4 stride-2 transposed convs, DeePSiM's) or ``nearest``
    (resize then 3x3 conv: no checkerboard, 2.25x the multiply-adds in those layers).

    By default FC layers (``fc_dims`` hidden) map an fc code to the 4x4 map. With ``spatial_code``
    the code *is* a (start_channels, 4, 4) conv map (code_dim = 16 * start_channels), reshaped and
    mixed by two 3x3 convs instead, like the paper's pool5 generator. ``start_convs`` adds those two
    convs after the FC layers too: an fc-code generator whose conv layers are a spatial-code one's.
    """
    convs: list[list] = []
    c = start_channels
    if spatial_code:
        if code_dim != start_channels * 16:
            raise DgnamError(f"a spatial code of {code_dim} units is not ({start_channels}, 4, 4)")
        fc = []
    else:
        dims = [*fc_dims, start_channels * 4 * 4]
        fc = fc_layers(dims)
    if spatial_code or start_convs:
        convs += [["conv5", c, c, 1, True], ["conv5_1", c, c, 1, True]]
    for i, width in enumerate(widths):
        convs.append([f"deconv{len(widths) - i}", c, width, 2, True])
        convs.append([f"conv{len(widths) - i}_1", width, width, 1, True])
        c = width
    convs.append(["conv0", c, 3, 1, True])
    arch = {"code_dim": code_dim, "fc": fc, "start_shape": [start_channels, 4, 4], "convs": convs}
    if upsample != "transposed":
        arch["upsample"] = upsample
    return arch


def fc6_arch() -> dict[str, Any]:
    """The paper's fc6 generator (Nguyen et al. 2016 / DeePSiM): 4096-d code -> 256x256, ~56M parameters.

    Layer names and shapes follow the Caffe prototxt so published weights map one to one;
    the transposed convolutions are bias-free, as the original fixed those biases at 0.
    """
    convs = [["deconv5", 256, 256, 2, False], ["conv5_1", 256, 512, 1, False],
             ["deconv4", 512, 256, 2, False], ["conv4_1", 256, 256, 1, False],
             ["deconv3", 256, 128, 2, False], ["conv3_1", 128, 128, 1, False],
             ["deconv2", 128, 64, 2, False], ["deconv1", 64, 32, 2, False], ["deconv0", 32, 3, 2, False]]
    return {"code_dim": 4096, "fc": [["defc7", 4096], ["defc6", 4096], ["defc5", 4096]],
            "start_shape": [256, 4, 4], "convs": convs}


def check_arch(arch: Any) -> None:
    """``arch`` (:func:`cifar_arch`'s form) has positive whole widths, strides 1 or 2, and weights that fit in
    memory: checked before any layer is allocated (a negative width was a torch traceback, an absurd one
    filled the memory)."""
    def width(value: Any, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DgnamError(f"generator arch: {what} must be a whole number >= 1, got {value!r}")
        return value

    if not isinstance(arch, dict):
        raise DgnamError(f"generator arch must be a dict, got {type(arch).__name__}")
    d_in = width(arch.get("code_dim"), "code_dim")
    shape = arch.get("start_shape")
    if not isinstance(shape, (list, tuple)) or len(shape) != 3:
        raise DgnamError(f"generator arch: start_shape must be (channels, height, width), got {shape!r}")
    for i, size in enumerate(shape):
        width(size, f"start_shape[{i}]")
    n_weights = 0
    for layer in _entries(arch, "fc", 2):
        n_weights += d_in * width(layer[1], f"fc layer {layer[0]!r}'s width")
        d_in = layer[1]
    for name, c_in, c_out, stride, _bias in _entries(arch, "convs", 5):
        n_weights += (width(c_in, f"conv {name!r}'s input channels")
                      * width(c_out, f"conv {name!r}'s output channels") * 16)
        if stride not in (1, 2):
            raise DgnamError(f"generator arch: conv {name!r}'s stride must be 1 or 2, got {stride!r}")
    checks.check_fits(4 * n_weights, f"a generator of {n_weights:,} weights", "its widths (re-export it)")


def _entries(arch: dict[str, Any], key: str, length: int) -> list:
    """``arch[key]``: a list of ``length``-item layers."""
    layers = arch.get(key)
    if not isinstance(layers, (list, tuple)) or not all(isinstance(x, (list, tuple)) and len(x) == length
                                                        for x in layers):
        raise DgnamError(f"generator arch: {key} must be a list of {length}-item layers")
    return list(layers)


def _bound(mean: torch.Tensor, std: torch.Tensor, k: float) -> torch.Tensor:
    """The per-unit code bound ``mean + k * std`` (the paper's a_i, k = 3): the one place it is written."""
    return mean + k * std


class UpconvGenerator(nn.Module):
    """Upconvolutional generator built from an architecture dict (see :func:`cifar_arch`, :func:`fc6_arch`).

    Args:
        arch: ``{"code_dim", "fc": [[name, out_dim], ...], "start_shape": [C, H, W],
            "convs": [[name, c_in, c_out, stride, bias], ...], "upsample": optional}``; stride 2
            layers are 4x4/2/1 transposed convs (or, with ``"upsample": "nearest"``, x2 resize +
            3x3 conv), stride 1 layers 3x3/1/1.
        output_space: ``rgb01``, ``rgb11`` (tanh-like [-1, 1]) or ``caffe_bgr`` (BGR 0-255, mean subtracted).
        encoder_layer: which encoder layer's code this generator inverts (metadata).
        metadata: what training recorded (iterations, bound k, recommended code prior, ...); ``{}`` if none.
    """

    def __init__(self, arch: dict[str, Any], output_space: str = "rgb01", encoder_layer: str = "",
                 encoder: str = "", metadata: dict[str, Any] | None = None) -> None:
        super().__init__()
        check_arch(arch)  # before any layer is built: a negative or absurd width fails here, not in torch
        if output_space not in OUTPUT_SPACES:
            raise DgnamError(f"output_space must be one of {OUTPUT_SPACES}, got {output_space!r}")
        self.arch = arch
        self.output_space = output_space
        self.encoder_layer = encoder_layer
        self.encoder = encoder
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.code_dim = int(arch["code_dim"])
        self.start_shape = tuple(int(s) for s in arch["start_shape"])
        fc = []
        d_in = self.code_dim
        for name, d_out in arch["fc"]:
            fc.append((name, nn.Linear(d_in, int(d_out))))
            d_in = int(d_out)
        c, h, w = self.start_shape
        if d_in != c * h * w:
            raise DgnamError(f"generator arch: last FC size {d_in} != start_shape {c}x{h}x{w}")
        self.fc = nn.ModuleDict(fc)
        upsample = arch.get("upsample", "transposed")
        if upsample not in UPSAMPLING:
            raise DgnamError(f"generator arch: upsample must be one of {UPSAMPLING}, got {upsample!r}")
        convs = []
        size = h
        for name, c_in, c_out, stride, bias in arch["convs"]:
            if stride == 2:
                if upsample == "nearest":
                    layer = ResizeConv2d(c_in, c_out, bias=bias)
                else:
                    layer = nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias)
                size *= 2
            else:
                layer = nn.ConvTranspose2d(c_in, c_out, 3, 1, 1, bias=bias)
            convs.append((name, layer))
        self.convs = nn.ModuleDict(convs)
        self.image_size = size
        self.act = nn.LeakyReLU(0.3)
        self.reset_parameters()
        # Bounds start infinite (no clipping) until code statistics are set.
        self.register_buffer("code_upper_bound", torch.full((self.code_dim,), float("inf")))
        self.register_buffer("code_mean", torch.zeros(self.code_dim))
        self.register_buffer("code_std", torch.ones(self.code_dim))
        # The type the weights were stored in (float16 for a halved file); saving again keeps it.
        self.stored_weights_dtype: torch.dtype | None = None

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """He initialisation for LeakyReLU(0.3), zero biases.

        PyTorch's default init shrinks the signal by about 3x per layer; after nine layers the
        biases drown the code and G starts out (and stays for hundreds of iterations) at the mean image.
        """
        layers = [*self.fc.values(), *self.convs.values()]
        for layer in layers:
            # torch reads a transposed conv's (in, out, k, k) weight the other way round, so its
            # "fan_out" is in_channels * k * k (a 4x4 stride-2 one really feeds each output pixel
            # from a quarter of that; kept, as the shipped DeePSiM-style generators were trained so).
            fan_mode = "fan_out" if isinstance(layer, nn.ConvTranspose2d) else "fan_in"
            nn.init.kaiming_normal_(layer.weight, a=0.3, mode=fan_mode, nonlinearity="leaky_relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        if layers[-1].bias is not None and self.output_space == "rgb01":
            layers[-1].bias.fill_(0.5)  # start at mid-grey

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        """code (B, code_dim) -> raw output (B, 3, S, S) in ``output_space``."""
        if code.ndim != 2 or code.shape[1] != self.code_dim:
            raise DgnamError(f"generator expects codes of shape (B, {self.code_dim}), got {tuple(code.shape)}; "
                             f"use a generator trained on this encoder layer")
        x = code
        for layer in self.fc.values():
            x = self.act(layer(x))
        c, h, w = self.start_shape
        x = rearrange(x, "b (c h w) -> b c h w", c=c, h=h, w=w)
        last = len(self.convs) - 1
        for i, layer in enumerate(self.convs.values()):
            x = layer(x)
            if i < last:
                x = self.act(x)
        return x

    def to_rgb(self, raw: torch.Tensor) -> torch.Tensor:
        """Map raw output to RGB in [0, 1] (not clamped; see ``dgnam.engine.param``)."""
        if self.output_space == "rgb01":
            return raw
        if self.output_space == "rgb11":
            return (raw + 1) / 2
        mean = raw.new_tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1)
        return (raw + mean).flip(1) / 255.0

    def from_rgb(self, rgb: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_rgb` (targets for training in the generator's own space)."""
        if self.output_space == "rgb01":
            return rgb
        if self.output_space == "rgb11":
            return rgb * 2 - 1
        mean = rgb.new_tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1)
        return rgb.flip(1) * 255.0 - mean

    def generate(self, code: torch.Tensor) -> torch.Tensor:
        """code -> RGB image in [0, 1] (clamped), for display and evaluation."""
        return self.to_rgb(self(code)).clamp(0, 1)

    @property
    def has_code_statistics(self) -> bool:
        """Whether per-unit code statistics were set. Without them code_mean is all zeros and code_std
        all ones, so a bound ``mean + k * std`` would be k itself."""
        return bool((self.code_mean != 0).any())

    @torch.no_grad()
    def set_code_statistics(self, mean: torch.Tensor, std: torch.Tensor, k: float = 3.0) -> None:
        """Store per-unit code statistics and set ``code_upper_bound = mean + k * std`` (paper: k = 3)."""
        if mean.shape != (self.code_dim,) or std.shape != (self.code_dim,):
            raise DgnamError(f"code statistics must have shape ({self.code_dim},), got {tuple(mean.shape)}")
        if not math.isfinite(k) or k < 0:  # an infinite bound reaches every run's manifest (JSON has no inf)
            raise DgnamError(f"k must be a finite number >= 0 (bound = mean + k * std), got {k}")
        self.code_mean.copy_(mean)
        self.code_std.copy_(std)
        self.code_upper_bound.copy_(_bound(mean, std, k))

    def code_bound(self, k: float | None = None) -> torch.Tensor:
        """The code's per-unit upper bound (D,): ``code_mean + k * code_std``, or the stored
        ``code_upper_bound`` when ``k`` is None (the one set with the statistics, or imported)."""
        return self.code_upper_bound if k is None else _bound(self.code_mean, self.code_std, k)

    def checkpoint(self, metadata: dict[str, Any] | None = None,
                   weights_dtype: torch.dtype | None = None) -> dict[str, Any]:
        """The dict written to ``*.pt``. ``weights_dtype`` (e.g. ``torch.float16``) stores the weights in
        that type, to halve the file (default: the type the weights were loaded from); the code
        statistics and bounds stay float32 (the box must be exact), and loading casts the weights back
        to float32."""
        weights = {name for name, _ in self.named_parameters()}
        weights_dtype = weights_dtype or self.stored_weights_dtype

        def stored(name: str, value: torch.Tensor) -> torch.Tensor:
            value = value.detach().cpu()
            return value.to(weights_dtype) if weights_dtype is not None and name in weights else value

        return {"format": GENERATOR_FORMAT, "version": 1, "arch": self.arch, "output_space": self.output_space,
                "encoder_layer": self.encoder_layer, "encoder": self.encoder,
                "state_dict": {k: stored(k, v) for k, v in self.state_dict().items()},
                "metadata": dict(metadata or {})}

    def save(self, path: str | os.PathLike, metadata: dict[str, Any] | None = None,
             weights_dtype: torch.dtype | None = None) -> Path:
        """Write a ``weights_only``-loadable checkpoint atomically (see :meth:`checkpoint`)."""
        return atomic_save(self.checkpoint(metadata, weights_dtype), path)


def check_fields(ckpt: dict[str, Any], path: Path) -> None:
    """The fields of a generator checkpoint that commands read have their types (``code_prior="lots"`` or
    ``encoder=5`` were tracebacks wherever they were used)."""
    for key, kind, what in (("output_space", str, "a name"), ("encoder_layer", str, "a layer name"),
                            ("encoder", str, "a path"), ("metadata", dict, "a dict")):
        if key in ckpt and not isinstance(ckpt[key], kind):
            raise DgnamError(f"'{path}' records {key} {ckpt[key]!r}, not {what}; re-export it (or fix the field)")
    for key in ("code_prior", "bound_k"):
        value = ckpt.get("metadata", {}).get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise DgnamError(f"'{path}' records metadata {key} {value!r}, not a number; re-export it (or fix the "
                             f"field)")


def generator_file(name_or_path: str | os.PathLike) -> Path:
    """The file of a shipped generator's short name (``conv``, ``fc6``: :data:`SHIPPED_GENERATORS`),
    or ``name_or_path`` itself as a path (write ``./fc6`` for a local file of that name)."""
    name = os.fspath(name_or_path)
    return shipped(SHIPPED_GENERATORS[name]) if name in SHIPPED_GENERATORS else Path(name)


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu",
                   rebounding: bool = False) -> UpconvGenerator:
    """Load a generator saved by :meth:`UpconvGenerator.save` (``torch.load(weights_only=True)``), by
    path or by a shipped generator's short name (``conv``, the default prior; ``fc6``, the paper's).

    One whose recorded bound k is not finite is refused unless ``rebounding`` (``dgnam stats``, which
    sets new bounds).

    Example: ``G = dgnam.load_generator("fc6")`` or ``dgnam.load_generator("checkpoints/cifar10/generator.pt")``
    """
    path = generator_file(path)
    ckpt = load_checkpoint(path, GENERATOR_FORMAT, "dgnam generator")
    check_fields(ckpt, path)
    try:
        gen = UpconvGenerator(ckpt["arch"], ckpt.get("output_space", "rgb01"), ckpt.get("encoder_layer", ""),
                              ckpt.get("encoder", ""), ckpt.get("metadata", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise DgnamError(f"'{path}' has an invalid generator architecture ({exc}); re-export it") from None
    bound_k = gen.metadata.get("bound_k")
    # written before `dgnam stats` refused it
    if not rebounding and isinstance(bound_k, float) and not math.isfinite(bound_k):
        raise DgnamError(f"'{path}' records code bounds with k = {bound_k}; rewrite it with "
                         f"`dgnam stats --generator {path} --k 3 --out NEW.pt`")
    try:
        gen.load_state_dict(ckpt["state_dict"])
        stored = {v.dtype for k, v in ckpt["state_dict"].items() if k.startswith("convs.")}
        gen.stored_weights_dtype = torch.float16 if stored == {torch.float16} else None
    except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
        raise DgnamError(f"'{path}' weights do not match its architecture ({str(exc).splitlines()[0][:100]}); "
                         f"the file is damaged, re-export it") from None
    return gen.to(device).eval()
