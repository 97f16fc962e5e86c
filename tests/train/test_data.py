"""train.data: the image data module's batch augmentation."""

import torch


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
