r"""Autoregressive flows: MAF (fast density) and IAF (fast sampling), affine or spline, with MADE.

Each feature is transformed by an element-wise map (:class:`~pyroflows.transforms.elementwise.Affine`
or :class:`~pyroflows.transforms.spline.Spline`) whose parameters a MADE network
(:class:`~pyroflows.nn.MADE`) computes from the *preceding* features of one side of the map:

.. math::

    \text{IAF:}\quad y_i = f_{\theta_i(x_{<i})}(x_i), \qquad
    \text{MAF:}\quad y_i = f_{\theta_i(y_{<i})}(x_i), \qquad
    \log|\det J| = \textstyle\sum_i \log f'_{\theta_i}(x_i)

(the Jacobian is triangular). The direction whose input the network sees takes one network pass;
the other solves feature by feature and takes :math:`D` passes (exact after the :math:`D`-th). In
pyroflows, as in Pyro, a flow maps base samples to data: sampling runs the forward map and
``log_prob`` the inverse. So

* ``cheap="inverse"`` (**MAF**, Papamakarios et al. 2017): ``log_prob`` of any data in one pass,
  sampling in :math:`D` passes: for density estimation;
* ``cheap="forward"`` (**IAF**, Kingma et al. 2016; Pyro's ``AffineAutoregressive``): sampling in one
  pass, ``log_prob`` of a fresh sample free (the kept pass), of other points in :math:`D`
  passes: for variational guides (``AutoNormalizingFlow(model, partial(iaf, ...))``).

With the affine map, :math:`f_\theta(x) = x e^{\tilde s} + t`, :math:`\tilde s = B\tanh(s/B)` (soft
bound ``clamp``); with the spline, Durkan et al. (2019)'s autoregressive neural spline flow.

References: Germain et al., "MADE", ICML 2015; Kingma et al., "Improved variational inference with
inverse autoregressive flow", NeurIPS 2016; Papamakarios, Pavlakou, Murray, "Masked autoregressive
flow for density estimation", NeurIPS 2017; Durkan et al., "Neural Spline Flows", NeurIPS 2019.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch.distributions import Transform

from ..nn.made import MADE
from ..shapes import batch_shape_of
from ..validation import check_size, check_sizes
from .base import OnePassTransform, event_constraint
from .elementwise import Affine, Elementwise
from .parameterized import ConditionalFlowModule, FlowModule
from .permute import block_permutations
from .spline import Spline
from .stacks import ConditionalFlowSequence, FlowSequence, conditional_sequence, two_sided_blocks

CHEAP = ("forward", "inverse")


def check_cheap(cheap: str) -> str:
    if cheap not in CHEAP:
        raise ValueError(f"cheap: expected one of {CHEAP} (IAF: 'forward', MAF: 'inverse'), got {cheap!r}")
    return cheap


class Autoregressive(OnePassTransform, Transform):
    r"""An autoregressive transform with a given conditioner and element-wise map (the math).

    Args:
        conditioner: ``v -> raw``, autoregressive in ``v`` (``raw[..., p * D + i]`` depends on
            :math:`v_{<i}` only), e.g. a :class:`~pyroflows.nn.MADE` or ``partial(made, context=c)``.
        num_features: :math:`D`.
        elementwise: the element-wise map (default ``Affine()``).
        cheap: ``"forward"``: the conditioner sees the forward map's input (IAF); ``"inverse"``:
            its output (MAF). That direction takes one pass, the other :math:`D`.
        context_batch_shape: batch shape of a context the conditioner broadcasts against the input.
    """

    bijective = True

    def __init__(
        self,
        conditioner: Callable[[torch.Tensor], torch.Tensor],
        num_features: int,
        elementwise: Elementwise | None = None,
        cheap: str = "inverse",
        context_batch_shape: Sequence[int] = (),
    ) -> None:
        super().__init__(cache_size=1)
        self.conditioner, self.num_features = conditioner, num_features
        self.elementwise = Affine() if elementwise is None else elementwise
        self.cheap = check_cheap(cheap)
        self.event_shape_spec = (num_features,)
        self.domain = self.codomain = event_constraint(1)
        self.context_batch_shape = torch.Size(context_batch_shape)

    def _map(self, v: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if inverse == (self.cheap == "inverse"):  # the conditioner sees this direction's input
            return self.elementwise(v, self.conditioner(v), 1, inverse)
        # feature by feature: after pass k the first k outputs are exact, so after D passes all are,
        # and so is the log-det of the last pass (its parameters saw D - 1 exact features)
        out = torch.zeros_like(v)
        for _ in range(self.num_features):
            out, ladj = self.elementwise(v, self.conditioner(out), 1, inverse)
        return out, ladj

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._map(x, inverse=False)

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._map(y, inverse=True)


class ElementwiseAutoregressive(FlowModule):
    r"""An autoregressive layer with any element-wise map and a MADE conditioner; the Pyro module of
    :class:`Autoregressive`.

    Args:
        num_features: :math:`D`.
        conditioner: autoregressive network ``v -> raw`` with ``elementwise.params_per_feature * D``
            outputs (:class:`~pyroflows.nn.MADE`).
        elementwise: the element-wise map.
        cheap: ``"forward"`` (IAF) or ``"inverse"`` (MAF); see :class:`Autoregressive`.
    """

    def __init__(self, num_features: int, conditioner: torch.nn.Module, elementwise: Elementwise, cheap: str = "inverse") -> None:
        super().__init__()
        self.num_features = check_size("num_features", num_features)
        self.conditioner, self.elementwise, self.cheap = conditioner, elementwise, check_cheap(cheap)
        self.set_event((num_features,))

    def transform(self) -> Autoregressive:
        return Autoregressive(self.conditioner, self.num_features, self.elementwise, self.cheap)


class ConditionalElementwiseAutoregressive(ConditionalFlowModule):
    r"""An autoregressive layer whose conditioner also sees a context, ``raw = g(v, c)``.

    The context has shape ``batch' + (context_dim,)``, ``batch'`` broadcasting against the input's
    batch shape.

    Args:
        num_features, elementwise, cheap: as in :class:`ElementwiseAutoregressive`.
        conditioner: network ``(v, context) -> raw``, autoregressive in ``v``.
        context_shape: event shape of the context, ``(context_dim,)``.
    """

    def __init__(
        self,
        num_features: int,
        conditioner: torch.nn.Module,
        elementwise: Elementwise,
        context_shape: Sequence[int],
        cheap: str = "inverse",
    ) -> None:
        super().__init__()
        self.num_features = check_size("num_features", num_features)
        self.conditioner, self.elementwise, self.cheap = conditioner, elementwise, check_cheap(cheap)
        self.context_shape = tuple(context_shape)
        self.set_event((num_features,))

    def transform(self, context: torch.Tensor) -> Autoregressive:
        batch = batch_shape_of(context, len(self.context_shape))
        return Autoregressive(partial(self.conditioner, context=context), self.num_features, self.elementwise, self.cheap, batch)


class AffineAutoregressive(ElementwiseAutoregressive):
    r"""Affine autoregressive layer :math:`y_i = x_i e^{\tilde s_i} + t_i` with
    :math:`(s_i, t_i)` from a MADE of :math:`x_{<i}` (``cheap="forward"``, IAF, Pyro's
    ``AffineAutoregressive``) or of :math:`y_{<i}` (``cheap="inverse"``, MAF).

    Args:
        num_features: :math:`D`.
        conditioner: MADE ``v -> [s, t]`` with ``2 * D`` outputs; see :func:`affine_autoregressive`.
        cheap: the one-pass direction (``log_prob`` runs the inverse, sampling the forward map).
        clamp: soft bound on the log-scale (``None``: unbounded).

    Example::

        >>> t = affine_autoregressive(3, hidden=(16,), cheap="inverse")  # MAF
        >>> y = torch.randn(5, 3)
        >>> torch.allclose(t(t.inv(y)), y, atol=1e-6)
        True
    """

    def __init__(self, num_features: int, conditioner: torch.nn.Module, cheap: str = "inverse", clamp: float | None = 3.0) -> None:
        super().__init__(num_features, conditioner, Affine("softclamp", clamp), cheap)


class ConditionalAffineAutoregressive(ConditionalElementwiseAutoregressive):
    r"""Affine autoregressive layer whose MADE also sees a context: :math:`(s_i, t_i) = g_i(v_{<i}, c)`.

    Args:
        num_features, cheap, clamp: as in :class:`AffineAutoregressive`.
        conditioner: MADE ``(v, context) -> [s, t]``.
        context_shape: ``(context_dim,)``.

    Example::

        >>> t = conditional_affine_autoregressive(3, 2, hidden=(16,), cheap="forward")  # IAF
        >>> x, c = torch.randn(5, 3), torch.randn(5, 2)
        >>> torch.allclose(t.condition(c).inv(t.condition(c)(x)), x, atol=1e-6)
        True
    """

    def __init__(
        self,
        num_features: int,
        conditioner: torch.nn.Module,
        context_shape: Sequence[int],
        cheap: str = "inverse",
        clamp: float | None = 3.0,
    ) -> None:
        super().__init__(num_features, conditioner, Affine("softclamp", clamp), context_shape, cheap)


class SplineAutoregressive(ElementwiseAutoregressive):
    r"""Autoregressive rational-quadratic spline layer (Durkan et al. 2019):
    :math:`y_i = \mathrm{RQS}_{\theta_i}(x_i)` with :math:`\theta_i` from a MADE of :math:`x_{<i}`
    (``cheap="forward"``) or :math:`y_{<i}` (``cheap="inverse"``); linear tails outside :math:`[-B, B]`.

    Args:
        num_features: :math:`D`.
        conditioner: MADE with ``(3 * count_bins - 1) * D`` outputs; see :func:`spline_autoregressive`.
        cheap: the one-pass direction.
        count_bins, bound: the spline's bins and interval.

    Example::

        >>> t = spline_autoregressive(3, hidden=(16,))
        >>> y = 5 * torch.randn(5, 3)
        >>> torch.allclose(t(t.inv(y)), y, atol=1e-5)
        True
    """

    def __init__(
        self, num_features: int, conditioner: torch.nn.Module, cheap: str = "inverse", count_bins: int = 8, bound: float = 3.0
    ) -> None:
        super().__init__(num_features, conditioner, Spline(count_bins, bound), cheap)


class ConditionalSplineAutoregressive(ConditionalElementwiseAutoregressive):
    r"""Autoregressive spline layer whose MADE also sees a context.

    Args:
        num_features, cheap, count_bins, bound: as in :class:`SplineAutoregressive`.
        conditioner: MADE ``(v, context) -> raw``.
        context_shape: ``(context_dim,)``.

    Example::

        >>> t = conditional_spline_autoregressive(3, 2, hidden=(16,))
        >>> y, c = torch.randn(5, 3), torch.randn(5, 2)
        >>> torch.allclose(t.condition(c)(t.condition(c).inv(y)), y, atol=1e-5)
        True
    """

    def __init__(
        self,
        num_features: int,
        conditioner: torch.nn.Module,
        context_shape: Sequence[int],
        cheap: str = "inverse",
        count_bins: int = 8,
        bound: float = 3.0,
    ) -> None:
        super().__init__(num_features, conditioner, Spline(count_bins, bound), context_shape, cheap)


def _made(num_features: int, params_per_feature: int, hidden: Sequence[int], context_dim: int = 0) -> MADE:
    hidden = tuple(hidden)
    return MADE(num_features, params_per_feature, check_sizes("hidden", hidden) if hidden else (), context_dim)


def affine_autoregressive(
    num_features: int, hidden: Sequence[int] = (256, 256), cheap: str = "inverse", clamp: float | None = 3.0
) -> AffineAutoregressive:
    """Affine autoregressive layer with a MADE of ``hidden`` widths; Pyro's ``affine_autoregressive``
    (whose direction is ``cheap="forward"``)."""
    return AffineAutoregressive(num_features, _made(num_features, 2, hidden), cheap, clamp)


def conditional_affine_autoregressive(
    num_features: int, context_dim: int, hidden: Sequence[int] = (256, 256), cheap: str = "inverse", clamp: float | None = 3.0
) -> ConditionalAffineAutoregressive:
    """Conditional affine autoregressive layer with a MADE that sees the context."""
    return ConditionalAffineAutoregressive(num_features, _made(num_features, 2, hidden, context_dim), (context_dim,), cheap, clamp)


def spline_autoregressive(
    num_features: int, hidden: Sequence[int] = (256, 256), cheap: str = "inverse", count_bins: int = 8, bound: float = 3.0
) -> SplineAutoregressive:
    """Autoregressive spline layer with a MADE of ``hidden`` widths; Pyro's ``spline_autoregressive``."""
    net = _made(num_features, Spline(count_bins, bound).params_per_feature, hidden)
    return SplineAutoregressive(num_features, net, cheap, count_bins, bound)


