"""DeePSiM generator training (Dosovitskiy & Brox 2016) as a LightningModule with manual optimisation.

G learns to invert a frozen encoder's code h = E(x):
    L_G = lambda_img * MSE(G(h), x) + lambda_feat * MSE(C(G(h)), C(x)) + lambda_adv * L_adv(D(G(h), h))
          [+ lambda_code * MSE(E(G(h)), h) + lambda_class * KL(softmax E(x) || softmax E(G(h)))
           + lambda_spectrum * mean_freq(relu(log mean_batch |FFT G(h)| - log mean_batch |FFT x|)) ** 2]
with C the encoder's comparator layer, and a conditional discriminator D(image, code). Optionally the
class term's gradient is low-passed (``class_gradient_sigma``) and G's weights are averaged (``ema_decay``).
D pauses when it gets too strong, following the original balancing rule (see :class:`AdversarialBalance`).

Run: ``python -m train.generator fit --config configs/cifar10/generator.yaml``; resume with
``--ckpt_path runs/generator/ckpt/last.ckpt`` (raise ``--trainer.max_steps`` to train longer);
``trainer.global_step`` counts generator iterations.
"""

from __future__ import annotations

import math
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchvision.utils import save_image

from dgnam.engine.transforms import GaussianBlur
from dgnam.errors import DgnamError
from dgnam.nets.model import Model
from dgnam.nets.zoo import load_model
from dgnam.prior.generator import UpconvGenerator, cifar_arch, fc6_arch, load_generator
from dgnam.prior.stats import code_statistics
from train.cli import module_from_checkpoint, run
from train.data import ImageFolderData
from train.entry import run_main
from train.networks import Discriminator
from train.settings import check_export_path, check_numbers, refuse_own_start
from train.timing import TimedModule

# Where the moving average of G lives in a checkpoint's state dict (an AveragedModel named generator_ema).
EMA_PREFIX = "generator_ema."


@dataclass
class AdversarialBalance:
    """The DeePSiM rule that keeps D from overpowering G.

    r = (D loss on real + D loss on fake) / G adversarial loss.
    r < stop_d_below: stop updating D; when D is stopped and r > resume_d_above: resume D (and G);
    r > pause_g_above while D trains: pause G (D keeps training).
    """

    stop_d_below: float = 0.1
    resume_d_above: float = 0.5
    pause_g_above: float = 10.0
    train_d: bool = True
    train_g: bool = True

    def update(self, d_loss_real: float, d_loss_fake: float, g_loss_adv: float) -> float:
        ratio = (d_loss_real + d_loss_fake) / max(g_loss_adv, 1e-12)
        if self.train_d and ratio < self.stop_d_below:
            self.train_d = False
        elif not self.train_d and ratio > self.resume_d_above:
            self.train_d = True
        # G always trains while D is paused; it pauses only when a training D is far ahead.
        self.train_g = not (self.train_d and ratio > self.pause_g_above)
        return ratio


