"""The ``dgnam`` command line: ``synthesize``, ``sample``, ``layers``, ``stats``.

Every user error is one line on stderr and exit code 2; nothing is written when a run fails.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import torch

import dgnam
import dgnam.cli_analysis
import dgnam.cli_evaluate
import dgnam.cli_scale
from dgnam.errors import DgnamError
from dgnam.io import shipped

DEFAULT_GENERATOR = shipped("cifar10/generator.pt")
DEFAULT_MODEL = shipped("cifar10/encoder.pt")
DEFAULT_SAMPLER = shipped("cifar10/code_sampler.pt")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


# --- argument parsing ---------------------------------------------------------------------------
def parse_units(text: str) -> list[int]:
    """``"0-9,15"`` -> [0, 1, ..., 9, 15]."""
    units: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(p) for p in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                units += range(lo, hi + 1)
            elif part:
                units.append(int(part))
    except ValueError:
        raise DgnamError(f"--units {text!r} is not a list like 0-9,15") from None
    if not units:
        raise DgnamError("--units is empty; give e.g. 0-9,15")
    return list(dict.fromkeys(units))


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"{text!r} needs 3 values (R,G,B)")
    return values


def _position(text: str) -> tuple[int, int]:
    try:
        y, x = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a position like 3,3 (row,column)") from None
    return y, x


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DgnamError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return torch.device(name)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="torchvision:NAME[:WEIGHTS], FILE.py:factory, module:factory, a dgnam .pt or TorchScript "
                        "file (default: the shipped CIFAR-10 classifier)")
    p.add_argument("--mean", type=_floats, default=None, help="normalisation mean R,G,B (the model then gets normalised input)")
    p.add_argument("--std", type=_floats, default=None, help="normalisation std R,G,B")
    p.add_argument("--input-size", type=int, default=None, help="the model's input side in pixels (images are resized)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2), like every other dgnam error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dgnam", description="Synthesise preferred inputs of neurons (DGN-AM).")
    parser.add_argument("--version", action="version", version=f"dgnam {dgnam.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synthesize", help="images that maximise units of a model",
                       description="Synthesise images that maximise chosen units. With no arguments: the shipped "
                                   "CIFAR-10 classifier's 10 class logits through the shipped generator.")
    _add_model_args(s)
    s.add_argument("--layer", default="output", help="layer name (see `dgnam layers`); default: the model output")
    s.add_argument("--units", default=None, help="e.g. 0-9,15 (default: all units of the layer, at most 10)")
    s.add_argument("--position", type=_position, default=None, help="row,column of a conv unit (default: centre)")
    s.add_argument("--param", choices=["dgn", "pixel", "fourier"], default="dgn", help="image parametrisation")
    s.add_argument("--generator", default=None, help="generator checkpoint (default: the shipped CIFAR-10 one)")
    s.add_argument("--init-sampler", default=None, metavar="SAMPLER",
                   help="start each image from a code sampler's code for its seed (dgn only; default: h ~ N(0, 1))")
    s.add_argument("--code-prior", type=float, default=None, metavar="EPS",
                   help="dgn only: add EPS x PPGN's code prior, pulling h towards what the generator's encoder reads "
                        "from G(h) (fewer blown-out pixels, lower activation); default: the generator's recommended "
                        "EPS (metadata code_prior); 0: the paper's DGN-AM")
    s.add_argument("--steps", type=int, default=200)
    s.add_argument("--restarts", type=int, default=2, help="images per unit (seeds seed, seed+1, ...)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--data", default=None, help="folder of real images: report activations relative to each unit's max on them")
    s.add_argument("--data-limit", type=int, default=2000, help="at most this many real images from --data")
    s.add_argument("--out", default=None, help="output directory (must not exist or be empty; default: dgnam-runs/<time>)")
    s.add_argument("--fixed-batch", action="store_true",
                   help="pad every batch to --batch-size so any single image re-runs bit for bit on its own")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--fp32", action="store_true", help="on CUDA, no bf16 autocast: full float32 (slower)")

    lay = sub.add_parser("layers", help="list a model's layers with output shapes and parameter counts")
    _add_model_args(lay)

    st = sub.add_parser("stats", help="recompute a generator's code bounds from a folder of real images, "
                                      "or set a new k on the statistics it stores")
    st.add_argument("--generator", required=True)
    st.add_argument("--data", default=None, help="folder of real images (ImageFolder tree or flat); without it, "
                                                 "the generator's stored per-unit mean and std are kept and only k changes")
    st.add_argument("--encoder", default=None, help="encoder checkpoint (default: the one named in the generator)")
    st.add_argument("--k", type=float, default=3.0, help="bound = mean + k * std (paper: 3)")
    st.add_argument("--code-prior", type=float, default=None, metavar="EPS",
                    help="also record EPS as this generator's recommended code prior for synthesis (0: the paper's "
                         "DGN-AM; default: keep what it records)")
    st.add_argument("--out", required=True, help="where to write the generator with new bounds (must not exist)")
    st.add_argument("--data-limit", type=int, default=50000)
    st.add_argument("--device", default="auto")

    sm = sub.add_parser("sample", help="samples of a generator prior: G(h) for codes from a trained code sampler",
                        description="Draw codes from a trained code sampler (python -m train.code_sampler) and "
                                    "write G(code) as one PNG grid.")
    sm.add_argument("--generator", default=None, help="generator checkpoint (default: the shipped CIFAR-10 one)")
    sm.add_argument("--sampler", default=None, help="code sampler checkpoint (default: the shipped CIFAR-10 one)")
    sm.add_argument("--n", type=int, default=None,
                    help="number of samples (default 64); with a class-conditional sampler, samples per class, "
                         "one row per class (default 8)")
    sm.add_argument("--classes", default=None, metavar="NAMES",
                    help="class-conditional samplers only: comma-separated class names or indices "
                         "(default: every class)")
    sm.add_argument("--seed", type=int, default=0, help="the same seed gives the same samples")
    sm.add_argument("--out", required=True, help="PNG file to write (must not exist)")
    sm.add_argument("--device", default="auto")

    s.set_defaults(handler=cmd_synthesize)
    sm.set_defaults(handler=cmd_sample)
    lay.set_defaults(handler=cmd_layers)
    st.set_defaults(handler=cmd_stats)
    # Commands that live in their own modules register here: each module's add_commands(sub)
    # adds its subparsers and sets handler=. (one line per module)
    dgnam.cli_evaluate.add_commands(sub)
    dgnam.cli_scale.add_commands(sub)
    dgnam.cli_analysis.add_commands(sub)
    return parser


# --- helpers ------------------------------------------------------------------------------------
def _load_model(args, device: torch.device) -> dgnam.Model:
    from dgnam.nets.zoo import load_model

    spec = args.model or str(DEFAULT_MODEL)
    if args.model is None and not DEFAULT_MODEL.is_file():
        raise DgnamError(f"the shipped classifier {DEFAULT_MODEL} is missing; reinstall dgnam or pass --model")
    return load_model(spec, input_size=args.input_size, mean=args.mean, std=args.std, device=device)


def fit_to_generator(model: dgnam.Model, generator) -> None:
    """Give the model the generator's image size if it has none; crop (not resize) larger generator images."""
    if model.input_size is None:
        model.input_size = generator.image_size if generator is not None else None
    if model.input_size is None:
        raise DgnamError("the model's input size is unknown; pass --input-size")
    if generator is not None and generator.image_size > model.input_size:
        model.fit = "crop"  # the paper: centre crop of G's output (256 -> 227/224), not a resize


