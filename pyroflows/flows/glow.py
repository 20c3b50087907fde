r"""Glow: steps of ActNorm, invertible 1x1 (1x1x1) convolution and affine coupling, and the
multi-scale Glow with learned split priors, for images ``(C, H, W)`` and volumes ``(C, D, H, W)``.

**One step.** In the data-to-latent direction (Glow's :math:`f`, Pyro's inverse), a step maps
:math:`x \mapsto z` by

.. math::

    a = (x - b) \odot e^{-s}, \qquad u = W^{-1} a, \qquad
    z_a = u_a, \quad z_b = (u_b - t(u_a)) \odot \sigma(h(u_a) + 2),

with per-channel ActNorm :math:`(s, b)` (data-initialised), an LU-parameterised invertible 1x1
convolution :math:`W` and an affine coupling whose convolutional network
(conv 3 - ReLU - conv 1 - ReLU - zero-initialised conv 3) returns :math:`[h, t]`. Glow's scale
:math:`\sigma(h + 2)` (``scale="sigmoid"``) only contracts; its log is soft-bounded below by
:math:`-B` (``clamp``), :math:`\log\sigma \to -B\tanh(-\log\sigma / B)`, which leaves it unchanged
where :math:`\sigma(h + 2)` is not tiny and keeps sampling finite when the network is far from its
initialisation; ``scale="softclamp"`` uses :math:`e^{-B\tanh(h/B)}` instead. Pyro's forward direction (latent to data, used for sampling)
runs the inverse maps in reverse order, and

.. math::

    \log\left|\det \frac{\partial x}{\partial z}\right| = S \sum_k s_k + S \sum_i d_i
    - \sum \log \sigma(h + 2),

with :math:`S` the number of positions and :math:`e^{d_i}` the moduli of the diagonal of
:math:`W`'s LU factor :math:`U`.

**Multi-scale.** Level :math:`l = 0, \dots, L-1` squeezes (2x2 or 2x2x2 space-to-channel), runs
:math:`K` steps, and (except the last level) factors out half of the channels. Glow scores the
factored-out half :math:`z_l` with a learned prior given the kept half :math:`h_l`,
:math:`z_l \sim \mathcal N(\mu(h_l), \operatorname{diag}\sigma(h_l)^2)`, and the last level's
output with a learned per-channel prior. Here each prior is written as the bijection

.. math::

    z_l = \mu(h_l) + \sigma(h_l) \odot \varepsilon_l, \qquad
    \log|\det| = \textstyle\sum \log \sigma(h_l),

which is an affine coupling from :math:`h_l` to :math:`z_l` (:class:`~pyroflows.transforms.AffineCoupling`
with a zero-initialised 3x3 conv, so it starts at the standard Normal). Then
:math:`\log \mathcal N(z_l; \mu, \sigma^2) = \log \mathcal N(\varepsilon_l; 0, I) - \sum \log\sigma`,
so the flow with a standard Normal base over all :math:`\varepsilon` has exactly Glow's likelihood.

**The shape choice (how a multi-scale flow fits Pyro).** The noise parts
:math:`\varepsilon_0, \dots, \varepsilon_{L-2}, \varepsilon_{top}` are packed into one tensor of the
data's shape by undoing the squeezes: the packed latent of level :math:`l` is
:math:`P_l = \mathrm{unsqueeze}([P_{l+1}, \varepsilon_l])` (channel concatenation) and
:math:`P_{L-1} = \mathrm{unsqueeze}(\varepsilon_{top})`. So :class:`Glow` is an ordinary
``TransformModule`` from ``event_shape`` to ``event_shape`` (event_dim 3 or 4) and its distribution
is ``TransformedDistribution(Normal(0, 1).expand(event_shape).to_event(event_dim), [glow])``; the
levels live inside the transform, and the base needs to know nothing about them. We chose this
over a custom base distribution that knows the levels because every Pyro door stays standard:
``log_prob``, ``rsample``, ``pyro.sample(..., obs=x)``, ``TransformedDistribution`` and
``ConditionalTransformedDistribution`` all work unchanged. :meth:`Glow.unpack` returns the
per-level parts of a packed latent.

**Temperature.** Sampling with the base :math:`\mathcal N(0, T^2 I)` (``glow.distribution(T)``)
gives :math:`z_l = \mu + T\sigma\varepsilon`: Glow's reduced-temperature sampling, at every level.

**Context.** :class:`ConditionalGlow` feeds the context to every coupling network, every split
prior and the top prior; a vector context ``(K,)`` is tiled over space, a map context
``(K, *spatial)`` at the data's resolution is average-pooled to each level's resolution.

**Memory.** ``checkpoint=True`` runs every step and split prior under
``torch.utils.checkpoint`` while gradients are recorded: the graph keeps only each step's input
and the backward pass recomputes the step (about one extra forward pass of compute).
``benchmarks/glow_memory.py`` measures the saving.

Reference: Kingma, Dhariwal, "Glow: generative flow with invertible 1x1 convolutions",
NeurIPS 2018; Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", ICLR 2017
(multi-scale architecture).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyro.distributions as dist
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Transform
from torch.utils.checkpoint import checkpoint as recompute

from ..nn.conv import CONV, ConvNet, PriorConv
from ..shapes import as_shape, batch_shape_of, broadcast_batch
from ..transforms.actnorm import ActNorm
from ..transforms.base import Chain, OnePassTransform, event_constraint, module_reference, soft_clamp
from ..transforms.coupling import AffineCoupling, ConditionalAffineCoupling, check_split
from ..transforms.elementwise import SCALES, elementwise_affine
from ..transforms.linear import InvertibleLinear
from ..transforms.parameterized import ConditionalFlowModule, ConditionedFlow, FlowModule
from ..transforms.squeeze import squeeze, unsqueeze
from ..validation import check_event_dim, check_positive, check_size


def _check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise ValueError(f"scale: expected one of {SCALES}, got {scale!r}")
    return scale


def _check_image_event_dim(event_dim: int) -> int:
    return check_event_dim(event_dim, allowed=(3, 4))


# ----------------------------------------------------------------------------- one step


class ConditionedGlowStep(Chain):
    """A Glow step from given parts (the math): forward (latent -> data) is
    ``actnorm(conv(coupling(z)))``, inverse is ``coupling^-1(conv^-1(actnorm^-1(x)))``, and the
    log-det is the sum of the parts' log-dets."""

    def __init__(self, coupling: Transform, conv: Transform, actnorm: Transform) -> None:
        super().__init__([coupling, conv, actnorm])


