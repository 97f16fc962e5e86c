"""dgnam.prior.sampler: the code sampler (seeded post-ReLU codes, classes, save and load, one-line errors)."""

import numpy as np
import pytest
import torch

from dgnam import DgnamError
from dgnam.prior.generator import UpconvGenerator, cifar_arch
from dgnam.prior.sampler import CodeSampler, load_code_sampler


@pytest.mark.parametrize("shape", [[8, 2, 2], [12]])
def test_sampler_codes_are_post_relu_seeded_and_survive_save_load(tmp_path, shape):
    torch.manual_seed(0)
    sampler = CodeSampler(shape, latent_dim=6, width=16, encoder_layer="layer", encoder="enc.pt")
    codes = sampler.sample(50, seed=3)
    assert codes.shape == (50, sampler.code_dim) and sampler.code_dim == int(np.prod(shape))
    assert (codes >= 0).all() and (codes == 0).any() and (codes > 0).any()  # a ReLU output: exact zeros
    torch.testing.assert_close(sampler.sample(50, seed=3), codes)
    assert not torch.equal(sampler.sample(50, seed=4), codes)
    torch.testing.assert_close(sampler.sample(50, seed=3, batch=7), codes)  # batching keeps a seed's codes
    sampler.save(tmp_path / "s.pt", {"iterations": 5})
    loaded = load_code_sampler(tmp_path / "s.pt")
    assert torch.equal(loaded.sample(50, seed=3), codes)
    assert loaded.metadata["iterations"] == 5 and loaded.encoder_layer == "layer"


def test_sampler_bad_files_and_mismatched_generator_are_one_line(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DgnamError, match="corrupt"):
        load_code_sampler(tmp_path / "junk.pt")
    sampler = CodeSampler([4, 2, 2], latent_dim=4, width=8, encoder_layer="features.relu4_2")
    ckpt = sampler.checkpoint()
    ckpt["state_dict"].pop("stem.weight")
    torch.save(ckpt, tmp_path / "damaged.pt")
    with pytest.raises(DgnamError, match="damaged code sampler"):
        load_code_sampler(tmp_path / "damaged.pt")
    with pytest.raises(DgnamError, match="code_shape"):
        CodeSampler([4, 2], latent_dim=4)
    gen = UpconvGenerator(cifar_arch(code_dim=32, fc_dims=(8,), start_channels=4, widths=(4, 4, 4)),
                          encoder_layer="features.relu4_2")
    with pytest.raises(DgnamError, match="train a sampler for this generator"):
        sampler.check_generator(gen)
    with pytest.raises(DgnamError, match=r"z of shape \(B, 4\)"):
        sampler(torch.zeros(2, 5))


def test_class_conditional_sampler_takes_labels_and_keeps_its_class_names(tmp_path):
    sampler = CodeSampler([4, 2, 2], latent_dim=4, width=8, num_classes=3, classes=["cat", "dog", "ship"])
    labels = torch.tensor([0, 2, 1, 2])
    codes = sampler.sample(4, seed=1, labels=labels)
    torch.testing.assert_close(sampler.sample(4, seed=1, labels=labels), codes)
    assert not torch.equal(sampler.sample(4, seed=1, labels=torch.tensor([1, 1, 1, 1])), codes)  # the class matters
    assert sampler.sample(5, seed=1).shape == (5, 16)  # without labels: classes drawn from the seed
    sampler.save(tmp_path / "c.pt")
    loaded = load_code_sampler(tmp_path / "c.pt")
    assert loaded.classes == ["cat", "dog", "ship"] and loaded.class_index("ship") == 2 == loaded.class_index("2")
    torch.testing.assert_close(loaded.sample(4, seed=1, labels=labels), codes)
    with pytest.raises(DgnamError, match="pass labels"):
        sampler(torch.zeros(2, 4))
    with pytest.raises(DgnamError, match=r"must be in \[0, 2\]"):
        sampler.sample(2, labels=torch.tensor([0, 3]))
    with pytest.raises(DgnamError, match="expected 2 labels"):
        sampler.sample(2, labels=torch.tensor([0]))
    with pytest.raises(DgnamError, match="unknown class 'horse'; this sampler knows cat, dog, ship"):
        sampler.class_index("horse")
    with pytest.raises(DgnamError, match="trained without classes"):
        CodeSampler([4], latent_dim=4, width=8).sample(2, labels=torch.tensor([0, 1]))
    with pytest.raises(DgnamError, match="one name per class"):
        CodeSampler([4], latent_dim=4, num_classes=2, classes=["a"])