def _image_files(folder: Path, limit: int) -> list[Path]:
    if not folder.is_dir():
        raise DgnamError(f"--data folder '{folder}' does not exist; point it at a folder of images")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DgnamError(f"--data folder '{folder}' holds no images (.png/.jpg)")
    if len(files) > limit:  # spread the sample over all classes of an ImageFolder tree
        step = len(files) / limit
        files = [files[int(i * step)] for i in range(limit)]
    return files


def load_images(files: list[Path], size: int) -> torch.Tensor:
    """RGB [0, 1] tensor (N, 3, size, size) from image files (resized if needed)."""
    import numpy as np
    from PIL import Image

    arrays = []
    for f in files:
        try:
            with Image.open(f) as im:
                im = im.convert("RGB")
                if im.size != (size, size):
                    im = im.resize((size, size), Image.BICUBIC)
                arrays.append(np.asarray(im))
        except OSError as exc:
            raise DgnamError(f"cannot read image '{f}' ({exc}); remove or fix it") from None
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255


def _real_unit_max(model, layer, units, position, images: torch.Tensor, device, batch_size: int) -> list[float]:
    """Max over real images of each unit's activation (the same quantity the objective maximises)."""
    objectives = [dgnam.unit(layer, u, model=model, position=position) for u in units]
    best = torch.full((len(units),), -float("inf"))
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            acts = {(model, layer): model.run(images[start:start + batch_size].to(device), [layer])[layer]}
            values = torch.stack([obj(acts).cpu() for obj in objectives], dim=1)
            best = torch.maximum(best, values.max(0).values)
    return best.tolist()


