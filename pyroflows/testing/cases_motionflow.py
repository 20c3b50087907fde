"""Cases of the MotionFlow family: the conditional steps with map and vector contexts, the dynamic
latent prior's map, and the whole prediction map on image and vector frames.

Sizes are tiny so the float64 autograd Jacobian of a whole predicted sequence stays small; the
log-det check of the sequence maps then covers the cross-time blocks too (they must leave the
determinant alone, which holds only if frame ``t`` depends on noise up to ``t``).
"""

from __future__ import annotations

from .. import flows as FL
from .. import transforms as T
from ..nn.conv import ContextCouplingNet
from . import TransformCase


def cases() -> list[TransformCase]:
    img, ctx = (4, 3, 1), (6, 3, 1)
    small = dict(num_steps=2, hidden_channels=4, fc_hidden=(8,), prior_hidden=4, encoder_hidden=(4, 4))
    return [
        TransformCase(
            "conditional_actnorm_map_context", lambda: T.conditional_actnorm(4, 6, event_dim=3, hidden=(8,), context_shape=ctx), img, ctx
        ),
        TransformCase(
            "conditional_conv1x1_map_context",
            lambda: T.conditional_invertible_linear(4, 6, event_dim=3, hidden=(8,), context_shape=ctx),
            img,
            ctx,
        ),
        TransformCase(
            "conditional_affine_coupling_cross_split_map_context",
            lambda: T.ConditionalAffineCoupling(4, ContextCouplingNet(2, 4, 6, hidden_channels=8, context_features=4), ctx, event_dim=3),
            img,
            ctx,
        ),
        TransformCase("motionflow_step_map_context", lambda: FL.conditional_motionflow_step(4, (5, 3, 2), 8, (8,)), (4, 3, 2), (5, 3, 2)),
        TransformCase("motionflow_step_vector_context", lambda: FL.conditional_motionflow_step(3, (5,), 8, (8,)), (3, 2, 2), (5,)),
        TransformCase("latent_dynamics", lambda: FL.conditional_latent_dynamics((2, 2, 1), hidden_channels=4), (3, 2, 2, 1), (2, 2, 2, 1)),
        TransformCase(
            "motionflow_image_frames", lambda: FL.conditional_motionflow((2, 2, 1), num_observed=3, **small), (3, 2, 2, 1), (3, 2, 2, 1)
        ),
        TransformCase(
            "motionflow_vector_frames_residual_history2",
            lambda: FL.conditional_motionflow((3,), num_observed=4, history=2, residual=True, **small),
            (2, 3),
            (4, 3),
        ),
    ]
