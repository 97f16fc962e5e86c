"""Parametrisations: how an image is represented while it is optimised.

``GeneratorCode`` (DGN-AM: optimise the code of a generator), ``Pixels`` (plain pixel ascent) and
``Fourier`` (decorrelated colour and a 1/f-scaled spectrum, Olah et al. 2017). Each one creates
per-row parameters from per-row seeds, maps them to RGB images in [0, 1], projects them back to
their feasible set after a step, and names the update rules that suit it. :data:`PARAMETRIZATIONS`
maps the names users type (``dgn``, ``pixel``, ``fourier``) to them; :func:`make_param` builds one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from dgnam import checks
from dgnam.engine.optim import Adam, NormalizedAscent, Optimizer
from dgnam.errors import DgnamError
from dgnam.nets.model import as_model
from dgnam.prior.generator import UpconvGenerator
from dgnam.prior.sampler import CodeSampler
from dgnam.prior.stats import encode_all

# Mean of a_i = mean_i + 3 std_i over CaffeNet's fc6 units (Nguyen et al. 2016: bounds 3-17, mean ~12).
PAPER_FC6_MEAN_BOUND = 12.0
# Adam's step for matching a target (inversion, mimicry) in pixels: 0.01 (the synthesis default) moves
# too little in 200 steps to leave the grey start image far behind.
PIXEL_MATCHING_LR = 0.03
# Adam's step for matching a target with a code, in units of the code's scale (mean bound / 12, see
# GeneratorCode.default_optimizer): 0.02 on the CIFAR-10 prior. DGN-AM's own schedule (normalised
# steps of 8 scale units) is made to push units to their bounds; matching a target needs small steps,
# and with it the shipped prior stayed at relu4_2 error 0.32 where Adam reaches 0.14 (200 steps).
CODE_MATCHING_LR = 0.12
# Steps per image by default: the paper's 200 from noise (on ResNet-14, 50 steps from noise lost 6 points of
# robust-judge agreement), 50 seeded (as natural, as recognised and more diverse than 200 from noise on both
# CIFAR-10 targets; docs/evaluation.md).
PAPER_STEPS = 200
SEEDED_STEPS = 50
# Image-seeded DGN-AM (SeededCode): the first normalised step, in code-scale units (the paper: 8), and the
# code prior weight. Chosen on both CIFAR-10 targets, 50 steps (docs/evaluation.md): larger steps leave
# the seed behind within a few steps (KID rises) without raising judge agreement; a weaker prior likewise.
SEEDED_LR = 1.0
SEEDED_CODE_PRIOR = 0.5


def _row_randn(seeds: Sequence[int], shape: tuple[int, ...]) -> torch.Tensor:
    """(B, *shape) standard normal, row i drawn from its own generator seeded with seeds[i]."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


