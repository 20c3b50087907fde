r"""MotionFlow's dynamic latent space as a bijection: an autoregressive affine map from standard
noise to a latent sequence, conditioned on the latents of past frames.

The prior of eqs. (8)-(12) factorises over frames,
:math:`p(z_{1:V} \mid z_{\le 0}) = \prod_t \mathcal N(z_t; \mu_t, \sigma_t^2)`, with

.. math::

    [\Delta z_t, \log\sigma_t] = \mathrm{res}(z_{<t}), \qquad \mu_t = \Delta z_t + z_{t-1},

where :math:`z_{\le 0}` (the ``history``, at least one frame) are the latents of observed frames
and :math:`\mathrm{res}` is a causal stack of gated residual blocks
(:class:`~pyroflows.nn.gated_residual.CausalGatedResNet`). Written as the map
:math:`\varepsilon \mapsto z` with

.. math::

    z_t = \mu_t(z_{<t}) + \sigma_t(z_{<t}) \odot \varepsilon_t, \qquad
    \log\left|\det \frac{\partial z}{\partial \varepsilon}\right| = \sum_t \sum \log \sigma_t ,

(the Jacobian is block triangular in time) the prior is a standard Normal pushed through this
transform, so ``log_prob`` runs the inverse, :math:`\varepsilon_t = (z_t - \mu_t) / \sigma_t`, for
all frames at once (teacher forcing: :math:`\mu_t, \sigma_t` from the given :math:`z_{<t}`), and
sampling runs the forward map one frame at a time (the autoregressive rollout). A base
:math:`\mathcal N(0, T^2)` gives sampling at temperature :math:`T`; :math:`T = 0` the mean rollout
:math:`z_t = \mu_t(z_{<t})`. :math:`\log\sigma` is soft-bounded, :math:`B\tanh(\cdot / B)`.

Shapes: latent sequences ``batch + (V, C, H, W)`` (event_dim 4, any ``V``); the history is the
context, ``batch' + (K, C, H, W)`` with ``K >= 1``, its batch dims broadcasting against the input's.

Reference: M. Zand, A. Etemad, M. Greenspan, MotionFlow, Sec. 4.4; M. Kumar et al., "VideoFlow",
ICLR 2020 (the latent dynamics it follows).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.distributions import Transform

from ..nn.gated_residual import CausalGatedResNet
from ..shapes import as_shape, batch_shape_of, broadcast_batch
from ..transforms.base import OnePassTransform, event_constraint, soft_clamp
from ..transforms.elementwise import elementwise_affine
from ..transforms.parameterized import ConditionalFlowModule
from ..validation import check_positive


class ConditionedLatentDynamics(OnePassTransform, Transform):
    r"""The autoregressive affine map :math:`\varepsilon \mapsto z` given a causal network ``net``
    (``batch + (L, C, H, W) -> batch + (L, 2C, H, W)``) and a history (the math; see the module
    docstring)."""

    bijective = True

    def __init__(self, net: torch.nn.Module, history: torch.Tensor, clamp: float | None = 5.0) -> None:
        super().__init__(cache_size=1)
        self.net, self.history, self.clamp = net, history, clamp
        self.event_shape_spec = (None,) + tuple(history.shape[-3:])
        self.domain = self.codomain = event_constraint(4)
        self.context_batch_shape = batch_shape_of(history, 4)

    def held_tensors(self) -> tuple:
        return (self.history,)

    def reference(self) -> torch.Tensor:
        return self.history

    def params(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`(\mu, \log\sigma)` of the frame after each prefix of ``seq`` ``batch + (L, C, H, W)``:
        entry ``j`` is for the frame following ``seq[..., :j + 1]``."""
        delta, log_sigma = self.net(seq).chunk(2, dim=-3)
        return delta + seq, soft_clamp(log_sigma, self.clamp)

    def next_params(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`(\mu_t, \log\sigma_t)` of the next frame after ``seq`` (history and frames so far)."""
        mu, log_sigma = self.params(seq)
        return mu[..., -1, :, :, :], log_sigma[..., -1, :, :, :]

    def inverse_and_ladj(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, history = broadcast_batch(z, 4, self.history, 4)
        k = history.shape[-4]
        mu, log_sigma = self.params(torch.cat([history, z[..., :-1, :, :, :]], dim=-4))
        return elementwise_affine(z, log_sigma[..., k - 1 :, :, :, :], mu[..., k - 1 :, :, :, :], 4, inverse=True)

    def forward_and_ladj(self, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        eps, seq = broadcast_batch(eps, 4, self.history, 4)
        frames, total = [], eps.new_zeros(eps.shape[:-4])
        for t in range(eps.shape[-4]):
            mu, log_sigma = self.next_params(seq)
            z_t, ladj = elementwise_affine(eps[..., t, :, :, :], log_sigma, mu, 3)
            frames.append(z_t)
            total = total + ladj
            seq = torch.cat([seq, z_t.unsqueeze(-4)], dim=-4)
        return (torch.stack(frames, dim=-4) if frames else eps), total


class ConditionalLatentDynamics(ConditionalFlowModule):
    r"""MotionFlow's dynamic latent prior as a conditional transform: ``.condition(history)``
    evaluates the :class:`ConditionedLatentDynamics` map :math:`\varepsilon \mapsto z` (module docstring).

    Args:
        frame_shape: ``(C, H, W)`` of one latent frame.
        hidden_channels: width of the residual blocks.
        dilations: temporal dilation of each block (the paper's ``(1, 2, 4)``).
        clamp: soft bound ``B`` on :math:`\log\sigma_t`.
        net: a causal network ``batch + (L, C, H, W) -> batch + (L, 2C, H, W)`` returning
            :math:`[\Delta z, \log\sigma]` for the next frame at every position (default
            :class:`~pyroflows.nn.gated_residual.CausalGatedResNet`).

    Example::

        >>> dyn = ConditionalLatentDynamics((2, 3, 1), hidden_channels=8)
        >>> history, eps = torch.randn(4, 1, 2, 3, 1), torch.randn(4, 5, 2, 3, 1)
        >>> t = dyn.condition(history)
        >>> z = t(eps)                                  # rollout over 5 frames
        >>> torch.allclose(t.inv(z.clone()), eps, atol=1e-5), t.log_abs_det_jacobian(eps, z).shape
        (True, torch.Size([4]))
    """

    def __init__(
        self,
        frame_shape: Sequence[int],
        hidden_channels: int = 64,
        dilations: Sequence[int] = (1, 2, 4),
        clamp: float | None = 5.0,
        net: torch.nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.frame_shape = as_shape(frame_shape)
        if len(self.frame_shape) != 3:
            raise ValueError(f"frame_shape: expected (C, H, W), got {self.frame_shape}")
        self.clamp = check_positive("clamp", clamp, allow_none=True)
        channels = self.frame_shape[0]
        self.net = CausalGatedResNet(channels, 2 * channels, hidden_channels, dilations) if net is None else net
        self.context_shape = (None,) + self.frame_shape
        self.set_event((None,) + self.frame_shape)

    def check_context(self, context: torch.Tensor) -> None:
        super().check_context(context)
        if context.shape[-4] < 1:
            raise ValueError(f"context: expected at least one frame, got shape {tuple(context.shape)}")

    def transform(self, context: torch.Tensor) -> ConditionedLatentDynamics:
        return ConditionedLatentDynamics(self.net, context, self.clamp)


def conditional_latent_dynamics(
    frame_shape: Sequence[int], hidden_channels: int = 64, dilations: Sequence[int] = (1, 2, 4), clamp: float | None = 5.0
) -> ConditionalLatentDynamics:
    """MotionFlow's dynamic latent prior map with the default gated residual network."""
    return ConditionalLatentDynamics(frame_shape, hidden_channels, dilations, clamp)
