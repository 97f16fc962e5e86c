import torch

from dgnam.nets.model import Model
from dgnam.prior.stats import code_statistics

from helpers import TinyNet


def test_code_statistics_match_direct_computation():
    model = Model(TinyNet(), input_size=32)
    images = torch.rand(40, 3, 32, 32)
    batches = [images[i:i + 16] for i in range(0, 40, 16)]
    mean, std, summary = code_statistics(model, "relu1", batches)
    with torch.no_grad():
        codes = model.run(images, ["relu1"])["relu1"]
    torch.testing.assert_close(mean, codes.mean(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(std, codes.std(0), atol=1e-5, rtol=1e-4)
    assert summary["n_images"] == 40
    assert abs(summary["zero_fraction"] - float((codes == 0).float().mean())) < 1e-6


def test_spatial_code_has_one_statistic_per_unit():
    model = Model(TinyNet(), input_size=32)
    mean, std, _ = code_statistics(model, "relu", [torch.rand(8, 3, 32, 32)])
    assert mean.shape == (8 * 16 * 16,)  # every (channel, y, x) is a code unit, as the generator sees it


def test_code_statistics_leave_a_training_encoder_as_it_was():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU()).train()
    stats = {k: v.clone() for k, v in net[1].state_dict().items()}
    mean, _, _ = code_statistics(Model(net), "2", [torch.rand(8, 3, 8, 8), torch.rand(8, 3, 8, 8)])
    assert net.training and all(torch.equal(v, stats[k]) for k, v in net[1].state_dict().items())
    assert mean.shape == (4 * 6 * 6,)
