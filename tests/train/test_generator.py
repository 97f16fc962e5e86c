"""Tiny end-to-end training through the real LightningCLI entry points, plus resume and the D-pausing rule."""

import pytest
import torch

from dgnam import DgnamError, load_classifier, load_generator
from train import classifier, generator
from train.generator import AdversarialBalance

from helpers import _common, _tiny_module, _train_encoder


def test_encoder_then_generator_then_resume(tmp_path, image_root, capsys):
    enc_path = _train_encoder(tmp_path, image_root)
    enc = load_classifier(enc_path)
    assert enc.classes == ["blue", "red"]
    assert enc(torch.rand(2, 3, 32, 32)).shape == (2, 10)

    gen_path = tmp_path / "gen.pt"
    ckpt_dir = tmp_path / "gckpt"
    # The shipped config with one optional term on, to check what a resume does with it below.
    config = tmp_path / "generator.yaml"
    shipped = open("configs/cifar10/generator_conv4.yaml").read()
    assert "  lambda_adv: 0.005\n" in shipped and "lambda_class" not in shipped
    config.write_text(shipped.replace("  lambda_adv: 0.005\n", "  lambda_adv: 0.005\n  lambda_class: 0.25\n"))
    args = ["fit", "--config", str(config), *_common(tmp_path, image_root, "gen"),
            "--trainer.max_epochs=-1", f"--model.encoder={enc_path}", f"--model.export_path={gen_path}",
            # The shipped config's spatial code and resize-conv upsampling: the tiny encoder's
            # features.relu4_2 is 4x4x4 = 64 values.
            "--model.generator_kwargs={code_dim: 64, start_channels: 4, widths: [8, 8, 8], spatial_code: true, upsample: nearest}",
            "--model.discriminator_convs=[[8, 3, 1], [8, 4, 2]]", "--model.discriminator_code_dims=[8]",
            "--model.grid_every=2", "--trainer.val_check_interval=3", "--trainer.limit_val_batches=1",
            f"--trainer.callbacks.init_args.dirpath={ckpt_dir}", "--trainer.callbacks.init_args.every_n_train_steps=1"]
    generator.main([*args, "--trainer.max_steps=2"])
    first = torch.load(gen_path, weights_only=True)
    assert first["metadata"]["iterations"] == 2
    gen = load_generator(gen_path)
    assert gen.image_size == 32 and gen.code_dim == 64
    # Bounds come from real code statistics: finite, non-negative, mean + 3 std.
    assert first["metadata"]["bound_k"] == 3.0
    torch.testing.assert_close(gen.code_upper_bound, gen.code_mean + 3 * gen.code_std)
    assert torch.isfinite(gen.code_upper_bound).all() and (gen.code_upper_bound >= 0).all()
    assert list((tmp_path / "gen").rglob("recon_000002.png"))

    assert first["metadata"]["lambda_class"] == 0.25 and first["metadata"]["lambda_code"] == 0.0  # the config's
    assert first["metadata"]["lambda_spectrum"] == 0.0
    # A checkpoint from before lambda_class existed: the resumed run keeps training without it
    # (the module's default 0), not with the YAML's 0.25.
    ckpt = torch.load(ckpt_dir / "last.ckpt", weights_only=True)
    del ckpt["hyper_parameters"]["lambda_class"]
    # As if the chunk before had another checkpoint interval: the callback's saved state does not
    # match, and Lightning's version counter would then write last-v1.ckpt (the configs turn it off).
    ckpt["callbacks"] = {}
    torch.save(ckpt, ckpt_dir / "last.ckpt")
    # Model flags given with --ckpt_path apply (plain LightningCLI would restore the checkpoint's
    # 0.0), and the learning rate too (the restored optimizer state would keep the old one).
    # ema_decay on: a checkpoint without an average starts one from its weights; export uses it.
    # A second --config loses to the checkpoint like the base one (which every resume passes again),
    # and the run says so, naming the flag that would change it.
    second = tmp_path / "second.yaml"
    second.write_text("model:\n  lambda_img: 2.0\n")
    capsys.readouterr()
    generator.main([*args, "--config", str(second), "--trainer.max_steps=5", f"--ckpt_path={ckpt_dir / 'last.ckpt'}",
                    "--model.lambda_code=0.25", "--model.lr_g=1e-4", "--model.ema_decay=0.5"])
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("resuming:")]
    assert ("resuming: model.lambda_img = 1.0, the checkpoint's, not the config's 2.0; pass --model.lambda_img "
            "on the command line to change it") in notes
    assert any(line.startswith("resuming: model.lambda_class = 0.0, the module's default") for line in notes)
    assert len(notes) == 2  # not lambda_code or lr_g (named on the command line), nor betas (a list vs a tuple)
    resumed = torch.load(gen_path, weights_only=True)
    assert resumed["metadata"]["iterations"] == 5  # continued from 2, not restarted
    assert resumed["metadata"]["lambda_code"] == 0.25 and resumed["metadata"]["lambda_class"] == 0.0
    assert resumed["metadata"]["lambdas"][0] == 1.0
    last = torch.load(ckpt_dir / "last.ckpt", weights_only=True, map_location="cpu")  # GPU runs save CUDA tensors
    assert last["global_step"] == 5 and not (ckpt_dir / "last-v1.ckpt").exists()
    assert [g["lr"] for g in last["optimizer_states"][0]["param_groups"]] == [1e-4]
    assert not torch.equal(resumed["state_dict"]["convs.conv0.weight"], first["state_dict"]["convs.conv0.weight"])
    assert resumed["metadata"]["weights"] == "moving average, decay 0.5"
    live = last["state_dict"]["generator.convs.conv0.weight"]
    torch.testing.assert_close(resumed["state_dict"]["convs.conv0.weight"], last["dgnam"]["generator_ema"]["convs.conv0.weight"])
    assert not torch.equal(resumed["state_dict"]["convs.conv0.weight"], live)  # the average, not the last step

    # Export a stopped run's last checkpoint without training further.
    again = tmp_path / "gen_again.pt"
    generator.main(["export", str(ckpt_dir / "last.ckpt"), str(again)])
    exported = torch.load(again, weights_only=True)
    assert exported["metadata"]["iterations"] == 5
    assert torch.equal(exported["state_dict"]["convs.conv0.weight"], resumed["state_dict"]["convs.conv0.weight"])


