"""``dgnam invert`` end to end on a tiny user model."""

import json

from helpers import run_cli


def test_invert_command(tmp_path, user_files):
    out = tmp_path / "inv"
    proc = run_cli("invert", "--model", f"{user_files / 'nets.py'}:make_a", "--generator", user_files / "gen.pt",
                   "--image", user_files / "x.png", "--layers", "1,3,6", "--steps", 15, "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == {"grid.png", "report.md", "manifest.json"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["errors"]) == {"dgn", "pixel"} and set(manifest["errors"]["dgn"]) == {"1", "3", "6"}
    # (This tiny generator barely changes what the tiny net sees; the prior's decrease is tested above.)
    for layer in ("1", "3", "6"):
        assert manifest["errors"]["pixel"][layer] < 0.7 * manifest["start_errors"]["pixel"][layer]
    assert "| dgn |" in (out / "report.md").read_text()
