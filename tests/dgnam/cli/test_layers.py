"""``dgnam layers``: every layer of a model, with its shape and calls per forward."""

from helpers import run_cli


def test_layers_marks_last_spatial_layer(user_files):
    proc = run_cli("layers", "--model", "torchvision:resnet18:none", "--input-size", 64)
    assert proc.returncode == 0, proc.stderr
    line = next(row for row in proc.stdout.splitlines() if row.startswith("layer4 "))
    assert "last spatial layer" in line
    relu = next(row for row in proc.stdout.splitlines() if row.startswith("layer4.1.relu "))
    assert relu.split()[-1] == "2"  # called twice per forward


def test_layers_and_attribute_refuse_a_model_of_unknown_input_size(user_files):
    # A factory model names no input size and these commands have no generator to take one from.
    for command in (["layers"], ["attribute", "--image", user_files / "x.png", "--out", user_files / "never"]):
        proc = run_cli(*command, "--model", f"{user_files / 'mynet.py'}:make")
        assert proc.returncode == 2
        assert proc.stderr == "dgnam: error: the model's input size is unknown; pass --input-size\n"
        assert not (user_files / "never").exists()
