"""What the ``dgnam`` commands share: the shipped defaults, argument types and groups, loading models,
generators and images, the code prior, output folders and tables.

Every command module reads its helpers from here as ``common.<name>``; this module imports no command module.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable
from pathlib import Path

import torch

import dgnam
from dgnam.cli.validate import existing_file, existing_folder, generator_name, output
from dgnam.engine.param import PAPER_STEPS, SEEDED_STEPS
from dgnam.errors import DgnamError, terminal_safe
from dgnam.images import list_images, load_images, spread
from dgnam.io import atomic_write_json, atomic_write_text, fit_name, name_max, safe_name, shipped
from dgnam.nets.layout import LAYOUT_HELP, parse_layout
from dgnam.nets.model import Model, describe_layers, eval_mode, parse_layer, resolve_layer
from dgnam.nets.zoo import load_model
from dgnam.prior.generator import UpconvGenerator

DEFAULT_GENERATOR = shipped("cifar10/generator.pt")
DEFAULT_MODEL = shipped("cifar10/encoder.pt")
DEFAULT_SAMPLER = shipped("cifar10/code_sampler.pt")
DEFAULT_JUDGES = shipped("cifar10/judges")
DEFAULT_JUDGE = DEFAULT_JUDGES / "robust_resnet.pt"  # the judge whose verdict on realism counts


# --- argument types and groups ------------------------------------------------------------------
def comma_list(text: str, what: str) -> list[str]:
    """``"a, b,a"`` -> ``["a", "b"]``; ``what`` (the option) names the error."""
    items = list(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))
    if not items:
        raise DgnamError(f"{what} is empty; give a comma-separated list")
    return items


def comma_choices(text: str, what: str, allowed) -> list[str]:
    """:func:`comma_list` whose every item must be one of ``allowed`` (e.g. ``--methods``)."""
    items = comma_list(text, what)
    unknown = [item for item in items if item not in allowed]
    if unknown:
        raise DgnamError(f"unknown {what.lstrip('-').rstrip('s')} {unknown[0]!r} in {what}; "
                         f"choose from {', '.join(allowed)}")
    return items


def rgb_floats(text: str) -> list[float]:
    """argparse type: ``"0.5,0.5,0.5"`` -> three floats (R, G, B)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"{text!r} needs 3 values (R,G,B)")
    return values


def position(text: str) -> tuple[int, int]:
    """argparse type: ``"3,4"`` -> (row, column)."""
    try:
        y, x = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a position like 3,3 (row,column)") from None
    return y, x


def add_model_args(p: argparse.ArgumentParser) -> None:
    """``--model`` with its preprocessing (``--mean``, ``--std``, ``--input-size``) and ``--device``."""
    p.add_argument("--model", default=None,
                   help="torchvision:NAME[:WEIGHTS], timm:NAME[:none], hf:NAME_OR_FOLDER[:none], FILE.py:factory, "
                        "module:factory, a dgnam .pt or TorchScript file (default: the shipped CIFAR-10 classifier); "
                        "timm and Hugging Face models bring their own mean, std and input size")
    p.add_argument("--mean", type=rgb_floats, default=None,
                   help="normalisation mean R,G,B (the model then gets normalised input)")
    p.add_argument("--std", type=rgb_floats, default=None, help="normalisation std R,G,B")
    p.add_argument("--input-size", type=int, default=None, help="the model's input side in pixels (images are resized)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")


def add_unit_args(p: argparse.ArgumentParser, units_help: str, units_required: bool = False,
                  spatial_mean: bool = True) -> None:
    """``--layer`` and ``--units``, then how a unit of a spatial or token layer is read: ``--position``,
    ``--spatial-mean`` (with ``spatial_mean``), ``--layout`` and ``--token``."""
    p.add_argument("--layer", default="output", help="layer name (see `dgnam layers`); default: the model output")
    p.add_argument("--units", default=None, required=units_required, help=units_help)
    p.add_argument("--position", type=position, default=None,
                   help="row,column of a conv or channels-last unit, or of a token layer's patch (default: centre)")
    if spatial_mean:
        p.add_argument("--spatial-mean", action="store_true",
                       help="read a spatial unit as its channel's mean over all positions (token layers: patch "
                            "tokens)")
    add_layout_arg(p, token=True)


