"""Plain helpers shared by the test modules (fixtures live in conftest.py). Every test module imports
them one way, ``from helpers import ...``: pyproject's ``pythonpath`` puts tests/ on the path."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from dgnam.prior.generator import UpconvGenerator, cifar_arch

if TYPE_CHECKING:  # train imports Lightning: loaded only by the tests that train
    from train.generator import GeneratorModule


# --- tiny networks --------------------------------------------------------------------------------
class TinyNet(nn.Module):
    """A small conv classifier with named layers: conv (16x16 maps), fc1 (code), fc2 (logits)."""

    def __init__(self, n_classes: int = 10, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc1 = nn.Linear(8 * 16, 32)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(32, n_classes)

    def forward(self, x):
        x = self.pool(self.relu(self.conv(x))).flatten(1)
        return self.fc2(self.relu1(self.fc1(x)))


def tiny_generator(code_dim: int = 16, seed: int = 0) -> UpconvGenerator:
    torch.manual_seed(seed)
    gen = UpconvGenerator(cifar_arch(code_dim=code_dim, fc_dims=(32,), start_channels=8, widths=(8, 8, 8)))
    with torch.no_grad():
        # PyTorch's default init shrinks the signal layer by layer until the biases drown the code;
        # He init keeps images code-dependent, as in a trained generator.
        for layer in [*gen.fc.values(), *gen.convs.values()]:
            nn.init.kaiming_normal_(layer.weight, a=0.3, mode="fan_in" if isinstance(layer, nn.Linear) else "fan_out")
            nn.init.zeros_(layer.bias)
        gen.convs["conv0"].weight.mul_(2.0)
        gen.convs["conv0"].bias.fill_(0.5)  # outputs centred in [0, 1]
        # Realistic bounds: some units tight, some loose.
        gen.set_code_statistics(torch.linspace(0.2, 1.0, code_dim), torch.full((code_dim,), 0.3), k=3.0)
    return gen.eval()


# The code a 32-unit generator inverts: TinyNet's fc1 after its ReLU.
CODE_LAYER = "relu1"


def _image(seed: int = 0, size: int = 32) -> torch.Tensor:
    """A smooth random RGB image in [0, 1] (a few blobs), so inversions have structure to find."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, 4, 4, generator=g)
    return F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)[0]


# --- a model with known answers: unit i fires only on colour i (dataset examples, probe, gallery) ----
# Source text, so the CLI tests can hand the same model over as a factory file (`colours.py:make`).
COLOUR_MODEL = textwrap.dedent('''
    import torch
    from torch import nn

    PALETTE = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])


    class Detect(nn.Module):
        """Map c: 1 on pixels of colour c, 0 elsewhere (grey is far from every colour)."""

        def forward(self, x):
            dist = ((x[:, None] - PALETTE[None, :, :, None, None].to(x)) ** 2).sum(2)  # (B, C, H, W)
            return torch.relu(1 - 4 * dist)


    class ColourNet(nn.Module):
        """``detect``: a conv layer (4 x 32 x 32); ``fc``: each colour's share of the pixels."""

        def __init__(self):
            super().__init__()
            self.detect = Detect()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Flatten()

        def forward(self, x):
            return self.fc(self.pool(self.detect(x)))


    def make():
        return ColourNet()
''')
_colour_namespace: dict = {}
exec(COLOUR_MODEL, _colour_namespace)
ColourNet, PALETTE = _colour_namespace["ColourNet"], _colour_namespace["PALETTE"]


def colour_folder(root, per_colour=3, greys=4):
    """``per_colour`` images per colour (a square patch of side 6, 9, 12 ... at a known place) and grey ones,
    under shuffled names; returns {file name: (colour, side, (row, col) of the patch's top left)}."""
    rng = np.random.default_rng(0)
    truth = {}
    specs = [(c, 6 + 3 * j) for c in range(len(PALETTE)) for j in range(per_colour)] + [(None, 0)] * greys
    names = rng.permutation(len(specs))
    for (colour, side), name in zip(specs, names):
        img = np.full((32, 32, 3), 128, np.uint8)
        top, left = rng.integers(0, 32 - side, 2) if side else (0, 0)
        if colour is not None:
            img[top:top + side, left:left + side] = (PALETTE[colour].numpy() * 255).astype(np.uint8)
        file = root / f"img{name:03d}.png"
        Image.fromarray(img).save(file)
        truth[file.name] = (colour, side, (int(top), int(left)))
    return truth


# --- user models and the command line, as a user runs them ----------------------------------------
# A factory file `mynet.py:make` (5 classes) ...
USER_MODEL = textwrap.dedent("""
    import torch
    from torch import nn

    def make():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2, padding=1),
                             nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, 5))
""")
# ... and `nets.py:make_a` / `nets.py:make_b`, two of that architecture, for the analysis commands.
USER_MODELS = textwrap.dedent("""
    import torch
    from torch import nn

    def _net(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2, padding=1),
                             nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, 5))

    def make_a():
        return _net(0)

    def make_b():
        return _net(1)
""")


