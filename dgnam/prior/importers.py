"""Import published generator weights into dgnam.

The DeePSiM fc6 generator (Dosovitskiy & Brox 2016) behind DGN-AM (Nguyen et al. 2016) was released
as a Caffe model; its PyTorch ports keep the Caffe layer names, so a port's state dict holds
``defc7.weight`` (4096, 4096) ... ``deconv0.weight`` (32, 3, 4, 4), in PyTorch's ``Linear`` (out, in)
and ``ConvTranspose2d`` (in, out, kH, kW) layouts. The ports also carry the transposed convolutions'
biases, which Caffe kept at 0 (``lr_mult: 0``).

The original's output is Caffe BGR on the 0-255 scale with the ImageNet mean (B 104, G 117, R 123)
subtracted. The imported generator keeps that raw output and declares ``output_space="caffe_bgr"``,
so :meth:`~dgnam.prior.generator.UpconvGenerator.to_rgb` adds the mean, swaps BGR to RGB and divides by
255 — exactly the original's own de-processing — and everything downstream sees RGB in [0, 1].
Keeping the raw space (rather than folding the conversion into ``deconv0``) leaves every imported
weight bit-identical and lets the generator be fine-tuned with the same losses it was trained with.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from dgnam.errors import DgnamError
from dgnam.prior.generator import UpconvGenerator, fc6_arch

DEEPSIM_FC6_LAYERS = ("defc7", "defc6", "defc5", "deconv5", "conv5_1", "deconv4", "conv4_1", "deconv3",
                      "conv3_1", "deconv2", "deconv1", "deconv0")
# Wrappers some ports save around the layers: upconvGAN's ``G.``, DataParallel's ``module.``.
_WRAPPER_PREFIXES = ("module.", "G.", "generator.")
# Some ports nest each layer one level down (``defc7.1.weight``); the published files do not.
_NESTED_KEY = re.compile(r"^(?P<layer>\w+)\.1\.(?P<param>weight|bias)$")


def canonical_port_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Port keys as ``<caffe layer>.<weight|bias>``: wrapper prefixes and ``.1.`` nesting removed.

    Example: ``{"G.defc7.weight": w}`` -> ``{"defc7.weight": w}``.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        name = str(key)
        stripped = True
        while stripped:
            stripped = False
            for prefix in _WRAPPER_PREFIXES:
                if name.startswith(prefix):
                    name, stripped = name[len(prefix):], True
        nested = _NESTED_KEY.match(name)
        if nested:
            name = f"{nested['layer']}.{nested['param']}"
        if name in out:
            raise DgnamError(f"state dict names {name!r} twice (as {key!r} and another key); pass a single generator")
        out[name] = value
    return out


def deepsim_fc6_shapes() -> dict[str, tuple[int, ...]]:
    """``{port key: shape}`` of the published fc6 generator, conv biases included (they are optional)."""
    arch = fc6_arch()
    shapes: dict[str, tuple[int, ...]] = {}
    d_in = arch["code_dim"]
    for name, d_out in arch["fc"]:
        shapes[f"{name}.weight"] = (d_out, d_in)
        shapes[f"{name}.bias"] = (d_out,)
        d_in = d_out
    for name, c_in, c_out, stride, _ in arch["convs"]:
        k = 4 if stride == 2 else 3
        shapes[f"{name}.weight"] = (c_in, c_out, k, k)
        shapes[f"{name}.bias"] = (c_out,)
    return shapes


def _checked_tensors(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The port's tensors by canonical key, after name, type and shape checks (one-line errors)."""
    tensors = canonical_port_keys(state_dict)
    shapes = deepsim_fc6_shapes()
    for key in tensors:
        if key not in shapes:
            hint = " (a pool5 generator's layer)" if key.startswith("Rconv") else ""
            raise DgnamError(f"state dict key {key!r}{hint} is not part of the DeePSiM fc6 generator "
                             f"(layers {', '.join(DEEPSIM_FC6_LAYERS)}); pass the fc6 generator's state dict")
    conv_names = {entry[0] for entry in fc6_arch()["convs"]}
    for key, shape in shapes.items():
        optional = key.endswith(".bias") and key.split(".")[0] in conv_names
        if key not in tensors:
            if optional:
                continue
            raise DgnamError(f"state dict has no {key!r}; expected the DeePSiM fc6 generator's Caffe layer names "
                             f"({', '.join(DEEPSIM_FC6_LAYERS)})")
        value = tensors[key]
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise DgnamError(f"state dict entry {key!r} is {type(value).__name__}"
                             f"{'' if not isinstance(value, torch.Tensor) else ' of ' + str(value.dtype)}, "
                             f"not a floating-point tensor")
        if tuple(value.shape) != shape:
            raise DgnamError(f"state dict entry {key!r} has shape {tuple(value.shape)} but the fc6 generator needs "
                             f"{shape}; is this another generator (fc8 takes 1000-d codes, pool5 a 256x6x6 map)?")
        if not torch.isfinite(value).all():
            raise DgnamError(f"state dict entry {key!r} holds NaN or inf; the file is damaged")
    return tensors


