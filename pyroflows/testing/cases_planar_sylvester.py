"""Cases of the planar, radial and Sylvester flows (numerical inverses: looser round-trip tolerance)."""

from __future__ import annotations

from .. import transforms as T
from . import TransformCase

# float64 round trip of the numerical inverses (Newton solves converge to ~1e-13; see the modules)
_INV_ATOL = 1e-10


def cases() -> list[TransformCase]:
    tol = {"inverse_atol": _INV_ATOL}
    cond = T.conditional_sylvester
    return [
        TransformCase("planar", lambda: T.planar(3), (3,), **tol),
        TransformCase("conditional_planar", lambda: T.conditional_planar(3, 2, hidden=(8,)), (3,), (2,), **tol),
        TransformCase("radial", lambda: T.radial(3), (3,), **tol),
        TransformCase("conditional_radial", lambda: T.conditional_radial(3, 2, hidden=(8,)), (3,), (2,), **tol),
        TransformCase("sylvester_orthogonal", lambda: T.sylvester(4, "orthogonal", num_ortho_vecs=3), (4,), **tol),
        TransformCase("sylvester_orthogonal_square", lambda: T.sylvester(3, "orthogonal"), (3,), **tol),
        TransformCase("sylvester_householder", lambda: T.sylvester(3, "householder", num_householder=2), (3,), **tol),
        TransformCase("sylvester_triangular", lambda: T.sylvester(3, "triangular"), (3,), **tol),
        TransformCase("sylvester_triangular_flip", lambda: T.sylvester(3, "triangular", flip=True), (3,), **tol),
        TransformCase("conditional_sylvester_orthogonal", lambda: cond(4, 2, "orthogonal", (8,), num_ortho_vecs=2), (4,), (2,), **tol),
        TransformCase("conditional_sylvester_householder", lambda: cond(3, 2, "householder", (8,), num_householder=2), (3,), (2,), **tol),
        TransformCase("conditional_sylvester_triangular", lambda: cond(3, 2, "triangular", hidden=(8,), flip=True), (3,), (2,), **tol),
    ]
