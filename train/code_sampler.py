"""Train a :class:`~dgnam.prior.sampler.CodeSampler`: a small GAN in a generator's code space.

Real codes are the frozen encoder's ``generator.encoder_layer`` activations on the training images,
computed once by :class:`CodeData` (on 2 CPU cores, encoding each batch again would cost as much as the
GAN step); the sampler maps z ~ N(0, I) to codes and a :class:`~train.networks.CodeCritic` tells them apart
(non-saturating GAN loss, R1 penalty on real codes, Mescheder et al. 2018). Optionally
(``lambda_image``) an :class:`~train.networks.ImageCritic` also judges G(sampler(z)) against the real
images, and the sampler is trained through the frozen G to fool it too. The generator itself is
not trained; every ``grid_every`` iterations a grid of G(sampler(z)) for fixed z is saved.

Run: ``python -m train.code_sampler fit --config configs/cifar10/code_sampler.yaml``; resume with
``--ckpt_path runs/code_sampler/ckpt/last.ckpt``; ``trainer.global_step`` counts sampler iterations.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torchvision.utils import save_image

from dgnam.errors import DgnamError
from dgnam.nets.zoo import load_model
from dgnam.prior.generator import load_generator
from dgnam.prior.sampler import CodeSampler, load_code_sampler
from dgnam.prior.stats import encode_all
from train.cli import TrainCLI, module_from_checkpoint, run
from train.data import load_uint8
from train.entry import run_main
from train.generator import check_ddp, code_shape
from train.networks import CodeCritic, ImageCritic
from train.settings import check_export_path, check_numbers, refuse_own_start
from train.timing import TimedModule


def critic_losses(critic: CodeCritic, real: torch.Tensor, fake: torch.Tensor, r1_gamma: float,
                  labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Non-saturating critic loss on a detached ``fake``, plus ``r1_gamma / 2 * E|grad_real D|^2``.

    ``labels``: the class of each real and fake row, for a conditional critic (fakes are drawn with
    the real batch's labels, so the classes keep their training frequencies)."""
    real = real.detach().requires_grad_(r1_gamma > 0)
    extra = () if labels is None else (labels,)
    real_logit = critic(real, *extra)
    fake_logit = critic(fake.detach(), *extra)
    loss = F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()
    r1 = torch.zeros((), device=real.device)
    if r1_gamma > 0:
        (grad,) = torch.autograd.grad(real_logit.sum(), real, create_graph=True)
        r1 = grad.pow(2).flatten(1).sum(1).mean()  # per sample, over every code unit or pixel
    return {"d": loss + r1_gamma / 2 * r1, "r1": r1, "real_logit": real_logit.mean().detach(),
            "fake_logit": fake_logit.mean().detach()}


def load_prior(generator: str, encoder: str | None = None):
    """``(generator, encoder, code_shape)``: a generator file and the frozen encoder whose code it inverts."""
    gen = load_generator(generator)
    enc = load_model(encoder or gen.encoder).eval()
    for p in [*gen.parameters(), *enc.parameters()]:
        p.requires_grad_(False)
    shape = code_shape(enc, gen.encoder_layer, gen.image_size)
    if math.prod(shape) != gen.code_dim:
        raise DgnamError(f"encoder layer {gen.encoder_layer!r} gives {math.prod(shape)} values but the generator takes "
                         f"{gen.code_dim}; pass the generator's own encoder as --model.encoder")
    return gen, enc, shape