def test_fc6_pipeline_trunk_head_conv_prior_fc_regression_then_deepsim(tmp_path, image_root):
    """The shipped recipe's stages on tiny nets, through the committed configs: trunk -> CaffeNet head on
    the frozen trunk -> conv-map prior -> FC layers regressed from fc6 onto its input -> DeePSiM on fc6."""
    from train import generator_head

    trunk_path = _train_encoder(tmp_path, image_root)
    enc_path = tmp_path / "enc_fc6.pt"
    classifier.main(["fit", "--config", "configs/cifar10/encoder.yaml", *_common(tmp_path, image_root, "head"),
                     "--model.arch_kwargs={widths: [4, 4, 4, 4], head: flatten, code_dim: 32, fc7_dim: 16}",
                     f"--model.init_from={trunk_path}", f"--model.export_path={enc_path}", "--trainer.callbacks=[]"])
    trunk, enc = load_classifier(trunk_path), load_classifier(enc_path)
    images = torch.rand(6, 3, 32, 32)
    acts = enc.run(images, ["features.relu4_2", "relu6"])
    # The trunk stayed frozen (BatchNorm statistics included): the conv code and comparator are the trunk's.
    torch.testing.assert_close(acts["features.relu4_2"], trunk.run(images, ["features.relu4_2"])["features.relu4_2"])
    assert acts["relu6"].shape == (6, 32) and (acts["relu6"] >= 0).all()  # the fc6 code: flattened map, post-ReLU
    assert enc.metadata["frozen"] == ["features"]

    conv_path, conv_ckpt = tmp_path / "g_conv4.pt", tmp_path / "gconv"
    generator.main(["fit", "--config", "configs/cifar10/generator_conv4.yaml", *_common(tmp_path, image_root, "gconv"),
                    "--trainer.max_epochs=-1", "--trainer.max_steps=2", f"--model.encoder={enc_path}",
                    f"--model.export_path={conv_path}",
                    "--model.generator_kwargs={code_dim: 64, start_channels: 4, widths: [8, 8, 8], spatial_code: true}",
                    "--model.discriminator_convs=[[8, 3, 1], [8, 4, 2]]", "--model.discriminator_code_dims=[8]",
                    "--trainer.limit_val_batches=0", f"--trainer.callbacks.init_args.dirpath={conv_ckpt}"])

    start_path = tmp_path / "g_fc6_start.pt"
    head_args = ["fit", "--config", "configs/cifar10/generator_fc6_head.yaml", f"--data.root={image_root}",
                 f"--data.cache_dir={tmp_path / 'cache'}", "--data.batch_size=8", "--trainer.enable_model_summary=false",
                 f"--trainer.logger.init_args.save_dir={tmp_path / 'ghead'}", "--seed_everything=0",
                 f"--model.conv_generator={conv_path}", f"--model.encoder={enc_path}", "--model.fc_dims=[48]",
                 "--model.lr=3e-3", f"--model.export_path={start_path}"]
    pairs = generator_head.CodePairData(root=str(image_root), encoder=str(enc_path), conv_generator=str(conv_path),
                                        cache_dir=str(tmp_path / "cache"))
    pairs.setup()
    fc6, conv_code = pairs.test_set.tensors
    untrained = generator_head.GeneratorHeadModule(conv_generator=str(conv_path), encoder=str(enc_path), fc_dims=[48])
    def unexplained(module) -> float:
        with torch.no_grad():
            return float((module.predicted_map(fc6) - conv_code).pow(2).sum() / (conv_code - conv_code.mean(0)).pow(2).sum())
    before = unexplained(untrained)
    generator_head.main([*head_args, "--trainer.max_epochs=30"])
    start = load_generator(start_path)
    fitted = generator_head.GeneratorHeadModule(conv_generator=str(conv_path), encoder=str(enc_path), fc_dims=[48])
    fitted.generator.load_state_dict(start.state_dict())
    assert unexplained(fitted) < 0.5 * before  # the FC layers learned the fc6 -> conv-map regression
    conv = load_generator(conv_path)
    assert start.encoder_layer == "relu6" and start.code_dim == 32 and torch.isfinite(start.code_upper_bound).all()
    torch.testing.assert_close(start.convs.state_dict(), conv.convs.state_dict())  # the conv prior's layers, unchanged
    with pytest.raises(DgnamError, match="already starts with FC layers"):
        generator_head.main([*head_args, f"--model.conv_generator={start_path}"])

    fc6_path = tmp_path / "g_fc6.pt"
    generator.main(["fit", "--config", "configs/cifar10/generator.yaml", *_common(tmp_path, image_root, "gfc6"),
                    "--trainer.max_epochs=-1", "--trainer.max_steps=2", f"--model.encoder={enc_path}",
                    "--model.generator_kwargs={code_dim: 32, fc_dims: [48], start_channels: 4, widths: [8, 8, 8], start_convs: true}",
                    f"--model.init_generator={start_path}", f"--model.export_path={fc6_path}",
                    "--model.discriminator_convs=[[8, 3, 1], [8, 4, 2]]", "--model.discriminator_code_dims=[8]",
                    "--trainer.limit_val_batches=0", f"--trainer.callbacks.init_args.dirpath={tmp_path / 'gfc6ckpt'}"])
    trained = load_generator(fc6_path)
    assert trained.metadata["iterations"] == 2 and trained.encoder_layer == "relu6" and trained.arch == start.arch
    assert not torch.equal(trained.fc["defc5"].weight, start.fc["defc5"].weight)  # trained end to end, FC included
    assert not torch.equal(trained.convs["conv0"].weight, start.convs["conv0"].weight)


