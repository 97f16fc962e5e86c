"""dgnam.engine.param: the parametrisations (generator code, pixels, Fourier), their starts, boxes and
default step sizes."""

import pytest
import torch

import dgnam
from dgnam import DgnamError, Fourier, GeneratorCode, Pixels, class_logit, synthesize
from dgnam.engine.param import make_param
from dgnam.prior.sampler import CodeSampler

from helpers import tiny_generator


def test_pixel_and_fourier_through_same_call(tiny_model):
    for param in (Pixels(32), Fourier(32)):
        res = synthesize(class_logit([1, 2]), param, model=tiny_model, seeds=[0, 1], steps=25,
                         transforms=dgnam.engine.preferred.baseline_transforms())
        assert res.images.shape == (2, 3, 32, 32)
        assert (res.values > res.history[0]).all(), type(param).__name__


def test_default_step_is_scaled_to_the_code():
    gen = tiny_generator()
    gen.set_code_statistics(torch.full((16,), 3.0), torch.full((16,), 3.0), k=3.0)  # bounds 12: fc6's scale
    opt = GeneratorCode(gen).default_optimizer()
    assert opt.lr_start == pytest.approx(8.0) and opt.l2_decay == 0.99
    gen.set_code_statistics(torch.full((16,), 0.3), torch.full((16,), 0.3), k=3.0)  # bounds 1.2
    assert GeneratorCode(gen).default_optimizer().lr_start == pytest.approx(0.8)


def test_pixels_start_from_given_images():
    start = torch.rand(2, 3, 8, 8)
    params = Pixels(8, init_images=start).init([0, 1], torch.tensor([1]), torch.device("cpu"))
    torch.testing.assert_close(params, start[[1]])
    with pytest.raises(DgnamError, match="init images"):
        Pixels(8, init_images=torch.rand(2, 3, 4, 4))


def test_bound_k_needs_code_statistics():
    from dgnam.engine.param import GeneratorCode
    from dgnam.prior.generator import UpconvGenerator, cifar_arch

    bare = UpconvGenerator(cifar_arch(code_dim=16, fc_dims=(32,), start_channels=8, widths=(8, 8, 8)))
    with pytest.raises(DgnamError, match="needs code statistics"):
        GeneratorCode(bare, bound_k=2.0)
    gen = tiny_generator()
    assert torch.allclose(GeneratorCode(gen, bound_k=1.0).upper_bound, gen.code_mean + gen.code_std)


def test_generator_code_starts_from_the_sampler_per_seed(tiny_gen):
    from dgnam.engine.param import GeneratorCode, make_param

    torch.manual_seed(0)
    sampler = CodeSampler([16], latent_dim=4, width=8)
    param = GeneratorCode(tiny_gen, sampler=sampler)
    start = param.init([5, 6, 5], torch.arange(3), torch.device("cpu"))
    torch.testing.assert_close(start[0], sampler.sample(1, seed=5)[0])  # row's code = the sampler's for its seed
    assert torch.equal(start[0], start[2]) and not torch.equal(start[0], start[1])
    assert param.describe()["init"] == "sampler"
    # The manifest names the encoder whose code G inverts under a key that says so.
    tiny_gen.encoder = "enc.pt"
    assert param.describe()["generator_encoder"] == "enc.pt" and "generator" not in param.describe()
    with pytest.raises(DgnamError, match="not both"):
        GeneratorCode(tiny_gen, init_codes=torch.zeros(16), sampler=sampler)
    with pytest.raises(DgnamError, match="train a sampler"):
        GeneratorCode(tiny_gen, sampler=CodeSampler([8], latent_dim=4, width=8))
    with pytest.raises(DgnamError, match="--init-sampler"):
        make_param("pixel", tiny_gen, 32, sampler)


def test_generator_code_box_clips_to_zero_and_the_scaled_bound():
    gen = tiny_generator()
    bound = gen.code_upper_bound
    params = torch.stack([torch.full((16,), -1.0), 0.5 * bound, 2 * bound])
    GeneratorCode(gen).project(params)
    torch.testing.assert_close(params, torch.stack([torch.zeros(16), 0.5 * bound, bound]))
    halved = torch.stack([2 * bound])
    GeneratorCode(gen, bound_scale=0.5).project(halved)
    torch.testing.assert_close(halved[0], 0.5 * bound)
    unbounded_below = torch.full((1, 16), -1.0)
    GeneratorCode(gen, lower_bound=None).project(unbounded_below)
    assert (unbounded_below == -1.0).all()


