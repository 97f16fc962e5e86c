"""dgnam.engine.preferred: ``dgnam.visualize``, the one-call API (rows, seeds, labels, the code prior)."""

import pytest
import torch

import dgnam
from dgnam import GeneratorCode, class_logit, code_prior, synthesize

from helpers import CODE_LAYER, ECOSYSTEM_LAYERS, ecosystem_model


def test_visualize_rows_seeds_and_labels(tiny_model, tiny_gen):
    res = dgnam.visualize(tiny_model, [2, 5], generator=tiny_gen, restarts=3, seed=10, steps=3)
    assert res.extra["unit"] == [2, 2, 2, 5, 5, 5]
    assert res.extra["restart"] == [0, 1, 2, 0, 1, 2]
    assert res.seeds == [10, 11, 12, 10, 11, 12]
    single = dgnam.visualize(tiny_model, [5], generator=tiny_gen, restarts=1, seed=11, steps=3)
    torch.testing.assert_close(single.images[0], res.images[4], atol=1e-5, rtol=1e-5)


def test_visualize_records_the_unit_not_the_penalty(encoder, gen32):
    res = dgnam.visualize(encoder, [1, 4], generator=gen32, restarts=2, steps=8, code_prior=5.0, code_encoder=encoder)
    assert "code_prior" in res.settings["objective"] and res.settings["recorded"].startswith("output")
    with torch.no_grad():
        logits = encoder(res.images)
    rows = torch.arange(4)
    torch.testing.assert_close(res.values, logits[rows, torch.tensor([1, 1, 4, 4])], atol=1e-5, rtol=1e-5)
    # The penalty at weight 5 is large next to a tiny net's logits: had it been recorded, values would be far off.
    penalised = synthesize(class_logit([1, 1, 4, 4], model=encoder) + 5.0 * code_prior(CODE_LAYER, model=encoder),
                           GeneratorCode(gen32), seeds=[0, 1, 0, 1], steps=8)
    assert (penalised.values < res.values - 0.01).all()
    torch.testing.assert_close(penalised.images, res.images)


def test_visualize_returns_the_users_module_as_it_came(tiny_gen):
    """A module in training mode comes back in training mode (every submodule), without hooks, with its
    BatchNorm statistics and its parameters' requires_grad untouched."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                              torch.nn.Dropout(0.5), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(8, 10)).train()
    net[3].eval()  # a submodule the user keeps in eval mode stays so
    modes = {name: sub.training for name, sub in net.named_modules()}
    stats = {k: v.clone() for k, v in net[1].state_dict().items()}
    dgnam.visualize(net, [0, 3], layer="2", generator=tiny_gen, steps=3, restarts=2)
    assert {name: sub.training for name, sub in net.named_modules()} == modes
    assert all(not sub._forward_hooks and not sub._forward_pre_hooks for sub in net.modules())
    assert all(torch.equal(v, stats[k]) for k, v in net[1].state_dict().items())
    assert all(p.requires_grad for p in net.parameters())


@pytest.mark.parametrize("name", list(ECOSYSTEM_LAYERS))
@pytest.mark.parametrize("param", ["dgn", "pixel", "fourier"])
def test_token_and_channels_last_units_synthesise_with_every_parametrisation(name, param, tmp_path, tiny_gen):
    """Each image's recorded value is its unit read on the right axis: the last dimension of a channels-last
    map at the centre, a token layer's feature at the CLS token."""
    model = ecosystem_model(name, tmp_path)
    layer, layout, width = ECOSYSTEM_LAYERS[name]
    units = [0, width - 1]
    res = dgnam.visualize(model, units, layer=layer, generator=tiny_gen, param=param, steps=2)
    with torch.no_grad():
        act = model.run(res.images, [layer])[layer]
    read = act[:, 0, :] if layout.startswith("tokens") else act[:, act.shape[1] // 2, act.shape[2] // 2, :]
    torch.testing.assert_close(res.values, read[torch.arange(2), torch.tensor(units)], atol=1e-4, rtol=1e-4)
    assert act.shape[-1] == width and res.images.shape[-1] == 32


def test_accentuate_changes_each_image_for_each_unit_and_reports_before_and_after(gen32, encoder, tiny_model):
    from helpers import _image
    images = torch.stack([_image(4), _image(5)])
    res = dgnam.accentuate(tiny_model, images, [2, 7], generator=gen32, code_encoder=encoder, steps=20)
    assert res.extra["unit"] == [2, 2, 7, 7] and res.extra["image"] == [0, 1, 0, 1]
    with torch.no_grad():
        logits = tiny_model.module(images)
    torch.testing.assert_close(res.history[0], logits[:, [2, 7]].T.flatten(), atol=1e-4, rtol=0)  # before: the images
    assert (res.values > res.history[0]).all()  # after: every unit raised
    with pytest.raises(dgnam.DgnamError, match=r"\(N, 3, H, W\)"):
        dgnam.accentuate(tiny_model, images[0], [2], generator=gen32, code_encoder=encoder)
