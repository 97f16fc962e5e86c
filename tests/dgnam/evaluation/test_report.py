"""dgnam.evaluation.report: the verdict and the markdown report, on an Evaluation written by hand."""

import torch

from dgnam.evaluation.metrics import KID, Rate
from dgnam.evaluation.report import Evaluation, JudgeScores, MethodScores, verdict


def _scores(title, agreement, kid_mean, activation=None):
    judge = JudgeScores(agreement=agreement, kid=KID(kid_mean, 0.001, 10, 50), diversity=1.5,
                        shifted_agreement=Rate(0.5, 0.4, 0.6, 20))
    return MethodScores(title, {"judge": judge}, target_activation=activation, seconds=3.0)


def _evaluation():
    classes = ["cat", "dog"]
    images = {name: torch.full((4, 3, 8, 8), float(i)) for i, name in enumerate(("dgn", "pixel", "fourier"))}
    for imgs in images.values():
        imgs[1::2] += 0.5  # restart 1 of every class, told apart from restart 0
    return Evaluation(
        target_name="net", classes=classes, restarts=2, steps=10,
        real=_scores("real images", Rate(0.9, 0.8, 0.95, 20), 0.0),
        methods={"dgn": _scores("DGN-AM", Rate(0.8, 0.7, 0.9, 20), 0.010, 12.0),
                 "pixel": _scores("pixels", Rate(0.3, 0.2, 0.4, 20), 0.050, 30.0),
                 "fourier": _scores("Fourier", Rate(0.75, 0.6, 0.85, 20), 0.011, 20.0)},
        sweep=[], judge_accuracy={"judge": 0.9}, judge_notes={}, judge_pgd={}, images=images, n_real=(20, 20))


def test_verdict_separates_only_when_the_intervals_do():
    lines = verdict(_evaluation(), "judge")
    pixel, fourier, summary = lines
    # Against pixels: 70% > 40% (interval bounds) and KID 0.010 + 2 std < 0.050 - 2 std.
    assert "vs pixels: agreement 80.0% [70.0, 90.0] vs 30.0% [20.0, 40.0] (DGN-AM higher, intervals apart)" in pixel
    assert "(DGN-AM lower by more than 2 std)" in pixel
    # Against Fourier the intervals overlap (70% < 85%) and the KIDs are 0.001 apart: neither is separated.
    assert fourier.count("NOT separated in DGN-AM’s favour") == 2
    # The ratio to the best baseline: 0.010 / 0.011.
    assert summary.startswith("- DGN-AM KID / best baseline KID = 0.91 (target: <= 0.20)")
    assert "DGN-AM agreement 80.0% vs this judge's accuracy on real test images 90.0%" in summary


def test_markdown_report_and_grid():
    ev = _evaluation()
    text = ev.to_markdown()
    assert text.startswith("# dgnam evaluate: net\n")
    assert "DGN-AM runs from noise are the paper's (no code prior)." in text
    assert "- `judge`: 90.0% on the real test images" in text
    assert "| DGN-AM | 12.00 | - | - | 80.0% [70.0, 90.0] | 0.0100 ± 0.0010 | 1.50 | 50.0% [40.0, 60.0] | 3 |" in text
    assert "## Code bound k and L2 decay" not in text  # no sweep, no sweep table
    grid, captions = ev.grid(restart=1)
    assert grid.shape == (3 * 2, 3, 8, 8)  # a row per method, a column per class
    assert captions == ["dgn: cat", "dgn: dog", "pixel: cat", "pixel: dog", "fourier: cat", "fourier: dog"]
    torch.testing.assert_close(grid[:, 0, 0, 0], torch.tensor([0.5, 0.5, 1.5, 1.5, 2.5, 2.5]))  # restart 1's
