r"""DUAL-GLOW: the conditional distribution :math:`p(x_p \mid x_m)` of a target modality (PET) given a
source modality (MRI), from two multi-scale Glows and relation networks between their latents.

Two Glows map each image to its latent, :math:`z_m = f_m(x_m)` and :math:`z_p = f_p(x_p)` (Pyro's
inverse of :class:`~pyroflows.flows.Glow`: packed latents of the data's shape, whose split
priors are already part of the flows). Relation networks give the target's latent a Gaussian
prior at every level given the source's latent at that level (eq. 6),
:math:`p(z_p \mid z_m) = \mathcal N(z_p; \mu(z_m), \sigma(z_m)^2)`
(:class:`~pyroflows.flows.LatentRelation`). Because the joint Jacobian is block diagonal
(eq. 11), the source's log-det cancels (eqs. 8-10):

.. math::

    \log p(x_p \mid x_m) = \log \mathcal N\bigl(f_p(x_p);\ \mu(f_m(x_m)), \sigma(f_m(x_m))^2\bigr)
    + \log\left|\det \frac{\partial f_p(x_p)}{\partial x_p}\right| .

``DualGlow.condition(x_m)`` returns exactly this as a Pyro ``TransformedDistribution``: a standard
Normal (temperature :math:`T`: :math:`\mathcal N(0, T^2 I)`) pushed through the relation
conditioned on :math:`f_m(x_m)` and then through :math:`f_p^{-1}`. The training objective (eq. 12)
adds the source's marginal likelihood as a regulariser,

.. math::

    \log p(x_p \mid x_m) + \lambda \log p(x_m), \qquad \lambda = 10^{-3},

written as a Pyro model (:meth:`DualGlow.model`): ``x_m`` is observed under
``poutine.scale(scale=lambda)`` and ``x_p`` under ``.condition(x_m)``; SVI with an empty guide and
Adamax (as in the paper) maximises it.

**Side information** :math:`c` (eqs. 16-17), e.g. age: it enters the relation's top-level prior,
:math:`p(z_p \mid z_m, c)`. Small discriminators read :math:`c` back from the latents (a linear
read-out of the per-channel mean and mean square of a latent part, through one hidden layer):
those on the lower levels of :math:`f_m` sit behind a gradient reversal layer
(:class:`~pyroflows.nn.GradientReversal`), so :math:`f_m` is pushed to remove :math:`c` there,
while those at the top of :math:`f_m` and :math:`f_p` keep it. Their squared error (a Gaussian
regression loss, since age is continuous) is added with weight 0.01 relative to the likelihood
in bits per dimension, as in the official code's loss; in the Pyro model it is a
``pyro.factor``. Sampling with a changed :math:`c` and a fixed source gives the paper's age
manipulation.

Example::

    >>> import pyro
    >>> from pyro.infer import SVI, Trace_ELBO
    >>> dual = DualGlow((1, 8, 8), num_levels=2, num_steps=1, hidden_channels=8, relation_hidden=8, side_features=1)
    >>> x_m, x_p, age = torch.rand(6, 1, 8, 8) - 0.5, torch.rand(6, 1, 8, 8) - 0.5, torch.rand(6, 1)
    >>> d = dual.condition(x_m, age)
    >>> d.log_prob(x_p).shape, dual.condition(x_m, age, temperature=0.7).sample((4,)).shape
    (torch.Size([6]), torch.Size([4, 6, 1, 8, 8]))
    >>> svi = SVI(dual.model, dual.guide, pyro.optim.Adamax({"lr": 1e-3}), Trace_ELBO())
    >>> loss = svi.step(x_m, x_p, age)

Reference: H. Sun, R. Mehta, H. H. Zhou, Z. Huang, S. C. Johnson, V. Prabhakaran, V. Singh,
"DUAL-GLOW: conditional flow-based generative model for modality transfer", ICCV 2019.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.conditional import ConditionalDistribution
from torch import nn

from ..flows.glow import Glow
from ..flows.latent_relation import LatentRelation
from ..nn.dense import MLP
from ..nn.gradient_reversal import GradientReversal
from ..shapes import as_shape
from ..transforms.base import module_reference, soft_clamp
from ..validation import check_tensor


class SideDiscriminator(nn.Module):
    r"""Predicts side information :math:`c \in \mathbb R^K` from one latent part ``batch + (C, *spatial)``:
    an MLP with one hidden layer on the per-channel spatial mean and mean square (``2C`` features),
    optionally behind a gradient reversal layer; ``event_dim`` is 3 for images, 4 for volumes.

    The prediction is soft-bounded, :math:`B\tanh(\cdot / B)` (``bound`` :math:`B`), so the squared
    error that a reversed gradient makes the flow *maximise* stays bounded: without it the flow
    could inflate its latents without limit to fool the discriminator.

    Example::

        >>> disc = SideDiscriminator(4, 1, hidden_features=8, reverse=True)
        >>> disc(torch.randn(3, 4, 2, 2)).shape
        torch.Size([3, 1])
    """

    def __init__(
        self,
        channels: int,
        side_features: int,
        hidden_features: int = 32,
        reverse: bool = False,
        alpha: float = 1.0,
        event_dim: int = 3,
        bound: float = 3.0,
    ) -> None:
        super().__init__()
        self.event_dim, self.bound = int(event_dim), float(bound)
        self.reversal = GradientReversal(alpha) if reverse else None
        self.net = MLP(2 * channels, side_features, (hidden_features,), zero_init=False)

    def forward(self, part: torch.Tensor) -> torch.Tensor:
        if self.reversal is not None:
            part = self.reversal(part)
        flat = part.reshape(part.shape[: part.dim() - self.event_dim + 1] + (-1,))
        return soft_clamp(self.net(torch.cat([flat.mean(-1), flat.pow(2).mean(-1)], dim=-1)), self.bound)


class DualGlow(nn.Module, ConditionalDistribution):
    r"""DUAL-GLOW (module docstring): ``.condition(x_m, side=None, temperature=1.0)`` is
    :math:`p(x_p \mid x_m, c)` as a ``TransformedDistribution`` with ``log_prob``, ``sample`` and
    ``rsample``; :meth:`model` / :meth:`guide` are the objective of eqs. (12) / (16) for SVI.

    Args:
        source_shape: event shape of the source ``x_m``, ``(C, H, W)`` or ``(C, D, H, W)``.
        target_shape: event shape of the target ``x_p`` (default: the source's); the same spatial sizes.
        num_levels, num_steps, hidden_channels: both Glows (see :class:`~pyroflows.flows.Glow`).
        relation_hidden: width of the relation networks.
        side_features: size ``K`` of the side information (0: none).
        side_levels: ``"top"`` (eqs. 16-17: ``c`` enters the top level's prior) or ``"all"`` levels.
        source_top: the top-level relation also sees the source's top latent (eq. 17 leaves it out).
        learn_scale: the relation learns :math:`\sigma(z_m)` as well as :math:`\mu(z_m)`.
        source_weight: :math:`\lambda` of eq. (12).
        side_weight: weight of the discriminators' loss, relative to the likelihood in bits/dim.
        discriminator_hidden: hidden width of each discriminator.
        reversal: :math:`\alpha` of the gradient reversal layers.
        scale, clamp, prior_clamp, checkpoint: passed to both Glows (``checkpoint=True``: recompute
            each step in the backward pass, the paper's memory-efficient gradients).
    """

    def __init__(
        self,
        source_shape: Sequence[int],
        target_shape: Sequence[int] | None = None,
        num_levels: int = 3,
        num_steps: int = 8,
        hidden_channels: int | Sequence[int] = 64,
        relation_hidden: int = 32,
        side_features: int = 0,
        side_levels: str = "top",
        source_top: bool = True,
        learn_scale: bool = True,
        source_weight: float = 1e-3,
        side_weight: float = 0.01,
        discriminator_hidden: int = 32,
        reversal: float = 1.0,
        scale: str = "sigmoid",
        clamp: float | None = 3.0,
        prior_clamp: float | None = 5.0,
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.source_shape = as_shape(source_shape)
        self.target_shape = self.source_shape if target_shape is None else as_shape(target_shape)
        if not source_weight >= 0 or not side_weight >= 0:
            raise ValueError(f"source_weight, side_weight: expected numbers >= 0, got {source_weight}, {side_weight}")
        self.source_weight, self.side_weight = float(source_weight), float(side_weight)
        self.event_dim, self.side_features = len(self.source_shape), int(side_features)
        flow = {"num_levels": num_levels, "num_steps": num_steps, "hidden_channels": hidden_channels, "scale": scale, "clamp": clamp}
        flow.update(prior_clamp=prior_clamp, checkpoint=checkpoint)
        self.source = Glow(self.source_shape, **flow)
        self.target = Glow(self.target_shape, **flow)
        self.relation = LatentRelation(
            self.target_shape, self.source_shape, num_levels, relation_hidden, self.side_features, side_levels, source_top, learn_scale
        )
        self.discriminators = nn.ModuleList()
        if self.side_features:
            src, tgt = self.relation.source_layout.part_shapes, self.relation.target_layout.part_shapes
            for level, shape in enumerate(src):
                reverse = level < num_levels - 1
                self.discriminators.append(
                    SideDiscriminator(shape[0], self.side_features, discriminator_hidden, reverse, reversal, self.event_dim)
                )
            self.discriminators.append(SideDiscriminator(tgt[-1][0], self.side_features, discriminator_hidden, event_dim=self.event_dim))

    # ------------------------------------------------------------------ checks

    def _ref(self) -> torch.Tensor:
        return module_reference(self.source)

    def _check_source(self, x_m: torch.Tensor) -> None:
        ref = self._ref()
        check_tensor("x_m", x_m, self.source_shape, ref.dtype, ref.device)

    def _check_side(self, side: torch.Tensor | None) -> None:
        if self.side_features and side is None:
            raise ValueError(f"side: expected side information of shape (..., {self.side_features}), got None")
        if not self.side_features and side is not None:
            raise ValueError("side: this model takes no side information (side_features=0), got a tensor")
        if side is not None:
            ref = self._ref()
            check_tensor("side", side, (self.side_features,), ref.dtype, ref.device)

    # ------------------------------------------------------------------ distributions

    def source_distribution(self, temperature: float = 1.0) -> dist.TransformedDistribution:
        r""":math:`p(x_m)`: the source Glow with a standard Normal (temperature ``T``) base."""
        return self.source.distribution(temperature)

    def encode_source(self, x_m: torch.Tensor) -> torch.Tensor:
        r"""The source's packed latent :math:`z_m = f_m(x_m)`, shape ``batch + source_shape``."""
        self._check_source(x_m)
        return self.source.inv(x_m)

    def condition(self, x_m: torch.Tensor, side: torch.Tensor | None = None, temperature: float = 1.0) -> dist.TransformedDistribution:
        r""":math:`p(x_p \mid x_m, c)` with batch shape ``broadcast(batch of x_m, batch of side)`` and
        event shape ``target_shape``; ``temperature`` scales the base noise (Glow's :math:`T`)."""
        self._check_source(x_m)
        self._check_side(side)
        if not temperature > 0:
            raise ValueError(f"temperature: expected a positive number, got {temperature}")
        relation = self.relation.condition(self.source.inv(x_m), side)
        loc = self._ref().new_zeros(relation.context_batch_shape + self.target_shape)
        base = dist.Normal(loc, torch.full_like(loc, float(temperature))).to_event(self.event_dim)
        return dist.TransformedDistribution(base, [relation, self.target])

    # ------------------------------------------------------------------ side information

    def side_predictions(self, x_m: torch.Tensor, x_p: torch.Tensor) -> list[torch.Tensor]:
        r"""The discriminators' predictions of :math:`c`, each ``batch + (K,)``: one per level of
        :math:`f_m` (all but the last behind gradient reversal), then the top of :math:`f_p`."""
        if not self.side_features:
            raise ValueError("side_features: this model has no discriminators (side_features=0)")
        parts = self.source.unpack(self.source.inv(x_m))
        top_p = self.target.unpack(self.target.inv(x_p))[-1]
        # one discriminator per level of f_m, and one more (the last) for the top of f_p
        preds = [disc(part) for disc, part in zip(self.discriminators, parts, strict=False)]
        return preds + [self.discriminators[-1](top_p)]

    def side_loss(self, x_m: torch.Tensor, x_p: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        r"""Sum over the discriminators of the squared error :math:`\lVert \hat c - c \rVert^2`, shape ``batch``."""
        return sum((pred - side).pow(2).sum(-1) for pred in self.side_predictions(x_m, x_p))

    # ------------------------------------------------------------------ the objective

    def objective(self, x_m: torch.Tensor, x_p: torch.Tensor, side: torch.Tensor | None = None) -> torch.Tensor:
        r"""Eq. (12) / (16) per pair, :math:`\log p(x_p \mid x_m, c) + \lambda \log p(x_m)`, minus the
        weighted discriminator loss when side information is used: shape ``batch``. It equals the
        log joint of :meth:`model`'s trace."""
        check_tensor("x_p", x_p, self.target_shape, self._ref().dtype, self._ref().device)
        out = self.condition(x_m, side).log_prob(x_p) + self.source_weight * self.source_distribution().log_prob(x_m)
        if side is not None and self.side_weight:
            out = out - self._side_scale() * self.side_loss(x_m, x_p, side)
        return out

    def _side_scale(self) -> float:
        """The discriminator weight in nats: ``side_weight`` per bit/dim of the target."""
        return self.side_weight * math.prod(self.target_shape) * math.log(2.0)

    def model(self, x_m: torch.Tensor, x_p: torch.Tensor, side: torch.Tensor | None = None) -> None:
        r"""Pyro model of eq. (12) / (16) for a batch of pairs ``(N,) + shape`` (and ``side`` ``(N, K)``):
        ``x_m`` observed under ``poutine.scale(lambda)``, ``x_p`` under :meth:`condition`, the
        discriminator loss as ``pyro.factor("side", ...)``."""
        check_tensor("x_p", x_p, self.target_shape, self._ref().dtype, self._ref().device)
        if x_m.dim() != self.event_dim + 1 or x_p.shape[0] != x_m.shape[0]:
            raise ValueError(f"x_m, x_p: expected one batch dim of the same size, got {tuple(x_m.shape)} and {tuple(x_p.shape)}")
        pyro.module("dual_glow", self)
        with pyro.plate("pairs", x_m.shape[0]):
            with poutine.scale(scale=self.source_weight):
                pyro.sample("x_m", self.source_distribution(), obs=x_m)
            pyro.sample("x_p", self.condition(x_m, side), obs=x_p)
            if side is not None and self.side_weight:
                pyro.factor("side", -self._side_scale() * self.side_loss(x_m, x_p, side))

    def guide(self, x_m: torch.Tensor, x_p: torch.Tensor, side: torch.Tensor | None = None) -> None:
        """Empty: the model has no latent variables, so the ELBO is its log joint."""

    def num_dims(self) -> int:
        """Entries of one target image or volume (the ``D`` of bits per dimension)."""
        return math.prod(self.target_shape)

    def extra_repr(self) -> str:
        return f"source_shape={self.source_shape}, target_shape={self.target_shape}, side_features={self.side_features}"


def dual_glow(
    source_shape: Sequence[int],
    target_shape: Sequence[int] | None = None,
    num_levels: int = 3,
    num_steps: int = 8,
    hidden_channels: int = 64,
    side_features: int = 0,
    checkpoint: bool = False,
) -> DualGlow:
    """A :class:`DualGlow` with the paper's weights (:math:`\\lambda = 10^{-3}`, discriminators 0.01)."""
    return DualGlow(source_shape, target_shape, num_levels, num_steps, hidden_channels, side_features=side_features, checkpoint=checkpoint)
