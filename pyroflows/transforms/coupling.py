r"""Affine coupling (RealNVP / Glow) for vectors, images and volumes, unconditional and conditional.

The input splits along its feature (channel) axis into ``x_a`` (the first ``split`` features) and
``x_b``; a conditioner network sees ``x_a`` (and the context) and returns ``[s, t]``:

.. math::

    y_a = x_a, \qquad y_b = x_b \odot \exp(\tilde s) + t, \qquad
    \tilde s = B \tanh(s / B), \qquad \log|\det J| = \textstyle\sum \tilde s,

with a soft bound ``B`` (``clamp``) on the log-scale. The inverse is
:math:`x_b = (y_b - t) \odot \exp(-\tilde s)` and needs no inverse of the network.

Reference: Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", ICLR 2017;
Kingma, Dhariwal, "Glow", NeurIPS 2018; Ardizzone et al., "Guided image generation with
conditional invertible neural networks", 2019 (the conditional variant).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from pyro.distributions import TransformModule
from pyro.distributions.conditional import ConditionalTransformModule
from torch.distributions import Transform

from ..nn.conv import ConvNet
from ..nn.dense import MLP
from ..validation import check_tensor
from .base import OnePassTransform, batch_shape_of, event_constraint, module_reference, soft_clamp


def _sum_event(t: torch.Tensor, event_dim: int) -> torch.Tensor:
    return t.reshape(t.shape[: t.dim() - event_dim] + (-1,)).sum(-1)


class ConditionedAffineCoupling(OnePassTransform, Transform):
    """Affine coupling with a given conditioner ``param_fn(x_a) -> [s, t]`` (the pure math)."""

    bijective = True

    def __init__(self, conditioner, num_features: int, split: int, event_dim: int = 1, clamp: float | None = 3.0, owner=None, context_batch_shape=()):
        super().__init__(cache_size=1)
        self.conditioner = conditioner
        self.num_features, self.split, self._edim, self.clamp = num_features, split, event_dim, clamp
        self.event_shape_spec = (num_features,) + (None,) * (event_dim - 1)
        self.domain = self.codomain = event_constraint(event_dim)
        self.context_batch_shape = torch.Size(context_batch_shape)
        self._owner = owner

    def _reference(self):
        return module_reference(self._owner) if self._owner is not None else None

    def _params(self, x_a):
        s, t = self.conditioner(x_a).chunk(2, dim=-self._edim)
        return soft_clamp(s, self.clamp), t

    def _halves(self, v):
        return v.split([self.split, self.num_features - self.split], dim=-self._edim)

    def _join(self, a, b):
        a = a.expand(batch_shape_of(b, self._edim) + a.shape[a.dim() - self._edim:])
        return torch.cat([a, b], dim=-self._edim)

    def _forward_and_ladj(self, x):
        x_a, x_b = self._halves(x)
        s, t = self._params(x_a)
        y_b = x_b * torch.exp(s) + t
        return self._join(x_a, y_b), _sum_event(s, self._edim)

    def _inverse_and_ladj(self, y):
        y_a, y_b = self._halves(y)
        s, t = self._params(y_a)
        x_b = (y_b - t) * torch.exp(-s)
        return self._join(y_a, x_b), _sum_event(s, self._edim)


def _check_split(num_features: int, split: int | None) -> int:
    split = num_features // 2 if split is None else int(split)
    if not 0 < split < num_features:
        raise ValueError(f"split: expected an integer in [1, {num_features - 1}], got {split}")
    return split


class AffineCoupling(ConditionedAffineCoupling, TransformModule):
    r"""Affine coupling layer :math:`y_b = x_b \exp(\tilde s(x_a)) + t(x_a)`, :math:`y_a = x_a`.

    Args:
        num_features: size of the feature (vector) or channel (image, volume) axis.
        conditioner: network ``x_a -> [s, t]`` with ``2 * (num_features - split)`` output features
            (channels); see :func:`affine_coupling` for a default.
        event_dim: 1 for vectors, 3 for images ``(C, H, W)``, 4 for volumes ``(C, D, H, W)``.
        split: number of features passed through unchanged (default half).
        clamp: soft bound on the log-scale (``None``: unbounded).

    Example::

        >>> t = affine_coupling(4)
        >>> x = torch.randn(10, 4)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-6)
        True
    """

    def __init__(self, num_features: int, conditioner: torch.nn.Module, event_dim: int = 1, split: int | None = None, clamp: float | None = 3.0):
        super().__init__(conditioner, num_features, _check_split(num_features, split), event_dim, clamp)

    def _reference(self):
        return module_reference(self)


class ConditionalAffineCoupling(ConditionalTransformModule):
    r"""Affine coupling whose conditioner also sees a context: :math:`[s, t] = g(x_a, c)`.

    ``.condition(context)`` returns a :class:`ConditionedAffineCoupling`. The context has shape
    ``batch' + context_shape`` where ``batch'`` broadcasts against the input's batch shape.

    Args:
        num_features, event_dim, split, clamp: as in :class:`AffineCoupling`.
        conditioner: network ``(x_a, context) -> [s, t]``.
        context_shape: event shape of the context, e.g. ``(K,)``.

    Example::

        >>> t = conditional_affine_coupling(4, context_dim=3)
        >>> x, c = torch.randn(10, 4), torch.randn(10, 3)
        >>> torch.allclose(t.condition(c).inv(t.condition(c)(x)), x, atol=1e-6)
        True
    """

    def __init__(self, num_features: int, conditioner: torch.nn.Module, context_shape: Sequence[int], event_dim: int = 1, split: int | None = None, clamp: float | None = 3.0):
        super().__init__()
        self.num_features, self.event_dim, self.clamp = num_features, event_dim, clamp
        self.split = _check_split(num_features, split)
        self.conditioner = conditioner
        self.context_shape = tuple(context_shape)

    def condition(self, context):
        ref = module_reference(self)
        check_tensor("context", context, self.context_shape, ref.dtype, ref.device)
        return ConditionedAffineCoupling(
            partial(self.conditioner, context=context),
            self.num_features,
            self.split,
            self.event_dim,
            self.clamp,
            owner=self,
            context_batch_shape=batch_shape_of(context, len(self.context_shape)),
        )


def _default_net(num_features, split, event_dim, hidden, context_features, context_is_map=False):
    out = 2 * (num_features - split)
    if event_dim == 1:
        hidden = (hidden, hidden) if isinstance(hidden, int) else tuple(hidden)
        return MLP(split, out, hidden, context_features)
    return ConvNet(split, out, int(hidden if isinstance(hidden, int) else hidden[0]), context_features, spatial_dims=event_dim - 1, context_is_map=context_is_map)


def affine_coupling(num_features: int, hidden: int | Sequence[int] = 256, event_dim: int = 1, split: int | None = None, clamp: float | None = 3.0) -> AffineCoupling:
    """Affine coupling with a default conditioner: an MLP for vectors, Glow's conv net for images / volumes."""
    split = _check_split(num_features, split)
    return AffineCoupling(num_features, _default_net(num_features, split, event_dim, hidden, 0), event_dim, split, clamp)


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
    split = _check_split(num_features, split)
    context_shape = (context_dim,) if context_shape is None else tuple(context_shape)
    net = _default_net(num_features, split, event_dim, hidden, context_dim, context_is_map=len(context_shape) > 1)
    return ConditionalAffineCoupling(num_features, net, context_shape, event_dim, split, clamp)
