"""Network architectures that dgnam ships weights for (plain ``nn.Module``s, no training logic)."""

from dgnam.nets.cifar import CifarResNet, CifarVGG

ARCHITECTURES = {"cifar_vgg": CifarVGG, "cifar_resnet": CifarResNet}

__all__ = ["ARCHITECTURES", "CifarResNet", "CifarVGG"]
