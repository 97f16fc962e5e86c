"""Inversion, model comparison and attribution (dgnam.analysis) and their commands, on tiny models."""

import copy
import json
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn

from dgnam import DgnamError, GeneratorCode, Pixels, class_logit, synthesize
from dgnam.analysis import attribute, compare, gradcam_layer, invert
from dgnam.analysis.attribute import functional_relu_calls
from dgnam.engine.objectives import scale_rows
from dgnam.nets import CifarResNet
from dgnam.nets.model import Model

from helpers import TinyNet, tiny_generator


def _image(seed: int = 0, size: int = 32) -> torch.Tensor:
    """A smooth random RGB image in [0, 1] (a few blobs), so inversions have structure to find."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, 4, 4, generator=g)
    return F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)[0]


# --- the engine pieces the analyses added ---------------------------------------------------------
def test_scale_rows_mixes_objectives_per_row(tiny_gen):
    a, b = Model(TinyNet(seed=1), input_size=32), Model(TinyNet(seed=2), input_size=32)
    mixed = scale_rows(class_logit([4, 4, 4], model=a), [1, 1, -1]) + scale_rows(class_logit([4, 4, 4], model=b), [1, -1, 1])
    res = synthesize(mixed, GeneratorCode(tiny_gen), seeds=[0, 1, 2], steps=3)
    with torch.no_grad():
        la, lb = a(res.images)[:, 4], b(res.images)[:, 4]
    torch.testing.assert_close(res.values, torch.stack([la[0] + lb[0], la[1] - lb[1], lb[2] - la[2]]), atol=1e-4, rtol=1e-4)
    with pytest.raises(DgnamError, match="row scales"):
        scale_rows(class_logit([1, 2], model=a), [1.0, 2.0, 3.0])


def test_pixels_start_from_given_images():
    start = torch.rand(2, 3, 8, 8)
    params = Pixels(8, init_images=start).init([0, 1], torch.tensor([1]), torch.device("cpu"))
    torch.testing.assert_close(params, start[[1]])
    with pytest.raises(DgnamError, match="init images"):
        Pixels(8, init_images=torch.rand(2, 3, 4, 4))


# --- inversion ------------------------------------------------------------------------------------
def test_inversion_error_decreases_from_random_init(tiny_model, tiny_gen):
    layers = ["conv", "fc1", "output"]
    image = _image()
    res = invert(tiny_model, image, layers, tiny_gen, params=("dgn", "pixel"), steps=40)
    assert res.errors.shape == res.start_errors.shape == (2, 3)
    assert res.images.shape == (2, 3, 3, 32, 32)
    assert (res.errors < res.start_errors).all(), (res.errors, res.start_errors)
    # Pixels have every degree of freedom: they get far closer than where they started.
    assert (res.errors[1] < 0.5 * res.start_errors[1]).all()
    # The reported number is the normalised error of the image itself, recomputed here by hand.
    with torch.no_grad():
        target = tiny_model.run(image[None], ["fc1"])["fc1"]
        got = tiny_model.run(res.images[1, 1][None], ["fc1"])["fc1"]
    assert float(res.errors[1, 1]) == pytest.approx(float((got - target).norm() / target.norm()), rel=1e-4)


def test_inversion_without_generator_refuses_dgn(tiny_model):
    with pytest.raises(DgnamError, match="needs a generator"):
        invert(tiny_model, _image(), ["output"], None, params=("dgn",), steps=2)
    res = invert(tiny_model, _image(), ["output"], None, params=("pixel",), steps=2)
    assert res.params == ["pixel"]


# --- comparison -----------------------------------------------------------------------------------
def test_difference_images_score_higher_on_the_model_they_favour():
    a, b = Model(TinyNet(seed=1), input_size=32, name="a"), Model(TinyNet(seed=2), input_size=32, name="b")
    res = compare(a, b, Pixels(32), classes=[0, 3, 5, 7], steps=30, mimic_steps=20)
    assert len(res.synthesis) == 5 * 4  # every kind and class in one batch
    a_on_a_minus_b, b_on_a_minus_b = res.class_scores("A-B")
    a_on_b_minus_a, b_on_b_minus_a = res.class_scores("B-A")
    assert (a_on_a_minus_b > b_on_a_minus_b).all()
    assert (b_on_b_minus_a > a_on_b_minus_a).all()
    # The difference objective opens a wider A-over-B gap than asking both models for the class.
    a_both, b_both = res.class_scores("A+B")
    assert ((a_on_a_minus_b - b_on_a_minus_b) > (a_both - b_both)).all()
    # Output space: the diagonal of the class-by-class matrix is the per-class similarity.
    torch.testing.assert_close(res.similarity_matrix.diagonal(), res.class_similarity)
    assert res.most_disagreeing(2) == res.class_similarity.argsort()[:2].tolist()
    # Mimicry moved A's outputs towards B's on B's images (L1) on every row.
    assert (res.mimic_end_l1 < res.mimic_start_l1).all()


def test_compare_through_the_generator_continues_from_a_codes(tiny_gen):
    a, b = Model(TinyNet(seed=1), input_size=32), Model(TinyNet(seed=2), input_size=32)
    res = compare(a, b, GeneratorCode(tiny_gen), classes=[0, 3], steps=20, mimic_steps=10)
    gap_a_minus_b = torch.sub(*res.class_scores("A-B"))
    gap_b_minus_a = torch.sub(*res.class_scores("B-A"))
    assert (gap_a_minus_b > gap_b_minus_a).all()
    assert (res.mimic_end_l1 < res.mimic_start_l1).all()
    # Mimicry rows start from the codes of A's images (the first two rows).
    assert res.mimicry.settings["param"] == "GeneratorCode"
    torch.testing.assert_close(res.mimic_start_logits, res.logits_a[:2])


def test_mimicry_starts_from_a_images_in_pixel_space():
    a, b = Model(TinyNet(seed=1), input_size=32), Model(TinyNet(seed=2), input_size=32)
    res = compare(a, b, Pixels(32), classes=[1, 2], steps=5, mimic_steps=1)
    torch.testing.assert_close(res.mimic_start_logits, res.logits_a[res.rows("A")])
    # One small step: the mimic is still close to A's image it started from.
    assert (res.mimicry.images - res.synthesis.images[res.rows("A")]).abs().max() < 0.05


# --- attribution ----------------------------------------------------------------------------------
def test_gradcam_layer_of_torchvision_resnet18_is_layer4():
    torch.manual_seed(0)
    model = Model(torchvision.models.resnet18(weights=None), input_size=64)
    assert gradcam_layer(model)[0] == "layer4"
    res = attribute(model, torch.rand(2, 3, 64, 64), target=[1, 2], methods=("gradcam",))
    assert res.layer == "layer4"
    assert res.maps["gradcam"].shape == (2, 64, 64) and res.targets == [1, 2]
    with pytest.raises(DgnamError, match="runs 2 time"):
        gradcam_layer(model, "layer4.1.relu")


class PatchNet(nn.Module):
    """Logit 0 = mean red over the image, through an identity conv: evidence lies where red is."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.conv.bias.zero_()
            self.fc.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