def test_fourier_and_pixel_starts_and_the_registry():
    fourier = make_param("fourier", image_size=16)
    assert isinstance(fourier, Fourier) and fourier.image_size == 16
    # Zero parameters are a flat grey image (sigmoid(0)); the seeded start is near it.
    grey = fourier.images(torch.zeros(2, *fourier.init([0], torch.arange(1), torch.device("cpu")).shape[1:]))
    torch.testing.assert_close(grey, torch.full((2, 3, 16, 16), 0.5))
    start = fourier.images(fourier.init([0, 1], torch.arange(2), torch.device("cpu")))
    assert (start - 0.5).abs().max() < 0.05 and not torch.equal(start[0], start[1])
    pixels = make_param("pixel", tiny_generator())  # the generator's size when none is given
    assert isinstance(pixels, Pixels) and pixels.image_size == 32
    first = pixels.init([7], torch.arange(1), torch.device("cpu"))
    torch.testing.assert_close(first, pixels.init([7, 8], torch.arange(2), torch.device("cpu"))[:1])  # per seed
    with pytest.raises(DgnamError, match="unknown param 'pixels'; choose dgn, pixel, fourier"):
        make_param("pixels", image_size=16)
    with pytest.raises(DgnamError, match="needs an image size"):
        make_param("fourier")


# --- image-seeded starts (SeededCode) -------------------------------------------------------------------
def _seeds(n=3):
    from helpers import _image
    return torch.stack([_image(seed) for seed in range(n)])


def test_a_seeded_run_starts_at_the_seeds_code_and_shows_the_seed_itself(gen32, encoder):
    from dgnam import SeededCode

    from helpers import CODE_LAYER
    seeds = _seeds()
    param = SeededCode(gen32, seeds, encoder)
    codes = param.init([0, 1, 2], torch.arange(3), torch.device("cpu"))
    with torch.no_grad():
        expected = encoder.run(seeds, [CODE_LAYER])[CODE_LAYER]
    torch.testing.assert_close(codes, expected)  # h0 = E(seed), row by row
    torch.testing.assert_close(param.images(codes), seeds, atol=1e-5, rtol=0)  # the image is the seed, not G(h0)
    assert (gen32.to_rgb(gen32(codes)).clamp(0, 1) - seeds).abs().max() > 0.05  # which would differ


def test_a_seeded_run_changes_the_image_through_the_prior_and_raises_the_unit(gen32, encoder, tiny_model):
    from dgnam import SeededCode
    seeds = _seeds()
    res = synthesize(class_logit([1, 2, 3]), SeededCode(gen32, seeds, encoder), model=tiny_model, seeds=[0, 1, 2],
                     steps=30)
    with torch.no_grad():
        start = tiny_model.module(seeds).gather(1, torch.tensor([[1], [2], [3]]))[:, 0]
    torch.testing.assert_close(res.history[0], start, atol=1e-4, rtol=0)  # step 0 reads the seed itself
    assert (res.values > start).all()  # raised through the prior
    assert 0 < (res.images - seeds).abs().mean() < 0.25  # changed, and still near its seed


def test_seeded_code_refuses_what_it_cannot_read_in_one_line(gen32, encoder, tiny_gen):
    from dgnam import SeededCode
    with pytest.raises(DgnamError, match=r"expected \(N, 3, 32, 32\)"):
        SeededCode(gen32, torch.rand(2, 3, 16, 16), encoder)
    with pytest.raises(DgnamError, match="NaN"):
        SeededCode(gen32, torch.full((1, 3, 32, 32), float("nan")), encoder)
    with pytest.raises(DgnamError, match="encoder_layer"):
        SeededCode(tiny_gen, _seeds(1), encoder)  # a generator that does not say which code it inverts


def test_a_parametrisation_names_its_modules_and_its_code(gen32, encoder):
    """What the loop asks of a parametrisation: the modules to keep in eval mode, and the code an objective
    on the code reads (none for pixels and Fourier)."""
    codes = torch.rand(2, 32)
    for param in (GeneratorCode(gen32), dgnam.SeededCode(gen32, torch.rand(3, 32, 32), encoder)):
        assert param.modules() == [gen32] and param.code(codes) is codes and param.has_prior
    for param in (Pixels(32), Fourier(32)):
        assert param.modules() == [] and param.code(torch.rand(2, 3, 32, 32)) is None and not param.has_prior


def test_the_box_is_the_generators_bound_for_bound_k():
    gen = tiny_generator()
    gen.set_code_statistics(torch.full((16,), 2.0), torch.full((16,), 0.5), k=3.0)
    torch.testing.assert_close(GeneratorCode(gen).upper_bound, torch.full((16,), 3.5))
    torch.testing.assert_close(GeneratorCode(gen, bound_k=1.0, bound_scale=2.0).upper_bound, torch.full((16,), 5.0))
    torch.testing.assert_close(gen.code_bound(1.0), torch.full((16,), 2.5))
    assert gen.code_bound() is gen.code_upper_bound
