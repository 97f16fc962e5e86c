"""Generator training throughput: Lightning's Trainer vs the same G/D/E steps in a bare PyTorch loop.

Both paths run the CIFAR-10 config's networks (shipped encoder, 2.1M-parameter generator,
conditional D) on the same batches and call the same ``GeneratorModule.losses`` (so the math is
identical); what differs is everything around it: Lightning's loop, hooks, manual_backward,
optimizer wrappers and logging (as in real training: log_dict every step, CSV logger). Prints
images/s of both and the Lightning overhead (goal <= 10%). The paths alternate in rounds so that
machine noise hits both alike; the ratio is computed within this one run.

Run: python bench/training.py [--steps 30] [--rounds 3] [--batch 64] [--threads 2] [--device cuda]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from train.generator import GeneratorModule

CONFIG = dict(encoder="checkpoints/cifar10/encoder.pt", code_layer="features.relu4_2",
              comparator_layer="features.relu3_2", generator_arch="cifar",
              generator_kwargs={"code_dim": 4096, "start_channels": 256, "widths": [128, 64, 32], "spatial_code": True},
              lambda_code=0.5, grid_every=10**9)


def batches(n: int, batch: int) -> torch.Tensor:
    return torch.rand(n * batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def bare_loop(module: GeneratorModule, images: torch.Tensor, batch: int, device: torch.device) -> float:
    """The algorithm with plain optimizers: losses, balance rule, G step, D step. Returns seconds."""
    module.to(device)
    opt_g = torch.optim.Adam(module.generator.parameters(), lr=module.hparams.lr_g)
    opt_d = torch.optim.Adam(module.discriminator.parameters(), lr=module.hparams.lr_d,
                             weight_decay=module.hparams.weight_decay_d)
    module.train()
    start = time.perf_counter()
    for x in images.split(batch):
        losses = module.losses(x.to(device))  # from host memory each step, as Lightning's loader does
        module.balance.update(losses["d_real"].item(), losses["d_fake"].item(), losses["adv"].item())
        opt_g.zero_grad(set_to_none=True)
        if module.balance.train_g:
            losses["g"].backward()
        opt_g.step()
        if module.balance.train_d:
            opt_d.zero_grad(set_to_none=True)
            losses["d"].backward()
            opt_d.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


class _Timer(L.Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.seconds = time.perf_counter() - self.start


def lightning_loop(module: GeneratorModule, images: torch.Tensor, batch: int, log_dir: str,
                   device: torch.device) -> float:
    timer = _Timer()
    trainer = L.Trainer(max_steps=len(images) // batch, accelerator="gpu" if device.type == "cuda" else "cpu",
                        devices=1, logger=L.pytorch.loggers.CSVLogger(log_dir),
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=0, log_every_n_steps=50, callbacks=[timer])
    loader = DataLoader(TensorDataset(images, torch.zeros(len(images), dtype=torch.long)), batch_size=batch)
    trainer.fit(module, train_dataloaders=loader)
    return timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30, help="iterations per timed run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    images = batches(args.steps, args.batch)
    torch.manual_seed(0)
    bare_module, lightning_module = GeneratorModule(**CONFIG), GeneratorModule(**CONFIG)
    bare_loop(bare_module, images[: 2 * args.batch], args.batch, device)  # warm-up (allocator, kernels)
    bare, light = [], []
    with tempfile.TemporaryDirectory() as log_dir:
        for _ in range(args.rounds):
            bare.append(bare_loop(bare_module, images, args.batch, device))
            light.append(lightning_loop(lightning_module, images, args.batch, log_dir, device))
    n = args.steps * args.batch
    bare_rate, light_rate = n / min(bare), n / min(light)
    print(f"{args.steps} iterations x batch {args.batch}, {args.threads} threads, {device}, best of {args.rounds} "
          "rounds")
    print(f"bare PyTorch loop: {bare_rate:.1f} images/s ({min(bare) / args.steps:.3f} s/iteration)")
    print(f"Lightning Trainer: {light_rate:.1f} images/s ({min(light) / args.steps:.3f} s/iteration)")
    print(f"Lightning overhead: {100 * (min(light) / min(bare) - 1):+.1f}% (goal <= 10%)")


if __name__ == "__main__":
    main()
