"""Numbers that say whether synthesised images are natural, recognisable and diverse.

Every measure here looks at images through *judges*: classifiers never used to make the images
(the target's own confidence says nothing about realism). The literature's usable measures:

* judge agreement with the intended class, with a Wilson 95% interval;
* KID (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel between judge
  penultimate features of two image sets; ~0 for two samples of one distribution;
* within-class diversity: mean pairwise distance of judge features inside each class;
* the Inception score (Salimans et al. 2016) in a judge, with its mean confidence: whether each
  image shows one class clearly (KID can favour images of the right texture and no object);
* robustness of the class evidence to a 2-pixel shift and a slight blur (adversarial textures lose
  it, objects keep it);
* PGD accuracy, to say how robust a robust judge is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dgnam.engine.transforms import GaussianBlur
from dgnam.errors import DgnamError
from dgnam.nets.model import Model, eval_mode


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval, from ``n`` values or trials."""

    value: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


class Rate(Interval):
    """A proportion with its Wilson 95% interval, shown in percent."""

    def __str__(self) -> str:
        low, high = 100 * self.low, 100 * self.high
        return f"{100 * self.value:.1f}% [{low:.1f}, {high:.1f}]"


def mean_interval(values: torch.Tensor) -> Interval:
    """The mean of ``values`` with a 95% interval (1.96 standard errors, the normal approximation)."""
    values = values.double().flatten()
    n = len(values)
    mean = float(values.mean())
    half = 1.96 * float(values.std()) / math.sqrt(n) if n > 1 else 0.0
    return Interval(mean, mean - half, mean + half, n)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> Rate:
    """Proportion ``successes / n`` with its Wilson score interval (sound near 0% and 100%).

    Example: ``wilson_interval(45, 50)`` -> 90.0% [78.6, 95.7].
    """
    if n <= 0:
        raise DgnamError("a rate needs at least one trial")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Rate(p, max(0.0, centre - half), min(1.0, centre + half), n)


def agreement(predicted: torch.Tensor, intended: torch.Tensor) -> Rate:
    """How often ``predicted`` (N,) class indices equal ``intended`` (N,), with a 95% interval."""
    if predicted.shape != intended.shape:
        raise DgnamError(f"predictions {tuple(predicted.shape)} and intended classes {tuple(intended.shape)} differ in "
                         "shape")
    return wilson_interval(int((predicted == intended).sum()), predicted.numel())


@dataclass(frozen=True)
class KID:
    """Kernel Inception Distance in some judge's feature space: mean and std over random subsets."""

    mean: float
    std: float
    subset_size: int
    n_subsets: int

    # Two KIDs count as apart when mean +- 2 std of their subset estimates do not overlap (the report's test).
    @property
    def low(self) -> float:
        return self.mean - 2 * self.std

    @property
    def high(self) -> float:
        return self.mean + 2 * self.std

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.std:.4f}"


def _polynomial_kernel(x: torch.Tensor, y: torch.Tensor, degree: int, coef0: float) -> torch.Tensor:
    return (x @ y.T / x.shape[1] + coef0) ** degree


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, degree: int = 3, coef0: float = 1.0) -> float:
    """Unbiased MMD^2 between samples ``x`` (N, D) and ``y`` (M, D), kernel (x.y/D + coef0)^degree.

    Diagonal terms are left out, so the expectation is exactly 0 when x and y come from one
    distribution (single estimates can be slightly negative).
    """
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise DgnamError("KID needs at least 2 images in each set")
    x, y = x.double(), y.double()
    k_xx = _polynomial_kernel(x, x, degree, coef0)
    k_yy = _polynomial_kernel(y, y, degree, coef0)
    k_xy = _polynomial_kernel(x, y, degree, coef0)
    sum_xx = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
    sum_yy = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return float(sum_xx + sum_yy - 2 * k_xy.mean())


