"""Synthesis engine overhead and batching speed-up, on a CIFAR-sized target (random weights).

Prints, for 10 units x 8 restarts (80 images):
  1. time per DGN-AM step / time of a bare forward+backward of G then the target at the same batch
     (the engine's overhead; goal <= 1.10);
  2. batched (80 rows per pass) vs one image at a time speed-up (goal >= 5x).
Ratios are measured within one run because this machine's speed varies between runs.
Run: python bench/synthesis.py [--steps 10] [--threads 2] [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import torch

import dgnam
from dgnam.nets import CifarResNet
from dgnam.prior.generator import UpconvGenerator, cifar_arch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_step_seconds(gen, net, batch: int, units: torch.Tensor, repeats: int, device: torch.device) -> float:
    """Forward+backward of G then the target, gradient w.r.t. the code: the floor for one AM step."""
    code = torch.rand(batch, gen.code_dim, device=device, requires_grad=True)
    units = units.to(device)
    for i in range(repeats + 1):
        if i == 1:
            _sync(device)
            start = time.perf_counter()
        logits = net(gen(code).clamp(0, 1))
        (grad,) = torch.autograd.grad(logits.gather(1, units[:, None]).sum(), code)
    _sync(device)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    gen = UpconvGenerator(cifar_arch()).eval()
    gen.set_code_statistics(torch.full((512,), 0.5), torch.full((512,), 0.5))
    net = CifarResNet(widths=(16, 32, 64), depth=3).eval()  # ResNet-20
    gen.to(device)
    net.to(device)
    for p in [*gen.parameters(), *net.parameters()]:
        p.requires_grad_(False)
    model = dgnam.Model(net, input_size=32)
    units, restarts = list(range(10)), 8
    n = len(units) * restarts
    row_units = torch.tensor([u for u in units for _ in range(restarts)])

    def run(steps: int, batch_size: int = n):
        return dgnam.visualize(model, units, generator=gen, restarts=restarts, steps=steps, batch_size=batch_size,
                               device=device)

    run(2)  # warm-up
    # Interleave and keep the best of 3, so a burst of background load hits neither side alone.
    # A step's cost is the difference between runs of 2N and N steps (init and final pass cancel).
    am_steps, bares = [], []
    for _ in range(3):
        short, long = run(args.steps), run(2 * args.steps)
        am_steps.append((long.seconds - short.seconds) / args.steps)
        bares.append(bare_step_seconds(gen, net, n, row_units, args.steps, device))
    am_step, bare = min(am_steps), min(bares)
    batched = run(args.steps)
    single = run(args.steps, batch_size=1)

    print(f"batch {n} ({len(units)} units x {restarts} restarts), {args.steps} steps, {args.threads} threads, {device}")
    print(f"AM step {am_step * 1e3:.1f} ms vs bare G+target forward+backward {bare * 1e3:.1f} ms: "
          f"overhead ratio {am_step / bare:.3f} (goal <= 1.10)")
    print(f"batched {batched.seconds:.2f}s vs one image at a time {single.seconds:.2f}s: "
          f"speed-up {single.seconds / batched.seconds:.1f}x (goal >= 5x)")
    code_diff = (batched.params - single.params).abs().max().item()
    image_diff = (batched.images - single.images).abs().max().item()
    print(f"batched vs one-at-a-time: max |code diff| {code_diff:.2e}, max |pixel diff| {image_diff:.2e} "
          f"(kernels round differently per batch size, ~1e-6 after one step; random nets amplify it)")
    # With fixed_batch every chunk has the same row count, so on CPU a row is bit-identical whatever its
    # batch; on CUDA (an H100, docs/imagenet.md) it was not: cuDNN may pick other kernels.
    alone = dgnam.visualize(model, [units[3]], generator=gen, restarts=1, seed=5, steps=args.steps,
                            batch_size=n, fixed_batch=True, device=device)
    fixed = dgnam.visualize(model, units, generator=gen, restarts=restarts, steps=args.steps, batch_size=n,
                            fixed_batch=True, device=device)
    row = 3 * restarts + 5  # unit 3, restart 5 -> seed 5
    print(f"fixed_batch: image of (unit 3, seed 5) alone == in the full batch: "
          f"{torch.equal(alone.images[0], fixed.images[row])}")


if __name__ == "__main__":
    main()
