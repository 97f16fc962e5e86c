"""``dgnam evaluate`` end to end, as a subprocess, on tiny user nets and image folders."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgnam.evaluation.evaluate import STANDARD_METHODS

from helpers import tiny_generator

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
    assert set(results["methods"]) == set(STANDARD_METHODS) - {"dgn_seeded"}  # the generator names no encoder
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
