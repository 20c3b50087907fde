"""Cases of DUAL-GLOW's relation transform (:class:`~pyroflows.flows.LatentRelation`): the
target's prior at every level given the source's packed latent, on images and volumes, with
source and target of different channel counts, and with a mean-only relation."""

from __future__ import annotations

from .. import flows as FL
from . import TransformCase


def cases() -> list[TransformCase]:
    return [
        TransformCase(
            "latent_relation_image", lambda: FL.latent_relation((1, 4, 4), (2, 4, 4), num_levels=2, hidden_channels=8), (1, 4, 4), (2, 4, 4)
        ),
        TransformCase(
            "latent_relation_image_mean_only",
            lambda: FL.latent_relation((2, 4, 4), num_levels=1, hidden_channels=8, learn_scale=False),
            (2, 4, 4),
            (2, 4, 4),
        ),
        TransformCase(
            "latent_relation_image_no_source_top",
            lambda: FL.LatentRelation((1, 8, 8), num_levels=3, hidden_channels=4, source_top=False),
            (1, 8, 8),
            (1, 8, 8),
        ),
        TransformCase(
            "latent_relation_volume",
            lambda: FL.latent_relation((1, 4, 4, 4), (1, 4, 4, 4), num_levels=2, hidden_channels=4),
            (1, 4, 4, 4),
            (1, 4, 4, 4),
        ),
    ]
