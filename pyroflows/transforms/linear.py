r"""Invertible linear maps with an LU parameterisation: dense for vectors, 1x1 convolution for
images, 1x1x1 convolution for volumes; unconditional and conditional.

.. math::

    W = P\,L\,(U + \operatorname{diag}(\sigma \odot e^{d})), \qquad
    y = W x \ \text{(per spatial position)}, \qquad
    \log|\det J| = S \textstyle\sum_i d_i,

with :math:`P` a fixed permutation, :math:`L` unit lower triangular, :math:`U` strictly upper
triangular, :math:`\sigma` fixed signs and :math:`S` the number of spatial positions. The inverse
uses two triangular solves. The conditional version adds context-dependent offsets to
:math:`L, U, d` (a per-sample matrix, as in MotionFlow's conditional 1x1 convolution).

Reference: Kingma, Dhariwal, "Glow: generative flow with invertible 1x1 convolutions", NeurIPS 2018.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from pyro.distributions import TransformModule
from pyro.distributions.conditional import ConditionalTransformModule
from torch.distributions import Transform

from ..nn.dense import context_mlp
from ..validation import check_tensor
from .base import OnePassTransform, batch_shape_of, context_event_shape, event_constraint, module_reference


class ConditionedInvertibleLinear(OnePassTransform, Transform):
    """Invertible linear map from given LU factors ``factors_fn() -> (P, lower, upper, log_diag, sign)``.

    ``lower``, ``upper`` and ``log_diag`` may carry leading batch dims (one matrix per sample).
    """

    bijective = True

    def __init__(self, factors_fn, num_features: int, event_dim: int = 1, owner=None, context_batch_shape=()):
        super().__init__(cache_size=1)
        self.factors_fn = factors_fn
        self.num_features, self._edim = num_features, event_dim
        self.event_shape_spec = (num_features,) + (None,) * (event_dim - 1)
        self.domain = self.codomain = event_constraint(event_dim)
        self.context_batch_shape = torch.Size(context_batch_shape)
        self._owner = owner

    def _reference(self):
        return module_reference(self._owner) if self._owner is not None else None

    def _factors(self):
        return self.factors_fn()

    @staticmethod
    def _triangles(lower, upper, log_diag, sign):
        eye = torch.eye(lower.shape[-1], dtype=lower.dtype, device=lower.device)
        lo = torch.tril(lower, -1) + eye
        up = torch.triu(upper, 1) + torch.diag_embed(sign * torch.exp(log_diag))
        return lo, up

    def _matmul(self, m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if m.dim() == 2 and self._edim == 1:
            return F.linear(v, m)
        batch = batch_shape_of(v, self._edim)
        event = v.shape[v.dim() - self._edim:]
        out = m @ v.reshape(batch + (self.num_features, event.numel() // self.num_features))
        return out.reshape(out.shape[:-2] + event)

    def _ladj(self, log_diag, v):
        spatial = 1
        for s in v.shape[v.dim() - self._edim + 1:]:
            spatial *= s
        batch = torch.broadcast_shapes(batch_shape_of(v, self._edim), log_diag.shape[:-1])
        return (log_diag.sum(-1) * spatial).expand(batch)

    def weight(self, factors=None) -> torch.Tensor:
        """The matrix :math:`W` (with batch dims for a conditioned map)."""
        perm, lower, upper, log_diag, sign = self._factors() if factors is None else factors
        lo, up = self._triangles(lower, upper, log_diag, sign)
        return perm @ lo @ up

    def inverse_weight(self, factors=None) -> torch.Tensor:
        """:math:`W^{-1} = U^{-1} L^{-1} P^T` by triangular solves."""
        perm, lower, upper, log_diag, sign = self._factors() if factors is None else factors
        lo, up = self._triangles(lower, upper, log_diag, sign)
        rhs = perm.transpose(-1, -2).expand(lo.shape[:-2] + perm.shape)
        inv_lo_pt = torch.linalg.solve_triangular(lo, rhs, upper=False, unitriangular=True)
        return torch.linalg.solve_triangular(up, inv_lo_pt, upper=True)

    def forward_and_ladj(self, x):
        factors = self._factors()
        return self._matmul(self.weight(factors), x), self._ladj(factors[3], x)

    def inverse_and_ladj(self, y):
        factors = self._factors()
        return self._matmul(self.inverse_weight(factors), y), self._ladj(factors[3], y)


class _LUFactors(nn.Module):
    """LU factors of a random orthogonal matrix: the learnable ``lower``, ``upper``, ``log_diag``."""

    def __init__(self, num_features: int):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(num_features, num_features))
        p, lo, up = torch.linalg.lu(q)
        diag = torch.diagonal(up)
        self.register_buffer("perm", p)
        self.register_buffer("sign", torch.sign(diag))
        self.lower = nn.Parameter(torch.tril(lo, -1))
        self.upper = nn.Parameter(torch.triu(up, 1))
        self.log_diag = nn.Parameter(torch.log(diag.abs()))


class InvertibleLinear(ConditionedInvertibleLinear, TransformModule):
    r"""Learnable invertible linear map :math:`y = Wx` with :math:`W = PL(U + \operatorname{diag}(\sigma e^d))`.

    Initialised at a random rotation. ``event_dim=3`` makes it Glow's invertible 1x1 convolution on
    ``(C, H, W)``, ``event_dim=4`` the 1x1x1 convolution on volumes ``(C, D, H, W)``.

    Example::

        >>> t = InvertibleLinear(4)
        >>> x = torch.randn(10, 4)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-5)
        True
    """

    def __init__(self, num_features: int, event_dim: int = 1):
        super().__init__(None, num_features, event_dim)
        self.lu = _LUFactors(num_features)

    def _factors(self):
        lu = self.lu
        return lu.perm, lu.lower, lu.upper, lu.log_diag, lu.sign

    def _reference(self):
        return self.lu.log_diag


class InvertibleConv1x1(InvertibleLinear):
    """Glow's invertible 1x1 convolution on images ``(C, H, W)`` (``InvertibleLinear`` with ``event_dim=3``)."""

    def __init__(self, num_channels: int):
        super().__init__(num_channels, event_dim=3)