def test_gradcam_and_saliency_find_the_evidence():
    image = torch.zeros(1, 3, 16, 16)
    image[0, 0, 2:6, 9:13] = 1.0  # a red patch, the only evidence for class 0
    res = attribute(Model(PatchNet(), input_size=16), image, target=0, methods=("saliency", "gradcam"))
    assert res.layer == "relu"
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[2:6, 9:13] = True
    for method in ("saliency", "gradcam"):
        values = res.maps[method][0]
        assert float(values[inside].sum() / values.sum()) > 0.95, method


class GuidedReLU(torch.autograd.Function):
    """Reference guided backprop ReLU: pass gradient only where the input and the gradient are positive."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x > 0) * (grad > 0)


class ReferenceReLU(nn.Module):
    def forward(self, x):
        return GuidedReLU.apply(x)


def test_guided_backprop_matches_reference_with_inplace_and_reused_relus():
    torch.manual_seed(0)
    net = CifarResNet(widths=(8, 16), depth=1).eval()  # in-place ReLUs, each block's called twice
    model = Model(net, input_size=16)
    x = torch.rand(2, 3, 16, 16)
    res = attribute(model, x, target=3, methods=("guided_backprop", "saliency"))
    reference = copy.deepcopy(net)
    for parent in reference.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.ReLU):
                setattr(parent, name, ReferenceReLU())
    x_ref = x.clone().requires_grad_(True)
    reference(x_ref)[:, 3].sum().backward()
    torch.testing.assert_close(res.maps["guided_backprop"], x_ref.grad, atol=1e-5, rtol=1e-4)
    # ...and it is not the plain gradient.
    assert not torch.allclose(res.maps["guided_backprop"].abs().amax(1), res.maps["saliency"], atol=1e-4)


class FunctionalReluNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = F.relu(self.conv(x))
        return self.fc(torch.relu(x).mean((2, 3)))


def test_functional_relu_is_refused_for_guided_methods_only():
    model = Model(FunctionalReluNet(), input_size=8)
    x = torch.rand(1, 3, 8, 8)
    assert functional_relu_calls(model, x) == 2
    assert functional_relu_calls(Model(PatchNet(), input_size=8), x) == 0
    with pytest.raises(DgnamError, match="applies ReLU 2 time"):
        attribute(model, x, methods=("guided_gradcam",))
    assert attribute(model, x, methods=("saliency", "gradcam")).layer == "conv"


def test_target_out_of_range():
    with pytest.raises(DgnamError, match="target class 5 is out of range"):
        attribute(Model(PatchNet(), input_size=8), torch.rand(1, 3, 8, 8), target=5, methods=("saliency",))


# --- the commands, end to end ---------------------------------------------------------------------
USER_MODELS = textwrap.dedent("""
    import torch
    from torch import nn

    def _net(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2, padding=1),
                             nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, 5))

    def make_a():
        return _net(0)

    def make_b():
        return _net(1)
