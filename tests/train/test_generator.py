"""train.generator: tiny end-to-end training through the real LightningCLI entry point, plus resume, the
loss terms, the weight average and the D-pausing rule."""

import pytest
import torch

from dgnam import DgnamError, load_classifier, load_generator
from train import generator
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
    shipped = open("configs/cifar10/generator.yaml").read()
    assert "  lambda_adv: 0.005\n" in shipped and "lambda_class" not in shipped
    config.write_text(shipped.replace("  lambda_adv: 0.005\n", "  lambda_adv: 0.005\n  lambda_class: 0.25\n"))
    args = ["fit", "--config", str(config), *_common(tmp_path, image_root, "gen"),
            "--trainer.max_epochs=-1", f"--model.encoder={enc_path}", f"--model.export_path={gen_path}",
            # The shipped config's spatial code and resize-conv upsampling: the tiny encoder's
            # features.relu4_2 is 4x4x4 = 64 values.
            "--model.generator_kwargs={code_dim: 64, start_channels: 4, widths: [8, 8, 8], spatial_code: true, "
            "upsample: nearest}",
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
    torch.testing.assert_close(resumed["state_dict"]["convs.conv0.weight"],
                               last["state_dict"]["generator_ema.module.convs.conv0.weight"])
    assert int(last["state_dict"]["generator_ema.n_averaged"]) > 0 and "generator_ema" not in last["dgnam"]
    # Training seconds go on across the resume (the checkpoint's Timer state was dropped above: the
    # count comes from its dgnam.train_seconds, as for a checkpoint saved before the Timer).
    assert last["callbacks"]["Timer"]["time_elapsed"]["train"] >= ckpt["dgnam"]["train_seconds"] > 0
    assert not torch.equal(resumed["state_dict"]["convs.conv0.weight"], live)  # the average, not the last step

    # Export a stopped run's last checkpoint without training further.
    again = tmp_path / "gen_again.pt"
    generator.main(["export", str(ckpt_dir / "last.ckpt"), str(again)])
    exported = torch.load(again, weights_only=True)
    assert exported["metadata"]["iterations"] == 5
    assert torch.equal(exported["state_dict"]["convs.conv0.weight"], resumed["state_dict"]["convs.conv0.weight"])


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
    assert not module.has_average
    module.generator_ema.update_parameters(module.generator)  # the first update starts the average at the weights
    with torch.no_grad():
        weight.add_(1.0)
    module.generator_ema.update_parameters(module.generator)  # 0.75 * start + 0.25 * (start + 1)
    with module.averaged_generator():
        torch.testing.assert_close(weight, start + 0.25)
    torch.testing.assert_close(weight, start + 1.0)  # the live weights come back after the block
    assert not any(p.requires_grad for p in module.generator_ema.parameters())  # no optimizer or DDP reducer sees it

    # A checkpoint round trip, as Lightning does it: the hook first, then the state dict (strict).
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert "generator_ema" not in checkpoint["dgnam"]
    other = _resumed(module, checkpoint)
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
    off = _tiny_module(tmp_path)  # ema_decay 0: no average, the block is a no-op
    assert off.generator_ema is None
    live = off.generator.convs.conv0.weight.detach().clone()
    with off.averaged_generator():
        torch.testing.assert_close(off.generator.convs.conv0.weight, live)


def _resumed(module, checkpoint, **hparams):
    """A new module of ``module``'s settings (with ``hparams`` changed) loading ``checkpoint`` as Lightning does."""
    other = generator.GeneratorModule(**{**module.hparams, **hparams})
    other.on_load_checkpoint(checkpoint)
    other.load_state_dict(checkpoint["state_dict"])
    return other


def _legacy_checkpoint(module) -> dict:
    """What a checkpoint of ``module`` looked like when the average was a dict beside the state dict."""
    state = {k: v.clone() for k, v in module.state_dict().items() if not k.startswith("generator_ema.")}
    average = {name: p.detach().clone() for name, p in module.generator_ema.module.named_parameters()}
    return {"state_dict": state, "dgnam": {"train_d": False, "train_g": True, "train_seconds": 12.5,
                                           "generator_ema": average}}


def test_checkpoints_of_every_layout_load_into_the_averaged_model(tmp_path):
    torch.manual_seed(0)
    module = _tiny_module(tmp_path, ema_decay=0.75)
    weight = module.generator.convs.conv0.weight
    start = weight.detach().clone()
    module.generator_ema.update_parameters(module.generator)
    with torch.no_grad():
        weight.add_(1.0)
    module.generator_ema.update_parameters(module.generator)

    # Saved before the average was an AveragedModel: it is moved into the state dict and used.
    legacy = _legacy_checkpoint(module)
    other = _resumed(module, legacy)
    assert other.has_average and not other.balance.train_d and other.train_seconds() == 12.5
    assert legacy["callbacks"]["Timer"] == {"time_elapsed": {"train": 12.5}}  # the Timer goes on from there
    with other.averaged_generator():
        torch.testing.assert_close(other.generator.convs.conv0.weight, start + 0.25)
    torch.testing.assert_close(other.generator.convs.conv0.weight, start + 1.0)
    averaged = generator.averaged_weights(_legacy_checkpoint(module))
    torch.testing.assert_close(averaged["convs.conv0.weight"], start + 0.25)

    # Saved with the average off, resumed with it on: the first update starts it from the weights.
    (tmp_path / "plain").mkdir()  # its own encoder file: the one above stays what `module` was trained against
    plain = _tiny_module(tmp_path / "plain")
    fresh = _resumed(plain, {"state_dict": plain.state_dict()}, ema_decay=0.5)
    assert not fresh.has_average
    fresh.generator_ema.update_parameters(fresh.generator)
    with fresh.averaged_generator():
        torch.testing.assert_close(fresh.generator.convs.conv0.weight, plain.generator.convs.conv0.weight)

    # Saved with it on (either layout), resumed with it off: the average is dropped.
    for checkpoint in ({"state_dict": module.state_dict()}, _legacy_checkpoint(module)):
        off = _resumed(module, checkpoint, ema_decay=0.0)
        assert off.generator_ema is None and not off.has_average
        torch.testing.assert_close(off.generator.convs.conv0.weight, start + 1.0)


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
                        generator_kwargs={"code_dim": 64, "start_channels": 4, "widths": [8, 8, 8],
                                          "spatial_code": True})


def test_the_encoder_loads_through_the_model_zoo_and_bad_settings_are_one_line(tmp_path):
    # A classifier file at another input side (nets.zoo.load_model honours it): the 4x4 code becomes 6x6.
    with pytest.raises(DgnamError, match=r"gives 144 values \(4, 6, 6\) but the generator takes code_dim=64"):
        _tiny_module(tmp_path, encoder_input_size=48)
    with pytest.raises(DgnamError, match="--model.generator_arch 'dcgan' is unknown; use cifar or fc6"):
        _tiny_module(tmp_path, generator_arch="dcgan")


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
