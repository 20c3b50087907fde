r"""Affine coupling (RealNVP / Glow) for vectors, images and volumes, unconditional and conditional.

The input splits along its feature (channel) axis into ``x_a`` (the first ``split`` features) and
``x_b``; a conditioner network sees ``x_a`` (and the context) and returns ``[s, t]``:

.. math::

    y_a = x_a, \qquad y_b = x_b \odot \exp(\tilde s) + t, \qquad
    \tilde s = B \tanh(s / B), \qquad \log|\det J| = \textstyle\sum \tilde s,

with a soft bound ``B`` (``clamp``) on the log-scale (or Glow's :math:`e^{\tilde s} = 1/\sigma(s + 2)`,
``scale="sigmoid"``). The inverse is :math:`x_b = (y_b - t) \odot \exp(-\tilde s)` and needs no
inverse of the network. :class:`Coupling` is this math for any conditioner and any element-wise
map (:class:`~pyroflows.transforms.elementwise.Affine`), on vectors, sequences, images and volumes
(event dims 1-4), optionally with a second, input-independent element-wise map of the same kind on
the passive part (``transform_passive``: :math:`y_a = f_{\phi}(x_a)`, the layout of a two-pass
MADE such as zuko's coupling flows); :class:`ElementwiseCoupling` and :class:`ConditionalElementwiseCoupling` are its
Pyro modules for any element-wise map, :class:`AffineCoupling` and :class:`ConditionalAffineCoupling`
those of the affine one.

Reference: Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", ICLR 2017;
Kingma, Dhariwal, "Glow", NeurIPS 2018; Ardizzone et al., "Guided image generation with
conditional invertible neural networks", 2019 (the conditional variant).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch.distributions import Transform

from .. import fused
from ..nn.conv import ConvNet
from ..nn.dense import MLP
from ..precision import full_precision
from ..shapes import batch_shape_of, context_event_shape
from ..validation import check_event_dim, check_size
from .base import OnePassTransform, event_constraint
from .elementwise import Affine, Elementwise
from .parameterized import ConditionalFlowModule, ContextParameters, FlowModule


def check_split(num_features: int, split: int | None) -> int:
    """The number of passive features: ``split``, default half; a ``ValueError`` unless in [1, num_features - 1]."""
    num_features = check_size("num_features", num_features, 2)
    split = num_features // 2 if split is None else split
    if isinstance(split, bool) or not hasattr(split, "__index__") or not 0 < int(split) < num_features:
        raise ValueError(f"split: expected an integer in [1, {num_features - 1}], got {split!r}")
    return int(split)


class Coupling(OnePassTransform, Transform):
    r"""A coupling with a given conditioner and element-wise map (the math).

    The input splits along its feature (channel) axis, dim ``-event_dim``, into the first ``split``
    features ``x_a``, passed through unchanged, and the rest ``x_b``; ``conditioner(x_a)`` returns the
    raw parameters of ``elementwise`` for ``x_b`` (for :class:`~pyroflows.transforms.elementwise.Affine`,
    ``[s, t]`` with ``2 * (num_features - split)`` features).

    Args:
        conditioner: ``x_a -> raw parameters`` (a network, or ``partial(net, context=c)``).
        num_features: size of the feature axis.
        split: passive features (default half).
        event_dim: 1 (vectors), 2 (sequences), 3 (images) or 4 (volumes).
        elementwise: the element-wise map (default ``Affine()``; or a
            :class:`~pyroflows.transforms.spline.Spline`): ``elementwise(v_b, raw, event_dim, inverse)``
            returns the output and the forward map's log-det.
        context_batch_shape: batch shape of a context the conditioner broadcasts against the input.
        passive_raw: raw parameters of ``elementwise`` for the passive part, which is then mapped too,
            :math:`y_a = f_{\phi}(x_a)`, while the conditioner still sees :math:`x_a` (in the inverse,
            :math:`x_a = f_{\phi}^{-1}(y_a)` first); shape ``context_batch_shape +
            (params_per_feature * split,) + (1,) * (event_dim - 1)`` (one map per feature or channel).
            None (default): :math:`y_a = x_a`.
    """

    bijective = True

    def __init__(
        self,
        conditioner: Callable[[torch.Tensor], torch.Tensor],
        num_features: int,
        split: int | None = None,
        event_dim: int = 1,
        elementwise: Elementwise | None = None,
        context_batch_shape: Sequence[int] = (),
        passive_raw: torch.Tensor | None = None,
    ) -> None:
        super().__init__(cache_size=1)
        self.conditioner, self.passive_raw = conditioner, passive_raw
        self.num_features, self.split = num_features, check_split(num_features, split)
        self._edim = check_event_dim(event_dim)
        self.elementwise = Affine() if elementwise is None else elementwise
        self.event_shape_spec = (num_features,) + (None,) * (event_dim - 1)
        self.domain = self.codomain = event_constraint(event_dim)
        self.context_batch_shape = torch.Size(context_batch_shape)

    def held_tensors(self) -> tuple:
        return () if self.passive_raw is None else (self.passive_raw,)

    def _couple(self, v: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        edim = self._edim
        v_a, v_b = v.split([self.split, self.num_features - self.split], dim=-edim)
        out_a, x_a = v_a, v_a
        if self.passive_raw is not None:
            out_a, ladj_a = self.elementwise(v_a, full_precision(self.passive_raw, v_a), edim, inverse)
            x_a = out_a if inverse else v_a
        fast = _fused_conditioner_and_map(self.conditioner, self.elementwise, x_a, v_b, inverse) if edim == 1 else None
        if fast is None:
            # under autocast the conditioner runs in half precision; its output is brought back to the
            # data's dtype so that the element-wise map (exp, spline bins) and the log-det are float32
            raw = full_precision(self.conditioner(x_a), v_b)
            out_b, ladj = self.elementwise(v_b, raw, edim, inverse)
        else:
            out_b, ladj = fast
        if self.passive_raw is not None:
            ladj = ladj + ladj_a
        batch = batch_shape_of(out_b, edim)
        if batch_shape_of(out_a, edim) != batch:  # a context broadcast the batch
            out_a = out_a.expand(batch + out_a.shape[out_a.dim() - edim :])
        return torch.cat([out_a, out_b], dim=-edim), ladj

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._couple(x, inverse=False)

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._couple(y, inverse=True)


def _fused_conditioner_and_map(
    conditioner: Callable, elementwise: Elementwise, x_a: torch.Tensor, v_b: torch.Tensor, inverse: bool
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The conditioner and the soft-clamped affine map as one speed-path node
    (:func:`pyroflows.fused.relu_mlp_soft_clamped_affine`) when the conditioner is a plain ReLU
    :class:`~pyroflows.nn.MLP` (or one with a context bound by ``partial``); None otherwise."""
    # without a gradient to record (sampling) the plain path is the fast one
    if not (torch.is_grad_enabled() and fused.is_enabled() and isinstance(elementwise, Affine) and elementwise.scale == "softclamp"):
        return None
    net, keywords = (conditioner.func, conditioner.keywords) if isinstance(conditioner, partial) else (conditioner, {})
    if not isinstance(net, MLP):
        return None
    stack = net.relu_stack(x_a, **keywords)
    if stack is None:
        return None
    x, params = stack

    def reference(v: torch.Tensor, x: torch.Tensor, *params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return elementwise(v, fused.relu_mlp_reference(x, *params), 1, inverse)

    return fused.relu_mlp_soft_clamped_affine(reference, params, x, v_b, elementwise.clamp, inverse)


def ConditionedAffineCoupling(  # noqa: N802 (the class name of earlier releases)
    conditioner: Callable[[torch.Tensor], torch.Tensor],
    num_features: int,
    split: int | None = None,
    event_dim: int = 1,
    clamp: float | None = 3.0,
    scale: str = "softclamp",
) -> Coupling:
    """Deprecated: ``Coupling(conditioner, num_features, split, event_dim, Affine(scale, clamp))``."""
    warnings.warn(
        "ConditionedAffineCoupling is deprecated; use Coupling(conditioner, num_features, split, event_dim, Affine(scale, clamp))",
        DeprecationWarning,
        stacklevel=2,
    )
    return Coupling(conditioner, num_features, split, event_dim, Affine(scale, clamp))


def passive_parameters(
    transform_passive: bool, elementwise: Elementwise, split: int, event_dim: int, context_shape: Sequence[int] | None = None
) -> ContextParameters | None:
    """The raw parameters of the passive part's input-independent element-wise map when
    ``transform_passive``: one map per feature (channel), zero at initialisation (the identity for
    :class:`~pyroflows.transforms.spline.Spline` and the soft-clamped
    :class:`~pyroflows.transforms.elementwise.Affine`), plus a zero-initialised network of the
    context when ``context_shape`` is given; None otherwise."""
    if not isinstance(transform_passive, bool):
        raise TypeError(f"transform_passive: expected True or False, got {transform_passive!r}")
    if not transform_passive:
        return None
    raw = torch.zeros((elementwise.params_per_feature * split,) + (1,) * (event_dim - 1))
    return ContextParameters({"raw": raw}, context_shape)


def _set_state_with_passive(module: torch.nn.Module, state: dict) -> None:
    """Unpickling of a coupling module, also of one pickled before it had a passive part."""
    torch.nn.Module.__setstate__(module, state)
    if "passive" not in module._modules:
        module.__dict__.setdefault("passive", None)


class ElementwiseCoupling(FlowModule):
    r"""A coupling layer with any element-wise map: :math:`y_a = x_a`, :math:`y_b = f_{\theta(x_a)}(x_b)`;
    the Pyro module of :class:`Coupling`.

    Args:
        num_features: size of the feature (vector) or channel (image, volume) axis.
        conditioner: network ``x_a -> raw`` with ``elementwise.params_per_feature * (num_features - split)``
            output features (channels).
        elementwise: the element-wise map (:class:`~pyroflows.transforms.elementwise.Affine`,
            :class:`~pyroflows.transforms.spline.Spline`).
        event_dim: 1 for vectors, 2 for sequences, 3 for images ``(C, H, W)``, 4 for volumes.
        split: number of passive features, those the conditioner sees (default half).
        transform_passive: also map the passive features, each with its own learned,
            input-independent ``elementwise`` map, :math:`y_a = f_{\phi}(x_a)` (the conditioner
            still sees :math:`x_a`); its raw parameters :math:`\phi` start at zero. False (default):
            :math:`y_a = x_a`.
    """

    def __init__(
        self,
        num_features: int,
        conditioner: torch.nn.Module,
        elementwise: Elementwise,
        event_dim: int = 1,
        split: int | None = None,
        transform_passive: bool = False,
    ) -> None:
        super().__init__()
        self.num_features, self.split, event_dim = num_features, check_split(num_features, split), check_event_dim(event_dim)
        self.elementwise = elementwise
        self.conditioner = conditioner
        self.passive = passive_parameters(transform_passive, elementwise, self.split, event_dim)
        self.set_event((num_features,) + (None,) * (event_dim - 1))

    def transform(self) -> Coupling:
        # the map holds the conditioner module and the passive part's parameter tensor themselves, not
        # tensors computed from them, so one map serves every call until one of these is replaced
        passive_raw = None if self.passive is None else self.passive()[0]
        key = (self.conditioner, self.elementwise, passive_raw, self.num_features, self.split, self.event_shape_spec)
        kept = self.__dict__.get("_kept_map")
        if kept is None or any(a is not b for a, b in zip(kept[0], key, strict=True)):
            event_dim = len(self.event_shape_spec)
            coupling = Coupling(self.conditioner, self.num_features, self.split, event_dim, self.elementwise, (), passive_raw)
            kept = self.__dict__["_kept_map"] = (key, coupling)
        return kept[1]

    def __setstate__(self, state: dict) -> None:
        _set_state_with_passive(self, state)


class ConditionalElementwiseCoupling(ConditionalFlowModule):
    r"""A coupling whose conditioner also sees a context, :math:`\theta = g(x_a, c)`, with any
    element-wise map.

    ``.condition(context)`` evaluates a :class:`Coupling` with the conditioner
    ``partial(conditioner, context=context)``. The context has shape ``batch' + context_shape``
    where ``batch'`` broadcasts against the input's batch shape.

    Args:
        num_features, elementwise, event_dim, split: as in :class:`ElementwiseCoupling`.
        conditioner: network ``(x_a, context) -> raw``.
        context_shape: event shape of the context, e.g. ``(K,)``.
        transform_passive: also map the passive features element-wise, as in
            :class:`ElementwiseCoupling`, with raw parameters that depend on the context only,
            :math:`\phi(c) = \phi_0 + h(c)` (:class:`~pyroflows.transforms.parameterized.ContextParameters`:
            :math:`\phi_0` and the last layer of the network :math:`h` start at zero).
    """

    def __init__(
        self,
        num_features: int,
        conditioner: torch.nn.Module,
        elementwise: Elementwise,
        context_shape: Sequence[int],
        event_dim: int = 1,
        split: int | None = None,
        transform_passive: bool = False,
    ) -> None:
        super().__init__()
        self.num_features, self.split, self.event_dim = num_features, check_split(num_features, split), check_event_dim(event_dim)
        self.elementwise = elementwise
        self.conditioner = conditioner
        self.context_shape = tuple(context_shape)
        self.passive = passive_parameters(transform_passive, elementwise, self.split, self.event_dim, self.context_shape)
        self.set_event((num_features,) + (None,) * (event_dim - 1))

    def transform(self, context: torch.Tensor) -> Coupling:
        batch = batch_shape_of(context, len(self.context_shape))
        passive_raw = None if self.passive is None else self.passive(context)[0]
        conditioner = partial(self.conditioner, context=context)
        return Coupling(conditioner, self.num_features, self.split, self.event_dim, self.elementwise, batch, passive_raw)

    def __setstate__(self, state: dict) -> None:
        _set_state_with_passive(self, state)


class AffineCoupling(ElementwiseCoupling):
    r"""Affine coupling layer :math:`y_b = x_b \exp(\tilde s(x_a)) + t(x_a)`, :math:`y_a = x_a`.

    Args:
        num_features: size of the feature (vector) or channel (image, volume) axis.
        conditioner: network ``x_a -> [s, t]`` with ``2 * (num_features - split)`` output features
            (channels); see :func:`affine_coupling` for a default.
        event_dim: 1 for vectors, 3 for images ``(C, H, W)``, 4 for volumes ``(C, D, H, W)``.
        split: number of features passed through unchanged (default half).
        clamp: soft bound on the log-scale (``None``: unbounded).
        scale: ``"softclamp"`` (:math:`\tilde s = B\tanh(s/B)`) or ``"sigmoid"`` (Glow's).

    Example::

        >>> t = affine_coupling(4)
        >>> x = torch.randn(10, 4)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-6)
        True
    """

    def __init__(
        self,
        num_features: int,
        conditioner: torch.nn.Module,
        event_dim: int = 1,
        split: int | None = None,
        clamp: float | None = 3.0,
        scale: str = "softclamp",
    ) -> None:
        super().__init__(num_features, conditioner, Affine(scale, clamp), event_dim, split)

    @property
    def clamp(self) -> float | None:
        return self.elementwise.clamp


class ConditionalAffineCoupling(ConditionalElementwiseCoupling):
    r"""Affine coupling whose conditioner also sees a context: :math:`[s, t] = g(x_a, c)`.

    ``.condition(context)`` evaluates a :class:`Coupling` with the conditioner
    ``partial(conditioner, context=context)``. The context has shape ``batch' + context_shape``
    where ``batch'`` broadcasts against the input's batch shape.

    Args:
        num_features, event_dim, split, clamp, scale: as in :class:`AffineCoupling`.
        conditioner: network ``(x_a, context) -> [s, t]``.
        context_shape: event shape of the context, e.g. ``(K,)``.

    Example::

        >>> t = conditional_affine_coupling(4, context_dim=3)
        >>> x, c = torch.randn(10, 4), torch.randn(10, 3)
        >>> torch.allclose(t.condition(c).inv(t.condition(c)(x)), x, atol=1e-6)
        True
    """

    def __init__(
        self,
        num_features: int,
        conditioner: torch.nn.Module,
        context_shape: Sequence[int],
        event_dim: int = 1,
        split: int | None = None,
        clamp: float | None = 3.0,
        scale: str = "softclamp",
    ) -> None:
        super().__init__(num_features, conditioner, Affine(scale, clamp), context_shape, event_dim, split)

    @property
    def clamp(self) -> float | None:
        return self.elementwise.clamp


def default_conditioner(
    num_features: int,
    split: int,
    event_dim: int,
    hidden: int | Sequence[int],
    context_features: int,
    params_per_feature: int = 2,
    context_is_map: bool = False,
) -> MLP | ConvNet:
    """The default conditioner of a coupling: an MLP (two hidden layers of ``hidden`` when an int)
    for vectors, Glow's conv net (``hidden`` channels) for sequences, images and volumes, with
    ``params_per_feature * (num_features - split)`` outputs."""
    out = params_per_feature * (num_features - split)
    if event_dim == 1:
        hidden = (hidden, hidden) if isinstance(hidden, int) else tuple(hidden)
        return MLP(split, out, hidden, context_features)
    return ConvNet(
        split,
        out,
        int(hidden if isinstance(hidden, int) else hidden[0]),
        context_features,
        spatial_dims=event_dim - 1,
        context_is_map=context_is_map,
    )


def affine_coupling(
    num_features: int, hidden: int | Sequence[int] = 256, event_dim: int = 1, split: int | None = None, clamp: float | None = 3.0
) -> AffineCoupling:
    """Affine coupling with a default conditioner: an MLP for vectors, Glow's conv net for images / volumes."""
    split = check_split(num_features, split)
    return AffineCoupling(num_features, default_conditioner(num_features, split, event_dim, hidden, 0), event_dim, split, clamp)


def conditional_affine_coupling(
    num_features: int,
    context_dim: int,
    hidden: int | Sequence[int] = 256,
    event_dim: int = 1,
    split: int | None = None,
    clamp: float | None = 3.0,
    context_shape: Sequence[int] | None = None,
) -> ConditionalAffineCoupling:
    """Conditional affine coupling with a default conditioner.

    For images / volumes the context is a vector ``(context_dim,)`` tiled over space, or a map when
    ``context_shape = (context_dim, *spatial)`` is given.
    """
    split = check_split(num_features, split)
    context_shape = context_event_shape(context_dim, context_shape)
    net = default_conditioner(num_features, split, event_dim, hidden, context_dim, context_is_map=len(context_shape) > 1)
    return ConditionalAffineCoupling(num_features, net, context_shape, event_dim, split, clamp)
