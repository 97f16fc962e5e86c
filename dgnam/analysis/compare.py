"""Model comparison: combined and difference gradients of two classifiers, and their outputs as vectors.

Three views of how models A and B differ, all through :func:`~dgnam.engine.render.synthesize`:

1. class images for A alone, B alone, A+B (what both see), A-B and B-A (what one sees and the other
   does not), all classes and kinds as rows of one batch;
2. the output space: on A's image of every class, the logit vectors of A and B, their cosine
   similarity per class and class by class, and the classes where the two disagree most;
3. mimicry: starting from A's image of a class, change it until A's output matches (L1) B's output
   on B's image of that class, i.e. what A needs to see to "answer like B does".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dgnam.analysis.figures import similarity_heatmap
from dgnam.engine.objectives import class_logit, match, scale_rows
from dgnam.engine.param import Parametrization
from dgnam.engine.render import Result, synthesize
from dgnam.errors import DgnamError
from dgnam.grid import labelled_grid, save_png
from dgnam.markdown import markdown_table, markdown_text
from dgnam.nets.model import OUTPUT, Model, as_model, eval_mode

# (weight of A's class logit, weight of B's class logit) of each kind of class image.
KIND_WEIGHTS: dict[str, tuple[float, float]] = {"A": (1.0, 0.0), "B": (0.0, 1.0), "A+B": (1.0, 1.0),
                                                "A-B": (1.0, -1.0), "B-A": (-1.0, 1.0)}
KINDS = tuple(KIND_WEIGHTS)
DISAGREEING = 3  # classes the report and the summary name as where the models disagree most


@dataclass
class ComparisonResult:
    """What :func:`compare` found; ``synthesis`` rows are ordered kind, then class, then restart.

    Attributes:
        model_names: names of A and B.
        classes: the compared class indices; ``class_names`` their names.
        restarts: images per (kind, class).
        synthesis: all class images (``extra`` holds ``kind``, ``class``, ``restart`` per row).
        logits_a, logits_b: (N, K) outputs of A and B on every synthesised image.
        class_similarity: (C,) cosine of A's and B's output vectors on A's image of each class
            (mean over restarts).
        similarity_matrix: (C, C) cosine of A's output on A's class-i image with B's output on A's
            class-j image (outputs averaged over restarts); the diagonal is the per-class view.
        mimicry: images that start at A's class images and make A answer like B on B's image.
        mimic_targets: (M, K) B's output on B's image of each mimicry row's class.
        mimic_start_l1, mimic_end_l1: (M,) L1 distance of A's output to the target before and after.
        mimic_start_logits, mimic_end_logits: (M, K) A's outputs before and after mimicry.
    """

    model_names: tuple[str, str]
    classes: list[int]
    class_names: list[str]
    restarts: int
    synthesis: Result
    logits_a: torch.Tensor
    logits_b: torch.Tensor
    class_similarity: torch.Tensor
    similarity_matrix: torch.Tensor
    mimicry: Result
    mimic_targets: torch.Tensor
    mimic_start_l1: torch.Tensor
    mimic_end_l1: torch.Tensor
    mimic_start_logits: torch.Tensor
    mimic_end_logits: torch.Tensor

    def rows(self, kind: str) -> torch.Tensor:
        """Indices of ``synthesis`` rows of one kind (class-major, then restart)."""
        start = KINDS.index(kind) * len(self.classes) * self.restarts
        return torch.arange(start, start + len(self.classes) * self.restarts)

    def class_scores(self, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(C,) A's and B's logit of the intended class on ``kind``'s images, mean over restarts."""
        rows = self.rows(kind)
        target = torch.tensor(self.classes).repeat_interleave(self.restarts)[:, None]
        a = self.logits_a[rows].gather(1, target).view(len(self.classes), self.restarts).mean(1)
        b = self.logits_b[rows].gather(1, target).view(len(self.classes), self.restarts).mean(1)
        return a, b

    def row_names(self) -> list[str]:
        """Name of each class image of one kind (and of each mimicry row): the class, ``#restart`` if several."""
        return _row_names(self.class_names, self.restarts)

    def mean_gap(self, kind: str) -> float:
        """A's logit minus B's logit of the intended class on ``kind``'s images, mean over classes."""
        a, b = self.class_scores(kind)
        return float((a - b).mean())

    def most_disagreeing(self, k: int = 3) -> list[int]:
        """Positions (into ``classes``) of the ``k`` classes with the lowest output-space similarity."""
        return self.class_similarity.argsort()[:k].tolist()

    def to_markdown(self, settings: str) -> str:
        """The report: the class images' logits under A and B, the output-space similarity with the classes where
        the models disagree most, and mimicry; ``settings`` (a sentence: how the images were made) opens it."""
        a_name, b_name = self.model_names
        names = self.class_names
        scores = {kind: self.class_scores(kind) for kind in KINDS}
        score_rows = [[kind, *[f"{float(a):.1f} / {float(b):.1f}" for a, b in zip(*scores[kind])],
                       f"{self.mean_gap(kind):+.1f}"] for kind in KINDS]
        off_diagonal = self.similarity_matrix[~torch.eye(len(names), dtype=torch.bool)]
        return "\n\n".join([
            f"# {markdown_text(a_name)} (A) vs {markdown_text(b_name)} (B)",
            f"{settings} Logits are the models' raw (pre-softmax) outputs.",
            "## Class images: A, B, A+B, A-B, B-A",
            "Each cell: logit of the intended class under A / under B (mean over restarts); last column: mean A - B.",
            markdown_table(["kind", *names, "mean A-B"], score_rows),
            "![class images: rows A, B, A+B, A-B, B-A](class_images.png)",
            "## Output space",
            f"On A's image of each class, the cosine similarity of A's and B's output vectors (diagonal of the heat "
            f"map): mean {float(self.similarity_matrix.diagonal().mean()):.2f}; off the diagonal (A's output on one "
            f"class image vs B's on another) mean "
            f"{float(off_diagonal.mean()) if len(off_diagonal) else float('nan'):.2f}. "
            "Classes where the models disagree most:",
            "\n".join(self._disagreement_lines()),
            "![cosine similarity of A's and B's outputs](similarity.png)",
            "## Mimicry",
            "Starting from A's image of a class, the image is changed until A's output matches (L1) B's output on "
            "B's image of that class. L1 before / after; top classes of B on its image and of A before / after.",
            markdown_table(["class", "L1 start", "L1 end", "B's top (target)", "A's top start", "A's top end"],
                           self._mimicry_rows()),
            "![A's image, the mimic made from it, B's image](mimicry.png)",
        ]) + "\n"

    def summary(self) -> str:
        """One line for the terminal: the A-B and B-A logit gaps, output similarity, where they differ, mimicry."""
        gap = {kind: self.mean_gap(kind) for kind in ("A-B", "B-A")}
        differ = ", ".join(self.class_names[i] for i in self.most_disagreeing(min(DISAGREEING, len(self.classes))))
        return (f"A-B images: A leads B by {gap['A-B']:+.1f} logits; B-A images: {gap['B-A']:+.1f}; output cosine "
                f"on A's images {float(self.similarity_matrix.diagonal().mean()):.2f}; most different: {differ}; "
                f"mimicry L1 {float(self.mimic_start_l1.mean()):.1f} -> {float(self.mimic_end_l1.mean()):.1f}")

    def _label(self, index: int) -> str:
        """A class index as the report names it: its name when it is a compared class, else the index."""
        return str(dict(zip(self.classes, self.class_names)).get(index, index))

    def _disagreement_lines(self) -> list[str]:
        top_a = self.logits_a[self.rows("A")].argmax(1).tolist()  # on A's class images
        top_b = self.logits_b[self.rows("A")].argmax(1).tolist()
        lines = []
        for i in self.most_disagreeing(min(DISAGREEING, len(self.classes))):
            row = i * self.restarts  # restart 0 of the class
            lines.append(f"- **{markdown_text(self.class_names[i])}**: cosine {float(self.class_similarity[i]):.2f}; "
                         f"on A's image A's top class is {markdown_text(self._label(top_a[row]))}, B's is "
                         f"{markdown_text(self._label(top_b[row]))}")
        return lines

    def _mimicry_rows(self) -> list[list[str]]:
        tops = zip(self.mimic_targets.argmax(1).tolist(), self.mimic_start_logits.argmax(1).tolist(),
                   self.mimic_end_logits.argmax(1).tolist())
        return [[name, f"{float(start):.1f}", f"{float(end):.1f}", *[self._label(c) for c in top]]
                for name, start, end, top in zip(self.row_names(), self.mimic_start_l1, self.mimic_end_l1, tops)]

    def save_class_grid(self, path: str | Path) -> Path:
        """Grid PNG: one row per kind (A, B, A+B, A-B, B-A), one column per class and restart.

        Captions give the intended class's logit under A and under B.
        """
        target = torch.tensor(self.classes).repeat_interleave(self.restarts).repeat(len(KINDS))[:, None]
        a = self.logits_a.gather(1, target).squeeze(1).tolist()
        b = self.logits_b.gather(1, target).squeeze(1).tolist()
        captions = [f"{kind} A{sa:.0f} B{sb:.0f}" for kind, sa, sb in zip(self.synthesis.extra["kind"], a, b)]
        grid = labelled_grid(self.synthesis.images, captions, ncol=len(self.classes) * self.restarts)
        return save_png(grid, path)

    def save_similarity_heatmap(self, path: str | Path) -> Path:
        """Heat map PNG of ``similarity_matrix`` (rows: A's outputs, columns: B's outputs)."""
        a, b = self.model_names
        image = similarity_heatmap(self.similarity_matrix, self.class_names, self.class_names,
                                   row_title=f"{a} (A) output on A's class image",
                                   col_title=f"columns: {b} (B) output on A's class image; cell: cosine similarity")
        return save_png(image, path)

    def save_mimicry(self, path: str | Path) -> Path:
        """Triplets PNG: A's class image, the mimic made from it, B's image of that class."""
        start = self.synthesis.images[self.rows("A")]
        target = self.synthesis.images[self.rows("B")]
        tiles, captions = [], []
        for i, name in enumerate(self.row_names()):
            tiles += [start[i], self.mimicry.images[i], target[i]]
            captions += [f"A: {name} L1 {float(self.mimic_start_l1[i]):.1f}",
                         f"mimic L1 {float(self.mimic_end_l1[i]):.1f}", f"B: {name}"]
        return save_png(labelled_grid(torch.stack(tiles), captions, ncol=6 if len(tiles) > 3 else 3), path)


