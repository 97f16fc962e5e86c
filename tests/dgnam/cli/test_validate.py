"""dgnam.cli.validate and the error contract of every command on bad input: exit code 2, exactly one line on
stderr naming the fix, nothing left on disk (no --out, no hidden staging folder), and a mistake visible in
the arguments alone reported before any model or checkpoint is loaded."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dgnam.cli.synthesize
from dgnam.cli.main import main
from dgnam.cli.validate import parse_units, unit_ranges
from dgnam.errors import DgnamError
from dgnam.nets.model import Model

from helpers import USER_MODEL, USER_MODELS, _image, as_from_a_terminal, tiny_generator

# Models a user may hand the CLI: one that takes 1-channel input, one whose output is NaN, a slow one, ...
ODD_MODELS = textwrap.dedent("""
    import torch
    from torch import nn

    def grey():
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    class NaNOut(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(x.mean((2, 3))) * float("nan")

    def nan():
        return NaNOut()

    def quits():
        import sys
        sys.exit(0)

    # a model on the meta device, in half precision, or whose output is integer or 1-D
    def meta():
        with torch.device("meta"):
            return grey()

    def half():
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).half()

    class Picked(nn.Module):
        def __init__(self, flat):
            super().__init__()
            self.flat = flat
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            scores = self.fc(x.mean((2, 3)))
            return scores.sum(1) if self.flat else scores.argmax(1, keepdim=True).expand(-1, 3)

    def integer():
        return Picked(flat=False)

    def flat():
        return Picked(flat=True)

    # a dataset pass that takes its time: a second per batch, the file DGNAM_TEST_STARTED once it runs
    class Slow(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            if len(x) > 1:  # a batch of the data, not the one-image check of the layer's size
                import os, time
                open(os.environ["DGNAM_TEST_STARTED"], "a").close()
                time.sleep(1)
            return self.fc(x.mean((2, 3)))

    def slow():
        return Slow()
""")
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Everything the table's rows point at, in a folder of its own (the runs happen elsewhere)."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "mynet.py").write_text(USER_MODEL)
    (root / "nets.py").write_text(USER_MODELS)
    (root / "odd.py").write_text(ODD_MODELS)
    tiny_generator().save(root / "gen.pt")
    named = tiny_generator()
    named.encoder = str(root / "missing_encoder.pt")  # a generator whose encoder is not here
    named.save(root / "gen_noenc.pt", {"code_prior": 0.1})
    tiny_generator().save(root / "gen_lots.pt", {"code_prior": "lots"})
    pixels = (_image(3).permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    Image.fromarray(pixels).save(root / "x.png")
    (root / "folder").mkdir()
    # links to where nothing exists: dgnam must create no folder there (it made one at the root)
    (root / "dangling").symlink_to(root / "nowhere" / "deeper")
    (root / "dangling.png").symlink_to(root / "nowhere" / "x.png")
    (root / "images").mkdir()
    Image.fromarray(pixels).save(root / "images" / "a.png")
    for split in ("train", "test"):  # and an image outside any class folder
        (root / "loose" / split / "cat").mkdir(parents=True)
        Image.fromarray(pixels).save(root / "loose" / split / "cat" / "0.png")
    Image.fromarray(pixels).save(root / "loose" / "test" / "stray.png")
    # CIFAR-10's classes and two more: the shipped classifier knows only the first ten.
    for split in ("train", "test"):
        for name in CIFAR_CLASSES + ["xylophone", "zebra"]:
            (root / "twelve" / split / name).mkdir(parents=True)
            Image.fromarray(pixels).save(root / "twelve" / split / name / "0.png")
    return root


# (arguments, a phrase of the one-line message, detectable from the arguments alone). Placeholders:
# G tiny generator, M a 5-class factory, X an image, DIR a folder, IMGS a folder of images, OUT the output.
M = ["--model", "NETS:make_a"]
SYN = ["synthesize", *M, "--generator", "G", "--steps", "1", "--restarts", "1", "--quiet"]
CASES = [
    # 1. an output that cannot be written, for every command that writes
    (SYN + ["--out", "/dev/null/x"], "'/dev/null' is not a directory", True),
    (SYN + ["--out", "/proc/dgnam-run"], "cannot be written", True),
    (["synthesize-sharded", *SYN[1:], "--out", "/dev/null/x"], "not a directory", True),
    (["stats", "--generator", "G", "--out", "/dev/null/g.pt"], "not a directory", True),
    (["sample", "--generator", "G", "--out", "/proc/dgnam.png"], "cannot be written", True),
    (["invert", *M, "--generator", "G", "--image", "X", "--layers", "1", "--out", "/dev/null/x"], "not a directory",
     True),
    (["attribute", *M, "--image", "X", "--input-size", "32", "--out", "/dev/null/x"], "not a directory", True),
    (["compare", *M, "--model", "NETS:make_b", "--generator", "G", "--out", "/dev/null/x"], "not a directory", True),
    (["evaluate", *M, "--generator", "G", "--data", "TWELVE", "--out", "/dev/null/x"], "not a directory", True),
    (["import-generator", "G", "/dev/null/g.pt"], "not a directory", True),
    (SYN + ["--out", "."], "--out '.'", True),
    (SYN + ["--out", "n" * 256], "over the filesystem's limit of 255", True),
    (SYN + ["--out", "DANGLING/run"], "whose folder does not exist", True),
    (SYN + ["--out", "DANGLING"], "whose folder does not exist", True),
    (["sample", "--generator", "G", "--out", "DANGLING.png"], "whose folder does not exist", True),
    # 4. non-finite numbers wherever they enter
    (["stats", "--generator", "G", "--k", "inf", "--out", "OUT"], "--k", True),
    (["stats", "--generator", "G", "--k", "nan", "--out", "OUT"], "--k", True),
    (["stats", "--generator", "G", "--code-prior", "inf", "--out", "OUT"], "--code-prior", True),
    (SYN + ["--code-prior", "inf"], "--code-prior", True),
    (SYN + ["--mean", "nan,0,0", "--std", "1,1,1"], "--mean", True),
    (SYN + ["--mean", "0,0,0", "--std", "0,0,0"], "--std", True),
    (SYN + ["--mean", "0,0,0", "--std", "1,inf,1"], "--std", True),
    (SYN + ["--mean", "0,0,0", "--std", "1e-30,1,1"], "--std must be >= 1e-06", True),  # overflows in the net
    (["invert", *M, "--generator", "G", "--image", "X", "--layers", "1", "--tv-weight", "inf"], "--tv-weight", True),
    (["evaluate", *M, "--generator", "G", "--data", "TWELVE", "--sweep", "inf:0.99"], "--sweep", True),
    # 6. --data-limit
    (SYN + ["--data", "IMGS", "--data-limit", "0"], "--data-limit", True),
    (SYN + ["--data-limit", "5"], "--data-limit limits the images of --data; pass --data DIR or drop it", True),
    (["stats", "--generator", "G", "--data", "IMGS", "--data-limit", "-3", "--out", "OUT"], "--data-limit", True),
    # 7. evaluate needs two images per class
    (["evaluate", *M, "--generator", "G", "--data", "TWELVE", "--restarts", "1"], "--restarts 2", True),
    # 8. validation gaps
    (SYN + ["--device", "tpu"], "--device 'tpu'", True),
    (["layers", *M, "--device", "mps"], "--device 'mps'", True),
    (SYN + ["--input-size", "-4"], "--input-size", True),
    (SYN + ["--seed", str(2 ** 64)], "--seed", True),
    (SYN + ["--seed", "-1"], "--seed", True),
    (["sample", "--generator", "G", "--seed", "-1", "--out", "OUT.png"], "--seed", True),
    (SYN + ["--units", "0-1000"], "out of range", False),
    # 10. finite but huge sizes: refused with the number and the flag to lower, before the model loads
    (SYN + ["--units", "0-1000000000"], "lower --steps, --restarts or --units", True),
    (["probe", *M, "--data", "IMGS", "--k", "1000000000000"], "lower --k", True),
    (["probe", *M, "--data", "IMGS", "--restarts", "1000000000000", "--param", "pixel"], "--restarts", True),
    (SYN + ["--steps", "10000000000000"], "lower --steps", True),
    (SYN + ["--restarts", "1000000000000"], "lower --steps, --restarts", True),
    (SYN + ["--input-size", "100000"], "--input-size", True),
    (["probe", *M, "--data", "IMGS", "--input-size", "100000"], "--input-size", True),
    (["sample", "--generator", "G", "--n", "100000000000000", "--out", "OUT.png"], "lower --n", True),
    # 11. user code that exits, untrusted text on the terminal
    (["synthesize", "--model", "ODD:quits", "--generator", "G", "--steps", "1", "--quiet"], "SystemExit", False),
    (SYN + ["--generator", "gen\x1b]0;pwned\x07\x1b[2J\n.pt"], "gen\\x1b]0;pwned\\x07\\x1b[2J\\n.pt' does not", True),
    (SYN + ["--units", ""], "--units", True),
    (["layers", "--model", "../factories:make"], "names neither a .py file nor a module", True),
    (["evaluate", *M, "--generator", "G", "--data", "LOOSE"], "stray.png' lies directly in", True),
    # 12. generator checkpoints: the fields' types, the encoder they name (it said "check the path in --model")
    (["stats", "--generator", "GNOENC", "--data", "IMGS", "--out", "OUT"], "generator's encoder '", False),
    (["stats", "--generator", "GNOENC", "--data", "IMGS", "--out", "OUT"], "pass --encoder", False),
    # (the recorded code prior applies to the generator's own encoder only, so it is asked for here)
    (SYN[:4] + ["GNOENC"] + SYN[5:] + ["--code-prior", "0.1"], "pass --code-prior 0", False),
    (SYN[:4] + ["GLOTS"] + SYN[5:], "code_prior 'lots', not a number", False),
    (SYN + ["--steps", "0"], "--steps", True),
    # 9. misleading messages
    (SYN + ["--generator", "DIR"], "is a directory", True),
    (["invert", *M, "--generator", "G", "--image", "DIR", "--layers", "1"], "is a directory", True),
    (["attribute", *M, "--image", "DIR", "--input-size", "32"], "is a directory", True),
    (["synthesize", "--model", "ODD:grey", "--generator", "G", "--steps", "1", "--quiet"], "3-channel", False),
    (["synthesize", "--model", "ODD:nan", "--generator", "G", "--steps", "1", "--quiet"], "model's output", False),
    # (the dataset pass alone: it wrote a json of NaNs, then a traceback, after the full pass)
    (["probe", "--model", "ODD:nan", "--input-size", "8", "--data", "IMGS", "--steps", "0", "--workers", "0",
      "--quiet"], "model's output (nan, layer 'output') is NaN/inf on finite images", False),
    (["evaluate", "--data", "TWELVE", "--steps", "1", "--restarts", "2"], "12 class folders", False),
    # factories whose model cannot be fed float32 images or read as (batch, units) scores
    (["synthesize", "--model", "ODD:meta", "--generator", "G", "--steps", "1", "--quiet"], "on the meta device", False),
    (["synthesize", "--model", "ODD:half", "--generator", "G", "--steps", "1", "--quiet"], "return model.float()",
     False),
    (["synthesize", "--model", "ODD:integer", "--generator", "G", "--steps", "1", "--quiet"], "output is int64", False),
    (["synthesize", "--model", "ODD:flat", "--generator", "G", "--steps", "1", "--quiet"], "not (batch, units)", False),
    # the commands added since the sweep, through the same layer
    (["probe", *M, "--data", "IMGS", "--out", "/dev/null/x"], "not a directory", True),
    (["probe", *M, "--data", "IMGS", "--k", "0"], "--k", True),
    (["sanity", *M, "--generator", "G", "--restarts", "1"], "--restarts must be >= 2", True),
    (["sanity", *M, "--generator", "G", "--code-prior", "nan"], "--code-prior", True),
    (["sanity", *M, "--generator", "G", "--judge", "DIR"], "is a directory", True),
    (["unnatural", "--generator", "G", "--out", "/proc/dgnam-run"], "cannot be written", True),
    (["unnatural", "--generator", "G", "--seed", "-1"], "--seed", True),
]


def _expand(args, inputs, out):
    names = {"G": inputs / "gen.pt", "X": inputs / "x.png", "DIR": inputs / "folder", "IMGS": inputs / "images",
             "TWELVE": inputs / "twelve", "OUT": out,
             "LOOSE": inputs / "loose", "GNOENC": inputs / "gen_noenc.pt", "GLOTS": inputs / "gen_lots.pt",
             "OUT.png": f"{out}.png",
             "DANGLING": inputs / "dangling", "DANGLING.png": inputs / "dangling.png"}
    expanded = [str(names.get(a, a)).replace("DANGLING/", f"{inputs / 'dangling'}/")
                .replace("NETS", str(inputs / "nets.py")).replace("ODD", str(inputs / "odd.py"))
                for a in args]
    own_out = "--out" in args or args[0] in ("stats", "sample", "import-generator", "layers")
    return expanded if own_out else [*expanded, "--out", str(out)]


@pytest.fixture
def no_loading(monkeypatch):
    """Makes building a model or reading a checkpoint fail the test: for errors the arguments alone show."""
    def loaded(*args, **kwargs):
        raise AssertionError("a model or checkpoint was loaded before the arguments were checked")
    monkeypatch.setattr(Model, "__init__", loaded)
    monkeypatch.setattr(torch, "load", loaded)


def _assert_one_line_and_nothing_written(code, capsys, cwd):
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("dgnam: error: ")
    assert list(cwd.iterdir()) == []  # no --out, no hidden .NAME.XXXX staging folder, no dgnam-runs/
    return err


@pytest.mark.parametrize("args, phrase, early", CASES, ids=[f"{c[0][0]} {c[1]}" for c in CASES])
def test_bad_input_fails_in_one_line_with_exit_2_and_writes_nothing(args, phrase, early, inputs, tmp_path, monkeypatch,
                                                                   capsys, request):
    monkeypatch.chdir(tmp_path)
    if early:
        request.getfixturevalue("no_loading")
    code = _exit_code(_expand(args, inputs, tmp_path / "run"))
    err = _assert_one_line_and_nothing_written(code, capsys, tmp_path)
    assert phrase in err
    assert err[:-1].isprintable(), err  # no escape sequence reaches the terminal
    assert not (inputs / "nowhere").exists()


def _exit_code(argv):
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own errors
        return exc.code


@pytest.mark.parametrize("command", ["image", "data"])
# x.png has 1024 pixels: over twice the limit (PIL's error), and over the limit (PIL's warning)
@pytest.mark.parametrize("limit", [100, 600])
def test_an_image_over_pils_decompression_bomb_limit_is_one_line(command, limit, inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    args = (["invert", *M, "--generator", "G", "--image", "X", "--layers", "1", "--steps", "1"] if command == "image"
            else SYN + ["--data", "IMGS"])
    err = _assert_one_line_and_nothing_written(_exit_code(_expand(args, inputs, tmp_path / "run")), capsys, tmp_path)
    assert "pixels" in err and "downscale" in err


def test_sigterm_while_writing_removes_the_staging_folder(inputs, tmp_path, monkeypatch, capsys):
    """A SIGTERM (timeout, a scheduler's preemption) in the write phase cleans up as SIGINT does."""
    monkeypatch.chdir(tmp_path)
    save_png = dgnam.cli.synthesize.save_png

    def save_then_terminate(image, path):
        save_png(image, path)
        os.kill(os.getpid(), signal.SIGTERM)  # after the first image is on disk

    monkeypatch.setattr(dgnam.cli.synthesize, "save_png", save_then_terminate)
    before = signal.getsignal(signal.SIGTERM)
    code = main(_expand(SYN + ["--units", "0-2"], inputs, tmp_path / "run"))
    err = capsys.readouterr().err
    assert code == 128 + signal.SIGTERM
    assert err.strip().splitlines() == ["dgnam: terminated"]
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is before  # main restores the caller's handler


ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def many_images(tmp_path_factory):
    """200 tiny images: 100 batches of two, a second each under ODD:slow, so the pass outlasts any test."""
    root = tmp_path_factory.mktemp("many")
    rng = np.random.default_rng(0)
    for i in range(200):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / f"{i:03d}.png")
    return root


# (signal, sent to the whole process group as a terminal's Ctrl-C or `kill -TERM -PGID` does, DataLoader
# workers, exit code, the line). A group signal reaches the workers too: it gave a worker's traceback.
SIGNALS = [
    (signal.SIGINT, True, 2, 130, "dgnam: interrupted"),
    (signal.SIGTERM, True, 2, 143, "dgnam: terminated"),
    (signal.SIGTERM, False, 2, 143, "dgnam: terminated"),
    (signal.SIGINT, False, 0, 130, "dgnam: interrupted"),
]


@pytest.mark.parametrize("signum, group, workers, code, line", SIGNALS,
                         ids=[f"{s[0].name}-{'group' if s[1] else 'process'}-workers{s[2]}" for s in SIGNALS])
def test_a_signal_during_the_dataset_pass_stops_it_at_once_in_one_line(signum, group, workers, code, line, inputs,
                                                                       many_images, tmp_path):
    """Ctrl-C or SIGTERM while probe reads --data: one line, exit 130 or 143, no traceback from the main
    process or a worker, and nothing left where the run would have gone (the default --out, dgnam-runs/)."""
    work, started = tmp_path / "work", tmp_path / "started"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "DGNAM_TEST_STARTED": str(started), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "dgnam", "probe", "--model", f"{inputs / 'odd.py'}:slow",
                             "--input-size", "8", "--data", str(many_images), "--steps", "0", "--data-batch-size", "2",
                             "--workers", str(workers), "--device", "cpu", "--quiet"],
                            cwd=work, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=as_from_a_terminal)
    guard = threading.Timer(300, proc.kill)  # a hang fails the test instead of stalling the suite
    guard.start()
    try:
        while not started.exists() and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read()
        sent = time.monotonic()
        os.killpg(proc.pid, signum) if group else os.kill(proc.pid, signum)
        first = proc.stderr.readline()
        said = time.monotonic() - sent
        err = first + proc.stderr.read()
        proc.wait()
    finally:
        guard.cancel()
    assert said < 10, said  # the pass had over a minute left (the interpreter's own exit is not timed)
    assert proc.returncode == code, err
    assert err.splitlines() == [line], err
    assert list(work.iterdir()) == []


