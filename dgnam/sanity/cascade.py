"""Would I see this picture whatever the weights were? Cascading randomisation of the model, with the
same units synthesised from the same seeds at every stage.

An image that shows the network changes when the network's weights are replaced by random ones; an
image that shows the prior (or the parametrisation's own bias) stays. The yardstick is how much the
trained model's images of one unit differ among themselves across restarts: a stage *passes* when
its images are further from the trained model's (same unit, same seed) than the trained model's
restarts are from each other, clearly (95% intervals apart); it *fails* when they are at least as
close; otherwise it is *inconclusive*. Closeness is measured twice: SSIM on pixels, and cosine
similarity in a judge's penultimate features (what an independent network sees in the image).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image

from dgnam.engine.render import Result
from dgnam.errors import DgnamError
from dgnam.evaluation.metrics import Interval, judge_outputs, mean_interval
from dgnam.grid import labelled_grid
from dgnam.markdown import markdown_table, markdown_text
from dgnam.nets.model import OUTPUT, Model, as_model
from dgnam.sanity.randomize import Stage, cascade_stages, randomized
from dgnam.sanity.similarity import cosine, ssim

METRICS = ("ssim", "features")
Synthesis = Callable[[Model], Result]


@dataclass(frozen=True)
class StageScore:
    """One method at one stage: similarity to the trained model's images (same unit, same seed) in
    each metric, the verdict per metric and overall, and the stage's mean activation."""

    stage: str
    method: str
    similarity: dict[str, Interval]
    verdicts: dict[str, str]
    activation: float

    @property
    def verdict(self) -> str:
        """``passes`` when every metric passes, ``fails`` when any fails, else ``inconclusive``."""
        values = set(self.verdicts.values())
        if values == {"passes"}:
            return "passes"
        return "fails" if "fails" in values else "inconclusive"


@dataclass
class CascadeResult:
    """What :func:`cascading_randomization` measured; ``images[method]`` holds one (stages + 1, N, 3, H, W)
    tensor per method, row 0 the trained model's, N = units x restarts in unit-major order."""

    layer: str
    units: list[int]
    restarts: int
    stages: list[Stage]
    methods: list[str]
    within: dict[str, dict[str, Interval]]  # method -> metric -> the trained restarts' similarity
    scores: list[StageScore]
    images: dict[str, torch.Tensor] = field(repr=False)
    labels: list[str] = field(default_factory=list)

    def figure(self, method: str, restart: int = 0) -> Image.Image:
        """Rows = the trained model then each stage (numbered as in the report), columns = units
        (restart ``restart``)."""
        stack = self.images[method]
        columns = torch.arange(len(self.units)) * self.restarts + restart
        rows = ["trained", *(f"stage {i}" for i in range(1, len(self.stages) + 1))]
        captions = [f"{row}: {self.labels[c]}" for row in rows for c in columns.tolist()]
        return labelled_grid(stack[:, columns].flatten(0, 1), captions, ncol=len(self.units))

    def verdicts(self, method: str) -> list[StageScore]:
        return [s for s in self.scores if s.method == method]


def _pairs_within(images: torch.Tensor, features: torch.Tensor, units: int, restarts: int) -> dict[str, torch.Tensor]:
    """Similarity of every pair of restarts of the same unit (the trained model's own spread)."""
    i, j = torch.triu_indices(restarts, restarts, offset=1)
    base = (torch.arange(units) * restarts)[:, None]
    a, b = (base + i).flatten(), (base + j).flatten()
    return {"ssim": ssim(images[a], images[b]), "features": cosine(features[a], features[b])}


def _verdict(cross: Interval, within: Interval) -> str:
    if cross.value >= within.value:
        return "fails"
    return "passes" if cross.high < within.low else "inconclusive"


