"""A starting fc-code generator from a conv-code one: regress FC layers from the fc code to the conv code.

An encoder's conv map (e.g. ``features.relu4_2``, 256x4x4) and its fc code (``relu6``, read from that
map) hold the same image; a generator already trained to invert the conv map (``conv_generator``)
needs only FC layers (the paper's defc layers) that predict the conv map from the fc code. They are
fitted here by mean squared error on precomputed code pairs of the training images (and their mirror
images), which takes minutes; the result is a full fc-code generator (the FC layers, then the conv
generator's layers unchanged) that already reconstructs images, for ``train.generator`` to train end to
end with the DeePSiM losses (``--model.init_generator``).

Run: ``python -m train.generator_head fit --config configs/cifar10/generator_fc6_head.yaml``
"""

from __future__ import annotations

import sys

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.regression import R2Score

from dgnam.errors import DgnamError
from dgnam.nets.classifiers import load_classifier
from dgnam.prior.generator import UpconvGenerator, fc_layers, load_generator
from dgnam.prior.stats import summarize_codes
from train.cli import TrainCLI
from train.data import load_uint8
from train.entry import run_main
from train.settings import check_export_path, check_numbers
from train.timing import TimedModule


def fc_generator_arch(conv_arch: dict, code_dim: int, fc_dims: list[int]) -> dict:
    """``conv_arch`` (a generator whose code is its start map) with FC layers from a ``code_dim`` code in front."""
    if conv_arch["fc"]:
        raise DgnamError("--model.conv_generator already starts with FC layers; pass a generator of a conv map")
    c, h, w = conv_arch["start_shape"]
    dims = [*fc_dims, c * h * w]
    return {**conv_arch, "code_dim": int(code_dim), "fc": fc_layers(dims)}


class CodePairData(L.LightningDataModule):
    """(fc code, conv code) pairs of an encoder on an ImageFolder tree, computed once per split; the conv code is
    the layer ``conv_generator`` inverts. The training pairs include each image's mirror image (the encoder's codes
    differ; the pair stays true), so the FC layers see twice the codes for the cost of one more encoder pass.
    ``train_codes`` keeps the fc codes of the training images as they are (no mirror images): the exported
    generator's code statistics.
    """

    def __init__(self, root: str = "../shared/data/cifar10", encoder: str = "checkpoints/cifar10/encoder_fc6.pt",
                 code_layer: str = "relu6", conv_generator: str = "checkpoints/cifar10/generator.pt",
                 image_size: int = 32,
                 batch_size: int = 256, cache_dir: str | None = ".cache/dgnam", mirror: bool = True,
                 subset: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()

    @torch.no_grad()
    def _pairs(self, split: str, mirror: bool) -> tuple[TensorDataset, torch.Tensor]:
        """The split's (code, target) pairs, and the codes of its images alone (mirror images excluded)."""
        hp = self.hparams
        images, _, self.classes = load_uint8(f"{hp.root}/{split}", hp.image_size, hp.cache_dir)
        if hp.subset:
            images = images[: hp.subset]
        encoder = load_classifier(hp.encoder)
        target_layer = load_generator(hp.conv_generator).encoder_layer
        codes, targets, originals = [], [], []
        for start in range(0, len(images), 500):
            batch = images[start:start + 500].float() / 255
            for view in (batch, batch.flip(3)) if mirror else (batch,):
                acts = encoder.run(view, [hp.code_layer, target_layer])
                codes.append(acts[hp.code_layer].flatten(1))
                targets.append(acts[target_layer].flatten(1))
            originals.append(codes[-2 if mirror else -1])
        return TensorDataset(torch.cat(codes), torch.cat(targets)), torch.cat(originals)

    def setup(self, stage: str | None = None) -> None:
        self.train_set, self.train_codes = self._pairs("train", self.hparams.mirror)
        self.test_set, _ = self._pairs("test", False)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=1000)


