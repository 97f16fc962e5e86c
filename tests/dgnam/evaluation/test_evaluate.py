"""dgnam.evaluation.evaluate: every method scored by judges against real images, on tiny nets."""

import dataclasses

import pytest
import torch

from dgnam.errors import DgnamError
from dgnam.evaluation.evaluate import STANDARD_METHODS, Method, evaluate
from dgnam.nets.model import Model

from helpers import CODE_LAYER, TinyNet, tiny_generator


def _real_set(n_per_class: int, n_classes: int = 10, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_classes).repeat_interleave(n_per_class)
    # Class-dependent colour plus noise: a crude "dataset" the judges can tell apart a bit.
    colours = torch.rand(n_classes, 3, 1, 1, generator=gen)
    images = (colours[labels] + 0.2 * torch.randn(len(labels), 3, 32, 32, generator=gen)).clamp(0, 1)
    return images, labels


def test_evaluate_scores_every_method_and_renders_a_report():
    target = Model(TinyNet(seed=0), input_size=32)
    judges = {"judge_a": Model(TinyNet(seed=1), input_size=32), "judge_b": Model(TinyNet(seed=2), input_size=32)}
    judges["judge_b"].metadata = {"adv_eps": 4 / 255}  # read as a robust judge: its PGD accuracy is reported
    test_x, test_y = _real_set(6)
    train_x, _ = _real_set(6, seed=1)
    classes = [f"c{i}" for i in range(10)]
    # The tiny net's logits are ~0.1, so the TV weight tuned for real logits (~10) is scaled down with them.
    methods = [*STANDARD_METHODS.values()]
    methods[3] = dataclasses.replace(methods[3], tv_weight=0.01)
    generator = tiny_generator(code_dim=32)
    generator.encoder_layer = CODE_LAYER  # the target's relu1 is the code: seeded starts read it there
    ev = evaluate(target, judges, generator, real_test=(test_x, test_y), real_train=train_x, classes=classes,
                  methods=methods, restarts=2, steps=8, sweep=[(1.0, 0.99)], sweep_restarts=2, progress=False,
                  code_encoder=target)
    assert list(ev.methods) == list(STANDARD_METHODS)
    for scores in ev.methods.values():
        assert set(scores.judges) == {"judge_a", "judge_b"}
        # The target's own logit was driven up: far above its mean over real images.
        with torch.no_grad():
            assert scores.target_activation > float(target(test_x).gather(1, test_y[:, None]).mean())
        assert scores.judges["judge_a"].agreement.n == 20
    assert ev.images["dgn"].shape == (20, 3, 32, 32)
    grid, captions = ev.grid()
    assert grid.shape[0] == 5 * 10 and captions[20] == "pixel: c0"
    text = ev.to_markdown()
    assert "## Judge `judge_a`" in text and "| 1 | 0.99 |" in text and "Verdict on this judge" in text
    eps, pgd = ev.judge_pgd["judge_b"]
    assert list(ev.judge_pgd) == ["judge_b"] and eps == pytest.approx(4 / 255)
    assert 0 <= pgd <= ev.judge_accuracy["judge_b"]
    assert "PGD-10 accuracy at eps 4/255" in text
    assert len(ev.sweep) == 1 and ev.sweep[0][2].judges["judge_b"].agreement.n == 20


def test_evaluate_refuses_the_target_as_judge():
    target = Model(TinyNet(), input_size=32)
    x, y = _real_set(2)
    with pytest.raises(DgnamError, match="cannot be its own judge"):
        evaluate(target, {"t": target}, tiny_generator(), real_test=(x, y), real_train=x, classes=list("abcdefghij"),
                 methods=[Method("pixel", "pixel", "pixel")], restarts=1, steps=1, progress=False)


def test_evaluate_applies_the_prior_to_every_dgn_run(encoder, gen32):
    target = Model(TinyNet(seed=3), input_size=32)
    judges = {"j": Model(TinyNet(seed=1), input_size=32)}
    x = torch.rand(20, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.arange(20) % 10
    common = dict(real_test=(x, y), real_train=x, classes=list("abcdefghij"), restarts=2, steps=5,
                  sweep=[(1.0, 0.99)], sweep_restarts=2, progress=False,
                  methods=[Method("dgn", "dgn", "dgn"), Method("pixel", "pixel", "pixel")])
    ev = evaluate(target, judges, gen32, code_prior=0.5, code_encoder=encoder, **common)
    assert "code_prior(relu1)" in ev.methods["dgn"].settings["objective"]
    assert "code_prior" in ev.sweep[0][2].settings["objective"]
    assert "code_prior" not in ev.methods["pixel"].settings["objective"]
    assert "adds 0.5 x PPGN's code prior" in ev.to_markdown()
    plain = evaluate(target, judges, gen32, **common)
    assert "code_prior" not in plain.methods["dgn"].settings["objective"]
    assert "the paper's (no code prior)" in plain.to_markdown()
    assert not torch.equal(plain.images["dgn"], ev.images["dgn"])
    torch.testing.assert_close(plain.images["pixel"], ev.images["pixel"])


def test_seeded_methods_start_from_each_classs_top_train_images():
    from dgnam.evaluation.evaluate import top_seed_images
    target = Model(TinyNet(seed=0), input_size=32)
    pool, _ = _real_set(6, seed=1)
    seeds = top_seed_images(target, pool, n_classes=10, restarts=3, batch_size=7, device="cpu")
    with torch.no_grad():
        logits = target(pool)
    for c in range(10):  # class c's restarts are the pool's 3 highest class-c logits, highest first
        torch.testing.assert_close(seeds[3 * c:3 * c + 3], pool[logits[:, c].topk(3).indices])
    with pytest.raises(DgnamError, match="--real-limit"):
        top_seed_images(target, pool[:2], n_classes=10, restarts=3, batch_size=7, device="cpu")


def test_evaluate_hands_each_method_line_to_a_progress_callable(capsys):
    target = Model(TinyNet(seed=3), input_size=32)
    x, y = _real_set(2)
    lines = []
    evaluate(target, {"j": Model(TinyNet(seed=1), input_size=32)}, None, real_test=(x, y), real_train=x,
             classes=list("abcdefghij"), methods=[Method("pixel", "pixel", "pixel")], restarts=2, steps=1,
             progress=lines.append)
    assert len(lines) == 1 and lines[0].startswith("pixel: ") and "j " in lines[0] and "KID" in lines[0]
    assert capsys.readouterr().out == ""  # the callable replaces the print
