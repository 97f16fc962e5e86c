"""Class and model names come from files and checkpoints: end to end, a hostile one is drawn, written into
report.md and printed as inert text, and never names a folder as it is."""

import re

import pytest
import torch

from dgnam.io import atomic_save
from dgnam.nets.classifiers import build_classifier, classifier_checkpoint

from helpers import run_cli

CLASSES = ["new\nline", "<script>alert(1)</script>", "a|b", "\x1b[2J\x1b]0;pwn\x07", "cr\rOVER"] + list("fghij")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A tiny classifier whose class names and file name are hostile, and an image."""
    root = tmp_path_factory.mktemp("hostile")
    kwargs = {"widths": [4, 4], "code_dim": 8}
    torch.manual_seed(0)
    net = build_classifier("cifar_vgg", kwargs).eval()
    path = root / "ev\x1b[2Jil.pt"
    atomic_save(classifier_checkpoint("cifar_vgg", kwargs, net.state_dict(), mean=(0.5,) * 3, std=(0.25,) * 3,
                                      input_size=32, metadata={"classes": CLASSES}), path)
    return path


def _no_control(text: str) -> bool:
    """Nothing that moves the cursor, clears or retitles the terminal (a newline only ends a line)."""
    return not any(c in text for c in "\x1b\x07\r")


def test_synthesize_draws_and_prints_hostile_class_names(hostile, tmp_path):
    proc = run_cli("synthesize", "--model", hostile, "--units", "0-4", "--restarts", "1", "--steps", "2",
                   "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert _no_control(proc.stdout) and "new\\nline" in proc.stdout
    [run] = (tmp_path / "dgnam-runs").iterdir()  # the default folder: the model's name made a file name
    assert run.name.endswith("-ev__2Jil") and (run / "grid.png").is_file()


def test_attribute_and_compare_reports_hold_names_as_text(hostile, tmp_path):
    image = tmp_path / "x.png"
    from PIL import Image
    Image.new("RGB", (32, 32), (200, 30, 30)).save(image)
    runs = {"attribute": ["attribute", "--model", hostile, "--image", image, "--target", "1"],
            "compare": ["compare", "--model", hostile, "--model", hostile, "--param", "pixel", "--steps", "2",
                        "--restarts", "1", "--classes", "0-4"]}
    for name, args in runs.items():
        proc = run_cli(*args, "--out", tmp_path / name)
        assert proc.returncode == 0, proc.stderr
        assert _no_control(proc.stdout), name
        report = (tmp_path / name / "report.md").read_text()
        assert _no_control(report) and "<script>" not in report, name
        assert "&lt;script&gt;" in report and "a\\|b" in report, name
        for table in re.findall(r"(?:^\|.*\n?)+", report, flags=re.M):  # every row has its header's columns
            widths = {len(re.split(r"(?<!\\)\|", row)) for row in table.splitlines()}
            assert len(widths) == 1, (name, table)
