"""Does the generator prior work? Numbers for the model card, on the test split.

- encoder test accuracy on originals;
- encoder agreement: the encoder's class for G(E(x)) equals the true class (``reconstruction``) and
  equals its class for x (``same_class_as_original``);
- independent judges (never used in generator training, other architectures): accuracy on
  originals vs on reconstructions, and the ratio;
- reconstruction error, code statistics; grids of originals vs reconstructions and of
  "samples" G(h) with h drawn from a per-unit Gaussian fit of real codes, clipped at 0.

Run: python -m train.evaluate_prior --judges checkpoints/cifar10/judges/resnet.pt [--out docs/prior]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torchvision.utils import save_image

from dgnam import load_classifier, load_generator
from dgnam.io import atomic_write_json
from train.data import load_uint8


@torch.no_grad()
def evaluate(encoder_path: str, generator_path: str, judge_paths: list[str], root: str, limit: int | None,
             batch: int = 500) -> tuple[dict, torch.Tensor, torch.Tensor]:
    encoder = load_classifier(encoder_path)
    generator = load_generator(generator_path)
    judges = {Path(p).stem: load_classifier(p) for p in judge_paths}
    images_u8, labels, classes = load_uint8(Path(root) / "test", 32, ".cache/dgnam")
    if limit:
        picks = torch.linspace(0, len(labels) - 1, limit).long()
        images_u8, labels = images_u8[picks], labels[picks]
    layer = generator.encoder_layer
    correct = {}
    for name in ["encoder", *judges]:
        for key in ("original", "reconstruction", "same_class_as_original"):
            correct[f"{name}/{key}"] = 0
    sq_err = 0.0
    for start in range(0, len(labels), batch):
        x = images_u8[start:start + batch].float() / 255
        y = labels[start:start + batch]
        acts = encoder.run(x, [layer, "output"])
        recon = generator.generate(acts[layer].flatten(1))
        sq_err += float(((recon - x) ** 2).sum())
        for name, net in [("encoder", encoder), *judges.items()]:
            on_original = acts["output"].argmax(1) if net is encoder else net(x).argmax(1)
            on_recon = net(recon).argmax(1)
            correct[f"{name}/original"] += int((on_original == y).sum())
            correct[f"{name}/reconstruction"] += int((on_recon == y).sum())
            correct[f"{name}/same_class_as_original"] += int((on_recon == on_original).sum())
    n = len(labels)
    report = {k: v / n for k, v in correct.items()}
    for name in judges:
        report[f"{name}/ratio"] = report[f"{name}/reconstruction"] / max(report[f"{name}/original"], 1e-9)
    report["reconstruction_rmse"] = (sq_err / (n * 3 * 32 * 32)) ** 0.5
    report["n_images"] = n
    report["code_summary"] = generator.metadata.get("code_summary")
    report["iterations"] = generator.metadata.get("iterations")
    report["bound_mean"] = float(generator.code_upper_bound.mean())
    # Grids: 4 rows of originals above their reconstructions; Gaussian-code samples.
    picks = torch.linspace(0, n - 1, 32).long()
    x = images_u8[picks].float() / 255
    recon = generator.generate(encoder.run(x, [layer])[layer].flatten(1))
    recon_grid = torch.cat([x[:16], recon[:16], x[16:], recon[16:]])
    gen = torch.Generator().manual_seed(0)
    codes = (generator.code_mean + generator.code_std * torch.randn(32, generator.code_dim, generator=gen)).clamp_min(0)
    samples = generator.generate(codes)
    return report, recon_grid, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="checkpoints/cifar10/encoder.pt")
    parser.add_argument("--generator", default="checkpoints/cifar10/generator.pt")
    parser.add_argument("--judges", nargs="*", default=[])
    parser.add_argument("--data", default="../shared/data/cifar10")
    parser.add_argument("--limit", type=int, default=None, help="evaluate on this many test images (default: all)")
    parser.add_argument("--out", default=None, help="folder for report.json and grids")
    args = parser.parse_args()
    report, recon_grid, samples = evaluate(args.encoder, args.generator, args.judges, args.data, args.limit)
    print(json.dumps(report, indent=2))
    if args.out:
        out = Path(args.out)
        atomic_write_json(report, out / "prior_report.json")
        save_image(recon_grid, out / "reconstructions.png", nrow=16, padding=1)
        save_image(samples, out / "samples.png", nrow=16, padding=1)
        print(f"wrote {out}/prior_report.json, reconstructions.png, samples.png")


if __name__ == "__main__":
    main()
