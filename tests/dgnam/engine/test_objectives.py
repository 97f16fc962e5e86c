"""dgnam.engine.objectives: the objective algebra over several models, unit positions, per-row scales,
and PPGN's code prior (``dgnam.code_prior``) on a tiny encoder whose 32-unit ``relu1`` a tiny generator
inverts."""

import pytest
import torch

from dgnam import DgnamError, GeneratorCode, NormalizedAscent, Pixels, class_logit, code_prior, synthesize, unit
from dgnam.engine import objectives
from dgnam.engine.objectives import PARAMS, channel, match, scale_rows, total_variation
from dgnam.evaluation.evaluate import Method, evaluate
from dgnam.nets.model import INPUT, Model

from helpers import CODE_LAYER, TinyNet


def _readback_gap(encoder, gen, codes):
    with torch.no_grad():
        read = encoder.run(gen.generate(codes), [CODE_LAYER])[CODE_LAYER]
    return (read - codes).abs().mean(1)


def test_gradient_is_readback_minus_code(encoder, gen32):
    codes = (0.5 * torch.rand(3, 32, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    images = GeneratorCode(gen32).images(codes)
    read = encoder.run(images, [CODE_LAYER])[CODE_LAYER]
    value = code_prior(CODE_LAYER, model=encoder)({(encoder, CODE_LAYER): read, (None, PARAMS): codes})
    assert value.shape == (3,)
    torch.testing.assert_close(value, -0.5 * (codes - read).pow(2).sum(1))
    (grad,) = torch.autograd.grad(value.sum(), codes)
    # E(G(h)) is held fixed (PPGN's DAE step), so the gradient does not flow through G and the encoder.
    torch.testing.assert_close(grad, read.detach() - codes.detach())


def test_prior_pulls_codes_towards_what_the_encoder_reads(encoder, gen32):
    target = Model(TinyNet(seed=3), input_size=32)
    kwargs = dict(seeds=range(6), steps=30)
    plain = synthesize(class_logit(range(6), model=target), GeneratorCode(gen32), **kwargs)
    prior = synthesize(class_logit(range(6), model=target) + 0.01 * code_prior(CODE_LAYER, model=encoder),
                       GeneratorCode(gen32), **kwargs)
    plain_gap, prior_gap = _readback_gap(encoder, gen32, plain.params), _readback_gap(encoder, gen32, prior.params)
    assert prior_gap.mean() < 0.2 * plain_gap.mean(), (plain_gap, prior_gap)  # measured: 0.03 vs 0.77
    # It is an ascent on the sum: every row's logit + prior ends higher than it started.
    assert (prior.values > prior.history[0]).all()


def test_errors_name_the_fix(encoder, gen32):
    objective = class_logit(0, model=encoder) + code_prior(CODE_LAYER, model=encoder)
    with pytest.raises(DgnamError, match="needs a code parametrisation"):
        synthesize(objective, Pixels(32), seeds=[0], steps=1)
    with pytest.raises(DgnamError, match="layer 'fc2' has 10 values but the code has 32"):
        synthesize(class_logit(0, model=encoder) + code_prior("fc2", model=encoder), GeneratorCode(gen32),
                   seeds=[0], steps=1)
    x = torch.rand(10, 3, 32, 32)
    with pytest.raises(DgnamError, match="code_prior needs code_encoder"):
        evaluate(encoder, {"j": Model(TinyNet(seed=1), input_size=32)}, gen32, real_test=(x, torch.arange(10)),
                 real_train=x, classes=list("abcdefghij"), methods=[Method("dgn", "dgn", "dgn")], restarts=1,
                 steps=1, code_prior=0.1, progress=False)
    gen32.encoder_layer = ""
    with pytest.raises(DgnamError, match="needs the generator's encoder_layer"):
        evaluate(encoder, {"j": Model(TinyNet(seed=1), input_size=32)}, gen32, real_test=(x, torch.arange(10)),
                 real_train=x, classes=list("abcdefghij"), methods=[Method("dgn", "dgn", "dgn")], restarts=1,
                 steps=1, code_prior=0.1, code_encoder=encoder, progress=False)


def test_code_prior_is_public():
    # What `from dgnam import *` gives (so __all__ lists it) is the objective the engine defines.
    public = {}
    exec("from dgnam import *", public)
    assert public["code_prior"] is objectives.code_prior
    assert objectives.code_prior("relu1").name == "code_prior(relu1)"


def test_objectives_compose_across_two_models(tiny_gen):
    m1, m2 = Model(TinyNet(seed=1), input_size=32), Model(TinyNet(seed=2), input_size=32)
    diff = class_logit(4, model=m1) - class_logit(4, model=m2)
    res = synthesize(diff, GeneratorCode(tiny_gen), seeds=[0, 1, 2], steps=30)
    with torch.no_grad():
        a, b = m1(res.images)[:, 4], m2(res.images)[:, 4]
    torch.testing.assert_close(res.values, a - b, atol=1e-4, rtol=1e-4)
    assert (res.values > res.history[0] + 1e-3).all()  # the ascent widened A's lead over B on every row
    both = synthesize(class_logit(4, model=m1) + 0.5 * class_logit(4, model=m2), GeneratorCode(tiny_gen),
                      seeds=[0], steps=5)
    with torch.no_grad():
        torch.testing.assert_close(both.values, m1(both.images)[:, 4] + 0.5 * m2(both.images)[:, 4], atol=1e-4,
                                   rtol=1e-4)


def test_conv_unit_default_centre_position(tiny_model, tiny_gen):
    res = synthesize(unit("conv", 3), GeneratorCode(tiny_gen), model=tiny_model, seeds=[0], steps=10)
    with torch.no_grad():
        act = tiny_model.run(res.images, ["conv"])["conv"]
    torch.testing.assert_close(res.values[0], act[0, 3, 8, 8], atol=1e-4, rtol=1e-4)


def test_scale_rows_mixes_objectives_per_row(tiny_gen):
    a, b = Model(TinyNet(seed=1), input_size=32), Model(TinyNet(seed=2), input_size=32)
    mixed = (scale_rows(class_logit([4, 4, 4], model=a), [1, 1, -1])
             + scale_rows(class_logit([4, 4, 4], model=b), [1, -1, 1]))
    res = synthesize(mixed, GeneratorCode(tiny_gen), seeds=[0, 1, 2], steps=3)
    with torch.no_grad():
        la, lb = a(res.images)[:, 4], b(res.images)[:, 4]
    torch.testing.assert_close(res.values, torch.stack([la[0] + lb[0], la[1] - lb[1], lb[2] - la[2]]), atol=1e-4,
                               rtol=1e-4)
    with pytest.raises(DgnamError, match="row scales"):
        scale_rows(class_logit([1, 2], model=a), [1.0, 2.0, 3.0])


def test_objective_algebra_on_known_activations():
    model = Model(TinyNet(), input_size=32)
    fc = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    conv = torch.arange(2 * 2 * 3 * 3, dtype=torch.float32).view(2, 2, 3, 3)
    image = torch.zeros(2, 3, 4, 4)
    image[1, :, :, 2:] = 1.0  # row 1: one vertical edge
    acts = {(model, "fc1"): fc, (model, "conv"): conv, (None, INPUT): image}
    objective = (2 * unit("fc1", [0, 2]) - channel("conv", 1) + 0.5 * unit("conv", 0, position=(0, 2))
                 - total_variation())
    objective = objective.bind(model)
    # Row 0: 2 * 1 - mean(9..17) + 0.5 * 2 - 0;  row 1: 2 * 6 - mean(27..35) + 0.5 * 20 - 3 * 4 / (3 * 4 * 3).
    expected = torch.tensor([2.0 - 13.0 + 1.0 - 0.0, 12.0 - 31.0 + 10.0 - 1.0 / 3.0])
    torch.testing.assert_close(objective(acts), expected)
    assert objective.n_rows == 2 and objective.name == "2*fc1:[per-row] - conv:1(mean) + 0.5*conv:0@(0, 2) - tv"
    torch.testing.assert_close(objective.take(torch.tensor([1]))({k: v[1:] for k, v in acts.items()}), expected[1:])
    target = torch.tensor([1.0, 2.0, 5.0])
    torch.testing.assert_close(match("fc1", target).bind(model)(acts), -torch.tensor([2.0, (9 + 9 + 1) ** 0.5]))
    with pytest.raises(DgnamError, match="disagree on the number of rows"):
        unit("fc1", [0, 1]) + unit("fc1", [0, 1, 2])
    with pytest.raises(DgnamError, match="multiplied by numbers"):
        unit("fc1", 0) * unit("fc1", 1)


# --- activation targets (capped) ------------------------------------------------------------------------
class _RedMean(torch.nn.Module):
    """Known answer: the output is the image's mean red value, in [0, 1]."""

    def forward(self, x):
        return x[:, :1].mean((2, 3))


def test_an_activation_target_is_reached_and_held():
    model = Model(_RedMean(), input_size=8)
    free = synthesize(unit("output", 0), Pixels(8), model=model, seeds=[0, 1], steps=120)
    # DGN-AM's normalised ascent, small steps (each moves red by 0.009): a row stops where its gradient vanishes.
    held = synthesize(objectives.capped(unit("output", 0), [0.6, 0.7]), Pixels(8), model=model, seeds=[0, 1],
                      steps=120, record=unit("output", 0), optimizer=NormalizedAscent(0.003, 0.003, l2_decay=1.0))
    assert (free.values > 0.95).all()  # uncapped, red goes to its maximum
    torch.testing.assert_close(held.values, torch.tensor([0.6, 0.7]), atol=0.01, rtol=0)  # capped: held at the target
    assert held.history[:, 0].max() < 0.61 and held.history[:, 1].max() < 0.71  # never pushed past it


def test_capped_refuses_bad_targets_in_one_line():
    with pytest.raises(DgnamError, match="finite"):
        objectives.capped(unit("output", 0), float("inf"))
    with pytest.raises(DgnamError, match="one per row"):
        objectives.capped(unit("output", [0, 1, 2]), [1.0, 2.0])


def test_per_row_positions_read_each_row_where_it_asks():
    act = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    objective = unit("conv", [1, 2], position=torch.tensor([[0, 3], [2, 1]]), layout="conv")
    values = objective({(None, "conv"): act})
    torch.testing.assert_close(values, torch.stack([act[0, 1, 0, 3], act[1, 2, 2, 1]]))
    torch.testing.assert_close(objective.take(torch.tensor([1]))({(None, "conv"): act[1:]}), act[1, 2, 2, 1][None])
    with pytest.raises(DgnamError, match="per-row positions must be"):
        unit("conv", [1, 2], position=torch.tensor([[0, 3]]), layout="conv")
