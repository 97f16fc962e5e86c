"""A model as a third party hands it to dgnam: a ``.py`` file whose factory returns a plain
``nn.Module`` that takes normalised images (the normalisation is given on the command line).

    dgnam sanity --model docs/sanity/resnet14_factory.py:make --input-size 32 \
        --mean 0.4914,0.4822,0.4465 --std 0.2470,0.2435,0.2616
"""

from pathlib import Path

import torch

from dgnam.nets.cifar import CifarResNet

WEIGHTS = Path(__file__).resolve().parents[2] / "checkpoints" / "cifar10" / "targets" / "resnet14.pt"


def make() -> torch.nn.Module:
    """The ResNet-14 evaluation target (CIFAR-10, 78.6%), rebuilt from its state dict."""
    checkpoint = torch.load(WEIGHTS, weights_only=True, map_location="cpu")
    net = CifarResNet(**{k: tuple(v) if isinstance(v, list) else v for k, v in checkpoint["arch_kwargs"].items()})
    net.load_state_dict(checkpoint["state_dict"])
    return net