class GlowStep(FlowModule):
    r"""One Glow step on images ``(C, H, W)`` or volumes ``(C, D, H, W)``: ActNorm, invertible 1x1
    (1x1x1) convolution and affine coupling with a convolutional network (module docstring).

    Data -> latent (Pyro's inverse): :math:`a = (x - b)e^{-s}`, :math:`u = W^{-1}a`,
    :math:`z_b = (u_b - t(u_a))\,\sigma(h(u_a) + 2)`; latent -> data (forward) undoes them in reverse.

    Args:
        num_channels: channels ``C`` (at least 2).
        hidden_channels: width of the coupling network.
        event_dim: 3 for images, 4 for volumes.
        scale: ``"sigmoid"`` (Glow's :math:`\sigma(h + 2)`) or ``"softclamp"`` (:math:`e^{-B\tanh(h/B)}`).
        clamp: the bound ``B`` of the log-scale (both kinds; None: unbounded).
        split: channels passed through the coupling unchanged (default half).
        conditioner: a network ``u_a -> [h, t]`` replacing the default :class:`~pyroflows.nn.ConvNet`.

    Example::

        >>> step = GlowStep(4, hidden_channels=16)
        >>> x = torch.randn(8, 4, 6, 6)
        >>> z = step.inv(x)                   # the first batch initialises ActNorm
        >>> torch.allclose(step(z), x, atol=1e-5), step.log_abs_det_jacobian(z, x).shape
        (True, torch.Size([8]))
    """

    def __init__(
        self,
        num_channels: int,
        hidden_channels: int = 512,
        event_dim: int = 3,
        scale: str = "sigmoid",
        clamp: float | None = 3.0,
        split: int | None = None,
        conditioner: nn.Module | None = None,
    ) -> None:
        super().__init__()
        event_dim = _check_image_event_dim(event_dim)
        split = check_split(num_channels, split)
        if conditioner is None:
            conditioner = ConvNet(
                split, 2 * (num_channels - split), check_size("hidden_channels", hidden_channels), spatial_dims=event_dim - 1
            )
        self.num_channels = num_channels
        self.coupling = AffineCoupling(num_channels, conditioner, event_dim, split, clamp, _check_scale(scale))
        self.conv = InvertibleLinear(num_channels, event_dim)
        self.actnorm = ActNorm(num_channels, event_dim)
        self.set_event((num_channels,) + (None,) * (event_dim - 1))

    def transform(self) -> ConditionedGlowStep:
        return ConditionedGlowStep(self.coupling, self.conv, self.actnorm)


