"""dgnam.cli.main: the ``dgnam`` entry point and its error contract (one line on stderr, exit 2, nothing written)."""

import shutil

import pytest


@pytest.mark.parametrize("command, extra, message", [
    ("invert", ["--generator", "G", "--image", "missing.png", "--layers", "1"], "image file 'missing.png' does not exist"),
    ("invert", ["--generator", "G", "--image", "X", "--layers", "1,conv9"], "unknown layer 'conv9'"),
    ("invert", ["--generator", "G", "--image", "X", "--layers", "1", "--params", "dgn,pixels"], "unknown param 'pixels'"),
    ("attribute", ["--image", "X", "--input-size", "32", "--target", "7"], "target class 7 is out of range"),
    ("attribute", ["--image", "X", "--input-size", "32", "--target", "cat"], "--target 'cat' is not a class"),
    ("attribute", ["--image", "X", "--input-size", "32", "--layer", "1@1"], "cannot take one call"),
    ("compare", ["--generator", "G"], "compare needs exactly two models"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, user_files, capsys, command, extra, message):
    # In-process (dgnam.cli.main, whose return value is the exit code) to spare a Python start per case.
    from dgnam.cli.main import main

    out = tmp_path / "run"
    extra = [{"X": str(user_files / "x.png"), "G": str(user_files / "gen.pt")}.get(e, e) for e in extra]
    assert main([command, "--model", f"{user_files / 'nets.py'}:make_a", *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run")]


def test_console_script_installed():
    assert shutil.which("dgnam") is not None