def import_deepsim_fc6(state_dict: Mapping[str, torch.Tensor],
                       code_upper_bound: torch.Tensor | None = None) -> UpconvGenerator:
    """The DeePSiM fc6 generator from a PyTorch port's state dict, as a dgnam generator.

    Args:
        state_dict: the port's tensors under Caffe layer names (``defc7.weight``, ..., ``deconv0.weight``;
            ``G.``/``module.`` prefixes are accepted). Transposed-convolution biases may be absent;
            all-zero ones (the original fixed them at 0) are dropped, any other is kept.
        code_upper_bound: per-unit upper bounds a_i of the 4096-d fc6 code (the published
            ``act_range/3x/fc6.txt``, see :func:`read_act_range`); default: no bound until
            ``dgnam stats`` sets one from real images.

    Returns an :class:`UpconvGenerator` with ``output_space="caffe_bgr"`` (its ``to_rgb`` gives
    RGB in [0, 1]), ``image_size`` 256 and ``encoder_layer="fc6"`` (CaffeNet's post-ReLU fc6).

    Example: ``G = import_deepsim_fc6(torch.load("upconvGAN_fc6.pt", weights_only=True))``
    """
    tensors = _checked_tensors(state_dict)
    arch = fc6_arch()
    for entry in arch["convs"]:
        bias = tensors.get(f"{entry[0]}.bias")
        entry[4] = bias is not None and bool(bias.ne(0).any())  # keep a bias only where it changes the output
    generator = UpconvGenerator(arch, output_space="caffe_bgr", encoder_layer="fc6", encoder="")
    params = dict(generator.named_parameters())
    with torch.no_grad():
        for group, layers in (("fc", generator.fc), ("convs", generator.convs)):
            for name, layer in layers.items():
                params[f"{group}.{name}.weight"].copy_(tensors[f"{name}.weight"])
                if layer.bias is not None:
                    params[f"{group}.{name}.bias"].copy_(tensors[f"{name}.bias"])
        if code_upper_bound is not None:
            bound = torch.as_tensor(code_upper_bound, dtype=torch.float32).flatten()
            if bound.shape != (generator.code_dim,) or not torch.isfinite(bound).all() or (bound < 0).any():
                raise DgnamError(f"code bounds must be {generator.code_dim} finite values >= 0, got "
                                 f"{bound.numel()} values (min {float(bound.min()) if bound.numel() else 'n/a'})")
            # The published ranges come without the mean/std they were computed from.
            generator.code_upper_bound.copy_(bound)
    return generator.eval()


def read_act_range(path: str | os.PathLike) -> torch.Tensor:
    """Per-unit upper bounds from a whitespace-separated text file (the format of ``act_range/3x/fc6.txt``).

    Example: ``read_act_range("act_range/3x/fc6.txt").shape == (4096,)``
    """
    path = Path(path)
    if not path.is_file():
        raise DgnamError(f"bounds file '{path}' does not exist; check the path")
    try:
        values = [float(v) for v in path.read_text().split()]
    except (ValueError, UnicodeDecodeError):
        raise DgnamError(f"bounds file '{path}' is not whitespace-separated numbers (like "
                         "act_range/3x/fc6.txt)") from None
    return torch.tensor(values, dtype=torch.float32)


def load_port_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A port's state dict from a file, read with ``torch.load(weights_only=True)`` (no code runs).

    Accepts a plain ``{key: tensor}`` dict or one wrapped as ``{"state_dict": {...}}``.
    """
    path = Path(path)
    if not path.is_file():
        raise DgnamError(f"generator weights '{path}' do not exist; check the path")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, pickled code, or not a torch file
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise DgnamError(f"cannot read '{path}' as a PyTorch state dict ({reason}); re-download it") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise DgnamError(f"'{path}' holds {type(obj).__name__}, not a state dict of tensors")
    return dict(obj)
