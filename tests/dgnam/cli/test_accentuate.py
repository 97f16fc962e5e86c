"""``dgnam accentuate``: a user's images changed through the shipped prior until a unit responds."""

import json

import numpy as np
import torch
from PIL import Image

from dgnam.cli.common import DEFAULT_MODEL
from dgnam.images import load_images
from dgnam.nets.classifiers import load_classifier

from helpers import run_cli


def test_accentuate_raises_each_unit_on_each_image_and_reports_before_and_after(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for i in range(2):
        files.append(tmp_path / f"img{i}.png")
        image = Image.fromarray(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8))
        image.resize((32, 32), Image.BILINEAR).save(files[-1])
    out = tmp_path / "acc"
    proc = run_cli("accentuate", *files, "--units", "3,5", "--steps", 15, "--out", out, "--quiet", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    with torch.no_grad():
        logits = load_classifier(DEFAULT_MODEL)(load_images(files, 32))
    assert [(e["unit"], e["source"]) for e in manifest["images"]] == [(u, str(f)) for u in (3, 5) for f in files]
    for entry in manifest["images"]:
        i = files.index(type(files[0])(entry["source"]))
        assert abs(entry["activation_before"] - float(logits[i, entry["unit"]])) < 1e-3  # before: the image itself
        assert entry["activation_after"] > entry["activation_before"] + 1  # after: clearly raised
        assert (out / entry["file"]).is_file()
    assert (out / "grid.png").is_file() and "cat" in proc.stdout


def test_accentuate_refuses_bad_input_in_one_line_before_loading(tmp_path):
    proc = run_cli("accentuate", tmp_path / "missing.png", "--units", "3", "--out", tmp_path / "acc", "--quiet")
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "acc").exists()