class CodeData(L.LightningDataModule):
    """Batches of real codes (the generator's encoder layer on every training image, encoded once),
    the uint8 images they came from, and their class labels.

    Args:
        root: folder holding a ``train/`` ImageFolder tree.
        generator, encoder: linked from the model's settings (the code to learn).
        image_size: side of the images the encoder sees.
        cache_dir: where the decoded uint8 images are cached (the codes are recomputed: they depend
            on the encoder).
        subset: use only the first N training images (tests, quick runs).
    """

    def __init__(self, root: str = "../shared/data/cifar10", generator: str = "checkpoints/cifar10/generator.pt",
                 encoder: str | None = None, image_size: int = 32, batch_size: int = 128,
                 cache_dir: str | None = ".cache/dgnam", subset: int | None = None, encode_batch: int = 500) -> None:
        super().__init__()
        self.save_hyperparameters()

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        images, labels, self.classes = load_uint8(f"{hp.root}/train", hp.image_size, hp.cache_dir)
        if hp.subset:
            images, labels = images[: hp.subset], labels[: hp.subset]
        gen, enc, _ = load_prior(hp.generator, hp.encoder)
        codes = encode_all(enc, gen.encoder_layer, images, hp.encode_batch)
        self.train_set = TensorDataset(codes, images, labels)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True, drop_last=True)


