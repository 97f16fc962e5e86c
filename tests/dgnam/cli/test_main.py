"""dgnam.cli.main: the ``dgnam`` entry point and its error contract (one line on stderr, exit 2, nothing written)."""

import importlib
import json
import re
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[3]
SUBCOMMANDS = ("synthesize", "synthesize-sharded", "probe", "accentuate", "layers", "stats", "sample", "evaluate",
               "import-generator", "invert", "compare", "attribute", "sanity", "unnatural")


@pytest.mark.parametrize("command, extra, message", [
    ("invert", ["--generator", "G", "--image", "missing.png", "--layers", "1"], "--image 'missing.png' does not exist"),
    ("invert", ["--generator", "G", "--image", "X", "--layers", "1,conv9"], "unknown layer 'conv9'"),
    ("invert", ["--generator", "G", "--image", "X", "--layers", "1", "--params", "dgn,pixels"],
     "unknown param 'pixels'"),
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


def _ecosystem_files(tmp_path):
    from helpers import ECOSYSTEM_MODELS
    (tmp_path / "ecosystem.py").write_text(ECOSYSTEM_MODELS)
    return tmp_path / "ecosystem.py"


@pytest.mark.parametrize("name", ["timm_vit", "hf_vit", "swin", "convnext"])
def test_every_command_runs_on_vision_transformers_and_channels_last_models(name, tmp_path, user_files, capsys):
    """layers, synthesize, probe, attribute, invert, compare and sanity on a tiny random model of each kind,
    at its token or channels-last layer; the unit count is the layer's true width."""
    from dgnam.cli.main import main

    from helpers import ECOSYSTEM_LAYERS, colour_folder
    model = f"{_ecosystem_files(tmp_path)}:{name}"
    layer, layout, width = ECOSYSTEM_LAYERS[name]
    fast = ["--generator", user_files / "gen.pt", "--steps", "1", "--quiet"]
    assert main(["layers", "--model", model]) == 0
    row = next(line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(layer + " "))
    assert row[3:5] == [layout, str(width)]
    data = tmp_path / "data"
    data.mkdir()
    colour_folder(data, per_colour=1, greys=1)
    image = str(user_files / "x.png")
    runs = {
        "synthesize": ["--layer", layer, "--units", f"0,{width - 1}", "--restarts", "1", *fast],
        "probe": ["--layer", layer, "--units", "0-1", "--data", data, "--workers", "0", "--k", "2", *fast],
        "attribute": ["--image", image],
        "invert": ["--image", image, "--layers", f"{layer},output", *fast],
        "compare": ["--model", model, "--classes", "0-1", *fast],
        "sanity": ["--layer", layer, "--units", "0", "--stages", "1", "--restarts", "2", "--baseline", "none", *fast],
    }
    for command, extra in runs.items():
        out = tmp_path / command
        assert main([command, "--model", model, *map(str, extra), "--out", str(out)]) == 0, command
        assert (out / ("manifest.json")).is_file(), command
    manifest = json.loads((tmp_path / "synthesize" / "manifest.json").read_text())
    assert [e["unit"] for e in manifest["images"]] == [0, width - 1]
    assert manifest["settings"]["layout"] == layout and manifest["settings"]["input_size"] == 32
    assert (manifest["settings"]["mean"] is None) == (name == "hf_vit")  # the applied mean, null only when none is


def test_a_random_model_gives_the_same_images_for_the_same_seed(tmp_path, user_files):
    from dgnam.cli.main import main
    model = f"{_ecosystem_files(tmp_path)}:timm_vit"
    for run in ("a", "b"):
        assert main(["synthesize", "--model", model, "--layer", "blocks.1.mlp.fc1", "--units", "3", "--restarts", "1",
                     "--steps", "2", "--generator", str(user_files / "gen.pt"), "--quiet", "--out",
                     str(tmp_path / run)]) == 0
    a, b = (json.loads((tmp_path / run / "manifest.json").read_text())["images"][0] for run in ("a", "b"))
    assert a["activation"] == b["activation"] and a["start_activation"] == b["start_activation"]
    assert (tmp_path / "a" / a["file"]).read_bytes() == (tmp_path / "b" / b["file"]).read_bytes()


@pytest.mark.parametrize("command, extra, message", [
    # A (heads, tokens, dim) tensor is not a conv map.
    ("synthesize", ["--model", "{eco}:timm_vit", "--layer", "blocks.0.attn.k_norm"], "cannot read as units"),
    # The models' own size checks (timm: AssertionError, Hugging Face: ValueError), one line naming the flag.
    ("synthesize", ["--model", "{eco}:timm_vit", "--input-size", "64"], "timm_vit failed .*--input-size"),
    ("layers", ["--model", "{eco}:hf_vit", "--input-size", "48"], "hf_vit failed .*--input-size"),
    ("synthesize", ["--model", "{eco}:swin", "--layer", "features.1", "--token", "cls"], "not tokens; use --position"),
    ("synthesize", ["--model", "{eco}:timm_vit", "--layer", "blocks.0", "--layout", "nhwc"], "unknown layout 'nhwc'"),
    ("synthesize", ["--model", "timm:vit_tiny_patch16_224"], "not available offline"),
])
def test_unreadable_layers_and_model_errors_are_one_line_exit_2(tmp_path, user_files, capsys, command, extra, message):
    from dgnam.cli.main import main
    eco = str(_ecosystem_files(tmp_path))
    args = [command, *[a.replace("{eco}", eco) for a in extra]]
    if command == "synthesize":
        args += ["--generator", str(user_files / "gen.pt"), "--steps", "1", "--quiet", "--out", str(tmp_path / "o")]
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own checks (a --layout it cannot parse) exit from the parser
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_size_mismatch_and_foreign_code_prior_are_stated(tmp_path, user_files, capsys):
    """A 32-px generator on a 48-px model: one notice on the resize, one on the code prior recorded for another
    model (not applied); invert with the default --params at that size; compare with --mean/--std recorded."""
    from dgnam.cli.main import main

    from helpers import tiny_generator
    model = f"{user_files / 'mynet.py'}:make"
    gen = str(user_files / "gen.pt")
    tiny_generator().save(tmp_path / "tuned.pt", metadata={"code_prior": 0.1})  # as `dgnam stats --code-prior` does
    assert main(["synthesize", "--model", model, "--input-size", "48", "--units", "0", "--restarts", "1",
                 "--steps", "1", "--generator", str(tmp_path / "tuned.pt"), "--out", str(tmp_path / "s")]) == 0
    err = capsys.readouterr().err
    assert "generator makes 32x32 images" in err and "upsampled 1.5x" in err and "--input-size 32" in err
    assert "code prior (0.1) was tuned for its own encoder" in err and "--code-prior 0.1" in err
    assert json.loads((tmp_path / "s" / "manifest.json").read_text())["settings"]["code_prior"] == 0
    assert main(["invert", "--model", model, "--input-size", "48", "--image", str(user_files / "x.png"), "--layers",
                 "output", "--steps", "1", "--generator", gen, "--quiet", "--out", str(tmp_path / "i")]) == 0
    assert main(["compare", "--model", model, "--model", model, "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25",
                 "--classes", "0-1", "--steps", "1", "--generator", gen, "--quiet", "--out", str(tmp_path / "c")]) == 0
    settings = json.loads((tmp_path / "c" / "manifest.json").read_text())["settings"]
    assert [p["mean"] for p in settings["preprocessing"]] == [[0.5] * 3] * 2
    assert settings["preprocessing"][0]["std"] == [0.25] * 3
