"""Cases of the continuous normalizing flows (FFJORD).

The shared checks need a deterministic log-det, so every case uses the exact trace (Hutchinson's
estimator is checked on its own in ``tests/test_cnf.py``). Small dynamics networks keep the solves
cheap; the adaptive cases run at ``atol = rtol = 1e-5`` (round trip within ``1e-4``), the
fixed-grid and adjoint cases cover the other solver paths. The adjoint cases are tagged
``first_order``: the adjoint method's backward has no graph, so they refuse second derivatives.
"""

from __future__ import annotations

from .. import transforms as T
from . import TransformCase


def cases() -> list[TransformCase]:
    tight = dict(trace="exact", atol=1e-5, rtol=1e-5)
    return [
        TransformCase("cnf_exact_dopri5", lambda: T.cnf(3, hidden=(8, 8), **tight), (3,), inverse_atol=1e-4, logdet_atol=1e-4),
        TransformCase(
            "cnf_exact_rk4_adjoint_fixed_time",
            lambda: T.cnf(
                2, hidden=(8,), trace="exact", method="rk4", step_size=0.125, adjoint=True, learn_time=False, activation="softplus"
            ),
            (2,),
            inverse_atol=1e-4,
            logdet_atol=1e-4,
            tags=("first_order",),
        ),
        TransformCase(
            "conditional_cnf_exact_dopri5",
            lambda: T.conditional_cnf(3, 2, hidden=(8,), **tight),
            (3,),
            (2,),
            inverse_atol=1e-4,
            logdet_atol=1e-4,
        ),
        TransformCase(
            "conditional_cnf_exact_adjoint",
            lambda: T.conditional_cnf(2, 2, hidden=(8,), adjoint=True, **tight),
            (2,),
            (2,),
            inverse_atol=1e-4,
            logdet_atol=1e-4,
            tags=("first_order",),
        ),
    ]
