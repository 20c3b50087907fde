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
from torch.distributions import Transform

from ..precision import autocast_off, full_precision
from ..shapes import batch_shape_of, context_event_shape
from ..validation import check_event_dim, check_size
from .base import OnePassTransform, event_constraint
from .parameterized import ConditionalFlowModule, ContextParameters, FlowModule


class ConditionedInvertibleLinear(OnePassTransform, Transform):
    """The invertible linear map with given LU factors (the math): a permutation ``perm`` and signs
    ``sign`` (fixed), ``lower``, ``upper`` of shape ``batch' + (C, C)`` and ``log_diag`` of shape
    ``batch' + (C,)`` (one matrix per sample when ``batch'`` is not empty).

    Example::

        >>> p = LUParameters(3)
        >>> t = ConditionedInvertibleLinear(*p.factors())
        >>> x = torch.randn(5, 3)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-5)
        True
    """

    bijective = True

    def __init__(
        self, perm: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, log_diag: torch.Tensor, sign: torch.Tensor, event_dim: int = 1
    ) -> None:
        super().__init__(cache_size=1)
        self.factors = (perm, lower, upper, log_diag, sign)
        self.num_features, self._edim = log_diag.shape[-1], event_dim
        self.event_shape_spec = (self.num_features,) + (None,) * (event_dim - 1)
        self.domain = self.codomain = event_constraint(event_dim)
        self.context_batch_shape = log_diag.shape[:-1]

    def held_tensors(self) -> tuple:
        return self.factors[1:4]

    def reference(self) -> torch.Tensor:
        return self.factors[3]

    @staticmethod
    def _triangles(
        lower: torch.Tensor, upper: torch.Tensor, log_diag: torch.Tensor, sign: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        eye = torch.eye(lower.shape[-1], dtype=lower.dtype, device=lower.device)
        lo = torch.tril(lower, -1) + eye
        up = torch.triu(upper, 1) + torch.diag_embed(sign * torch.exp(log_diag))
        return lo, up

    def _matmul(self, m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if m.dim() == 2 and self._edim == 1:
            return F.linear(v, m)
        batch = batch_shape_of(v, self._edim)
        event = v.shape[v.dim() - self._edim :]
        out = m @ v.reshape(batch + (self.num_features, event.numel() // self.num_features))
        return out.reshape(out.shape[:-2] + event)

    def _ladj(self, log_diag: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        spatial = 1
        for s in v.shape[v.dim() - self._edim + 1 :]:
            spatial *= s
        batch = torch.broadcast_shapes(batch_shape_of(v, self._edim), log_diag.shape[:-1])
        return (log_diag.sum(-1) * spatial).expand(batch)

    def weight(self) -> torch.Tensor:
        """The matrix :math:`W` (with batch dims for a conditioned map)."""
        perm, lower, upper, log_diag, sign = self.factors
        lo, up = self._triangles(lower, upper, log_diag, sign)
        return perm @ lo @ up

    def inverse_weight(self) -> torch.Tensor:
        """:math:`W^{-1} = U^{-1} L^{-1} P^T` by triangular solves."""
        perm, lower, upper, log_diag, sign = self.factors
        lo, up = self._triangles(lower, upper, log_diag, sign)
        rhs = perm.transpose(-1, -2).expand(lo.shape[:-2] + perm.shape)
        inv_lo_pt = torch.linalg.solve_triangular(lo, rhs, upper=False, unitriangular=True)
        return torch.linalg.solve_triangular(up, inv_lo_pt, upper=True)

    # Under autocast the map stays in the data's dtype: a half-precision W (8 bits of mantissa for
    # bfloat16) would no longer be the matrix whose log-det is counted, nor the exact inverse of
    # the other direction, and the products cost little next to the conditioners' convolutions.
    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast_off(x.device.type):
            w = self.weight()
            return self._matmul(w, full_precision(x, w)), self._ladj(self.factors[3], x)

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast_off(y.device.type):
            w = self.inverse_weight()
            return self._matmul(w, full_precision(y, w)), self._ladj(self.factors[3], y)


class LUParameters(ContextParameters):
    """LU factors of a random orthogonal matrix: the learnable ``lower``, ``upper``, ``log_diag``
    (plus, with a context, a zero-initialised network's offsets) and the fixed ``perm`` and ``sign``."""

    def __init__(
        self, num_features: int, context_shape: Sequence[int] | None = None, hidden: Sequence[int] = (64,), net: nn.Module | None = None
    ) -> None:
        check_size("num_features", num_features)
        q, _ = torch.linalg.qr(torch.randn(num_features, num_features))
        p, lo, up = torch.linalg.lu(q)
        diag = torch.diagonal(up)
        initial = {"lower": torch.tril(lo, -1), "upper": torch.triu(up, 1), "log_diag": torch.log(diag.abs())}
        super().__init__(initial, context_shape, hidden, net)
        self.register_buffer("perm", p)
        self.register_buffer("sign", torch.sign(diag))

    def factors(self, context: torch.Tensor | None = None) -> tuple:
        """``(perm, lower, upper, log_diag, sign)``, the arguments of :class:`ConditionedInvertibleLinear`."""
        lower, upper, log_diag = self(context)
        return self.perm, lower, upper, log_diag, self.sign


class InvertibleLinear(FlowModule):
    r"""Learnable invertible linear map :math:`y = Wx` with :math:`W = PL(U + \operatorname{diag}(\sigma e^d))`.

    Initialised at a random rotation. ``event_dim=3`` makes it Glow's invertible 1x1 convolution on
    ``(C, H, W)``, ``event_dim=4`` the 1x1x1 convolution on volumes ``(C, D, H, W)``.

    Example::

        >>> t = InvertibleLinear(4)
        >>> x = torch.randn(10, 4)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-5)
        True
    """

    def __init__(self, num_features: int, event_dim: int = 1) -> None:
        super().__init__()
        self.num_features = check_size("num_features", num_features)
        self.params = LUParameters(num_features)
        self.set_event((num_features,) + (None,) * (check_event_dim(event_dim) - 1))

    def transform(self) -> ConditionedInvertibleLinear:
        return ConditionedInvertibleLinear(*self.params.factors(), len(self.event_shape_spec))

    def weight(self) -> torch.Tensor:
        """The matrix :math:`W`."""
        return self.transform().weight()


class InvertibleConv1x1(InvertibleLinear):
    """Glow's invertible 1x1 convolution on images ``(C, H, W)`` (``InvertibleLinear`` with ``event_dim=3``)."""

    def __init__(self, num_channels: int) -> None:
        super().__init__(num_channels, event_dim=3)


class InvertibleConv1x1x1(InvertibleLinear):
    """Invertible 1x1x1 convolution on volumes ``(C, D, H, W)`` (``InvertibleLinear`` with ``event_dim=4``)."""

    def __init__(self, num_channels: int) -> None:
        super().__init__(num_channels, event_dim=4)


class ConditionalInvertibleLinear(ConditionalFlowModule):
    r"""Invertible linear map with one matrix per context:
    :math:`(L, U, d) = (L_0, U_0, d_0) + g(c)` with :math:`g` zero-initialised.

    The context has shape ``batch' + (K,)``, or ``batch' + context_shape`` when ``context_shape``
    is given (a feature map ``(K, H, W)`` is flattened into the MLP: MotionFlow's conditional 1x1
    convolution, eq. (6), with :math:`g` its FC2). The matrix stays invertible for every context:
    :math:`L` keeps a unit diagonal and :math:`U` the diagonal :math:`\sigma e^{d}`.
    ``event_dim`` as in :class:`InvertibleLinear`.

    Example::

        >>> t = ConditionalInvertibleLinear(3, context_dim=2)
        >>> t.condition(torch.randn(5, 2))(torch.randn(5, 3)).shape
        torch.Size([5, 3])
    """

    def __init__(
        self,
        num_features: int,
        context_dim: int,
        event_dim: int = 1,
        hidden: Sequence[int] = (64,),
        net: nn.Module | None = None,
        context_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.num_features, self.event_dim = check_size("num_features", num_features), check_event_dim(event_dim)
        self.context_shape = context_event_shape(check_size("context_dim", context_dim), context_shape)
        self.params = LUParameters(num_features, self.context_shape, hidden, net)
        self.set_event((num_features,) + (None,) * (event_dim - 1))

    def transform(self, context: torch.Tensor) -> ConditionedInvertibleLinear:
        return ConditionedInvertibleLinear(*self.params.factors(context), self.event_dim)


def invertible_linear(num_features: int, event_dim: int = 1) -> InvertibleLinear:
    """LU-parameterised invertible linear map (vectors), 1x1 conv (``event_dim=3``), 1x1x1 conv (4)."""
    return InvertibleLinear(num_features, event_dim)


def conditional_invertible_linear(
    num_features: int, context_dim: int, event_dim: int = 1, hidden: Sequence[int] = (64,), context_shape: Sequence[int] | None = None
) -> ConditionalInvertibleLinear:
    """Invertible linear map whose LU factors are offset by an MLP of the context (a vector, or a
    flattened map of ``context_shape``)."""
    return ConditionalInvertibleLinear(num_features, context_dim, event_dim, hidden, context_shape=context_shape)