class Parametrization:
    """Base class. ``init(seeds)`` -> parameters (B, ...); ``images(params)`` -> (B, 3, H, W) in [0, 1].

    Attributes:
        name: the name it is registered under in :data:`PARAMETRIZATIONS` (``--param``).
        image_size: side of the images it makes, in pixels.
        default_steps: the steps a run takes unless told otherwise.
        generator: the generator whose code is optimised; None when the image itself is.
    """

    name: ClassVar[str]
    default_steps: ClassVar[int] = PAPER_STEPS

    def __init__(self, image_size: int, generator: UpconvGenerator | None = None) -> None:
        size = checks.index(image_size, "image_size")
        if size < 1:
            raise DgnamError(f"image_size must be >= 1 pixel, got {size}")
        checks.check_fits(checks.image_batch_bytes(1, size), f"an image of {size}x{size} pixels", "image_size")
        self.image_size = size
        self.generator = generator

    @classmethod
    def build(cls, generator: UpconvGenerator | None, image_size: int | None,
              sampler: CodeSampler | None = None, **options) -> Parametrization:
        """The registry's constructor (:func:`make_param`): from a generator and/or an image size.

        This one (pixel-like parametrisations) makes images of ``image_size``, or of the generator's
        size when it is None; ``options`` go to the class.
        """
        if sampler is not None:
            raise DgnamError(f"a code sampler gives start codes for param 'dgn', not {cls.name!r}; drop it "
                             f"(CLI: --init-sampler)")
        size = image_size or (generator.image_size if generator is not None else None)
        if size is None:
            raise DgnamError(f"param {cls.name!r} needs an image size; give the model one (dgnam.Model(net, "
                             f"input_size=N); CLI: --input-size)")
        return cls(size, **options)

    @property
    def has_prior(self) -> bool:
        """Whether a learned prior (a generator) shapes the images; without one, hand-made regularisers
        (jitter, blur, total variation) have to stand in for it."""
        return self.generator is not None

    def modules(self) -> list[nn.Module]:
        """The trained modules the images pass through (the generator), which the loop keeps in eval mode
        and frozen; none for pixels and Fourier."""
        return [self.generator] if self.generator is not None else []

    def code(self, params: torch.Tensor) -> torch.Tensor | None:
        """The code (B, D) that ``params`` hold, for objectives on the code itself
        (:func:`~dgnam.engine.objectives.code_prior`); None when there is none (pixels, Fourier)."""
        return None

    def init(self, seeds: Sequence[int], rows: torch.Tensor, device: torch.device) -> torch.Tensor:
        raise NotImplementedError

    def images(self, params: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def project(self, params: torch.Tensor) -> None:
        """Put parameters back in their feasible set, in place (no-op by default)."""

    def default_optimizer(self) -> Optimizer:
        """The update rule for maximising an objective."""
        return Adam(lr=0.05)

    def matching_optimizer(self) -> Optimizer:
        """The update rule for matching a target (inversion, mimicry): Adam with small steps in this
        parametrisation's units."""
        return Adam(lr=PIXEL_MATCHING_LR)

    def continue_from(self, params: torch.Tensor, images: torch.Tensor) -> Parametrization:
        """A parametrisation whose row i starts where a finished run's row i ended (its final ``params``
        and ``images``). Pixel and Fourier images both continue as pixels: the image is what carries over."""
        return Pixels(images.shape[-1], init_images=images)

    def to(self, device: torch.device) -> Parametrization:
        return self

    def describe(self) -> dict:
        return {"param": type(self).__name__}


class GeneratorCode(Parametrization):
    """DGN-AM: optimise a generator's code h; the image is G(h).

    Args:
        generator: an :class:`~dgnam.prior.generator.UpconvGenerator` (its ``code_upper_bound`` is the box).
        init_codes: start codes, (D,) or (N, D) for the N rows; default h ~ N(0, 1) per row seed.
        sampler: a trained :class:`~dgnam.prior.sampler.CodeSampler` for this generator: row i starts from
            the sampler's code for its seed (a natural image, different for every seed; it replaces
            ``init_codes``). A class-conditional sampler draws the start's class from the seed too.
        lower_bound: lower clip of every code unit (0: the code is post-ReLU); None disables it.
        bound_scale: multiply the upper bound (e.g. 0.5 halves every a_i).
        bound_k: recompute the upper bound as a_i = mean_i + bound_k * std_i from the code
            statistics stored with the generator (paper: k = 3, the stored default); smaller k keeps
            codes nearer real ones: less activation, more natural images.
    """

    name = "dgn"

    def __init__(self, generator: UpconvGenerator, init_codes: torch.Tensor | None = None,
                 lower_bound: float | None = 0.0, bound_scale: float = 1.0, bound_k: float | None = None,
                 sampler: CodeSampler | None = None) -> None:
        super().__init__(generator.image_size, generator)
        if sampler is not None:
            if init_codes is not None:
                raise DgnamError("pass init_codes or a sampler, not both")
            sampler.check_generator(generator)
        self.sampler = sampler
        self.init_codes = init_codes
        self.lower_bound = lower_bound
        self.bound_scale = checks.non_negative(bound_scale, "bound_scale")
        if bound_k is not None:
            bound_k = checks.non_negative(bound_k, "bound_k")
        if bound_k is not None and not generator.has_code_statistics:
            raise DgnamError("bound_k needs code statistics in the generator; run `dgnam stats` on it first")
        self.bound_k = bound_k

    @classmethod
    def build(cls, generator: UpconvGenerator | None, image_size: int | None,
              sampler: CodeSampler | None = None, **options) -> GeneratorCode:
        """The generator's code (``image_size`` is the generator's own); ``options`` go to the class."""
        if generator is None:
            raise DgnamError("param 'dgn' needs a generator; pass generator= (CLI: --generator PATH)")
        return cls(generator, sampler=sampler, **options)

    def to(self, device: torch.device) -> GeneratorCode:
        self.generator.to(device)
        if self.sampler is not None:
            self.sampler.to(device)
        return self

    def init(self, seeds: Sequence[int], rows: torch.Tensor, device: torch.device) -> torch.Tensor:
        d = self.generator.code_dim
        if self.sampler is not None:  # per row, so a row's start depends on its seed alone
            return torch.cat([self.sampler.sample(1, seed=int(s)) for s in seeds]).to(device)
        if self.init_codes is None:
            return _row_randn(seeds, (d,)).to(device)
        codes = self.init_codes.detach().float()
        if codes.shape[-1] != d:
            raise DgnamError(f"init codes have {codes.shape[-1]} units but the generator takes {d}")
        codes = codes.expand(len(seeds), d) if codes.ndim == 1 else codes[rows.cpu()]
        return codes.clone().to(device)

    @property
    def upper_bound(self) -> torch.Tensor:
        """The box's upper corner: the generator's bound for ``bound_k`` (its stored one when None),
        times ``bound_scale``."""
        return self.generator.code_bound(self.bound_k) * self.bound_scale

    def code(self, params: torch.Tensor) -> torch.Tensor:
        return params

    def images(self, params: torch.Tensor) -> torch.Tensor:
        # Models see exactly the image that is saved, and the gradient is that of this image: pixels
        # already out of range get none, so the code is not pushed to make them more so.
        return self.generator.to_rgb(self.generator(params)).clamp(0, 1)

    @torch.no_grad()
    def project(self, params: torch.Tensor) -> None:
        upper = self.upper_bound.to(params)
        lower = torch.full_like(upper, -float("inf") if self.lower_bound is None else self.lower_bound)
        torch.clamp(params, lower, upper, out=params)

    def default_optimizer(self) -> Optimizer:
        """The paper's schedule (8 -> 1e-10, decay 0.99), in units of this code's scale.

        The paper's step sizes were set for CaffeNet fc6, whose bounds average about 12. The update
        moves every unit by ``lr`` on average, so with smaller codes (a CIFAR encoder's) the same
        numbers would throw every unit to a corner of the box at each step; scaling ``lr`` by
        mean(bound) / 12 gives any code the dynamics the paper had on fc6 (and fc6 exactly 8).
        """
        scale = self.code_scale()
        return NormalizedAscent(lr_start=8.0 * scale, lr_end=1e-10 * scale, l2_decay=0.99)

    def matching_optimizer(self) -> Optimizer:
        return Adam(lr=CODE_MATCHING_LR * self.code_scale())

    def continue_from(self, params: torch.Tensor, images: torch.Tensor) -> GeneratorCode:
        """The same generator and box, each row starting from its final code."""
        return GeneratorCode(self.generator, init_codes=params, lower_bound=self.lower_bound,
                             bound_scale=self.bound_scale, bound_k=self.bound_k)

    def code_scale(self) -> float:
        """The code's scale relative to the paper's fc6 (mean finite bound / 12)."""
        bound = self.upper_bound
        finite = bound[torch.isfinite(bound)]
        return float(finite.mean()) / PAPER_FC6_MEAN_BOUND if finite.numel() else 1.0

    def describe(self) -> dict:
        return {"param": "GeneratorCode", "code_dim": self.generator.code_dim, "bound_scale": self.bound_scale,
                "bound_k": self.bound_k,
                "lower_bound": self.lower_bound, "generator_encoder": self.generator.encoder,
                "init": "sampler" if self.sampler is not None else "codes" if self.init_codes is not None else "normal"}


class SeededCode(GeneratorCode):
    """Image-seeded DGN-AM (feature accentuation through the prior): row i shows its seed image plus what
    the prior changes, ``seed_i + G(h) - G(h0_i)``, with h starting at the seed's own code ``h0_i = E(seed_i)``.

    At the start each image *is* its seed (not the prior's blurrier reconstruction of it), and every change
    is a change of G's image, so the seed's detail stays while the unit is raised the prior's way. As in the
    paper, the box applies after each step, not to the start: the first step also pulls a seed's code into
    the box, which keeps the change natural (a box widened to hold every seed's code gave images farther
    from real ones: robust-judge KID 0.042 vs 0.022 on the CIFAR-10 encoder, 50 steps). Restarts
    differ as their seeds differ. Its update takes small steps (:data:`SEEDED_LR`, no decay) and it suits a
    strong code prior (:data:`SEEDED_CODE_PRIOR`), which keeps the change natural.

    Args:
        generator: the prior; its ``encoder_layer`` names the code.
        seed_images: (3, H, W) for every row or (N, 3, H, W), one per row, RGB in [0, 1] at the generator's size.
        encoder: the encoder whose ``generator.encoder_layer`` the generator inverts (it reads h0 from a seed);
            a :class:`~dgnam.nets.model.Model` or a plain module.
        bound_k, bound_scale, lower_bound: the code's box, as in :class:`GeneratorCode`.
    """

    name = "seeded"
    default_steps = SEEDED_STEPS

    def __init__(self, generator: UpconvGenerator, seed_images: torch.Tensor, encoder: torch.nn.Module, *,
                 lower_bound: float | None = 0.0, bound_scale: float = 1.0, bound_k: float | None = None) -> None:
        super().__init__(generator, lower_bound=lower_bound, bound_scale=bound_scale, bound_k=bound_k)
        if not generator.encoder_layer:
            raise DgnamError("seeded starts need the generator's encoder_layer (the layer whose code it inverts)")
        size = generator.image_size
        if not isinstance(seed_images, torch.Tensor) or seed_images.ndim not in (3, 4) or \
                tuple(seed_images.shape[-3:]) != (3, size, size):
            shape = tuple(seed_images.shape) if isinstance(seed_images, torch.Tensor) else type(seed_images).__name__
            raise DgnamError(f"seed images have shape {shape}; expected (N, 3, {size}, {size}) RGB at the "
                             f"generator's size")
        if not torch.isfinite(seed_images).all():
            raise DgnamError("seed images hold NaN/inf; give RGB images in [0, 1]")
        self.seed_images = seed_images.detach().float().clamp(0, 1)
        self.encoder = encoder
        self._offset: torch.Tensor | None = None  # per chunk (set by init): seed - G(h0)

    def seed_codes(self, images: torch.Tensor) -> torch.Tensor:
        """(N, D) the codes the encoder reads from ``images``: where each row's ascent starts."""
        layer = self.generator.encoder_layer
        codes = encode_all(as_model(self.encoder), layer, images).float()
        if codes.shape[1] != self.generator.code_dim:
            raise DgnamError(f"the encoder's {layer!r} has {codes.shape[1]} values but the generator's code has "
                             f"{self.generator.code_dim}; pass the encoder the generator inverts")
        return codes

    def init(self, seeds: Sequence[int], rows: torch.Tensor, device: torch.device) -> torch.Tensor:
        images = self.seed_images
        images = (images.expand(len(seeds), *images.shape) if images.ndim == 3 else images[rows.cpu()]).to(device)
        codes = self.seed_codes(images)
        with torch.no_grad():  # the chunk's fixed part: what makes G(h0) show exactly its seed
            self._offset = images - super().images(codes)
        return codes

    def images(self, params: torch.Tensor) -> torch.Tensor:
        if self._offset is None or len(self._offset) != len(params):
            raise DgnamError("SeededCode.images needs init() of the same rows first (the loop calls it per chunk)")
        return (self._offset + super().images(params)).clamp(0, 1)

    def default_optimizer(self) -> Optimizer:
        """DGN-AM's normalised ascent with small steps and no decay: the image stays near its seed."""
        scale = self.code_scale()
        return NormalizedAscent(lr_start=SEEDED_LR * scale, lr_end=1e-10 * scale, l2_decay=1.0)

    def continue_from(self, params: torch.Tensor, images: torch.Tensor) -> Parametrization:
        return Pixels(images.shape[-1], init_images=images)  # the image, not the code, carries the seed's detail

    def to(self, device: torch.device) -> SeededCode:
        super().to(device)
        if isinstance(self.encoder, torch.nn.Module):
            self.encoder.to(device)
        return self

    def describe(self) -> dict:
        return {**super().describe(), "param": "SeededCode", "init": "seed images"}


class Pixels(Parametrization):
    """Plain pixels, clipped to [0, 1] after each step; starts from grey plus small per-row noise,
    or from ``init_images`` ((3, H, W) for every row or (N, 3, H, W), one per row), e.g. to refine them."""

    name = "pixel"

    def __init__(self, image_size: int, init_std: float = 0.05, init_images: torch.Tensor | None = None) -> None:
        super().__init__(image_size)
        self.init_std = init_std
        if init_images is not None and tuple(init_images.shape[-3:]) != (3, image_size, image_size):
            raise DgnamError(f"init images have shape {tuple(init_images.shape)}; expected (N, 3, {image_size}, "
                             f"{image_size})")
        self.init_images = init_images

    def init(self, seeds: Sequence[int], rows: torch.Tensor, device: torch.device) -> torch.Tensor:
        s = self.image_size
        if self.init_images is not None:
            images = self.init_images.detach().float()
            images = images.expand(len(seeds), 3, s, s) if images.ndim == 3 else images[rows.cpu()]
            return images.clamp(0, 1).clone().to(device)
        return (0.5 + self.init_std * _row_randn(seeds, (3, s, s))).clamp(0, 1).to(device)

    def images(self, params: torch.Tensor) -> torch.Tensor:
        return params

    @torch.no_grad()
    def project(self, params: torch.Tensor) -> None:
        params.clamp_(0, 1)

    def default_optimizer(self) -> Optimizer:
        return Adam(lr=0.01)

    def describe(self) -> dict:
        return {"param": "Pixels", "image_size": self.image_size}


# Lucid's colour decorrelation: square root of the ImageNet colour covariance (SVD), column-normalised.
_COLOR_CORRELATION_SVD_SQRT = np.asarray([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]],
                                         dtype=np.float32)
