"""dgnam.engine.render: synthesize's loop (rows independent of their batch and chunk, the code box, one-line
errors) and its Result."""

import pytest
import torch

import dgnam
from dgnam import DgnamError, GeneratorCode, Pixels, class_logit, synthesize, unit
from dgnam.nets.model import Model

from helpers import TinyNet, tiny_generator


def test_batched_equals_alone(tiny_model, tiny_gen):
    # BLAS kernels round differently for batch 1 and batch 4 (~1e-6 here); the box clip can turn such
    # a difference into a larger one when a unit sits exactly at its bound, so keep the run short.
    units = [0, 3, 7, 9]
    batched = synthesize(class_logit(units), GeneratorCode(tiny_gen), model=tiny_model, seeds=[5, 6, 7, 8], steps=10)
    for i, (u, s) in enumerate(zip(units, [5, 6, 7, 8])):
        alone = synthesize(class_logit(u), GeneratorCode(tiny_gen), model=tiny_model, seeds=[s], steps=10)
        torch.testing.assert_close(alone.params[0], batched.params[i], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(alone.images[0], batched.images[i], atol=1e-5, rtol=1e-5)


def test_chunking_does_not_change_results(tiny_model, tiny_gen):
    kwargs = dict(model=tiny_model, seeds=list(range(6)), steps=10)
    a = synthesize(class_logit(range(6)), GeneratorCode(tiny_gen), batch_size=6, **kwargs)
    b = synthesize(class_logit(range(6)), GeneratorCode(tiny_gen), batch_size=4, **kwargs)
    torch.testing.assert_close(a.params, b.params, atol=1e-5, rtol=1e-5)


def test_codes_stay_in_box_after_every_step(tiny_model, tiny_gen):
    bound = tiny_gen.code_upper_bound.clone()
    seen = []

    def check(step, rows, params):
        seen.append(step)
        assert params.min() >= 0
        assert (params <= bound + 1e-6).all()
        # The L2 decay runs after the clip, so no unit can sit above 0.99 * its bound.
        assert (params <= 0.99 * bound + 1e-6).all()

    res = synthesize(class_logit(range(3)), GeneratorCode(tiny_gen), model=tiny_model, seeds=[0, 1, 2],
                     steps=20, callback=check)
    assert seen == list(range(20))
    # Large normalised steps drive many units to their bound: the clip is doing work.
    at_bound = (res.params >= 0.99 * bound - 1e-4).float().mean()
    assert at_bound > 0.2


def test_dgnam_ascent_increases_objective(tiny_model, tiny_gen):
    res = synthesize(class_logit(range(10)), GeneratorCode(tiny_gen), model=tiny_model, seeds=range(10), steps=40)
    start, end = res.history[0], res.values
    assert (end > start).float().mean() >= 0.8
    assert res.images.shape == (10, 3, 32, 32)
    assert 0 <= res.images.min() and res.images.max() <= 1


def test_errors_are_one_line(tiny_model, tiny_gen):
    with pytest.raises(DgnamError, match=r"unit 12 is out of range .* has 10 units"):
        synthesize(class_logit(12), GeneratorCode(tiny_gen), model=tiny_model, seeds=[0], steps=1)
    with pytest.raises(DgnamError, match="did you mean 'fc1'"):
        synthesize(unit("fc_1", 0), GeneratorCode(tiny_gen), model=tiny_model, seeds=[0], steps=1)
    with pytest.raises(DgnamError, match="channel 9 is out of range .* has 8 channels"):
        synthesize(unit("conv", 9), GeneratorCode(tiny_gen), model=tiny_model, seeds=[0], steps=1)
    with pytest.raises(DgnamError, match="outside layer 'conv'"):
        synthesize(unit("conv", 1, position=(20, 0)), GeneratorCode(tiny_gen), model=tiny_model, seeds=[0], steps=1)
    with pytest.raises(DgnamError, match="3 per-row units but 2 seeds"):
        synthesize(class_logit([0, 1, 2]), GeneratorCode(tiny_gen), model=tiny_model, seeds=[0, 1], steps=1)
    wrong = tiny_generator(code_dim=12)
    with pytest.raises(DgnamError, match="init codes have 16 units but the generator takes 12"):
        synthesize(class_logit(0), GeneratorCode(wrong, init_codes=torch.zeros(16)), model=tiny_model, seeds=[0],
                   steps=1)
    with pytest.raises(DgnamError, match=r"expects RGB images \(B, 3, H, W\)"):
        synthesize(class_logit(0), Pixels(32), model=Model(TinyNet(), input_size=32), seeds=[0], steps=1,
                   transforms=[lambda x, rng: x[:, :1]])
    with pytest.raises(DgnamError, match="unit 99 is out of range") as info:
        synthesize(class_logit(99), Pixels(32), model=tiny_model, seeds=[0], steps=1)
    assert "\n" not in str(info.value)


def test_save_grid(tmp_path, tiny_model, tiny_gen):
    res = dgnam.visualize(tiny_model, [0, 1, 2], generator=tiny_gen, steps=2)
    path = res.save_grid(tmp_path / "grid.png")
    from PIL import Image
    with Image.open(path) as im:
        assert im.size[0] > 3 * 96
    assert not list(tmp_path.glob(".*.tmp"))


def test_fixed_batch_makes_rows_bit_identical(tiny_model, tiny_gen):
    units, seeds = [0, 3, 7, 9], [5, 6, 7, 8]
    batched = synthesize(class_logit(units), GeneratorCode(tiny_gen), model=tiny_model, seeds=seeds, steps=30,
                         batch_size=4, fixed_batch=True)
    alone = synthesize(class_logit(units[2]), GeneratorCode(tiny_gen), model=tiny_model, seeds=[seeds[2]], steps=30,
                       batch_size=4, fixed_batch=True)
    assert len(alone) == 1 and alone.history.shape == (30, 1)
    assert torch.equal(alone.params[0], batched.params[2])
    assert torch.equal(alone.images[0], batched.images[2])


@pytest.mark.parametrize("break_it, cause", [
    (lambda model: model.module.fc2.bias.data.fill_(float("nan")), r"the model's output \(TinyNet, layer 'output'\)"),
    (lambda model: model.std.fill_(0.0), "normalisation is not finite; fix --mean/--std"),
], ids=["model output", "normalisation"])
def test_a_non_finite_activation_stops_the_first_step_naming_its_cause(break_it, cause, tiny_gen):
    model = Model(TinyNet(), input_size=32, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    break_it(model)
    seen = []
    with pytest.raises(DgnamError, match=f"NaN/inf at step 0: .*{cause}") as info:
        synthesize(class_logit([0, 1]), GeneratorCode(tiny_gen), model=model, seeds=[0, 1], steps=50,
                   callback=lambda step, rows, params: seen.append(step))
    assert seen == [] and "\n" not in str(info.value) and "step size" not in str(info.value)


def test_result_displays_inline_and_shows(tiny_model, tiny_gen, monkeypatch):
    import io

    from PIL import Image

    res = dgnam.visualize(tiny_model, [0, 1, 2], generator=tiny_gen, steps=2, restarts=2)
    with Image.open(io.BytesIO(res._repr_png_())) as im:
        grid = im.size
    assert grid[0] < grid[1] * 2  # one row per unit (2 restarts wide), 3 rows
    html = res._repr_html_()
    assert html.count("data:image/png;base64,") == 1 and "6 image(s)" in html
    shown = []
    monkeypatch.setattr(Image.Image, "show", lambda self, *a, **k: shown.append(self.size))
    assert res.show().size == grid and shown == [grid]
