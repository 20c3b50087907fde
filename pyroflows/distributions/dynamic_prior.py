r"""MotionFlow's dynamic latent prior :math:`p(z_{1:V} \mid z_{\le 0})` as a Pyro distribution.

.. math::

    p(z_{1:V} \mid z_{\le 0}) = \prod_{t=1}^V \mathcal N(z_t;\ \mu_t, \sigma_t^2), \qquad
    \mu_t = \Delta z_t + z_{t-1}, \qquad [\Delta z_t, \log\sigma_t] = \mathrm{res}(z_{<t}),

with :math:`\mathrm{res}` a causal stack of gated residual blocks (eqs. (8)-(12)) and
:math:`z_{\le 0}` a history of at least one latent frame. It is a standard Normal pushed through the
autoregressive map of :class:`~pyroflows.flows.ConditionalLatentDynamics`, so ``log_prob``
scores all frames at once and ``sample`` / ``rsample`` roll the frames out one at a time.
Temperature :math:`T` samples :math:`z_t = \mu_t + T\sigma_t\varepsilon_t`; :math:`T = 0` gives the
mean rollout :math:`z_t = \mu_t(z_{<t})` (a ``Delta``).

Reference: M. Zand, A. Etemad, M. Greenspan, MotionFlow, Sec. 4.4; M. Kumar et al., "VideoFlow", ICLR 2020.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch
import torch.nn as nn
from pyro.distributions.conditional import ConditionalDistribution
from torch.distributions import Transform

from ..flows.latent_dynamics import ConditionalLatentDynamics
from ..validation import check_size


def check_temperature(temperature: float) -> float:
    """``temperature`` as a float, or a ``ValueError`` when it is negative or not finite."""
    t = float(temperature)
    if not (t >= 0 and t != float("inf")):
        raise ValueError(f"temperature: expected a finite number >= 0, got {temperature}")
    return t


def noise_distribution(
    ref: torch.Tensor, shape: Sequence[int], temperature: float, transform: Transform
) -> dist.Delta | dist.TransformedDistribution:
    r"""``TransformedDistribution`` of :math:`\mathcal N(0, T^2 I)` over ``shape`` (the context's batch
    shape plus the event shape, created like ``ref``) through ``transform``; for :math:`T = 0` the
    ``Delta`` at the image of zero noise."""
    event_dim = transform.domain.event_dim
    loc = ref.new_zeros(shape)
    if temperature == 0:
        return dist.Delta(transform(loc), event_dim=event_dim)
    return dist.TransformedDistribution(dist.Normal(loc, temperature).to_event(event_dim), [transform])


class DynamicPrior(nn.Module, ConditionalDistribution):
    r"""The learned prior over ``num_frames`` future latent frames given past ones.

    Args:
        frame_shape: ``(C, H, W)`` of a latent frame.
        num_frames: future frames ``V`` in a sample.
        hidden_channels, dilations, clamp: the network (see
            :class:`~pyroflows.flows.ConditionalLatentDynamics`), used when ``dynamics`` is None.
        dynamics: a :class:`~pyroflows.flows.ConditionalLatentDynamics` to share (MotionFlow's).

    ``.condition(history, temperature=1.0)`` with ``history`` ``batch + (K, C, H, W)`` returns a
    distribution with batch shape ``batch`` and event shape ``(V, C, H, W)``.

    Example::

        >>> prior = DynamicPrior((2, 3, 1), num_frames=4, hidden_channels=8)
        >>> history = torch.randn(5, 1, 2, 3, 1)
        >>> d = prior.condition(history)
        >>> z = d.sample((2,))
        >>> z.shape, d.log_prob(z).shape
        (torch.Size([2, 5, 4, 2, 3, 1]), torch.Size([2, 5]))
        >>> prior.condition(history, temperature=0).sample().shape      # the mean rollout
        torch.Size([5, 4, 2, 3, 1])
    """

    def __init__(
        self,
        frame_shape: Sequence[int],
        num_frames: int,
        hidden_channels: int = 64,
        dilations: Sequence[int] = (1, 2, 4),
        clamp: float | None = 5.0,
        dynamics: ConditionalLatentDynamics | None = None,
    ) -> None:
        super().__init__()
        self.num_frames = check_size("num_frames", num_frames)
        self.dynamics = ConditionalLatentDynamics(frame_shape, hidden_channels, dilations, clamp) if dynamics is None else dynamics
        self.frame_shape = self.dynamics.frame_shape

    def condition(self, history: torch.Tensor, temperature: float = 1.0) -> dist.Delta | dist.TransformedDistribution:
        t = check_temperature(temperature)
        transform = self.dynamics.condition(history)
        shape = history.shape[:-4] + (self.num_frames,) + self.frame_shape
        return noise_distribution(history, shape, t, transform)

    def mean_rollout(self, history: torch.Tensor) -> torch.Tensor:
        r"""The rollout :math:`z_t = \mu_t(z_{<t})` (temperature 0): ``batch + (V, C, H, W)``."""
        return self.condition(history, temperature=0).mean
