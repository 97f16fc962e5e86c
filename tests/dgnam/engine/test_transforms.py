"""dgnam.engine.transforms: per-row seeded jitter and Gaussian blur."""

import torch

import dgnam
from dgnam import Pixels, class_logit, synthesize


def test_seeded_transforms_are_row_independent(tiny_model):
    tf = dgnam.engine.probe.baseline_transforms()
    a = synthesize(class_logit([1, 2]), Pixels(32), model=tiny_model, seeds=[3, 4], steps=5, transforms=tf)
    b = synthesize(class_logit(2), Pixels(32), model=tiny_model, seeds=[4], steps=5, transforms=tf)
    torch.testing.assert_close(a.images[1], b.images[0], atol=1e-5, rtol=1e-5)