def _layer_size(model: dgnam.Model, layer: str, device: torch.device) -> int:
    """Number of units (fc) or channels (conv) of ``layer``; validates the name, the call index and the input size."""
    from dgnam.nets.model import parse_layer

    zeros = torch.zeros(1, 3, model.input_size, model.input_size, device=device)
    with torch.no_grad():
        if layer == "output":
            return model.run(zeros, ["output"])["output"].shape[1]
        model.run(zeros, ["output"])  # a wrong input size fails here with its own one-line error
        name, call = parse_layer(layer)
        info = {i.name: i for i in dgnam.describe_layers(model)}.get(name)
    if info is None:
        from dgnam.nets.model import resolve_layer
        resolve_layer(model.module, layer)  # raises with the closest names
    if info.calls == 0:
        raise DgnamError(f"layer {name!r} does not run in {model.name}'s forward pass; pick one from `dgnam layers`")
    if call >= info.calls:
        raise DgnamError(f"layer {name!r} runs {info.calls} time(s) per forward; use {name}@0 to {name}@{max(info.calls - 1, 0)}")
    shape = info.call_shapes[call]
    if not shape:
        raise DgnamError(f"layer {layer!r} does not return a tensor; pick another from `dgnam layers`")
    return shape[0]


def _fresh_out_dir(out: str | None, model_name: str) -> Path:
    if out is None:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path("dgnam-runs") / f"{stamp}-{model_name}"
        n = 1
        while path.exists():
            n += 1
            path = Path("dgnam-runs") / f"{stamp}-{model_name}-{n}"
        return path
    path = Path(out)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise DgnamError(f"--out '{path}' exists and is not empty; choose a new directory (runs never overwrite)")
    return path


def _print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in [header, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))


# --- commands -----------------------------------------------------------------------------------
def prepare_synthesis(args, device: torch.device):
    """The loading and checks of ``synthesize`` (and ``synthesize-sharded``): model, generator (or None),
    validated units, class names (output layer only) and the real images of ``--data`` (or None)."""
    model = _load_model(args, device)
    generator = None
    if args.param == "dgn" or args.generator:
        generator = dgnam.load_generator(Path(args.generator) if args.generator else DEFAULT_GENERATOR, device)
    fit_to_generator(model, generator)
    layer = args.layer
    n_units = _layer_size(model, layer, device)
    if args.position is not None and layer == "output":
        raise DgnamError("--position applies to conv layers; the model output has no spatial positions")
    units = parse_units(args.units) if args.units else list(range(min(n_units, 10)))
    bad = [u for u in units if not 0 <= u < n_units]
    if bad:
        raise DgnamError(f"unit {bad[0]} is out of range for layer {layer!r}, which has {n_units} units (valid: 0-{n_units - 1})")
    classes = getattr(model, "classes", []) if layer == "output" else []
    real_images = load_images(_image_files(Path(args.data), args.data_limit), model.input_size) if args.data else None
    return model, generator, units, classes, real_images


def load_init_sampler(args, device: torch.device):
    """The code sampler named by ``--init-sampler``, or None."""
    from dgnam.prior.sampler import load_code_sampler

    return load_code_sampler(args.init_sampler, device) if args.init_sampler else None


