"""Classifier training (the CIFAR encoder, and judges of other architectures) as a LightningModule.

Run: ``python -m train.classifier fit --config configs/cifar10/encoder.yaml``.
At the end of ``fit`` the network is exported as a plain dgnam classifier checkpoint
(state dict + metadata, loadable with ``weights_only=True``) to ``export_path``.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from dgnam.errors import DgnamError
from dgnam.io import atomic_save
from dgnam.nets.classifiers import CIFAR10_MEAN, CIFAR10_STD, build_classifier, classifier_checkpoint, load_classifier
from train.cli import TrainCLI
from train.data import ImageFolderData
from train.entry import run_main
from train.settings import check_export_path, check_numbers
from train.timing import TimedModule


class ClassifierModule(TimedModule):
    """Cross-entropy training of a ``dgnam.nets`` architecture on RGB [0,1] images.

    Args:
        arch: name in ``dgnam.nets.ARCHITECTURES``; ``arch_kwargs`` its constructor arguments.
        adv_eps: if > 0, fast adversarial training (FGSM with random start, Wong et al. 2020) in
            the L-inf ball of this radius on [0,1] images; gives a robust judge.
        optimizer: ``sgd`` (Nesterov momentum) or ``adamw``; either with a one-cycle schedule peaking at ``lr``.
        export_dtype: ``float32`` or ``float16``: the type the exported weights are stored in (half the
            file for a large fc head; loading casts them back).
        init_from: a dgnam classifier file whose parameters of the same name and shape start this
            network (e.g. a trained conv trunk under a new head).
        freeze: module names (e.g. ``[features]``) whose parameters stay fixed and whose BatchNorm
            stays in inference mode; each must have been filled by ``init_from``.
        export_path: where to write the dgnam checkpoint when ``fit`` ends (None: no export).
    """

    def __init__(self, arch: str = "cifar_vgg", arch_kwargs: dict | None = None, lr: float = 0.1,
                 momentum: float = 0.9, weight_decay: float = 5e-4, label_smoothing: float = 0.0,
                 adv_eps: float = 0.0, mean: tuple[float, ...] = CIFAR10_MEAN, std: tuple[float, ...] = CIFAR10_STD,
                 optimizer: str = "sgd", init_from: str | None = None, freeze: list[str] | None = None,
                 export_dtype: str = "float32",
                 export_path: str | None = None, description: str = "") -> None:
        super().__init__()
        if optimizer not in ("sgd", "adamw"):
            raise DgnamError(f"--model.optimizer {optimizer!r} is unknown; use sgd or adamw")
        if export_dtype not in ("float32", "float16"):
            raise DgnamError(f"--model.export_dtype {export_dtype!r} is unknown; use float32 or float16")
        check_numbers(lr=lr, momentum=momentum, weight_decay=weight_decay, label_smoothing=label_smoothing,
                      adv_eps=adv_eps)
        check_export_path(export_path)
        if freeze and not init_from:
            raise DgnamError("--model.freeze keeps random weights fixed without --model.init_from; "
                             "pass the classifier file that trained them")
        self.save_hyperparameters()
        self.net = build_classifier(arch, arch_kwargs or {})
        self.frozen = [self._submodule(name) for name in freeze or []]
        if init_from:
            self._start_from(init_from)
        for module in self.frozen:
            module.requires_grad_(False)
            # Lightning keeps each submodule's mode as built (it never calls train() on the module),
            # so frozen BatchNorm must be put in inference mode here; train() below keeps it there.
            module.eval()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        # The fraction right over the whole test set, gathered from every rank under DDP.
        outputs = [m for m in self.net.modules() if isinstance(m, nn.Linear)][-1].out_features  # the logits' layer
        self.test_acc = MulticlassAccuracy(num_classes=outputs, average="micro")
        self._epoch_started_at = 0.0  # train_seconds() when the epoch began
        self.test_accuracy = float("nan")

    def _submodule(self, name: str) -> torch.nn.Module:
        try:
            return self.net.get_submodule(name)
        except AttributeError:
            names = ", ".join(n for n, _ in self.net.named_children())
            raise DgnamError(f"--model.freeze names {name!r}, which {self.hparams.arch} lacks; use one of "
                             f"{names}") from None

    def _start_from(self, path: str) -> None:
        """Copy every parameter and buffer of ``path`` whose name and shape match this network's."""
        start = load_classifier(path).module.state_dict()
        own = self.net.state_dict()
        copied = {k: v for k, v in start.items() if k in own and own[k].shape == v.shape}
        frozen_names = {f"{name}.{k}" for name in self.hparams.freeze or [] for k in self._submodule(name).state_dict()}
        missing = sorted(frozen_names - set(copied))
        if missing:
            raise DgnamError(f"--model.init_from '{path}' has no weights of matching shape for {missing[0]} "
                             f"(and {len(missing) - 1} more) that --model.freeze would keep; pass a file of "
                             f"this architecture's trunk")
        self.net.load_state_dict(copied, strict=False)

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.frozen:
            module.eval()  # frozen BatchNorm keeps its running statistics
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net((images - self.mean) / self.std)

    def _fgsm_rs(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        eps = self.hparams.adv_eps
        delta = torch.empty_like(images).uniform_(-eps, eps).requires_grad_(True)
        loss = F.cross_entropy(self((images + delta).clamp(0, 1)), labels)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta + 1.25 * eps * grad.sign()).clamp(-eps, eps).detach()
        return (images + delta).clamp(0, 1)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        if self.hparams.adv_eps > 0:
            images = self._fgsm_rs(images, labels)
        logits = self(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.hparams.label_smoothing)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", (logits.argmax(1) == labels).float().mean(), prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        logits = self(images)
        self.test_acc(logits, labels)
        self.log("test/acc", self.test_acc, prog_bar=True)
        self.log("test/loss", F.cross_entropy(logits, labels), sync_dist=True)

    def on_train_epoch_start(self) -> None:
        self._epoch_started_at = self.train_seconds()

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        acc = self.trainer.callback_metrics.get("test/acc")
        self.test_accuracy = float(acc) if acc is not None else float("nan")
        total = self.train_seconds()
        print(f"epoch {self.current_epoch}: test acc {self.test_accuracy:.4f}, "
              f"{total - self._epoch_started_at:.0f}s, total {total:.0f}s", flush=True)

    def configure_optimizers(self):
        hp = self.hparams
        trained = [p for p in self.net.parameters() if p.requires_grad]
        groups = [{"params": [p for p in trained if p.ndim > 1], "weight_decay": hp.weight_decay},
                  {"params": [p for p in trained if p.ndim <= 1], "weight_decay": 0.0}]
        if hp.optimizer == "adamw":
            opt = torch.optim.AdamW(groups, lr=hp.lr)
        else:
            opt = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, nesterov=True)
        steps = self.trainer.estimated_stepping_batches
        # OneCycleLR divides by its warm-up's length, pct_start * steps - 1: zero for a run of 4 steps at 0.25.
        pct_start = 0.25 if steps * 0.25 != 1 else 0.5
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=hp.lr, total_steps=steps, pct_start=pct_start)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_fit_end(self) -> None:
        if not self.hparams.export_path or not self.trainer.is_global_zero:
            return
        hp = self.hparams
        dm = self.trainer.datamodule
        metadata = {"classes": list(getattr(dm, "classes", [])), "test_accuracy": self.test_accuracy,
                    "adv_eps": hp.adv_eps, "epochs": self.current_epoch,
                    "init_from": hp.init_from, "frozen": list(hp.freeze or []),
                    "train_seconds": round(self.train_seconds()), "description": hp.description}
        ckpt = classifier_checkpoint(hp.arch, hp.arch_kwargs or {}, self.net.state_dict(),
                                     mean=hp.mean, std=hp.std, input_size=dm.hparams.image_size, metadata=metadata,
                                     weights_dtype=getattr(torch, hp.export_dtype))
        atomic_save(ckpt, hp.export_path)
        print(f"exported {hp.export_path} (test acc {self.test_accuracy:.4f})", flush=True)


def main(args: list[str] | None = None) -> None:
    torch.set_float32_matmul_precision("high")
    TrainCLI(ClassifierModule, ImageFolderData, args=args, save_config_kwargs={"overwrite": True})


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m train.classifier"))