class ConditionalGlowStep(ConditionalFlowModule):
    r"""A Glow step whose coupling network also sees a context: :math:`[h, t] = g(u_a, c)`.

    ActNorm and the 1x1 convolution stay unconditional (as in conditional Glow); ``.condition(c)``
    evaluates a :class:`ConditionedGlowStep` at each call.

    Args:
        num_channels, hidden_channels, event_dim, scale, clamp, split: as in :class:`GlowStep`.
        context_shape: ``(K,)`` for a vector context, tiled over space, or ``(K, *spatial)`` for a
            map with the step's spatial size, joined as channels. Its batch dims broadcast against
            the input's.
        conditioner: a network ``(u_a, context) -> [h, t]`` replacing the default.

    Example::

        >>> step = ConditionalGlowStep(4, context_shape=(3,), hidden_channels=16)
        >>> x, c = torch.randn(8, 4, 6, 6), torch.randn(8, 3)
        >>> z = step.condition(c).inv(x)
        >>> torch.allclose(step.condition(c)(z), x, atol=1e-5)
        True
    """

    def __init__(
        self,
        num_channels: int,
        context_shape: int | Sequence[int],
        hidden_channels: int = 512,
        event_dim: int = 3,
        scale: str = "sigmoid",
        clamp: float | None = 3.0,
        split: int | None = None,
        conditioner: nn.Module | None = None,
    ) -> None:
        super().__init__()
        event_dim = _check_image_event_dim(event_dim)
        split = check_split(num_channels, split)
        self.context_shape = as_shape(context_shape)
        if len(self.context_shape) not in (1, event_dim):
            raise ValueError(f"context_shape: expected (K,) or (K, *spatial) with {event_dim - 1} spatial dims, got {self.context_shape}")
        if conditioner is None:
            conditioner = ConvNet(
                split,
                2 * (num_channels - split),
                check_size("hidden_channels", hidden_channels),
                self.context_shape[0],
                spatial_dims=event_dim - 1,
                context_is_map=len(self.context_shape) > 1,
            )
        self.num_channels, self.event_dim = num_channels, event_dim
        self.coupling = ConditionalAffineCoupling(
            num_channels, conditioner, self.context_shape, event_dim, split, clamp, _check_scale(scale)
        )
        self.conv = InvertibleLinear(num_channels, event_dim)
        self.actnorm = ActNorm(num_channels, event_dim)
        self.set_event((num_channels,) + (None,) * (event_dim - 1))

    def transform(self, context: torch.Tensor) -> ConditionedGlowStep:
        return ConditionedGlowStep(ConditionedFlow(self.coupling, context), self.conv, self.actnorm)


# ----------------------------------------------------------------------------- priors


