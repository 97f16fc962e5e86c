"""Pretrained torchvision models as dgnam :class:`~dgnam.models.Model`s, with their own preprocessing.

Weights are downloaded by torchvision into ``$TORCH_HOME/hub/checkpoints``; offline, a clear error
says which file to place there.
"""

from __future__ import annotations

import torch

from dgnam.errors import DgnamError
from dgnam.models import Model


def load_torchvision(name: str, weights: str | None = "DEFAULT", input_size: int | None = None,
                     device: str | torch.device = "cpu") -> Model:
    """``torchvision.models.<name>`` with ``weights`` (an enum member name, ``DEFAULT``, or None for random).

    Mean/std and the input (crop) size come from the weights' metadata.
    Example: ``load_torchvision("resnet50")``.
    """
    import torchvision

    try:
        builder = torchvision.models.get_model_builder(name)
    except ValueError:
        names = ", ".join(sorted(torchvision.models.list_models(torchvision.models))[:8])
        raise DgnamError(f"torchvision has no model {name!r}; try one of {names}, ...") from None
    if weights is None:
        mean, std, size = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), input_size or 224
        net = builder(weights=None)
    else:
        enum = torchvision.models.get_model_weights(name)
        try:
            chosen = enum.DEFAULT if weights == "DEFAULT" else enum[weights]
        except KeyError:
            raise DgnamError(f"{name} has no weights {weights!r}; choose one of {', '.join(w.name for w in enum)}") from None
        preprocess = chosen.transforms()
        mean, std = tuple(preprocess.mean), tuple(preprocess.std)
        size = input_size or int(preprocess.crop_size[0])
        try:
            net = builder(weights=chosen)
        except (OSError, RuntimeError) as exc:  # URLError is an OSError
            file = chosen.url.rsplit("/", 1)[-1]
            raise DgnamError(f"cannot download {name} weights ({type(exc).__name__}, offline?); place {file} in "
                             f"{torch.hub.get_dir()}/checkpoints/ or use weights=None") from None
    return Model(net, input_size=size, mean=mean, std=std, name=name).to(device)