def kid(features_x: torch.Tensor, features_y: torch.Tensor, *, subset_size: int | None = None,
        n_subsets: int = 50, degree: int = 3, coef0: float = 1.0, seed: int = 0) -> KID:
    """KID between two feature sets: unbiased MMD^2 averaged over ``n_subsets`` random subsets.

    ``subset_size`` defaults to half the smaller set (at most 1000, as in the KID paper), so every
    subset differs in both sets and the std shows the estimate's spread; the estimator is unbiased
    at any subset size.

    Example: ``kid(judge_feats(fake), judge_feats(real)).mean``.
    """
    if features_x.ndim != 2 or features_y.ndim != 2 or features_x.shape[1] != features_y.shape[1]:
        raise DgnamError(f"KID needs two (N, D) feature sets of equal D, got {tuple(features_x.shape)} "
                         f"and {tuple(features_y.shape)}")
    size = subset_size or max(2, min(len(features_x) // 2, len(features_y) // 2, 1000))
    if size > min(len(features_x), len(features_y)):
        raise DgnamError(f"KID subset size {size} exceeds a set of {min(len(features_x), len(features_y))} images")
    gen = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(n_subsets):
        ix = torch.randperm(len(features_x), generator=gen)[:size]
        iy = torch.randperm(len(features_y), generator=gen)[:size]
        values.append(mmd2_unbiased(features_x[ix], features_y[iy], degree, coef0))
    t = torch.tensor(values)
    return KID(float(t.mean()), float(t.std()) if len(values) > 1 else 0.0, size, n_subsets)


def within_class_diversity(features: torch.Tensor, classes: torch.Tensor) -> float:
    """Mean pairwise Euclidean distance of ``features`` (N, D) between images of the same class,
    averaged over classes with at least two images. Collapsed restarts score ~0."""
    per_class = []
    for c in classes.unique():
        f = features[classes == c].double()
        if len(f) < 2:
            continue
        d = torch.cdist(f, f)
        per_class.append(float(d.sum() / (len(f) * (len(f) - 1))))
    if not per_class:
        raise DgnamError("diversity needs at least two images of some class")
    return sum(per_class) / len(per_class)


@dataclass(frozen=True)
class JudgeScore:
    """The Inception score of an image set in a judge, and the judge's mean top-class probability."""

    inception_score: float
    confidence: float


def judge_score(logits: torch.Tensor) -> JudgeScore:
    """Inception score ``exp(E_x KL(p(y|x) || p(y)))`` of a judge's ``logits`` (N, classes), and mean max p(y|x).

    High when each image is confidently one class and the set covers the classes; 1 when no image
    fits a class, or all fit the same one; at most the number of classes. It depends on the judge,
    so read it only against the same judge's score on real images.
    """
    if logits.ndim != 2 or len(logits) < 1 or not torch.isfinite(logits).all():
        raise DgnamError(f"judge_score needs finite (N, classes) logits, got shape {tuple(logits.shape)}")
    # In log space throughout: a confident judge's near-zero probabilities give no 0 * log 0.
    log_p = logits.double().log_softmax(1)
    log_marginal = torch.logsumexp(log_p, 0) - math.log(len(log_p))
    p = log_p.exp()
    kl = (p * (log_p - log_marginal)).sum(1)
    return JudgeScore(float(kl.mean().exp()), float(p.max(1).values.mean()))


def last_linear(model: Model | nn.Module) -> nn.Linear:
    """The classifier head: the last ``nn.Linear`` registered in the model (fc / classifier.6 / head)."""
    module = model.module if isinstance(model, Model) else model
    if isinstance(module, torch.jit.ScriptModule):
        raise DgnamError("a TorchScript judge hides its layers, so its penultimate features cannot be read; "
                         "pass the judge as a dgnam .pt, torchvision:NAME or FILE.py:factory")
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise DgnamError("the judge has no nn.Linear head, so its penultimate features are undefined; "
                         "use a classifier that ends in a linear layer")
    return linears[-1]


@torch.no_grad()
def judge_outputs(model: Model, images: torch.Tensor, batch_size: int = 256,
                  device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, classes) and penultimate features (N, D) (the input of the last linear layer)
    of ``model`` on RGB [0, 1] ``images``, in batches; both returned on the CPU."""
    head = last_linear(model)
    captured: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0].flatten(1).float().cpu()))
    logits = []
    try:
        with eval_mode(model):
            for start in range(0, len(images), batch_size):
                logits.append(model(images[start:start + batch_size].to(device)).float().cpu())
    finally:
        handle.remove()
    return torch.cat(logits), torch.cat(captured)


def shift_and_blur(images: torch.Tensor, shift: int = 2, sigma: float = 0.5) -> torch.Tensor:
    """Translate images by ``shift`` pixels down and right (edges replicated), then blur slightly.

    Objects survive this; adversarial pixel patterns tuned to exact positions mostly do not.
    """
    padded = F.pad(images, (shift, 0, shift, 0), mode="replicate")
    moved = padded[..., : images.shape[-2], : images.shape[-1]]
    return GaussianBlur(sigma)(moved) if sigma > 0 else moved


def pgd_accuracy(model: Model, images: torch.Tensor, labels: torch.Tensor, *, eps: float = 4 / 255,
                 step_size: float = 1 / 255, steps: int = 10, batch_size: int = 256,
                 device: str | torch.device = "cpu", seed: int = 0) -> float:
    """Accuracy under an L-inf PGD attack (random start, ``steps`` signed-gradient steps) on [0, 1] images."""
    gen = torch.Generator().manual_seed(seed)
    correct = 0
    with eval_mode(model):
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].to(device)
            y = labels[start:start + batch_size].to(device)
            # delta is projected so that x + delta stays a valid image: a clamp inside the forward
            # would zero the gradient of saturated pixels and leave them unattacked for good.
            delta = (x + (torch.rand(x.shape, generator=gen) * 2 - 1).to(device) * eps).clamp(0, 1) - x
            for _ in range(steps):
                delta.requires_grad_(True)
                (grad,) = torch.autograd.grad(F.cross_entropy(model(x + delta), y), delta)
                delta = (delta.detach() + step_size * grad.sign()).clamp(-eps, eps)
                delta = (x + delta).clamp(0, 1) - x
            with torch.no_grad():
                correct += int((model(x + delta).argmax(1) == y).sum())
    return correct / len(images)


@torch.no_grad()
def predict_logits(model: Model, images: torch.Tensor, batch_size: int = 256,
                   device: str | torch.device = "cpu") -> torch.Tensor:
    """``model``'s outputs (N, classes) on RGB [0, 1] ``images``, in batches, in eval mode, on the CPU."""
    with eval_mode(model):
        return torch.cat([model(images[i:i + batch_size].to(device)).float().cpu()
                          for i in range(0, len(images), batch_size)])


def relative_to_real(values: torch.Tensor, units: Sequence[int], real_max: dict[int, float]) -> torch.Tensor:
    """Each row's activation divided by its unit's max over real images (NaN where that max is <= 0)."""
    denom = torch.tensor([real_max[int(u)] for u in units], dtype=torch.float64)
    return torch.where(denom > 0, values.double() / denom, torch.full_like(denom, float("nan")))