def test_an_unwritable_parent_is_refused_before_loading(inputs, tmp_path, monkeypatch, capsys, no_loading):
    """A read-only directory (bypassed by root's permissions, hence also /proc above)."""
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    monkeypatch.chdir(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    code = _exit_code(_expand(SYN + ["--out", str(locked / "run")], inputs, tmp_path / "run"))
    err = capsys.readouterr().err
    assert code == 2 and "cannot be written" in err and list(locked.iterdir()) == []


def test_long_names_and_linked_outputs_are_written(inputs, tmp_path, monkeypatch, capsys):
    """A 250-character --out, a model named by a 240-character factory (the default --out adds the time: its
    name is cut), an --out that is a link to an empty folder (written through, the link kept)."""
    monkeypatch.chdir(tmp_path)
    factory = "m" * 240
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "long.py").write_text((inputs / "nets.py").read_text() + f"\n{factory} = make_a\n")
    long_syn = [*SYN[:2], f"{tmp_path / 'models' / 'long.py'}:{factory}", *SYN[3:]]
    assert main(_expand(long_syn, inputs, tmp_path)[:-2]) == 0  # the default --out
    assert [len(p.name) for p in (tmp_path / "dgnam-runs").iterdir()] == [247]  # <time>-mmm... cut to fit
    assert main(_expand(long_syn + ["--out", "o" * 250], inputs, tmp_path)) == 0
    assert (tmp_path / ("o" * 250) / "manifest.json").is_file()
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    assert main(_expand(SYN + ["--out", str(tmp_path / "link")], inputs, tmp_path / "unused")) == 0
    assert (tmp_path / "link").is_symlink() and (tmp_path / "target" / "manifest.json").is_file()
    assert not [p for p in tmp_path.rglob(".*")]  # no staging folder left


