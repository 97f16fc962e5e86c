"""dgnam.engine.optim: DGN-AM's normalised ascent and Adam, each row updated on its own."""

import torch

from dgnam.engine.optim import NormalizedAscent


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