def test_class_term_is_the_kl_from_the_original_to_the_reconstruction(tmp_path):
    from train.generator import class_consistency

    # By hand: p = (0.5, 0.5) on the original, q = (0.9, 0.1) on the reconstruction:
    # KL(p || q) = 0.5 ln(0.5 / 0.9) + 0.5 ln(0.5 / 0.1) = 0.5108; the other direction is 0.3681.
    real, fake = torch.zeros(1, 2), torch.tensor([[0.9, 0.1]]).log()
    assert abs(float(class_consistency(real, fake)) - 0.5108) < 1e-4
    assert float(class_consistency(real, real)) == 0.0
    # Per image, averaged over the batch.
    assert abs(float(class_consistency(torch.cat([real, real]), torch.cat([fake, real]))) - 0.5108 / 2) < 1e-4

    torch.manual_seed(0)
    module = _tiny_module(tmp_path, lambda_class=1.0)
    images = torch.rand(6, 3, 32, 32)
    losses = module.losses(images)
    with torch.no_grad():  # the module's term is that KL between the encoder's outputs on x and on G(E(x))
        code = module.encoder.run(images, ["features.relu4_2"])["features.relu4_2"].flatten(1)
        expected = class_consistency(module.encoder(images),
                                     module.encoder(module.generator.to_rgb(module.generator(code))))
    torch.testing.assert_close(losses["class"], expected)
    module.hparams.class_gradient_sigma = 1.0  # blurs only the term's gradient: the value is the same
    torch.testing.assert_close(module.losses(images)["class"], expected)
    module.hparams.lambda_class = 0.0  # off: exactly 0
    assert float(module.losses(images)["class"]) == 0.0


