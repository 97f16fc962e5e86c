"""dgnam.evaluation.metrics on cases with known answers, and dgnam.evaluation.evaluate / `dgnam evaluate` end to end on tiny nets."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dgnam.errors import DgnamError
from dgnam.evaluation import metrics
from dgnam.evaluation.evaluate import STANDARD_METHODS, Method, evaluate
from dgnam.nets.model import Model

from helpers import TinyNet, tiny_generator


def test_kid_is_zero_for_one_distribution_and_large_for_two():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(400, 16, generator=gen)
    b = torch.randn(400, 16, generator=gen)
    shifted = torch.randn(400, 16, generator=gen) + 1.0
    same = metrics.kid(a, b)
    diff = metrics.kid(a, shifted)
    assert abs(same.mean) < 3 * same.std + 1e-3  # unbiased: zero up to sampling noise
    assert diff.mean > 1.0 and diff.mean > 100 * abs(same.mean)
    # Identical sets: ~0 on the scale of a real difference (slightly negative: the subsets overlap, so
    # the cross term holds some k(x, x) pairs, which the unbiased within-set terms leave out).
    assert abs(metrics.kid(a, a.clone()).mean) < 0.01 * diff.mean


def test_judge_score_is_the_class_count_for_confident_spread_images_and_one_without_an_object():
    confident = 50.0 * torch.eye(4).repeat(25, 1)  # every image one class, the four classes equally
    spread = metrics.judge_score(confident)
    assert spread.inception_score == pytest.approx(4.0, rel=1e-6) and spread.confidence == pytest.approx(1.0)
    # Confident but all the same class, or no class at all: nothing is gained over the marginal.
    assert metrics.judge_score(50.0 * torch.eye(4)[[0] * 100]).inception_score == pytest.approx(1.0)
    flat = metrics.judge_score(torch.zeros(100, 4))
    assert flat.inception_score == pytest.approx(1.0) and flat.confidence == pytest.approx(0.25)
    # Half of the images blurred to no class: exp of the mean KL, here exp(0.5 * log 4) = 2.
    half = metrics.judge_score(torch.cat([confident[:48], torch.zeros(48, 4)]))
    assert half.inception_score == pytest.approx(2.0, rel=1e-3)
    # Logits 2,000 apart: a class no image gives any probability (it underflows to 0) stays finite.
    three_of_four = 2000.0 * torch.eye(4)[[0, 1, 2] * 30]
    assert metrics.judge_score(three_of_four).inception_score == pytest.approx(3.0)
    with pytest.raises(DgnamError, match="finite"):
        metrics.judge_score(torch.tensor([[0.0, float("nan")]]))


def test_mmd_unbiased_matches_the_formula_on_a_tiny_case():
    x = torch.tensor([[1.0], [2.0]])
    y = torch.tensor([[0.0], [1.0]])
    k = lambda u, v: (u * v + 1) ** 3  # noqa: E731 - D = 1
    expected = (k(1, 2) + k(2, 1)) / 2 + (k(0, 1) + k(1, 0)) / 2 - 2 * (k(1, 0) + k(1, 1) + k(2, 0) + k(2, 1)) / 4
    assert metrics.mmd2_unbiased(x, y) == pytest.approx(expected)


def test_constant_judge_agrees_ten_percent_with_a_wilson_interval():
    intended = torch.arange(10).repeat(20)  # 200 images, 20 per class
    always_zero = torch.zeros(200, dtype=torch.long)
    rate = metrics.agreement(always_zero, intended)
    assert rate.value == pytest.approx(0.10)
    assert rate.low < 0.10 < rate.high
    assert rate.low == pytest.approx(0.0657, abs=1e-4) and rate.high == pytest.approx(0.1494, abs=1e-4)  # by hand
    perfect = metrics.agreement(intended, intended)
    assert perfect.value == 1.0 and perfect.high == 1.0 and perfect.low > 0.98


def test_diversity_is_zero_for_collapsed_restarts():
    classes = torch.arange(5).repeat_interleave(4)
    collapsed = torch.randn(5, 8).repeat_interleave(4, dim=0)
    assert metrics.within_class_diversity(collapsed, classes) == pytest.approx(0.0, abs=1e-9)
    spread = torch.randn(20, 8)
    assert metrics.within_class_diversity(spread, classes) > 1.0


def test_judge_outputs_give_the_input_of_the_last_linear_layer():
    net = TinyNet()
    model = Model(net, input_size=32)
    images = torch.rand(5, 3, 32, 32)
    logits, features = metrics.judge_outputs(model, images, batch_size=2)
    with torch.no_grad():
        expected = net.relu1(net.fc1(net.pool(net.relu(net.conv(images))).flatten(1)))
    assert torch.allclose(features, expected, atol=1e-6)
    assert torch.allclose(logits, net.fc2(expected), atol=1e-5)
    with pytest.raises(DgnamError, match="no nn.Linear head"):
        metrics.last_linear(nn.Conv2d(3, 3, 1))


def test_shift_and_blur_moves_content_by_the_shift():
    images = torch.zeros(1, 3, 16, 16)
    images[..., 4, 4] = 1.0
    moved = metrics.shift_and_blur(images, shift=2, sigma=0)
    assert moved[0, 0, 6, 6] == 1.0 and moved.sum() == 3.0
    blurred = metrics.shift_and_blur(images, shift=2, sigma=0.5)
    assert blurred[0, 0, 6, 6] < 1.0 and blurred.sum() == pytest.approx(3.0, abs=1e-4)


def test_pgd_lowers_accuracy_of_a_standard_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    model = Model(net, input_size=8)
    images = torch.rand(64, 3, 8, 8)
    labels = model(images).argmax(1).detach()  # the clean accuracy is 100% by construction
    assert metrics.pgd_accuracy(model, images, labels, eps=0.0) == 1.0
    assert metrics.pgd_accuracy(model, images, labels, eps=0.1, step_size=0.02, steps=10) < 0.5


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
    methods[2] = dataclasses.replace(methods[2], tv_weight=0.01)
    ev = evaluate(target, judges, tiny_generator(), real_test=(test_x, test_y), real_train=train_x, classes=classes,
                  methods=methods, restarts=2, steps=8, sweep=[(1.0, 0.99)], sweep_restarts=2, progress=False)
    assert list(ev.methods) == list(STANDARD_METHODS)
    for scores in ev.methods.values():
        assert set(scores.judges) == {"judge_a", "judge_b"}
        # The target's own logit was driven up: far above its mean over real images.
        with torch.no_grad():
            assert scores.target_activation > float(target(test_x).gather(1, test_y[:, None]).mean())
        assert scores.judges["judge_a"].agreement.n == 20
    assert ev.images["dgn"].shape == (20, 3, 32, 32)
    grid, captions = ev.grid()
    assert grid.shape[0] == 4 * 10 and captions[10] == "pixel: c0"
    text = ev.to_markdown()
    assert "## Judge `judge_a`" in text and "| 1 | 0.99 |" in text and "Verdict on this judge" in text
    eps, pgd = ev.judge_pgd["judge_b"]
    assert list(ev.judge_pgd) == ["judge_b"] and eps == pytest.approx(4 / 255) and 0 <= pgd <= ev.judge_accuracy["judge_b"]
    assert "PGD-10 accuracy at eps 4/255" in text
    assert len(ev.sweep) == 1 and ev.sweep[0][2].judges["judge_b"].agreement.n == 20


def test_evaluate_refuses_the_target_as_judge():
    target = Model(TinyNet(), input_size=32)
    x, y = _real_set(2)
    with pytest.raises(DgnamError, match="cannot be its own judge"):
        evaluate(target, {"t": target}, tiny_generator(), real_test=(x, y), real_train=x, classes=list("abcdefghij"),
                 methods=[Method("pixel", "pixel", "pixel")], restarts=1, steps=1, progress=False)


NETS = """
import sys
sys.path.insert(0, %r)
from helpers import TinyNet

