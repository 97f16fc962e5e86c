"""train.evaluate_prior: code samples that keep the codes' statistics, sample realism, the class-ceiling
grid, reconstruction agreement and the spectrum ratio."""

import pytest
import torch

from dgnam import DgnamError


def test_code_samples_keep_the_codes_covariance():
    from train.evaluate_prior import code_samples

    gen = torch.Generator().manual_seed(0)
    # Far from 0, so the clip at 0 changes nothing; units 0 and 1 strongly correlated.
    mixing = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.44, 0.0], [0.0, 0.0, 2.0]])
    codes = 10 + torch.randn(4000, 3, generator=gen) @ mixing.T
    samples = code_samples(codes, 20000)
    full, per_unit = samples["full_covariance_gaussian"], samples["per_unit_gaussian"]
    torch.testing.assert_close(full.mean(0), codes.mean(0), atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(full.T), torch.cov(codes.T), atol=0.08, rtol=0)
    torch.testing.assert_close(per_unit.std(0), codes.std(0), atol=0.05, rtol=0)
    assert torch.corrcoef(full.T)[0, 1] > 0.85 and abs(torch.corrcoef(per_unit.T)[0, 1]) < 0.05
    # Codes are post-ReLU: samples are clipped at 0.
    assert (code_samples(codes - 10, 100)["full_covariance_gaussian"] >= 0).all()


def test_copula_samples_keep_each_units_distribution_and_the_rank_correlation():
    from train.evaluate_prior import code_samples

    gen = torch.Generator().manual_seed(0)
    # Sparse ReLU-like codes: unit 0 is 0 for 70% of images, unit 1 follows it (rank correlated),
    # unit 2 is an independent heavy-tailed unit. A Gaussian fit turns the 70% exact zeros into
    # "a little on"; the copula must keep them.
    latent = torch.randn(6000, 2, generator=gen)
    unit0 = (latent[:, 0] - 0.52).clamp_min(0) * 3
    unit1 = (0.95 * latent[:, 0] + 0.31 * latent[:, 1]).exp()
    unit2 = torch.randn(6000, generator=gen).pow(2)
    unit3 = (latent[:, 1] + 0.7 * torch.randn(6000, generator=gen)).exp()  # dense, correlated with unit 1
    codes = torch.stack([unit0, unit1, unit2, unit3], 1)
    copula = code_samples(codes, 20000)["gaussian_copula"]
    gaussian = code_samples(codes, 20000)["full_covariance_gaussian"]
    zero_real = float((codes[:, 0] == 0).float().mean())
    assert 0.68 < zero_real < 0.72
    assert abs(float((copula[:, 0] == 0).float().mean()) - zero_real) < 0.02
    assert float((gaussian[:, 0] == 0).float().mean()) < 0.5  # what the Gaussian fit gets wrong
    # Every sample is a value some real code took, and the quantiles match.
    assert torch.isin(copula[:, 2], codes[:, 2]).all()
    probs = torch.tensor([0.1, 0.5, 0.9, 0.99])
    torch.testing.assert_close(copula.quantile(probs, dim=0), codes.quantile(probs, dim=0), rtol=0.1, atol=0.02)

    def spearman(a, b):
        return float(torch.corrcoef(torch.stack([a.argsort().argsort().float(), b.argsort().argsort().float()]))[0, 1])
    assert abs(spearman(copula[:, 1], copula[:, 2]) - spearman(codes[:, 1], codes[:, 2])) < 0.05
    assert abs(spearman(copula[:, 1], copula[:, 2])) < 0.05
    assert spearman(codes[:, 1], codes[:, 3]) > 0.15
    assert abs(spearman(copula[:, 1], copula[:, 3]) - spearman(codes[:, 1], codes[:, 3])) < 0.03
    # The sparse unit keeps its dependence, weakened: when unit 0 is on, unit 1 is above its median
    # for 99.5% of real codes and 88% of copula samples (independent units: 50%). Its zeros share
    # one normal score, which attenuates the correlation; the docstring says so.
    def high_when_on(c):
        return float((c[c[:, 0] > 0, 1] > codes[:, 1].median()).float().mean())
    assert high_when_on(codes) > 0.99 and high_when_on(copula) > 0.8


