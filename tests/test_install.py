"""Cross-cutting, so at the top level: it builds and installs the whole package.

An installed dgnam is a whole dgnam: a regular (non-editable) install runs the default job from any folder."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _source_copy(dest: Path) -> Path:
    """What `pip install .` reads, copied, so the build leaves nothing in the checkout (dgnam/checkpoints
    stays a link to checkpoints/, as in the repository)."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    for name in ("dgnam", "train"):
        shutil.copytree(ROOT / name, dest / name, symlinks=True, ignore=skip)
    shutil.copytree(ROOT / "checkpoints" / "cifar10", dest / "checkpoints" / "cifar10", ignore=skip)
    return dest


def test_regular_install_synthesizes_from_another_folder(tmp_path):
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                              "--quiet", "--target", str(site), str(_source_copy(tmp_path / "src"))],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    shipped = site / "dgnam" / "checkpoints" / "cifar10"
    files = sorted(str(p.relative_to(shipped)) for p in shipped.rglob("*") if p.is_file())
    assert {"encoder.pt", "generator.pt", "generator_fc6.pt", "code_sampler.pt"} <= set(files)
    assert "judges/resnet.pt" in files
    assert all(f.endswith(".pt") for f in files), files  # models only: no model card, no training leftovers
    assert not (site / "dgnam" / "checkpoints").is_symlink()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = elsewhere / "run"
    # The installed console script, with only the install on the path: no checkout in sight.
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(site / "bin" / "dgnam"), "synthesize", "--steps", "2", "--device", "cpu",
                          "--quiet", "--out", str(out)], capture_output=True, text=True, cwd=elsewhere, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (out / "grid.png").is_file()
    settings = json.loads((out / "manifest.json").read_text())["settings"]
    # The shipped files, named as every manifest names them: relative to the installed checkpoints.
    assert settings["model"] == "shipped:cifar10/encoder.pt" and settings["generator"] == "shipped:cifar10/generator.pt"
    # The paper's fc6 prior, by its short name, from the install alone.
    fc6 = subprocess.run([sys.executable, str(site / "bin" / "dgnam"), "synthesize", "--steps", "2", "--device", "cpu",
                          "--generator", "fc6", "--units", "3", "--quiet", "--out", str(elsewhere / "fc6")],
                         capture_output=True, text=True, cwd=elsewhere, env=env, timeout=300)
    assert fc6.returncode == 0, fc6.stderr[-3000:]
    fc6_settings = json.loads((elsewhere / "fc6" / "manifest.json").read_text())["settings"]
    assert fc6_settings["generator"] == "shipped:cifar10/generator_fc6.pt"
    # The gallery's page, script and style travel as package data.
    assert {p.name for p in (site / "dgnam" / "gallery" / "static").iterdir()} == {"index.html", "app.js", "style.css"}