def test_moving_average_of_the_generator_weights(tmp_path):
    torch.manual_seed(0)
    module = _tiny_module(tmp_path, ema_decay=0.75)
    weight = module.generator.convs.conv0.weight
    start = weight.detach().clone()
    module._update_ema()  # the first update starts the average at the current weights
    with torch.no_grad():
        weight.add_(1.0)
    module._update_ema()  # 0.75 * start + 0.25 * (start + 1)
    with module.averaged_generator():
        torch.testing.assert_close(weight, start + 0.25)
    torch.testing.assert_close(weight, start + 1.0)  # the live weights come back after the block

    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    other = generator.GeneratorModule(**{k: v for k, v in module.hparams.items()})
    other.on_load_checkpoint(checkpoint)
    with other.averaged_generator():
        torch.testing.assert_close(other.generator.convs.conv0.weight, start + 0.25)

    images = [(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8), 0) for _ in range(4)]
    module.export(str(tmp_path / "g.pt"), images, ["a", "b"], iterations=2)
    saved = torch.load(tmp_path / "g.pt", weights_only=True)
    torch.testing.assert_close(saved["state_dict"]["convs.conv0.weight"], start + 0.25)
    torch.testing.assert_close(weight, start + 1.0)
    for bad in ({"ema_decay": 1.0}, {"class_gradient_sigma": -1.0}):
        with pytest.raises(DgnamError, match="use 0 \\(off\\)"):
            generator.GeneratorModule(**{**module.hparams, **bad})
    module.hparams.ema_decay = 0.0  # off: the block is a no-op
    with module.averaged_generator():
        torch.testing.assert_close(weight, start + 1.0)


def test_init_generator_starts_g_from_an_exported_file_and_refuses_a_mismatch(tmp_path):
    torch.manual_seed(0)
    module = _tiny_module(tmp_path)
    images = [(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8), 0) for _ in range(4)]
    start = tmp_path / "start.pt"
    module.export(str(start), images, ["a", "b"], iterations=2)
    torch.manual_seed(1)  # another random start: only the file makes the weights equal
    again = _tiny_module(tmp_path, init_generator=str(start))
    for name, value in load_generator(start).state_dict().items():
        torch.testing.assert_close(again.generator.state_dict()[name], value)
    fresh = _tiny_module(tmp_path)
    assert not torch.equal(fresh.generator.convs.conv0.weight, again.generator.convs.conv0.weight)
    with pytest.raises(DgnamError, match="another architecture or layer"):
        _tiny_module(tmp_path, upsample=None, init_generator=str(start))  # transposed convs, not resize-convs
    with pytest.raises(DgnamError, match="overwrite its own start"):
        _tiny_module(tmp_path, init_generator=str(start), export_path=str(start))
    start.write_bytes(b"not a checkpoint")
    with pytest.raises(DgnamError):
        _tiny_module(tmp_path, init_generator=str(start))


def test_lowpass_gradient_keeps_the_images_but_blurs_their_gradient():
    from train.generator import lowpass_gradient

    images = torch.rand(2, 3, 16, 16, requires_grad=True)
    passed = lowpass_gradient(images, 1.0)
    assert torch.equal(passed, images)
    stripes = (torch.arange(16) % 2 * 2 - 1).float().view(1, 1, 16, 1).expand(2, 3, 16, 16)  # Nyquist rows
    (passed * stripes).sum().backward()
    assert images.grad.abs().max() < 0.05  # a period-2 push is all but removed
    images.grad = None
    (lowpass_gradient(images, 1.0) * 3.0).sum().backward()
    torch.testing.assert_close(images.grad, torch.full_like(images, 3.0))  # a smooth push passes whole
    images.grad = None
    (lowpass_gradient(images, 0.0) * stripes).sum().backward()
    assert torch.equal(images.grad, stripes)  # sigma 0: off


