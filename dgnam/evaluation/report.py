"""What an evaluation found and how it reads: :class:`Evaluation` (per-judge scores of every method and of
real images) and its markdown report (tables plus a plain verdict)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from dgnam.evaluation.metrics import KID, Rate
from dgnam.markdown import markdown_table, markdown_text


@dataclass
class JudgeScores:
    """What one judge says about one image set."""

    agreement: Rate
    kid: KID
    diversity: float
    shifted_agreement: Rate


@dataclass
class MethodScores:
    """All numbers for one method (or for real images, where there is no target activation)."""

    title: str
    judges: dict[str, JudgeScores]
    target_activation: float | None = None
    target_relative: float | None = None
    target_top1: float | None = None
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)


@dataclass
class Evaluation:
    """The outcome of :func:`~dgnam.evaluation.evaluate.evaluate`; ``to_markdown()`` renders the report."""

    target_name: str
    classes: list[str]
    restarts: int
    steps: int | list[int]  # a list when methods ran at several step counts (their names say which)
    real: MethodScores
    methods: dict[str, MethodScores]
    sweep: list[tuple[float, float, MethodScores]]
    judge_accuracy: dict[str, float]
    judge_notes: dict[str, str]
    judge_pgd: dict[str, tuple[float, float]]  # adversarially trained judges: (eps, PGD-10 accuracy)
    images: dict[str, torch.Tensor]  # method -> (classes * restarts, 3, H, W), class-major
    n_real: tuple[int, int]
    code_prior: float = 0.0  # every DGN-AM run's code-prior weight (0: the paper's DGN-AM)

    def grid(self, restart: int = 0) -> tuple[torch.Tensor, list[str]]:
        """Rows = methods, columns = classes (one restart): images and captions for a labelled grid."""
        rows, captions = [], []
        for name, imgs in self.images.items():
            pick = imgs[restart::self.restarts]
            rows.append(pick)
            captions += [f"{name}: {c}" for c in self.classes]
        return torch.cat(rows), captions

    def to_markdown(self) -> str:
        return evaluation_markdown(self)




def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _method_row(scores: MethodScores, judge: str) -> list[str]:
    s = scores.judges[judge]
    return [scores.title, _fmt(scores.target_activation), _fmt(scores.target_relative),
            _fmt(None if scores.target_top1 is None else 100 * scores.target_top1, ".0f"),
            str(s.agreement), str(s.kid), f"{s.diversity:.2f}", str(s.shifted_agreement),
            f"{scores.seconds:.0f}" if scores.seconds else "-"]


def verdict(ev: Evaluation, judge: str) -> list[str]:
    """Plain sentences: does DGN-AM beat every baseline on this judge's agreement and KID, outside the intervals?"""
    if "dgn" not in ev.methods:
        return []
    dgn = ev.methods["dgn"].judges[judge]
    lines = []
    baselines = {n: m.judges[judge] for n, m in ev.methods.items() if n != "dgn"}
    for name, base in baselines.items():
        agree_sep = dgn.agreement.low > base.agreement.high
        kid_sep = dgn.kid.high < base.kid.low
        lines.append(f"- vs {ev.methods[name].title}: agreement {dgn.agreement} vs {base.agreement} "
                     f"({'DGN-AM higher, intervals apart' if agree_sep else 'NOT separated in DGN-AM’s favour'}); "
                     f"KID {dgn.kid.mean:.4f} vs {base.kid.mean:.4f} "
                     f"({'DGN-AM lower by more than 2 std' if kid_sep else 'NOT separated in DGN-AM’s favour'})")
    if baselines:
        best_kid = min(b.kid.mean for b in baselines.values())
        ratio = dgn.kid.mean / best_kid if best_kid > 0 else float("inf")
        lines.append(f"- DGN-AM KID / best baseline KID = {ratio:.2f} (target: <= 0.20); "
                     f"DGN-AM agreement {100 * dgn.agreement.value:.1f}% vs this judge's accuracy on real test "
                     f"images {100 * ev.judge_accuracy[judge]:.1f}%")
    return lines


