"""dgnam.analysis.attribute: saliency, Grad-CAM and guided backprop on tiny models with known evidence."""

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from dgnam import DgnamError
from dgnam.analysis import attribute, gradcam_layer
from dgnam.analysis.attribute import functional_relu_calls
from dgnam.nets import CifarResNet
from dgnam.nets.model import Model


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


class TokenNet(nn.Module):
    """A ViT-like PatchNet: 8x8 patches -> a CLS token and 4x4 patch tokens (B, 17, 3) holding each patch's mean
    colour; logit 0 = the mean red over the patch tokens. Grad-CAM must put the patch grid back in place."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.AvgPool2d(8)
        self.tokens = nn.Identity()  # (B, 17, 3): the layer Grad-CAM reads
        self.fc = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))

    def forward(self, x):
        patches = self.embed(x).flatten(2).transpose(1, 2)  # (B, 16, 3), row-major over the 4x4 grid
        tokens = self.tokens(torch.cat([torch.zeros_like(patches[:, :1]), patches], 1))
        return self.fc(tokens[:, 1:].mean(1))


def test_gradcam_on_tokens_puts_the_patch_grid_in_place():
    image = torch.zeros(1, 3, 32, 32)
    image[0, 0, 8:16, 16:24] = 1.0  # red in patch (1, 2) alone
    model = Model(TokenNet(), input_size=32, layouts={"tokens": "tokens:1"})
    res = attribute(model, image, target=0, layer="tokens", methods=("gradcam",))
    cam = res.maps["gradcam"][0]
    row, col = divmod(int(cam.argmax()), 32)
    assert 8 <= row < 16 and 16 <= col < 24  # a (tokens, D) map read as (C, H, W), or a transposed grid, misses it
    assert float(cam[8:16, 16:24].mean()) > 5 * float(cam[:, :8].mean() + 1e-6)
    with pytest.raises(DgnamError, match="Grad-CAM needs a spatial map"):
        attribute(Model(TokenNet(), input_size=32), image, target=0, layer="tokens", methods=("gradcam",))


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