class GeneratorHeadModule(TimedModule):
    """Fits the FC layers of an fc-code generator to predict a conv-code generator's input.

    Args:
        conv_generator: a dgnam generator of the encoder's conv map (its layers are copied and frozen).
        encoder: the dgnam classifier whose ``code_layer`` is the new generator's code.
        code_layer: the fc code (post-ReLU), e.g. ``relu6``.
        fc_dims: hidden FC widths before the last FC layer, which outputs the conv map.
        lr, weight_decay: AdamW with a one-cycle schedule.
        bound_k: code_upper_bound = mean + bound_k * std over the training images, stored in the export.
        export_path: where to write the dgnam generator when ``fit`` ends.
    """

    def __init__(self, conv_generator: str = "checkpoints/cifar10/generator.pt",
                 encoder: str = "checkpoints/cifar10/encoder_fc6.pt", code_layer: str = "relu6",
                 fc_dims: list[int] | None = None, lr: float = 1e-3, weight_decay: float = 1e-4,
                 bound_k: float = 3.0, export_path: str | None = None) -> None:
        super().__init__()
        check_numbers(lr=lr, weight_decay=weight_decay, bound_k=bound_k)
        check_export_path(export_path)
        self.save_hyperparameters()
        conv = load_generator(conv_generator)
        encoder_model = load_classifier(encoder)
        with torch.no_grad():
            code_dim = encoder_model.run(torch.zeros(1, 3, conv.image_size, conv.image_size),
                                         [code_layer])[code_layer][0].numel()
        arch = fc_generator_arch(conv.arch, code_dim, list(fc_dims or [2048]))
        self.generator = UpconvGenerator(arch, conv.output_space, encoder_layer=code_layer, encoder=encoder)
        self.generator.convs.load_state_dict(conv.convs.state_dict())
        self.generator.convs.requires_grad_(False)
        self.target_layer = conv.encoder_layer
        # 1 - R2 over the whole test set, every conv-map value an output weighted by its variance:
        # sum of squared residuals / sum of squared deviations from each value's mean (torchmetrics
        # counts an output whose target is constant, or whose residual sum is under 1e-4, as explained).
        self.test_r2 = R2Score(multioutput="variance_weighted")

    def predicted_map(self, code: torch.Tensor) -> torch.Tensor:
        """The FC layers' output (B, C*H*W): what the conv layers receive."""
        for layer in self.generator.fc.values():
            code = self.generator.act(layer(code))
        return code

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        code, target = batch
        loss = F.mse_loss(self.predicted_map(code), target)
        self.log("train/mse", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        code, target = batch
        self.test_r2.update(self.predicted_map(code), target)

    def on_validation_epoch_end(self) -> None:
        # The fraction of the conv map's variance the fc code leaves unexplained (synced over ranks).
        unexplained = 1 - self.test_r2.compute()
        self.test_r2.reset()
        self.log("test/unexplained", unexplained)
        if not self.trainer.sanity_checking:
            print(f"epoch {self.current_epoch}: unexplained variance of {self.target_layer} {float(unexplained):.4f}, "
                  f"{self.train_seconds():.0f}s", flush=True)

    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.AdamW(self.generator.fc.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=hp.lr,
                                                    total_steps=self.trainer.estimated_stepping_batches,
                                                    pct_start=0.1)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    @torch.no_grad()
    def on_fit_end(self) -> None:
        hp = self.hparams
        if not hp.export_path or not self.trainer.is_global_zero:
            return
        dm = self.trainer.datamodule
        mean, std, summary = summarize_codes([dm.train_codes])  # computed once with the pairs
        self.generator.set_code_statistics(mean, std, hp.bound_k)
        metadata = {"iterations": 0, "weights": f"FC layers regressed onto {self.target_layer} codes",
                    "init_from": hp.conv_generator, "bound_k": hp.bound_k, "code_layer": hp.code_layer,
                    "code_summary": summary, "train_seconds": round(self.train_seconds()),
                    "classes": list(dm.classes)}
        self.generator.save(hp.export_path, metadata)
        print(f"exported {hp.export_path}: code zeros {summary['zero_fraction']:.2f}", flush=True)


class GeneratorHeadCLI(TrainCLI):
    """The data's encoder, code layer and conv generator are the model's (set once, under ``model``)."""

    def add_arguments_to_parser(self, parser) -> None:
        for name in ("encoder", "code_layer", "conv_generator"):
            parser.link_arguments(f"model.{name}", f"data.{name}")


def main(args: list[str] | None = None) -> None:
    torch.set_float32_matmul_precision("high")
    GeneratorHeadCLI(GeneratorHeadModule, CodePairData, args=args, save_config_kwargs={"overwrite": True})


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m train.generator_head"))