def resolve_code_prior(args, generator) -> float:
    """``--code-prior``, or when it is not given the generator's recommended one (metadata ``code_prior``,
    set with ``dgnam stats --code-prior``; 0 when absent, the paper's DGN-AM). Stored back in ``args``."""
    explicit = args.code_prior is not None
    value = args.code_prior if explicit else float((getattr(generator, "metadata", None) or {}).get("code_prior", 0.0))
    if not value >= 0:
        raise DgnamError(f"--code-prior must be >= 0 (0: off), got {value}")
    if getattr(args, "param", "dgn") != "dgn":
        if explicit and value:
            raise DgnamError(f"--code-prior applies to --param dgn (a code), not {args.param!r}; drop it")
        value = 0.0
    args.code_prior = value
    return value


def _same_file(spec: str) -> str:
    """A comparable key for a model spec: the resolved path of a file, the spec itself otherwise."""
    path = Path(spec)
    return str(path.resolve()) if spec and path.is_file() else spec


def load_code_prior_encoder(args, generator, device: torch.device, target: dgnam.Model | None = None):
    """The encoder for the code prior (the generator's own), or None when the prior is off. When the
    target is that encoder, the target itself: one forward per step then serves both objectives."""
    if not resolve_code_prior(args, generator):
        return None
    if target is not None and generator.encoder and \
            _same_file(args.model or str(DEFAULT_MODEL)) == _same_file(_resolve_shipped(generator.encoder)):
        return target
    return load_code_encoder(generator, device)


