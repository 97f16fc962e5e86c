"""``dgnam synthesize``, run as a subprocess, on tiny user models and (when present) the shipped checkpoints."""

import json
import sys

import numpy as np
import pytest
from PIL import Image

from dgnam.cli.common import DEFAULT_GENERATOR, DEFAULT_MODEL

from helpers import _assert_run, run_cli


def test_user_model_factory_file(tmp_path, user_files):
    out = tmp_path / "run"
    proc = run_cli("synthesize", "--model", f"{user_files / 'mynet.py'}:make", "--generator", user_files / "gen.pt",
                   "--units", "0-2,4", "--steps", 20, "--restarts", 2, "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    manifest = _assert_run(out, 8)
    entries = manifest["images"]
    assert [e["unit"] for e in entries] == [0, 0, 1, 1, 2, 2, 4, 4]
    assert [e["seed"] for e in entries] == [0, 1] * 4
    # The synthesis drove the units up from their starting values.
    gains = [e["activation"] - e["start_activation"] for e in entries]
    assert sum(g > 0 for g in gains) >= 6 and sum(gains) > 0
    with Image.open(out / entries[0]["file"]) as im:
        assert im.size == (32, 32)


def test_conv_layer_with_position_and_real_data(tmp_path, user_files):
    data = tmp_path / "real"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(data / f"{i}.png")
    out = tmp_path / "run"
    proc = run_cli("synthesize", "--model", f"{user_files / 'mynet.py'}:make", "--generator", user_files / "gen.pt",
                   "--layer", "2", "--units", "1,3", "--position", "4,5", "--steps", 5, "--restarts", 1,
                   "--data", data, "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    manifest = _assert_run(out, 2)
    assert manifest["settings"]["position"] == [4, 5]
    assert all("activation_relative_to_real_max" in e for e in manifest["images"])
    assert "max / real max" in proc.stdout


def test_param_pixel(tmp_path, user_files):
    out = tmp_path / "run"
    proc = run_cli("synthesize", "--model", f"{user_files / 'mynet.py'}:make", "--input-size", 32,
                   "--param", "pixel", "--units", "0", "--steps", 10, "--restarts", 1, "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    manifest = _assert_run(out, 1)
    assert manifest["settings"]["param"] == "pixel"
    assert manifest["images"][0]["activation"] > manifest["images"][0]["start_activation"]


def test_manifest_round_trip_is_bit_exact(tmp_path, user_files):
    common = ["--model", f"{user_files / 'mynet.py'}:make", "--generator", user_files / "gen.pt", "--steps", 15,
              "--quiet",
              "--fixed-batch", "--batch-size", 8]
    first = tmp_path / "first"
    proc = run_cli("synthesize", *common, "--units", "0-3", "--restarts", 2, "--seed", 7, "--out", first)
    assert proc.returncode == 0
    manifest = json.loads((first / "manifest.json").read_text())
    s = manifest["settings"]
    again = tmp_path / "again"
    proc = run_cli("synthesize", *common, "--units", ",".join(map(str, s["units"])), "--restarts", s["restarts"],
                   "--seed", s["seed"], "--out", again)
    assert proc.returncode == 0, proc.stderr
    for entry in manifest["images"]:
        assert (first / entry["file"]).read_bytes() == (again / entry["file"]).read_bytes()
    # One image alone, from its manifest entry (unit, seed): the same bytes (--fixed-batch).
    entry = manifest["images"][5]
    single = tmp_path / "single"
    proc = run_cli("synthesize", *common, "--units", entry["unit"], "--restarts", 1, "--seed", entry["seed"], "--out",
                   single)
    assert proc.returncode == 0, proc.stderr
    single_entry = json.loads((single / "manifest.json").read_text())["images"][0]
    assert single_entry["file"] == entry["file"].replace("restart1", "restart0")
    assert (first / entry["file"]).read_bytes() == (single / single_entry["file"]).read_bytes()
    assert single_entry["activation"] == entry["activation"]


@pytest.mark.parametrize("extra, message", [
    (["--layer", "conv9"], "unknown layer 'conv9'"),
    (["--units", "0,7"], "unit 7 is out of range for layer 'output', which has 5 units"),
    (["--generator", "missing.pt"], "does not exist"),
    (["--generator", "BROKEN"], "corrupt or not a PyTorch checkpoint"),
    (["--code-prior", "-1"], "--code-prior must be >= 0"),
    (["--param", "pixel", "--code-prior", "0.1"], "--code-prior applies to --param dgn"),
    (["--code-prior", "0.1"], "the generator does not name its encoder (metadata 'encoder'); pass --code-prior 0"),
    (["--init-data", "USER"], "--init-data needs the generator's encoder and encoder_layer"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, user_files, extra, message):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"\x00garbage")
    extra = [str(broken) if e == "BROKEN" else str(user_files) if e == "USER" else e for e in extra]
    out = tmp_path / "run"
    args = ["synthesize", "--model", f"{user_files / 'mynet.py'}:make", "--generator", user_files / "gen.pt",
            "--steps", 2, "--out", out, "--quiet", *extra]
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run")]


def test_torchscript_model_output_only(tmp_path, user_files):
    import torch
    sys.path.insert(0, str(user_files))
    try:
        import mynet
    finally:
        sys.path.remove(str(user_files))
    scripted = tmp_path / "net.ts"
    torch.jit.script(mynet.make()).save(str(scripted))
    out = tmp_path / "run"
    proc = run_cli("synthesize", "--model", scripted, "--input-size", 32, "--generator", user_files / "gen.pt",
                   "--units", "1", "--steps", 3, "--restarts", 1, "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    _assert_run(out, 1)
    proc = run_cli("synthesize", "--model", scripted, "--input-size", 32, "--generator", user_files / "gen.pt",
                   "--layer", "2", "--out", tmp_path / "run2")
    assert proc.returncode == 2 and "TorchScript model exposes only its output" in proc.stderr


def test_kth_call_is_range_checked_against_its_own_shape(tmp_path):
    # torchvision Bottleneck: relu@0 and @1 see 64 channels, relu@2 (after the residual add) 256.
    common = ["--model", "torchvision:resnet50:none", "--input-size", 32, "--param", "pixel", "--steps", 1,
              "--restarts", 1, "--quiet"]
    proc = run_cli("synthesize", *common, "--layer", "layer1.0.relu@2", "--units", "200", "--out", tmp_path / "a")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("synthesize", *common, "--layer", "layer1.0.relu@1", "--units", "200", "--out", tmp_path / "b")
    assert proc.returncode == 2 and "which has 64 units" in proc.stderr
    proc = run_cli("synthesize", *common, "--layer", "layer1.0.relu@3", "--out", tmp_path / "c")
    assert proc.returncode == 2 and "runs 3 time(s)" in proc.stderr
    proc = run_cli("synthesize", *common, "--position", "1,1", "--out", tmp_path / "d")
    assert proc.returncode == 2 and "--position applies to conv layers" in proc.stderr


def test_non_empty_out_is_refused(tmp_path, user_files):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = run_cli("synthesize", "--model", f"{user_files / 'mynet.py'}:make", "--generator", user_files / "gen.pt",
                   "--steps", 2, "--out", out)
    assert proc.returncode == 2 and "not empty" in proc.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_missing_model_file_and_usage_error(tmp_path):
    proc = run_cli("synthesize", "--model", tmp_path / "nope.py:make", "--out", tmp_path / "x")
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert run_cli("synthesize", "--steps", "many").returncode == 2


@pytest.mark.skipif(not (DEFAULT_GENERATOR.is_file() and DEFAULT_MODEL.is_file()), reason="shipped checkpoints absent")
def test_default_run_on_shipped_checkpoints(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("synthesize", "--steps", 30, "--restarts", 1, "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    manifest = _assert_run(out, 10)
    labels = [e["label"] for e in manifest["images"]]
    assert labels[:3] == ["airplane", "automobile", "bird"]
    # Padding is opt-in (the sharded command once turned it on for every run through a shared action).
    assert manifest["settings"]["fixed_batch"] is False
    # Even 30 steps through the prior make the shipped classifier pick the intended class for most units.
    from dgnam import load_classifier
    from dgnam.images import load_images
    model = load_classifier(DEFAULT_MODEL)
    images = load_images([out / e["file"] for e in manifest["images"]], 32)
    predicted = model(images).argmax(1).tolist()
    assert sum(p == e["unit"] for p, e in zip(predicted, manifest["images"])) >= 8


def test_code_prior_on_shipped_checkpoints(tmp_path):
    # PPGN's code prior keeps the code near what the encoder reads back, which is what stops DGN-AM
    # from blowing pixels out to 0/1 (measured at 200 steps: 14% -> 0.4% of pixel values at eps 0.1).
    from dgnam.images import load_images
    runs = {}
    for eps in (0, 0.1):
        out = tmp_path / f"eps{eps}"
        proc = run_cli("synthesize", "--steps", 60, "--restarts", 1, "--units", "0,1,2,3", "--code-prior", eps,
                       "--out", out, "--quiet", "--device", "cpu")
        assert proc.returncode == 0, proc.stderr
        manifest = _assert_run(out, 4)
        images = load_images([out / e["file"] for e in manifest["images"]], 32)
        runs[eps] = (manifest, ((images <= 0.002) | (images >= 0.998)).float().mean().item())
    manifest, clipped = runs[0.1]
    assert manifest["settings"]["code_prior"] == 0.1
    assert "code_prior(features.relu4_2)" in manifest["settings"]["engine"]["objective"]
    assert "code_prior" not in runs[0][0]["settings"]["engine"]["objective"]
    assert clipped < 0.5 * runs[0][1], (clipped, runs[0][1])
    # The manifest's activation is the logit (about 20-30 here), not logit + the prior's penalty (about -300).
    assert all(e["activation"] > 5 for e in manifest["images"]), [e["activation"] for e in manifest["images"]]


def _noise_images(folder, n, seed=0):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        small = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)  # smooth blobs, not pixel noise
        Image.fromarray(small).resize((32, 32), Image.BILINEAR).save(folder / f"{i:02d}.png")
    return folder


def test_seeded_synthesis_starts_from_each_units_top_images_and_holds_a_target(tmp_path):
    """The shipped classifier and prior: restart r of a unit starts as the folder's image with the unit's r-th
    highest logit (so its first reading is that logit), and --target 1.2x stops it at 1.2 x the folder's max."""
    import torch

    from dgnam.images import load_images
    from dgnam.nets.classifiers import load_classifier
    data = _noise_images(tmp_path / "real", 12)
    out = tmp_path / "run"
    proc = run_cli("synthesize", "--units", "3,5", "--restarts", 2, "--init-data", data, "--target", "1.2x",
                   "--steps", 30, "--out", out, "--quiet", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["init_data"] == str(data) and manifest["settings"]["engine"]["param"] == "SeededCode"
    net = load_classifier(DEFAULT_MODEL)
    with torch.no_grad():
        logits = net(load_images(sorted(data.glob("*.png")), 32))
    for entry in manifest["images"]:
        top = logits[:, entry["unit"]].topk(2).values
        assert entry["start_activation"] == pytest.approx(float(top[entry["restart"]]), abs=1e-3)
        assert entry["activation"] <= 1.2 * float(top[0]) + 0.5  # held near the target, not pushed past it
        assert entry["activation"] > entry["start_activation"]