def add_layout_arg(p: argparse.ArgumentParser, token: bool = False) -> None:
    """``--layout`` (how ``--layer`` holds its units, when detection cannot tell) and, with ``token``,
    ``--token`` (where a token layer's neuron is read)."""
    p.add_argument("--layout", default=None, type=_layout_type,
                   help=f"how --layer holds its units: {LAYOUT_HELP} (default: detected, see `dgnam layers`)")
    if token:
        p.add_argument("--token", default=None, type=token_arg,
                       help="token layers: read the neuron at this token index, 'cls' or 'mean' (over the patch "
                            "tokens); default: the CLS token when the layer has one, else the mean")


def _layout_type(text: str):
    try:
        return parse_layout(text)
    except DgnamError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def token_arg(text: str) -> int | str:
    """argparse type: ``cls``, ``mean`` or a token index."""
    if text in ("cls", "mean"):
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a token: give cls, mean or an index >= 0")
    return value


def notice(text: str) -> None:
    """One line on stderr about something dgnam did that the user did not ask for (how to silence it included)."""
    print(f"dgnam: notice: {text}", file=sys.stderr)


def add_generator_arg(p: argparse.ArgumentParser) -> None:
    """``--generator`` (default: the shipped one, see :func:`generator_path`)."""
    p.add_argument("--generator", default=None, type=generator_name,
                   help="generator checkpoint, or a shipped one by name: conv (the default CIFAR-10 prior) or fc6 (the "
                        "paper's fc6-code prior)")


def add_data_limit_arg(p: argparse.ArgumentParser, default: int | None) -> None:
    """``--data-limit``: read at most this many images of ``--data`` (``default`` None: all of them); checked by
    :func:`dgnam.cli.validate.data_limit`."""
    said = "all" if default is None else str(default)
    p.add_argument("--data-limit", type=int, default=default,
                   help=f"read at most this many images of --data, spread over the folder (default: {said})")


def add_code_prior_arg(p: argparse.ArgumentParser, default: str) -> None:
    """``--code-prior`` (``default``: what it is when not given, for the help)."""
    p.add_argument("--code-prior", type=float, default=None, metavar="EPS",
                   help=f"dgn only: add EPS x PPGN's code prior, pulling h towards what the generator's encoder reads "
                        f"from G(h) (fewer blown-out pixels, lower activation); default: {default}; 0: off (the "
                        f"paper's DGN-AM)")


def add_steps_arg(p: argparse.ArgumentParser, default: int | None = PAPER_STEPS, note: str = "") -> None:
    """``--steps`` (``default`` None: the start's default, :func:`dgnam.engine.param.default_steps`; ``note``
    ends the help)."""
    if default is None:
        said = f"{PAPER_STEPS} from noise, the paper's; {SEEDED_STEPS} seeded from images"
    else:
        said = f"{default}, the paper's" if default == PAPER_STEPS else str(default)
    p.add_argument("--steps", type=int, default=default, help=f"optimisation steps (default {said}{note})")


def add_seed_arg(p: argparse.ArgumentParser) -> None:
    """``--seed``: the first image's seed (restart r gets seed + r)."""
    p.add_argument("--seed", type=int, default=0)


def add_run_args(p: argparse.ArgumentParser, quiet: bool = True, steps: bool = True) -> None:
    """``--steps`` (unless the command declares its own), ``--seed``, ``--out`` (a fresh directory) and, with
    ``quiet``, ``--quiet``."""
    if steps:
        add_steps_arg(p)
    add_seed_arg(p)
    add_output_args(p, quiet=quiet)


def add_output_args(p: argparse.ArgumentParser, quiet: bool = True, synthesis: bool = False) -> None:
    """``--out`` and, with ``quiet``, ``--quiet``; with ``synthesis``, ``--fixed-batch`` and ``--fp32`` too, as
    ``dgnam synthesize`` and ``dgnam probe`` take them."""
    p.add_argument("--out", default=None,
                   help="output directory (must not exist or be empty; default: dgnam-runs/<time>)")
    if synthesis:
        p.add_argument("--fixed-batch", action="store_true",
                       help="pad every synthesis batch to --batch-size so any single image re-runs bit for bit on "
                            "its own")
    if quiet:
        p.add_argument("--quiet", action="store_true", help="no progress output")
    if synthesis:
        p.add_argument("--fp32", action="store_true", help="on CUDA, no bf16 autocast: full float32 (slower)")