class TopPrior(nn.Module):
    r"""The last level's prior :math:`\mathcal N(\mu, \sigma^2)`: a learned ``[log sigma, mu]`` per
    channel, plus a zero-initialised linear map of a vector context or 3x3 convolution of a
    (pooled) map context."""

    def __init__(self, channels: int, spatial_dims: int, context_channels: int = 0, context_is_map: bool = False) -> None:
        super().__init__()
        self.channels, self.spatial_dims, self.context_is_map = channels, spatial_dims, context_is_map
        self.bias = nn.Parameter(torch.zeros(2 * channels))
        self.net = None
        if context_channels:
            if context_is_map:
                self.net = CONV[spatial_dims](context_channels, 2 * channels, 3, padding=1)
            else:
                self.net = nn.Linear(context_channels, 2 * channels)
            nn.init.zeros_(self.net.weight)
            nn.init.zeros_(self.net.bias)

    def forward(self, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log sigma, mu)``, each ``context_batch + (C,) + (1,) * spatial_dims`` (vector context or
        none) or ``context_batch + (C, *spatial)`` (map context)."""
        n = self.spatial_dims
        p = self.bias.reshape((-1,) + (1,) * n)
        if self.net is not None:
            if self.context_is_map:
                flat = context.reshape((-1,) + context.shape[context.dim() - n - 1 :])
                out = self.net(flat)
                p = p + out.reshape(context.shape[: context.dim() - n - 1] + out.shape[1:])
            else:
                out = self.net(context)
                p = p + out.reshape(out.shape + (1,) * n)
        log_scale, loc = p.chunk(2, dim=-(n + 1))
        return log_scale, loc


def _pool(context: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """Average-pool a map context ``batch + (K, *spatial)`` by 2 along every spatial axis."""
    k = spatial_dims + 1
    batch = context.shape[: context.dim() - k]
    flat = context.reshape((-1,) + context.shape[context.dim() - k :])
    out = (F.avg_pool2d if spatial_dims == 2 else F.avg_pool3d)(flat, 2)
    return out.reshape(batch + out.shape[1:])


# ----------------------------------------------------------------------------- multi-scale


class MultiscaleLayout:
    r"""The level structure of a multi-scale Glow on ``event_shape``: ``num_levels``, ``event_dim``,
    ``splits`` (kept and factored-out channels of every level but the last), ``level_shapes`` (the
    shape after each level's squeeze) and ``part_shapes`` (the shape of each latent part, top last).

    Example::

        >>> MultiscaleLayout((1, 8, 8), 2).part_shapes
        [(2, 4, 4), (8, 2, 2)]
    """

    def __init__(self, event_shape: Sequence[int], num_levels: int) -> None:
        event_shape = as_shape(event_shape)
        self.event_dim = edim = _check_image_event_dim(len(event_shape))
        self.num_levels = check_size("num_levels", num_levels)
        grid = 2**num_levels
        if any(s % grid for s in event_shape[1:]):
            raise ValueError(
                f"event_shape: {num_levels} levels halve the spatial sizes {num_levels} times, "
                f"so they must be divisible by {grid}, got {event_shape}"
            )
        self.event_shape = event_shape
        channels, spatial = event_shape[0], list(event_shape[1:])
        self.splits, self.level_shapes, self.part_shapes = [], [], []
        for level in range(num_levels):
            channels, spatial = channels * 2 ** (edim - 1), [s // 2 for s in spatial]
            self.level_shapes.append((channels, *spatial))
            if level < num_levels - 1:
                kept = channels // 2
                self.splits.append((kept, channels - kept))
                self.part_shapes.append((channels - kept, *spatial))
                channels = kept
        self.part_shapes.append((channels, *spatial))

    def unpack(self, z: torch.Tensor) -> list[torch.Tensor]:
        """The parts of a packed latent ``batch + event_shape``: ``[eps_0, ..., eps_{L-2}, eps_top]``,
        the noise factored out at each level (at that level's squeezed resolution) and the last
        level's noise."""
        edim, out, v = self.event_dim, [], z
        for level in range(self.num_levels):
            v = squeeze(v, edim)
            if level < self.num_levels - 1:
                v, eps = v.split(self.splits[level], dim=-edim)
                out.append(eps)
        return out + [v]

    def pack(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """The inverse of :meth:`unpack`."""
        edim, parts = self.event_dim, list(parts)
        if len(parts) != self.num_levels:
            raise ValueError(f"parts: expected {self.num_levels} tensors (one per level), got {len(parts)}")
        v = unsqueeze(parts[-1], edim)
        for eps in reversed(parts[:-1]):
            v = unsqueeze(torch.cat([v, eps], dim=-edim), edim)
        return v


class _MultiscaleGlow:
    """What :class:`Glow` and :class:`ConditionalGlow` share: the levels' steps, split priors and
    top prior, built once here, and the layout."""

    def _build(
        self,
        event_shape: Sequence[int],
        num_levels: int,
        num_steps: int,
        hidden_channels: int | Sequence[int],
        scale: str,
        clamp: float | None,
        prior_clamp: float | None,
        checkpoint: bool,
        context_shape: int | Sequence[int] | None,
    ) -> None:
        self.layout = layout = MultiscaleLayout(event_shape, num_levels)
        event_dim, n = layout.event_dim, layout.event_dim - 1
        num_steps = check_size("num_steps", num_steps)
        hidden = [hidden_channels] * num_levels if isinstance(hidden_channels, int) else list(hidden_channels)
        if len(hidden) != num_levels:
            raise ValueError(f"hidden_channels: expected an int or {num_levels} ints (one per level), got {hidden_channels}")
        hidden = [check_size("hidden_channels", h) for h in hidden]
        _check_scale(scale)
        if context_shape is not None:
            context_shape = as_shape(context_shape)
            if len(context_shape) not in (1, event_dim):
                raise ValueError(f"context_shape: expected (K,) or (K, *spatial) with {n} spatial dims, got {context_shape}")
            if len(context_shape) == event_dim and tuple(context_shape[1:]) != layout.event_shape[1:]:
                raise ValueError(
                    f"context_shape: a map context needs the data's spatial size {layout.event_shape[1:]}, got {context_shape}"
                )
        is_map = context_shape is not None and len(context_shape) > 1
        k = 0 if context_shape is None else context_shape[0]
        self.event_shape = torch.Size(layout.event_shape)
        self.num_levels, self.num_steps, self.scale, self.checkpoint = num_levels, num_steps, scale, bool(checkpoint)
        self.prior_clamp = check_positive("prior_clamp", prior_clamp, allow_none=True)
        self.context_event_dim = 0 if context_shape is None else len(context_shape)
        self.steps, self.priors = nn.ModuleList(), nn.ModuleList()
        for level, (channels, *spatial) in enumerate(layout.level_shapes):
            level_ctx = None if context_shape is None else ((k, *spatial) if is_map else (k,))
            if context_shape is None:
                steps = (GlowStep(channels, hidden[level], event_dim, scale, clamp) for _ in range(num_steps))
            else:
                steps = (ConditionalGlowStep(channels, level_ctx, hidden[level], event_dim, scale, clamp) for _ in range(num_steps))
            self.steps.append(nn.ModuleList(steps))
            if level < num_levels - 1:
                kept, out = layout.splits[level]
                net = PriorConv(kept, 2 * out, k, n, is_map)
                if context_shape is None:
                    self.priors.append(AffineCoupling(channels, net, event_dim, kept, prior_clamp))
                else:
                    self.priors.append(ConditionalAffineCoupling(channels, net, level_ctx, event_dim, kept, prior_clamp))
        self.top = TopPrior(layout.part_shapes[-1][0], n, k, is_map)
        self.splits, self.level_shapes = layout.splits, layout.level_shapes
        self.set_event(self.event_shape)

    def unpack(self, z: torch.Tensor) -> list[torch.Tensor]:
        """As :meth:`MultiscaleLayout.unpack`."""
        return self.layout.unpack(z)

    def pack(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """As :meth:`MultiscaleLayout.pack`."""
        return self.layout.pack(parts)

    def actnorms_initialized(self) -> bool:
        return all(step.actnorm.params.is_initialized for level in self.steps for step in level)


class ConditionedGlow(OnePassTransform, Transform):
    """The multi-scale Glow map of a :class:`Glow` or :class:`ConditionalGlow` ``glow`` at its current
    parameters, with a (checked) ``context`` or None (the math; see the module docstring)."""

    bijective = True

    def __init__(self, glow: _MultiscaleGlow, context: torch.Tensor | None = None) -> None:
        super().__init__(cache_size=1)
        self.glow, self.context = glow, context
        self._edim = glow.layout.event_dim
        self.event_shape_spec = tuple(glow.event_shape)
        self.domain = self.codomain = event_constraint(self._edim)
        self.context_batch_shape = torch.Size() if context is None else batch_shape_of(context, glow.context_event_dim)

    def reference(self) -> torch.Tensor | None:
        return module_reference(self.glow)

    def _levels(self) -> tuple[list[tuple[list[GlowStep | ConditionedFlow], AffineCoupling | ConditionedFlow | None]], torch.Tensor | None]:
        """Per level: (its steps, its split prior or None), conditioned on the level's context."""
        glow, context = self.glow, self.context
        is_map = context is not None and glow.context_event_dim > 1
        out = []
        for level in range(glow.num_levels):
            if is_map:
                context = _pool(context, self._edim - 1)
            steps = list(glow.steps[level]) if context is None else [ConditionedFlow(s, context) for s in glow.steps[level]]
            prior = glow.priors[level] if level < glow.num_levels - 1 else None
            if prior is not None and context is not None:
                prior = ConditionedFlow(prior, context)
            out.append((steps, prior))
        return out, context

    def _top(self, top_context: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        log_scale, loc = self.glow.top(top_context)
        return soft_clamp(log_scale, self.glow.prior_clamp), loc

    def _run_part(
        self, fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``fn(v)``, recomputed in the backward pass in memory-saving mode while gradients are
        recorded (after ActNorm's data-dependent initialisation, which must not run twice)."""
        if self.glow.checkpoint and torch.is_grad_enabled() and v.device.type != "meta" and self.glow.actnorms_initialized():
            return recompute(fn, v, use_reentrant=False, preserve_rng_state=False)
        return fn(v)

    def _broadcast(self, v: torch.Tensor) -> torch.Tensor:
        if self.context is None:
            return v
        return broadcast_batch(v, self._edim, self.context, self.glow.context_event_dim)[0]

    def inverse_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Data -> packed latent (Glow's encoder)."""
        edim, glow = self._edim, self.glow
        levels, top_context = self._levels()
        v = self._broadcast(x)
        total, factored = 0, []
        for level, (steps, prior) in enumerate(levels):
            v = squeeze(v, edim)
            for step in steps:
                v, ladj = self._run_part(step.inverse_and_ladj, v)
                total = total + ladj
            if prior is not None:
                v, ladj = self._run_part(prior.inverse_and_ladj, v)
                total = total + ladj
                v, eps = v.split(glow.splits[level], dim=-edim)
                factored.append(eps)
        log_scale, loc = self._top(top_context)
        v, ladj = elementwise_affine(v, log_scale, loc, edim, inverse=True)
        factored.append(v)
        return glow.layout.pack(factored), total + ladj

    def forward_and_ladj(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Packed latent -> data (sampling)."""
        edim, glow = self._edim, self.glow
        levels, top_context = self._levels()
        *factored, v = glow.layout.unpack(self._broadcast(z))
        log_scale, loc = self._top(top_context)
        v, total = elementwise_affine(v, log_scale, loc, edim)
        for level in reversed(range(glow.num_levels)):
            steps, prior = levels[level]
            if prior is not None:
                v, ladj = self._run_part(prior.forward_and_ladj, torch.cat([v, factored[level]], dim=-edim))
                total = total + ladj
            for step in reversed(steps):
                v, ladj = self._run_part(step.forward_and_ladj, v)
                total = total + ladj
            v = unsqueeze(v, edim)
        return v, total

    def unpack(self, z: torch.Tensor) -> list[torch.Tensor]:
        """As :meth:`MultiscaleLayout.unpack`."""
        return self.glow.layout.unpack(z)

    def pack(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """As :meth:`MultiscaleLayout.pack`."""
        return self.glow.layout.pack(parts)


def _standard_normal_base(ref: torch.Tensor, event_shape: Sequence[int], temperature: float) -> dist.Independent:
    temperature = check_positive("temperature", temperature)
    loc = ref.new_zeros(event_shape)
    return dist.Normal(loc, torch.full_like(loc, temperature)).to_event(len(event_shape))


class Glow(_MultiscaleGlow, FlowModule):
    r"""Multi-scale Glow on images ``(C, H, W)`` or volumes ``(C, D, H, W)``: ``num_levels`` levels
    of squeeze and ``num_steps`` :class:`GlowStep`\ s, a learned split prior after every level but
    the last and a learned top prior, as one bijection from a packed latent of the data's shape to
    the data (module docstring). With a standard Normal base its ``log_prob`` is Glow's likelihood.

    Args:
        event_shape: ``(C, H, W)`` or ``(C, D, H, W)``; spatial sizes divisible by ``2 ** num_levels``.
        num_levels: levels ``L``.
        num_steps: steps per level ``K``.
        hidden_channels: width of the coupling networks (one int, or one per level).
        scale: coupling scale, ``"sigmoid"`` (Glow's) or ``"softclamp"``.
        clamp: bound of the coupling log-scale (both kinds; None: unbounded).
        prior_clamp: soft bound ``B tanh(. / B)`` on the priors' :math:`\log\sigma` (None: unbounded).
        checkpoint: recompute each step in the backward pass instead of storing its activations.

    Example::

        >>> flow = Glow((1, 8, 8), num_levels=2, num_steps=2, hidden_channels=16)
        >>> x = torch.rand(16, 1, 8, 8) - 0.5
        >>> d = flow.distribution()           # standard Normal base over the packed latent
        >>> d.log_prob(x).shape               # the first batch initialises ActNorm
        torch.Size([16])
        >>> flow.distribution(temperature=0.7).sample((4,)).shape
        torch.Size([4, 1, 8, 8])
        >>> [tuple(p.shape) for p in flow.unpack(flow.inv(x))]   # eps_0 (4x4), eps_top (2x2)
        [(16, 2, 4, 4), (16, 8, 2, 2)]
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        num_levels: int = 3,
        num_steps: int = 32,
        hidden_channels: int | Sequence[int] = 512,
        scale: str = "sigmoid",
        clamp: float | None = 3.0,
        prior_clamp: float | None = 5.0,
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self._build(event_shape, num_levels, num_steps, hidden_channels, scale, clamp, prior_clamp, checkpoint, None)
        self.context_shape = None

    def transform(self) -> ConditionedGlow:
        return ConditionedGlow(self)

    def distribution(self, temperature: float = 1.0) -> dist.TransformedDistribution:
        r"""``TransformedDistribution`` of a Normal base :math:`\mathcal N(0, T^2 I)` over the packed
        latent and this flow; ``temperature`` :math:`T = 1` is the model, :math:`T < 1` Glow's
        reduced-temperature sampling. Build it after moving the flow to its device and dtype."""
        return dist.TransformedDistribution(_standard_normal_base(module_reference(self), self.event_shape, temperature), [self])


class ConditionalGlow(_MultiscaleGlow, ConditionalFlowModule):
    r"""Conditional multi-scale Glow: as :class:`Glow`, with the context fed to every step's
    coupling network (:class:`ConditionalGlowStep`), every split prior and the top prior.

    ``.condition(context)`` evaluates a :class:`ConditionedGlow` at each call.

    Args:
        event_shape, num_levels, num_steps, hidden_channels, scale, clamp, prior_clamp, checkpoint:
            as in :class:`Glow`.
        context_shape: ``(K,)`` for a vector context (tiled over space), or ``(K, *spatial)`` for a
            map at the data's resolution, average-pooled to each level's. Its batch dims broadcast
            against the input's.

    Example::

        >>> from pyroflows.distributions import ConditionalFlowDistribution
        >>> flow = ConditionalGlow((1, 8, 8), context_shape=(10,), num_levels=2, num_steps=1, hidden_channels=8)
        >>> d = ConditionalFlowDistribution(flow.base(), [flow], context_event_dim=1)
        >>> c = torch.eye(10)[torch.tensor([3, 7])]
        >>> d.condition(c).sample((5,)).shape
        torch.Size([5, 2, 1, 8, 8])
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        context_shape: int | Sequence[int],
        num_levels: int = 3,
        num_steps: int = 32,
        hidden_channels: int | Sequence[int] = 512,
        scale: str = "sigmoid",
        clamp: float | None = 3.0,
        prior_clamp: float | None = 5.0,
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self._build(event_shape, num_levels, num_steps, hidden_channels, scale, clamp, prior_clamp, checkpoint, context_shape)
        self.context_shape = as_shape(context_shape)

    def transform(self, context: torch.Tensor) -> ConditionedGlow:
        return ConditionedGlow(self, context)

    def base(self, temperature: float = 1.0) -> dist.Distribution:
        r"""The base :math:`\mathcal N(0, T^2 I)` over the packed latent (``temperature`` :math:`T`):
        ``ConditionalFlowDistribution(flow.base(T), [flow], context_event_dim=flow.context_event_dim)``
        is the model (:math:`T = 1`) or its reduced-temperature version."""
        return _standard_normal_base(module_reference(self), self.event_shape, temperature)

    def __getattr__(self, name: str) -> torch.Tensor | nn.Module:
        if name == "distribution":
            raise AttributeError(
                "ConditionalGlow.distribution was removed (the transforms do not build distributions): use "
                "pyroflows.distributions.ConditionalFlowDistribution(flow.base(temperature), [flow], "
                "context_event_dim=flow.context_event_dim)"
            )
        return super().__getattr__(name)


# ----------------------------------------------------------------------------- factories


def glow_step(
    num_channels: int, hidden_channels: int = 512, event_dim: int = 3, scale: str = "sigmoid", clamp: float | None = 3.0
) -> GlowStep:
    """One :class:`GlowStep` with Glow's default coupling network."""
    return GlowStep(num_channels, hidden_channels, event_dim, scale, clamp)


def conditional_glow_step(
    num_channels: int,
    context_shape: int | Sequence[int],
    hidden_channels: int = 512,
    event_dim: int = 3,
    scale: str = "sigmoid",
    clamp: float | None = 3.0,
) -> ConditionalGlowStep:
    """One :class:`ConditionalGlowStep`; ``context_shape`` ``(K,)`` (vector) or ``(K, *spatial)`` (map)."""
    return ConditionalGlowStep(num_channels, context_shape, hidden_channels, event_dim, scale, clamp)


def glow(
    event_shape: Sequence[int],
    num_levels: int = 3,
    num_steps: int = 32,
    hidden_channels: int | Sequence[int] = 512,
    scale: str = "sigmoid",
    clamp: float | None = 3.0,
    prior_clamp: float | None = 5.0,
    checkpoint: bool = False,
) -> Glow:
    """A multi-scale :class:`Glow` for images (``event_shape = (C, H, W)``) or volumes (``(C, D, H, W)``).

    The paper's defaults are ``num_levels=3, num_steps=32, hidden_channels=512``; small data
    wants far less (``tests/test_glow.py`` fits 8x8 digits with 2 levels of 4 steps of width 32).

    Example::

        >>> flow = glow((1, 8, 8, 8), num_levels=2, num_steps=1, hidden_channels=4)   # a volume
        >>> flow.distribution().sample((2,)).shape
        torch.Size([2, 1, 8, 8, 8])
    """
    return Glow(event_shape, num_levels, num_steps, hidden_channels, scale, clamp, prior_clamp, checkpoint)


def conditional_glow(
    event_shape: Sequence[int],
    context_shape: int | Sequence[int],
    num_levels: int = 3,
    num_steps: int = 32,
    hidden_channels: int | Sequence[int] = 512,
    scale: str = "sigmoid",
    clamp: float | None = 3.0,
    prior_clamp: float | None = 5.0,
    checkpoint: bool = False,
) -> ConditionalGlow:
    """A :class:`ConditionalGlow`; ``context_shape`` ``(K,)`` (vector) or ``(K, *spatial)`` (a map at
    the data's resolution)."""
    return ConditionalGlow(event_shape, context_shape, num_levels, num_steps, hidden_channels, scale, clamp, prior_clamp, checkpoint)
