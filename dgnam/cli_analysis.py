"""``dgnam invert``, ``dgnam compare`` and ``dgnam attribute``: the command-line face of :mod:`dgnam.analysis`.

Each command writes ``report.md``, its PNGs and ``manifest.json`` into a fresh ``--out`` directory,
staged beside it and renamed at the end, so a failed run writes nothing. Every user error is one
line and exit code 2 (raised as :class:`~dgnam.errors.DgnamError`, printed by :func:`dgnam.cli.main`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

import dgnam
from dgnam.errors import DgnamError
from dgnam.io import write_directory

PARAMS = ("dgn", "pixel", "fourier")


def add_commands(sub) -> None:
    """Register ``invert``, ``compare`` and ``attribute`` on the ``dgnam`` parser."""
    from dgnam.analysis.attribute import METHODS
    from dgnam.analysis.invert import DEFAULT_TV_WEIGHT
    from dgnam.cli import _add_model_args

    inv = sub.add_parser("invert", help="reconstruct an image from layer representations (inversion)",
                         description="Reconstruct an image from each layer's representation, through the generator "
                                     "prior and with a TV-regularised pixel baseline; reports the normalised error "
                                     "||phi(x') - phi(x)|| / ||phi(x)|| per cell. Writes grid.png, report.md, manifest.json.")
    _add_model_args(inv)
    inv.add_argument("--image", required=True, help="the image to invert (.png/.jpg)")
    inv.add_argument("--layers", required=True, help="comma list of layers (see `dgnam layers`), e.g. features.relu2_2,output")
    inv.add_argument("--params", default="dgn,pixel", help="comma list of dgn, pixel, fourier (grid rows)")
    inv.add_argument("--generator", default=None, help="generator checkpoint (default: the shipped CIFAR-10 one)")
    inv.add_argument("--steps", type=int, default=200)
    inv.add_argument("--tv-weight", type=float, default=DEFAULT_TV_WEIGHT, help="total-variation weight of pixel/Fourier rows")
    inv.add_argument("--seed", type=int, default=0)
    inv.add_argument("--out", default=None, help="output directory (must not exist or be empty)")
    inv.add_argument("--quiet", action="store_true", help="no progress bar")
    inv.set_defaults(handler=cmd_invert)

    cmp = sub.add_parser("compare", help="how two classifiers differ: A+B, A-B, B-A images, output similarity, mimicry",
                         description="Class images that maximise A+B, A-B and B-A; cosine similarity of the two models' "
                                     "outputs on A's class images (heat map); mimicry: A's image changed until A answers "
                                     "like B does on B's image (L1). Writes PNGs, report.md, manifest.json.")
    cmp.add_argument("--model", action="append", default=None, required=True,
                     help="give twice: --model A --model B (any spec `dgnam synthesize --model` takes)")
    cmp.add_argument("--input-size", type=int, default=None, help="both models' input side in pixels")
    cmp.add_argument("--device", default="auto")
    cmp.add_argument("--param", choices=["dgn", "pixel"], default="dgn", help="image parametrisation")
    cmp.add_argument("--generator", default=None, help="generator checkpoint (default: the shipped CIFAR-10 one)")
    cmp.add_argument("--classes", default=None, help="e.g. 0-9 (default: all classes, at most 10)")
    cmp.add_argument("--restarts", type=int, default=1, help="images per class and kind")
    cmp.add_argument("--steps", type=int, default=200)
    cmp.add_argument("--mimic-steps", type=int, default=None, help="steps of the mimicry phase (default: --steps)")
    cmp.add_argument("--seed", type=int, default=0)
    cmp.add_argument("--batch-size", type=int, default=64)
    cmp.add_argument("--out", default=None, help="output directory (must not exist or be empty)")
    cmp.add_argument("--quiet", action="store_true", help="no progress bar")
    cmp.set_defaults(handler=cmd_compare)

    att = sub.add_parser("attribute", help="which pixels drove a decision: saliency, Grad-CAM, guided backprop (captum)",
                         description="Saliency, Grad-CAM (layer: the last spatial feature map unless --layer), guided "
                                     "backprop and guided Grad-CAM via captum, with a deletion check per method. "
                                     "Writes attribution.png, report.md, manifest.json.")
    _add_model_args(att)
    att.add_argument("--image", action="append", required=True, help="image to explain (repeatable)")
    att.add_argument("--target", default=None, help="class index or name (default: each image's predicted class)")
    att.add_argument("--layer", default=None, help="Grad-CAM layer (default: the last spatial layer, see `dgnam layers`)")
    att.add_argument("--methods", default=",".join(METHODS), help="comma list of " + ", ".join(METHODS))
    att.add_argument("--out", default=None, help="output directory (must not exist or be empty)")
    att.set_defaults(handler=cmd_attribute)


# --- helpers ------------------------------------------------------------------------------------
def _comma_list(text: str, what: str) -> list[str]:
    items = list(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))
    if not items:
        raise DgnamError(f"{what} is empty; give a comma-separated list")
    return items


def _read_image(path: str, size: int) -> torch.Tensor:
    """(3, size, size) RGB [0, 1] from an image file, with one-line errors for a missing or unreadable file."""
    from dgnam.cli import load_images

    file = Path(path)
    if not file.is_file():
        raise DgnamError(f"image file '{file}' does not exist; check --image")
    return load_images([file], size)[0]


def _generator_path(path: str | None) -> str:
    from dgnam.cli import DEFAULT_GENERATOR

    return str(path or DEFAULT_GENERATOR)


def _load_generator(path: str | None, device: torch.device):
    return dgnam.load_generator(_generator_path(path), device)


def _short_path(path: str) -> str:
    """``../data/test/cat/0000.jpg`` -> ``cat/0000.jpg``: the folder often names the class."""
    return "/".join(Path(path).parts[-2:])


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def _write_outputs(staging: Path, report: str, manifest: dict, figures: dict[str, Callable[[Path], Path]]) -> None:
    """Everything a command writes, into the staging directory that :func:`dgnam.io.write_directory` renames."""
    from dgnam.io import atomic_write_json, atomic_write_text

    for name, save in figures.items():
        save(staging / name)
    atomic_write_text(report, staging / "report.md")
    atomic_write_json(manifest, staging / "manifest.json")


def _versions() -> dict:
    return {"dgnam_version": dgnam.__version__, "torch_version": torch.__version__}


# --- invert -------------------------------------------------------------------------------------
def cmd_invert(args) -> int:
    from dgnam.analysis.invert import invert
    from dgnam.cli import _device, _fresh_out_dir, _layer_size, _load_model, _print_table, fit_to_generator

    device = _device(args.device)
    if args.steps < 1:
        raise DgnamError("--steps must be >= 1")
    params = _comma_list(args.params, "--params")
    unknown = [p for p in params if p not in PARAMS]
    if unknown:
        raise DgnamError(f"unknown param {unknown[0]!r} in --params; choose from {', '.join(PARAMS)}")
    layers = _comma_list(args.layers, "--layers")
    model = _load_model(args, device)
    generator = _load_generator(args.generator, device) if "dgn" in params or args.generator else None
    fit_to_generator(model, generator)
    for layer in layers:
        _layer_size(model, layer, device)  # unknown names, calls and shapes fail here, in one line
    image = _read_image(args.image, model.input_size)
    out_dir = _fresh_out_dir(args.out, model.name)

    result = invert(model, image, layers, generator, params=params, steps=args.steps, tv_weight=args.tv_weight,
                    seed=args.seed, device=device, progress=not args.quiet)
    rows = [[kind] + [f"{float(error):.3f} (start {float(start):.2f})"
                      for error, start in zip(result.errors[p], result.start_errors[p])] for p, kind in enumerate(params)]
    report = "\n\n".join([
        f"# Inversion of `{_short_path(args.image)}` by {model.name}",
        "Each cell reconstructs the image from one layer's representation phi(x) and reports the normalised "
        "representation error ||phi(x') - phi(x)|| / ||phi(x)|| of the reconstruction x' (in brackets: the same "
        f"error for the random image the optimisation started from). `dgn` optimises the generator's code "
        f"(the prior regularises); `pixel`/`fourier` optimise the image with a total-variation penalty "
        f"(weight {args.tv_weight:g}). {args.steps} steps, seed {args.seed}.",
        _markdown_table(["param \\ layer", *[f"`{layer}`" for layer in layers]], rows),
        "![inversion grid: rows = parametrisation, first column = original](grid.png)",
    ]) + "\n"
    manifest = {"settings": {"command": "invert", "model": args.model, "model_name": model.name, "image": args.image,
                             "layers": layers, "params": params, "steps": args.steps, "tv_weight": args.tv_weight,
                             "seed": args.seed, "generator": _generator_path(args.generator) if generator else None,
                             "device": str(device), **_versions(),
                             "engine": [run.settings for run in result.runs]},
                "errors": {kind: dict(zip(layers, result.errors[p].tolist())) for p, kind in enumerate(params)},
                "start_errors": {kind: dict(zip(layers, result.start_errors[p].tolist())) for p, kind in enumerate(params)}}
    write_directory(out_dir, lambda staging: _write_outputs(staging, report, manifest, {"grid.png": result.save_grid}))
    _print_table([[kind, *[f"{float(e):.3f}" for e in result.errors[p]]] for p, kind in enumerate(params)],
                 ["param", *layers])
    print(f"wrote grid.png, report.md and manifest.json to {out_dir}")
    return 0


# --- compare ------------------------------------------------------------------------------------
def cmd_compare(args) -> int:
    from dgnam.analysis.compare import KINDS, compare
    from dgnam.cli import _device, _fresh_out_dir, fit_to_generator, parse_units
    from dgnam.engine.param import GeneratorCode, Pixels
    from dgnam.engine.probe import baseline_transforms
    from dgnam.nets.zoo import load_model

    device = _device(args.device)
    if len(args.model) != 2:
        raise DgnamError(f"compare needs exactly two models (--model A --model B); got {len(args.model)}")
    if min(args.steps, args.restarts, args.batch_size, args.mimic_steps if args.mimic_steps is not None else 1) < 1:
        raise DgnamError("--steps, --mimic-steps, --restarts and --batch-size must be >= 1")
    model_a, model_b = (load_model(spec, input_size=args.input_size, device=device) for spec in args.model)
    generator = _load_generator(args.generator, device) if args.param == "dgn" else None
    for model in (model_a, model_b):
        fit_to_generator(model, generator)
    classes = parse_units(args.classes) if args.classes else None
    if args.param == "dgn":
        param, transforms = GeneratorCode(generator), []
    else:
        param, transforms = Pixels(model_a.input_size), baseline_transforms()
    out_dir = _fresh_out_dir(args.out, f"{model_a.name}-vs-{model_b.name}")

    start = time.time()
    result = compare(model_a, model_b, param, classes=classes, class_names=getattr(model_a, "classes", None),
                     restarts=args.restarts, steps=args.steps, mimic_steps=args.mimic_steps, seed=args.seed,
                     transforms=transforms, batch_size=args.batch_size, device=device, progress=not args.quiet)
    seconds = time.time() - start
    a_name, b_name = result.model_names
    names = result.class_names
    scores = {kind: result.class_scores(kind) for kind in KINDS}
    score_rows = [[kind, *[f"{float(a):.1f} / {float(b):.1f}" for a, b in zip(*scores[kind])],
                   f"{float((scores[kind][0] - scores[kind][1]).mean()):+.1f}"] for kind in KINDS]
    disagreeing = result.most_disagreeing(min(3, len(names)))
    label = dict(zip(result.classes, names))
    top_a = result.logits_a[result.rows("A")].argmax(1).tolist()  # on A's class images
    top_b = result.logits_b[result.rows("A")].argmax(1).tolist()
    first = [i * result.restarts for i in disagreeing]  # restart 0 of each class
    disagree_lines = [f"- **{names[i]}**: cosine {float(result.class_similarity[i]):.2f}; on A's image A's top class "
                      f"is {label.get(top_a[row], top_a[row])}, B's is {label.get(top_b[row], top_b[row])}"
                      for i, row in zip(disagreeing, first)]
    mimic_tops = zip(result.mimic_targets.argmax(1).tolist(), result.mimic_start_logits.argmax(1).tolist(),
                     result.mimic_end_logits.argmax(1).tolist())
    mimic_rows = [[name, f"{float(start_l1):.1f}", f"{float(end_l1):.1f}", *[str(label.get(c, c)) for c in tops]]
                  for name, start_l1, end_l1, tops in zip(result.row_names(), result.mimic_start_l1,
                                                          result.mimic_end_l1, mimic_tops)]
    diagonal = result.similarity_matrix.diagonal()
    off_diagonal = result.similarity_matrix[~torch.eye(len(names), dtype=torch.bool)]
    report = "\n\n".join([
        f"# {a_name} (A) vs {b_name} (B)",
        f"Parametrisation `{args.param}`, {args.steps} steps, {args.restarts} image(s) per class and kind, seed "
        f"{args.seed}; {seconds:.0f} s. Logits are the models' raw (pre-softmax) outputs.",
        "## Class images: A, B, A+B, A-B, B-A",
        "Each cell: logit of the intended class under A / under B (mean over restarts); last column: mean A - B.",
        _markdown_table(["kind", *names, "mean A-B"], score_rows),
        "![class images: rows A, B, A+B, A-B, B-A](class_images.png)",
        "## Output space",
        f"On A's image of each class, the cosine similarity of A's and B's output vectors (diagonal of the heat "
        f"map): mean {float(diagonal.mean()):.2f}; off the diagonal (A's output on one class image vs B's on "
        f"another) mean {float(off_diagonal.mean()) if len(off_diagonal) else float('nan'):.2f}. "
        "Classes where the models disagree most:",
        "\n".join(disagree_lines),
        "![cosine similarity of A's and B's outputs](similarity.png)",
        "## Mimicry",
        "Starting from A's image of a class, the image is changed until A's output matches (L1) B's output on B's "
        "image of that class. L1 before / after; top classes of B on its image and of A before / after.",
        _markdown_table(["class", "L1 start", "L1 end", "B's top (target)", "A's top start", "A's top end"], mimic_rows),
        "![A's image, the mimic made from it, B's image](mimicry.png)",
    ]) + "\n"
    manifest = {"settings": {"command": "compare", "models": args.model, "model_names": [a_name, b_name],
                             "param": args.param, "generator": _generator_path(args.generator) if generator else None,
                             "classes": result.classes, "restarts": args.restarts, "steps": args.steps,
                             "mimic_steps": args.mimic_steps or args.steps, "seed": args.seed,
                             "device": str(device), "seconds": round(seconds, 1), **_versions(),
                             "engine": result.synthesis.settings},
                "class_scores": {kind: {"a": scores[kind][0].tolist(), "b": scores[kind][1].tolist()} for kind in KINDS},
                "class_similarity": result.class_similarity.tolist(),
                "similarity_matrix": result.similarity_matrix.tolist(),
                "most_disagreeing": [names[i] for i in disagreeing],
                "mimic_l1": {"start": result.mimic_start_l1.tolist(), "end": result.mimic_end_l1.tolist()}}
    figures = {"class_images.png": result.save_class_grid, "similarity.png": result.save_similarity_heatmap,
               "mimicry.png": result.save_mimicry}
    write_directory(out_dir, lambda staging: _write_outputs(staging, report, manifest, figures))
    mean_gap = {kind: float((scores[kind][0] - scores[kind][1]).mean()) for kind in ("A-B", "B-A")}
    print(f"A-B images: A leads B by {mean_gap['A-B']:+.1f} logits; B-A images: {mean_gap['B-A']:+.1f}; "
          f"output cosine on A's images {float(diagonal.mean()):.2f}; most different: "
          f"{', '.join(names[i] for i in disagreeing)}; mimicry L1 {float(result.mimic_start_l1.mean()):.1f} -> "
          f"{float(result.mimic_end_l1.mean()):.1f}")
    print(f"wrote class_images.png, similarity.png, mimicry.png, report.md and manifest.json to {out_dir}")
    return 0


# --- attribute ----------------------------------------------------------------------------------
def _target(text: str | None, classes: list[str]) -> int | None:
    """``--target`` as a class index: a number, or a class name of the model."""
    if text is None:
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    if text in classes:
        return classes.index(text)
    hint = f"one of {', '.join(classes)}" if classes else "a class index (the model has no class names)"
    raise DgnamError(f"--target {text!r} is not a class of the model; give {hint}")


def cmd_attribute(args) -> int:
    from dgnam.analysis.attribute import METHODS, attribute
    from dgnam.cli import _device, _fresh_out_dir, _load_model

    device = _device(args.device)
    methods = _comma_list(args.methods, "--methods")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise DgnamError(f"unknown method {unknown[0]!r} in --methods; choose from {', '.join(METHODS)}")
    model = _load_model(args, device)
    if model.input_size is None:
        raise DgnamError("the model's input size is unknown; pass --input-size")
    classes = list(getattr(model, "classes", []) or [])
    target = _target(args.target, classes)
    images = torch.stack([_read_image(path, model.input_size) for path in args.image])
    out_dir = _fresh_out_dir(args.out, model.name)

    result = attribute(model, images, target, layer=args.layer, methods=methods, device=device)

    def name(index: int) -> str:
        return classes[index] if index < len(classes) else str(index)

    rows = [[f"`{_short_path(path)}`", name(t), name(p), f"{float(prob):.2f}",
             *[f"{float(result.deletion[m][i, 0]):.2f} / {float(result.deletion[m][i, 1]):.2f}" for m in methods]]
            for i, (path, t, p, prob) in enumerate(zip(args.image, result.targets, result.predicted,
                                                       result.probabilities))]
    layer_note = (f"Grad-CAM layer: `{result.layer}`" + (" (chosen automatically: the last spatial feature map)"
                                                          if args.layer is None else "") + ". ") if result.layer else ""
    report = "\n\n".join([
        f"# Attribution by {model.name}",
        f"{layer_note}Methods (captum): {', '.join(methods)}. Deletion check: the target's probability after "
        "greying (0.5) the 25% of pixels each method ranks highest / lowest; a map that finds the evidence "
        "makes the first number much lower than the second.",
        _markdown_table(["image", "target", "predicted", "p(target)", *[f"{m}: top / bottom 25% greyed" for m in methods]],
                        rows),
        "![image, then one map per method](attribution.png)",
    ]) + "\n"
    manifest = {"settings": {"command": "attribute", "model": args.model, "model_name": model.name,
                             "images": args.image, "target": args.target, "layer": result.layer,
                             "methods": methods, "device": str(device), **_versions()},
                "images": [{"file": path, "target": t, "predicted": p, "probability": float(prob),
                            "deletion": {m: result.deletion[m][i].tolist() for m in methods}}
                           for i, (path, t, p, prob) in enumerate(zip(args.image, result.targets, result.predicted,
                                                                      result.probabilities))]}
    figures = {"attribution.png": lambda path: result.save_overlays(path, classes)}
    write_directory(out_dir, lambda staging: _write_outputs(staging, report, manifest, figures))
    for row in rows:
        print("  ".join(row[:4]))
    print(f"{layer_note}wrote attribution.png, report.md and manifest.json to {out_dir}")
    return 0
