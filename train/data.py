"""ImageFolder data for training encoders and generators.

Batches are uint8 images (B, 3, H, W) plus labels; augmentation runs on whole batches after transfer
to the device, so the per-image Python work is only decoding. Small datasets (CIFAR-10) are decoded
once and cached as one uint8 tensor: decoding 50k JPEGs per epoch would otherwise dominate a
2-core CPU. Large ones (ImageNet) stream through torchvision's ImageFolder with worker processes.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision import transforms
from torchvision.datasets import ImageFolder

from dgnam.engine.transforms import crop_rows
from dgnam.errors import DgnamError
from dgnam.io import atomic_save
from dgnam.sanity.variants import with_variants

Augment = Literal["classifier", "crop", "none"]


def _decode(path: str, size: int) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.size != (size, size):
            im = transforms.functional.center_crop(transforms.functional.resize(im, size), size)
        return np.asarray(im, dtype=np.uint8)


def load_uint8(root: str | os.PathLike, size: int,
               cache_dir: str | os.PathLike | None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Decode an ImageFolder tree into ``images (N,3,size,size) uint8, labels (N,), classes``, cached on disk."""
    root = Path(root)
    if not root.is_dir():
        raise DgnamError(f"image folder '{root}' does not exist; pass --data.root pointing to an ImageFolder tree")
    folder = ImageFolder(str(root))
    cache_file = None
    if cache_dir is not None:
        key = hashlib.sha1(f"{root.resolve()}|{size}|{len(folder.samples)}".encode()).hexdigest()[:16]
        cache_file = Path(cache_dir) / f"{root.name}-{size}-{key}.pt"
        if cache_file.is_file():
            cached = torch.load(cache_file, weights_only=True)
            return cached["images"], cached["labels"], list(cached["classes"])
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        arrays = list(pool.map(lambda s: _decode(s[0], size), folder.samples, chunksize=256))
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor(folder.targets, dtype=torch.long)
    if cache_file is not None:
        atomic_save({"images": images, "labels": labels, "classes": folder.classes}, cache_file)
    return images, labels, folder.classes


def augment_batch(images_u8: torch.Tensor, mode: Augment, pad: int = 4,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 (B,3,H,W) -> float [0,1] with batch augmentation.

    ``classifier``: random crop from a zero-padded image plus horizontal flip (standard CIFAR recipe).
    ``crop``: random crop from a reflect-padded image, no flip (the DeePSiM recipe has no mirroring).
    """
    x = images_u8.float().div_(255)
    if mode == "none":
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (pad,) * 4, mode="constant" if mode == "classifier" else "reflect")
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    x = crop_rows(padded, dy, dx, h, w)
    if mode == "classifier":
        flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


class _PILToUint8(Dataset):
    def __init__(self, root: str, size: int, resize: int) -> None:
        self.folder = ImageFolder(root, transform=transforms.Compose([
            transforms.Resize(resize), transforms.RandomCrop(size), transforms.PILToTensor()]))

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i: int):
        return self.folder[i]


class ImageFolderData(L.LightningDataModule):
    """Train/test ImageFolder trees as uint8 batches; augmentation happens after transfer.

    Args:
        root: folder holding ``train/`` and ``test/`` (or ``val/``) ImageFolder trees.
        image_size: side of the square images the networks see.
        augment: ``classifier`` (crop + flip), ``crop`` (paper's random crops, no flip) or ``none``.
        cache: decode everything once into a uint8 tensor (small datasets); else stream with workers.
        resize: for streaming, the shorter side before the random crop (256 for a 227 crop).
        subset: use only the first N training images (tests, quick runs).
        variants: image variants (``dgnam.sanity.variants``, e.g. ``[bgr]``) added to both splits as
            extra classes: the paper's test of whether DGN-AM follows the network or the prior.
        label: ``class`` (the variants' copies are new classes) or ``variant`` (the label says which
            variant an image is: a detector of the modification). Needs ``cache``.
    """

    def __init__(self, root: str = "../shared/data/cifar10", image_size: int = 32, batch_size: int = 128,
                 augment: Augment = "classifier", cache: bool = True, cache_dir: str | None = ".cache/dgnam",
                 resize: int | None = None, num_workers: int = 0, subset: int | None = None, pad: int = 4,
                 seed: int = 0, variants: list[str] | None = None, label: str = "class") -> None:
        super().__init__()
        if (variants or label != "class") and not cache:
            raise DgnamError("--data.variants and --data.label need the decoded cache; set --data.cache true")
        self.save_hyperparameters()
        self.classes: list[str] = []
        self._aug_rng = torch.Generator().manual_seed(seed)

    def _split_dir(self, split: str) -> str:
        root = Path(self.hparams.root)
        candidates = ["test", "val"] if split == "test" else ["train"]
        for name in candidates:
            if (root / name).is_dir():
                return str(root / name)
        raise DgnamError(f"'{root}' has no {' or '.join(candidates)}/ folder; point --data.root at a folder with "
                         "train/ and test/")

    def _dataset(self, split: str) -> Dataset:
        hp = self.hparams
        if hp.cache:
            images, labels, self.classes = load_uint8(self._split_dir(split), hp.image_size, hp.cache_dir)
            if split == "train" and hp.subset:
                images, labels = images[: hp.subset], labels[: hp.subset]
            if hp.variants or hp.label != "class":
                images, labels, self.classes = with_variants(images, labels, self.classes, hp.variants or [], hp.label)
            return TensorDataset(images, labels)
        ds = _PILToUint8(self._split_dir(split), hp.image_size, hp.resize or hp.image_size)
        self.classes = ds.folder.classes
        return ds

    def setup(self, stage: str | None = None) -> None:
        self.train_set = self._dataset("train")
        self.test_set = self._dataset("test")

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        return DataLoader(self.train_set, batch_size=hp.batch_size, shuffle=True, drop_last=True,
                          num_workers=hp.num_workers, persistent_workers=hp.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        hp = self.hparams
        return DataLoader(self.test_set, batch_size=max(hp.batch_size, 256), shuffle=False, num_workers=hp.num_workers)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        mode = self.hparams.augment if self.trainer is not None and self.trainer.training else "none"
        return augment_batch(images, mode, self.hparams.pad, self._aug_rng), labels
