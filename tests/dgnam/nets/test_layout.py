"""Layer layouts: detection on CNNs, channels-last and token models, readings on known tensors, and a
known-answer model whose unit k is a known function of channel k of a channels-last map."""

import pytest
import torch
from torch import nn
from torchvision.ops.misc import Permute

from dgnam.engine.objectives import channel, unit
from dgnam.errors import DgnamError
from dgnam.nets.layout import Layout, parse_layout
from dgnam.nets.model import Model, describe_layers

from helpers import ECOSYSTEM_LAYERS, TinyNet, ecosystem_model


class ChannelsLastNet(nn.Module):
    """conv -> Permute -> Linear, as in a ConvNeXt block. Channel k of ``lin`` (B, 4, 4, 6) is 3 * (k + 1)
    times the image's mean red value at every position, so unit k is known: a (C, H, W) misreading of this
    (B, H=4, W=4, C=6) map would read the H axis."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 8, stride=8, bias=False)  # (B, 1, 4, 4): the mean red of each 8x8 patch
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = 1 / 64
        self.permute = Permute([0, 2, 3, 1])
        self.lin = nn.Linear(1, 6, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.arange(1.0, 7.0)[:, None] * 3)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.lin(self.permute(self.conv(x))).mean((1, 2)))


def test_known_answer_channels_last_unit_k_is_channel_k():
    model = Model(ChannelsLastNet(), input_size=32)
    image = torch.zeros(2, 3, 32, 32)
    image[0, 0] = 0.5
    image[1, 0] = 1.0
    assert str(model.layout("lin")) == "channels_last" and str(model.layout("conv")) == "conv"
    info = {i.name: i for i in describe_layers(model)}
    assert info["lin"].units() == 6 and info["permute"].units() == 1  # the true width, not H=4
    acts = {(model, "lin"): model.run(image, ["lin"])["lin"]}
    for k in range(6):  # unit k at the centre and as a spatial mean: 3 (k + 1) x mean red
        expected = torch.tensor([0.5, 1.0]) * 3 * (k + 1)
        torch.testing.assert_close(unit("lin", k, model=model)(acts), expected)
        torch.testing.assert_close(channel("lin", k, model=model)(acts), expected)
    with pytest.raises(DgnamError, match="out of range.*6 channels"):
        unit("lin", 6, model=model)(acts)  # a (C, H, W) reading would have taken 4 "channels"


def test_cnn_layers_stay_conv_and_units():
    infos = {i.name: i for i in describe_layers(Model(TinyNet(), input_size=32))}
    assert [str(infos[n].layout) for n in ("conv", "relu", "pool", "fc1", "fc2")] == ["conv", "conv", "conv", "units",
                                                                                    "units"]
    assert infos["conv"].units() == 8 and infos["fc1"].units() == 32


@pytest.mark.parametrize("name", list(ECOSYSTEM_LAYERS))
def test_ecosystem_layers_have_their_true_width(name, tmp_path):
    model = ecosystem_model(name, tmp_path)
    layer, layout, width = ECOSYSTEM_LAYERS[name]
    info = {i.name: i for i in describe_layers(model)}[layer]
    assert str(info.layout) == layout and info.units() == width


def test_attention_heads_are_not_a_conv_map(tmp_path):
    model = ecosystem_model("timm_vit", tmp_path)
    info = {i.name: i for i in describe_layers(model)}
    assert info["blocks.0.attn.k_norm"].shape == (2, 17, 16) and str(info["blocks.0.attn.k_norm"].layout) == "other"
    acts = {(model, "blocks.0.attn.k_norm"): torch.zeros(1, 2, 17, 16)}
    with pytest.raises(DgnamError, match=r"cannot read as units .*--layout"):
        unit("blocks.0.attn.k_norm", 0, model=model)(acts)


def test_swin_and_convnext_channels_last_and_their_permutes(tmp_path):
    swin = {i.name: str(i.layout) for i in describe_layers(ecosystem_model("swin", tmp_path))}
    assert swin["features.0.0"] == "conv" and swin["features.0"] == "channels_last"
    assert swin["features.2"] == "channels_last" and swin["permute"] == "conv" and swin["flatten"] == "units"
    convnext = {i.name: str(i.layout) for i in describe_layers(ecosystem_model("convnext", tmp_path))}
    assert convnext["features.1.0.block.1"] == "channels_last" and convnext["features.1.0.block.6"] == "conv"
    assert convnext["features.1.0"] == "conv" and convnext["features.2.0"] == "conv"  # CNBlock, LayerNorm2d


def test_token_readings_on_a_known_tensor():
    act = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)  # (B, 1 CLS + 2x2 patches, D=3)
    tokens = Layout("tokens", 1)
    assert torch.equal(tokens.read(act), act[:, 0])  # default: CLS
    assert torch.equal(tokens.read(act, token="cls"), act[:, 0]) and torch.equal(tokens.read(act, token=3), act[:, 3])
    assert torch.equal(tokens.read(act, token="mean"), act[:, 1:].mean(1))
    assert torch.equal(tokens.read(act, position=(1, 0)), act[:, 1 + 2])  # patch row 1, column 0
    assert torch.equal(tokens.as_map(act)[:, :, 0, 1], act[:, 2])
    assert torch.equal(Layout("tokens").read(act[:, 1:]), act[:, 1:].mean(1))  # no CLS: the patch mean
    with pytest.raises(DgnamError, match="no CLS token"):
        Layout("tokens").read(act[:, 1:], token="cls")
    with pytest.raises(DgnamError, match="token 5 is out of range"):
        tokens.read(act, token=5)
    with pytest.raises(DgnamError, match="no square grid"):
        Layout("tokens").read(act, position=(0, 0))  # 5 tokens, no prefix: not a grid
    cl = torch.arange(2 * 3 * 3 * 4, dtype=torch.float32).view(2, 3, 3, 4)
    assert torch.equal(Layout("channels_last").read(cl), cl[:, 1, 1])
    assert torch.equal(Layout("channels_last").read(cl, mean=True), cl.mean((1, 2)))


def test_declared_layout_overrides_detection():
    model = Model(TinyNet(), input_size=32, layouts={"conv": "channels_last"})
    assert str(model.layout("conv")) == "channels_last" and str(model.layout("relu")) == "conv"
    assert parse_layout("tokens:2") == Layout("tokens", 2)
    for bad in ("nchw", "conv:1", "tokens:-1", "other"):
        with pytest.raises(DgnamError, match="layout"):
            parse_layout(bad)


def _hooked(net: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    """``layer``'s output on the already-normalised ``x``, by a plain forward hook."""
    got = []
    handle = net.get_submodule(layer).register_forward_hook(lambda module, inputs, out: got.append(out.detach()))
    with torch.no_grad():
        net(x)
    handle.remove()
    return got[0]