def target():
    return TinyNet(n_classes=3, seed=0)

def judge():
    return TinyNet(n_classes=3, seed=1)
"""


def _write_folder(root, n_per_class, seed):
    rng = np.random.default_rng(seed)
    for c in range(3):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(n_per_class):
            base = np.full((32, 32, 3), 60 * c + 40, dtype=np.uint8)
            noise = rng.integers(0, 40, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(base + noise).save(root / f"class{c}" / f"{i}.png")


def test_cli_evaluate_writes_report_grid_and_results(tmp_path):
    (tmp_path / "nets.py").write_text(NETS % str(Path(__file__).parents[2]))
    tiny_generator().save(tmp_path / "gen.pt")
    _write_folder(tmp_path / "data" / "test", 4, 0)
    _write_folder(tmp_path / "data" / "train", 4, 1)
    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "dgnam", "evaluate", "--model", f"{tmp_path / 'nets.py'}:target", "--input-size", "32",
           "--judge", f"{tmp_path / 'nets.py'}:judge", "--generator", str(tmp_path / "gen.pt"), "--data",
           str(tmp_path / "data"), "--restarts", "2", "--steps", "4", "--sweep", "2:1", "--sweep-restarts", "2",
           "--out", str(out), "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (out / "grid.png").is_file() and "## Judge `judge`" in (out / "report.md").read_text()
    results = json.loads((out / "results.json").read_text())
    assert set(results["methods"]) == set(STANDARD_METHODS)
    assert results["methods"]["dgn"]["judges"]["judge"]["agreement"]["n"] == 6
    assert results["judge_accuracy"]["judge"] == pytest.approx(results["real"]["judges"]["judge"]["agreement"]["value"])
    assert results["sweep"][0]["k"] == 2.0
    # Bad input: one line, exit 2, nothing written.
    bad = subprocess.run(cmd[:-4] + ["--methods", "dgn,magic", "--out", str(tmp_path / "bad")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown method 'magic'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()
    # The target cannot judge its own images, even when loaded a second time.
    own = cmd[:-2] + ["--judge", f"{tmp_path / 'nets.py'}:target", "--out", str(tmp_path / "own")]
    own[own.index("--judge") + 1] = f"{tmp_path / 'nets.py'}:target"
    bad = subprocess.run(own, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "is the target" in bad.stderr and not (tmp_path / "own").exists()


def test_pgd_attacks_saturated_pixels():
    # A linear judge on an all-white image: the only way to flip it is to darken pixels already at 1,
    # which an attack with a clamp inside the forward does only for the ~half of pixels whose random
    # start points inward (zero gradient through the clamp): 24 x 0.05 < 1.5 needed.
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].weight[0].fill_(1.0)
        net[1].bias.copy_(torch.tensor([-46.5, 0.0]))  # class 0 iff the pixel sum > 46.5 (white: 48)
    model = Model(net, input_size=4)
    white = torch.ones(8, 3, 4, 4)
    labels = torch.zeros(8, dtype=torch.long)
    assert metrics.pgd_accuracy(model, white, labels, eps=0.0) == 1.0
    assert metrics.pgd_accuracy(model, white, labels, eps=0.05, step_size=0.05, steps=3) == 0.0


def test_bound_k_needs_code_statistics():
    from dgnam.engine.param import GeneratorCode
    from dgnam.prior.generator import UpconvGenerator, cifar_arch

    bare = UpconvGenerator(cifar_arch(code_dim=16, fc_dims=(32,), start_channels=8, widths=(8, 8, 8)))
    with pytest.raises(DgnamError, match="needs code statistics"):
        GeneratorCode(bare, bound_k=2.0)
    gen = tiny_generator()
    assert torch.allclose(GeneratorCode(gen, bound_k=1.0).upper_bound, gen.code_mean + gen.code_std)