def test_class_copula_samples_each_class_from_its_own_codes():
    from train.evaluate_prior import code_samples

    gen = torch.Generator().manual_seed(0)
    # Two classes that use opposite units: class 0 turns on unit 0 (and unit 2 with it), class 1 turns
    # on unit 1. Within a class, units 0 and 2 rise together. One copula over both classes mixes them.
    n_real = 3000
    labels = torch.arange(n_real) % 2
    strength = torch.rand(n_real, generator=gen) + 0.5
    codes = torch.zeros(n_real, 3)
    codes[labels == 0, 0] = strength[labels == 0]
    codes[labels == 0, 2] = 2 * strength[labels == 0] + 0.1 * torch.rand(n_real // 2, generator=gen)
    codes[labels == 1, 1] = strength[labels == 1]
    samples = code_samples(codes, 4000, labels=labels)
    by_class = samples["class_gaussian_copula"]
    assert by_class.shape == (4000, 3)
    first, second = by_class[0::2], by_class[1::2]  # sample i is of class i mod 2
    assert (first[:, 1] == 0).all() and (first[:, 0] > 0).all() and (second[:, [0, 2]] == 0).all()
    assert torch.corrcoef(first[:, [0, 2]].T)[0, 1] > 0.95
    # The one copula over both classes draws codes no real image has: units 0 and 1 on together.
    mixed = samples["gaussian_copula"]
    assert float(((mixed[:, 0] > 0) & (mixed[:, 1] > 0)).float().mean()) > 0.05
    assert not ((by_class[:, 0] > 0) & (by_class[:, 1] > 0)).any()
    assert "class_gaussian_copula" not in code_samples(codes, 10)
    with pytest.raises(DgnamError, match="one class per code"):
        code_samples(codes, 10, labels=labels[:-1])


class _ColourJudge(torch.nn.Module):
    """Reads redness against blueness: confident and right on red / blue images, unsure on grey."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(3, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[20.0, 0.0, -20.0], [-20.0, 0.0, 20.0]]))
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(x.mean((2, 3)))


def test_sample_realism_scores_every_set_against_real_images_by_kid_and_judge_score():
    from dgnam.nets.model import Model
    from train.evaluate_prior import sample_realism

    from helpers import TinyNet, tiny_generator

    gen = torch.Generator().manual_seed(0)

    def red_and_blue(n):  # half red, half blue noise images, uint8 (n, 3, 32, 32)
        colour = torch.tensor([[200, 30, 30], [30, 30, 200]])[torch.arange(n) % 2][:, :, None, None]
        return (colour + 30 * torch.randn(n, 3, 32, 32, generator=gen)).clamp(0, 255).to(torch.uint8)

    encoder = Model(TinyNet(), input_size=32)
    generator = tiny_generator(code_dim=32)
    generator.encoder_layer = "relu1"
    report, sets = sample_realism(encoder, generator, Model(_ColourJudge(), input_size=32), red_and_blue(100),
                                  red_and_blue(80), n=40, n_fit=60, train_labels=torch.arange(100) % 2)
    samples = {"per_unit_gaussian", "full_covariance_gaussian", "gaussian_copula", "class_gaussian_copula"}
    assert set(sets) == {"real_train", "real_test_box_blurred", "reconstructions"} | samples
    assert set(report) == set(sets) | {"real_test"}
    # Real images: every one confidently red or blue, the two equally often -> the score is 2 classes.
    assert report["real_test"]["judge_inception_score"] > 1.9 and report["real_test"]["judge_confidence"] > 0.95
    assert report["real_train"]["judge_inception_score"] > 1.9
    # A random tiny G draws grey-ish images the colour judge cannot place: a lower score, and KID far
    # above the floor that other real images set.
    worst = max(report[name]["kid_x100"] for name in samples)
    assert abs(report["real_train"]["kid_x100"]) < 0.1 * worst
    assert min(report[name]["judge_inception_score"] for name in samples) < 1.9
    for name in samples:
        assert 0 <= report[name]["code_zero_fraction"] <= 1 and len(report[name]["encoder_class_shares"]) == 10

    # A class-conditional sampler is asked for sample i of class i mod K, and the report says how often
    # the judge names the class asked for.
    class TwoClassSampler:
        num_classes = 2

        def sample(self, n, labels=None):
            self.asked = labels
            return torch.rand(n, 32, generator=torch.Generator().manual_seed(1))
    sampler = TwoClassSampler()
    report, sets = sample_realism(encoder, generator, Model(_ColourJudge(), input_size=32), red_and_blue(100),
                                  red_and_blue(80), n=40, n_fit=60, sampler=sampler)
    assert torch.equal(sampler.asked, torch.arange(40) % 2)
    named = (Model(_ColourJudge(), input_size=32)(sets["code_sampler"]).argmax(1) == sampler.asked).float().mean()
    assert report["code_sampler"]["judge_names_asked_class"] == round(float(named), 3)
    assert "judge_names_asked_class" not in report["gaussian_copula"]


def test_class_ceiling_grid_puts_real_reconstruction_and_sample_rows_per_class():
    from dgnam.nets.model import Model
    from dgnam.prior.sampler import CodeSampler
    from train.evaluate_prior import class_ceiling_grid, dgnam_images, sampler_images

    from helpers import TinyNet, tiny_generator

    encoder = Model(TinyNet(), input_size=32)
    generator = tiny_generator(code_dim=32)
    generator.encoder_layer = "relu1"
    images_u8 = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8)
    labels = torch.tensor([0, 1] * 6)

    class NamedSampler:  # its class order differs from the data's: the grid asks by name
        classes, num_classes = ["blue", "red"], 2
        class_index = CodeSampler.class_index  # the real lookup and its error

        def sample(self, n, seed=0, labels=None):
            self.asked = getattr(self, "asked", []) + [labels]
            return torch.rand(n, 32, generator=torch.Generator().manual_seed(seed))

    sampler = NamedSampler()
    made = sampler_images(generator, sampler, ["red", "blue"], per_class=3)
    grid = class_ceiling_grid(encoder, generator, made, images_u8, labels, ["red", "blue"], per_class=3)
    assert grid.shape == (2 * 3 * 3, 3, 32, 32)
    torch.testing.assert_close(grid[6:9], made[:3])  # row 3: the made images of class 0
    red = images_u8[labels == 0][:3].float() / 255
    torch.testing.assert_close(grid[0:3], red)  # row 1: the first real images of the data's class 0
    torch.testing.assert_close(grid[3:6], generator.generate(encoder.run(red, ["relu1"])["relu1"].flatten(1)))
    torch.testing.assert_close(grid[9:12], images_u8[labels == 1][:3].float() / 255)
    assert [a.tolist() for a in sampler.asked] == [[1, 1, 1], [0, 0, 0]]  # red is the sampler's class 1
    with pytest.raises(DgnamError, match="unknown class 'deer'"):
        sampler_images(generator, sampler, ["red", "deer"], per_class=3)
    with pytest.raises(DgnamError, match="fewer than 7"):
        class_ceiling_grid(encoder, generator, torch.zeros(14, 3, 32, 32), images_u8, labels, ["red", "blue"],
                           per_class=7)
    # DGN-AM rows: restarts of each class logit, class after class, and they drive their class.
    generator.metadata = {"code_prior": 0.0}
    dgn = dgnam_images(encoder, generator, 2, per_class=2)
    assert dgn.shape == (4, 3, 32, 32)
    logits = encoder(dgn)
    assert (logits[:2, 0] > logits[2:, 0]).all() and (logits[2:, 1] > logits[:2, 1]).all()


def test_evaluate_prior_counts_agreement_and_builds_the_grid_without_gradients():
    from dgnam.nets.model import Model
    from train.evaluate_prior import evaluate

    from helpers import TinyNet, tiny_generator

    encoder = Model(TinyNet(), input_size=32)
    generator = tiny_generator(code_dim=32)
    generator.encoder_layer, generator.metadata = "relu1", {}  # metadata: what load_generator adds
    images_u8 = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(40) % 10
    report, grid = evaluate(encoder, generator, {"self": encoder}, images_u8, labels, limit=None, batch=16)
    assert grid.shape == (64, 3, 32, 32) and not grid.requires_grad  # 32 originals above 32 reconstructions
    torch.testing.assert_close(grid[:16], images_u8[torch.linspace(0, 39, 32).long()[:16]].float() / 255)
    with torch.no_grad():
        x = images_u8.float() / 255
        recon = generator.generate(encoder.run(x, ["relu1"])["relu1"].flatten(1))
        same = float((encoder(recon).argmax(1) == encoder(x).argmax(1)).float().mean())
    assert report["encoder/same_class_as_original"] == pytest.approx(same)
    assert report["self/ratio"] == pytest.approx(report["self/reconstruction"] / max(report["self/original"], 1e-9))
    assert report["n_images"] == 40


def test_spectrum_ratio_finds_the_grid_peak_and_the_blur():
    from train.evaluate_prior import spectrum_ratio

    torch.manual_seed(0)
    images = torch.rand(32, 3, 16, 16)
    rows, cols = torch.arange(16)[:, None], torch.arange(16)[None, :]
    checkerboard = 0.3 * (rows + cols).remainder(2).float()

    def amplitude(x):
        return torch.fft.fft2(x).abs().sum(0)
    same = spectrum_ratio(amplitude(images), amplitude(images))
    assert same["peak"] == 1.0 and same["high_band"] == 1.0 and same["low_band"] == 1.0
    grid = spectrum_ratio(amplitude(images + checkerboard), amplitude(images))
    assert grid["peak"] > 3 and grid["peak_at_cycles"] == [8, 8]  # Nyquist in both axes
    # Stripes: which axis and the band edge at a quarter of the size (4 cycles of 16) are read right.
    vertical_stripes = 0.5 * torch.cos(2 * torch.pi * 4 * cols / 16).expand(16, 16)
    stripes = spectrum_ratio(amplitude(images + vertical_stripes), amplitude(images))
    assert stripes["peak_at_cycles"] in ([0, 4], [0, -4]) and stripes["low_band"] < 1.01 < stripes["high_band"]
    horizontal_stripes = 0.5 * torch.cos(2 * torch.pi * 3 * rows / 16).expand(16, 16)
    stripes = spectrum_ratio(amplitude(images + horizontal_stripes), amplitude(images))
    assert stripes["peak_at_cycles"] in ([3, 0], [-3, 0]) and stripes["high_band"] < 1.01 < stripes["low_band"]
    blurred = spectrum_ratio(amplitude((images + images.roll(1, -1)) / 2), amplitude(images))
    assert blurred["high_band"] < 0.7 < blurred["low_band"] <= 1.0
