"""dgnam.nets.cifar: the CIFAR architectures' layer names and shapes, which generators and configs rely on."""

import pytest
import torch

from dgnam.nets.cifar import CifarResNet, CifarVGG
from dgnam.nets.model import Model


def test_vgg_names_and_shapes_of_its_codes():
    x = torch.rand(2, 3, 32, 32)
    pooled = Model(CifarVGG(widths=(4, 4, 4, 4), code_dim=16).eval())
    acts = pooled.run(x, ["features.relu4_2", "relu6", "output"])
    # Three 2x2 poolings: 32 -> 4; the conv code a conv4 generator inverts is 4 x 4 x 4 = 64 values.
    assert acts["features.relu4_2"].shape == (2, 4, 4, 4)
    assert acts["relu6"].shape == (2, 16) and (acts["relu6"] >= 0).all()  # the fc6 code: post-ReLU
    assert acts["output"].shape == (2, 10) and pooled.module.fc6.in_features == 4  # global average pool
    flat = CifarVGG(widths=(4, 8, 8), code_dim=32, fc7_dim=12, head="flatten").eval()
    assert flat.fc6.in_features == 8 * 8 * 8  # two poolings: 32 -> 8, the map flattened, layout kept
    assert flat.fc7.out_features == 12 and flat.fc8.in_features == 12
    assert flat(x).shape == (2, 10)
    with pytest.raises(ValueError, match="head must be 'pool' or 'flatten'"):
        CifarVGG(head="conv")


def test_resnet_stages_halve_the_map_and_add_the_shortcut():
    net = CifarResNet(widths=(4, 8, 16), depth=2, n_classes=7).eval()
    acts = Model(net).run(torch.rand(2, 3, 32, 32), ["layer1", "layer2", "layer3", "layer2.0.shortcut", "output"])
    assert acts["layer1"].shape == (2, 4, 32, 32) and acts["layer2"].shape == (2, 8, 16, 16)
    assert acts["layer3"].shape == (2, 16, 8, 8) and acts["output"].shape == (2, 7)
    assert acts["layer2.0.shortcut"].shape == (2, 8, 16, 16)  # a 1x1 stride-2 projection where the width changes
    assert len(net.layer1[0].shortcut) == 0  # identity within a stage
