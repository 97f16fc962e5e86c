"""dgnam.analysis.compare: difference images, output similarity and mimicry between two tiny models."""

import torch

from dgnam import GeneratorCode, Pixels
from dgnam.analysis import compare
from dgnam.nets.model import Model

from helpers import TinyNet


def test_difference_images_score_higher_on_the_model_they_favour():
    a, b = Model(TinyNet(seed=1), input_size=32, name="a"), Model(TinyNet(seed=2), input_size=32, name="b")
    res = compare(a, b, Pixels(32), classes=[0, 3, 5, 7], steps=30, mimic_steps=20)
    assert len(res.synthesis) == 5 * 4  # every kind and class in one batch
    a_on_a_minus_b, b_on_a_minus_b = res.class_scores("A-B")
    a_on_b_minus_a, b_on_b_minus_a = res.class_scores("B-A")
    assert (a_on_a_minus_b > b_on_a_minus_b).all()
    assert (b_on_b_minus_a > a_on_b_minus_a).all()
    # The difference objective opens a wider A-over-B gap than asking both models for the class.
    a_both, b_both = res.class_scores("A+B")
    assert ((a_on_a_minus_b - b_on_a_minus_b) > (a_both - b_both)).all()
    # Output space: the diagonal of the class-by-class matrix is the per-class similarity.
    torch.testing.assert_close(res.similarity_matrix.diagonal(), res.class_similarity)
    assert res.most_disagreeing(2) == res.class_similarity.argsort()[:2].tolist()
    # Mimicry moved A's outputs towards B's on B's images (L1) on every row.
    assert (res.mimic_end_l1 < res.mimic_start_l1).all()


def test_compare_through_the_generator_continues_from_a_codes(tiny_gen):
    a, b = Model(TinyNet(seed=1), input_size=32), Model(TinyNet(seed=2), input_size=32)
    res = compare(a, b, GeneratorCode(tiny_gen), classes=[0, 3], steps=20, mimic_steps=10)
    gap_a_minus_b = torch.sub(*res.class_scores("A-B"))
    gap_b_minus_a = torch.sub(*res.class_scores("B-A"))
    assert (gap_a_minus_b > gap_b_minus_a).all()
    assert (res.mimic_end_l1 < res.mimic_start_l1).all()
    # Mimicry rows start from the codes of A's images (the first two rows).
    assert res.mimicry.settings["param"] == "GeneratorCode"
    torch.testing.assert_close(res.mimic_start_logits, res.logits_a[:2])


def test_mimicry_starts_from_a_images_in_pixel_space():
    a, b = Model(TinyNet(seed=1), input_size=32), Model(TinyNet(seed=2), input_size=32)
    res = compare(a, b, Pixels(32), classes=[1, 2], steps=5, mimic_steps=1)
    torch.testing.assert_close(res.mimic_start_logits, res.logits_a[res.rows("A")])
    # One small step: the mimic is still close to A's image it started from.
    assert (res.mimicry.images - res.synthesis.images[res.rows("A")]).abs().max() < 0.05
