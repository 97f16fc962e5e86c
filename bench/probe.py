"""The dataset pass of ``dgnam probe``: its cost over one plain forward pass, and its memory.

Times ``dataset_examples`` (every unit of --layer: top-k, location of the spatial max, reservoir for
percentiles) over --data, and one plain forward of the whole model over the same files with the same
loader and batch size, then prints
  1. dataset pass / plain forward (goal <= 1.2): what reading and ranking every unit costs;
  2. peak memory: the process's peak RSS growth during the pass on CPU (CUDA: peak allocated), beside
     what the per-unit state needs (units x (3k + reservoir) values), which is independent of the dataset size.
Both sides are timed twice, interleaved, and the best is kept, so a burst of background load hits neither alone.
Run: python bench/probe.py [--data ../shared/data/cifar10/test] [--layer features.relu4_2] [--device cuda]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from dgnam.examples.topk import RESERVOIR, _batches, dataset_examples
from dgnam.images import list_images
from dgnam.io import shipped
from dgnam.nets.zoo import load_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_forward(model, files, batch_size: int, workers: int, device: torch.device) -> float:
    """Seconds for the model's forward over ``files``, loaded as the dataset pass loads them."""
    _sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for images, _, _ in _batches(files, model.input_size, batch_size, workers):
            model(images.to(device, non_blocking=True).float().div_(255))
    _sync(device)
    return time.perf_counter() - start


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(shipped("cifar10/encoder.pt")))
    parser.add_argument("--layer", default="features.relu4_2")
    parser.add_argument("--data", default="../shared/data/cifar10/test")
    parser.add_argument("--limit", type=int, default=None, help="at most this many images")
    parser.add_argument("--k", type=int, default=9)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = load_model(args.model, device=device).eval()
    files = list_images(args.data)
    if args.limit:
        files = files[:: max(1, len(files) // args.limit)][: args.limit]

    def run_pass():
        _sync(device)
        start = time.perf_counter()
        ex = dataset_examples(model, args.layer, files, k=args.k, batch_size=args.batch_size, device=device,
                              workers=args.workers)
        _sync(device)
        return time.perf_counter() - start, ex

    plain_forward(model, files[: args.batch_size * 2], args.batch_size, 0, device)  # warm-up
    rss_before = peak_rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base_alloc = torch.cuda.memory_allocated(device)
    passes, plains = [], []
    for _ in range(2):
        seconds, ex = run_pass()
        passes.append(seconds)
        plains.append(plain_forward(model, files, args.batch_size, args.workers, device))
    best_pass, best_plain = min(passes), min(plains)
    n_units = len(ex.units)
    state_mb = n_units * (3 * args.k + RESERVOIR) * 4 / 2**20
    print(f"{model.name} {args.layer}: {n_units} units, {ex.n_images} images ({len(ex.skipped)} skipped), "
          f"batch {args.batch_size}, k {args.k}, {args.workers} loader workers, {torch.get_num_threads()} threads, "
          f"{device}")
    print(f"dataset pass {best_pass:.2f}s vs plain forward {best_plain:.2f}s: ratio {best_pass / best_plain:.3f} "
          f"(goal <= 1.2); runs {[round(s, 2) for s in passes]} vs {[round(s, 2) for s in plains]}")
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(device) - base_alloc) / 2**20
        print(f"peak CUDA memory above the model: {peak:.0f} MiB; per-unit state {state_mb:.1f} MiB")
    print(f"peak RSS growth during the runs: {peak_rss_mb() - rss_before:.0f} MiB (process peak {peak_rss_mb():.0f} "
          f"MiB); per-unit state (top-k, locations, reservoir) {state_mb:.1f} MiB, whatever the number of images")


if __name__ == "__main__":
    main()