# ... and `ecosystem.py:NAME`, tiny random vision transformers and channels-last models of timm, Hugging Face
# and torchvision (nothing downloaded). No factory seeds itself: dgnam builds them under --seed.
ECOSYSTEM_MODELS = textwrap.dedent("""
    from dgnam.nets.model import Model


    def timm_vit():  # timm reads its own mean, std and input size (pretrained_cfg, img_size)
        import timm
        return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=32,
                                 depth=2, num_heads=2, num_classes=10, qk_norm=True)


    def hf_vit():  # Hugging Face: the size from the config
        from transformers import ViTConfig, ViTForImageClassification
        return ViTForImageClassification(ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                                   num_attention_heads=2, intermediate_size=64, num_labels=10))


    IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


    def swin():  # torchvision: blocks in channels-last (B, H, W, C)
        from torchvision.models.swin_transformer import SwinTransformer
        net = SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=[4, 4],
                              num_classes=10)
        return Model(net, input_size=32, name="swin", **IMAGENET)


    def convnext():  # torchvision: each block's middle in channels-last between two Permutes
        from torchvision.models.convnext import CNBlockConfig, ConvNeXt
        net = ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)], num_classes=10)
        return Model(net, input_size=32, name="convnext", **IMAGENET)
""")
# A layer of each kind per model: a token layer, a channels-last map, its true width (what `dgnam layers` must say).
ECOSYSTEM_LAYERS = {"timm_vit": ("blocks.0.mlp.fc1", "tokens:1", 128),
                    "hf_vit": ("vit.layers.0.mlp.fc1", "tokens:1", 64),
                    "swin": ("features.1", "channels_last", 16),
                    "convnext": ("features.1.0.block.3", "channels_last", 64)}


def ecosystem_model(name: str, tmp_path):
    """``ECOSYSTEM_MODELS``' factory ``name`` loaded as the CLI loads it (``ecosystem.py:name``), under seed 0."""
    from dgnam.nets.zoo import load_model

    path = tmp_path / "ecosystem.py"
    if not path.exists():
        path.write_text(ECOSYSTEM_MODELS)
    return load_model(f"{path}:{name}")


def as_from_a_terminal() -> None:
    """``preexec_fn`` of a command a test interrupts: SIGINT back to its default, as a terminal's command has it.
    A shell that starts the suite in the background ignores SIGINT there, and children inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(*args, cwd=None):
    """``python -m dgnam ARGS`` in a fresh interpreter: exit code, stdout and stderr as a user sees them."""
    return subprocess.run([sys.executable, "-m", "dgnam", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def _assert_run(out, n_images):
    """The files a synthesis run writes: one image per manifest entry, the grid, the version; the manifest."""
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["images"]) == n_images
    for entry in manifest["images"]:
        assert (out / entry["file"]).is_file()
        assert {"layer", "unit", "restart", "seed", "activation"} <= set(entry)
    assert (out / "grid.png").is_file()
    assert manifest["settings"]["dgnam_version"]
    return manifest


# --- the published DeePSiM fc6 generator --------------------------------------------------------------
# (name, stride) of the transposed convolutions, in order, as in the Caffe prototxt.
CONVS = [("deconv5", 2), ("conv5_1", 1), ("deconv4", 2), ("conv4_1", 1), ("deconv3", 2), ("conv3_1", 1),
         ("deconv2", 2), ("deconv1", 2), ("deconv0", 2)]


# --- training through the real entry points (train/) ----------------------------------------------
def _common(tmp, root, name):
    return [f"--data.root={root}", f"--data.cache_dir={tmp / 'cache'}", "--data.batch_size=8",
            "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
            "--trainer.logger=lightning.pytorch.loggers.CSVLogger", f"--trainer.logger.save_dir={tmp / name}",
            "--trainer.enable_model_summary=false", "--seed_everything=0"]


def _train_encoder(tmp, root):
    from train import classifier

    path = tmp / "enc.pt"
    classifier.main(["fit", "--config", "configs/cifar10/encoder.yaml", *_common(tmp, root, "enc"),
                     "--model.arch_kwargs={widths: [4, 4, 4, 4], code_dim: 16}", f"--model.export_path={path}",
                     "--trainer.callbacks=[]"])
    return path


def _tiny_module(tmp_path, upsample: str | None = "nearest", **module_kwargs) -> GeneratorModule:
    """A GeneratorModule on a tiny random VGG encoder written to ``tmp_path / "enc.pt"``."""
    from dgnam.io import atomic_save
    from dgnam.nets.classifiers import CIFAR10_MEAN, CIFAR10_STD, build_classifier, classifier_checkpoint
    from train import generator

    kwargs = {"widths": [4, 4, 4, 4], "code_dim": 16}
    atomic_save(classifier_checkpoint("cifar_vgg", kwargs, build_classifier("cifar_vgg", kwargs).state_dict(),
                                      mean=CIFAR10_MEAN, std=CIFAR10_STD, input_size=32,
                                      metadata={"classes": ["a", "b"]}),
                tmp_path / "enc.pt")
    generator_kwargs = {"code_dim": 64, "start_channels": 4, "widths": [8, 8, 8], "spatial_code": True}
    if upsample:
        generator_kwargs["upsample"] = upsample
    return generator.GeneratorModule(encoder=str(tmp_path / "enc.pt"), discriminator_convs=[[8, 3, 1], [8, 4, 2]],
                                     discriminator_code_dims=[8], generator_kwargs=generator_kwargs, **module_kwargs)
