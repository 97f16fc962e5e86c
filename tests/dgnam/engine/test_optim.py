"""dgnam.engine.optim: DGN-AM's normalised ascent and Adam, each row updated on its own."""

import torch

from dgnam.engine.optim import Adam, NormalizedAscent


def test_normalized_ascent_matches_reference_rule():
    params = torch.tensor([[1.0, 2.0, 0.5], [0.1, 0.1, 0.1]])
    grad = torch.tensor([[2.0, -4.0, 0.0], [0.0, 0.0, 0.0]])
    opt = NormalizedAscent(lr_start=8.0, lr_end=0.0, l2_decay=0.99)
    opt.start(params, n_steps=4)
    upper = torch.tensor([5.0, 5.0, 5.0])
    opt.update(params, grad, step=1, project=lambda p: p.clamp_(torch.zeros(3), upper))
    lr = 8.0 + (0.0 - 8.0) * 1 / 4  # 6.0; mean |g| of row 0 = 2
    expected0 = (torch.tensor([1.0, 2.0, 0.5]) + lr * torch.tensor([2.0, -4.0, 0.0]) / 2).clamp(0, 5) * 0.99
    torch.testing.assert_close(params[0], expected0)
    torch.testing.assert_close(params[1], torch.full((3,), 0.1 * 0.99))  # zero gradient: decayed once...
    opt.update(params, grad, step=2, project=lambda p: p.clamp_(torch.zeros(3), upper))
    torch.testing.assert_close(params[1], torch.full((3,), 0.1 * 0.99))  # ...then stopped, as act_max.py breaks


def test_normalized_step_moves_each_row_by_lr_on_average_whatever_its_gradient_scale():
    """h += lr * g / mean|g|: a row's mean step is the scheduled lr, for a tiny or a huge gradient alike."""
    grad = torch.tensor([[1e-3, -3e-3, 2e-3, 0.0], [1e3, 1e3, -2e3, 4e3]])
    opt = NormalizedAscent(lr_start=8.0, lr_end=0.0, l2_decay=1.0)  # decay 1: off
    for step, lr in [(0, 8.0), (1, 6.0), (3, 2.0)]:  # linear from lr_start towards lr_end over 4 steps
        params = torch.zeros(2, 4)
        opt.start(params, n_steps=4)
        opt.update(params, grad, step=step, project=lambda p: None)
        torch.testing.assert_close(params.abs().mean(1), torch.full((2,), lr))
        assert torch.equal(params.sign(), grad.sign())  # along the gradient: an ascent
        torch.testing.assert_close(params[0], lr * grad[0] / grad[0].abs().mean())


def test_normalized_ascent_skips_a_non_finite_gradient_but_still_clips_and_decays():
    params = torch.tensor([[3.0, -1.0], [0.5, 0.5]])
    grad = torch.tensor([[float("nan"), 1.0], [1.0, 1.0]])
    opt = NormalizedAscent(lr_start=1.0, lr_end=1.0, l2_decay=0.5)
    opt.start(params, n_steps=1)
    opt.update(params, grad, step=0, project=lambda p: p.clamp_(0, 2))
    torch.testing.assert_close(params[0], torch.tensor([2.0, 0.0]) * 0.5)  # no ascent: clipped, then decayed
    torch.testing.assert_close(params[1], torch.tensor([1.5, 1.5]) * 0.5)  # the other row ascended


def test_adam_first_step_is_lr_along_the_gradient_sign_and_rows_stay_independent():
    """Bias-corrected Adam's first step is lr * g / |g| per element: an ascent of exactly lr (grad 0: none)."""
    grad = torch.tensor([[2.0, -0.001, 0.0], [50.0, 3.0, -7.0]])
    params = torch.zeros(2, 3)
    opt = Adam(lr=0.05)
    opt.start(params, n_steps=10)
    opt.update(params, grad, step=0, project=lambda p: None)
    torch.testing.assert_close(params, 0.05 * grad.sign(), atol=1e-6, rtol=0)
    alone = torch.zeros(1, 3)
    opt = Adam(lr=0.05)
    opt.start(alone, n_steps=10)
    opt.update(alone, grad[:1], step=0, project=lambda p: None)
    assert torch.equal(alone[0], params[0])
    assert opt.describe() == {"optimizer": "Adam", "lr": 0.05, "betas": (0.9, 0.999), "l2_decay": 1.0}