def cascading_randomization(model: Model, synthesizers: dict[str, Synthesis], judge: Model, *,
                            layer: str = OUTPUT, units: Sequence[int], restarts: int, stages: int = 4,
                            seed: int = 0, device: str | torch.device = "cpu",
                            on_stage: Callable[[str], None] | None = None) -> CascadeResult:
    """Synthesise the same units with every method in ``synthesizers`` (name -> a function of the model
    that returns its :class:`~dgnam.engine.render.Result`, units x restarts in unit-major order, the
    same seeds each call) on the trained model and on each cascade stage, and score the stages.

    The model's weights are never changed: each stage is a re-initialised copy (seeded by ``seed``).
    ``on_stage`` is told each stage's name before it runs (progress).
    """
    model = as_model(model)
    units = [int(u) for u in units]
    if restarts < 2:
        raise DgnamError("the sanity check compares restarts of the trained model with each other; use --restarts 2 or "
                         "more")
    plan = cascade_stages(model, layer, stages)
    models = [("trained", model)] + [(s.name, randomized(model, s.layers, seed)) for s in plan]
    images: dict[str, list[torch.Tensor]] = {m: [] for m in synthesizers}
    activations: dict[str, list[float]] = {m: [] for m in synthesizers}
    labels: list[str] = []
    for name, stage_model in models:
        if on_stage is not None:
            on_stage(name)
        for method, synthesize in synthesizers.items():
            result = synthesize(stage_model)
            if len(result) != len(units) * restarts:
                raise DgnamError(f"method {method!r} returned {len(result)} images for {len(units)} units x {restarts} "
                                 "restarts")
            images[method].append(result.images)
            activations[method].append(float(result.values.float().mean()))
            labels = labels or list(result.labels)
    stacked = {m: torch.stack(v) for m, v in images.items()}

    within: dict[str, dict[str, Interval]] = {}
    scores: list[StageScore] = []
    for method, stack in stacked.items():
        features = judge_outputs(judge, stack.flatten(0, 1), device=device)[1].view(len(stack), stack.shape[1], -1)
        within[method] = {k: mean_interval(v) for k, v in
                          _pairs_within(stack[0], features[0], len(units), restarts).items()}
        for s, stage in enumerate(plan, start=1):
            cross = {"ssim": mean_interval(ssim(stack[0], stack[s])),
                     "features": mean_interval(cosine(features[0], features[s]))}
            scores.append(StageScore(stage.name, method, cross,
                                     {k: _verdict(cross[k], within[method][k]) for k in METRICS},
                                     activations[method][s]))
    return CascadeResult(layer, units, restarts, plan, list(synthesizers), within, scores, stacked, labels)


def cascade_markdown(result: CascadeResult, figures: dict[str, str], title: str) -> str:
    """The report: per method, the trained restarts' own similarity, then one row per stage with its
    similarity to the trained images in each metric and the verdict; ``figures`` maps method -> PNG name."""
    lines = [f"# {title}", "",
             f"Layer `{markdown_text(result.layer)}`, units {', '.join(map(str, result.units))}; {result.restarts} "
             "restarts each, "
             "the same seeds at every stage. Each stage re-initialises one more block of the model from the top "
             "down (cumulative). A stage **passes** when its images are further from the trained model's "
             "(same unit, same seed) than the trained model's restarts are from each other, with the 95% "
             "intervals apart, in both SSIM and the judge's features; it **fails** when they are at least as "
             "close in either.", ""]
    for method in result.methods:
        w = result.within[method]
        lines += [f"## {method}", "", f"![{method}]({figures[method]})", "",
                  f"Trained model, restarts among themselves: SSIM {w['ssim']}, judge features {w['features']}.", ""]
        rows = [[str(i), f"{stage.name} ({len(stage.layers)} modules)",
                 f"{score.similarity['ssim']} ({score.verdicts['ssim']})",
                 f"{score.similarity['features']} ({score.verdicts['features']})", f"{score.activation:.2f}",
                 f"**{score.verdict}**"]
                for i, (stage, score) in enumerate(zip(result.stages, result.verdicts(method)), start=1)]
        lines += [markdown_table(["stage", "re-initialised (cumulative)", "SSIM to trained", "features to trained",
                                  "mean activation", "verdict"], rows), ""]
    return "\n".join(lines)
