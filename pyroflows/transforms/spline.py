r"""Monotone rational-quadratic splines with linear tails (neural spline flows), written once.

On :math:`[-B, B]` the map is a monotone rational-quadratic spline through :math:`K + 1` knots
:math:`(x^{(k)}, y^{(k)})` with positive derivatives :math:`\delta^{(k)}` at the knots; outside it
is the identity (the linear tails, with :math:`\delta^{(0)} = \delta^{(K)} = 1` so that the map is
continuously differentiable). In bin :math:`k`, with :math:`w = x^{(k+1)} - x^{(k)}`,
:math:`h = y^{(k+1)} - y^{(k)}`, :math:`s = h / w` and :math:`\xi = (x - x^{(k)}) / w \in [0, 1]`:

.. math::

    y = y^{(k)} + \frac{h\,[s\,\xi^2 + \delta^{(k)} \xi (1 - \xi)]}
        {s + [\delta^{(k+1)} + \delta^{(k)} - 2 s]\,\xi (1 - \xi)}, \qquad
    \frac{dy}{dx} = \frac{s^2\,[\delta^{(k+1)} \xi^2 + 2 s\,\xi (1 - \xi) + \delta^{(k)} (1 - \xi)^2]}
        {\left(s + [\delta^{(k+1)} + \delta^{(k)} - 2 s]\,\xi (1 - \xi)\right)^2}.

The inverse is exact: :math:`\xi` is the root in :math:`[0, 1]` of a quadratic, taken in the
cancellation-free form :math:`\xi = 2c / (-b - \sqrt{b^2 - 4ac})`. A conditioner gives, per
element, :math:`3K - 1` raw values: unnormalised bin widths and heights (a softmax, with a floor)
and the :math:`K - 1` inner derivatives (a softplus, with a floor), shifted so that raw zeros give
equal bins and unit derivatives: the identity, so a zero-initialised conditioner starts a flow at
the identity. The raw widths and heights are first softly bounded, :math:`u \mapsto u / (1 + |u| / c)`
with :math:`c = \tfrac12 \log r`, so that no bin is more than :math:`r` (``max_bin_ratio``) times
another; the bound also damps the gradient of large raw values, which keeps a flow from carving
ever sharper bins around its training points (zuko's splines bound theirs the same way). Inputs
outside :math:`[-B, B]` pass through the tails: no error, no NaN.

:class:`Spline` is the element-wise map a :class:`~pyroflows.transforms.coupling.Coupling` or an
:class:`~pyroflows.transforms.autoregressive.Autoregressive` transform applies;
:class:`SplineCoupling` and :class:`ConditionalSplineCoupling` are the coupling's Pyro modules.

Reference: Durkan, Bekasov, Murray, Papamakarios, "Neural Spline Flows", NeurIPS 2019
(Gregory and Delbourgo 1982 for the rational-quadratic interpolant); Papamakarios, Pavlakou,
Murray, "Masked Autoregressive Flow for Density Estimation", NeurIPS 2017, and zuko's ``NSF`` for
the two-pass MADE layout that ``transform_passive`` reproduces.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..shapes import context_event_shape, sum_event
from ..validation import check_positive, check_size
from .coupling import ConditionalElementwiseCoupling, ElementwiseCoupling, check_split, default_conditioner


def _knots(unnormalized: torch.Tensor, bound: float, minimum: float, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Knot positions (``K + 1``, from ``-bound`` to exactly ``bound``) and bin sizes (``K``) along
    ``dim`` from unnormalised sizes: a softmax with each bin at least ``minimum`` of the interval."""
    k = unnormalized.shape[dim]
    frac = minimum + (1.0 - minimum * k) * torch.softmax(unnormalized, dim=dim)
    inner = 2.0 * bound * torch.cumsum(frac.narrow(dim, 0, k - 1), dim=dim) - bound
    ends = inner.new_full(inner.shape[:dim] + (1,) + inner.shape[dim:][1:], bound)
    knots = torch.cat([-ends, inner, ends], dim=dim)
    return knots, knots.narrow(dim, 1, k) - knots.narrow(dim, 0, k)


def bounded_bin_logits(raw: torch.Tensor, max_bin_ratio: float | None) -> torch.Tensor:
    r"""Raw bin widths or heights softly bounded to :math:`\pm c`, :math:`c = \tfrac12 \log r`:
    :math:`u / (1 + |u| / c)`, so that after the softmax no bin exceeds another by more than the
    ratio :math:`r`; the identity when ``max_bin_ratio`` is None."""
    if max_bin_ratio is None:
        return raw
    return raw / (1.0 + raw.abs() * (2.0 / math.log(max_bin_ratio)))


