"""The preparation every synthesising command shares (``synthesize``, ``probe``, ``sanity``, ``unnatural``,
``compare``, ``accentuate``, ``invert``): the model, the generator fitted to it, the layer's units, the code prior and
the encoder that reads the code, built once by :func:`prepare` into a :class:`Run`.

The checks of the arguments alone are in :mod:`dgnam.cli.validate`; what is checked here needs a loaded
model or generator.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import torch

from dgnam.cli import common
from dgnam.cli import validate as check
from dgnam.engine.param import SEEDED_CODE_PRIOR
from dgnam.errors import DgnamError
from dgnam.nets.model import Model
from dgnam.prior.generator import UpconvGenerator, load_generator

# prepare(generator=...): load the generator when --param is dgn or --generator is given
WHEN_ASKED = None


@dataclass
class Run:
    """What a synthesising command works with once its arguments are loaded: the target ``model`` (fitted
    to the generator's image size), the ``generator`` (None without one), the parametrisation's name
    ``param`` (``--param``; ``dgn`` for commands without the option), the ``layer`` and its ``units``, the
    ``code_prior`` weight and the ``code_encoder`` that reads the code for it (None when not needed)."""

    model: Model
    generator: UpconvGenerator | None
    param: str
    layer: str
    units: list[int] | None
    code_prior: float
    code_encoder: Model | None
    model_spec: str | None  # --model as given (None: the shipped classifier)
    generator_spec: str | None  # --generator as given (None: the shipped generator)

    @property
    def names(self) -> dict[str, str | None]:
        """How manifests and reports name the model and the generator (``shipped:...`` for shipped files,
        anything else as given; None: no generator)."""
        return {"model": common.model_report_name(self.model_spec),
                "generator": common.report_path(common.generator_path(self.generator_spec)) if self.generator else None}


def prepare(args: argparse.Namespace, device: torch.device, *, generator: bool | None = WHEN_ASKED,
            units: str | None = "--units", all_units: bool = False,
            seeded: bool | Callable[[UpconvGenerator | None], bool] = False, own_encoder: bool = False,
            tuned: bool = True, model_spec: str | None = None, quiet: bool | None = None) -> Run:
    """Load and check what ``args`` name, in the order every command follows: the model (``--model``, or
    ``model_spec`` for a command given several), the generator (``generator``: always, never, or
    :data:`WHEN_ASKED`), the model fitted to the generator's image size, ``--layer``'s size and the units
    of the option named ``units`` (None: the command has no units; default: the first 10 of the layer,
    every unit with ``all_units``), the code prior and its encoder.

    ``seeded``: each image starts from a real one, so a code prior not given is :data:`SEEDED_CODE_PRIOR`
    and the encoder is always loaded (it reads a seed's code); a function of the generator decides it once the
    generator is loaded (and checks it can seed, :func:`check_can_seed`). ``tuned``: apply the generator's
    recommended code prior only when the target is the generator's own encoder (a notice says when it is not
    applied); False applies it to any target. ``own_encoder``: the encoder is loaded apart
    from the target even when they are the same file (a command that changes the target's weights).
    ``quiet``: no notices (default: ``--quiet``)."""
    quiet = getattr(args, "quiet", False) if quiet is None else quiet
    param = getattr(args, "param", "dgn")
    spec = model_spec if model_spec is not None else args.model
    model = common.load_model_from_args(args, device, spec)
    wanted = (param == "dgn" or bool(args.generator)) if generator is WHEN_ASKED else generator
    gen = load_generator(common.generator_path(args.generator), device) if wanted else None
    common.fit_to_generator(model, gen, quiet=quiet)
    layer = getattr(args, "layer", "output")
    chosen = _units(args, model, layer, units, all_units, device) if units is not None else None
    if callable(seeded):
        seeded = seeded(gen)
    code_prior = run_code_prior(args, gen, seeded, spec, tuned, quiet)
    if own_encoder:  # the target's weights change during the run; the prior's reader of the code must not
        encoder = common.load_code_encoder(gen, device) if code_prior else None
    elif gen is not None and (code_prior > 0 or seeded):
        encoder = common.load_code_prior_encoder(True, gen, device, spec, model)
    else:
        encoder = None
    return Run(model, gen, param, layer, chosen, code_prior, encoder, spec, args.generator)


def _units(args: argparse.Namespace, model: Model, layer: str, flag: str, all_units: bool,
           device: torch.device) -> list[int] | None:
    """The units the option ``flag`` names, checked against the layer's size; when it is not given, ``--units``
    defaults to the layer's first 10 (every unit with ``all_units``) and ``--classes`` to None (all)."""
    n_units = common.layer_size(model, layer, device)
    text = getattr(args, flag.lstrip("-").replace("-", "_"))
    if text is not None:
        of = f"layer {layer!r}" if flag == "--units" else f"{model.name}'s output"
        return check.parse_units(text, n_units, flag, of=of)
    if flag != "--units":
        return None
    return list(range(n_units if all_units else min(n_units, 10)))


def run_code_prior(args: argparse.Namespace, generator: UpconvGenerator | None, seeded: bool,
                   model_spec: str | None, tuned: bool, quiet: bool) -> float:
    """The code prior's weight: 0 without a code or without the option (``--param`` other than dgn, which
    :func:`dgnam.cli.validate.code_prior_needs_code` checks), ``--code-prior`` when given, else
    :data:`SEEDED_CODE_PRIOR` for ``seeded`` runs (chosen on two targets, so it applies to any model) or the
    generator's recommended weight (:func:`dgnam.cli.common.recommended_code_prior`; with ``tuned``, withheld
    when the target ``model_spec``, None: the shipped classifier, is not the generator's encoder)."""
    if getattr(args, "param", "dgn") != "dgn" or not hasattr(args, "code_prior"):  # no code, or no code prior
        return 0.0
    if seeded:
        return SEEDED_CODE_PRIOR if args.code_prior is None else args.code_prior
    if not tuned:
        return common.recommended_code_prior(args.code_prior, generator)
    return common.recommended_code_prior(args.code_prior, generator, model_spec or str(common.DEFAULT_MODEL), quiet)


def check_can_seed(generator: UpconvGenerator | None, what: str, fix: str) -> None:
    """Seeded starts read each seed's code with the generator's encoder at its ``encoder_layer``: a generator
    that names neither cannot seed (``what``: the option that asked for it, ``fix``: the way out)."""
    if not can_seed(generator):
        raise DgnamError(f"{what} needs the generator's encoder and encoder_layer (metadata) to read a seed's "
                         f"code; {fix}")


def can_seed(generator: UpconvGenerator | None) -> bool:
    """Whether ``generator`` names the encoder and layer that read a seed image's code."""
    return generator is not None and bool(generator.encoder) and bool(generator.encoder_layer)
