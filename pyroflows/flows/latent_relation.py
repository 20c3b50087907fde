r"""DUAL-GLOW's relation networks: the target flow's prior at every level, given the source's latent.

Two multi-scale Glows share the level structure (same number of levels and spatial sizes; the
channels may differ). Their packed latents (:class:`~pyroflows.flows.Glow`) split into the
parts :math:`z^{(l)}`, :math:`l = 0, \dots, L-1`, one per level (the last is the top). DUAL-GLOW
(Sun et al., eq. 6) puts a conditional Gaussian on the target's latent given the source's,

.. math::

    p(z_p \mid z_m, c) = \prod_l \mathcal N\bigl(z_p^{(l)};\ \mu_l(z_m^{(l)}, c_l),\
    \operatorname{diag}\sigma_l(z_m^{(l)}, c_l)^2\bigr),

with one small convolutional network per level returning :math:`[\log\sigma_l, \mu_l]`
(zero-initialised, so the relation starts as the standard Normal). The side information
:math:`c` (eqs. 16-17) enters the top level only, by default.

As in :mod:`pyroflows.flows.glow`, the Gaussian is written as a bijection from standard
Normal noise :math:`u` (Pyro's forward direction, noise to latent):

.. math::

    z_p^{(l)} = \mu_l + \sigma_l \odot u^{(l)}, \qquad
    \log\left|\det\frac{\partial z_p}{\partial u}\right| = \sum_l \textstyle\sum \log\sigma_l,

so :math:`\log \mathcal N(z_p; \mu, \sigma^2) = \log \mathcal N(u; 0, I) - \sum\log\sigma`: a standard
Normal base, this transform conditioned on the source latent, then the target Glow, is
:math:`p(x_p \mid x_m)` of eq. (10). Temperature :math:`T` (a base :math:`\mathcal N(0, T^2 I)`)
gives :math:`z_p = \mu + T\sigma u`.

Example::

    >>> rel = LatentRelation((1, 8, 8), (1, 8, 8), num_levels=2, hidden_channels=8)
    >>> z_m, u = torch.randn(5, 1, 8, 8), torch.randn(5, 1, 8, 8)
    >>> t = rel.condition(z_m)
    >>> torch.equal(t(u), u)                     # zero-initialised: the standard Normal
    True
    >>> t.log_abs_det_jacobian(u, t(u)).shape
    torch.Size([5])

Reference: H. Sun, R. Mehta, H. H. Zhou, Z. Huang, S. C. Johnson, V. Prabhakaran, V. Singh,
"DUAL-GLOW: conditional flow-based generative model for modality transfer", ICCV 2019, eqs. (6)-(17).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Transform

from ..nn.conv import ConvNet
from ..precision import full_precision
from ..shapes import as_shape, batch_shape_of, broadcast_batch
from ..transforms.base import OnePassTransform, event_constraint, module_reference, soft_clamp
from ..transforms.elementwise import elementwise_affine
from ..transforms.parameterized import ConditionalFlowModule
from ..validation import check_broadcast, check_positive, check_tensor
from .glow import MultiscaleLayout


def multiscale_layout(event_shape: Sequence[int], num_levels: int) -> MultiscaleLayout:
    """The level structure of a multi-scale Glow on ``event_shape``: a
    :class:`~pyroflows.flows.glow.MultiscaleLayout`.

    Example::

        >>> multiscale_layout((1, 8, 8), 2).part_shapes
        [(2, 4, 4), (8, 2, 2)]
    """
    return MultiscaleLayout(event_shape, num_levels)


def _top_input(parts: list[torch.Tensor], event_dim: int) -> torch.Tensor:
    """The top prior's input without the source's top latent (eq. 17): the level below's part,
    average-pooled to the top resolution, or a constant map when there is one level."""
    top = parts[-1]
    if len(parts) == 1:
        return torch.ones_like(top.narrow(-event_dim, 0, 1))
    below = parts[-2]
    flat = below.reshape((-1,) + below.shape[below.dim() - event_dim :])
    pooled = (F.avg_pool2d if event_dim == 3 else F.avg_pool3d)(flat, 2)
    return pooled.reshape(below.shape[: below.dim() - event_dim] + pooled.shape[1:])


class ConditionedLatentRelation(OnePassTransform, Transform):
    r"""The relation map of ``relation`` (a :class:`LatentRelation`) for a given source latent (and
    side information), at its current parameters: per level :math:`z_p^{(l)} = \mu_l + \sigma_l u^{(l)}`
    (Pyro's forward), its exact inverse and log-det."""

    bijective = True

    def __init__(self, relation: LatentRelation, source_latent: torch.Tensor, side: torch.Tensor | None = None) -> None:
        super().__init__(cache_size=1)
        self.relation, self.source_latent, self.side = relation, source_latent, side
        self._edim = relation.event_dim
        self.event_shape_spec = tuple(relation.target_shape)
        self.domain = self.codomain = event_constraint(self._edim)
        self.context_batch_shape = batch_shape_of(source_latent, self._edim)

    def _stamp_module(self) -> LatentRelation:
        return self.relation

    def check_input(self, name: str, value: torch.Tensor) -> None:
        super().check_input(name, value)
        check_broadcast("context", self.context_batch_shape, name, batch_shape_of(value, self._edim))

    def held_tensors(self) -> tuple:
        return (self.source_latent,) if self.side is None else (self.source_latent, self.side)

    def _params(self) -> list[tuple[torch.Tensor | None, torch.Tensor]]:
        """``[(log sigma_l or None, mu_l)]`` per level, batch shape that of the context."""
        relation = self.relation
        parts = relation.source_layout.unpack(self.source_latent)
        out = []
        for level, (net, part) in enumerate(zip(relation.nets, parts, strict=True)):
            if level == relation.num_levels - 1 and not relation.source_top:
                part = _top_input(parts, self._edim)
            # a half-precision output (autocast) is taken to the latent's dtype before the bound
            p = full_precision(net(part, self.side if relation.side_levels[level] else None), part)
            if relation.learn_scale:
                log_scale, loc = p.chunk(2, dim=-self._edim)
                out.append((soft_clamp(log_scale, relation.clamp), loc))
            else:
                out.append((None, p))
        return out

    def _map(self, v: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        layout = self.relation.target_layout
        total, new = 0, []
        for part, (log_scale, loc) in zip(layout.unpack(v), self._params(), strict=True):
            y, ladj = elementwise_affine(part, log_scale, loc, self._edim, inverse)
            new.append(y)
            total = total + ladj
        return layout.pack(new), total

    def forward_and_ladj(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._map(u, inverse=False)

    def inverse_and_ladj(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._map(z, inverse=True)


class LatentRelation(ConditionalFlowModule):
    r"""DUAL-GLOW's relation networks as a conditional transform on the target's packed latent
    (module docstring): ``.condition(z_m, side=None)`` returns a :class:`ConditionedLatentRelation`.

    Args:
        target_shape: event shape of the target data (and of its packed latent), ``(C, H, W)`` or
            ``(C, D, H, W)``.
        source_shape: event shape of the source (the context): the same spatial sizes, any channels.
        num_levels: levels of both Glows.
        hidden_channels: width of each level's network (conv 3 - ReLU - conv 1 - ReLU - conv 3).
        side_features: size ``K`` of the side information vector ``c`` (0: none).
        side_levels: ``"top"`` (the paper's eqs. 16-17: ``c`` enters the top level's prior) or
            ``"all"``.
        source_top: whether the top level's prior sees the source's top latent. The paper's eq. 17
            leaves it out once side information is used (the source's top keeps ``c``, which would
            compete with the given ``c``); False follows it: the top prior then sees ``c`` and the
            source's next-lower part, average-pooled to the top resolution.
        learn_scale: learn :math:`\sigma_l` as well as :math:`\mu_l` (False: unit scale).
        clamp: soft bound :math:`B\tanh(\cdot/B)` on :math:`\log\sigma_l`.

    The context ``z_m`` has shape ``batch + source_shape`` and ``side`` ``batch' + (K,)``; their
    batch dims broadcast against each other and against the input's.
    """

    def __init__(
        self,
        target_shape: Sequence[int],
        source_shape: Sequence[int] | None = None,
        num_levels: int = 3,
        hidden_channels: int = 64,
        side_features: int = 0,
        side_levels: str = "top",
        source_top: bool = True,
        learn_scale: bool = True,
        clamp: float | None = 3.0,
    ) -> None:
        super().__init__()
        self.target_shape = as_shape(target_shape)
        self.source_shape = self.target_shape if source_shape is None else as_shape(source_shape)
        if len(self.source_shape) != len(self.target_shape) or self.source_shape[1:] != self.target_shape[1:]:
            raise ValueError(f"source_shape: expected the target's spatial sizes {self.target_shape[1:]}, got {self.source_shape}")
        if side_levels not in ("top", "all"):
            raise ValueError(f"side_levels: expected 'top' or 'all', got {side_levels!r}")
        if not source_top and not side_features and num_levels == 1:
            raise ValueError("source_top: False leaves a one-level relation's prior without inputs unless side_features > 0")
        self.target_layout = multiscale_layout(self.target_shape, num_levels)
        self.source_layout = multiscale_layout(self.source_shape, num_levels)
        self.event_dim, self.num_levels = len(self.target_shape), num_levels
        self.side_features, self.source_top, self.learn_scale = int(side_features), bool(source_top), bool(learn_scale)
        self.clamp = check_positive("clamp", clamp, allow_none=True)
        self.context_shape = self.source_shape
        self.set_event(self.target_shape)
        self.side_levels = [bool(side_features) and (side_levels == "all" or level == num_levels - 1) for level in range(num_levels)]
        self.nets = nn.ModuleList()
        for level, (src, tgt) in enumerate(zip(self.source_layout.part_shapes, self.target_layout.part_shapes, strict=True)):
            in_channels = (
                src[0] if (level < num_levels - 1 or source_top) else (self.source_layout.part_shapes[-2][0] if num_levels > 1 else 1)
            )
            out_channels = (2 if learn_scale else 1) * tgt[0]
            k = self.side_features if self.side_levels[level] else 0
            self.nets.append(ConvNet(in_channels, out_channels, hidden_channels, k, spatial_dims=self.event_dim - 1))

    def condition(self, source_latent: torch.Tensor, side: torch.Tensor | None = None) -> ConditionedLatentRelation:
        ref = module_reference(self)
        check_tensor("context", source_latent, self.source_shape, ref.dtype, ref.device)
        if self.side_features:
            if side is None:
                raise ValueError(f"side: expected side information of shape (..., {self.side_features}), got None")
            check_tensor("side", side, (self.side_features,), ref.dtype, ref.device)
            source_latent, side = broadcast_batch(source_latent, self.event_dim, side, 1)
        elif side is not None:
            raise ValueError("side: this relation takes no side information (side_features=0), got a tensor")
        return ConditionedLatentRelation(self, source_latent, side)

    def transform(self, context: torch.Tensor, side: torch.Tensor | None = None) -> ConditionedLatentRelation:
        return ConditionedLatentRelation(self, context, side)


def latent_relation(
    target_shape: Sequence[int],
    source_shape: Sequence[int] | None = None,
    num_levels: int = 3,
    hidden_channels: int = 64,
    side_features: int = 0,
    learn_scale: bool = True,
) -> LatentRelation:
    """A :class:`LatentRelation` with the paper's choices: side information at the top level only,
    the source's top latent used as well, soft-clamped log-scales."""
    return LatentRelation(target_shape, source_shape, num_levels, hidden_channels, side_features, learn_scale=learn_scale)