def cmd_synthesize(args) -> int:
    from dgnam.engine.param import make_param
    from dgnam.grid import save_png
    from dgnam.io import atomic_write_json, write_directory

    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # every rank would do the whole job and race on --out
        raise DgnamError("`dgnam synthesize` runs on one process; under torchrun use `dgnam synthesize-sharded`")
    device = _device(args.device)
    if args.steps < 1 or args.restarts < 1 or args.batch_size < 1:
        raise DgnamError("--steps, --restarts and --batch-size must be >= 1")
    model, generator, units, classes, real_images = prepare_synthesis(args, device)
    layer = args.layer
    out_dir = _fresh_out_dir(args.out, model.name)

    param = make_param(args.param, generator, model.input_size, load_init_sampler(args, device))
    code_encoder = load_code_prior_encoder(args, generator, device, model)
    transforms = dgnam.engine.probe.baseline_transforms() if args.param != "dgn" else []
    result = dgnam.visualize(model, units, layer=layer, generator=generator, param=param, restarts=args.restarts,
                             seed=args.seed, steps=args.steps, position=args.position, transforms=transforms,
                             batch_size=args.batch_size, device=device, amp=device.type == "cuda" and not args.fp32,
                             progress=not args.quiet, unit_names=classes or None, fixed_batch=args.fixed_batch,
                             code_prior=args.code_prior, code_encoder=code_encoder)
    relative = None
    if real_images is not None:
        unit_max = _real_unit_max(model, layer, units, args.position, real_images, device, args.batch_size)
        by_unit = dict(zip(units, unit_max))
        # None where the unit never fires on real images (a ratio to <= 0 means nothing).
        relative = [v / by_unit[u] if by_unit[u] > 0 else None for u, v in zip(result.extra["unit"], result.values.tolist())]

    def write(staging: Path) -> None:
        entries = []
        for i in range(len(result)):
            u, r, s = result.extra["unit"][i], result.extra["restart"][i], result.seeds[i]
            name = f"images/{_safe(layer)}_unit{u:04d}_restart{r}_seed{s}.png"
            save_png(result.images[i], staging / name)
            entry = {"file": name, "layer": layer, "unit": u, "restart": r, "seed": s,
                     "activation": float(result.values[i]), "label": result.labels[i],
                     "start_activation": float(result.history[0, i])}
            if relative is not None:
                entry["activation_relative_to_real_max"] = relative[i]
            entries.append(entry)
        captions = [f"{lab} {v:.1f}" for lab, v in zip(result.labels, result.values.tolist())]
        result.save_grid(staging / "grid.png", ncol=args.restarts * min(len(units), max(1, 10 // args.restarts)),
                         captions=captions)
        settings = {"command": "synthesize", "model": args.model or str(DEFAULT_MODEL), "model_name": model.name,
                    "generator": str(Path(args.generator) if args.generator else DEFAULT_GENERATOR) if generator else None,
                    "generator_metadata": getattr(generator, "metadata", None) if generator else None,
                    "layer": layer, "units": units, "position": list(args.position) if args.position else None,
                    "param": args.param, "init_sampler": args.init_sampler, "code_prior": args.code_prior,
                    "steps": args.steps, "restarts": args.restarts, "seed": args.seed,
                    "batch_size": args.batch_size, "fixed_batch": args.fixed_batch, "fit": model.fit,
                    "device": str(device), "mean": args.mean, "std": args.std,
                    "input_size": model.input_size, "data": args.data, "dgnam_version": dgnam.__version__,
                    "torch_version": torch.__version__, "seconds": round(result.seconds, 2),
                    "engine": result.settings}
        atomic_write_json({"settings": settings, "images": entries}, staging / "manifest.json")

    write_directory(out_dir, write)  # a hidden sibling renamed at the end: a failed run leaves nothing
    _summary(result, units, relative)
    print(f"wrote {len(result)} images, grid.png and manifest.json to {out_dir} ({result.seconds:.1f}s)")
    return 0


def _resolve_shipped(spec: str) -> str:
    """Generators name their encoder as trained, often relative to the repository root
    (``checkpoints/cifar10/encoder.pt``): such a path that does not exist from here names the shipped file."""
    parts = Path(spec).parts
    if ":" in spec or Path(spec).exists() or parts[:1] != ("checkpoints",):
        return spec
    candidate = shipped("/".join(parts[1:]))
    return str(candidate) if candidate.exists() else spec


def load_code_encoder(generator, device: torch.device, encoder_path: str | None = None) -> dgnam.Model:
    """The encoder whose ``generator.encoder_layer`` the generator inverts (its own, unless a path is given)."""
    from dgnam.nets.zoo import load_model

    encoder_path = encoder_path or generator.encoder
    if not encoder_path:
        raise DgnamError("the generator does not name its encoder; pass --encoder")
    encoder = load_model(_resolve_shipped(encoder_path), device=device)
    if encoder.input_size is None:  # a factory model: it sees what the generator makes
        encoder.input_size = generator.image_size
    return encoder


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _summary(result, units, relative) -> None:
    rows = []
    values = result.values.tolist()
    for u in units:
        idx = [i for i, uu in enumerate(result.extra["unit"]) if uu == u]
        acts = [values[i] for i in idx]
        row = [result.labels[idx[0]], f"{sum(acts) / len(acts):.2f}", f"{max(acts):.2f}"]
        if relative is not None:
            ratios = [relative[i] for i in idx if relative[i] is not None]
            row.append(f"{max(ratios):.2f}" if ratios else "n/a")
        rows.append(row)
    header = ["unit", "mean act", "max act"] + (["max / real max"] if relative is not None else [])
    _print_table(rows, header)


def cmd_layers(args) -> int:
    from dgnam.nets.model import last_spatial_layer

    device = _device(args.device)
    model = _load_model(args, device)
    if model.input_size is None:
        raise DgnamError("the model's input size is unknown; pass --input-size")
    infos = dgnam.describe_layers(model)
    try:
        gradcam = last_spatial_layer(model)
    except DgnamError:
        gradcam = None
    rows = []
    for info in infos:
        shape = "x".join(map(str, info.shape)) if info.shape else "-"
        calls = f"{info.calls}" if info.calls != 1 else ""
        mark = "<- last spatial layer (Grad-CAM)" if info.name == gradcam else ""
        rows.append([info.name, info.type, shape, f"{info.n_params:,}", calls, mark])
    _print_table(rows, ["layer", "type", "output", "params", "calls", ""])
    print(f"{sum(p.numel() for p in model.module.parameters()):,} parameters; input {model.input_size}x{model.input_size}; "
          f"address the k-th call of a reused module as NAME@k (0-based)")
    return 0


def cmd_stats(args) -> int:
    from dgnam.prior.stats import code_statistics

    device = _device(args.device)
    out = Path(args.out)
    if out.exists():
        raise DgnamError(f"--out '{out}' exists; choose a new file (stats never overwrite a generator)")
    if not args.k >= 0:
        raise DgnamError(f"--k must be >= 0 (bound = mean + k * std), got {args.k}")
    if args.code_prior is not None and not args.code_prior >= 0:
        raise DgnamError(f"--code-prior must be >= 0 (0: off), got {args.code_prior}")
    generator = dgnam.load_generator(args.generator, device)
    if args.code_prior is not None:
        generator.metadata = {**getattr(generator, "metadata", {}), "code_prior": args.code_prior}
    if args.data is None:
        return _rebound(generator, args.k, out)
    encoder = load_code_encoder(generator, device, args.encoder)
    files = _image_files(Path(args.data), args.data_limit)
    batches = (load_images(files[i:i + 256], encoder.input_size) for i in range(0, len(files), 256))
    mean, std, summary = code_statistics(encoder, generator.encoder_layer, batches, device)
    if mean.numel() != generator.code_dim:
        raise DgnamError(f"encoder layer {generator.encoder_layer!r} has {mean.numel()} units but the generator takes "
                         f"{generator.code_dim}; pass the matching --encoder")
    generator.set_code_statistics(mean.to(device), std.to(device), args.k)
    metadata = {**getattr(generator, "metadata", {}), "bound_k": args.k, "code_summary": summary, "stats_data": args.data}
    generator.save(out, metadata)
    bound = generator.code_upper_bound
    print(f"{summary['n_images']} images: code zeros {summary['zero_fraction']:.2f}, mean {summary['mean']:.3f}; "
          f"bounds {float(bound.min()):.2f}-{float(bound.max()):.2f} (mean {float(bound.mean()):.2f}); wrote {out}")
    return 0


def _rebound(generator, k: float, out: Path) -> int:
    """``dgnam stats`` without --data: the same per-unit statistics, bound = mean + k * std."""
    if not generator.has_code_statistics:
        raise DgnamError("the generator stores no code statistics; pass --data to compute them from real images")
    old_k = getattr(generator, "metadata", {}).get("bound_k")
    generator.set_code_statistics(generator.code_mean, generator.code_std, k)
    generator.save(out, {**getattr(generator, "metadata", {}), "bound_k": k})
    bound = generator.code_upper_bound
    print(f"bound k {old_k} -> {k} on the stored statistics: bounds {float(bound.min()):.2f}-{float(bound.max()):.2f} "
          f"(mean {float(bound.mean()):.2f}); wrote {out}")
    return 0


def cmd_sample(args) -> int:
    from torchvision.utils import make_grid

    from dgnam.grid import save_png
    from dgnam.prior.sampler import load_code_sampler

    out = Path(args.out)
    if out.exists():
        raise DgnamError(f"--out '{out}' exists; choose a new file")
    if out.suffix.lower() != ".png":
        raise DgnamError(f"--out '{out}' must be a .png file")
    if args.n is not None and args.n < 1:
        raise DgnamError(f"--n must be at least 1, got {args.n}")
    device = _device(args.device)
    generator = dgnam.load_generator(args.generator or DEFAULT_GENERATOR, device)
    sampler = load_code_sampler(args.sampler or DEFAULT_SAMPLER, device)
    sampler.check_generator(generator)
    labels, what = None, ""
    if sampler.num_classes:
        names = args.classes.split(",") if args.classes else sampler.classes
        per_class = args.n or 8
        chosen = [sampler.class_index(name.strip()) for name in names]
        labels = torch.tensor(chosen).repeat_interleave(per_class)  # one row per class
        n, nrow = len(labels), per_class
        what = f" ({per_class} per class, one row each: {', '.join(sampler.classes[c] for c in chosen)})"
    elif args.classes:
        raise DgnamError("--classes needs a class-conditional sampler (python -m train.code_sampler "
                         "--model.num_classes K); this one was trained without classes")
    else:
        n = args.n or 64
        nrow = min(n, 16)
    with torch.no_grad():
        codes = sampler.sample(n, seed=args.seed, labels=labels)
        images = torch.cat([generator.generate(chunk) for chunk in codes.split(256)])
    save_png(make_grid(images.cpu(), nrow=nrow, padding=1), out)
    print(f"wrote {len(images)} samples to {out}{what}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except DgnamError as exc:
        print(f"dgnam: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dgnam: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