def add_synthesis_args(p: argparse.ArgumentParser, restarts: int, restarts_help: str,
                       code_prior: str | None = "the generator's recommended one (metadata code_prior, see "
                                                 "`dgnam stats`)",
                       steps: int | None = PAPER_STEPS, steps_note: str = "") -> None:
    """DGN-AM's settings: ``--code-prior`` (``code_prior``: its default, for the help; None: the command has
    no code prior), ``--steps`` (default ``steps``, see :func:`add_steps_arg`), ``--restarts`` (default
    ``restarts``), ``--seed`` and ``--batch-size``."""
    if code_prior is not None:
        add_code_prior_arg(p, code_prior)
    add_steps_arg(p, steps, steps_note)
    p.add_argument("--restarts", type=int, default=restarts, help=restarts_help)
    add_seed_arg(p)
    add_batch_size_arg(p)


def add_batch_size_arg(p: argparse.ArgumentParser, default: int = 64) -> None:
    """``--batch-size``: images per synthesis batch."""
    p.add_argument("--batch-size", type=int, default=default, help="images per synthesis batch")


# --- models, generators, images -----------------------------------------------------------------
def load_model_from_args(args: argparse.Namespace, device: torch.device, spec: str | None = None) -> Model:
    """The model of ``--model`` (or ``spec``, for a command given several) with ``--input-size``, ``--mean`` and
    ``--std`` (default: the shipped classifier), random weights built under ``--seed``, and ``--layer``'s
    ``--layout`` declared when given."""
    spec = spec if spec is not None else args.model
    if spec is None and not DEFAULT_MODEL.is_file():
        raise DgnamError(f"the shipped classifier {DEFAULT_MODEL} is missing; reinstall dgnam or pass --model")
    model = load_model(spec or str(DEFAULT_MODEL), input_size=args.input_size, mean=args.mean, std=args.std,
                       device=device, seed=getattr(args, "seed", 0))
    if getattr(args, "layout", None) is not None:
        if getattr(args, "layer", None) is None:
            raise DgnamError("--layout declares how --layer holds its units; pass --layer too")
        model.layouts[args.layer] = args.layout
    return model


def generator_path(arg: str | None) -> str:
    """``--generator``, or the shipped generator when it is not given."""
    return str(Path(arg) if arg else DEFAULT_GENERATOR)


def require_input_size(model: Model) -> None:
    """A model whose input size neither its file, ``--input-size`` nor a generator gives cannot be read."""
    if model.input_size is None:
        raise DgnamError("the model's input size is unknown; pass --input-size")


def fit_to_generator(model: Model, generator: UpconvGenerator | None, quiet: bool = False) -> None:
    """Give the model the generator's image size if it has none; crop (not resize) larger generator images.
    A size mismatch is stated in one notice (unless ``quiet``): what is resized, how, and how to avoid it."""
    if model.input_size is None:
        model.input_size = generator.image_size if generator is not None else None
    require_input_size(model)
    if generator is None or generator.image_size == model.input_size:
        return
    g, m = generator.image_size, model.input_size
    if g > m:
        model.fit = "crop"  # the paper: centre crop of G's output (256 -> 227/224), not a resize
    if not quiet:
        how = f"centre-cropped to {m}x{m}" if g > m else f"upsampled {m / g:.3g}x (bilinear) to {m}x{m}"
        notice(f"the generator makes {g}x{g} images; {model.name} takes {m}x{m}, so each is {how} before the "
               f"model sees it (images are saved at {g}x{g}); pass --input-size {g} to feed them as they are, "
               f"or a generator trained at {m} px (--quiet hides notices)")


