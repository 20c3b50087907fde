"""Cases of the core blocks: coupling, ActNorm, invertible linear maps, permutations, stacks."""

from __future__ import annotations

import torch

from .. import transforms as T
from ..nn import ConvNet
from . import TransformCase


def cases() -> list[TransformCase]:
    img, vol = (4, 3, 3), (2, 2, 2, 2)
    return [
        TransformCase("affine_coupling_vector", lambda: T.affine_coupling(5, (16, 16)), (5,)),
        TransformCase("affine_coupling_vector_split1_unclamped", lambda: T.affine_coupling(3, (8,), split=1, clamp=None), (3,)),
        TransformCase("conditional_affine_coupling_vector", lambda: T.conditional_affine_coupling(5, 3, (16, 16)), (5,), (3,)),
        TransformCase("affine_coupling_image", lambda: T.affine_coupling(4, 8, event_dim=3), img),
        TransformCase(
            "conditional_affine_coupling_image_vector_context", lambda: T.conditional_affine_coupling(4, 3, 8, event_dim=3), img, (3,)
        ),
        TransformCase(
            "conditional_affine_coupling_image_map_context",
            lambda: T.ConditionalAffineCoupling(4, ConvNet(2, 4, 8, context_channels=2, context_is_map=True), (2, 3, 3), event_dim=3),
            img,
            (2, 3, 3),
        ),
        TransformCase("affine_coupling_volume", lambda: T.affine_coupling(2, 4, event_dim=4), vol),
        TransformCase("actnorm_vector", lambda: T.actnorm(3), (3,)),
        TransformCase("actnorm_image", lambda: T.actnorm(4, event_dim=3), img),
        TransformCase("actnorm_volume", lambda: T.actnorm(2, event_dim=4), vol),
        TransformCase("conditional_actnorm_vector", lambda: T.conditional_actnorm(3, 2, hidden=(8,)), (3,), (2,)),
        TransformCase("conditional_actnorm_image", lambda: T.conditional_actnorm(4, 2, event_dim=3, hidden=(8,)), img, (2,)),
        TransformCase("invertible_linear", lambda: T.invertible_linear(4), (4,)),
        TransformCase("invertible_conv1x1", lambda: T.InvertibleConv1x1(4), img),
        TransformCase("invertible_conv1x1x1", lambda: T.InvertibleConv1x1x1(2), vol),
        TransformCase("conditional_invertible_linear", lambda: T.conditional_invertible_linear(4, 2, hidden=(8,)), (4,), (2,)),
        TransformCase("conditional_invertible_conv1x1", lambda: T.conditional_invertible_linear(4, 2, event_dim=3, hidden=(8,)), img, (2,)),
        TransformCase("permute_random", lambda: T.permute(5, generator=torch.Generator().manual_seed(0)), (5,)),
        TransformCase("permute_reverse_image", lambda: T.permute(4, "reverse", event_dim=3), img),
        TransformCase("coupling_flow", lambda: T.coupling_flow(5, num_blocks=2, hidden=(16,), actnorm=True, seed=0), (5,)),
        TransformCase(
            "conditional_coupling_flow", lambda: T.conditional_coupling_flow(5, 3, num_blocks=2, hidden=(16,), seed=0), (5,), (3,)
        ),
    ]
