"""``dgnam attribute`` end to end on a tiny user model."""

import json

from helpers import run_cli


def test_attribute_command(tmp_path, user_files):
    out = tmp_path / "att"
    proc = run_cli("attribute", "--model", f"{user_files / 'nets.py'}:make_a", "--input-size", 32,
                   "--image", user_files / "x.png", "--image", user_files / "x.png", "--target", 2, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == {"attribution.png", "report.md", "manifest.json"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["layer"] == "3"  # the last ReLU before the adaptive pool
    assert [e["target"] for e in manifest["images"]] == [2, 2]
    assert set(manifest["images"][0]["deletion"]) == {"saliency", "gradcam", "guided_backprop", "guided_gradcam"}
