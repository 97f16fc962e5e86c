"""PPGN's code prior (``dgnam.code_prior``) on a tiny encoder whose 32-unit ``relu1`` a tiny generator inverts."""

import pytest
import torch

import dgnam
from dgnam import DgnamError, GeneratorCode, Pixels, class_logit, code_prior, synthesize
from dgnam.evaluation.evaluate import Method, evaluate
from dgnam.nets.model import PARAMS, Model

from helpers import TinyNet, tiny_generator

CODE_LAYER = "relu1"  # TinyNet's fc1 after ReLU: 32 units, the code of a 32-d generator


@pytest.fixture
def encoder():
    return Model(TinyNet(seed=0), input_size=32)


@pytest.fixture
def gen32():
    gen = tiny_generator(code_dim=32)
    gen.encoder_layer = CODE_LAYER
    return gen


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


def test_evaluate_applies_the_prior_to_every_dgn_run(encoder, gen32):
    target = Model(TinyNet(seed=3), input_size=32)
    judges = {"j": Model(TinyNet(seed=1), input_size=32)}
    x = torch.rand(20, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.arange(20) % 10
    common = dict(real_test=(x, y), real_train=x, classes=list("abcdefghij"), restarts=2, steps=5,
                  sweep=[(1.0, 0.99)], sweep_restarts=2, progress=False,
                  methods=[Method("dgn", "dgn", "dgn"), Method("pixel", "pixel", "pixel")])
    ev = evaluate(target, judges, gen32, code_prior=0.5, code_encoder=encoder, **common)
    assert "code_prior(relu1)" in ev.methods["dgn"].settings["objective"]
    assert "code_prior" in ev.sweep[0][2].settings["objective"]
    assert "code_prior" not in ev.methods["pixel"].settings["objective"]
    assert "adds 0.5 x PPGN's code prior" in ev.to_markdown()
    plain = evaluate(target, judges, gen32, **common)
    assert "code_prior" not in plain.methods["dgn"].settings["objective"]
    assert "the paper's (no code prior)" in plain.to_markdown()
    assert not torch.equal(plain.images["dgn"], ev.images["dgn"])
    torch.testing.assert_close(plain.images["pixel"], ev.images["pixel"])


def test_code_prior_is_public():
    assert dgnam.code_prior is code_prior and "code_prior" in dgnam.__all__
