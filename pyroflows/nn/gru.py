r"""A recurrent conditioner: a GRU cell followed by a residual MLP, ``q(u_t, h_{t-1}) = (out_t, h_t)``.

The subnetwork of a recurrent coupling layer (CRow, Hwang et al. 2019, eq. (1)) keeps a hidden state
across time steps:

.. math::

    h_t = \mathrm{GRU}([u_t, c_t], h_{t-1}), \qquad \mathrm{out}_t = g([u_t, h_t], c_t),

with :math:`c_t` an optional per-step context and :math:`g` a :class:`~pyroflows.nn.ResidualMLP`
whose last layer is zero-initialised. The output depends on :math:`u_{\le t}` (and
:math:`c_{\le t}`) only, so a coupling layer that feeds it its untouched half can recompute the
same hidden states in the inverse direction.

:meth:`GRUConditioner.step` advances one time step; :meth:`GRUConditioner.forward` runs a whole
sequence (time on axis ``-2``): the input projections of every step are one matrix product, the
recurrence over time is a Python loop over ``T`` (vectorised over the batch), and the read-out
network runs once on all steps. Both use the same GRU arithmetic, so the two paths agree to
rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..validation import check_size
from .dense import ResidualMLP, join_context


class GRUConditioner(nn.Module):
    r"""GRU cell plus residual MLP read-out: :math:`(u_t, h_{t-1}) \mapsto (\mathrm{out}_t, h_t)`.

    The GRU follows ``torch.nn.GRUCell`` (its parameters live in ``self.cell``):
    :math:`r = \sigma(W_{ir} a + b_{ir} + W_{hr} h + b_{hr})`,
    :math:`z = \sigma(W_{iz} a + b_{iz} + W_{hz} h + b_{hz})`,
    :math:`n = \tanh(W_{in} a + b_{in} + r \odot (W_{hn} h + b_{hn}))`,
    :math:`h' = (1 - z) \odot n + z \odot h` with :math:`a = [u, c]`.

    Args:
        in_features: size of ``u``'s last dim.
        out_features: size of the output's last dim.
        hidden_size: size of the GRU state :math:`h`.
        hidden_features: width of the read-out :class:`~pyroflows.nn.ResidualMLP`.
        num_blocks: residual blocks of the read-out.
        context_features: size of the per-step context's last dim (0: no context).
        zero_init: zero the read-out's last layer (a fresh coupling is the identity).

    Example::

        >>> q = GRUConditioner(3, 4, hidden_size=8, hidden_features=16)
        >>> u = torch.randn(5, 7, 3)                       # batch 5, T = 7 steps
        >>> out, hs = q(u)                                 # the whole sequence
        >>> out.shape, hs.shape
        (torch.Size([5, 7, 4]), torch.Size([5, 7, 8]))
        >>> h = q.initial_state((5,), u)
        >>> for t in range(7):                             # step by step: the same states
        ...     _, h = q.step(u[:, t], h)
        >>> torch.allclose(h, hs[:, -1], atol=1e-6)
        True
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden_size: int = 64,
        hidden_features: int = 128,
        num_blocks: int = 1,
        context_features: int = 0,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = check_size("in_features", in_features), check_size("out_features", out_features)
        self.context_features, self.hidden_size = (
            check_size("context_features", context_features, 0),
            check_size("hidden_size", hidden_size),
        )
        self.cell = nn.GRUCell(in_features + context_features, hidden_size)
        self.net = ResidualMLP(in_features + hidden_size, out_features, hidden_features, num_blocks, context_features, zero_init=zero_init)

    def initial_state(self, batch_shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
        """The initial state :math:`h_0 = 0` of shape ``batch_shape + (hidden_size,)``, with ``like``'s dtype and device."""
        return like.new_zeros(tuple(batch_shape) + (self.hidden_size,))

    def _input_gates(self, u: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        return F.linear(join_context(u, context, self.context_features), self.cell.weight_ih, self.cell.bias_ih)

    def _advance(self, gi: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        gh = F.linear(h, self.cell.weight_hh, self.cell.bias_hh)
        i_r, i_z, i_n = gi.chunk(3, dim=-1)
        h_r, h_z, h_n = gh.chunk(3, dim=-1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return n + z * (h - n)

    def _read_out(self, u: torch.Tensor, h: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        if u.shape[:-1] != h.shape[:-1]:  # a context broadcast the batch
            u = u.expand(h.shape[:-1] + u.shape[-1:])
        return self.net(torch.cat([u, h], dim=-1), context)

    def step(self, u: torch.Tensor, h: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step: ``u`` ``(..., in_features)``, ``h`` ``(..., hidden_size)`` -> ``(out, h_new)``."""
        h_new = self._advance(self._input_gates(u, context), h)
        return self._read_out(u, h_new, context), h_new

    def forward(
        self, u: torch.Tensor, h: torch.Tensor | None = None, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A sequence: ``u`` ``(..., T, in_features)``, initial state ``h`` ``(..., hidden_size)`` (default 0),
        context ``(..., T, context_features)`` -> ``(out (..., T, out_features), states (..., T, hidden_size))``
        where ``states[..., t, :]`` is :math:`h_t` (after step ``t``)."""
        gi = self._input_gates(u, context)
        if h is None:
            h = self.initial_state(gi.shape[:-2], gi)
        states = []
        for t in range(gi.shape[-2]):
            h = self._advance(gi[..., t, :], h)
            states.append(h)
        hs = torch.stack(states, dim=-2)
        return self._read_out(u, hs, context), hs
