"""``dgnam probe``: a run on a model with known answers, and bad input (one line, exit 2, nothing written)."""

import json

import pytest

from dgnam.cli.main import main

from helpers import COLOUR_MODEL, colour_folder, run_cli, tiny_generator


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """colours.py:make (unit i fires only on colour i), a tiny generator, and 16 images plus an unreadable one."""
    root = tmp_path_factory.mktemp("probe")
    (root / "colours.py").write_text(COLOUR_MODEL)
    tiny_generator().save(root / "gen.pt")
    (root / "data" / "a").mkdir(parents=True)
    truth = colour_folder(root / "data" / "a")
    (root / "data" / "a" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "empty").mkdir()
    return root, truth


def test_probe_writes_gallery_with_each_units_colour_images(tmp_path, files):
    root, truth = files
    out = tmp_path / "site"
    proc = run_cli("probe", "--model", f"{root / 'colours.py'}:make", "--input-size", 32, "--generator",
                   root / "gen.pt", "--layer", "detect", "--units", "0,2", "--data", root / "data", "--k", 3,
                   "--steps", 5, "--restarts", 2, "--workers", 0, "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "1 unreadable, skipped" in proc.stdout and "index.html" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert [u["unit"] for u in manifest["units"]] == [0, 2]
    assert manifest["skipped_count"] == 1 and manifest["skipped"][0].endswith("broken.jpg")
    assert manifest["n_images"] == 16 and manifest["reading"] == "max"
    for u in manifest["units"]:
        assert {truth[t["source"].split("/")[-1]][0] for t in u["top"]} == {u["unit"]}
        assert len(u["synthesized"]) == 2 and all((out / s["file"]).is_file() for s in u["synthesized"])
    for name in ("index.html", "app.js", "style.css", "data.js"):
        assert (out / name).is_file()
    assert manifest["settings"]["command"] == "probe" and manifest["settings"]["dgnam_version"]


@pytest.mark.parametrize("extra, message", [
    (["--layer", "nope"], "nope"),
    (["--layer", "fc", "--units", "0,7"], "unit 7 is out of range for layer 'fc', which has 4 units"),
    (["--k", "0"], "--k must be >= 1"),
    (["--restarts", "0"], "--restarts must be >= 1"),
    (["--steps", "-1"], "--steps must be >= 0"),
    (["--empty-data"], "holds no images"),
    (["--missing-data"], "does not exist"),
    (["--full-out"], "exists and is not empty"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, files, capsys, extra, message):
    root, _ = files
    data, out = root / "data", tmp_path / "out"
    if extra == ["--empty-data"]:
        data, extra = root / "empty", []
    elif extra == ["--missing-data"]:
        data, extra = root / "nothing", []
    elif extra == ["--full-out"]:
        out.mkdir()
        (out / "keep.txt").write_text("x")
        extra = []
    code = main(["probe", "--model", f"{root / 'colours.py'}:make", "--input-size", "32", "--generator",
                 str(root / "gen.pt"), "--layer", "detect", "--data", str(data), "--steps", "1", "--workers", "0",
                 "--out", str(out), "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not out.exists() or [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not list(tmp_path.glob(".out.*"))  # no staging folder left behind
