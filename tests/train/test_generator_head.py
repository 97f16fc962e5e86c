"""train.generator_head: the fc6 recipe's stages on tiny nets, through the committed configs."""

import csv

import pytest
import torch

from dgnam import DgnamError, load_classifier, load_generator
from train import classifier, generator

from helpers import _common, _train_encoder


def test_fc6_pipeline_trunk_head_conv_prior_fc_regression_then_deepsim(tmp_path, image_root):
    """The shipped recipe's stages on tiny nets, through the committed configs: trunk -> CaffeNet head on
    the frozen trunk -> conv-map prior -> FC layers regressed from fc6 onto its input -> DeePSiM on fc6."""
    from train import generator_head

    trunk_path = _train_encoder(tmp_path, image_root)
    enc_path = tmp_path / "enc_fc6.pt"
    classifier.main(["fit", "--config", "configs/cifar10/encoder_fc6.yaml", *_common(tmp_path, image_root, "head"),
                     "--model.arch_kwargs={widths: [4, 4, 4, 4], head: flatten, code_dim: 32, fc7_dim: 16}",
                     f"--model.init_from={trunk_path}", f"--model.export_path={enc_path}", "--trainer.callbacks=[]"])
    trunk, enc = load_classifier(trunk_path), load_classifier(enc_path)
    images = torch.rand(6, 3, 32, 32)
    acts = enc.run(images, ["features.relu4_2", "relu6"])
    # The trunk stayed frozen (BatchNorm statistics included): the conv code and comparator are the
    # trunk's, up to the float16 the config stores the weights in (half the file; loaded back as float32).
    trunk_state = torch.load(trunk_path, weights_only=True)["state_dict"]
    enc_state = torch.load(enc_path, weights_only=True)["state_dict"]
    assert enc_state["fc6.weight"].dtype == torch.float16 and enc.module.fc6.weight.dtype == torch.float32
    for name, value in trunk_state.items():
        if name.startswith("features."):
            expected = value.half() if value.is_floating_point() else value
            assert torch.equal(enc_state[name], expected), name
    torch.testing.assert_close(acts["features.relu4_2"], trunk.run(images, ["features.relu4_2"])["features.relu4_2"],
                               atol=2e-2, rtol=2e-2)
    assert acts["relu6"].shape == (6, 32) and (acts["relu6"] >= 0).all()  # the fc6 code: flattened map, post-ReLU
    assert enc.metadata["frozen"] == ["features"]

    conv_path, conv_ckpt = tmp_path / "g_conv4.pt", tmp_path / "gconv"
    generator.main(["fit", "--config", "configs/cifar10/generator.yaml", *_common(tmp_path, image_root, "gconv"),
                    "--trainer.max_epochs=-1", "--trainer.max_steps=2", f"--model.encoder={enc_path}",
                    f"--model.export_path={conv_path}",
                    "--model.generator_kwargs={code_dim: 64, start_channels: 4, widths: [8, 8, 8], spatial_code: true}",
                    "--model.discriminator_convs=[[8, 3, 1], [8, 4, 2]]", "--model.discriminator_code_dims=[8]",
                    "--trainer.limit_val_batches=0", f"--trainer.callbacks.init_args.dirpath={conv_ckpt}"])

    start_path = tmp_path / "g_fc6_start.pt"
    head_args = ["fit", "--config", "configs/cifar10/generator_fc6_head.yaml", f"--data.root={image_root}",
                 f"--data.cache_dir={tmp_path / 'cache'}", "--data.batch_size=8",
                 "--trainer.enable_model_summary=false",
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
            residual = (module.predicted_map(fc6) - conv_code).pow(2).sum()
            return float(residual / (conv_code - conv_code.mean(0)).pow(2).sum())
    before = unexplained(untrained)
    generator_head.main([*head_args, "--trainer.max_epochs=30"])
    start = load_generator(start_path)
    fitted = generator_head.GeneratorHeadModule(conv_generator=str(conv_path), encoder=str(enc_path), fc_dims=[48])
    fitted.generator.load_state_dict(start.state_dict())
    assert unexplained(fitted) < 0.5 * before  # the FC layers learned the fc6 -> conv-map regression
    metrics = next((tmp_path / "ghead").rglob("metrics.csv"))
    assert sum(1 for row in csv.DictReader(open(metrics)) if row.get("test/unexplained")) == 30  # once an epoch

    # test/unexplained is 1 - R2 (variance-weighted) over the whole test set, not a mean of per-batch ratios.
    torch.manual_seed(0)
    codes = torch.rand(40, 32)
    with torch.no_grad():
        target = untrained.predicted_map(codes) + torch.randn(40, conv_code.shape[1]) + 3 * torch.rand(40, 1)
        target[:10] *= 5  # batches of other spreads: a mean of their ratios would differ
        untrained.validation_step((codes[:10], target[:10]), 0)
        untrained.validation_step((codes[10:], target[10:]), 1)
        residual = (untrained.predicted_map(codes) - target).double().pow(2).sum()
    whole_set = float(residual / (target.double() - target.double().mean(0)).pow(2).sum())
    assert abs(float(1 - untrained.test_r2.compute()) - whole_set) < 1e-4 * whole_set
    conv = load_generator(conv_path)
    assert start.encoder_layer == "relu6" and start.code_dim == 32 and torch.isfinite(start.code_upper_bound).all()
    # The bounds come from the training images' own codes (24), not their mirror images too (48).
    assert start.metadata["code_summary"]["n_images"] == len(pairs.train_codes) == 24
    torch.testing.assert_close(start.code_upper_bound, pairs.train_codes.mean(0) + start.metadata["bound_k"] *
                               pairs.train_codes.std(0), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(start.convs.state_dict(), conv.convs.state_dict())  # the conv prior's layers, unchanged
    with pytest.raises(DgnamError, match="already starts with FC layers"):
        generator_head.main([*head_args, f"--model.conv_generator={start_path}"])

    fc6_path = tmp_path / "g_fc6.pt"
    generator.main(["fit", "--config", "configs/cifar10/generator_fc6.yaml", *_common(tmp_path, image_root, "gfc6"),
                    "--trainer.max_epochs=-1", "--trainer.max_steps=2", f"--model.encoder={enc_path}",
                    "--model.generator_kwargs={code_dim: 32, fc_dims: [48], start_channels: 4, widths: [8, 8, 8], "
                    "start_convs: true}",
                    f"--model.init_generator={start_path}", f"--model.export_path={fc6_path}",
                    "--model.discriminator_convs=[[8, 3, 1], [8, 4, 2]]", "--model.discriminator_code_dims=[8]",
                    "--trainer.limit_val_batches=0", f"--trainer.callbacks.init_args.dirpath={tmp_path / 'gfc6ckpt'}"])
    trained = load_generator(fc6_path)
    assert trained.metadata["iterations"] == 2 and trained.encoder_layer == "relu6" and trained.arch == start.arch
    assert not torch.equal(trained.fc["defc5"].weight, start.fc["defc5"].weight)  # trained end to end, FC included
    assert not torch.equal(trained.convs["conv0"].weight, start.convs["conv0"].weight)
