import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dgnam.nets.model import Model
from dgnam.prior.generator import UpconvGenerator, cifar_arch


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)  # small nets: threading overhead dominates and makes timings noisy


class TinyNet(nn.Module):
    """A small conv classifier with named layers: conv (16x16 maps), fc1 (code), fc2 (logits)."""

    def __init__(self, n_classes: int = 10, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc1 = nn.Linear(8 * 16, 32)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(32, n_classes)

    def forward(self, x):
        x = self.pool(self.relu(self.conv(x))).flatten(1)
        return self.fc2(self.relu1(self.fc1(x)))


def tiny_generator(code_dim: int = 16, seed: int = 0) -> UpconvGenerator:
    torch.manual_seed(seed)
    gen = UpconvGenerator(cifar_arch(code_dim=code_dim, fc_dims=(32,), start_channels=8, widths=(8, 8, 8)))
    with torch.no_grad():
        # PyTorch's default init shrinks the signal layer by layer until the biases drown the code;
        # He init keeps images code-dependent, as in a trained generator.
        for layer in [*gen.fc.values(), *gen.convs.values()]:
            nn.init.kaiming_normal_(layer.weight, a=0.3, mode="fan_in" if isinstance(layer, nn.Linear) else "fan_out")
            nn.init.zeros_(layer.bias)
        gen.convs["conv0"].weight.mul_(2.0)
        gen.convs["conv0"].bias.fill_(0.5)  # outputs centred in [0, 1]
        # Realistic bounds: some units tight, some loose.
        gen.set_code_statistics(torch.linspace(0.2, 1.0, code_dim), torch.full((code_dim,), 0.3), k=3.0)
    return gen.eval()


@pytest.fixture
def tiny_model():
    return Model(TinyNet(), input_size=32)


@pytest.fixture
def tiny_gen():
    return tiny_generator()


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    """A tiny ImageFolder tree (train/test x red/blue noise JPEGs) for training entry points."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 4)):
        for cls, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                img = np.clip(np.array(colour) + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{i:04d}.jpg", quality=90)
    return root
