"""train.networks: the critics (minibatch std, class projection)."""

import pytest
import torch

from dgnam.errors import DgnamError
from train.networks import CodeCritic, ImageCritic


@pytest.mark.parametrize("critic_class, shape", [(CodeCritic, [4, 2, 2]), (ImageCritic, [3, 32, 32])])
def test_critics_see_the_batch_diversity(critic_class, shape):
    """Minibatch std: a row's logit depends on the rest of its batch, so a collapsed batch can be caught."""
    torch.manual_seed(0)
    critic = critic_class(shape) if critic_class is CodeCritic else critic_class(32)
    diverse = torch.rand(16, *shape)
    collapsed = diverse[:1].expand(16, *shape)
    with torch.no_grad():
        flat = (lambda x: x.flatten(1)) if critic_class is CodeCritic else (lambda x: x)
        assert critic(flat(diverse))[0] != critic(flat(collapsed))[0]  # the same row 0, another batch


def test_projection_image_critic_scores_an_image_per_class():
    torch.manual_seed(0)
    critic = ImageCritic(32, num_classes=3)
    with torch.no_grad():
        critic.class_embedding.weight.normal_()
        images = torch.rand(4, 3, 32, 32)
        by_class = [critic(images, torch.full((4,), c)) for c in range(3)]
    assert not torch.allclose(by_class[0], by_class[1])  # the same images, judged as another class
    with pytest.raises(DgnamError, match="needs labels"):
        critic(images)
    with pytest.raises(DgnamError, match="takes none"):
        ImageCritic(32)(images, torch.zeros(4, dtype=torch.long))