def conditional_spline_autoregressive(
    num_features: int,
    context_dim: int,
    hidden: Sequence[int] = (256, 256),
    cheap: str = "inverse",
    count_bins: int = 8,
    bound: float = 3.0,
) -> ConditionalSplineAutoregressive:
    """Conditional autoregressive spline layer; Pyro's ``conditional_spline_autoregressive``."""
    net = _made(num_features, Spline(count_bins, bound).params_per_feature, hidden, context_dim)
    return ConditionalSplineAutoregressive(num_features, net, (context_dim,), cheap, count_bins, bound)


def _autoregressive_flow(
    cheap: str,
    num_features: int,
    context_dim: int | None,
    num_blocks: int,
    hidden: Sequence[int],
    permutation: str | Sequence[torch.Tensor] | None,
    clamp: float | None,
    seed: int | None,
) -> FlowSequence | ConditionalFlowSequence:
    num_features = check_size("num_features", num_features)
    num_blocks = check_size("num_blocks", num_blocks)
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    perms = block_permutations(num_features, permutation, num_blocks, generator)
    if context_dim is None:
        return FlowSequence(
            two_sided_blocks(
                num_features, num_blocks, lambda _: affine_autoregressive(num_features, hidden, cheap, clamp), perms, two_sided=False
            )
        )
    make = lambda _: conditional_affine_autoregressive(num_features, context_dim, hidden, cheap, clamp)  # noqa: E731
    return conditional_sequence(two_sided_blocks(num_features, num_blocks, make, perms, two_sided=False), context_dim)