""")


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    (root / "nets.py").write_text(USER_MODELS)
    tiny_generator().save(root / "gen.pt")
    Image.fromarray((_image(3).permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(root / "x.png")
    return root


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "dgnam", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_invert_command(tmp_path, user_files):
    out = tmp_path / "inv"
    proc = run_cli("invert", "--model", f"{user_files / 'nets.py'}:make_a", "--generator", user_files / "gen.pt",
                   "--image", user_files / "x.png", "--layers", "1,3,6", "--steps", 15, "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == {"grid.png", "report.md", "manifest.json"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["errors"]) == {"dgn", "pixel"} and set(manifest["errors"]["dgn"]) == {"1", "3", "6"}
    # (This tiny generator barely changes what the tiny net sees; the prior's decrease is tested above.)
    for layer in ("1", "3", "6"):
        assert manifest["errors"]["pixel"][layer] < 0.7 * manifest["start_errors"]["pixel"][layer]
    assert "| dgn |" in (out / "report.md").read_text()


def test_compare_command(tmp_path, user_files):
    out = tmp_path / "cmp"
    nets = user_files / "nets.py"
    proc = run_cli("compare", "--model", f"{nets}:make_a", "--model", f"{nets}:make_b", "--generator",
                   user_files / "gen.pt", "--classes", "0-2", "--steps", 15, "--mimic-steps", 10, "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == {"class_images.png", "similarity.png", "mimicry.png", "report.md",
                                               "manifest.json"}
    manifest = json.loads((out / "manifest.json").read_text())
    scores = manifest["class_scores"]
    gaps = {kind: [sa - sb for sa, sb in zip(scores[kind]["a"], scores[kind]["b"])] for kind in ("A-B", "B-A")}
    assert all(ab > ba for ab, ba in zip(gaps["A-B"], gaps["B-A"]))
    assert len(manifest["similarity_matrix"]) == 3 and len(manifest["most_disagreeing"]) == 3
    with Image.open(out / "class_images.png") as im:
        assert im.width > 3 * 96 and im.height > 5 * 96  # 3 classes x 5 kinds


def test_attribute_command(tmp_path, user_files):
    out = tmp_path / "att"
    proc = run_cli("attribute", "--model", f"{user_files / 'nets.py'}:make_a", "--input-size", 32,
                   "--image", user_files / "x.png", "--image", user_files / "x.png", "--target", 2, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == {"attribution.png", "report.md", "manifest.json"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["layer"] == "3"  # the last ReLU before the adaptive pool
    assert [e["target"] for e in manifest["images"]] == [2, 2]
    assert set(manifest["images"][0]["deletion"]) == {"saliency", "gradcam", "guided_backprop", "guided_gradcam"}


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
