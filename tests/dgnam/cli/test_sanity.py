"""``dgnam sanity`` end to end on tiny user models: the report, the verdicts, and bad input."""

import json
import textwrap

import pytest

from helpers import run_cli

MODELS = textwrap.dedent("""
    import torch
    from torch import nn

    class Constant(nn.Module):  # logits that never see the image
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3)) * 0)

    def constant():
        return Constant()

    def no_params():
        return nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten())
""")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    path = tmp_path_factory.mktemp("sanity") / "models.py"
    path.write_text(MODELS)
    return path


def test_sanity_writes_the_report_and_judges_each_stage(tmp_path, user_files):
    out = tmp_path / "run"
    proc = run_cli("sanity", "--model", f"{user_files / 'mynet.py'}:make", "--generator", user_files / "gen.pt",
                   "--units", "0-1", "--steps", 8, "--restarts", 2, "--stages", 2, "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == {"stages_dgn.png", "stages_fourier.png", "report.md", "manifest.json"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["method"] for s in manifest["stages"]] == ["dgn", "dgn", "fourier", "fourier"]
    assert all(s["verdict"] in ("passes", "fails", "inconclusive") for s in manifest["stages"])
    assert manifest["settings"]["stages"][-1]["layers"] == ["6", "2", "0"]  # the last stage leaves nothing trained
    report = (out / "report.md").read_text()
    assert "| 1 | +6 .. 2 (2 blocks) (2 modules) |" in report and "| 2 | +0 (3 modules) |" in report


def test_a_model_blind_to_its_input_fails(tmp_path, user_files, models):
    out = tmp_path / "run"
    proc = run_cli("sanity", "--model", f"{models}:constant", "--generator", user_files / "gen.pt", "--units", "0-2",
                   "--steps", 8, "--restarts", 2, "--baseline", "none", "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert len(stages) == 2 and all(s["verdict"] == "fails" for s in stages)
    assert "dgn: +fc: fails, +conv: fails" in proc.stdout


@pytest.mark.parametrize("extra, phrase", [
    (["--layer", "nope"], "nope"),
    (["--model", "{models}:no_params"], "no parameters"),
    (["--restarts", "1"], "--restarts 2"),
    (["--units", "7"], "out of range"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, user_files, models, extra, phrase):
    out = tmp_path / "run"
    args = ["--model", f"{user_files / 'mynet.py'}:make", "--generator", user_files / "gen.pt", "--out", out,
            *[a.format(models=models) for a in extra]]
    proc = run_cli("sanity", *args)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and phrase in proc.stderr, proc.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_a_non_empty_out_is_refused(tmp_path, user_files):
    (tmp_path / "keep.txt").write_text("mine")
    proc = run_cli("sanity", "--model", f"{user_files / 'mynet.py'}:make", "--generator", user_files / "gen.pt",
                   "--out", tmp_path)
    assert proc.returncode == 2 and "not empty" in proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