def test_spectral_excess_prices_periodic_grids_at_any_phase_but_not_blur(tmp_path):
    from train.generator import spectral_excess

    torch.manual_seed(0)
    real = torch.rand(64, 3, 16, 16)
    checkerboard = 0.2 * (torch.arange(16)[:, None] + torch.arange(16)[None, :]).remainder(2).float()
    with_grid = spectral_excess(real + checkerboard, real)
    assert float(with_grid) > 0.01
    # Phase-free: the grid one pixel over in half of the images costs about the same (only its
    # interference with each image's own content at that frequency changes).
    shifted = torch.cat([real[:32] + checkerboard, real[32:] + checkerboard.roll(1, 1)])
    torch.testing.assert_close(spectral_excess(shifted, real), with_grid, rtol=0.05, atol=0)
    # A (circular) blur only removes energy at every frequency: no excess, so no push towards blur
    # or away from it; and an image against itself costs nothing.
    blurred = (real + real.roll(1, -1)) / 2
    assert float(spectral_excess(blurred, real)) < 1e-10 and float(spectral_excess(real, real)) == 0.0
    assert float(spectral_excess(real, blurred)) > 0.1  # the other way round it is an excess

    module = _tiny_module(tmp_path, upsample=None)  # transposed convs, the shipped kind
    images = torch.rand(6, 3, 32, 32)
    off = module.losses(images)
    module.hparams.lambda_spectrum = 1e5  # a random G barely exceeds the images' spectrum: make it count
    on = module.losses(images)
    with torch.no_grad():  # the module's term compares G's raw output with the images in G's space
        code = module.encoder.run(images, ["features.relu4_2"])["features.relu4_2"].flatten(1)
        expected = spectral_excess(module.generator(code), module.generator.from_rgb(images))
    assert float(expected) > 0
    torch.testing.assert_close(on["spectrum"], expected)
    torch.testing.assert_close(on["g"] - off["g"], 1e5 * expected, rtol=1e-3, atol=1e-4)


def test_code_size_mismatch_is_one_line(tmp_path, image_root):
    from dgnam import DgnamError
    from train.generator import GeneratorModule
    enc_path = _train_encoder(tmp_path, image_root)
    with pytest.raises(DgnamError, match=r"gives 16 values \(16,\) but the generator takes code_dim=64"):
        GeneratorModule(encoder=str(enc_path), code_layer="relu6",
                        generator_kwargs={"code_dim": 64, "start_channels": 4, "widths": [8, 8, 8], "spatial_code": True})


def test_balance_rule_pauses_and_resumes():
    bal = AdversarialBalance()
    bal.update(0.6, 0.6, 1.0)  # r = 1.2: both train
    assert bal.train_d and bal.train_g
    bal.update(0.02, 0.03, 1.0)  # r = 0.05 < 0.1: D too strong, stop D
    assert not bal.train_d and bal.train_g
    bal.update(0.15, 0.15, 1.0)  # r = 0.3: still in the hysteresis band, D stays off
    assert not bal.train_d
    bal.update(0.4, 0.4, 1.0)  # r = 0.8 > 0.5: resume D
    assert bal.train_d and bal.train_g
    bal.update(6.0, 6.0, 1.0)  # r = 12 > 10: G far behind? pause G, D keeps training
    assert bal.train_d and not bal.train_g
    bal.update(1.0, 1.0, 1.0)  # r = 2: G resumes
    assert bal.train_g


def test_augment_batch_crops_and_flips():
    from train.data import augment_batch
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.uint8).view(2, 3, 8, 8)
    out = augment_batch(images, "none")
    torch.testing.assert_close(out, images.float() / 255)
    rng = torch.Generator().manual_seed(0)
    crops = augment_batch(images, "crop", pad=2, generator=rng)
    assert crops.shape == (2, 3, 8, 8)
    # A reflect-padded crop keeps only original pixel values; some shift happens across a few draws.
    assert set((crops * 255).round().unique().tolist()) <= set(images.float().unique().tolist())
    shifted = any(not torch.equal(augment_batch(images, "crop", pad=2, generator=rng), out) for _ in range(5))
    assert shifted


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
    with pytest.raises(ValueError, match="one class per code"):
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
    from helpers import TinyNet, tiny_generator
    from dgnam.nets.model import Model
    from train.evaluate_prior import sample_realism

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
    from helpers import TinyNet, tiny_generator
    from dgnam.nets.model import Model
    from dgnam.prior.sampler import CodeSampler
    from train.evaluate_prior import class_ceiling_grid, dgnam_images, sampler_images

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
        class_ceiling_grid(encoder, generator, torch.zeros(14, 3, 32, 32), images_u8, labels, ["red", "blue"], per_class=7)
    # DGN-AM rows: restarts of each class logit, class after class, and they drive their class.
    generator.metadata = {"code_prior": 0.0}
    dgn = dgnam_images(encoder, generator, 2, per_class=2)
    assert dgn.shape == (4, 3, 32, 32)
    logits = encoder(dgn)
    assert (logits[:2, 0] > logits[2:, 0]).all() and (logits[2:, 1] > logits[:2, 1]).all()


def test_evaluate_prior_counts_agreement_and_builds_the_grid_without_gradients():
    from helpers import TinyNet, tiny_generator
    from dgnam.nets.model import Model
    from train.evaluate_prior import evaluate

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
