"""The networks dgnam looks into, and how it sees them.

- :mod:`~dgnam.nets.model`: :class:`~dgnam.nets.model.Model`, any ``nn.Module`` as dgnam sees it
  (preprocessing, layer names, activation capture).
- :mod:`~dgnam.nets.layout`: how each layer holds its units (units, conv, channels-last, tokens),
  declared or detected.
- :mod:`~dgnam.nets.cifar`: the architectures dgnam ships weights for (plain ``nn.Module`` classes, no
  training logic), registered by name in ``ARCHITECTURES``.
- :mod:`~dgnam.nets.classifiers`: dgnam's classifier checkpoints.
- :mod:`~dgnam.nets.zoo`: any model from a command-line spec (torchvision, timm, Hugging Face, a factory,
  a file), with the model's own preprocessing.
"""

from dgnam.nets.cifar import CifarResNet, CifarVGG

ARCHITECTURES = {"cifar_vgg": CifarVGG, "cifar_resnet": CifarResNet}

__all__ = ["ARCHITECTURES", "CifarResNet", "CifarVGG"]
