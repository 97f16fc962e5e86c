"""``dgnam stats``: a generator's code bounds recomputed from real images or a new k, and its recommended
code prior."""

import json

import numpy as np
from PIL import Image

from dgnam.cli.common import DEFAULT_GENERATOR

from helpers import run_cli, tiny_generator


def test_stats_recomputes_bounds(tmp_path, user_files):
    import torch

    from dgnam import UpconvGenerator, cifar_arch, load_generator
    from dgnam.images import load_images
    from dgnam.nets.zoo import load_model
    encoder_spec = f"{user_files / 'mynet.py'}:make"
    # Layer "4" (AdaptiveAvgPool2d(4) after a ReLU) gives a non-negative 8x4x4 = 128-unit code.
    gen = UpconvGenerator(cifar_arch(code_dim=128, start_channels=8, widths=(8, 8, 8), spatial_code=True),
                          encoder_layer="4", encoder=encoder_spec)
    gen.save(tmp_path / "g.pt")
    data = tmp_path / "real"
    data.mkdir()
    rng = np.random.default_rng(1)
    for i in range(10):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(data / f"{i}.png")
    proc = run_cli("stats", "--generator", tmp_path / "g.pt", "--data", data, "--out", tmp_path / "g2.pt", "--k", 2)
    assert proc.returncode == 0, proc.stderr
    updated = load_generator(tmp_path / "g2.pt")
    model = load_model(encoder_spec)
    images = load_images(sorted(data.glob("*.png")), 32)
    with torch.no_grad():
        codes = model.run(images, ["4"])["4"].flatten(1)
    torch.testing.assert_close(updated.code_upper_bound, codes.mean(0) + 2 * codes.std(0), atol=1e-4, rtol=1e-4)
    again = run_cli("stats", "--generator", tmp_path / "g.pt", "--data", data, "--out", tmp_path / "g2.pt")
    assert again.returncode == 2 and "exists" in again.stderr

    # Without --data: the stored statistics, a new k.
    proc = run_cli("stats", "--generator", tmp_path / "g2.pt", "--k", 0.5, "--out", tmp_path / "g3.pt")
    assert proc.returncode == 0, proc.stderr
    rebound = load_generator(tmp_path / "g3.pt")
    torch.testing.assert_close(rebound.code_mean, updated.code_mean)
    torch.testing.assert_close(rebound.code_upper_bound, codes.mean(0) + 0.5 * codes.std(0), atol=1e-4, rtol=1e-4)
    assert torch.load(tmp_path / "g3.pt", weights_only=True)["metadata"]["bound_k"] == 0.5
    no_stats = run_cli("stats", "--generator", tmp_path / "g.pt", "--k", 0.5, "--out", tmp_path / "g4.pt")
    assert no_stats.returncode == 2 and "pass --data" in no_stats.stderr and not (tmp_path / "g4.pt").exists()
    negative = run_cli("stats", "--generator", tmp_path / "g2.pt", "--k", -1, "--out", tmp_path / "g5.pt")
    assert negative.returncode == 2 and "--k must be >= 0" in negative.stderr


def test_generator_records_its_recommended_code_prior(tmp_path):
    gen = tmp_path / "g.pt"
    proc = run_cli("stats", "--generator", DEFAULT_GENERATOR, "--k", 0.5, "--code-prior", 0.2, "--out", gen)
    assert proc.returncode == 0, proc.stderr
    common = ["--generator", gen, "--steps", 3, "--restarts", 1, "--units", 0, "--quiet", "--device", "cpu"]
    for extra, expected in [([], 0.2), (["--code-prior", 0], 0.0), (["--param", "pixel"], 0.0)]:
        out = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        proc = run_cli("synthesize", *common, *extra, "--out", out)
        assert proc.returncode == 0, proc.stderr
        settings = json.loads((out / "manifest.json").read_text())["settings"]
        assert settings["code_prior"] == expected, extra
        assert ("code_prior(" in settings["engine"]["objective"]) == (expected > 0)
    bad = run_cli("stats", "--generator", gen, "--code-prior", -1, "--out", tmp_path / "bad.pt")
    assert bad.returncode == 2 and "--code-prior must be >= 0" in bad.stderr and not (tmp_path / "bad.pt").exists()


def test_a_generator_recording_an_infinite_k_is_refused_by_synthesis_and_repaired_by_stats(
        tmp_path, user_files, capsys):
    """`dgnam stats --k inf` is refused now; a generator it once wrote fails in one line naming the repair."""
    from dgnam import load_generator
    from dgnam.cli.main import main

    bad, good = tmp_path / "bad.pt", tmp_path / "good.pt"
    tiny_generator().save(bad, {"bound_k": float("inf")})
    assert main(["synthesize", "--model", f"{user_files / 'mynet.py'}:make", "--generator", str(bad), "--steps", "1",
                 "--restarts", "1", "--quiet", "--out", str(tmp_path / "run")]) == 2
    assert "--k 3" in capsys.readouterr().err and not (tmp_path / "run").exists()
    assert main(["stats", "--generator", str(bad), "--k", "3", "--out", str(good)]) == 0
    assert load_generator(good).metadata["bound_k"] == 3