def test_register_tokens_without_a_class_token_are_not_read_as_cls():
    """timm's *_reg4_gap ViTs: four register tokens, no CLS (num_prefix_tokens counts registers too). The
    default reading is the patch mean, not register 0, and a CLS reading is refused."""
    import timm

    torch.manual_seed(0)
    net = timm.create_model("vit_medium_patch16_reg4_gap_256", pretrained=False, img_size=32, patch_size=8,
                            embed_dim=32, depth=2, num_heads=2, num_classes=10).eval()
    model = Model(net, input_size=32)
    layer = "blocks.1.mlp.fc1"
    assert str(model.layout(layer)) == "tokens:4:no-cls" and not model.layout(layer).has_cls
    x = torch.rand(2, 3, 32, 32)
    hooked = _hooked(net, layer, x)
    read = unit(layer, 3, model=model)({(model, layer): model.run(x, [layer])[layer]})
    torch.testing.assert_close(read, hooked[:, 4:, 3].mean(1))  # 16 patches; register 0 would be hooked[:, 0, 3]
    with pytest.raises(DgnamError, match="has no CLS token"):
        unit(layer, 3, model=model, token="cls")({(model, layer): hooked})
    with_cls = Model(timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, img_size=32, patch_size=8,
                                       embed_dim=32, depth=1, num_heads=2, num_classes=10), input_size=32)
    assert str(with_cls.layout("blocks.0")) == "tokens:5"  # CLS, then 4 registers


def test_a_patch_embedding_is_patches_alone_even_when_its_count_also_fits_the_prefix():
    """CLS + 4 registers on a 3x3 grid: the patch embedding's 9 tokens also read as 5 prefix tokens and a 2x2
    grid; made from the image, they are the 9 patches, and position (0, 0) is patch (0, 0)."""
    import timm

    torch.manual_seed(0)
    net = timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, img_size=24, patch_size=8,
                            embed_dim=32, depth=1, num_heads=2, num_classes=10).eval()
    model = Model(net, input_size=24)
    layouts = {info.name: str(info.layout) for info in describe_layers(model)}
    assert layouts["patch_embed"] == "tokens" and layouts["blocks.0"] == "tokens:5"
    x = torch.rand(1, 3, 24, 24)
    patches = _hooked(net, "patch_embed", x)
    read = unit("patch_embed", 0, model=model, position=(0, 0))({(model, "patch_embed"): patches})
    torch.testing.assert_close(read, patches[:, 0, 0])  # tokens:5 would read token 5, patch (1, 2)


def test_layouts_with_registers_alone_parse_and_print():
    assert parse_layout("tokens:4:no-cls") == Layout("tokens", 4, cls=False)
    assert str(Layout("tokens", 4, cls=False)) == "tokens:4:no-cls" and str(Layout("tokens", 1)) == "tokens:1"
    assert Layout("tokens", 0, cls=False) == Layout("tokens")  # no prefix: nothing to say about a CLS
    act = torch.arange(2 * 6 * 3, dtype=torch.float32).view(2, 6, 3)  # 2 registers, then 2x2 patches
    assert torch.equal(parse_layout("tokens:2:no-cls").read(act), act[:, 2:].mean(1))
    for bad in ("tokens:0:no-cls", "tokens:2:cls", "conv:no-cls", "tokens::no-cls"):
        with pytest.raises(DgnamError, match="layout"):
            parse_layout(bad)
