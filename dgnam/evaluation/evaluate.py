"""``dgnam evaluate``: DGN-AM against pixel-space baselines, judged by networks that made none of the images.

For the target's class units, every method synthesises ``restarts`` images per class with the same
steps, and the images are scored by :mod:`dgnam.evaluation.metrics` (judge agreement, KID to real test images
in each judge's penultimate features, within-class diversity, class evidence after a shift and a
blur) next to the same numbers for real images, which are the floor/ceiling to compare with.
A sweep over the code bound k (a_i = mean_i + k std_i) and the L2 decay shows the trade-off
between how hard the unit is driven and how natural the images stay.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from dgnam.engine.objectives import capped, class_logit, total_variation
from dgnam.engine.optim import NormalizedAscent, Optimizer
from dgnam.engine.param import SEEDED_CODE_PRIOR, GeneratorCode, Parametrization, SeededCode, make_param, top_images
from dgnam.engine.preferred import add_code_prior, check_code_prior
from dgnam.engine.render import Result, synthesize
from dgnam.engine.transforms import GaussianBlur, Jitter
from dgnam.errors import DgnamError
from dgnam.evaluation.metrics import (
    agreement,
    judge_outputs,
    kid,
    pgd_accuracy,
    predict_logits,
    relative_to_real,
    shift_and_blur,
    within_class_diversity,
)
from dgnam.evaluation.report import Evaluation, JudgeScores, MethodScores
from dgnam.nets.model import Model
from dgnam.prior.generator import UpconvGenerator


@dataclass(frozen=True)
class Method:
    """One way to make a class image: a parametrisation, per-step transforms and an optional TV penalty.

    Args:
        name: short key used in tables (``dgn``, ``pixel``, ...).
        title: what the report calls it.
        param: ``dgn``, ``pixel`` or ``fourier``.
        jitter, blur_sigma: random shift (px) and Gaussian blur applied to the image every step.
        tv_weight: objective = logit - tv_weight * total variation.
        bound_k, l2_decay: DGN-AM only: the code box a_i = mean_i + k std_i and the decay per step
            (None: the generator's stored bound, the paper's 0.99).
        code_prior: DGN-AM only: objective = logit + code_prior * PPGN's code prior
            (:func:`~dgnam.engine.objectives.code_prior`; needs the generator's encoder); None: the
            evaluation's weight for a start from noise, :data:`~dgnam.engine.param.SEEDED_CODE_PRIOR` for a
            seeded one.
        init: DGN-AM only: ``noise`` (the paper: h ~ N(0, 1)) or ``data`` (image-seeded,
            :class:`~dgnam.engine.param.SeededCode`: restart r of class c starts from the r-th train image
            that drives the class logit hardest).
        steps: this method's steps (None: the evaluation's).
        lr: DGN-AM only: the first normalised step in code-scale units (None: the start's default; paper 8).
        target: DGN-AM only: an activation target, a multiple of the class logit's max over real test images.
    """

    name: str
    title: str
    param: str
    jitter: int = 0
    blur_sigma: float = 0.0
    tv_weight: float = 0.0
    bound_k: float | None = None
    l2_decay: float | None = None
    code_prior: float | None = None
    init: str = "noise"
    steps: int | None = None
    lr: float | None = None
    target: float | None = None

    def __post_init__(self) -> None:
        if self.init not in ("noise", "data"):
            raise DgnamError(f"method {self.name!r}: init must be 'noise' or 'data', got {self.init!r}")
        if self.param != "dgn" and (self.init != "noise" or self.lr is not None or self.target is not None):
            raise DgnamError(f"method {self.name!r}: init, lr and target apply to DGN-AM (param 'dgn') only")

    def parametrization(self, generator: UpconvGenerator | None, image_size: int,
                        seed_images: torch.Tensor | None = None, encoder: Model | None = None) -> Parametrization:
        options = {"bound_k": self.bound_k} if self.bound_k is not None else {}
        if self.init == "data":
            if encoder is None or generator is None:
                raise DgnamError("a seeded method needs the generator and its encoder (--generator with metadata "
                                 "'encoder')")
            return SeededCode(generator, seed_images, encoder, **options)
        return make_param(self.param, generator, image_size, **options)

    def optimizer(self, param: Parametrization) -> Optimizer:
        opt = param.default_optimizer()
        if self.l2_decay is not None:
            opt.l2_decay = self.l2_decay
        if self.lr is not None and isinstance(opt, NormalizedAscent):
            scale = param.code_scale() if isinstance(param, GeneratorCode) else 1.0
            opt.lr_start = self.lr * scale
        return opt

    def with_steps(self, steps: int) -> Method:
        """This method at ``steps`` steps, named ``name@steps`` in tables."""
        return dataclasses.replace(self, name=f"{self.name}@{steps}", title=f"{self.title}, {steps} steps", steps=steps)

    def transforms(self) -> list:
        return (([Jitter(self.jitter)] if self.jitter else [])
                + ([GaussianBlur(self.blur_sigma)] if self.blur_sigma else []))


#: The comparison of the DGN-AM paper's Fig. 1/S: the prior vs pixel ascent without and with the
#: usual hand-made regularisers, and Lucid's Fourier parametrisation. Same steps/restarts for all.
STANDARD_METHODS: dict[str, Method] = {
    "dgn": Method("dgn", "DGN-AM (generator prior)", "dgn"),
    "dgn_seeded": Method("dgn_seeded", "DGN-AM seeded with the class's top train images", "dgn", init="data"),
    "pixel": Method("pixel", "pixel ascent", "pixel"),
    "pixel_reg": Method("pixel_reg", "pixel + jitter + blur + TV", "pixel", jitter=2, blur_sigma=0.5, tv_weight=5.0),
    "fourier": Method("fourier", "Fourier (decorrelated) + jitter + blur", "fourier", jitter=2, blur_sigma=0.5),
}


def _judge_scores(judge: Model, images: torch.Tensor, classes: torch.Tensor, real_test_features: torch.Tensor,
                  batch_size: int, device, seed: int) -> JudgeScores:
    logits, features = judge_outputs(judge, images, batch_size, device)
    shifted_logits, _ = judge_outputs(judge, shift_and_blur(images), batch_size, device)
    return JudgeScores(agreement=agreement(logits.argmax(1), classes),
                       kid=kid(features, real_test_features, seed=seed),
                       diversity=within_class_diversity(features, classes),
                       shifted_agreement=agreement(shifted_logits.argmax(1), classes))


def _synthesize_classes(method: Method, target: Model, generator: UpconvGenerator | None, n_classes: int,
                        restarts: int, steps: int, seed: int, batch_size: int, device, amp: bool,
                        code_encoder: Model | None, seed_images: torch.Tensor | None,
                        real_max: torch.Tensor) -> Result:
    param = method.parametrization(generator, target.input_size, seed_images, code_encoder)
    row_classes = [c for c in range(n_classes) for _ in range(restarts)]
    logit = class_logit(row_classes, model=target)
    objective = logit if method.target is None else capped(logit, method.target * real_max[row_classes])
    objective = add_code_prior(objective, method.code_prior or 0.0, generator, code_encoder)
    if method.tv_weight:
        objective = objective - method.tv_weight * total_variation()
    seeds = [seed + r for _ in range(n_classes) for r in range(restarts)]
    return synthesize(objective, param, seeds=seeds, steps=method.steps or steps, optimizer=method.optimizer(param),
                      transforms=method.transforms(), batch_size=batch_size, device=device,
                      amp=amp and torch.device(device).type == "cuda", record=logit)


def top_seed_images(target: Model, pool: torch.Tensor, n_classes: int, restarts: int, batch_size: int,
                    device) -> torch.Tensor:
    """(n_classes * restarts, 3, H, W), class-major: for class c, the ``restarts`` images of ``pool`` with the
    highest class-c logit, highest first (a class's seeds differ as its restarts do)."""
    logits = predict_logits(target, pool, batch_size, device)[:, :n_classes]
    return top_images(pool, logits, restarts, "raise --real-limit or lower --restarts")


@dataclass
class _RealReference:
    """What every synthetic set is measured against: the judges on real images, the target's real maxima."""

    scores: MethodScores  # the real test images' row of the report
    features: dict[str, torch.Tensor]  # judge -> penultimate features of the real test images (KID reference)
    judge_accuracy: dict[str, float]
    real_max: dict[int, float]  # class -> the target's highest logit over the real test images


def _real_reference(target: Model, judges: dict[str, Model], test_images: torch.Tensor, test_labels: torch.Tensor,
                    real_train: torch.Tensor, n_classes: int, batch_size: int, device, seed: int) -> _RealReference:
    """The judges' scores of real images (KID(train, test): the floor a perfect method reaches) and the target's
    top-1 accuracy and per-class maximum on them."""
    features, judge_accuracy, scores = {}, {}, {}
    for name, judge in judges.items():
        logits, feats = judge_outputs(judge, test_images, batch_size, device)
        _, train_feats = judge_outputs(judge, real_train, batch_size, device)
        shifted, _ = judge_outputs(judge, shift_and_blur(test_images), batch_size, device)
        features[name] = feats
        judge_accuracy[name] = float((logits.argmax(1) == test_labels).float().mean())
        scores[name] = JudgeScores(agreement=agreement(logits.argmax(1), test_labels),
                                   kid=kid(train_feats, feats, seed=seed),
                                   diversity=within_class_diversity(feats, test_labels),
                                   shifted_agreement=agreement(shifted.argmax(1), test_labels))
    target_logits = predict_logits(target, test_images, batch_size, device)  # the target needs no linear head
    if target_logits.shape[1] < n_classes:
        raise DgnamError(f"the target has {target_logits.shape[1]} outputs but {n_classes} classes were given")
    real = MethodScores("real test images", scores,
                        target_top1=float((target_logits.argmax(1) == test_labels).float().mean()))
    return _RealReference(real, features, judge_accuracy,
                          real_max={c: float(target_logits[:, c].max()) for c in range(n_classes)})


@dataclass
class _Scorer:
    """Synthesises one method's class images and scores them; everything but the method is the run's."""

    target: Model
    judges: dict[str, Model]
    generator: UpconvGenerator | None
    reference: _RealReference
    n_classes: int
    steps: int | None
    seed: int
    batch_size: int
    device: str | torch.device
    amp: bool
    code_prior: float
    code_encoder: Model | None
    seed_images: torch.Tensor | None
    report: Callable[[str], None]

    def __call__(self, method: Method, n_restarts: int) -> tuple[MethodScores, torch.Tensor]:
        """``method``'s scores and its images, ``n_restarts`` per class, class-major."""
        start = time.time()
        if method.param == "dgn" and method.code_prior is None:
            method = dataclasses.replace(method, code_prior=SEEDED_CODE_PRIOR if method.init == "data"
                                         else self.code_prior)
        real_max = self.reference.real_max
        max_tensor = torch.tensor([real_max[c] for c in range(self.n_classes)])
        result = _synthesize_classes(method, self.target, self.generator, self.n_classes, n_restarts, self.steps,
                                     self.seed, self.batch_size, self.device, self.amp, self.code_encoder,
                                     self.seed_images, max_tensor)
        row_classes = torch.arange(self.n_classes).repeat_interleave(n_restarts)
        target_out = predict_logits(self.target, result.images, self.batch_size, self.device)
        activation = target_out.gather(1, row_classes[:, None])[:, 0]
        relative = relative_to_real(activation, row_classes.tolist(), real_max)
        judged = {name: _judge_scores(j, result.images, row_classes, self.reference.features[name], self.batch_size,
                                      self.device, self.seed)
                  for name, j in self.judges.items()}
        mean_relative = float(relative.nanmean())  # NaN when no unit fires on real images
        scores = MethodScores(method.title, judged, target_activation=float(activation.mean()),
                              target_relative=None if mean_relative != mean_relative else mean_relative,
                              target_top1=float((target_out.argmax(1) == row_classes).float().mean()),
                              seconds=time.time() - start, settings=result.settings)
        self.report(f"{method.name}: {scores.seconds:.0f}s, target act {scores.target_activation:.2f} "
                    f"({scores.target_relative or float('nan'):.2f} of real max), "
                    + ", ".join(f"{n} {s.agreement} KID {s.kid}" for n, s in judged.items()))
        return scores, result.images


def _check_inputs(target: Model, judges: dict[str, Model], generator: UpconvGenerator | None,
                  real_test: tuple[torch.Tensor, torch.Tensor], methods: Sequence[Method], code_prior: float,
                  code_encoder: Model | None) -> None:
    """Refuse, before any compute, an evaluation that cannot run or would judge the target by itself."""
    test_images, test_labels = real_test
    if len(test_images) != len(test_labels):
        raise DgnamError("real test images and labels differ in number")
    if not judges:
        raise DgnamError("evaluation needs at least one judge; pass --judge PATH")
    check_code_prior(code_prior, generator, code_encoder)
    if any(m.init == "data" for m in methods) and code_encoder is None:
        raise DgnamError("seeded methods need code_encoder: the encoder whose layer the generator inverts")
    if any(j is target for j in judges.values()):
        raise DgnamError("the target cannot be its own judge; pass judges that made none of the images")


def _progress_line(progress: bool | Callable[[str], None]) -> Callable[[str], None]:
    """Where a method's one-line summary goes: printed at once (True), dropped (False) or handed to a callable."""
    if callable(progress):
        return progress
    if progress:
        return lambda line: print(line, flush=True)  # flushed: a method takes minutes, the line is news
    return lambda line: None


def _pgd_accuracies(judges: dict[str, Model], test_images: torch.Tensor, test_labels: torch.Tensor,
                    batch_size: int, device, seed: int) -> dict[str, tuple[float, float]]:
    """How robust a robust judge is, at the radius it was trained for: judge -> (eps, PGD-10 accuracy)."""
    pgd = {}
    for name, judge in judges.items():
        eps = float(judge.metadata.get("adv_eps", 0) or 0)
        if eps > 0:
            pgd[name] = (eps, pgd_accuracy(judge, test_images, test_labels, eps=eps, step_size=eps / 4, steps=10,
                                           batch_size=batch_size, device=device, seed=seed))
    return pgd


def evaluate(target: Model, judges: dict[str, Model], generator: UpconvGenerator | None, *,
             real_test: tuple[torch.Tensor, torch.Tensor], real_train: torch.Tensor, classes: Sequence[str],
             methods: Sequence[Method] | None = None, restarts: int = 10, steps: int | None = None,
             sweep: Sequence[tuple[float, float]] = (), sweep_restarts: int = 5, seed: int = 0,
             batch_size: int = 100, device: str | torch.device = "cpu", amp: bool = True,
             code_prior: float = 0.0, code_encoder: Model | None = None,
             progress: bool | Callable[[str], None] = True) -> Evaluation:
    """Synthesise every class of ``target`` with each method and score the images with ``judges``.

    Args:
        target: the model whose class logits (its output units 0..len(classes)-1) are maximised.
        judges: name -> classifier never used to make the images (not the target, not the encoder).
        generator: the DGN-AM prior (needed by ``dgn`` methods).
        real_test: (images (N, 3, H, W) in [0, 1], labels (N,)): KID reference, real diversity/accuracy.
        real_train: real images from another split: KID(train, test) is the floor a perfect method reaches.
        methods: what to compare (default: :data:`STANDARD_METHODS`, the seeded one only with ``code_encoder``).
        sweep: (k, l2_decay) pairs for extra DGN-AM runs with ``sweep_restarts`` images per class.
        amp: bf16 autocast while synthesising on CUDA (no effect on the CPU); judges always run in float32.
        code_prior, code_encoder: every DGN-AM run (methods and sweep) maximises logit + ``code_prior`` *
            PPGN's code prior, read by ``code_encoder`` (the encoder whose layer the generator inverts).
        progress: one line per method when it is scored: True prints it, False drops it, a callable
            receives it (e.g. ``logging.info``).

    Example::

        ev = evaluate(target, {"robust": robust}, G, real_test=(x, y), real_train=x_tr, classes=names)
        Path("report.md").write_text(ev.to_markdown())
    """
    n_classes = len(classes)
    if methods is None:
        methods = [m for m in STANDARD_METHODS.values() if m.init == "noise" or code_encoder is not None]
    _check_inputs(target, judges, generator, real_test, methods, code_prior, code_encoder)
    test_images, test_labels = real_test
    target.to(device)
    for judge in judges.values():
        judge.to(device)
    reference = _real_reference(target, judges, test_images, test_labels, real_train, n_classes, batch_size, device,
                                seed)
    seeded = [m for m in methods if m.init == "data"]
    seed_images = top_seed_images(target, real_train, n_classes, restarts, batch_size, device) if seeded else None
    score = _Scorer(target, judges, generator, reference, n_classes, steps, seed, batch_size, device, amp, code_prior,
                    code_encoder, seed_images, _progress_line(progress))

    method_scores, images = {}, {}
    for method in methods:
        method_scores[method.name], images[method.name] = score(method, restarts)
    sweep_scores = []
    for k, decay in sweep:
        method = Method(f"dgn_k{k:g}_d{decay:g}", f"DGN-AM k={k:g} decay={decay:g}", "dgn", bound_k=k, l2_decay=decay)
        sweep_scores.append((k, decay, score(method, sweep_restarts)[0]))
    notes = {name: str(j.metadata.get("description", "")) for name, j in judges.items()}
    pgd = _pgd_accuracies(judges, test_images, test_labels, batch_size, device, seed)
    method_steps = sorted({s.settings["steps"] for s in method_scores.values()})
    return Evaluation(target_name=target.name, classes=list(classes), restarts=restarts,
                      steps=method_steps[0] if len(method_steps) == 1 else method_steps, real=reference.scores,
                      methods=method_scores, sweep=sweep_scores, judge_accuracy=reference.judge_accuracy,
                      judge_notes=notes, judge_pgd=pgd, images=images, n_real=(len(test_images), len(real_train)),
                      code_prior=code_prior)