class SamplerCLI(TrainCLI):
    """The data's code is the model's: ``--model.generator`` / ``--model.encoder`` set the data's too."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.generator", "data.generator")
        parser.link_arguments("model.encoder", "data.encoder")


class CodeSamplerModule(TimedModule):
    """Trains a code sampler for ``generator``'s code (the encoder and layer it names).

    Args:
        generator: a dgnam generator file; its ``encoder`` and ``encoder_layer`` define the code.
        encoder: override the encoder the generator names (same forms as the generator trainer's).
        latent_dim, width, depth: the sampler's size (see :class:`~dgnam.prior.sampler.CodeSampler`).
        critic_width, critic_depth: the critic's size.
        lr, betas: Adam for both networks (betas (0, 0.99), as is usual with R1).
        r1_gamma: weight of the R1 penalty; it keeps the critic smooth on real codes.
        num_classes: 0 for an unconditional sampler; otherwise the number of classes in the data: the
            sampler takes a class with each z and the code critic is a projection critic (a
            class-conditional GAN; ``dgnam sample --classes``).
        lambda_image: weight of the image term in the sampler's loss (0: codes only, no image critic).
        image_r1_gamma: R1 weight for the image critic on real images.
        conditional_image_critic: with ``num_classes``, make the image critic a projection critic too
            (it judges "a real image of this class"); default: it judges images without their class.
        init_sampler: start the sampler from this dgnam sampler file (fine-tuning, e.g. with the image
            term on); the critics start fresh.
        grid_every: save G(sampler(z)) for 64 fixed z every this many iterations.
        export_path: where to write the dgnam sampler when ``fit`` ends.
    """

    def __init__(self, generator: str = "checkpoints/cifar10/generator.pt", encoder: str | None = None,
                 latent_dim: int = 128, width: int = 128, depth: int = 2, critic_width: int = 128,
                 critic_depth: int = 2, lr: float = 2e-4, betas: tuple[float, float] = (0.0, 0.99),
                 r1_gamma: float = 1.0, num_classes: int = 0, lambda_image: float = 0.0, image_r1_gamma: float = 1.0,
                 conditional_image_critic: bool = False, init_sampler: str | None = None, grid_every: int = 1000,
                 export_path: str | None = None) -> None:
        super().__init__()
        check_numbers(lr=lr, beta1=betas[0], beta2=betas[1], r1_gamma=r1_gamma, lambda_image=lambda_image,
                      image_r1_gamma=image_r1_gamma)
        check_export_path(export_path)
        self.save_hyperparameters()
        self.generator, _, code_shape = load_prior(generator, encoder)  # the encoder's codes come from CodeData
        self.sampler = CodeSampler(code_shape, latent_dim, width, depth, self.generator.encoder_layer,
                                   encoder or self.generator.encoder, num_classes)
        if init_sampler:
            refuse_own_start("init_sampler", init_sampler, export_path)
            start = load_code_sampler(init_sampler)
            start.check_generator(self.generator)
            if ((start.code_shape, start.latent_dim, start.num_classes)
                    != (self.sampler.code_shape, latent_dim, num_classes)):
                raise DgnamError(f"--model.init_sampler '{init_sampler}' has code shape {list(start.code_shape)}, "
                                 f"latent {start.latent_dim} and {start.num_classes} classes; this run has "
                                 f"{code_shape}, "
                                 f"{latent_dim} and {num_classes}: match --model.latent_dim/--model.num_classes")
            self.sampler.classes = list(start.classes)
            try:
                self.sampler.load_state_dict(start.state_dict())
            except RuntimeError:
                raise DgnamError(f"--model.init_sampler '{init_sampler}' has another width or depth; pass the same "
                                 f"--model.width/--model.depth it was trained with") from None
        self.critic = CodeCritic(code_shape, critic_width, critic_depth, num_classes)
        if conditional_image_critic and not (num_classes and lambda_image):
            raise DgnamError("--model.conditional_image_critic needs --model.num_classes and --model.lambda_image")
        image_classes = num_classes if conditional_image_critic else 0
        self.image_critic = ImageCritic(self.generator.image_size, num_classes=image_classes) if lambda_image else None
        self.register_buffer("grid_z", torch.randn(64, latent_dim, generator=torch.Generator().manual_seed(0)))
        # the grid's rows are classes in turn (a conditional sampler's grid shows each class)
        # (not persistent: it follows from num_classes, and runs saved before it existed still resume)
        self.register_buffer("grid_labels", torch.arange(64) // 8 % num_classes if num_classes else torch.zeros(0),
                             persistent=False)
        self.automatic_optimization = False

    def train(self, mode: bool = True):
        super().train(mode)
        self.generator.eval()  # frozen
        return self

    def training_step(self, batch, batch_idx: int) -> None:
        hp = self.hparams
        real, real_u8, real_labels = batch
        labels = real_labels if hp.num_classes else None
        image_labels = labels if hp.conditional_image_critic else None
        opt_s, *opt_critics = self.optimizers()
        z = torch.randn(len(real), hp.latent_dim, device=real.device)
        fake = self.sampler(z, labels)
        fake_images = self.generator.generate(fake) if self.image_critic is not None else None

        critic = critic_losses(self.critic, real, fake, hp.r1_gamma, labels)
        if self.image_critic is not None:
            image = critic_losses(self.image_critic, real_u8.float() / 255, fake_images, hp.image_r1_gamma,
                                  image_labels)
            critic["d"] = critic["d"] + image["d"]
        for opt in opt_critics:
            opt.zero_grad(set_to_none=True)
        self.manual_backward(critic["d"])
        for opt in opt_critics:
            opt.optimizer.step()  # the bare optimizers: global_step counts sampler steps only

        loss_s = F.softplus(-self.critic(fake, labels)).mean()
        loss_image = torch.zeros((), device=real.device)
        if self.image_critic is not None:
            loss_image = F.softplus(-self.image_critic(fake_images, image_labels)).mean()
            loss_s = loss_s + hp.lambda_image * loss_image
        opt_s.zero_grad(set_to_none=True)
        self.manual_backward(loss_s)
        opt_s.step()

        fake = fake.detach()
        stats = {"loss/sampler": loss_s, "loss/image": loss_image, "loss/critic": critic["d"], "loss/r1": critic["r1"],
                 "critic/real_logit": critic["real_logit"], "critic/fake_logit": critic["fake_logit"],
                 "codes/fake_zero_fraction": (fake == 0).float().mean(),
                 "codes/real_zero_fraction": (real == 0).float().mean(),
                 "codes/fake_mean": fake.mean(), "codes/real_mean": real.mean()}
        stats = {k: float(v.detach()) for k, v in stats.items()}
        self.log_dict(stats)
        iteration = self.global_step
        if iteration % 100 == 0 and self.trainer.is_global_zero:
            elapsed = self.train_seconds()
            print(f"it {iteration}: sampler {stats['loss/sampler']:.3f} (image {stats['loss/image']:.3f}) "
                  f"critic {stats['loss/critic']:.3f} r1 {stats['loss/r1']:.3f} "
                  f"zeros {stats['codes/fake_zero_fraction']:.2f}/{stats['codes/real_zero_fraction']:.2f} "
                  f"mean {stats['codes/fake_mean']:.3f}/{stats['codes/real_mean']:.3f} {elapsed:.0f}s", flush=True)
        if iteration % hp.grid_every == 0 and self.trainer.is_global_zero:
            self._save_grid()

    @torch.no_grad()
    def _save_grid(self) -> None:
        was_training = self.sampler.training
        self.sampler.eval()
        labels = self.grid_labels if self.hparams.num_classes else None
        images = self.generator.generate(self.sampler(self.grid_z, labels))
        self.sampler.train(was_training)
        out = Path(self.trainer.log_dir or ".") / f"samples_{self.global_step:06d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        save_image(images, out, nrow=16, padding=1)

    def configure_optimizers(self):
        hp = self.hparams
        nets = [self.sampler, self.critic] + ([self.image_critic] if self.image_critic is not None else [])
        return [torch.optim.Adam(net.parameters(), lr=hp.lr, betas=tuple(hp.betas)) for net in nets]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # train_seconds: also in the Timer's state; kept here for older readers.
        checkpoint["dgnam"] = {"train_seconds": self.train_seconds(),
                               "classes": list(self.sampler.classes)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.restore_seconds(checkpoint)
        if self.hparams.num_classes and "classes" in checkpoint.get("dgnam", {}):
            self.sampler.classes = list(checkpoint["dgnam"]["classes"])

    def on_fit_start(self) -> None:
        data = self.trainer.datamodule
        if self.hparams.num_classes and data is not None and hasattr(data, "classes"):
            if len(data.classes) != self.hparams.num_classes:
                raise DgnamError(f"--model.num_classes is {self.hparams.num_classes} but the data has "
                                 f"{len(data.classes)} classes; set --model.num_classes {len(data.classes)}")
            self.sampler.classes = list(data.classes)
        check_ddp(self.trainer.strategy.model)  # two backward passes per step, like the generator's

    def on_fit_end(self) -> None:
        if self.hparams.export_path and self.trainer.is_global_zero:
            self.export(self.hparams.export_path, self.global_step)

    def export(self, path: str, iterations: int) -> None:
        """Write the dgnam sampler (what ``dgnam sample`` and ``load_code_sampler`` read)."""
        hp = self.hparams
        metadata = {"iterations": iterations, "generator": hp.generator,
                    "generator_iterations": self.generator.metadata.get("iterations"),
                    "train_seconds": round(self.train_seconds()),
                    "r1_gamma": hp.r1_gamma, "lr": hp.lr, "lambda_image": hp.lambda_image,
                    "num_classes": hp.num_classes,
                    "conditional_image_critic": hp.conditional_image_critic,
                    "init_sampler": hp.init_sampler}
        self.sampler.save(path, metadata)
        print(f"exported {path}: {iterations} iterations", flush=True)


def export_checkpoint(ckpt_path: str, out: str) -> None:
    """Export the sampler of a Lightning checkpoint (e.g. a stopped run's ``last.ckpt``) as a dgnam file.

    Run: ``python -m train.code_sampler export runs/code_sampler/ckpt/last.ckpt checkpoints/cifar10/code_sampler.pt``
    """
    module, state = module_from_checkpoint(CodeSamplerModule, ckpt_path)
    module.export(out, state["global_step"])


def main(args: list[str] | None = None) -> None:
    run(CodeSamplerModule, CodeData, export_checkpoint, "train.code_sampler", args, cli_class=SamplerCLI)


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m train.code_sampler"))
