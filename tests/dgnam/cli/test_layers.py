"""``dgnam layers``: every layer of a model, with its shape and calls per forward."""

from helpers import run_cli


def test_layers_marks_last_spatial_layer(user_files):
    proc = run_cli("layers", "--model", "torchvision:resnet18:none", "--input-size", 64)
    assert proc.returncode == 0, proc.stderr
    line = next(row for row in proc.stdout.splitlines() if row.startswith("layer4 "))
    assert "last spatial layer" in line
    relu = next(row for row in proc.stdout.splitlines() if row.startswith("layer4.1.relu "))
    assert relu.split()[-1] == "2"  # called twice per forward
