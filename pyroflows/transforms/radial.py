r"""Radial flow (Rezende & Mohamed 2015) on vectors, unconditional and conditional (amortised).

.. math::

    y = x + \beta\, h(\alpha, r)\,(x - x_0), \qquad r = \lVert x - x_0\rVert, \qquad
    h(\alpha, r) = \frac{1}{\alpha + r},

    \log|\det J| = (D - 1)\log(1 + \beta h) + \log(1 + \beta h + \beta h'(\alpha, r)\, r),

with :math:`\alpha = \operatorname{softplus}(\hat\alpha) > 0` and
:math:`\beta = -\alpha + \operatorname{softplus}(\hat\beta) > -\alpha`, the condition of
Rezende & Mohamed (appendix A) for invertibility. Writing :math:`\gamma = \alpha + \beta > 0`,
the log-det is evaluated as
:math:`(D-1)\log\frac{\gamma + r}{\alpha + r} + \log\frac{r(r + 2\alpha) + \alpha\gamma}{(\alpha + r)^2}`,
a form with no cancellation near :math:`\beta = -\alpha`.

**Inverse (closed form).** The map moves points along rays from :math:`x_0`:
:math:`y - x_0 = (x - x_0)\frac{\gamma + r}{\alpha + r}`. Taking norms, with
:math:`\rho = \lVert y - x_0\rVert`, the radius solves :math:`r^2 + (\gamma - \rho)\, r - \alpha\rho = 0`,
whose only non-negative root is taken in the cancellation-free form, and
:math:`x = x_0 + (y - x_0)\frac{\alpha + r}{\gamma + r}`. The round trip is exact to rounding.

Reference: Rezende, Mohamed, "Variational inference with normalizing flows", ICML 2015.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Transform

from ..validation import check_size
from .base import OnePassTransform, event_constraint
from .parameterized import ConditionalFlowModule, ContextParameters, FlowModule


def radial_parameters(alpha_raw: torch.Tensor, beta_raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(alpha, gamma)`` with :math:`\alpha = \operatorname{softplus}(\hat\alpha)` and
    :math:`\gamma = \alpha + \beta = \operatorname{softplus}(\hat\beta)`, both positive."""
    return F.softplus(alpha_raw), F.softplus(beta_raw)


