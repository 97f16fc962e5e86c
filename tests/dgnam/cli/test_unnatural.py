"""``dgnam unnatural`` end to end on tiny classifiers with class names, and its bad input."""

import json

import pytest
import torch

from dgnam.io import atomic_save
from dgnam.nets.classifiers import build_classifier, classifier_checkpoint

from helpers import run_cli


def _classifier(path, classes, seed):
    torch.manual_seed(seed)
    kwargs = {"widths": [4, 8], "depth": 1, "n_classes": len(classes)}
    net = build_classifier("cifar_resnet", kwargs)
    atomic_save(classifier_checkpoint("cifar_resnet", kwargs, net.state_dict(), mean=(0.5,) * 3, std=(0.25,) * 3,
                                      input_size=32, metadata={"classes": classes, "test_accuracy": 0.5}), path)
    return path


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    root = tmp_path_factory.mktemp("unnatural")
    return {"model": _classifier(root / "m.pt", ["a", "b", "a_bgr", "b_bgr"], 0),
            "plain": _classifier(root / "plain.pt", ["a", "b"], 1),
            "detector": _classifier(root / "d.pt", ["natural", "bgr"], 2),
            "judge": _classifier(root / "j.pt", ["a", "b"], 3)}


def test_unnatural_scores_every_image_and_writes_the_report(tmp_path, user_files, nets):
    out = tmp_path / "run"
    proc = run_cli("unnatural", "--model", nets["model"], "--detector", nets["detector"], "--judge", nets["judge"],
                   "--generator", user_files / "gen.pt", "--steps", 5, "--restarts", 3, "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == {"classes.png", "report.md", "manifest.json"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["classes"] == ["a", "b"]
    detected = torch.tensor(manifest["per_image"]["detected_modified"])
    assert detected.shape == (2, 3)  # classes x restarts
    assert manifest["rates"]["modified detected as modified"]["value"] == pytest.approx(detected.float().mean().item())
    assert manifest["rates"]["modified detected as modified"]["n"] == 6
    assert "| a | " in (out / "report.md").read_text()


@pytest.mark.parametrize("which, phrase", [("model", "--data.variants [bgr]"), ("judge", "no class 'a'")])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, user_files, nets, which, phrase):
    args = {"model": nets["model"], "detector": nets["detector"], "judge": nets["judge"]}
    args[which] = nets["plain"] if which == "model" else nets["detector"]  # no class pairs / no natural classes
    out = tmp_path / "run"
    proc = run_cli("unnatural", *[x for k, v in args.items() for x in (f"--{k}", v)], "--generator",
                   user_files / "gen.pt", "--steps", 2, "--restarts", 1, "--out", out)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and phrase in proc.stderr, proc.stderr
    assert not list(tmp_path.iterdir())
