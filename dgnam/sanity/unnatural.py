"""The DGN-AM paper's test of whether the picture follows the network or the prior, scored.

A classifier learns the natural classes and the same classes modified (``airplane`` and
``airplane_bgr``); DGN-AM synthesises every class through a prior trained on natural images only.
If the images follow the network, the modified classes' images look modified: a detector of the
modification (trained on real images) calls them modified, and an independent judge of the natural
classes recognises them better once the modification is undone (for an involution such as ``bgr``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from dgnam.errors import DgnamError
from dgnam.evaluation.metrics import Rate, predict_logits, wilson_interval
from dgnam.grid import labelled_grid
from dgnam.markdown import markdown_table, markdown_text
from dgnam.nets.model import Model
from dgnam.sanity.variants import variant as variant_transform


@dataclass(frozen=True)
class ClassPairs:
    """The model's classes split into natural ones and their modified twins (same order)."""

    names: list[str]  # the natural class names
    natural: list[int]  # the model's output index of each natural class
    modified: list[int]  # the model's output index of its ``<name>_<variant>`` twin


def class_pairs(classes: list[str], variant: str) -> ClassPairs:
    """Pair every class ``c`` of ``classes`` with ``c_<variant>``; one-line error when there is none."""
    index = {c: i for i, c in enumerate(classes)}
    names = [c for c in classes if f"{c}_{variant}" in index]
    if not names:
        raise DgnamError(f"the model's classes hold no pair like 'cat' / 'cat_{variant}'; train it with "
                         f"--data.variants [{variant}] (configs/cifar10/sanity_bgr20.yaml)")
    return ClassPairs(names, [index[c] for c in names], [index[f"{c}_{variant}"] for c in names])


@dataclass
class UnnaturalResult:
    """Scores of the synthesised images of each natural class and of its modified twin.

    ``images_*``: (classes, restarts, 3, H, W). ``detected_*``: whether the detector calls each image
    modified. ``judge_*``: whether the judge's top class is the (natural) class the image was made for:
    on the natural-class images, on the modified-class images as they are, and with the
    modification undone.
    """

    variant: str
    pairs: ClassPairs
    images_natural: torch.Tensor
    images_modified: torch.Tensor
    detected_natural: torch.Tensor
    detected_modified: torch.Tensor
    judge_natural: torch.Tensor
    judge_modified: torch.Tensor
    judge_undone: torch.Tensor

    @staticmethod
    def _rate(hits: torch.Tensor) -> Rate:
        return wilson_interval(int(hits.sum()), hits.numel())

    def rates(self) -> dict[str, Rate]:
        """The headline numbers with 95% Wilson intervals."""
        return {"natural detected as modified": self._rate(self.detected_natural),
                "modified detected as modified": self._rate(self.detected_modified),
                "judge agrees, natural classes": self._rate(self.judge_natural),
                "judge agrees, modified classes as made": self._rate(self.judge_modified),
                "judge agrees, modified classes undone": self._rate(self.judge_undone)}

    def to_markdown(self, model_name: str, settings: str) -> str:
        """The report: the headline rates with their intervals, then per class; ``settings`` (how the images were
        made and how accurate the scorers are) follows the title."""
        rows = [[name, f"{100 * r.value:.1f}%", f"{100 * r.low:.1f}-{100 * r.high:.1f}%", str(r.n)]
                for name, r in self.rates().items()]
        columns = (self.detected_natural, self.detected_modified, self.judge_modified, self.judge_undone)
        per_class = [[name, *[f"{100 * float(hits[i].float().mean()):.0f}%" for hits in columns]]
                     for i, name in enumerate(self.pairs.names)]
        return "\n\n".join([
            f"# Natural and `{self.variant}` classes of {markdown_text(model_name)}",
            settings,
            markdown_table(["measure", "rate", "95% interval", "images"], rows),
            "Per class: detected as modified (natural-class images, modified-class images); judge agreement on the "
            "modified-class images as made and undone.",
            markdown_table(["class", "natural: detected", f"{self.variant}: detected", "judge as made",
                            "judge undone"], per_class),
            "![rows: classes; columns: natural-class image, modified-class image, modified-class image "
            "undone](classes.png)",
        ]) + "\n"

    def figure(self, restart: int = 0) -> Image.Image:
        """One row per class: its natural-class image, its modified-class image, that image undone."""
        undo = variant_transform(self.variant)
        tiles, captions = [], []
        for i, name in enumerate(self.pairs.names):
            modified = self.images_modified[i, restart]
            tiles += [self.images_natural[i, restart], modified, undo(modified)]
            captions += [name, f"{name}_{self.variant}", "undone"]
        return labelled_grid(torch.stack(tiles), captions, ncol=3)


def check_scorers(pairs: ClassPairs, variant: str, detector: Model, judge_classes: list[str]) -> None:
    """One-line errors, before any synthesis, unless the detector and the judge can score ``pairs``."""
    missing = [c for c in pairs.names if c not in judge_classes]
    if missing:
        raise DgnamError(f"the judge has no class {missing[0]!r}; pass a judge trained on the natural classes")
    if detector.classes and variant not in detector.classes and len(detector.classes) != 2:
        raise DgnamError(f"the detector's classes {detector.classes} name no {variant!r}; pass a natural vs {variant} "
                         f"detector (configs/cifar10/sanity_swap_detector.yaml)")


def score_unnatural(images: torch.Tensor, pairs: ClassPairs, variant: str, detector: Model, judge: Model,
                    judge_classes: list[str], batch_size: int = 256,
                    device: str | torch.device = "cpu") -> UnnaturalResult:
    """Score ``images`` (2 x classes x restarts, natural classes first, in ``pairs`` order) with the
    modification ``detector`` (its class named ``variant``, else class 1, means modified) and a
    ``judge`` of the natural classes (``judge_classes`` names its outputs)."""
    check_scorers(pairs, variant, detector, judge_classes)
    modified_index = detector.classes.index(variant) if variant in detector.classes else 1
    n = len(pairs.names)
    stack = images.view(2, n, -1, *images.shape[1:])
    restarts = stack.shape[2]
    undone = variant_transform(variant)(stack[1])

    def detected(x: torch.Tensor) -> torch.Tensor:
        predicted = predict_logits(detector, x.flatten(0, 1), batch_size, device).argmax(1)
        return (predicted == modified_index).view(n, restarts)

    target = torch.tensor([judge_classes.index(c) for c in pairs.names])[:, None]

    def judged(x: torch.Tensor) -> torch.Tensor:
        return predict_logits(judge, x.flatten(0, 1), batch_size, device).argmax(1).view(n, restarts) == target

    return UnnaturalResult(variant, pairs, stack[0], stack[1], detected(stack[0]), detected(stack[1]),
                           judged(stack[0]), judged(stack[1]), judged(undone))