COLOR_CORRELATION = torch.from_numpy(
    _COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(_COLOR_CORRELATION_SVD_SQRT, axis=0)))


class Fourier(Parametrization):
    """Fourier-space image with a 1/f^decay spectrum scale and decorrelated colour, squashed by a sigmoid
    (Olah et al. 2017, Lucid's ``fft_image`` + ``to_valid_rgb``)."""

    name = "fourier"

    def __init__(self, image_size: int, decay_power: float = 1.0, init_std: float = 0.01) -> None:
        super().__init__(image_size)
        self.init_std = init_std
        s = image_size
        fy = np.fft.fftfreq(s)[:, None]
        fx = np.fft.rfftfreq(s)[None, :]
        freqs = np.sqrt(fx * fx + fy * fy)
        self.scale = torch.from_numpy(1.0 / np.maximum(freqs, 1.0 / s) ** decay_power).float()

    def init(self, seeds: Sequence[int], rows: torch.Tensor, device: torch.device) -> torch.Tensor:
        return (self.init_std * _row_randn(seeds, (3, *self.scale.shape, 2))).to(device)

    def images(self, params: torch.Tensor) -> torch.Tensor:
        spectrum = torch.view_as_complex(params.float().contiguous()) * self.scale.to(params.device)
        image = torch.fft.irfft2(spectrum, s=(self.image_size, self.image_size), norm="ortho") / 4.0
        image = torch.einsum("bchw,dc->bdhw", image, COLOR_CORRELATION.to(image.device))
        return torch.sigmoid(image)

    def default_optimizer(self) -> Optimizer:
        return Adam(lr=0.05)

    def describe(self) -> dict:
        return {"param": "Fourier", "image_size": self.image_size}