def _row_names(class_names: Sequence[str], restarts: int) -> list[str]:
    return [name if restarts == 1 else f"{name}#{r}" for name in class_names for r in range(restarts)]


def _cosine_matrix(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(R, K), (C, K) -> (R, C) cosine similarities."""
    return F.normalize(rows, dim=1) @ F.normalize(cols, dim=1).T


def _outputs(model: Model, images: torch.Tensor, device: torch.device, batch_size: int) -> torch.Tensor:
    with torch.no_grad(), eval_mode(model):
        return torch.cat([model(images[i:i + batch_size].to(device)).float().cpu()
                          for i in range(0, len(images), batch_size)])


def _checked_classes(model_a: Model, model_b: Model, size: int, classes: Sequence[int] | None,
                     device: torch.device) -> list[int]:
    """The compared classes (default: the first ten), refused unless both models have the same outputs."""
    probe = torch.zeros(1, 3, size, size, device=device)
    n_a, n_b = _outputs(model_a, probe, device, 1).shape[1], _outputs(model_b, probe, device, 1).shape[1]
    if n_a != n_b:
        raise DgnamError(f"the models have {n_a} and {n_b} outputs; compare needs the same classes in both")
    classes = list(range(min(n_a, 10))) if classes is None else [int(c) for c in classes]
    if not classes:
        raise DgnamError("no classes to compare; give at least one")
    bad = [c for c in classes if not 0 <= c < n_a]
    if bad:
        raise DgnamError(f"class {bad[0]} is out of range; the models have {n_a} classes (valid: 0-{n_a - 1})")
    return classes


def _class_images(model_a: Model, model_b: Model, param: Parametrization, classes: list[int],
                  class_names: list[str], restarts: int, steps: int, seed: int, **run) -> Result:
    """Every kind and class in one batch: row weights turn the two logits into A, B, A+B, A-B or B-A."""
    row_kinds = [kind for kind in KINDS for _ in classes for _ in range(restarts)]
    row_classes = [c for _ in KINDS for c in classes for _ in range(restarts)]
    row_restarts = [r for _ in KINDS for _ in classes for r in range(restarts)]
    objective = (scale_rows(class_logit(row_classes, model=model_a), [KIND_WEIGHTS[k][0] for k in row_kinds])
                 + scale_rows(class_logit(row_classes, model=model_b), [KIND_WEIGHTS[k][1] for k in row_kinds]))
    labels = [f"{k}:{class_names[classes.index(c)]}" for k, c in zip(row_kinds, row_classes)]
    return synthesize(objective, param, seeds=[seed + r for r in row_restarts], steps=steps, labels=labels,
                      extra={"kind": row_kinds, "class": row_classes, "restart": row_restarts}, **run)


def compare(model_a: nn.Module | Model, model_b: nn.Module | Model, param: Parametrization, *,
            classes: Sequence[int] | None = None, class_names: Sequence[str] | None = None, restarts: int = 1,
            steps: int = 200, mimic_steps: int | None = None, seed: int = 0, transforms: Sequence = (),
            batch_size: int = 64, device: str | torch.device = "cpu", progress: bool = False) -> ComparisonResult:
    """Compare two classifiers with the same classes through synthesised class images.

    Args:
        model_a, model_b: the two classifiers (same number of outputs).
        param: how images are represented (``GeneratorCode(G)`` for DGN-AM, ``Pixels``, ``Fourier``).
        classes: class indices to compare (default: all, at most 10).
        restarts: images per (kind, class), seeds ``seed, seed + 1, ...``.
        mimic_steps: steps of the mimicry phase (default: ``steps``).
        transforms: per-step transforms (use :func:`dgnam.engine.preferred.baseline_transforms` for pixels).

    Example::

        res = compare(encoder, judge, GeneratorCode(G), steps=100)
        res.class_scores("A-B")          # A's and B's logits on the A-B images
        res.save_similarity_heatmap("similarity.png")
    """
    model_a, model_b = as_model(model_a), as_model(model_b)
    if model_a is model_b:
        raise DgnamError("compare needs two different models; pass A and B")
    if restarts < 1:
        raise DgnamError(f"restarts must be >= 1, got {restarts}")
    device = torch.device(device)
    model_a.to(device)
    model_b.to(device)
    classes = _checked_classes(model_a, model_b, param.image_size, classes, device)
    names = list(class_names) if class_names else []
    class_names = [names[c] if c < len(names) else str(c) for c in classes]
    run = dict(transforms=transforms, batch_size=batch_size, device=device, progress=progress)

    # (a) The class images of every kind.
    synthesis = _class_images(model_a, model_b, param, classes, class_names, restarts, steps, seed, **run)
    logits_a = _outputs(model_a, synthesis.images, device, batch_size)
    logits_b = _outputs(model_b, synthesis.images, device, batch_size)

    # (b) Output vectors on A's class images; restarts are averaged per class.
    a_rows = torch.arange(len(classes) * restarts)  # kind "A" comes first
    on_a_images_a = logits_a[a_rows].view(len(classes), restarts, -1).mean(1)
    on_a_images_b = logits_b[a_rows].view(len(classes), restarts, -1).mean(1)
    similarity_matrix = _cosine_matrix(on_a_images_a, on_a_images_b)
    class_similarity = similarity_matrix.diagonal().clone()  # one definition for the lines and the heat map

    # (c) Mimicry: A's image of class c, changed until A's output matches B's output on B's image of c.
    b_rows = a_rows + len(classes) * restarts
    targets = logits_b[b_rows]
    mimic_objective = match(OUTPUT, targets, p=1, model=model_a).per_row_targets()
    mimic_param = param.continue_from(synthesis.params[a_rows], synthesis.images[a_rows])
    mimicry = synthesize(mimic_objective, mimic_param, seeds=synthesis.seeds[:len(a_rows)],
                         steps=mimic_steps if mimic_steps is not None else steps,
                         optimizer=mimic_param.matching_optimizer(),
                         labels=[f"mimic:{n}" for n in _row_names(class_names, restarts)], **run)
    mimic_end_logits = _outputs(model_a, mimicry.images, device, batch_size)
    start_logits = logits_a[a_rows]
    return ComparisonResult(
        model_names=(model_a.name, model_b.name), classes=classes, class_names=class_names, restarts=restarts,
        synthesis=synthesis, logits_a=logits_a, logits_b=logits_b, class_similarity=class_similarity,
        similarity_matrix=similarity_matrix, mimicry=mimicry, mimic_targets=targets,
        mimic_start_l1=(start_logits - targets).abs().sum(1), mimic_end_l1=(mimic_end_logits - targets).abs().sum(1),
        mimic_start_logits=start_logits, mimic_end_logits=mimic_end_logits)
