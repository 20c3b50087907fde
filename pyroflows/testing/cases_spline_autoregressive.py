"""Cases of the neural spline flows (coupling and autoregressive) and the affine MAF / IAF."""

from __future__ import annotations

from .. import transforms as T
from . import TransformCase

# float64 round trip: the spline's inverse is the root of a quadratic, exact to rounding
_TOL = {"inverse_atol": 1e-9}


def cases() -> list[TransformCase]:
    img, seq = (4, 3, 3), (2, 5)
    return [
        TransformCase("spline_coupling_vector", lambda: T.spline_coupling(5, (16, 16), count_bins=4), (5,), **_TOL),
        # a narrow interval: most inputs fall in the linear tails
        TransformCase("spline_coupling_tails", lambda: T.spline_coupling(3, (8,), split=1, bound=0.5), (3,), input_scale=2.0, **_TOL),
        TransformCase(
            "conditional_spline_coupling_vector", lambda: T.conditional_spline_coupling(5, 3, (16,), count_bins=4), (5,), (3,), **_TOL
        ),
        TransformCase("spline_coupling_image", lambda: T.spline_coupling(4, 8, event_dim=3, count_bins=3), img, **_TOL),
        # the passive features mapped too, by a learned input-independent spline (a function of the context)
        TransformCase(
            "spline_coupling_transform_passive", lambda: T.spline_coupling(5, (16,), count_bins=4, transform_passive=True), (5,), **_TOL
        ),
        TransformCase(
            "conditional_spline_coupling_transform_passive",
            lambda: T.conditional_spline_coupling(5, 3, (16,), count_bins=4, transform_passive=True),
            (5,),
            (3,),
            **_TOL,
        ),
        TransformCase(
            "spline_coupling_image_transform_passive",
            lambda: T.spline_coupling(4, 8, event_dim=3, split=1, count_bins=3, transform_passive=True),
            img,
            **_TOL,
        ),
        TransformCase("spline_coupling_sequence", lambda: T.spline_coupling(2, 4, event_dim=2, count_bins=3), seq, **_TOL),
        TransformCase(
            "conditional_spline_coupling_image",
            lambda: T.conditional_spline_coupling(4, 2, 8, event_dim=3, count_bins=3),
            img,
            (2,),
            **_TOL,
        ),
        TransformCase(
            "spline_coupling_flow", lambda: T.spline_coupling_flow(4, num_blocks=2, hidden=(8,), count_bins=3, seed=0), (4,), **_TOL
        ),
        TransformCase(
            "conditional_spline_coupling_flow",
            lambda: T.conditional_spline_coupling_flow(4, 2, num_blocks=2, hidden=(8,), count_bins=3, seed=0),
            (4,),
            (2,),
            **_TOL,
        ),
        TransformCase(
            "spline_coupling_flow_transform_passive",
            lambda: T.spline_coupling_flow(4, num_blocks=2, hidden=(8,), count_bins=3, seed=0, transform_passive=True),
            (4,),
            **_TOL,
        ),
        TransformCase(
            "conditional_spline_coupling_flow_transform_passive",
            lambda: T.conditional_spline_coupling_flow(4, 2, num_blocks=2, hidden=(8,), count_bins=3, seed=0, transform_passive=True),
            (4,),
            (2,),
            **_TOL,
        ),
        TransformCase("spline_autoregressive_maf", lambda: T.spline_autoregressive(4, (16,), count_bins=4), (4,), **_TOL),
        TransformCase("spline_autoregressive_iaf", lambda: T.spline_autoregressive(3, (8, 8), cheap="forward", count_bins=3), (3,), **_TOL),
        TransformCase(
            "conditional_spline_autoregressive", lambda: T.conditional_spline_autoregressive(3, 2, (8,), count_bins=3), (3,), (2,), **_TOL
        ),
        TransformCase("affine_autoregressive_maf", lambda: T.affine_autoregressive(4, (16, 16)), (4,)),
        TransformCase("affine_autoregressive_iaf", lambda: T.affine_autoregressive(4, (16,), cheap="forward", clamp=None), (4,)),
        TransformCase("affine_autoregressive_no_hidden", lambda: T.affine_autoregressive(3, ()), (3,)),
        TransformCase("conditional_affine_autoregressive_maf", lambda: T.conditional_affine_autoregressive(4, 3, (16,)), (4,), (3,)),
        TransformCase(
            "conditional_affine_autoregressive_iaf", lambda: T.conditional_affine_autoregressive(3, 2, (8,), cheap="forward"), (3,), (2,)
        ),
        TransformCase("maf", lambda: T.maf(4, num_blocks=2, hidden=(8,)), (4,)),
        TransformCase("iaf", lambda: T.iaf(4, num_blocks=2, hidden=(8,), permutation="random", seed=0), (4,)),
        TransformCase("conditional_maf", lambda: T.conditional_maf(3, 2, num_blocks=2, hidden=(8,)), (3,), (2,)),
        TransformCase("conditional_iaf", lambda: T.conditional_iaf(3, 2, num_blocks=2, hidden=(8,)), (3,), (2,)),
    ]