def top_images(pool: torch.Tensor, values: torch.Tensor, restarts: int, fix: str) -> torch.Tensor:
    """Seed images, unit-major as :func:`~dgnam.engine.preferred.visualize` orders rows: for each unit (column of
    ``values``, (N, U) over the ``pool``'s N images), its ``restarts`` highest images, highest first.
    ``fix``: what the one-line error offers when the pool has fewer images than restarts."""
    if len(pool) < restarts:
        raise DgnamError(f"seeded starts need at least {restarts} real image(s) but got {len(pool)}; {fix}")
    return pool[values.topk(restarts, dim=0).indices.T.flatten()]


def default_steps(seeded: bool) -> int:
    """The steps a DGN-AM run takes unless told otherwise: a seeded start's (:class:`SeededCode`) or the
    paper's, for callers that must size a run before its parametrisation exists."""
    return SeededCode.default_steps if seeded else Parametrization.default_steps


#: The parametrisations by the name users give them (``--param``).
PARAMETRIZATIONS: dict[str, type[Parametrization]] = {cls.name: cls for cls in (GeneratorCode, Pixels, Fourier)}


def make_param(name: str, generator: UpconvGenerator | None = None, image_size: int | None = None,
               sampler: CodeSampler | None = None, **options) -> Parametrization:
    """The parametrisation registered as ``name``: ``dgn`` (needs a generator; ``sampler`` draws its start
    codes), ``pixel`` or ``fourier`` (at ``image_size``, or the generator's size). ``options`` go to the class.

    Example: ``make_param("dgn", G, bound_k=1.0)``, ``make_param("pixel", image_size=32)``
    """
    if name not in PARAMETRIZATIONS:
        raise DgnamError(f"unknown param {name!r}; choose {', '.join(PARAMETRIZATIONS)}")
    return PARAMETRIZATIONS[name].build(generator, image_size, sampler=sampler, **options)