def test_runs_with_the_default_out_in_the_same_second_all_keep_their_work(inputs, tmp_path, monkeypatch, capsys):
    """Another run publishes the same default name while this one computes: this one becomes NAME-2."""
    monkeypatch.chdir(tmp_path)
    save_png = dgnam.cli.synthesize.save_png

    def save_while_another_run_finishes(image, path):
        staging = path.parent.name  # .NAME.XXXXXXXX
        (path.parent.parent / staging[1:-9]).mkdir(exist_ok=True)
        (path.parent.parent / staging[1:-9] / "other.txt").write_text("the other run")
        save_png(image, path)

    monkeypatch.setattr(dgnam.cli.synthesize, "save_png", save_while_another_run_finishes)
    assert main(_expand(SYN, inputs, tmp_path)[:-2]) == 0  # without --out
    runs = sorted(p.name for p in (tmp_path / "dgnam-runs").iterdir())
    assert len(runs) == 2 and runs[1] == f"{runs[0]}-2"
    assert (tmp_path / "dgnam-runs" / runs[1] / "manifest.json").is_file()
    assert runs[1] in capsys.readouterr().out


def test_parse_units_checks_the_range_without_building_the_list():
    assert parse_units("0-3,7", 10) == [0, 1, 2, 3, 7]
    assert parse_units("3,0-2,3", 10) == [3, 0, 1, 2]
    with pytest.raises(DgnamError, match="unit 10 is out of range for layer 'x', which has 10 units"):
        parse_units("0-3,2-" + "9" * 30, 10, of="layer 'x'")  # 10**30 units: a list would never fit
    # int() would take "1_0" as 10, "+1" as 1 and other scripts' digits: each would name another unit
    for text in ("3-1", "-2", "a", "", "1_0", "+1", "\u0663", "\uff10", "0,,1", "0-9,", "5-"):
        with pytest.raises(DgnamError, match="--units"):
            unit_ranges(text)
    assert unit_ranges(" 0 - 2 , 7") == [range(0, 3), range(7, 8)]