def rational_quadratic(
    v: torch.Tensor,
    raw: torch.Tensor,
    bound: float = 3.0,
    inverse: bool = False,
    min_bin_width: float = 1e-3,
    min_bin_height: float = 1e-3,
    min_derivative: float = 1e-3,
    max_bin_ratio: float | None = 1e3,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(output, log dy/dx)`` of the rational-quadratic spline with linear tails, element-wise.

    Args:
        v: input (``x``, or ``y`` when ``inverse``), any shape ``S``.
        raw: ``S' + (3K - 1,)`` raw values per element, ``S'`` broadcasting against ``S``:
            ``K`` unnormalised widths, ``K`` unnormalised heights, ``K - 1`` inner derivatives.
        bound: :math:`B`; the identity outside :math:`[-B, B]`.
        inverse: map ``y`` to ``x``.
        min_bin_width, min_bin_height, min_derivative: floors that keep the spline well conditioned.
        max_bin_ratio: the soft bound on the ratio of two bins' widths (heights) before the floors
            (:func:`bounded_bin_logits`); None: unbounded.

    Returns:
        the output and :math:`\log dy/dx` of the forward map at each element (0 in the tails), both
        of the broadcast shape.

    Example::

        >>> x = torch.tensor([-5.0, 0.3, 5.0])
        >>> y, logd = rational_quadratic(x, torch.zeros(3, 23))  # raw zeros: the identity
        >>> torch.allclose(y, x), torch.allclose(logd, torch.zeros(3), atol=1e-6)
        (True, True)
    """
    if raw.dim() == 1:  # one spline for every element: give it a feature axis of one
        out, logd = rational_quadratic(
            v.unsqueeze(-1), raw.unsqueeze(0), bound, inverse, min_bin_width, min_bin_height, min_derivative, max_bin_ratio
        )
        return out.squeeze(-1), logd.squeeze(-1)
    k = (raw.shape[-1] + 1) // 3
    shape = torch.broadcast_shapes(v.shape, raw.shape[:-1])
    # The per-bin tables lie with the bins on dim -2 and the last element axis on dim -1. A
    # conditioner's raw values arrive that way in memory (parameter-major, features contiguous), so
    # the softmax, cumsum and softplus run over contiguous rows, the one split's backward is a
    # contiguous join, and the tables are built from raw values as they come, then broadcast: a
    # layer's own raw values, shared by every element, are normalised once.
    raw_sizes, raw_derivs = raw.transpose(-1, -2).split([2 * k, k - 1], dim=-2)
    raw_widths, raw_heights = bounded_bin_logits(raw_sizes, max_bin_ratio).split([k, k], dim=-2)
    knots_x, widths = _knots(raw_widths, bound, min_bin_width, dim=-2)
    knots_y, heights = _knots(raw_heights, bound, min_bin_height, dim=-2)
    # softplus(offset) = 1 - min_derivative: raw zeros give unit derivatives
    offset = math.log(math.expm1(1.0 - min_derivative))
    ones = raw_derivs.new_ones(raw_derivs.shape[:-2] + (1, raw_derivs.shape[-1]))
    derivs = torch.cat([ones, min_derivative + F.softplus(raw_derivs + offset), ones], dim=-2)
    v = v.expand(shape)

    inside = (v >= -bound) & (v <= bound)
    vc = v.clamp(-bound, bound)  # the tails' elements run through the spline at +-B, then are replaced
    idx = (vc.unsqueeze(-2) >= (knots_y if inverse else knots_x)[..., 1:k, :]).sum(-2, keepdim=True)

    def at(t: torch.Tensor, shift: int = 0) -> torch.Tensor:
        return t.expand(shape[:-1] + (t.shape[-2], shape[-1])).gather(-2, idx + shift).squeeze(-2)

    x_k, w, y_k, h, d0, d1 = at(knots_x), at(widths), at(knots_y), at(heights), at(derivs), at(derivs, 1)
    s = h / w
    slack = d1 + d0 - 2.0 * s
    if inverse:
        dy = vc - y_k
        a = h * (s - d0) + dy * slack
        b = h * d0 - dy * slack
        c = -s * dy
        xi = 2.0 * c / (-b - torch.sqrt(b * b - 4.0 * a * c))
        out = x_k + xi * w
    else:
        xi = (vc - x_k) / w
    xi1 = xi * (1.0 - xi)
    den = s + slack * xi1
    if not inverse:
        out = y_k + h * (s * xi * xi + d0 * xi1) / den
    logd = 2.0 * torch.log(s) + torch.log(d1 * xi * xi + 2.0 * s * xi1 + d0 * (1.0 - xi) ** 2) - 2.0 * torch.log(den)
    return torch.where(inside, out, v), torch.where(inside, logd, torch.zeros_like(logd))


class Spline:
    r"""The element-wise rational-quadratic spline (see the module docstring) as a coupling's or an
    autoregressive transform's map: the conditioner's raw output holds ``3 * count_bins - 1``
    values per transformed feature, laid out as ``params_per_feature`` blocks of the feature axis.

    Args:
        count_bins: number of bins :math:`K`.
        bound: :math:`B`; the identity (linear tails) outside :math:`[-B, B]`.
        min_bin_width, min_bin_height, min_derivative: floors of the bins and derivatives.
        max_bin_ratio: soft bound on the ratio of two bins' widths (heights), above 1; None: unbounded.
    """

    def __init__(
        self,
        count_bins: int = 8,
        bound: float = 3.0,
        min_bin_width: float = 1e-3,
        min_bin_height: float = 1e-3,
        min_derivative: float = 1e-3,
        max_bin_ratio: float | None = 1e3,
    ) -> None:
        self.count_bins = check_size("count_bins", count_bins)
        self.bound = check_positive("bound", bound)
        for name, value in (("min_bin_width", min_bin_width), ("min_bin_height", min_bin_height)):
            if not 0.0 <= float(value) < 1.0 / self.count_bins:
                raise ValueError(f"{name}: expected a value in [0, 1 / count_bins) = [0, {1.0 / self.count_bins:.4g}), got {value!r}")
        if not 0.0 < float(min_derivative) < 1.0:
            raise ValueError(f"min_derivative: expected a value in (0, 1), got {min_derivative!r}")
        self.min_bin_width, self.min_bin_height, self.min_derivative = float(min_bin_width), float(min_bin_height), float(min_derivative)
        if max_bin_ratio is not None and not float(max_bin_ratio) > 1.0:
            raise ValueError(f"max_bin_ratio: expected a value above 1 or None, got {max_bin_ratio!r}")
        self.max_bin_ratio = None if max_bin_ratio is None else float(max_bin_ratio)

    @property
    def params_per_feature(self) -> int:
        return 3 * self.count_bins - 1

    def __repr__(self) -> str:
        return f"Spline(count_bins={self.count_bins}, bound={self.bound})"

    def __call__(self, v: torch.Tensor, raw: torch.Tensor, event_dim: int, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``(output, log-det of the forward map)`` for the transformed part ``v``; ``raw`` has
        ``params_per_feature`` times ``v``'s features on its feature axis (dim ``-event_dim``)."""
        axis = raw.dim() - event_dim
        p = self.params_per_feature
        raw = raw.unflatten(axis, (p, raw.shape[axis] // p)).movedim(axis, -1)
        out, logd = rational_quadratic(
            v, raw, self.bound, inverse, self.min_bin_width, self.min_bin_height, self.min_derivative, self.max_bin_ratio
        )
        return out, sum_event(logd, event_dim)


class SplineCoupling(ElementwiseCoupling):
    r"""Rational-quadratic spline coupling: :math:`y_a = x_a`, :math:`y_b = \mathrm{RQS}_{\theta(x_a)}(x_b)`
    element-wise, with linear tails outside :math:`[-B, B]` (Durkan et al. 2019).

    With ``transform_passive=True`` the passive part gets a learned spline of its own that does not
    depend on the input, one per feature (channel), as the conditioning half does in a two-pass
    MADE (zuko's coupling ``NSF``):

    .. math::

        y_a = \mathrm{RQS}_{\phi}(x_a), \qquad y_b = \mathrm{RQS}_{\theta(x_a)}(x_b), \qquad
        \log|\det J| = \textstyle\sum \log \mathrm{RQS}_{\phi}'(x_a) + \sum \log \mathrm{RQS}_{\theta(x_a)}'(x_b),

    the conditioner seeing :math:`x_a` in both directions (the inverse first recovers
    :math:`x_a = \mathrm{RQS}_{\phi}^{-1}(y_a)`); :math:`\phi` (``passive.raw``, ``3 * count_bins - 1``
    values per passive feature) starts at zero, so a fresh layer is still the identity.

    Args:
        num_features: size of the feature (vector) or channel (image, volume) axis.
        conditioner: network ``x_a -> raw`` with ``(3 * count_bins - 1) * (num_features - split)``
            output features (channels); see :func:`spline_coupling` for a default.
        event_dim: 1 for vectors, 2 for sequences, 3 for images ``(C, H, W)``, 4 for volumes.
        split: number of passive features, those the conditioner sees (default half).
        count_bins, bound: the spline's bins and interval (:class:`Spline`).
        transform_passive: also map the passive features with the learned, input-independent
            spline :math:`\mathrm{RQS}_{\phi}` (default False: :math:`y_a = x_a`).

    Example::

        >>> t = spline_coupling(4, hidden=(16,))
        >>> x = 10 * torch.randn(10, 4)  # many in the tails
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-5)
        True
        >>> t = spline_coupling(4, hidden=(16,), transform_passive=True)
        >>> tuple(t.passive.raw.shape)  # (3 * 8 - 1) raw values for each of the 2 passive features
        (46,)
    """

    def __init__(
        self,
        num_features: int,
        conditioner: torch.nn.Module,
        event_dim: int = 1,
        split: int | None = None,
        count_bins: int = 8,
        bound: float = 3.0,
        transform_passive: bool = False,
    ) -> None:
        super().__init__(num_features, conditioner, Spline(count_bins, bound), event_dim, split, transform_passive)


class ConditionalSplineCoupling(ConditionalElementwiseCoupling):
    r"""Spline coupling whose conditioner also sees a context: :math:`\theta = g(x_a, c)`.

    The context has shape ``batch' + context_shape``, ``batch'`` broadcasting against the input's
    batch shape.

    With ``transform_passive=True`` the passive part is mapped by a spline whose parameters depend
    on the context only, :math:`y_a = \mathrm{RQS}_{\phi(c)}(x_a)` with
    :math:`\phi(c) = \phi_0 + h(c)`, :math:`\phi_0` and :math:`h`'s last layer zero at
    initialisation (:class:`~pyroflows.transforms.parameterized.ContextParameters`); a two-pass
    MADE's conditioning half likewise sees only the context.

    Args:
        num_features, event_dim, split, count_bins, bound, transform_passive: as in :class:`SplineCoupling`.
        conditioner: network ``(x_a, context) -> raw``.
        context_shape: event shape of the context, e.g. ``(K,)``.

    Example::

        >>> t = conditional_spline_coupling(4, context_dim=3, hidden=(16,))
        >>> x, c = torch.randn(10, 4), torch.randn(10, 3)
        >>> torch.allclose(t.condition(c).inv(t.condition(c)(x)), x, atol=1e-5)
        True
    """

    def __init__(
        self,
        num_features: int,
        conditioner: torch.nn.Module,
        context_shape: Sequence[int],
        event_dim: int = 1,
        split: int | None = None,
        count_bins: int = 8,
        bound: float = 3.0,
        transform_passive: bool = False,
    ) -> None:
        super().__init__(num_features, conditioner, Spline(count_bins, bound), context_shape, event_dim, split, transform_passive)


def spline_coupling(
    num_features: int,
    hidden: int | Sequence[int] = 256,
    event_dim: int = 1,
    split: int | None = None,
    count_bins: int = 8,
    bound: float = 3.0,
    transform_passive: bool = False,
) -> SplineCoupling:
    """Spline coupling with a default conditioner: an MLP for vectors (``hidden`` widths), Glow's
    conv net for sequences, images and volumes (``hidden`` channels); Pyro's ``spline_coupling``.
    ``transform_passive``: also map the passive features with a learned, input-independent spline
    (:class:`SplineCoupling`)."""
    split = check_split(num_features, split)
    spline = Spline(count_bins, bound)
    net = default_conditioner(num_features, split, event_dim, hidden, 0, spline.params_per_feature)
    return SplineCoupling(num_features, net, event_dim, split, count_bins, bound, transform_passive)


def conditional_spline_coupling(
    num_features: int,
    context_dim: int,
    hidden: int | Sequence[int] = 256,
    event_dim: int = 1,
    split: int | None = None,
    count_bins: int = 8,
    bound: float = 3.0,
    context_shape: Sequence[int] | None = None,
    transform_passive: bool = False,
) -> ConditionalSplineCoupling:
    """Conditional spline coupling with a default conditioner; for images and volumes the context is
    a vector ``(context_dim,)`` tiled over space, or a map when ``context_shape = (context_dim,
    *spatial)`` is given. ``transform_passive``: also map the passive features with a spline whose
    parameters depend on the context only (:class:`ConditionalSplineCoupling`)."""
    split = check_split(num_features, split)
    context_shape = context_event_shape(context_dim, context_shape)
    spline = Spline(count_bins, bound)
    net = default_conditioner(
        num_features, split, event_dim, hidden, context_dim, spline.params_per_feature, context_is_map=len(context_shape) > 1
    )
    return ConditionalSplineCoupling(num_features, net, context_shape, event_dim, split, count_bins, bound, transform_passive)
