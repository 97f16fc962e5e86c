"""dgnam.scale.accel: the CUDA speed settings, which change nothing on the CPU."""

import pytest
import torch

from dgnam import DgnamError
from dgnam.scale.accel import speed_up

CPU = torch.device("cpu")


def test_cpu_speed_settings_change_nothing():
    net = torch.nn.Conv2d(3, 4, 3)
    before = net.weight.clone()
    assert speed_up(CPU, models=[net], generator=None) == {"channels_last": False, "compile": False}
    assert net.weight.is_contiguous() and torch.equal(net.weight, before)
    with pytest.raises(DgnamError, match="--compile applies on CUDA only"):
        speed_up(CPU, models=[net], generator=None, compile_generator=True)
