r"""MotionFlow: conditional Glow steps driven by a context map, and the whole spatio-temporal
prediction map from latent noise to future frames given observed ones.

**One step** (Sec. 4.3). Given a context map :math:`u` ``(K, H, W)`` at the frame's spatial size
(the output of the masked-convolution encoder, eq. (5)), the data-to-latent direction (the paper's
:math:`f`, Pyro's inverse) runs

.. math::

    \text{ActNorm (4):}\ \beta = s(u) \odot \alpha + b(u), \qquad
    \text{1x1 conv (6):}\ \beta_{ij} = W(u)\,\alpha_{ij}, \qquad
    \text{coupling (7):}\ [\alpha_1, \alpha_2] \mapsto [\alpha_1,\ s \odot \alpha_2 + b],\
    [s, b] = \mathrm{cross}(\mathrm{CNN}_2([\alpha_1, \mathrm{CNN}_1(u)])).

The ActNorm log-scale and bias are data-initialised per channel plus
:math:`\tanh(\mathrm{FC}_1(u))` (a zero-initialised MLP of the flattened :math:`u`); the per-sample
matrix :math:`W(u) = P L(u) (U(u) + \operatorname{diag}(\sigma e^{d(u)}))` is an LU factorisation whose
factors are offset by :math:`\tanh(\mathrm{FC}_2(u))`, so it is invertible for every context, with
:math:`\log|\det W(u)| = \sum_i d_i(u)`. The tanh bounds of the offsets (as in the authors' code)
keep an autoregressive rollout, whose contexts contain its own outputs, from running away. The
coupling network is :class:`~pyroflows.nn.conv.ContextCouplingNet` and its log-scale is soft-bounded.
These reuse :class:`~pyroflows.transforms.ConditionalActNorm`,
:class:`~pyroflows.transforms.ConditionalInvertibleLinear` and
:class:`~pyroflows.transforms.ConditionalAffineCoupling` with map contexts
(``context_shape = (K, H, W)``); a vector context ``(K,)`` also works (the coupling then tiles it
over space). :class:`ConditionalMotionFlowStep` puts the three together; ``.condition(u)``
returns a :class:`~pyroflows.flows.ConditionedGlowStep`.

**The prediction map.** Frames are images ``(C, H, W)`` or vectors ``(D,)`` (handled as
``(D, 1, 1)`` images). Observed frames :math:`x = q^{(1:U)}` are the context, ``batch' + (U, *frame)``,
and the future :math:`y = q^{(U+1:U+V)}` the event, ``batch + (V, *frame)`` (event_dim 2 for
vectors, 4 for images). Frame :math:`s` is encoded by the flow conditioned on the window of the
:math:`W = U - K` frames before it ("updates the input at each time step", Sec. 5.2): the window is
laid out as a pseudo-image ``(C, W, H*W)`` (rows: time, columns: positions), encoded by
:class:`~pyroflows.nn.masked_conv.SpatioTemporalEncoder` (raster and temporal orderings) and
reshaped to the context map ``(W*C, H, W)``. With ``residual=True`` the flow sees the change
:math:`d_s = q^{(s)} - q^{(s-1)}` instead of :math:`q^{(s)}` (a unit-triangular map: densities are
unchanged). The latents :math:`z_s` of the last :math:`K` observed frames are the history of the
dynamic prior (:mod:`~pyroflows.flows.latent_dynamics`), which maps noise :math:`\varepsilon` to
the future latents. So the forward (latent-to-data) map is

.. math::

    z_t = \mu_t(z_{<t}) + \sigma_t(z_{<t}) \odot \varepsilon_t, \qquad
    q^{(U+t)} = g_{u_t}(z_t)\ (+\, q^{(U+t-1)}), \qquad
    u_t = \mathrm{enc}(q^{(U+t-W)}, \dots, q^{(U+t-1)}),

generated one frame at a time, and because frame :math:`t` depends only on noise up to :math:`t`
the Jacobian is block triangular:
:math:`\log|\det| = \sum_t \left(\sum\log\sigma_t + \log|\det \partial g_{u_t} / \partial z_t|\right)`.
The inverse (scoring observed futures) computes all windows from the data and runs every frame at
once (teacher forcing). With a standard Normal base this is MotionFlow's likelihood
:math:`\log p(y \mid x) = \sum_t \log \mathcal N(z_t; \mu_t, \sigma_t) + \sum_t \log|\det \partial f / \partial q^{(U+t)}|`.

Reference: M. Zand, A. Etemad, M. Greenspan, "Flow-based Spatio-Temporal Structured Prediction of
Dynamics" (MotionFlow), Sec. 4; Kingma, Dhariwal, "Glow", NeurIPS 2018.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from torch.distributions import Transform

from ..nn.conv import ContextCouplingNet, ConvNet
from ..nn.dense import context_mlp
from ..nn.masked_conv import SpatioTemporalEncoder
from ..shapes import as_shape, batch_shape_of, broadcast_batch
from ..transforms.actnorm import ConditionalActNorm
from ..transforms.base import OnePassTransform, event_constraint, module_reference
from ..transforms.coupling import ConditionalAffineCoupling, check_split
from ..transforms.elementwise import elementwise_affine
from ..transforms.linear import ConditionalInvertibleLinear
from ..transforms.parameterized import ConditionalFlowModule, ConditionedFlow
from ..validation import check_size
from .glow import ConditionedGlowStep
from .latent_dynamics import ConditionalLatentDynamics


class ConditionalMotionFlowStep(ConditionalFlowModule):
    r"""One MotionFlow step on images ``(C, H, W)``: conditional ActNorm (eq. 4), conditional
    invertible 1x1 convolution (eq. 6) and conditional affine coupling with the cross split (eq. 7),
    all driven by one context (module docstring).

    Args:
        num_channels: channels ``C`` of the input (at least 2).
        context_shape: ``(K, H, W)`` (a map at the input's spatial size) or ``(K,)`` (a vector).
            Its batch dims broadcast against the input's.
        hidden_channels: width of the coupling's :math:`\mathrm{CNN}_2`.
        fc_hidden: hidden widths of FC1 (ActNorm) and FC2 (1x1 convolution).
        context_features: channels of :math:`\mathrm{CNN}_1(u)` (map contexts).
        clamp: soft bound of the coupling's log-scale.
        split: channels passed through the coupling unchanged (default half).

    Example::

        >>> step = ConditionalMotionFlowStep(4, context_shape=(6, 3, 1), hidden_channels=8, fc_hidden=(16,))
        >>> y, u = torch.randn(5, 4, 3, 1), torch.randn(5, 6, 3, 1)
        >>> t = step.condition(u)
        >>> z = t.inv(y)                                   # data -> latent
        >>> torch.allclose(t(z), y, atol=1e-5), t.log_abs_det_jacobian(z, y).shape
        (True, torch.Size([5]))
    """

    def __init__(
        self,
        num_channels: int,
        context_shape: int | Sequence[int],
        hidden_channels: int = 64,
        fc_hidden: Sequence[int] = (64, 64),
        context_features: int = 8,
        clamp: float | None = 3.0,
        split: int | None = None,
    ) -> None:
        super().__init__()
        cs = as_shape(context_shape)
        if len(cs) not in (1, 3):
            raise ValueError(f"context_shape: expected (K,) or (K, H, W), got {cs}")
        self.num_channels, self.context_shape = check_size("num_channels", num_channels, 2), cs
        split = check_split(num_channels, split)
        out = 2 * (num_channels - split)
        fc1 = nn.Sequential(context_mlp(cs, 2 * num_channels, fc_hidden), nn.Tanh())
        fc2 = nn.Sequential(context_mlp(cs, 2 * num_channels * num_channels + num_channels, fc_hidden), nn.Tanh())
        self.actnorm = ConditionalActNorm(num_channels, cs[0], 3, net=fc1, context_shape=cs)
        self.conv = ConditionalInvertibleLinear(num_channels, cs[0], 3, net=fc2, context_shape=cs)
        if len(cs) == 3:
            net = ContextCouplingNet(split, out, cs[0], hidden_channels, context_features)
        else:
            net = ConvNet(split, out, hidden_channels, cs[0])
        self.coupling = ConditionalAffineCoupling(num_channels, net, cs, 3, split, clamp)
        self.set_event((num_channels, None, None))

    def transform(self, context: torch.Tensor) -> ConditionedGlowStep:
        return ConditionedGlowStep(
            ConditionedFlow(self.coupling, context), ConditionedFlow(self.conv, context), ConditionedFlow(self.actnorm, context)
        )


def _frame_image_shape(frame_shape: Sequence[int]) -> tuple:
    frame_shape = tuple(int(s) for s in frame_shape)
    if len(frame_shape) == 1:
        return frame_shape + (1, 1)
    if len(frame_shape) == 3:
        return frame_shape
    raise ValueError(f"frame_shape: expected (D,) for vectors or (C, H, W) for images, got {frame_shape}")


class ConditionedMotionFlow(OnePassTransform, Transform):
    """The MotionFlow map of ``motionflow`` (a :class:`ConditionalMotionFlowTransform`) from noise
    ``batch + (V, *frame)`` to future frames, given the observed frames ``observed``, at its current
    parameters (the math; see the module docstring)."""

    bijective = True

    def __init__(self, motionflow: ConditionalMotionFlowTransform, observed: torch.Tensor) -> None:
        super().__init__(cache_size=1)
        self.motionflow, self.observed = motionflow, observed
        self._edim = 1 + len(motionflow.frame_shape)
        self.event_shape_spec = (None,) + motionflow.frame_shape
        self.domain = self.codomain = event_constraint(self._edim)
        self.context_batch_shape = batch_shape_of(observed, self._edim)

    def reference(self) -> torch.Tensor | None:
        return module_reference(self.motionflow)

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Future frames -> noise, every frame at once (teacher forcing)."""
        o = self.motionflow
        y, x = broadcast_batch(y, self._edim, self.observed, self._edim)
        u, k, v = o.num_observed, o.history, y.shape[-self._edim]
        seq = torch.cat([o._image(x), o._image(y)], dim=-4)
        frames = seq[..., u - k :, :, :, :]
        if o.residual:
            frames = frames - seq[..., u - k - 1 : -1, :, :, :]
        z, ladj = o._encode(frames, o._window_contexts(seq, k + v))
        eps, ladj_prior = o.dynamics.transform(z[..., :k, :, :, :]).inverse_and_ladj(z[..., k:, :, :, :])
        return o._unimage(eps), ladj[..., k:].sum(-1) + ladj_prior

    def forward_and_ladj(self, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise -> future frames, generated one frame at a time."""
        o = self.motionflow
        eps, x = broadcast_batch(eps, self._edim, self.observed, self._edim)
        u, k, w = o.num_observed, o.history, o.window
        seq, noise = o._image(x), o._image(eps)
        frames = seq[..., u - k :, :, :, :]
        if o.residual:
            frames = frames - seq[..., u - k - 1 : -1, :, :, :]
        latents, _ = o._encode(frames, o._window_contexts(seq, k))
        dynamics = o.dynamics.transform(latents)
        out, total = [], eps.new_zeros(eps.shape[: eps.dim() - self._edim])
        for t in range(noise.shape[-4]):
            mu, log_sigma = dynamics.next_params(latents)
            z_t, ladj_prior = elementwise_affine(noise[..., t, :, :, :], log_sigma, mu, 3)
            q_t, ladj = o._decode(z_t, o._context(seq[..., seq.shape[-4] - w :, :, :, :]))
            if o.residual:
                q_t = q_t + seq[..., -1, :, :, :]
            total = total + ladj_prior + ladj
            latents = torch.cat([latents, z_t.unsqueeze(-4)], dim=-4)
            seq = torch.cat([seq, q_t.unsqueeze(-4)], dim=-4)
            out.append(q_t)
        y = torch.stack(out, dim=-4) if out else noise
        return o._unimage(y), total


class ConditionalMotionFlowTransform(ConditionalFlowModule):
    r"""MotionFlow's prediction map as a conditional transform: ``.condition(observed)`` returns a
    :class:`ConditionedMotionFlow` from noise to future frames (module docstring).

    Args:
        frame_shape: ``(C, H, W)`` for image frames, ``(D,)`` for vector frames (``D >= 2``).
        num_observed: observed frames ``U`` (the context is ``batch' + (U, *frame_shape)``).
        num_steps: flow steps per frame (the paper's ``K = 8``).
        history: observed frames ``K`` whose latents start the dynamic prior (``>= 1``); the
            encoder's window is ``U - K`` frames (``>= 1``).
        hidden_channels, fc_hidden, context_features, clamp: the steps
            (:class:`ConditionalMotionFlowStep`).
        encoder_hidden, orders, dilation: the encoder
            (:class:`~pyroflows.nn.masked_conv.SpatioTemporalEncoder`).
        prior_hidden, prior_dilations, prior_clamp: the dynamic prior
            (:class:`~pyroflows.flows.latent_dynamics.ConditionalLatentDynamics`).
        residual: model the change from the previous frame.

    Example::

        >>> mf = ConditionalMotionFlowTransform((4, 3, 1), num_observed=5, num_steps=2, hidden_channels=8, fc_hidden=(16,), prior_hidden=8)
        >>> x, y = torch.randn(6, 5, 4, 3, 1), torch.randn(6, 7, 4, 3, 1)
        >>> t = mf.condition(x)
        >>> eps = t.inv(y)                                 # score 7 future frames
        >>> torch.allclose(t(eps), y, atol=1e-4), t.log_abs_det_jacobian(eps, y).shape
        (True, torch.Size([6]))
    """

    def __init__(
        self,
        frame_shape: Sequence[int],
        num_observed: int,
        num_steps: int = 8,
        history: int = 1,
        hidden_channels: int = 64,
        fc_hidden: Sequence[int] = (64, 64),
        context_features: int = 8,
        clamp: float | None = 3.0,
        encoder_hidden: Sequence[int] = (32, 16),
        orders: Sequence[str | torch.Tensor] = ("raster", "temporal"),
        dilation: int = 2,
        prior_hidden: int = 64,
        prior_dilations: Sequence[int] = (1, 2, 4),
        prior_clamp: float | None = 5.0,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self.image_shape = _frame_image_shape(self.frame_shape)
        if self.image_shape[0] < 2:
            raise ValueError(f"frame_shape: expected at least 2 channels (features), got {self.frame_shape}")
        if not 1 <= history < num_observed:
            raise ValueError(f"history: expected an integer in [1, num_observed - 1] = [1, {num_observed - 1}], got {history}")
        self.num_observed, self.history, self.window, self.residual = (
            int(num_observed),
            int(history),
            int(num_observed - history),
            bool(residual),
        )
        self.context_shape = (self.num_observed,) + self.frame_shape
        c, h, w = self.image_shape
        self.encoder = SpatioTemporalEncoder(c, (self.window, h * w), orders, encoder_hidden, dilation)
        ctx = (self.window * c, h, w)
        self.steps = nn.ModuleList(
            ConditionalMotionFlowStep(c, ctx, hidden_channels, fc_hidden, context_features, clamp) for _ in range(num_steps)
        )
        self.dynamics = ConditionalLatentDynamics(self.image_shape, prior_hidden, prior_dilations, prior_clamp)
        self.set_event((None,) + self.frame_shape)

    @property
    def event_dim(self) -> int:
        return 1 + len(self.frame_shape)

    def transform(self, context: torch.Tensor) -> ConditionedMotionFlow:
        return ConditionedMotionFlow(self, context)

    # --------------------------------------------------------------- layout helpers
    def _image(self, seq: torch.Tensor) -> torch.Tensor:
        """``batch + (T, *frame_shape)`` -> ``batch + (T, C, H, W)``."""
        return seq if len(self.frame_shape) == 3 else seq.reshape(seq.shape[:-1] + self.image_shape)

    def _unimage(self, seq: torch.Tensor) -> torch.Tensor:
        return seq if len(self.frame_shape) == 3 else seq.reshape(seq.shape[:-3] + self.frame_shape)

    def _context(self, window: torch.Tensor) -> torch.Tensor:
        """The context map ``batch + (W*C, H, W)`` of a window of frames ``batch + (W, C, H, W)``:
        the encoder sees the pseudo-image ``(C, W, H*W)`` (rows: time, columns: positions)."""
        c, h, w = self.image_shape
        pseudo = window.flatten(-2).transpose(-3, -2)
        u = self.encoder(pseudo).transpose(-3, -2)
        return u.reshape(u.shape[:-3] + (self.window * c, h, w))

    def _window_contexts(self, seq: torch.Tensor, n: int) -> torch.Tensor:
        """Context maps of the last ``n`` frames of ``seq`` ``batch + (L, C, H, W)``, frame ``s``
        getting the window of the ``W`` frames before it: ``batch + (n, W*C, H, W)``."""
        windows = seq[..., :-1, :, :, :].unfold(-4, self.window, 1)  # batch + (L - W, C, H, W, W)
        windows = windows[..., windows.shape[-5] - n :, :, :, :, :].movedim(-1, -4)
        return self._context(windows)

    def _encode(self, frames: torch.Tensor, contexts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames -> latents through every step (data -> latent), with per-frame log|det d frame / d z|."""
        v, total = frames, 0
        for step in reversed(self.steps):
            v, ladj = step.transform(contexts).inverse_and_ladj(v)
            total = total + ladj
        return v, total

    def _decode(self, z: torch.Tensor, contexts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents -> frames (latent -> data), with log|det d frame / d z|."""
        v, total = z, 0
        for step in self.steps:
            v, ladj = step.transform(contexts).forward_and_ladj(v)
            total = total + ladj
        return v, total


def conditional_motionflow_step(
    num_channels: int,
    context_shape: int | Sequence[int],
    hidden_channels: int = 64,
    fc_hidden: Sequence[int] = (64, 64),
    clamp: float | None = 3.0,
) -> ConditionalMotionFlowStep:
    """One :class:`ConditionalMotionFlowStep`; ``context_shape`` ``(K, H, W)`` (map) or ``(K,)`` (vector)."""
    return ConditionalMotionFlowStep(num_channels, context_shape, hidden_channels, fc_hidden, clamp=clamp)


def conditional_motionflow(
    frame_shape: Sequence[int],
    num_observed: int,
    num_steps: int = 8,
    history: int = 1,
    hidden_channels: int = 64,
    residual: bool = False,
    **kwargs: Any,
) -> ConditionalMotionFlowTransform:
    """A :class:`ConditionalMotionFlowTransform` (other arguments as there).

    Example::

        >>> t = conditional_motionflow((6,), num_observed=4, num_steps=1, hidden_channels=8, residual=True)
        >>> t.condition(torch.randn(2, 4, 6))(torch.randn(2, 3, 6)).shape     # 3 future vectors
        torch.Size([2, 3, 6])
    """
    return ConditionalMotionFlowTransform(frame_shape, num_observed, num_steps, history, hidden_channels, residual=residual, **kwargs)