class ConditionedRadial(OnePassTransform, Transform):
    r"""The radial map with given raw parameters (the math): ``x0`` of shape ``batch' + (D,)``,
    ``alpha_raw`` and ``beta_raw`` of shape ``batch' + (1,)``, where ``batch'`` broadcasts against the
    input's batch shape.

    Example::

        >>> t = ConditionedRadial(torch.zeros(3), torch.zeros(1), torch.full((1,), 2.0))
        >>> x = torch.randn(4, 3)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-5)
        True
    """

    bijective = True

    def __init__(self, x0: torch.Tensor, alpha_raw: torch.Tensor, beta_raw: torch.Tensor) -> None:
        super().__init__(cache_size=1)
        self.x0, self.alpha_raw, self.beta_raw = x0, alpha_raw, beta_raw
        self.dim = x0.shape[-1]
        self.event_shape_spec = (self.dim,)
        self.domain = self.codomain = event_constraint(1)
        self.context_batch_shape = x0.shape[:-1]

    def held_tensors(self) -> tuple:
        return self.x0, self.alpha_raw, self.beta_raw

    def _ladj(self, r: torch.Tensor, alpha: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        log_ar = torch.log(alpha + r)
        return (self.dim - 1) * (torch.log(gamma + r) - log_ar) + torch.log(r * (r + 2.0 * alpha) + alpha * gamma) - 2.0 * log_ar

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha, gamma = radial_parameters(self.alpha_raw[..., 0], self.beta_raw[..., 0])
        d = x - self.x0
        r = torch.linalg.vector_norm(d, dim=-1)
        beta_h = (gamma - alpha) / (alpha + r)
        return x + beta_h.unsqueeze(-1) * d, self._ladj(r, alpha, gamma)

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha, gamma = radial_parameters(self.alpha_raw[..., 0], self.beta_raw[..., 0])
        e = y - self.x0
        rho = torch.linalg.vector_norm(e, dim=-1)
        p = gamma - rho
        root = torch.sqrt(p * p + 4.0 * alpha * rho)
        positive = p > 0
        # both branches are finite everywhere, so torch.where passes clean gradients
        r = torch.where(positive, 2.0 * alpha * rho / torch.where(positive, p + root, torch.ones_like(p)), 0.5 * (root - p))
        x = self.x0 + e * ((alpha + r) / (gamma + r)).unsqueeze(-1)
        return x, self._ladj(r, alpha, gamma)


def _radial_parameters(
    dim: int, context_shape: Sequence[int] | None = None, hidden: Sequence[int] = (64,), net: nn.Module | None = None
) -> ContextParameters:
    """Raw ``(x0, alpha_raw, beta_raw)`` of the identity (softplus(0) = alpha gives beta = 0), plus a
    zero-initialised network of the context when there is one."""
    check_size("dim", dim)
    return ContextParameters({"x0": torch.zeros(dim), "alpha_raw": torch.zeros(1), "beta_raw": torch.zeros(1)}, context_shape, hidden, net)


class Radial(FlowModule):
    r"""Learnable radial flow :math:`y = x + \beta (x - x_0) / (\alpha + \lVert x - x_0\rVert)` on
    vectors of size ``dim``, initialised at the identity (:math:`\beta = 0`). The inverse is in
    closed form (see the module docstring).

    Example::

        >>> t = Radial(3)
        >>> with torch.no_grad():
        ...     _ = t.params.beta_raw.fill_(2.0)
        >>> x = torch.randn(10, 3)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-5)
        True
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim, self.params = dim, _radial_parameters(dim)
        self.set_event((dim,))

    def transform(self) -> ConditionedRadial:
        return ConditionedRadial(*self.params())


class ConditionalRadial(ConditionalFlowModule):
    r"""Radial flow whose parameters come from a context (amortised):
    :math:`(x_0, \hat\alpha, \hat\beta) = (x_{0,0}, \hat\alpha_0, \hat\beta_0) + g(c)` with :math:`g` a
    zero-initialised network, so the layer starts at the identity. The context has shape
    ``batch' + (context_dim,)``; ``.condition(c)`` evaluates a :class:`ConditionedRadial` at each call.

    Args:
        dim: size of the vectors.
        context_dim: size of the context vector.
        hidden: hidden widths of the default MLP (``()``: one linear layer).
        net: a network ``c -> (dim + 2)`` values, replacing the default MLP.

    Example::

        >>> t = ConditionalRadial(3, context_dim=2)
        >>> t.condition(torch.randn(5, 2))(torch.randn(5, 3)).shape
        torch.Size([5, 3])
    """

    def __init__(self, dim: int, context_dim: int, hidden: Sequence[int] = (64,), net: nn.Module | None = None) -> None:
        super().__init__()
        self.context_shape = (check_size("context_dim", context_dim),)
        self.dim, self.params = dim, _radial_parameters(dim, self.context_shape, hidden, net)
        self.set_event((dim,))

    def transform(self, context: torch.Tensor) -> ConditionedRadial:
        return ConditionedRadial(*self.params(context))


def radial(dim: int) -> Radial:
    """A radial flow on vectors of size ``dim``, initialised at the identity."""
    return Radial(dim)


def conditional_radial(dim: int, context_dim: int, hidden: Sequence[int] = (64,)) -> ConditionalRadial:
    """A radial flow whose ``x0, alpha, beta`` are offsets from an MLP of the context (zero-initialised)."""
    return ConditionalRadial(dim, context_dim, hidden)
