"""Cases of the CRow family: recurrent coupling flows on sequences ``(T, D)`` (event_dim 2).

The sequences are short (T = 3) so the float64 autograd Jacobian of the whole sequence map stays
small; the log-det check then covers the cross-time blocks of the Jacobian too (they must not
change the determinant, which holds only if frame ``t`` depends on frames ``<= t``).
"""

from __future__ import annotations

from .. import flows as FL
from . import TransformCase


def cases() -> list[TransformCase]:
    seq, small = (3, 4), dict(num_blocks=2, hidden_size=6, hidden_features=8)
    return [
        TransformCase("crow_recurrent_gated", lambda: FL.crow(4, **small), seq),
        TransformCase("crow_recurrent_ungated_odd_dim_no_permutation", lambda: FL.crow(3, gate=False, permutation=None, **small), (3, 3)),
        TransformCase("crow_nonrecurrent_cinn", lambda: FL.crow(4, recurrent=False, **small), seq),
        TransformCase("conditional_crow_recurrent_gated", lambda: FL.conditional_crow(4, 2, **small), seq, (3, 2)),
        TransformCase("conditional_crow_static_context", lambda: FL.conditional_crow(4, 2, permutation="reverse", **small), seq, (1, 2)),
        TransformCase(
            "conditional_crow_nonrecurrent_cinn", lambda: FL.conditional_crow(4, 2, recurrent=False, gate=False, **small), seq, (3, 2)
        ),
    ]