def class_consistency(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(real) || softmax(fake)) per image, averaged over the batch (float32 softmaxes)."""
    return F.kl_div(F.log_softmax(fake_logits.float(), 1), F.log_softmax(real_logits.float(), 1),
                    log_target=True, reduction="batchmean")


class _LowpassGradient(torch.autograd.Function):
    """Identity forward; the backward pass blurs the incoming gradient with a Gaussian."""

    @staticmethod
    def forward(ctx, images: torch.Tensor, sigma: float) -> torch.Tensor:
        ctx.sigma = sigma
        return images.view_as(images)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return GaussianBlur(ctx.sigma)(grad), None


def lowpass_gradient(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """``images`` unchanged, but the gradient that flows back through them is blurred (``sigma`` pixels).

    A loss read through this still sees the exact images, yet can only move them in smooth
    directions: it cannot teach G the fine periodic pattern that fools the encoder (blurring the
    images themselves instead changes what the loss measures; that made every loss worse).
    """
    return _LowpassGradient.apply(images, sigma) if sigma > 0 else images


def spectral_excess(fake: torch.Tensor, real: torch.Tensor, floor: float = 1e-2) -> torch.Tensor:
    """How far the batch's mean amplitude spectrum of ``fake`` rises above that of ``real``:
    the mean over channels and frequencies of relu(log |FFT fake| - log |FFT real|)^2.

    Strided up-convolutions put peaks at fixed frequencies (the checkerboard at Nyquist, the
    period-4 grid at half of it); amplitudes ignore phase, so a peak is priced wherever the pattern
    sits in each image (cf. Durall et al., CVPR 2020). One-sided on purpose: a two-sided match also
    rewards adding energy where G is too smooth, and G did that with a bright dot in a corner
    (broadband energy) within 300 iterations.
    """
    amplitude_fake = torch.fft.rfft2(fake.float()).abs().mean(0)  # (C, H, W // 2 + 1)
    amplitude_real = torch.fft.rfft2(real.float()).abs().mean(0)
    return F.relu(torch.log(amplitude_fake + floor) - torch.log(amplitude_real + floor)).pow(2).mean()


@torch.no_grad()
def code_shape(encoder: Model, layer: str, image_size: int) -> list[int]:
    """The shape of ``layer``'s activation for one image (the encoder's own input size if it has one)."""
    size = encoder.input_size or image_size
    return list(encoder.run(torch.zeros(1, 3, size, size), [layer])[layer].shape[1:])


def build_generator_arch(name: str, **kwargs) -> dict:
    if name == "cifar":
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
        return cifar_arch(**kwargs)
    if name == "fc6":
        return fc6_arch()
    raise DgnamError(f"--model.generator_arch {name!r} is unknown; use cifar or fc6")


def move_legacy_average(checkpoint: dict) -> dict:
    """Move a moving average of G saved before it was an :class:`AveragedModel` into the state dict.

    Such checkpoints kept it as ``checkpoint["dgnam"]["generator_ema"]`` (parameter name -> averaged
    weight; buffers were never averaged). Here it becomes the ``generator_ema.*`` entries an
    AveragedModel loads: its weights, G's own buffers, and one update counted. In place; returns
    ``checkpoint``. A checkpoint without one is left as it is.
    """
    legacy = checkpoint.get("dgnam", {}).pop("generator_ema", None)
    if legacy is None:
        return checkpoint
    state = checkpoint["state_dict"]
    for key in [k for k in state if k.startswith("generator.")]:
        name = key[len("generator."):]
        state[f"{EMA_PREFIX}module.{name}"] = legacy.get(name, state[key])
    state[f"{EMA_PREFIX}n_averaged"] = torch.tensor(1, dtype=torch.long)
    return checkpoint


def averaged_weights(checkpoint: dict) -> dict[str, torch.Tensor] | None:
    """G's moving-average weights in a Lightning checkpoint (either layout), or None if it keeps none."""
    state = move_legacy_average(checkpoint)["state_dict"]
    counted = state.get(f"{EMA_PREFIX}n_averaged")
    if counted is None or int(counted) == 0:
        return None
    prefix = f"{EMA_PREFIX}module."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