def layer_size(model: Model, layer: str, device: torch.device) -> int:
    """Number of units of ``layer`` as its layout reads them (fc units, conv or channels-last channels, a token's
    features); validates the name, the call index, the input size and that the layout can be read."""
    zeros = torch.zeros(1, 3, model.input_size, model.input_size, device=device)
    with torch.no_grad(), eval_mode(model):
        if layer == "output":
            return model.run(zeros, ["output"])["output"].shape[1]
        model.run(zeros, ["output"])  # a wrong input size fails here with its own one-line error
        name, call = parse_layer(layer)
        info = {i.name: i for i in describe_layers(model)}.get(name)
    if info is None:
        resolve_layer(model.module, layer)  # raises with the closest names
    if info.calls == 0:
        raise DgnamError(f"layer {name!r} does not run in {model.name}'s forward pass; pick one from `dgnam layers`")
    if call >= info.calls:
        raise DgnamError(f"layer {name!r} runs {info.calls} time(s) per forward; use {name}@0 to "
                         f"{name}@{max(info.calls - 1, 0)}")
    shape = info.call_shapes[call]
    if not shape:
        raise DgnamError(f"layer {layer!r} does not return a tensor; pick another from `dgnam layers`")
    layout = model.layout(layer)
    layout.check(shape, layer)
    return layout.n_units(shape)


def image_files(folder: Path, limit: int | None) -> list[Path]:
    """The images under ``folder`` (``--data``), at most ``limit`` of them spread over the whole tree."""
    existing_folder(str(folder), "--data")
    return spread(list_images(folder, "--data folder"), limit)


def read_image(path: str, size: int) -> torch.Tensor:
    """(3, size, size) RGB [0, 1] from an image file, with one-line errors for a missing or unreadable file."""
    existing_file(path, "--image")
    return load_images([Path(path)], size)[0]


# --- the generator's encoder and the code prior -------------------------------------------------
def resolve_shipped(spec: str) -> str:
    """Generators name their encoder as trained, often relative to the repository root
    (``checkpoints/cifar10/encoder.pt``): such a path that does not exist from here names the shipped file."""
    parts = Path(spec).parts
    if ":" in spec or Path(spec).exists() or parts[:1] != ("checkpoints",):
        return spec
    candidate = shipped("/".join(parts[1:]))
    return str(candidate) if candidate.exists() else spec


def same_file(spec: str) -> str:
    """A comparable key for a model spec: the resolved path of a file, the spec itself otherwise."""
    path = Path(spec)
    return str(path.resolve()) if spec and path.is_file() else spec


def load_code_encoder(generator: UpconvGenerator, device: torch.device, encoder_path: str | None = None,
                      fix: str = "pass --code-prior 0 (no code prior), or place the encoder at that path") -> Model:
    """The encoder whose ``generator.encoder_layer`` the generator inverts (its own, unless a path is given).
    ``fix``: what the command offers when the encoder the generator names is missing (``dgnam stats``:
    ``--encoder``)."""
    if encoder_path is None:
        if not generator.encoder:
            raise DgnamError(f"the generator does not name its encoder (metadata 'encoder'); {fix}")
        spec = resolve_shipped(generator.encoder)
        file = spec.rpartition(":")[0] if spec.rpartition(":")[0].endswith(".py") else spec
        if file.endswith((".py", ".pt", ".pth", ".ts", ".jit")) and not Path(file).is_file():
            # load_model would blame --model, which the user did not give for this
            raise DgnamError(f"the generator's encoder '{file}' does not exist; {fix}")
        encoder_path = spec
    encoder = load_model(resolve_shipped(encoder_path), device=device)
    if encoder.input_size is None:  # a factory model: it sees what the generator makes
        encoder.input_size = generator.image_size
    return encoder


def recommended_code_prior(requested: float | None, generator: UpconvGenerator | None,
                           model_spec: str | None = None, quiet: bool = False) -> float:
    """``--code-prior``, or when it is not given the generator's recommended one (metadata ``code_prior``,
    set with ``dgnam stats --code-prior``; 0 when absent, the paper's DGN-AM).

    The recommendation was tuned for the model the generator was trained on (its encoder): given
    ``model_spec`` (``--model``, None: the shipped classifier) naming another model, it is not applied
    unless asked for, and a notice says so.
    """
    if requested is not None:
        value = requested
    else:
        value = float(generator.metadata.get("code_prior", 0.0)) if generator is not None else 0.0
        if value and model_spec is not None and not _is_generator_encoder(model_spec, generator):
            if not quiet:
                notice(f"the generator's recorded code prior ({value:g}) was tuned for its own encoder, not "
                       f"{model_spec}; it is not applied (pass --code-prior {value:g} to apply it, or "
                       f"--code-prior 0 to silence this; --quiet hides notices)")
            value = 0.0
    if not 0 <= value < float("inf"):  # also a non-finite code_prior a generator's metadata may hold
        raise DgnamError(f"--code-prior must be >= 0 and finite (0: off), got {value}")
    return value


