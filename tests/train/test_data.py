"""train.data: decoding an image folder once into a cached uint8 tensor, and the batch augmentation."""

import numpy as np
import pytest
import torch
from PIL import Image

from dgnam.errors import DgnamError
from train.data import load_uint8


def test_augment_batch_crops_and_flips():
    from train.data import augment_batch
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.uint8).view(2, 3, 8, 8)
    out = augment_batch(images, "none")
    torch.testing.assert_close(out, images.float() / 255)
    rng = torch.Generator().manual_seed(0)
    crops = augment_batch(images, "crop", pad=2, generator=rng)
    assert crops.shape == (2, 3, 8, 8)
    # A reflect-padded crop keeps only original pixel values; some shift happens across a few draws.
    assert set((crops * 255).round().unique().tolist()) <= set(images.float().unique().tolist())
    shifted = any(not torch.equal(augment_batch(images, "crop", pad=2, generator=rng), out) for _ in range(5))
    assert shifted


def test_load_uint8_decodes_the_folder_exactly_and_reads_it_back_from_the_cache(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "train"
    arrays = {}
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            arrays[cls, i] = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(arrays[cls, i]).save(root / cls / f"{i}.png")  # lossless
    images, labels, classes = load_uint8(root, 8, tmp_path / "cache")
    assert classes == ["cat", "dog"] and labels.tolist() == [0, 0, 1, 1] and images.dtype == torch.uint8
    assert torch.equal(images[2], torch.from_numpy(arrays["dog", 0]).permute(2, 0, 1))  # (3, H, W), pixel exact
    assert len(list((tmp_path / "cache").glob("train-8-*.pt"))) == 1
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(root / "dog" / "0.png")  # same count: same key
    cached, _, _ = load_uint8(root, 8, tmp_path / "cache")
    assert torch.equal(cached, images)  # from the cache, not decoded again
    with pytest.raises(DgnamError, match="image folder '.*missing' does not exist"):
        load_uint8(tmp_path / "missing", 8, None)


def test_variants_add_twin_classes_to_both_splits(image_root, tmp_path):
    from train.data import ImageFolderData
    data = ImageFolderData(root=str(image_root), cache_dir=str(tmp_path), variants=["bgr"])
    data.setup()
    assert data.classes == ["blue", "red", "blue_bgr", "red_bgr"]
    images, labels = data.test_set.tensors
    assert len(images) == 16 and labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    assert torch.equal(images[8:], images[:8].flip(1))  # red and blue swapped
    detector = ImageFolderData(root=str(image_root), cache_dir=str(tmp_path), variants=["bgr"], label="variant")
    detector.setup()
    assert detector.classes == ["natural", "bgr"] and detector.train_set.tensors[1].tolist() == [0] * 24 + [1] * 24
    with pytest.raises(DgnamError, match="--data.cache true"):
        ImageFolderData(root=str(image_root), cache=False, variants=["bgr"])
