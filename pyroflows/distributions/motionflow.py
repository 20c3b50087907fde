r"""MotionFlow: a conditional distribution over future frames given observed ones.

:math:`p(y \mid x)` for observed frames :math:`x = q^{(1:U)}` and future frames
:math:`y = q^{(U+1:U+V)}` is a standard Normal over noise :math:`\varepsilon` ``(V, *frame)`` pushed
through the MotionFlow map of :class:`~pyroflows.flows.ConditionalMotionFlowTransform`
(conditional Glow steps driven by a masked-convolution encoder of the frames before each one, and
the dynamic latent prior over frame latents; see :mod:`pyroflows.flows.motionflow_steps`). So

* ``MotionFlow(...).condition(x)`` is a ``TransformedDistribution`` with ``log_prob`` (all frames
  at once), ``sample`` / ``rsample`` (an autoregressive rollout) and works as
  ``pyro.sample("y", mf.condition(x), obs=y)``;
* ``temperature`` :math:`T` scales the noise; :math:`T = 0` is the rollout of zero noise;
* :meth:`MotionFlow.predict` is the point prediction of eq. (15),
  :math:`y^* \approx \frac1S \sum_{i=1}^S g_x(\varepsilon_i)` (the paper uses :math:`S = 10`).

**Shapes.** Frames are images ``(C, H, W)`` or vectors ``(D,)``; ``x`` is ``batch + (U, *frame)``
and samples are ``sample_shape + batch + (V, *frame)``. Structured vector data (particles,
skeletons) can also be laid out as images ``(features, entities, 1)`` so that the coupling's
3x3 convolutions and the encoder's columns run over entities.

**Residual parameterisation** (``residual=True``): the flow models the change from the previous
frame, :math:`q^{(s)} - q^{(s-1)}`, starting from the last observed frame.

Reference: M. Zand, A. Etemad, M. Greenspan, "Flow-based Spatio-Temporal Structured Prediction of
Dynamics" (MotionFlow), Sec. 4, eq. (15).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro.distributions as dist
import torch
import torch.nn as nn
from pyro.distributions.conditional import ConditionalDistribution

from ..flows.motionflow_steps import ConditionalMotionFlowTransform
from ..transforms.base import module_reference
from ..validation import check_size, check_tensor
from .dynamic_prior import check_temperature, noise_distribution


class MotionFlow(nn.Module, ConditionalDistribution):
    r"""MotionFlow's conditional distribution over ``num_future`` frames given ``num_observed`` ones.

    Args:
        frame_shape: ``(C, H, W)`` for image frames, ``(D,)`` for vector frames.
        num_observed: observed frames ``U``.
        num_future: predicted frames ``V``.
        residual: model the change from the previous frame.
        transform: a :class:`~pyroflows.flows.ConditionalMotionFlowTransform` to use; otherwise
            one is built from ``frame_shape``, ``num_observed``, ``residual`` and ``**kwargs``
            (``num_steps``, ``history``, ``hidden_channels``, ``fc_hidden``, ``encoder_hidden``,
            ``orders``, ``prior_hidden``, ``prior_dilations``, ...).

    Example::

        >>> import pyro
        >>> mf = MotionFlow((4,), num_observed=5, num_future=3, num_steps=2, hidden_channels=8, residual=True)
        >>> x, y = torch.randn(6, 5, 4), torch.randn(6, 3, 4)
        >>> d = mf.condition(x)
        >>> d.log_prob(y).shape, d.sample((2,)).shape
        (torch.Size([6]), torch.Size([2, 6, 3, 4]))
        >>> mf.predict(x, num_samples=10).shape                 # eq. (15)
        torch.Size([6, 3, 4])
        >>> def model(x, y):
        ...     pyro.module("motionflow", mf)
        ...     with pyro.plate("sequences", len(x)):
        ...         pyro.sample("y", mf.condition(x), obs=y)
    """

    def __init__(
        self,
        frame_shape: Sequence[int],
        num_observed: int,
        num_future: int,
        residual: bool = False,
        transform: ConditionalMotionFlowTransform | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        num_future = check_size("num_future", num_future)
        if transform is None:
            transform = ConditionalMotionFlowTransform(frame_shape, num_observed, residual=residual, **kwargs)
        elif transform.frame_shape != tuple(frame_shape) or transform.num_observed != num_observed:
            raise ValueError(
                f"transform: built for frames {transform.frame_shape} and {transform.num_observed} observed frames, "
                f"expected {tuple(frame_shape)} and {num_observed}"
            )
        self.transform = transform
        self.num_future = int(num_future)
        self.frame_shape, self.num_observed = transform.frame_shape, transform.num_observed

    @property
    def event_shape(self) -> torch.Size:
        return torch.Size((self.num_future,) + self.frame_shape)

    def condition(self, observed: torch.Tensor, temperature: float = 1.0) -> dist.Delta | dist.TransformedDistribution:
        """:math:`p(y \\mid x)` given observed frames ``batch + (U, *frame)``; ``temperature`` scales the noise."""
        t = check_temperature(temperature)
        ref = self.transform.reference()  # the transform would call the observed frames its "context"
        dtype, device = (None, None) if ref is None else (ref.dtype, ref.device)
        check_tensor("observed", observed, self.transform.context_shape, dtype, device)
        transform = self.transform.condition(observed)
        shape = observed.shape[: observed.dim() - 1 - len(self.frame_shape)] + self.event_shape
        return noise_distribution(module_reference(self), shape, t, transform)

    def predict(self, observed: torch.Tensor, num_samples: int = 10, temperature: float = 1.0) -> torch.Tensor:
        r"""The point prediction of eq. (15): the mean of ``num_samples`` sampled futures,
        ``batch + (V, *frame)``."""
        num_samples = check_size("num_samples", num_samples)
        return self.condition(observed, temperature).sample((num_samples,)).mean(0)
