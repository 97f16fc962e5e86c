"""``dgnam compare`` end to end on two tiny user models."""

import json

from PIL import Image

from helpers import run_cli


def test_compare_command(tmp_path, user_files):
    out = tmp_path / "cmp"
    nets = user_files / "nets.py"
    proc = run_cli("compare", "--model", f"{nets}:make_a", "--model", f"{nets}:make_b", "--generator",
                   user_files / "gen.pt", "--classes", "0-2", "--steps", 15, "--mimic-steps", 10, "--out", out,
                   "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == {"class_images.png", "similarity.png", "mimicry.png", "report.md",
                                               "manifest.json"}
    manifest = json.loads((out / "manifest.json").read_text())
    scores = manifest["class_scores"]
    gaps = {kind: [sa - sb for sa, sb in zip(scores[kind]["a"], scores[kind]["b"])] for kind in ("A-B", "B-A")}
    assert all(ab > ba for ab, ba in zip(gaps["A-B"], gaps["B-A"]))
    assert len(manifest["similarity_matrix"]) == 3 and len(manifest["most_disagreeing"]) == 3
    with Image.open(out / "class_images.png") as im:
        assert im.width > 3 * 96 and im.height > 5 * 96  # 3 classes x 5 kinds
