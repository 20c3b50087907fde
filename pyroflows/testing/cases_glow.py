"""Cases of the Glow family: squeeze, Glow steps and the multi-scale Glow, on images and volumes.

:class:`~pyroflows.transforms.Squeeze` and :class:`~pyroflows.transforms.Unsqueeze` change the event
shape, which the shared checks do not allow a whole case to do; their cases sandwich an
invertible 1x1 (1x1x1) convolution between them, so the checks see the squeeze's round trip,
zero log-det (the Jacobian of the sandwich is that of the convolution on the coarse grid), shape
errors and shape algebra. The multi-scale cases keep at most 32 channels at the coarsest level:
the suite perturbs every parameter by 0.1, which leaves a 64x64 LU factorisation too badly
conditioned for the float64 round-trip tolerance.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import flows as FL
from .. import transforms as T
from ..transforms.stacks import FlowSequence
from . import TransformCase


def _sandwich(event_dim: int, channels: int) -> Callable[[], FlowSequence]:
    block = 2 ** (event_dim - 1)
    return lambda: FlowSequence(
        [
            T.Squeeze(event_dim, num_channels=channels),
            T.InvertibleConv1x1(block * channels) if event_dim == 3 else T.InvertibleConv1x1x1(block * channels),
            T.Unsqueeze(event_dim, num_channels=block * channels),
        ]
    )


def cases() -> list[TransformCase]:
    img, vol = (2, 4, 4), (1, 4, 4, 4)
    return [
        TransformCase("squeeze_image", _sandwich(3, 2), img),
        TransformCase("squeeze_volume", _sandwich(4, 1), vol),
        TransformCase("glow_step_image", lambda: FL.glow_step(4, 8), (4, 3, 3)),
        TransformCase("glow_step_volume_softclamp", lambda: FL.glow_step(4, 4, event_dim=4, scale="softclamp"), (4, 2, 2, 2)),
        TransformCase("conditional_glow_step_image_vector_context", lambda: FL.conditional_glow_step(4, (3,), 8), (4, 3, 3), (3,)),
        TransformCase(
            "conditional_glow_step_volume_map_context",
            lambda: FL.conditional_glow_step(4, (2, 2, 2, 2), 4, event_dim=4),
            (4, 2, 2, 2),
            (2, 2, 2, 2),
        ),
        TransformCase("glow_image", lambda: FL.glow(img, num_levels=2, num_steps=2, hidden_channels=8), img),
        TransformCase("glow_image_softclamp_checkpoint", lambda: FL.glow(img, 2, 1, 8, scale="softclamp", checkpoint=True), img),
        TransformCase("glow_volume", lambda: FL.glow(vol, num_levels=2, num_steps=1, hidden_channels=4), vol),
        TransformCase("glow_volume_one_level", lambda: FL.glow((2, 4, 4, 4), num_levels=1, num_steps=2, hidden_channels=4), (2, 4, 4, 4)),
        TransformCase("conditional_glow_image_vector_context", lambda: FL.conditional_glow(img, (3,), 2, 2, 8), img, (3,)),
        TransformCase(
            "conditional_glow_image_map_context_checkpoint",
            lambda: FL.conditional_glow(img, (1, 4, 4), 2, 1, 8, checkpoint=True),
            img,
            (1, 4, 4),
        ),
        TransformCase("conditional_glow_volume_vector_context", lambda: FL.conditional_glow(vol, (2,), 2, 1, 4), vol, (2,)),
        TransformCase("conditional_glow_volume_map_context", lambda: FL.conditional_glow(vol, (1, 4, 4, 4), 2, 1, 4), vol, (1, 4, 4, 4)),
    ]