def evaluation_markdown(ev: Evaluation) -> str:
    """The report: setup, one table per judge, the k/decay sweep, and the verdict per judge."""
    steps = (f"{ev.steps} steps per method" if isinstance(ev.steps, int)
             else f"{', '.join(map(str, ev.steps))} steps (method@steps)")
    out = [f"# dgnam evaluate: {markdown_text(ev.target_name)}", "",
           f"Target `{markdown_text(ev.target_name)}`; {len(ev.classes)} class logits x {ev.restarts} restarts, "
           f"{steps} "
           f"(same seeds). Real references: {ev.n_real[0]} test images (KID reference, diversity, "
           f"accuracy) and {ev.n_real[1]} train images (the KID floor: real train vs real test). "
           + (f"Every DGN-AM run from noise adds {ev.code_prior:g} x PPGN's code prior (pulls h towards E(G(h)))."
              if ev.code_prior else "DGN-AM runs from noise are the paper's (no code prior).")
           + (" Seeded runs (image-seeded DGN-AM) start from each class's top train images "
              "and add their own code prior (see their settings in results.json)."
              if any(m.settings.get("param") == "SeededCode" for m in ev.methods.values()) else ""), "",
           "Judges (never used to make any image):", ""]
    for name, acc in ev.judge_accuracy.items():
        note = ev.judge_notes.get(name) or ""
        robust = ""
        if name in ev.judge_pgd:
            eps, pgd = ev.judge_pgd[name]
            robust = f"; PGD-10 accuracy at eps {eps * 255:.0f}/255: {100 * pgd:.1f}%"
        note = f" — {markdown_text(note)}" if note else ""
        out.append(f"- `{markdown_text(name)}`: {100 * acc:.1f}% on the real test images{robust}{note}")
    out += ["", "Columns: target logit (mean over images), the same relative to the unit's max over real test "
            "images, target top-1 on its own images (%), judge top-1 agreement with the intended class "
            "[Wilson 95% interval], KID to real test images in the judge's penultimate features (mean ± std "
            "over 50 random subsets), within-class diversity (mean pairwise feature distance), judge "
            "agreement after a 2-px shift and a blur (sigma 0.5), wall seconds.", ""]
    header = ["method", "target logit", "/ real max", "target top-1", "judge agreement", "KID", "diversity",
              "agreement shifted+blurred", "s"]
    for judge in ev.judge_accuracy:
        out += [f"## Judge `{markdown_text(judge)}`", ""]
        rows = [_method_row(m, judge) for m in ev.methods.values()] + [_method_row(ev.real, judge)]
        out += [markdown_table(header, rows), ""]
        lines = verdict(ev, judge)
        if lines:
            out += ["Verdict on this judge:", "", *lines, ""]
    if ev.sweep:
        out += ["## Code bound k and L2 decay (DGN-AM)", "",
                "a_i = mean_i + k std_i of each code unit over real images; decay multiplies the code after "
                "every step (1 = none).", ""]
        judges = list(ev.judge_accuracy)
        header = ["k", "decay", "target logit", "/ real max"] + [f"{j} agreement" for j in judges] + \
                 [f"{j} KID" for j in judges]
        rows = []
        if "dgn" in ev.methods:
            s = ev.methods["dgn"]
            rows.append(["stored", "default", _fmt(s.target_activation), _fmt(s.target_relative)]
                        + [str(s.judges[j].agreement) for j in judges]
                        + [f"{s.judges[j].kid.mean:.4f}" for j in judges])
        for k, decay, s in ev.sweep:
            rows.append([f"{k:g}", f"{decay:g}", _fmt(s.target_activation), _fmt(s.target_relative)]
                        + [str(s.judges[j].agreement) for j in judges]
                        + [f"{s.judges[j].kid.mean:.4f}" for j in judges])
        out += [markdown_table(header, rows), ""]
    return "\n".join(out) + "\n"
