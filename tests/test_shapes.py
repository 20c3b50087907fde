"""The synthetic segmentation shapes (models.common.data.shapes)."""

import pytest
import torch

from models.common.data import shapes

pytestmark = pytest.mark.usefixtures("one_thread")


def test_shapes_ranges_and_determinism():
    images, masks = shapes.sample(64)
    assert images.shape == (64, 3, 32, 32) and masks.shape == (64, 1, 32, 32)
    assert images.dtype == masks.dtype == torch.float32
    assert float(images.min()) >= 0 and float(images.max()) <= 1
    assert bool(((masks == 0) | (masks == 1)).all())
    share = masks.mean((1, 2, 3))
    assert bool((share > 0.01).all()) and 0.1 < float(share.mean()) < 0.4  # every image has a foreground
    again = shapes.sample(64, generator=0)
    assert torch.equal(images, again[0]) and torch.equal(masks, again[1])
    assert not torch.equal(masks, shapes.sample(64, generator=1)[1])
    small = shapes.sample(3, size=16, dtype=torch.float64)
    assert small[0].shape == (3, 3, 16, 16) and small[1].dtype == torch.float64


def test_foreground_is_striped_and_background_smooth():
    images, masks = shapes.sample(200, noise=0.0, generator=2)
    # neighbour differences measure texture: the stripes change fast, the background slowly
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().mean(1, keepdim=True)
    inside = (masks[..., :, 1:] * masks[..., :, :-1]).bool()
    outside = ((1 - masks[..., :, 1:]) * (1 - masks[..., :, :-1])).bool()
    assert float(dx[inside].mean()) > 3 * float(dx[outside].mean())


def test_bad_arguments():
    with pytest.raises(ValueError, match="n: expected a positive int"):
        shapes.sample(0)
    with pytest.raises(ValueError, match="size: expected a positive int"):
        shapes.sample(2, size=2.5)
    with pytest.raises(ValueError, match="noise"):
        shapes.sample(2, noise=-0.1)
