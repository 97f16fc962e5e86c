"""GPU speed settings for synthesis: channels_last memory layout and opt-in ``torch.compile``.

bf16 autocast itself lives in :func:`dgnam.engine.render.synthesize` (``amp=True``, CUDA only). Everything
here applies on CUDA only: on the CPU the models stay as they are, so CPU runs remain bit-exact and
independent of how units are batched or sharded.
"""

from __future__ import annotations

import torch
from torch import nn

from dgnam.errors import DgnamError


def speed_up(device: torch.device, *, models: list[nn.Module], generator: nn.Module | None,
             channels_last: bool = True, compile_generator: bool = False) -> dict[str, bool]:
    """Prepare ``models`` and ``generator`` for fast CUDA synthesis, in place; returns what was applied.

    - ``channels_last``: 4-D weights in NHWC layout, which cuDNN's tensor-core convolution kernels
      prefer (activations follow the weights' layout).
    - ``compile_generator``: ``torch.compile`` the generator, whose 256x256 transposed convolutions
      dominate a DGN-AM step. The classifiers are left eager: activations are captured with
      forward hooks that stop the forward early, which compiled graphs do not allow.

    Example: ``speed_up(torch.device("cuda"), models=[net], generator=G, compile_generator=True)``
    """
    if device.type != "cuda":
        if compile_generator:
            raise DgnamError("--compile applies on CUDA only; CPU runs stay eager so their results are bit-exact")
        return {"channels_last": False, "compile": False}
    if channels_last:
        for module in [*models, *([generator] if generator is not None else [])]:
            module.to(memory_format=torch.channels_last)
    if compile_generator and generator is not None:
        generator.compile()  # in place: the module keeps its attributes (code_dim, bounds, to_rgb)
    return {"channels_last": channels_last, "compile": compile_generator and generator is not None}