class InvertibleConv1x1x1(InvertibleLinear):
    """Invertible 1x1x1 convolution on volumes ``(C, D, H, W)`` (``InvertibleLinear`` with ``event_dim=4``)."""

    def __init__(self, num_channels: int):
        super().__init__(num_channels, event_dim=4)


class ConditionalInvertibleLinear(ConditionalTransformModule):
    r"""Invertible linear map with one matrix per context:
    :math:`(L, U, d) = (L_0, U_0, d_0) + g(c)` with :math:`g` zero-initialised.

    The context has shape ``batch' + (K,)``, or ``batch' + context_shape`` when ``context_shape``
    is given (a feature map ``(K, H, W)`` is flattened into the MLP: MotionFlow's conditional 1x1
    convolution, eq. (6), with :math:`g` its FC2). The matrix stays invertible for every context:
    :math:`L` keeps a unit diagonal and :math:`U` the diagonal :math:`\sigma e^{d}`.
    ``event_dim`` as in :class:`InvertibleLinear`.
    """

    def __init__(
        self,
        num_features: int,
        context_dim: int,
        event_dim: int = 1,
        hidden: Sequence[int] = (64,),
        net: nn.Module | None = None,
        context_shape: Sequence[int] | None = None,
    ):
        super().__init__()
        self.num_features, self.event_dim = num_features, event_dim
        self.context_shape = context_event_shape(context_dim, context_shape)
        self.lu = _LUFactors(num_features)
        self.net = context_mlp(self.context_shape, 2 * num_features * num_features + num_features, hidden) if net is None else net

    def condition(self, context):
        ref = self.lu.log_diag
        check_tensor("context", context, self.context_shape, ref.dtype, ref.device)
        d = self.num_features

        def factors_fn():
            h = self.net(context)
            dl, du, dd = h.split([d * d, d * d, d], dim=-1)
            shape = h.shape[:-1] + (d, d)
            lu = self.lu
            return lu.perm, lu.lower + dl.reshape(shape), lu.upper + du.reshape(shape), lu.log_diag + dd, lu.sign

        return ConditionedInvertibleLinear(factors_fn, d, self.event_dim, owner=self, context_batch_shape=batch_shape_of(context, len(self.context_shape)))


def invertible_linear(num_features: int, event_dim: int = 1) -> InvertibleLinear:
    """LU-parameterised invertible linear map (vectors), 1x1 conv (``event_dim=3``), 1x1x1 conv (4)."""
    return InvertibleLinear(num_features, event_dim)


def conditional_invertible_linear(
    num_features: int, context_dim: int, event_dim: int = 1, hidden: Sequence[int] = (64,), context_shape: Sequence[int] | None = None
) -> ConditionalInvertibleLinear:
    """Invertible linear map whose LU factors are offset by an MLP of the context (a vector, or a
    flattened map of ``context_shape``)."""
    return ConditionalInvertibleLinear(num_features, context_dim, event_dim, hidden, context_shape=context_shape)
