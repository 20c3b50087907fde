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
from pyro.distributions import TransformModule
from pyro.distributions.conditional import ConditionalTransformModule
from torch.distributions import Transform

from ..nn.dense import MLP
from ..validation import check_tensor
from .base import OnePassTransform, batch_shape_of, event_constraint, module_reference


def radial_parameters(alpha_raw: torch.Tensor, beta_raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(alpha, gamma)`` with :math:`\alpha = \operatorname{softplus}(\hat\alpha)` and
    :math:`\gamma = \alpha + \beta = \operatorname{softplus}(\hat\beta)`, both positive."""
    return F.softplus(alpha_raw), F.softplus(beta_raw)


class ConditionedRadial(OnePassTransform, Transform):
    r"""Radial map with given raw parameters ``params_fn() -> (x0, alpha_raw, beta_raw)`` (the pure math).

    ``x0`` has shape ``batch' + (D,)``, ``alpha_raw`` and ``beta_raw`` have shape ``batch' + (1,)``;
    ``batch'`` broadcasts against the input's batch shape.
    """

    bijective = True

    def __init__(self, params_fn, dim: int, owner=None, context_batch_shape=()):
        super().__init__(cache_size=1)
        self.params_fn = params_fn
        self.dim = dim
        self.event_shape_spec = (dim,)
        self.domain = self.codomain = event_constraint(1)
        self.context_batch_shape = torch.Size(context_batch_shape)
        self._owner = owner

    def _reference(self):
        return module_reference(self._owner) if self._owner is not None else None

    def _params(self):
        return self.params_fn()

    def _ladj(self, r, alpha, gamma):
        log_ar = torch.log(alpha + r)
        return (self.dim - 1) * (torch.log(gamma + r) - log_ar) + torch.log(r * (r + 2.0 * alpha) + alpha * gamma) - 2.0 * log_ar

    def forward_and_ladj(self, x):
        x0, alpha_raw, beta_raw = self._params()
        alpha, gamma = radial_parameters(alpha_raw[..., 0], beta_raw[..., 0])
        d = x - x0
        r = torch.linalg.vector_norm(d, dim=-1)
        beta_h = (gamma - alpha) / (alpha + r)
        return x + beta_h.unsqueeze(-1) * d, self._ladj(r, alpha, gamma)

    def inverse_and_ladj(self, y):
        x0, alpha_raw, beta_raw = self._params()
        alpha, gamma = radial_parameters(alpha_raw[..., 0], beta_raw[..., 0])
        e = y - x0
        rho = torch.linalg.vector_norm(e, dim=-1)
        p = gamma - rho
        root = torch.sqrt(p * p + 4.0 * alpha * rho)
        positive = p > 0
        # both branches are finite everywhere, so torch.where passes clean gradients
        r = torch.where(positive, 2.0 * alpha * rho / torch.where(positive, p + root, torch.ones_like(p)), 0.5 * (root - p))
        x = x0 + e * ((alpha + r) / (gamma + r)).unsqueeze(-1)
        return x, self._ladj(r, alpha, gamma)


def _initial_radial(dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw ``(x0, alpha_raw, beta_raw)`` of the identity: softplus(0) = alpha gives beta = 0."""
    return torch.zeros(dim), torch.zeros(1), torch.zeros(1)


class Radial(ConditionedRadial, TransformModule):
    r"""Learnable radial flow :math:`y = x + \beta (x - x_0) / (\alpha + \lVert x - x_0\rVert)` on
    vectors of size ``dim``, initialised at the identity (:math:`\beta = 0`). The inverse is in
    closed form (see the module docstring).

    Example::

        >>> t = Radial(3)
        >>> with torch.no_grad():
        ...     _ = t.beta_raw.fill_(2.0)
        >>> x = torch.randn(10, 3)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-5)
        True
    """

    def __init__(self, dim: int):
        super().__init__(None, dim)
        x0, a, b = _initial_radial(dim)
        self.x0, self.alpha_raw, self.beta_raw = nn.Parameter(x0), nn.Parameter(a), nn.Parameter(b)

    def _params(self):
        return self.x0, self.alpha_raw, self.beta_raw

    def _reference(self):
        return self.x0


class ConditionalRadial(ConditionalTransformModule):
    r"""Radial flow whose parameters come from a context (amortised):
    :math:`(x_0, \hat\alpha, \hat\beta) = (x_{0,0}, \hat\alpha_0, \hat\beta_0) + g(c)` with :math:`g` a
    zero-initialised network, so the layer starts at the identity. The context has shape
    ``batch' + (context_dim,)``; ``.condition(c)`` returns a :class:`ConditionedRadial`.

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

    def __init__(self, dim: int, context_dim: int, hidden: Sequence[int] = (64,), net: nn.Module | None = None):
        super().__init__()
        self.dim, self.context_shape = dim, (context_dim,)
        x0, a, b = _initial_radial(dim)
        self.x0, self.alpha_raw, self.beta_raw = nn.Parameter(x0), nn.Parameter(a), nn.Parameter(b)
        self.net = MLP(context_dim, dim + 2, tuple(hidden)) if net is None else net

    def condition(self, context):
        check_tensor("context", context, self.context_shape, self.x0.dtype, self.x0.device)

        def params_fn():
            dx0, da, db = self.net(context).split([self.dim, 1, 1], dim=-1)
            return self.x0 + dx0, self.alpha_raw + da, self.beta_raw + db

        return ConditionedRadial(params_fn, self.dim, owner=self, context_batch_shape=batch_shape_of(context, 1))


def radial(dim: int) -> Radial:
    """A radial flow on vectors of size ``dim``, initialised at the identity."""
    return Radial(dim)


def conditional_radial(dim: int, context_dim: int, hidden: Sequence[int] = (64,)) -> ConditionalRadial:
    """A radial flow whose ``x0, alpha, beta`` are offsets from an MLP of the context (zero-initialised)."""
    return ConditionalRadial(dim, context_dim, hidden)