class GeneratorModule(TimedModule):
    """Trains an :class:`~dgnam.prior.generator.UpconvGenerator` to invert ``encoder``'s ``code_layer``.

    Args:
        encoder: any model spec :func:`dgnam.nets.zoo.load_model` reads: a dgnam classifier checkpoint
            (``.pt``), or ``torchvision:alexnet`` for the paper's setting (``torchvision:NAME:none``:
            random weights, for tests).
        code_layer: encoder layer whose (post-ReLU) activation is the code.
        comparator_layer: encoder layer used for the feature (perceptual) loss.
        generator_arch: ``cifar`` or ``fc6``; ``generator_kwargs`` its arguments.
        lambda_img, lambda_feat, lambda_adv: loss weights (per-element mean squared errors).
        lambda_code: weight of an optional code-cycle term, MSE between the code of G(h) and h (0 in
            DeePSiM). It asks G for images the encoder reads back as the same code, which is what
            activation maximisation relies on; check it with an independent judge, since it can
            also teach G to hide features where the encoder looks.
        lambda_class: weight of an optional class-consistency term (0 in DeePSiM): the KL divergence
            from the encoder's class probabilities on x to those on G(E(x)), per image. The comparator
            loss at the encoder's output layer; same caveat as ``lambda_code``.
        class_gradient_sigma: if > 0, the class term's gradient on G's images is blurred with a
            Gaussian of this many pixels (:func:`lowpass_gradient`; costs one more encoder pass),
            so the term holds the class without teaching G a fine texture.
        lambda_spectrum: weight of an optional penalty (0 in DeePSiM) on frequencies where G's images
            carry more energy than real ones (:func:`spectral_excess`): the periodic grid of strided
            up-convolutions, which the feature and class terms can reward, at any phase.
        ema_decay: if > 0, keep an exponential moving average of G's weights (updated after each G
            step; e.g. 0.998 averages about the last 500 steps) and export, draw grids and validate
            with it. A GAN generator's single checkpoints swing (the robust-judge KID of 500-step
            neighbours differed 2x here); the average does not. It is a
            :class:`~torch.optim.swa_utils.AveragedModel` of G's parameters (buffers are G's own),
            saved in the Lightning checkpoint's state dict; resuming a checkpoint without one starts
            it from the current weights, and one saved in the older ``dgnam.generator_ema`` entry
            is moved over (:func:`move_legacy_average`).
        lr_g, lr_d: Adam learning rates. A resumed run uses these (not the checkpoint's), so a
            fine-tuning chunk can lower them.
        bound_k: code_upper_bound = mean + bound_k * std, stored in the exported generator.
        export_path: where to write the dgnam generator when ``fit`` ends (rank 0 only under DDP).
        init_generator: start G from this dgnam generator file (e.g. a shipped prior, to fine-tune it
            with other loss weights when its Lightning checkpoint is gone); D starts fresh. It must
            have this run's architecture and invert the same encoder layer. A resume reads it again
            (the checkpoint's weights then replace it), so keep the file until the run is done.
        stats_limit: compute the exported code statistics over at most this many training images,
            spread over the whole set (ImageNet: 50k; all 1.28M would keep rank 0 busy for hours
            while the other ranks wait); None = all.
        encoder_input_size, encoder_fit: the encoder's input side (None: the model's own) and how
            larger images reach it (``crop`` = centre crop, as the paper crops 256 to 227).
        export_dtype: ``float32`` or ``float16``: the type the exported weights are stored in (half the
            file; loaded back as float32; the code statistics stay float32).
    """

    def __init__(self, encoder: str = "checkpoints/cifar10/encoder.pt", code_layer: str = "features.relu4_2",
                 comparator_layer: str = "features.relu3_2", generator_arch: str = "cifar",
                 generator_kwargs: dict | None = None, discriminator_convs: list[list[int]] | None = None,
                 discriminator_code_dims: list[int] | None = None, output_space: str = "rgb01",
                 lambda_img: float = 1.0, lambda_feat: float = 1.0, lambda_adv: float = 0.005,
                 lambda_code: float = 0.0, lambda_class: float = 0.0, class_gradient_sigma: float = 0.0,
                 lambda_spectrum: float = 0.0, ema_decay: float = 0.0, lr_g: float = 5e-4, lr_d: float = 2e-4,
                 betas: tuple[float, float] = (0.9, 0.999),
                 weight_decay_d: float = 4e-4, bound_k: float = 3.0,
                 grid_every: int = 500, export_path: str | None = None, init_generator: str | None = None,
                 encoder_input_size: int | None = None, encoder_fit: str = "resize",
                 stats_limit: int | None = None, export_dtype: str = "float32") -> None:
        super().__init__()
        if export_dtype not in ("float32", "float16"):
            raise DgnamError(f"--model.export_dtype {export_dtype!r} is unknown; use float32 or float16")
        if not 0.0 <= ema_decay < 1.0:
            raise DgnamError(f"ema_decay={ema_decay} is not in [0, 1); use 0 (off) or e.g. 0.998")
        if class_gradient_sigma < 0:
            raise DgnamError(f"class_gradient_sigma={class_gradient_sigma} is negative; use 0 (off) or e.g. 1.0")
        check_numbers(lambda_img=lambda_img, lambda_feat=lambda_feat, lambda_adv=lambda_adv, lambda_code=lambda_code,
                      lambda_class=lambda_class, class_gradient_sigma=class_gradient_sigma,
                      lambda_spectrum=lambda_spectrum, lr_g=lr_g, lr_d=lr_d, weight_decay_d=weight_decay_d,
                      bound_k=bound_k, beta1=betas[0], beta2=betas[1])
        check_export_path(export_path)
        self.save_hyperparameters()
        self.encoder = load_model(encoder, input_size=encoder_input_size)
        self.encoder.fit = encoder_fit  # "crop": the paper's centre crop of G's 256 output to 227/224
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        arch = build_generator_arch(generator_arch, **(generator_kwargs or {}))
        self.generator = UpconvGenerator(arch, output_space=output_space, encoder_layer=code_layer, encoder=encoder)
        self._check_code_size()
        if init_generator:
            self._start_from(init_generator)
        self.discriminator = Discriminator(self.generator.code_dim, discriminator_convs, discriminator_code_dims)
        self.balance = AdversarialBalance()
        self.automatic_optimization = False
        # Averages G's parameters only; its buffers (the code statistics) are copied from G at each update.
        self.generator_ema = None
        if ema_decay > 0:
            self.generator_ema = AveragedModel(self.generator, multi_avg_fn=get_ema_multi_avg_fn(ema_decay),
                                               use_buffers=False)
            self.generator_ema.requires_grad_(False)

    def _check_code_size(self) -> None:
        shape = code_shape(self.encoder, self.hparams.code_layer, self.generator.image_size)
        if math.prod(shape) != self.generator.code_dim:
            raise DgnamError(f"encoder layer {self.hparams.code_layer!r} gives {math.prod(shape)} values "
                             f"{tuple(shape)} but the generator takes code_dim={self.generator.code_dim}; "
                             f"set model.generator_kwargs.code_dim to match")

    def _start_from(self, path: str) -> None:
        refuse_own_start("init_generator", path, self.hparams.export_path)
        start = load_generator(path)
        if start.encoder_layer != self.hparams.code_layer or start.arch != self.generator.arch:
            raise DgnamError(f"--model.init_generator '{path}' inverts {start.encoder_layer!r} with another "
                             f"architecture or layer than this run ({self.hparams.code_layer!r}); pass the "
                             f"--model.generator_kwargs and --model.code_layer it was trained with")
        self.generator.load_state_dict(start.state_dict())

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # the encoder is frozen: BatchNorm/Dropout stay in inference mode
        return self

    # --- the algorithm -------------------------------------------------------------------------
    def _encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        hp = self.hparams
        layers = [hp.code_layer, hp.comparator_layer] + (["output"] if hp.lambda_class else [])
        acts = self.encoder.run(images, layers)
        return acts[hp.code_layer].flatten(1), acts[hp.comparator_layer], acts.get("output")

    def _fake_features(self, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The comparator features of G's images and, for the optional terms that are on, their code
        and the encoder's logits (one encoder pass; a second one for a low-passed class term)."""
        hp = self.hparams
        separate_class_pass = bool(hp.lambda_class and hp.class_gradient_sigma > 0)
        layers = ([hp.comparator_layer] + ([hp.code_layer] if hp.lambda_code else [])
                  + (["output"] if hp.lambda_class and not separate_class_pass else []))
        acts = self.encoder.run(fake, layers)
        code = acts[hp.code_layer].flatten(1) if hp.lambda_code else None
        logits = acts.get("output")
        if separate_class_pass:
            logits = self.encoder.run(lowpass_gradient(fake, hp.class_gradient_sigma), ["output"])["output"]
        return acts[hp.comparator_layer], code, logits

    def losses(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """One iteration's losses on RGB [0, 1] ``images`` (needs no trainer, so a bare loop can run it).

        ``g`` is the generator's total loss and ``d`` the discriminator's (on a detached fake).
        """
        hp = self.hparams
        with torch.no_grad():
            code, real_features, real_logits = self._encode(images)
        raw = self.generator(code)
        fake = self.generator.to_rgb(raw)

        # Discriminator losses (on a detached fake) decide, with G's adversarial loss, who trains.
        real_logit = self.discriminator(images, code)
        fake_logit = self.discriminator(fake.detach(), code)
        d_loss_real = F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
        d_loss_fake = F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit))

        target = self.generator.from_rgb(images)
        loss_img = F.mse_loss(raw, target)
        fake_features, fake_code, fake_logits = self._fake_features(fake)
        loss_feat = F.mse_loss(fake_features, real_features)
        g_logit = self.discriminator(fake, code)
        loss_adv = F.binary_cross_entropy_with_logits(g_logit, torch.ones_like(g_logit))
        zero = torch.zeros((), device=code.device)
        loss_code = F.mse_loss(fake_code, code) if fake_code is not None else zero
        loss_class = class_consistency(real_logits, fake_logits) if fake_logits is not None else zero
        loss_spectrum = spectral_excess(raw, target) if hp.lambda_spectrum else zero
        loss_g = (hp.lambda_img * loss_img + hp.lambda_feat * loss_feat + hp.lambda_adv * loss_adv
                  + hp.lambda_code * loss_code + hp.lambda_class * loss_class + hp.lambda_spectrum * loss_spectrum)
        return {"g": loss_g, "d": d_loss_real + d_loss_fake, "img": loss_img, "feat": loss_feat, "adv": loss_adv,
                "code": loss_code, "class": loss_class, "spectrum": loss_spectrum,
                "d_real": d_loss_real, "d_fake": d_loss_fake}

    def training_step(self, batch, batch_idx: int) -> None:
        hp = self.hparams
        images, _ = batch
        opt_g, opt_d = self.optimizers()
        losses = self.losses(images)
        # Under DDP every rank must take the same pause decision, so the rule sees rank-averaged losses
        # (one all-reduce of eight numbers; a no-op on one process).
        logged = ("img", "feat", "adv", "code", "class", "spectrum", "d_real", "d_fake")
        stacked = torch.stack([losses[k].detach().float() for k in logged])
        mean = dict(zip(logged, self.trainer.strategy.reduce(stacked, reduce_op="mean").tolist()))
        ratio = self.balance.update(mean["d_real"], mean["d_fake"], mean["adv"])
        # Lightning counts every wrapped optimizer step in global_step. G's step is always called
        # (with no gradients while G is paused, Adam leaves it untouched) and D's step goes to the
        # bare optimizer, so global_step == iterations and the trainer's max_steps and resume just work.
        opt_g.zero_grad(set_to_none=True)
        if self.balance.train_g:
            self.manual_backward(losses["g"])
        opt_g.step()
        if self.generator_ema is not None and self.balance.train_g:
            self.generator_ema.update_parameters(self.generator)
        if self.balance.train_d:
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(losses["d"])
            opt_d.optimizer.step()
        iteration = self.global_step
        # Already averaged over ranks: no sync_dist (it would cost one all-reduce per value per step).
        self.log_dict({**{f"loss/{k}": v for k, v in mean.items()}, "balance/ratio": ratio,
                       "balance/train_d": float(self.balance.train_d), "balance/train_g": float(self.balance.train_g)},
                      prog_bar=False)
        if iteration % 50 == 0 and self.trainer.is_global_zero:
            elapsed = self.train_seconds()
            losses_text = " ".join(f"{k} {mean[k]:.4f}" for k in ("img", "feat", "code", "class", "spectrum"))
            print(f"it {iteration}: {losses_text} adv {mean['adv']:.3f} "
                  f"d {mean['d_real']:.3f}/{mean['d_fake']:.3f} r {ratio:.2f} "
                  f"D {'on' if self.balance.train_d else 'off'} G {'on' if self.balance.train_g else 'off'} "
                  f"{elapsed:.0f}s", flush=True)
        if iteration % hp.grid_every == 0:
            self._save_grid()

    # --- the moving average of G's weights -----------------------------------------------------
    @property
    def has_average(self) -> bool:
        """Whether G's moving average is on and has been updated at least once."""
        return self.generator_ema is not None and int(self.generator_ema.n_averaged) > 0

    @contextmanager
    def averaged_generator(self):
        """Within the block, G holds its moving-average weights (if ``ema_decay`` > 0 and one exists)."""
        if not self.has_average:
            yield self.generator
            return
        params = dict(self.generator.named_parameters())
        live = {n: p.detach().clone() for n, p in params.items()}
        with torch.no_grad():
            for param, averaged in zip(params.values(), self.generator_ema.module.parameters(), strict=True):
                param.copy_(averaged)
        try:
            yield self.generator
        finally:
            with torch.no_grad():
                for name, param in params.items():
                    param.copy_(live[name])

    @torch.no_grad()
    def _save_grid(self) -> None:
        """Test originals (top rows) above their reconstructions G(E(x)) (bottom rows)."""
        dm = self.trainer.datamodule
        if dm is None or not self.trainer.is_global_zero:
            return
        picks = torch.linspace(0, len(dm.test_set) - 1, 32).long().tolist()  # a fixed, class-mixed sample
        images = torch.stack([dm.test_set[i][0] for i in picks]).to(self.device).float() / 255
        was_training = self.generator.training
        self.generator.eval()
        with self.averaged_generator():
            recon = self.generator.generate(self._encode(images)[0])
        self.generator.train(was_training)
        out = Path(self.trainer.log_dir or ".") / f"recon_{self.global_step:06d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        save_image(torch.cat([images[:16], recon[:16], images[16:], recon[16:]]), out, nrow=16, padding=1)

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        code = self._encode(images)[0]
        with self.averaged_generator():
            recon = self.generator.generate(code)
        # Each rank sees a shard of the test set; sync_dist averages the epoch value over all of them.
        self.log("test/recon_mse", F.mse_loss(recon, images), sync_dist=True)
        self.log("test/encoder_agreement", (self.encoder(recon).argmax(1) == labels).float().mean(), sync_dist=True)

    def configure_optimizers(self):
        hp = self.hparams
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=hp.lr_g, betas=tuple(hp.betas))
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=hp.lr_d, betas=tuple(hp.betas),
                                 weight_decay=hp.weight_decay_d)
        return [opt_g, opt_d]

    # --- resumable state -----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # train_seconds: also in the Timer's state; kept here for handoff files and older readers.
        checkpoint["dgnam"] = {"train_d": self.balance.train_d,
                               "train_g": self.balance.train_g,
                               "train_seconds": self.train_seconds()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Runs before the state dict is loaded: fit the checkpoint's moving average to this run's setting."""
        state = checkpoint.get("dgnam", {})
        self.balance.train_d = bool(state.get("train_d", True))
        self.balance.train_g = bool(state.get("train_g", True))
        self.restore_seconds(checkpoint)
        weights = move_legacy_average(checkpoint)["state_dict"]
        self._check_same_encoder(weights)
        saved = [k for k in weights if k.startswith(EMA_PREFIX)]
        if self.generator_ema is None:  # the average is off in this run: drop the checkpoint's
            for key in saved:
                del weights[key]
        elif not saved:  # the checkpoint has none: the first update starts it from the current weights
            weights.update({f"{EMA_PREFIX}module.{k[len('generator.'):]}": v
                            for k, v in list(weights.items()) if k.startswith("generator.")})
            weights[f"{EMA_PREFIX}n_averaged"] = torch.tensor(0, dtype=torch.long)

    def _check_same_encoder(self, weights: dict[str, torch.Tensor]) -> None:
        """G was trained to invert the checkpoint's encoder, whose weights the checkpoint holds and would load over
        the one this run names: a different ``--model.encoder`` on resume would train on the old encoder while
        the export names the new one."""
        mine = self.encoder.state_dict()
        stored = {k[len("encoder."):]: v for k, v in weights.items() if k.startswith("encoder.")}
        if stored and (stored.keys() != mine.keys()
                       or any(not torch.equal(v.to(mine[k].device, mine[k].dtype), mine[k])
                              for k, v in stored.items())):
            raise DgnamError(f"this run's generator was trained against another encoder than "
                             f"--model.encoder '{self.hparams.encoder}'; resume with the encoder it was trained "
                             f"with, or start a new run from its generator (--model.init_generator)")

    def on_fit_start(self) -> None:
        check_ddp(self.trainer.strategy.model)

    def on_train_start(self) -> None:
        # Resuming restores the optimizers' param groups, learning rates included; the configured
        # rates win, so a chunk resumed with a lower --model.lr_g really trains at it.
        for optimizer, lr in zip(self.optimizers(), (self.hparams.lr_g, self.hparams.lr_d)):
            for group in optimizer.optimizer.param_groups:
                group["lr"] = lr

    def on_fit_end(self) -> None:
        if self.hparams.export_path and self.trainer.is_global_zero:
            dm = self.trainer.datamodule
            self.export(self.hparams.export_path, dm.train_set, dm.classes, self.global_step,
                        num_workers=dm.hparams.num_workers)

    @torch.no_grad()
    def export(self, path: str, train_set, classes: list[str], iterations: int, num_workers: int = 0) -> None:
        """Compute code statistics over ``train_set`` (at most ``stats_limit`` images), set the bounds
        and write the dgnam generator."""
        hp = self.hparams
        limit = hp.stats_limit
        if limit and len(train_set) > limit:  # evenly spread, so every class of a sorted ImageFolder counts
            train_set = torch.utils.data.Subset(train_set, torch.linspace(0, len(train_set) - 1, limit).long().tolist())
        loader = torch.utils.data.DataLoader(train_set, batch_size=500, num_workers=num_workers)
        mean, std, summary = code_statistics(self.encoder, hp.code_layer, loader, self.device)
        self.generator.set_code_statistics(mean.to(self.device), std.to(self.device), hp.bound_k)
        metadata = {"iterations": iterations,
                    "weights": f"moving average, decay {hp.ema_decay}" if self.has_average else "last step",
                    "bound_k": hp.bound_k, "code_layer": hp.code_layer,
                    "comparator_layer": hp.comparator_layer, "code_summary": summary,
                    "train_seconds": round(self.train_seconds()),
                    "lambdas": [hp.lambda_img, hp.lambda_feat, hp.lambda_adv], "lambda_code": hp.lambda_code,
                    "lambda_class": hp.lambda_class, "class_gradient_sigma": hp.class_gradient_sigma,
                    "lambda_spectrum": hp.lambda_spectrum, "lr_g": hp.lr_g, "classes": list(classes)}
        with self.averaged_generator():
            self.generator.save(path, metadata, weights_dtype=getattr(torch, hp.export_dtype))
        print(f"exported {path}: {iterations} iterations, code zeros {summary['zero_fraction']:.2f}, "
              f"mean {summary['mean']:.3f}", flush=True)


def check_ddp(model: torch.nn.Module) -> None:
    """Fail at the start, not after the first step, under DDP that cannot handle this module's step.

    Each step runs two backward passes: G's (gradients for G and D) and D's (gradients for D only),
    and either may be skipped by the balance rule. DDP must therefore be told that some parameters
    get no gradient in a backward (``find_unused_parameters``); otherwise, after D's backward, its
    reducer still waits for G's gradients and the next step fails with an internal-sounding error.
    """
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(model, DistributedDataParallel) and not model.find_unused_parameters:
        raise DgnamError("this module runs separate generator and critic backward passes; under DDP use "
                         "--trainer.strategy ddp_find_unused_parameters_true")


def export_checkpoint(ckpt_path: str, out: str) -> None:
    """Export the generator of a Lightning checkpoint (e.g. a stopped run's ``last.ckpt``) as a dgnam file.

    Run: ``python -m train.generator export runs/generator/ckpt/last.ckpt checkpoints/cifar10/generator.pt``
    """
    module, state = module_from_checkpoint(GeneratorModule, ckpt_path)
    data = ImageFolderData(**{k: v for k, v in state["datamodule_hyper_parameters"].items() if not k.startswith("_")})
    data.setup("fit")
    module.export(out, data.train_set, data.classes, state["global_step"], num_workers=data.hparams.num_workers)


def main(args: list[str] | None = None) -> None:
    run(GeneratorModule, ImageFolderData, export_checkpoint, "train.generator", args)


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m train.generator"))
