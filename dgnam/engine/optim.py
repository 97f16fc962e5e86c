"""Update rules. Every rule treats batch rows independently, so a row's result does not depend on
the rest of the batch."""

from __future__ import annotations

from collections.abc import Callable

import torch

Project = Callable[[torch.Tensor], None]


class Optimizer:
    """``start(params, n_steps)`` once per chunk, then ``update(params, grad, step, project)`` each step.
    ``grad`` is the gradient of the objective to *maximise*."""

    def start(self, params: torch.Tensor, n_steps: int) -> None:
        self.n_steps = n_steps

    def update(self, params: torch.Tensor, grad: torch.Tensor, step: int, project: Project) -> None:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"optimizer": type(self).__name__,
                **{k: v for k, v in vars(self).items() if not k.startswith("_") and k != "n_steps"}}


class NormalizedAscent(Optimizer):
    """The DGN-AM update (Evolving-AI-Lab/synthesizing ``act_max.py``).

    Each step: ``lr = lr_start + (lr_end - lr_start) * step / n_steps``;
    ``h += lr * g / mean|g|`` (mean per row); clip h to the box (``project``); ``h *= l2_decay``.
    As in the original, a row whose gradient is not finite skips the ascent but is still clipped
    and decayed, and a row whose gradient is exactly zero is clipped and decayed once, then stops.
    """

    def __init__(self, lr_start: float = 8.0, lr_end: float = 1e-10, l2_decay: float = 0.99) -> None:
        self.lr_start, self.lr_end, self.l2_decay = lr_start, lr_end, l2_decay

    def start(self, params: torch.Tensor, n_steps: int) -> None:
        super().start(params, n_steps)
        self._stopped = torch.zeros(params.shape[0], dtype=torch.bool, device=params.device)

    @torch.no_grad()
    def update(self, params: torch.Tensor, grad: torch.Tensor, step: int, project: Project) -> None:
        lr = self.lr_start + (self.lr_end - self.lr_start) * step / self.n_steps
        rows = (-1, *[1] * (grad.ndim - 1))
        mean_abs = grad.abs().flatten(1).mean(1)
        ascend = torch.isfinite(mean_abs) & (mean_abs > 0) & ~self._stopped
        scale = torch.where(ascend, lr / mean_abs.clamp_min(1e-30), torch.zeros_like(mean_abs))
        stopped_values = params[self._stopped].clone()
        params.add_(torch.where(ascend.view(rows), grad, torch.zeros_like(grad)) * scale.view(rows))
        project(params)
        if 0 < self.l2_decay < 1:
            params.mul_(self.l2_decay)
        params[self._stopped] = stopped_values
        self._stopped |= mean_abs == 0


class Adam(Optimizer):
    """Adam ascent (elementwise, so rows stay independent), then ``project``; optional L2 decay."""

    def __init__(self, lr: float = 0.05, betas: tuple[float, float] = (0.9, 0.999), l2_decay: float = 1.0) -> None:
        self.lr, self.betas, self.l2_decay = lr, tuple(betas), l2_decay

    def start(self, params: torch.Tensor, n_steps: int) -> None:
        super().start(params, n_steps)
        self._opt = torch.optim.Adam([params], lr=self.lr, betas=self.betas)

    @torch.no_grad()
    def update(self, params: torch.Tensor, grad: torch.Tensor, step: int, project: Project) -> None:
        params.grad = torch.nan_to_num(-grad)  # torch optimisers minimise
        self._opt.step()
        params.grad = None
        project(params)
        if 0 < self.l2_decay < 1:
            params.mul_(self.l2_decay)
