"""Cross-cutting, so at the top level: ImageNet-size nets, prior and training together.

The paper's ImageNet configuration at full size on CPU: AlexNet encoder, the 56M-parameter fc6
generator, 256 output centre-cropped to the encoder's input (random AlexNet weights: nothing downloads)."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import yaml
from lightning.pytorch.cli import LightningCLI
from PIL import Image

from dgnam import load_generator
from dgnam.nets.model import Model
from train.data import ImageFolderData
from train.generator import GeneratorModule

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "imagenet" / "fc6_generator.yaml"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def alexnet():
    torch.manual_seed(0)
    return torchvision.models.alexnet()


@pytest.mark.parametrize("input_size, offset", [(227, 14), (224, 16)])  # CaffeNet (the paper), torchvision
def test_generator_output_is_centre_cropped_to_the_encoder(alexnet, input_size, offset):
    encoder = Model(alexnet, input_size=input_size, mean=IMAGENET_MEAN, std=IMAGENET_STD, fit="crop")
    images = torch.rand(2, 3, 256, 256)
    cropped = images[..., offset:offset + input_size, offset:offset + input_size]
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.equal(encoder.preprocess(images), (cropped - mean) / std)
    acts = encoder.run(images, ["classifier.2", "features.12"])
    assert acts["classifier.2"].shape == (2, 4096) and (acts["classifier.2"] >= 0).all()  # fc6 after ReLU
    assert acts["features.12"].shape == (2, 256, 6, 6)  # pool5, the comparator


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        folder = root / split / "n01440764"
        folder.mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(folder / f"{i}.JPEG", quality=90)
    return root


def test_one_training_step_of_the_full_fc6_setup(tmp_path, imagenet_like):
    # The shipped config as LightningCLI reads it; only what needs a GPU, ImageNet or weights is overridden.
    assert yaml.safe_load(CONFIG.read_text())["model"]["encoder"] == "torchvision:alexnet"
    cli = LightningCLI(GeneratorModule, ImageFolderData, run=False, save_config_callback=None, args=[
        "--config", str(CONFIG), "--model.encoder=torchvision:alexnet:none",
        f"--model.export_path={tmp_path / 'fc6.pt'}",
        f"--data.root={imagenet_like}", "--data.batch_size=2", "--data.num_workers=0",
        "--trainer.max_steps=1", "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.strategy=auto",
        "--trainer.precision=32-true", "--trainer.logger=false", "--trainer.callbacks=[]",
        "--trainer.enable_checkpointing=false", "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={tmp_path}"])
    module, trainer = cli.model, cli.trainer
    G, D = module.generator, module.discriminator
    assert G.image_size == 256 and G.output_space == "caffe_bgr"
    assert abs(sum(p.numel() for p in G.parameters()) - 56.1e6) < 0.1e6
    assert module.encoder.input_size == 224 and module.encoder.fit == "crop"
    before_g, before_d = G.convs["deconv0"].weight.clone(), D.head[-1].weight.clone()

    trainer.fit(module, cli.datamodule)

    assert trainer.global_step == 1
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert all(np.isfinite(metrics[k]) for k in ("loss/img", "loss/feat", "loss/adv", "loss/d_real", "loss/d_fake"))
    assert metrics["balance/train_g"] == 1.0 and metrics["balance/train_d"] == 1.0  # both networks stepped
    assert not torch.equal(G.convs["deconv0"].weight, before_g)
    assert not torch.equal(D.head[-1].weight, before_d)
    exported = load_generator(tmp_path / "fc6.pt")
    assert exported.image_size == 256 and exported.code_dim == 4096 and exported.encoder_layer == "classifier.2"
    assert exported.metadata["iterations"] == 1
    # Bounds from the real-image code statistics: mean + 3 std per unit, >= 0 (post-ReLU code).
    torch.testing.assert_close(exported.code_upper_bound, exported.code_mean + 3 * exported.code_std)
    assert (exported.code_upper_bound >= 0).all() and exported.metadata["code_summary"]["n_images"] == 2


def test_shipped_config_names_the_paper_layers(alexnet):
    config = yaml.safe_load(CONFIG.read_text())
    model = config["model"]
    arch = (model["generator_arch"], model["code_layer"], model["comparator_layer"])
    assert arch == ("fc6", "classifier.2", "features.12")
    assert model["encoder_fit"] == "crop" and config["data"]["image_size"] == 256
    assert config["trainer"]["strategy"] == "ddp_find_unused_parameters_true"
    # The names refer to these modules of torchvision's AlexNet.
    assert isinstance(alexnet.classifier[2], torch.nn.ReLU) and isinstance(alexnet.features[12], torch.nn.MaxPool2d)
