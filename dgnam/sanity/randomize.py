"""Cascading parameter randomisation (Adebayo et al. 2018, "Sanity Checks for Saliency Maps"): the
model's parameterised layers re-initialised from the top down, one more block at each stage.

A block is a layer with parameters of its own (conv, linear, ...) together with the normalisation
layers that follow it (BatchNorm scales what the conv computes; randomising one without the other
would leave a half-trained block). Only the layers that run before the probed layer is computed
matter to its units, so the cascade starts at the probed layer and walks towards the input.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from dgnam.errors import DgnamError
from dgnam.nets.model import OUTPUT, Model, execution_order, parse_layer

# Layers that rescale the block before them rather than compute features of their own.
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


@dataclass(frozen=True)
class Stage:
    """One cascade stage: ``layers`` (module names) are re-initialised, together with every earlier
    stage's; ``name`` says which blocks this stage adds, for reports."""

    name: str
    layers: tuple[str, ...]


def parameterised_blocks(model: Model, layer: str = OUTPUT) -> list[list[str]]:
    """The blocks (lists of module names) that compute ``layer``, in forward order: each module with
    parameters of its own, with the normalisation layers that follow it in its block."""
    module = model.module
    order = execution_order(model)
    if layer != OUTPUT:
        name, _call = parse_layer(layer)
        if name not in order:
            raise DgnamError(f"layer {name!r} does not run in {model.name}'s forward pass; pick one from `dgnam "
                             "layers`")
        # A container's hook returns after its children: everything before it in the order feeds it.
        order = order[: order.index(name) + 1]
    blocks: list[list[str]] = []
    for name in order:
        sub = module.get_submodule(name)
        if not any(True for _ in sub.parameters(recurse=False)):
            continue
        if isinstance(sub, _NORMS) and blocks:
            blocks[-1].append(name)
        else:
            blocks.append([name])
    if not blocks:
        raise DgnamError(f"{model.name} has no parameters below {layer!r}, so there is nothing to randomise; "
                         f"pass a trained model (or a later --layer)")
    return blocks


def cascade_stages(model: Model, layer: str = OUTPUT, stages: int = 4) -> list[Stage]:
    """``stages`` cumulative stages from the top block down to the input (0: one stage per block).

    With fewer stages than blocks, stage i randomises the top ``round(i * n / stages)`` blocks, so the
    last stage always leaves no trained parameter below ``layer``.
    """
    if stages < 0:
        raise DgnamError(f"--stages must be >= 0 (0: one stage per block), got {stages}")
    top_down = parameterised_blocks(model, layer)[::-1]
    n = len(top_down)
    count = n if stages == 0 else min(stages, n)
    result, done = [], 0
    for i in range(1, count + 1):
        upto = round(i * n / count)
        new = top_down[done:upto]
        first, last = new[0][0], new[-1][0]
        name = first if len(new) == 1 else f"{first} .. {last} ({len(new)} blocks)"
        result.append(Stage(f"+{name}", tuple(m for block in top_down[:upto] for m in block)))
        done = upto
    return result


def _reinitialise(module: nn.Module) -> None:
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()  # the layer's own initialiser (and fresh BatchNorm statistics)
        return
    for p in module.parameters(recurse=False):  # a custom layer: random values of the trained scale
        with torch.no_grad():
            p.normal_(float(p.mean()), float(p.std()) if p.numel() > 1 else 1.0)


def randomized(model: Model, layers: tuple[str, ...], seed: int = 0) -> Model:
    """A copy of ``model`` whose ``layers`` are re-initialised (seeded); ``model`` itself is untouched."""
    copied = copy.deepcopy(model)
    devices = [p.device for p in copied.parameters()]
    with torch.random.fork_rng(devices=[d for d in devices if d.type == "cuda"][:1]):
        torch.manual_seed(seed)
        for name in layers:
            _reinitialise(copied.module.get_submodule(name))
    return copied
