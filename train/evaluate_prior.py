"""Does the generator prior work? Numbers for the model card, on the test split.

- encoder test accuracy on originals;
- encoder agreement: the encoder's class for G(E(x)) equals the true class (``reconstruction``) and
  equals its class for x (``same_class_as_original``);
- independent judges (never used in generator training, other architectures): accuracy on
  originals vs on reconstructions, and the ratio;
- reconstruction error, code statistics, and the reconstructions' mean amplitude spectrum relative to
  the originals' (:func:`spectrum_ratio`: the up-convolutions' grid shows as peaks, blur as a
  high-frequency deficit); grids of originals vs reconstructions and of
  "samples" G(h): a DeePSiM generator has no code distribution of its own, so h is drawn from four
  fits of real training codes (:func:`code_samples`): a per-unit Gaussian (ignores how units
  co-vary), a full-covariance Gaussian (both clipped at 0), a Gaussian copula (keeps each unit's
  own distribution, zeros included) and one copula per class; with ``--code-sampler``, also
  G(sampler(z)) for a trained :class:`~dgnam.prior.sampler.CodeSampler` (``python -m train.code_sampler``),
  and for a class-conditional one a grid of real images, reconstructions and samples per class
  (:func:`class_ceiling_grid`: is G or the sampler what a class's samples lack?); with
  ``--dgnam-restarts N`` the same grid with N DGN-AM images of each class logit of the encoder;
- with ``--kid-judge``: KID (x100) of reconstructions and of each kind of samples against real test
  images, in that judge's penultimate features, next to the KID of real *training* images (the
  floor) and of test images blurred with a 3x3 box (a reference for "blurry but real"); and, for each
  set and for the real test images, the Inception score and mean confidence in that judge
  (:func:`dgnam.evaluation.metrics.judge_score`: do the images show one class clearly?).

Run: python -m train.evaluate_prior --judges checkpoints/cifar10/judges/resnet.pt \
         --kid-judge checkpoints/cifar10/judges/robust_resnet.pt [--out docs/prior]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torchvision.utils import save_image

import dgnam
from dgnam import load_classifier, load_generator
from dgnam.errors import DgnamError
from dgnam.evaluation.metrics import judge_outputs, judge_score, kid, predict_logits
from dgnam.io import atomic_write_json
from dgnam.prior.sampler import load_code_sampler
from dgnam.prior.stats import encode_all
from train.data import load_uint8
from train.entry import run_main


@torch.no_grad()
def code_samples(codes: torch.Tensor, n: int, seed: int = 0,
                 labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """``n`` codes from fits of real codes ``codes (N, D)``.

    - ``per_unit_gaussian``: independent Gaussians, clipped at 0;
    - ``full_covariance_gaussian``: mean + centred^T z / sqrt(N - 1) with z ~ N(0, I_N), exactly the
      Gaussian with the sample covariance without a D x D matrix, clipped at 0;
    - ``gaussian_copula``: each unit keeps its own empirical distribution (its mass at exactly 0 and
      its heavy tail, which a Gaussian blurs into "every unit a little on") and units co-vary as
      their normal scores do: draw correlated normal scores the same way, map each through the
      normal CDF and the unit's empirical quantile function. A unit's zeros share one (mid-rank)
      score, which weakens its measured correlations: sparse units co-vary less than in real codes.
    - with ``labels (N,)`` (the images' classes), also ``class_gaussian_copula``: one copula per class,
      fitted on that class's codes, the same number of samples from each, in the order 0, 1, ..., 0,
      1, ... (so any first rows show every class). One Gaussian over all classes blends them into
      object-less scenes; per class the units co-vary as they do within one kind of object.
    """
    gen = torch.Generator().manual_seed(seed)
    count = len(codes)
    mean, std = codes.mean(0), codes.std(0)
    centred = codes - mean
    diag = mean + std * torch.randn(n, codes.shape[1], generator=gen)
    full = mean + torch.randn(n, count, generator=gen) @ centred / (count - 1) ** 0.5
    samples = {"per_unit_gaussian": diag.clamp_min(0), "full_covariance_gaussian": full.clamp_min(0),
               "gaussian_copula": _gaussian_copula(codes, n, gen)}
    if labels is not None:
        samples["class_gaussian_copula"] = _class_gaussian_copula(codes, labels, n, gen)
    return samples


def class_order(labels: torch.Tensor, n: int) -> torch.Tensor:
    """The class of each of ``n`` samples drawn per class: sample i is of the (i mod K)-th class in ``labels``."""
    present = labels.unique()
    return present[torch.arange(n) % len(present)]


def _class_gaussian_copula(codes: torch.Tensor, labels: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    if labels.shape != (len(codes),):
        raise DgnamError(f"labels must be one class per code, shape ({len(codes)},), got {tuple(labels.shape)}")
    asked = class_order(labels, n)
    out = torch.empty(n, codes.shape[1], dtype=codes.dtype)
    for cls in labels.unique().tolist():
        members, drawn_here = codes[labels == cls], asked == cls
        if len(members) < 2:
            raise DgnamError(f"class {cls} has {len(members)} training code(s) and a copula needs at least 2 per "
                             f"class; fit on more training images")
        out[drawn_here] = _gaussian_copula(members, int(drawn_here.sum()), gen)
    return out


def _gaussian_copula(codes: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    count = len(codes)
    units = codes.T.contiguous()  # (D, N)
    sorted_units = units.sort(1).values  # each unit's quantile function
    # Tied values (all the exact zeros of a unit) share their mid-rank, so ties add no fake correlation.
    below = torch.searchsorted(sorted_units, units, right=False, out_int32=True)
    at_or_below = torch.searchsorted(sorted_units, units, right=True, out_int32=True)
    mid_rank = (below + at_or_below).float() / 2
    scores = torch.special.ndtri(mid_rank / count)  # (D, N) normal scores; mid-ranks keep them finite
    scores = scores - scores.mean(1, keepdim=True)
    scores = scores / scores.std(1, keepdim=True).clamp_min(1e-12)  # a constant unit stays at score 0
    drawn = torch.randn(n, count, generator=gen) @ scores.T / (count - 1) ** 0.5  # (n, D), unit variance
    index = (torch.special.ndtr(drawn) * count).long().clamp(0, count - 1)
    return torch.gather(sorted_units, 1, index.T.contiguous()).T.contiguous()


@torch.no_grad()
def generate_all(generator, codes: torch.Tensor, batch: int = 500) -> torch.Tensor:
    return torch.cat([generator.generate(codes[i:i + batch]) for i in range(0, len(codes), batch)])


@torch.no_grad()
def sample_realism(encoder, generator, judge, train_u8: torch.Tensor, test_u8: torch.Tensor, n: int = 2000,
                   n_fit: int = 10000, sampler=None,
                   train_labels: torch.Tensor | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """KID x100 (mean, std over subsets) of reconstructions, samples and references vs real test images.

    ``sampler``: a trained code sampler; its samples are scored as ``code_sampler`` (a class-conditional
    one draws sample i of class i mod K).
    ``train_labels``: the training images' classes; adds the per-class copula's samples.
    Sets drawn per class also report how often the encoder and the judge name the class asked for.
    """
    layer = generator.encoder_layer
    # Disjoint random picks: codes are fitted on one set of training images, the floor uses others,
    # and reconstructions / blurred references come from test images that are not the KID reference.
    gen = torch.Generator().manual_seed(0)
    train_pick, test_pick = torch.randperm(len(train_u8), generator=gen), torch.randperm(len(test_u8), generator=gen)
    fit = train_u8[train_pick[:n_fit]].float() / 255
    train_real = train_u8[train_pick[n_fit:n_fit + n]].float() / 255
    real = test_u8[test_pick[:n]].float() / 255
    other = test_u8[test_pick[n:2 * n]].float() / 255
    sets = {"real_train": train_real,
            "real_test_box_blurred": torch.nn.functional.avg_pool2d(other, 3, 1, 1, count_include_pad=False),
            "reconstructions": generate_all(generator, encode_all(encoder, layer, other))}
    fit_labels = None if train_labels is None else train_labels[train_pick[:n_fit]]
    samples = code_samples(encode_all(encoder, layer, fit), n, labels=fit_labels)
    asked = {}  # the class each sample was drawn for, where a set is drawn per class
    if fit_labels is not None:
        asked["class_gaussian_copula"] = class_order(fit_labels, n)
    if sampler is not None:
        if sampler.num_classes:
            asked["code_sampler"] = torch.arange(n) % sampler.num_classes
        samples["code_sampler"] = sampler.sample(n, labels=asked.get("code_sampler"))
    sets.update({name: generate_all(generator, c) for name, c in samples.items()})

    def judged(logits: torch.Tensor) -> dict:
        # The Inception score in the judge says whether images show one class clearly, which KID can
        # miss (a copula's painterly scenes match real texture statistics with few objects in them).
        score = judge_score(logits)
        return {"judge_inception_score": round(score.inception_score, 3),
                "judge_confidence": round(score.confidence, 3)}

    real_logits, real_features = judge_outputs(judge, real)
    report = {"real_test": judged(real_logits)}
    for name, images in sets.items():
        logits, features = judge_outputs(judge, images)
        result = kid(features, real_features)
        report[name] = {"kid_x100": round(100 * result.mean, 3), "std_x100": round(100 * result.std, 3),
                        **judged(logits)}
        if name in samples:
            # How far the drawn codes are from real ones in sparsity and scale, and whether the images
            # cover the classes (the encoder's labels: a collapsed sampler piles onto a few). Every
            # class gets a share, 0 included, whether or not the encoder names its classes.
            encoder_logits = predict_logits(encoder, images, batch_size=500)
            shares = torch.bincount(encoder_logits.argmax(1), minlength=encoder_logits.shape[1]).float() / len(images)
            report[name].update(code_zero_fraction=round(float((samples[name] == 0).float().mean()), 3),
                                code_mean=round(float(samples[name].mean()), 3),
                                encoder_class_shares=[round(float(v), 3) for v in shares])
            if name in asked:
                report[name].update(
                    encoder_names_asked_class=round(float((encoder_logits.argmax(1) == asked[name]).float().mean()), 3),
                    judge_names_asked_class=round(float((logits.argmax(1) == asked[name]).float().mean()), 3))
    return report, sets


def spectrum_ratio(amplitude_recon: torch.Tensor, amplitude_orig: torch.Tensor) -> dict:
    """Summaries of the ratio of two mean amplitude spectra ``(C, H, W)`` (``fft2`` of images).

    ``peak``: the largest ratio over frequencies (channels averaged) and where it is, as signed
    (vertical, horizontal) cycles per image; ``high_band`` / ``low_band``: the mean ratio where either
    frequency is >= a quarter of the size (the grid's and fine detail's band) and below it.
    """
    ratio = (amplitude_recon / amplitude_orig.clamp_min(1e-12)).mean(0)  # (H, W)
    height, width = ratio.shape

    def cycles(size: int) -> torch.Tensor:  # integer frequencies of fft2's index order: 0, 1, ..., -1
        k = torch.arange(size)
        return torch.where(k <= size // 2, k, k - size)
    fy, fx = cycles(height)[:, None], cycles(width)[None, :]
    high = (4 * fy.abs() >= height) | (4 * fx.abs() >= width)
    peak = int(ratio.argmax())
    return {"peak": round(float(ratio.max()), 3),
            "peak_at_cycles": [int(cycles(height)[peak // width]), int(cycles(width)[peak % width])],
            "high_band": round(float(ratio[high].mean()), 3), "low_band": round(float(ratio[~high].mean()), 3)}


def real_per_class(labels: torch.Tensor, classes: list[str], per_class: int) -> list[torch.Tensor]:
    """The indices of the first ``per_class`` test images of each class; one-line error if a class has fewer."""
    picks = [(labels == k).nonzero().flatten()[:per_class] for k in range(len(classes))]
    for name, chosen in zip(classes, picks):
        if len(chosen) < per_class:
            raise DgnamError(f"class {name!r} has {len(chosen)} test images, fewer than {per_class}")
    return picks


@torch.no_grad()
def sampler_images(generator, sampler, classes: list[str], per_class: int = 8, seed: int = 0) -> torch.Tensor:
    """``per_class`` samples G(sampler(z, class)) of each class, class after class (classes asked by name)."""
    sampler_index = [sampler.class_index(name) for name in classes]  # unknown names fail before any work
    return torch.cat([generator.generate(sampler.sample(per_class, seed=seed + k,
                                                        labels=torch.full((per_class,), index)))
                      for k, index in enumerate(sampler_index)])


def dgnam_images(encoder, generator, n_classes: int, per_class: int = 8,
                 code_prior: float | None = None) -> torch.Tensor:
    """DGN-AM images of the encoder's class logits, ``per_class`` restarts (seeds 0, 1, ...) per class,
    class after class, in one batched run; the code prior is the generator's recorded one unless given."""
    eps = generator.metadata.get("code_prior", 0.0) if code_prior is None else code_prior
    return dgnam.visualize(encoder, range(n_classes), generator=generator, restarts=per_class,
                           code_prior=eps, code_encoder=encoder if eps else None).images


@torch.no_grad()
def class_ceiling_grid(encoder, generator, made: torch.Tensor, images_u8: torch.Tensor, labels: torch.Tensor,
                       classes: list[str], per_class: int = 8) -> torch.Tensor:
    """Per class, three rows: real test images, their reconstructions G(E(x)), and ``per_class`` images
    ``made`` for that class (class after class: :func:`sampler_images` or :func:`dgnam_images`);
    ``(3 * len(classes) * per_class, 3, H, W)``, for ``nrow=per_class``.

    It tells apart what a class's made images lack: if the reconstructions already fail to show the
    object, G is the limit; if they show it and the made images do not, the sampler (or the search) is.
    """
    picks = real_per_class(labels, classes, per_class)
    if len(made) != len(classes) * per_class:
        raise DgnamError(f"{len(made)} made images for {len(classes)} classes x {per_class}; pass them class after "
                         "class")
    rows = []
    for k, chosen in enumerate(picks):
        real = images_u8[chosen].float() / 255
        rows += [real, generator.generate(encode_all(encoder, generator.encoder_layer, real)),
                 made[k * per_class:(k + 1) * per_class]]
    return torch.cat(rows)


@torch.no_grad()
def evaluate(encoder, generator, judges: dict, images_u8: torch.Tensor, labels: torch.Tensor, limit: int | None,
             batch: int = 500) -> tuple[dict, torch.Tensor]:
    """Agreement and error numbers on the test images, and a grid of originals above reconstructions."""
    if limit:
        picks = torch.linspace(0, len(labels) - 1, limit).long()
        images_u8, labels = images_u8[picks], labels[picks]
    layer = generator.encoder_layer
    correct = {}
    for name in ["encoder", *judges]:
        for key in ("original", "reconstruction", "same_class_as_original"):
            correct[f"{name}/{key}"] = 0
    sq_err = 0.0
    amplitude_recon = amplitude_orig = 0.0
    for start in range(0, len(labels), batch):
        x = images_u8[start:start + batch].float() / 255
        y = labels[start:start + batch]
        acts = encoder.run(x, [layer, "output"])
        recon = generator.generate(acts[layer].flatten(1))
        sq_err += float(((recon - x) ** 2).sum())
        amplitude_recon = amplitude_recon + torch.fft.fft2(recon).abs().sum(0)
        amplitude_orig = amplitude_orig + torch.fft.fft2(x).abs().sum(0)
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
    report["amplitude_spectrum_vs_originals"] = spectrum_ratio(amplitude_recon, amplitude_orig)
    report["n_images"] = n
    report["code_summary"] = generator.metadata.get("code_summary")
    report["iterations"] = generator.metadata.get("iterations")
    report["bound_mean"] = float(generator.code_upper_bound.mean())
    # Grid: 4 rows, originals above their reconstructions.
    picks = torch.linspace(0, n - 1, 32).long()
    x = images_u8[picks].float() / 255
    recon = generator.generate(encode_all(encoder, layer, x))
    recon_grid = torch.cat([x[:16], recon[:16], x[16:], recon[16:]])
    return report, recon_grid


def main() -> None:
    try:
        _main()
    except DgnamError as exc:  # one line, not a traceback
        raise SystemExit(f"error: {exc}") from None


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="checkpoints/cifar10/encoder.pt")
    parser.add_argument("--generator", default="checkpoints/cifar10/generator.pt")
    parser.add_argument("--judges", nargs="*", default=[])
    parser.add_argument("--data", default="../shared/data/cifar10")
    parser.add_argument("--limit", type=int, default=None, help="evaluate on this many test images (default: all)")
    parser.add_argument("--kid-judge", default=None, help="classifier whose features measure the samples' KID")
    parser.add_argument("--code-sampler", default=None, help="a trained code sampler: score and show its samples too")
    parser.add_argument("--dgnam-restarts", type=int, default=0,
                        help="also draw, per class, real images, reconstructions and this many DGN-AM images of "
                             "the encoder's class logit (the generator's code bound and code prior)")
    parser.add_argument("--out", default=None, help="folder for report.json and grids")
    args = parser.parse_args()
    if args.code_sampler and not args.kid_judge:
        parser.error("--code-sampler is scored with the KID judge; add --kid-judge")
    encoder, generator = load_classifier(args.encoder), load_generator(args.generator)
    judges = {Path(p).stem: load_classifier(p) for p in args.judges}
    test_u8, test_labels, test_classes = load_uint8(Path(args.data) / "test", 32, ".cache/dgnam")
    if args.dgnam_restarts:
        real_per_class(test_labels, test_classes, args.dgnam_restarts)  # fails before any work
    report, recon_grid = evaluate(encoder, generator, judges, test_u8, test_labels, args.limit)
    dgnam_by_class = None
    if args.dgnam_restarts:
        made = dgnam_images(encoder, generator, len(test_classes), args.dgnam_restarts)
        dgnam_by_class = class_ceiling_grid(encoder, generator, made, test_u8, test_labels, test_classes,
                                            args.dgnam_restarts)
    sets, by_class = {}, None
    if args.kid_judge:
        train_u8, train_labels, _ = load_uint8(Path(args.data) / "train", 32, ".cache/dgnam")
        sampler = None
        if args.code_sampler:
            sampler = load_code_sampler(args.code_sampler)
            sampler.check_generator(generator)
            if sampler.num_classes:
                made = sampler_images(generator, sampler, test_classes)
                by_class = class_ceiling_grid(encoder, generator, made, test_u8, test_labels, test_classes)
        report["kid_vs_real_test"], sets = sample_realism(
            encoder, generator, load_classifier(args.kid_judge), train_u8, test_u8, sampler=sampler,
            train_labels=train_labels)
        if sampler is not None:
            report["code_sampler"] = {"path": args.code_sampler, "iterations": sampler.metadata.get("iterations")}
        report["kid_judge"] = args.kid_judge
    print(json.dumps(report, indent=2))
    if args.out:
        out = Path(args.out)
        atomic_write_json(report, out / "prior_report.json")
        save_image(recon_grid, out / "reconstructions.png", nrow=16, padding=1)
        for name in ("per_unit_gaussian", "full_covariance_gaussian", "gaussian_copula", "class_gaussian_copula",
                     "code_sampler"):
            if name in sets:
                save_image(sets[name][:64], out / f"samples_{name}.png", nrow=16, padding=1)
        if by_class is not None:  # per class: real, reconstructions, samples
            save_image(by_class, out / "real_reconstruction_sample_by_class.png", nrow=8, padding=1)
        if dgnam_by_class is not None:  # per class: real, reconstructions, DGN-AM images
            save_image(dgnam_by_class, out / "real_reconstruction_dgnam_by_class.png", nrow=args.dgnam_restarts,
                       padding=1)
        print(f"wrote {out}/prior_report.json and grids")


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m train.evaluate_prior"))