def _is_generator_encoder(model_spec: str, generator: UpconvGenerator) -> bool:
    return bool(generator.encoder) and same_file(model_spec) == same_file(resolve_shipped(generator.encoder))


def load_code_prior_encoder(needed: float | bool, generator: UpconvGenerator | None, device: torch.device,
                            model_spec: str | None, target: Model) -> Model | None:
    """The generator's own encoder when ``needed`` (a code prior's weight > 0, or seeded starts, which read a
    seed's code with it), else None. When the target (``model_spec``, default: the shipped classifier) is
    that encoder, the target itself: one forward per step then serves both objectives."""
    if not needed:
        return None
    if (generator.encoder
            and same_file(model_spec or str(DEFAULT_MODEL)) == same_file(resolve_shipped(generator.encoder))):
        return target
    return load_code_encoder(generator, device)


# --- outputs ------------------------------------------------------------------------------------
def fresh_out_dir(out: str | None, model_name: str) -> Path:
    """Where a run goes: ``--out`` (checked again: it must not exist or be empty; through a symbolic link, its
    target), or ``dgnam-runs/<time>-<model name>``, the name cut to leave room for the ``-2``, ``-3`` ... that
    :func:`dgnam.io.publish_directory` adds when runs started in the same second take it (pass
    ``unique=out is None`` there)."""
    if out is not None:
        return output(out)
    runs = Path("dgnam-runs")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = fit_name(f"{stamp}-{safe_name(model_name)}", name_max(runs if runs.is_dir() else ".") - 8)
    path, n = runs / name, 1
    while path.exists():
        n += 1
        path = runs / f"{name}-{n}"
    return path


def wrote(what: str, where: str | Path, seconds: float | None = None) -> None:
    """The line a command ends with: what it wrote where (the path as terminal-safe text), and how long it took."""
    took = f" ({seconds:.1f}s)" if seconds is not None else ""
    print(f"wrote {what} to {terminal_safe(where)}{took}")


def print_table(rows: list[list[str]], header: list[str]) -> None:
    """A plain-text table on stdout, columns padded to their widest cell."""
    rows = [[terminal_safe(x) for x in row] for row in [header, *rows]]  # class names come from checkpoints
    widths = [max(len(x) for x in col) for col in zip(*rows)]
    for row in rows:
        print("  ".join(x.ljust(w) for x, w in zip(row, widths)))


def short_path(path: str) -> str:
    """``../data/test/cat/0000.jpg`` -> ``cat/0000.jpg``: the folder often names the class."""
    return "/".join(Path(path).parts[-2:])


def report_path(path: str | Path) -> str:
    """How a report or manifest names a file: a shipped checkpoint as ``shipped:cifar10/generator.pt``,
    the same on every machine; any other path as given."""
    try:
        return "shipped:" + Path(path).resolve().relative_to(shipped("")).as_posix()
    except ValueError:
        return str(path)


def model_report_name(spec: str | Path | None) -> str:
    """How manifests and reports name the model of ``--model``: as the user gave it, a shipped checkpoint as
    ``shipped:cifar10/encoder.pt`` (:func:`report_path`); None (not given) names the shipped classifier."""
    return report_path(spec if spec is not None else DEFAULT_MODEL)


def versions() -> dict[str, str]:
    """The versions a manifest records."""
    return {"dgnam_version": dgnam.__version__, "torch_version": torch.__version__}


def write_report(staging: Path, report: str, manifest: dict, figures: dict[str, Callable[[Path], Path]]) -> None:
    """An analysis command's output, into the staging directory that :func:`dgnam.io.write_directory` renames:
    each figure (file name -> a function that saves it there), ``report.md`` and ``manifest.json``."""
    for name, save in figures.items():
        save(staging / name)
    atomic_write_text(report, staging / "report.md")
    atomic_write_json(manifest, staging / "manifest.json")
