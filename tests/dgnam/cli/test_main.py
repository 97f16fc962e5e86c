"""dgnam.cli.main: the ``dgnam`` entry point and its error contract (one line on stderr, exit 2, nothing written)."""

import importlib
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[3]
SUBCOMMANDS = ("synthesize", "synthesize-sharded", "probe", "layers", "stats", "sample", "evaluate", "import-generator",
               "invert", "compare", "attribute", "sanity", "unnatural")


@pytest.mark.parametrize("command, extra, message", [
    ("invert", ["--generator", "G", "--image", "missing.png", "--layers", "1"], "--image 'missing.png' does not exist"),
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


def test_console_script_entry_point_runs_the_cli(monkeypatch, capsys):
    """pyproject's ``[project.scripts]`` names the function the installed ``dgnam`` script calls: imported
    and called as that script calls it (no arguments, the command line in ``sys.argv``), ``--help``
    lists every subcommand and exits 0."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert list(scripts) == ["dgnam"]
    module_name, _, function_name = scripts["dgnam"].partition(":")
    entry_point = getattr(importlib.import_module(module_name), function_name)
    monkeypatch.setattr(sys, "argv", ["dgnam", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        entry_point()
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: dgnam ")
    assert "{" + ",".join(SUBCOMMANDS) + "}" in out