def maf(
    num_features: int,
    num_blocks: int = 5,
    hidden: Sequence[int] = (256, 256),
    permutation: str | Sequence[torch.Tensor] | None = "reverse",
    clamp: float | None = 3.0,
    seed: int | None = None,
) -> FlowSequence:
    r"""Masked autoregressive flow: ``num_blocks`` affine autoregressive layers with
    ``cheap="inverse"``, each followed by a permutation (``"reverse"`` by default, as in the paper;
    ``"random"`` drawn with ``seed``, None, or one tensor per block). ``log_prob`` takes one MADE
    pass per layer; sampling takes ``num_features``.

    Example::

        >>> import pyro.distributions as dist
        >>> flow = maf(3, num_blocks=2, hidden=(16,))
        >>> d = dist.TransformedDistribution(dist.Normal(torch.zeros(3), 1.0).to_event(1), [flow])
        >>> d.log_prob(torch.randn(10, 3)).shape
        torch.Size([10])
    """
    return _autoregressive_flow("inverse", num_features, None, num_blocks, hidden, permutation, clamp, seed)


def iaf(
    num_features: int,
    num_blocks: int = 5,
    hidden: Sequence[int] = (256, 256),
    permutation: str | Sequence[torch.Tensor] | None = "reverse",
    clamp: float | None = 3.0,
    seed: int | None = None,
) -> FlowSequence:
    r"""Inverse autoregressive flow: as :func:`maf` with ``cheap="forward"``: sampling (and the
    ``log_prob`` of the samples it drew) takes one MADE pass per layer, ``log_prob`` of other points
    ``num_features``. A drop-in flow for Pyro's ``AutoNormalizingFlow``.

    Example::

        >>> from functools import partial
        >>> import pyro
        >>> import pyro.distributions as dist
        >>> from pyro.infer.autoguide import AutoNormalizingFlow
        >>> def model():
        ...     pyro.sample("z", dist.Normal(torch.zeros(3), 1.0).to_event(1))
        >>> guide = AutoNormalizingFlow(model, partial(iaf, num_blocks=2, hidden=(16,)))
        >>> guide()["z"].shape
        torch.Size([3])
    """
    return _autoregressive_flow("forward", num_features, None, num_blocks, hidden, permutation, clamp, seed)


def conditional_maf(
    num_features: int,
    context_dim: int,
    num_blocks: int = 5,
    hidden: Sequence[int] = (256, 256),
    permutation: str | Sequence[torch.Tensor] | None = "reverse",
    clamp: float | None = 3.0,
    seed: int | None = None,
) -> ConditionalFlowSequence:
    """:func:`maf` whose MADEs see a context of shape ``batch' + (context_dim,)``."""
    return _autoregressive_flow("inverse", num_features, context_dim, num_blocks, hidden, permutation, clamp, seed)


def conditional_iaf(
    num_features: int,
    context_dim: int,
    num_blocks: int = 5,
    hidden: Sequence[int] = (256, 256),
    permutation: str | Sequence[torch.Tensor] | None = "reverse",
    clamp: float | None = 3.0,
    seed: int | None = None,
) -> ConditionalFlowSequence:
    """:func:`iaf` whose MADEs see a context of shape ``batch' + (context_dim,)`` (amortised guides)."""
    return _autoregressive_flow("forward", num_features, context_dim, num_blocks, hidden, permutation, clamp, seed)
