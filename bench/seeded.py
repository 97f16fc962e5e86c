"""Seeded DGN-AM (50 steps, the default seeded) against the paper's start (200 steps from noise): wall time of
the same units through the shipped classifier and prior, measured in one run, and how far each run drives
the units relative to the seeds' own activations.

Prints, for ``--units`` class logits x ``--restarts`` images:
  1. seconds of each run and their ratio (noise-200 / seeded-50; the steps alone would make it 4);
  2. the mean logit each reaches, and the seeds' mean logit (where a seeded run starts).
Both are timed twice, interleaved, and the best is kept, so a burst of background load hits neither alone.
Run: python bench/seeded.py [--data ../shared/data/cifar10/test] [--restarts 8] [--threads 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import dgnam
from dgnam.cli.common import DEFAULT_GENERATOR, DEFAULT_MODEL, image_files, load_images
from dgnam.engine.param import SEEDED_CODE_PRIOR, SeededCode, top_images


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="../shared/data/cifar10/test")
    parser.add_argument("--units", type=int, default=10, help="class logits 0..N-1")
    parser.add_argument("--restarts", type=int, default=8)
    parser.add_argument("--pool", type=int, default=1000, help="real images the seeds are chosen from")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    G = dgnam.load_generator(DEFAULT_GENERATOR)
    net = dgnam.load_classifier(DEFAULT_MODEL)
    pool = load_images(image_files(Path(args.data), args.pool), 32)
    units = list(range(args.units))
    with torch.no_grad():
        logits = net(pool)[:, units]
    seeds = top_images(pool, logits, args.restarts, "lower --restarts or raise --pool")
    eps = float(G.metadata.get("code_prior", 0.0))

    def seeded() -> dgnam.Result:
        return dgnam.visualize(net, units, generator=G, param=SeededCode(G, seeds, net), restarts=args.restarts,
                               code_prior=SEEDED_CODE_PRIOR, code_encoder=net, batch_size=len(seeds))

    def noise() -> dgnam.Result:
        return dgnam.visualize(net, units, generator=G, restarts=args.restarts, code_prior=eps, code_encoder=net,
                               batch_size=len(seeds))

    runs = {"seeded, 50 steps": [], "noise, 200 steps": []}
    for _ in range(2):
        runs["seeded, 50 steps"].append(seeded())
        runs["noise, 200 steps"].append(noise())
    best = {name: min(results, key=lambda r: r.seconds) for name, results in runs.items()}
    print(f"{args.units} class logits x {args.restarts} restarts, {args.threads} threads, seeds: top of {len(pool)} "
          f"images of {args.data}")
    print(f"seeds' mean logit {float(logits.gather(0, logits.topk(args.restarts, dim=0).indices).mean()):.2f}")
    for name, result in best.items():
        print(f"{name}: {result.seconds:.1f} s, {result.settings['steps']} steps, "
              f"mean logit {float(result.values.mean()):.2f}")
    ratio = best["noise, 200 steps"].seconds / best["seeded, 50 steps"].seconds
    print(f"ratio noise-200 / seeded-50 wall time: {ratio:.2f}")


if __name__ == "__main__":
    main()
