"""dgnam.prior.importers: import of the published DeePSiM fc6 generator, on synthetic tensors of the port's
names and shapes."""

import pytest
import torch
import torch.nn.functional as F

from dgnam import DgnamError
from dgnam.prior.importers import DEEPSIM_FC6_LAYERS, canonical_port_keys, deepsim_fc6_shapes, import_deepsim_fc6

from helpers import CONVS

RGB_MEAN = torch.tensor([123.0, 117.0, 104.0]).view(1, 3, 1, 1)


def reference_port_rgb(sd: dict, code: torch.Tensor) -> torch.Tensor:
    """What the ports compute: the Caffe net, then BGR -> RGB, + mean, clip to 0-255, / 255."""
    x = code
    for name in ("defc7", "defc6", "defc5"):
        x = F.leaky_relu(F.linear(x, sd[f"{name}.weight"], sd[f"{name}.bias"]), 0.3)
    x = x.reshape(-1, 256, 4, 4)
    for i, (name, stride) in enumerate(CONVS):
        x = F.conv_transpose2d(x, sd[f"{name}.weight"], sd[f"{name}.bias"], stride=stride, padding=1)
        if i < len(CONVS) - 1:
            x = F.leaky_relu(x, 0.3)
    return (x[:, [2, 1, 0]] + RGB_MEAN).clamp(0, 255) / 255


def test_import_reproduces_the_port(port_state_dict):
    G = import_deepsim_fc6(port_state_dict)
    assert G.output_space == "caffe_bgr" and G.image_size == 256 and G.code_dim == 4096
    assert G.encoder_layer == "fc6"
    # Every weight is copied bit for bit; the all-zero conv biases are dropped (the arch has none).
    for name, layer in [*G.fc.items(), *G.convs.items()]:
        assert torch.equal(layer.weight, port_state_dict[f"{name}.weight"])
    assert all(layer.bias is None for layer in G.convs.values())
    assert torch.equal(G.fc["defc6"].bias, port_state_dict["defc6.bias"])
    code = torch.rand(2, 4096, generator=torch.Generator().manual_seed(1)) * 3
    with torch.no_grad():
        ours, ref = G.generate(code), reference_port_rgb(port_state_dict, code)
    inside = ((ref > 0) & (ref < 1)).float().mean()
    assert inside > 0.5  # the comparison is not between two saturated images
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


def test_colour_and_range_conversion_is_exact(port_state_dict):
    sd = dict(port_state_dict)
    sd["deconv0.weight"] = torch.zeros_like(sd["deconv0.weight"])
    # Mean-subtracted BGR: B -104, G -117, R +132 is pure red (R 255, G 0, B 0) in the original.
    sd["deconv0.bias"] = torch.tensor([-104.0, -117.0, 132.0])
    G = import_deepsim_fc6(sd)
    assert G.convs["deconv0"].bias is not None  # a non-zero conv bias is kept
    code = torch.rand(1, 4096)
    with torch.no_grad():
        raw = G(code)
        rgb = G.generate(code)
    assert torch.equal(raw[0, :, 0, 0], torch.tensor([-104.0, -117.0, 132.0]))  # raw stays in Caffe's space
    assert torch.equal(rgb, torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 256, 256))
    # Any BGR value v maps to (v[::-1] + (123, 117, 104)) / 255, exactly.
    bgr = torch.tensor([10.5, -17.25, 3.0])
    with torch.no_grad():
        G.convs["deconv0"].bias.copy_(bgr)
        rgb = G.to_rgb(G(code))[0, :, 100, 100]
    assert torch.equal(rgb, (bgr.flip(0) + RGB_MEAN.flatten()) / 255)
    assert torch.equal(rgb, torch.tensor([126.0, 99.75, 114.5]) / 255)


@pytest.mark.parametrize("change, message", [
    ({"defc7.weight": torch.zeros(4096, 1000)},  # the fc8 generator's first layer
     r"'defc7.weight' has shape \(4096, 1000\) but the fc6 generator needs \(4096, 4096\)"),
    ({"deconv3.weight": None}, r"has no 'deconv3.weight'"),
    ({"Rconv6.weight": torch.zeros(1)}, r"'Rconv6.weight' \(a pool5 generator's layer\) is not part"),
    ({"conv4_1.bias": torch.zeros(128)}, r"'conv4_1.bias' has shape \(128,\)"),
    ({"defc5.bias": torch.zeros(4096, dtype=torch.int64)}, r"'defc5.bias' is Tensor of torch.int64"),
])
def test_mismatches_name_the_key_in_one_line(change, message):
    # Checks run before any weight is copied, so a dict of placeholders of the right shapes suffices.
    sd = {k: torch.zeros(s) for k, s in deepsim_fc6_shapes().items() if k.startswith("defc") or k.endswith(".weight")}
    for key, value in change.items():
        if value is None:
            sd.pop(key)
        else:
            sd[key] = value
    with pytest.raises(DgnamError, match=message) as info:
        import_deepsim_fc6(sd)
    assert "\n" not in str(info.value)


def test_canonical_keys():
    w = torch.zeros(1)
    keys = canonical_port_keys({"module.G.defc7.weight": w, "defc6.1.bias": w, "deconv0.weight": w})
    assert list(keys) == ["defc7.weight", "defc6.bias", "deconv0.weight"]
    assert [k.split(".")[0] for k in deepsim_fc6_shapes()][::2] == list(DEEPSIM_FC6_LAYERS)
