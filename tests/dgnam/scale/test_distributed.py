"""dgnam.scale.distributed: shards and one-line failures, and sharded synthesis: two CPU processes (gloo,
launched by torchrun) give the single-process run, byte for byte."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from PIL import Image

from dgnam import DgnamError
from dgnam.scale.distributed import Ranks, on_every_rank, shard

from helpers import tiny_generator

USER_MODEL = textwrap.dedent("""
    import torch
    from torch import nn

    def make():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2, padding=1),
                             nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, 7))
""")
CPU = torch.device("cpu")


def test_shards_are_contiguous_balanced_and_complete():
    items = list(range(10))
    blocks = [shard(items, Ranks(r, 3, r, CPU)) for r in range(3)]
    assert blocks == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert [shard([1, 2], Ranks(r, 4, r, CPU)) for r in range(4)] == [[1], [2], [], []]
    assert shard(items, Ranks(0, 1, 0, CPU)) == items


def test_single_process_failures_keep_their_message():
    def fail():
        raise DgnamError("unit 99 is out of range")

    with pytest.raises(DgnamError, match="^unit 99 is out of range$"):
        on_every_rank(fail, Ranks(0, 1, 0, CPU))
    assert on_every_rank(lambda: 3, Ranks(0, 1, 0, CPU)) == 3


def test_two_gloo_processes_equal_one_process(tmp_path):
    (tmp_path / "mynet.py").write_text(USER_MODEL)
    tiny_generator().save(tmp_path / "gen.pt")
    # Units 0-4 x 2 restarts in batches of 4: rank 0 gets units 0-2 (6 rows), rank 1 units 3-4
    # (4 rows), so most rows sit at another batch position than in the single-process run.
    common = ["--model", f"{tmp_path / 'mynet.py'}:make", "--generator", str(tmp_path / "gen.pt"), "--units", "0-4",
              "--restarts", "2", "--steps", "8", "--batch-size", "4", "--seed", "3", "--quiet", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same math kernels in every process
    single = subprocess.run([sys.executable, "-m", "dgnam", "synthesize", *common, "--fixed-batch",
                             "--out", str(tmp_path / "single")], capture_output=True, text=True, env=env, timeout=300)
    assert single.returncode == 0, single.stderr
    sharded = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                              "-m", "dgnam", "synthesize-sharded", *common, "--out", str(tmp_path / "sharded")],
                             capture_output=True, text=True, env=env, timeout=300)
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    assert "wrote 10 images from 2 process(es)" in sharded.stdout

    one = json.loads((tmp_path / "single" / "manifest.json").read_text())
    merged = json.loads((tmp_path / "sharded" / "manifest.json").read_text())
    assert merged["settings"]["world_size"] == 2 and merged["settings"]["units_per_rank"] == [3, 2]
    assert merged["settings"]["units"] == one["settings"]["units"] == [0, 1, 2, 3, 4]
    # Same rows in the same order: files, units, seeds, labels, activations (exact floats).
    assert merged["images"] == one["images"]
    assert len(merged["images"]) == 10
    for entry in one["images"]:
        assert (tmp_path / "single" / entry["file"]).read_bytes() == (tmp_path / "sharded" / entry["file"]).read_bytes()
    assert (tmp_path / "single" / "grid.png").read_bytes() == (tmp_path / "sharded" / "grid.png").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen.pt", "mynet.py", "sharded", "single"]  # no staging left


def test_plain_launch_runs_as_one_rank_and_caps_the_grid(tmp_path, monkeypatch):
    import dgnam.cli.synthesize
    from dgnam.cli.main import main

    (tmp_path / "mynet.py").write_text(USER_MODEL)
    tiny_generator().save(tmp_path / "gen.pt")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(dgnam.cli.synthesize, "GRID_LIMIT", 3)
    out = tmp_path / "run"
    assert main(["synthesize-sharded", "--model", f"{tmp_path / 'mynet.py'}:make",
                 "--generator", str(tmp_path / "gen.pt"), "--units", "0-2", "--restarts", "2", "--steps", "3",
                 "--quiet", "--device", "cpu", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["images"]) == 6 and manifest["settings"]["world_size"] == 1
    assert manifest["settings"]["grid_images"] == 3 and manifest["settings"]["fixed_batch"] is True
    with Image.open(out / "grid.png") as grid:  # one row of 3 tiles (ncol 6), not two rows
        assert grid.size[1] < 2 * 96


def test_a_bad_unit_fails_every_rank_with_one_line(tmp_path):
    (tmp_path / "mynet.py").write_text(USER_MODEL)
    tiny_generator().save(tmp_path / "gen.pt")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "dgnam", "synthesize-sharded", "--model", f"{tmp_path / 'mynet.py'}:make",
                           "--generator", str(tmp_path / "gen.pt"), "--units", "0,9", "--quiet", "--device", "cpu",
                           "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode != 0
    assert "dgnam: error: rank 0: unit 9 is out of range for layer 'output', which has 7 units" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen.pt", "mynet.py"]
