r"""CRow: a conditional sequence flow :math:`p(x_{1:T} \mid y_{1:T})` with exact per-step densities.

As in the paper (Hwang et al. 2019, Sec. 3) the invertible network maps each frame to its
covariate and a latent, :math:`[z_t, c_t] = f_t(\hat x_t)`, where :math:`f_t` is the CRow frame map
at step :math:`t` (recurrent couplings whose hidden states summarise :math:`\hat x_{<t}`, see
:mod:`pyroflows.flows.crow_blocks`) and :math:`\hat x_t = [x_t, x_{0,t}]` is the frame padded to
:math:`\dim z + \dim y` features. It is trained by the one-loss relaxed likelihood of Xiao et al.
(:class:`~pyroflows.distributions.RelaxedConditionalFlow`): :math:`z_t \sim \mathcal N(0, I)` and
:math:`c_t \sim \mathcal N(y_t, \epsilon^2 I)`, independently over time. Because :math:`f_t` depends
on the past only through the hidden states, the sequence map has a block triangular Jacobian and
the log-density splits into exact per-step conditionals:

.. math::

    \log p(\hat x_t \mid \hat x_{<t}, y_{\le t}) = \log \mathcal N(z_t; 0, I)
        + \log \mathcal N(c_t; y_t, \epsilon^2 I)
        + \log\left|\det \frac{\partial f_t(\hat x_t)}{\partial \hat x_t}\right|, \qquad
    \log p(\hat x_{1:T} \mid y_{1:T}) = \sum_{t=1}^T \log p(\hat x_t \mid \hat x_{<t}, y_{\le t}).

Sampling runs forward in time: :math:`\hat x_t = f_t^{-1}([z_t, y_t + \epsilon n_t])` with the
hidden states of the frames already generated, so frame :math:`t` never sees :math:`y_{>t}`, and
sequences of any length can be drawn (the network has no fixed ``T``). The forward pass infers the
covariate of every frame, :math:`\hat y_t = f_{t,c}([x_t, 0])`, given the frames before it.

Padding follows :class:`~pyroflows.distributions.RelaxedConditionalFlow`: :math:`x_{0,t} \sim
\mathcal N(0, \sigma^2 I)` afresh in training mode, :math:`0` in eval mode; with padding the
densities are those of the padded frames, without (``z_dim = x_dim - y_dim``) they are exact
densities of :math:`x`.

Reference: S. J. Hwang, Z. Tao, W. H. Kim, V. Singh, "Conditional Recurrent Flow: Conditional
Generation of Longitudinal Samples with Applications to Neuroimaging", ICCV 2019; Z. Xiao, Q. Yan,
Y. Amit, "A method to model conditional distributions with normalizing flows", 2019.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from pyro.distributions import TorchDistribution, constraints
from pyro.distributions.conditional import ConditionalDistribution

from ..flows.crow_blocks import ConditionalCRowTransform, CRowArchitecture, CRowTransform, crow_architecture
from ..transforms.parameterized import ConditionedFlow
from ..validation import check_tensor
from .relaxed_conditional_flow import RelaxedLatent

_EMPTY_SHAPE = torch.Size()  # the default sample shape (a torch.Size is immutable: one shared instance)


class CRow(RelaxedLatent, nn.Module, ConditionalDistribution):
    r"""Conditional Recurrent Flow over sequences :math:`x_{1:T}` given covariates :math:`y_{1:T}`.

    Args:
        x_dim: features per frame :math:`x_t`.
        y_dim: size of the covariate :math:`y_t` (e.g. a one-hot label).
        z_dim: size of the latent :math:`z_t` (default ``x_dim``); the padding has
            ``z_dim + y_dim - x_dim`` entries and must not be negative.
        eps: standard deviation :math:`\epsilon` of the relaxed covariate.
        pad_noise: standard deviation :math:`\sigma` of the padding noise (training mode).
        architecture: the network (a :class:`~pyroflows.flows.crow_blocks.CRowArchitecture`, or its
            fields as keywords: ``num_blocks``, ``hidden_size``, ``hidden_features``, ``res_blocks``,
            ``recurrent`` (False gives the paper's cINN baseline, each frame alone), ``gate``,
            ``clamp``, ``permutation``, ``seed``), used when ``flow`` is None.
        context: also feed :math:`y_t` to every subnetwork, :math:`[s, r], h_t = q([u, y_t], h_{t-1})`
            (a :class:`~pyroflows.flows.ConditionalCRowTransform`), so the covariate is both an
            input of the couplings, as in Ardizzone et al.'s conditional INN, and the relaxed output
            :math:`c_t`. The density stays exact; :meth:`predict` is then unavailable (the forward
            pass needs :math:`y`).
        flow: a :class:`~pyroflows.flows.CRowTransform` (or, for ``context``, a
            :class:`~pyroflows.flows.ConditionalCRowTransform` with ``context_dim = y_dim``) on
            frames of size ``z_dim + y_dim``.

    ``.condition(y)`` with ``y`` of shape ``batch + (T, y_dim)`` returns a distribution over
    ``x`` with batch shape ``batch`` and event shape ``(T, x_dim)``: ``log_prob`` of whole
    sequences, ``step_log_prob`` per step, ``sample`` / ``rsample`` of length ``T``.

    Example::

        >>> import pyro
        >>> crow = CRow(x_dim=3, y_dim=2, num_blocks=2, hidden_size=8, hidden_features=16)
        >>> y = torch.eye(2)[torch.randint(2, (4, 6))]            # 4 sequences of 6 one-hot labels
        >>> x = torch.randn(4, 6, 3)
        >>> def model(x, y):
        ...     pyro.module("crow", crow)
        ...     with pyro.plate("sequences", len(x)):
        ...         pyro.sample("x", crow.condition(y), obs=x)
        >>> d = crow.condition(y)
        >>> d.log_prob(x).shape, d.step_log_prob(x).shape, d.sample((5,)).shape
        (torch.Size([4]), torch.Size([4, 6]), torch.Size([5, 4, 6, 3]))
        >>> crow.predict(x).shape                                  # per-frame covariates
        torch.Size([4, 6, 2])
    """

    def __init__(
        self,
        x_dim: int,
        y_dim: int,
        z_dim: int | None = None,
        eps: float = 0.1,
        pad_noise: float = 0.05,
        architecture: CRowArchitecture | None = None,
        context: bool = False,
        flow: CRowTransform | ConditionalCRowTransform | None = None,
        **fields: Any,
    ) -> None:
        super().__init__()
        self._set_sizes(x_dim, y_dim, z_dim, eps, pad_noise)
        if flow is None:
            arch = crow_architecture(architecture, fields)
            flow = ConditionalCRowTransform(self.dim, self.y_dim, arch) if context else CRowTransform(self.dim, arch)
        elif architecture is not None or fields:
            raise ValueError("flow: give a flow or its architecture, not both")
        elif flow.dim != self.dim:
            raise ValueError(f"flow: expected a CRow transform on frames of size z_dim + y_dim = {self.dim}, got {flow.dim}")
        elif isinstance(flow, ConditionalCRowTransform) and flow.context_dim != self.y_dim:
            raise ValueError(f"flow: a conditional CRow transform needs context_dim = y_dim = {self.y_dim}, got {flow.context_dim}")
        self.flow = flow
        self.context = isinstance(flow, ConditionalCRowTransform)

    def _check(self, name: str, value: torch.Tensor, size: int, steps: int | None = None) -> None:
        ref = next(self.parameters())
        check_tensor(name, value, (None, size), ref.dtype, ref.device)
        if steps is not None and value.shape[-2] != steps:
            raise ValueError(f"{name}: expected {steps} time steps (those of y), got {value.shape[-2]} in shape {tuple(value.shape)}")

    def _transform(self, y: torch.Tensor | None) -> CRowTransform | ConditionedFlow:
        if not self.context:
            return self.flow
        if y is None:
            raise ValueError("y: a CRow with context=True feeds y to its subnetworks, so encode/decode need y")
        return self.flow.condition(y)

    def encode(
        self, x_hat: torch.Tensor, state: Sequence[tuple[torch.Tensor, ...] | None] | None = None, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, ...]] | None]:
        r"""The paper's forward map on padded sequences ``(..., T, dim)``: ``(latent [z_t, c_t],
        per-step log|det df_t/dx_t| of shape batch + (T,), final hidden states)``; ``y`` is needed
        (and only used) with ``context``."""
        return self._transform(y).encode(x_hat, state)

    def decode(
        self, latent: torch.Tensor, state: Sequence[tuple[torch.Tensor, ...] | None] | None = None, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, ...]] | None]:
        r"""The inverse, forward in time: ``(padded sequence, per-step log-dets, final hidden states)``."""
        return self._transform(y).decode(latent, state)

    def predict(self, x: torch.Tensor, noise: bool = False) -> torch.Tensor:
        r"""The covariate of every frame inferred by the forward pass, :math:`f_{t,c}([x_t, x_{0,t}])`
        given the frames before it: shape ``batch + (T, y_dim)``."""
        if self.context:
            raise ValueError(
                "predict: a CRow with context=True needs y for its forward pass; compare step_log_prob under each candidate y instead"
            )
        self._check("x", x, self.x_dim)
        latent, _, _ = self.encode(self.pad(x, noise))
        return latent[..., self.z_dim :]

    def padded_step_log_prob(self, x_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(\hat x_t \mid \hat x_{<t}, y_{\le t})` of padded sequences, shape ``batch + (T,)``."""
        self._check("y", y, self.y_dim)
        self._check("x_hat", x_hat, self.dim, y.shape[-2])
        latent, logdet, _ = self.encode(x_hat, y=y)
        return self.relaxed_log_prob(latent, logdet, y)

    def step_log_prob(self, x: torch.Tensor, y: torch.Tensor, noise: bool) -> torch.Tensor:
        r"""Per-step log-densities of ``x`` ``(..., T, x_dim)`` given ``y`` ``(..., T, y_dim)``, padded
        with noise or zeros: shape ``broadcast(batch of x, batch of y) + (T,)``."""
        self._check("y", y, self.y_dim)
        self._check("x", x, self.x_dim, y.shape[-2])
        latent, logdet, _ = self.encode(self.pad(x, noise), y=y)
        return self.relaxed_log_prob(latent, logdet, y)

    def condition(self, y: torch.Tensor, pad: str | None = None) -> CRowConditional:
        """The distribution :math:`p(x_{1:T} \\mid y_{1:T})`; ``pad`` is ``"noise"``, ``"zero"`` or None (by mode)."""
        self._check("y", y, self.y_dim)
        if y.shape[-2] == 0:
            raise ValueError(f"y: expected at least one time step, got shape {tuple(y.shape)}")
        if pad not in (None, "noise", "zero"):
            raise ValueError(f"pad: expected None, 'noise' or 'zero', got {pad!r}")
        noise = self.training if pad is None else pad == "noise"
        return CRowConditional(self, y, noise)


class CRowConditional(TorchDistribution):
    r"""``CRow.condition(y)``: a distribution over sequences ``x`` of shape ``batch + (T, x_dim)``."""

    arg_constraints: dict = {}
    support = constraints.independent(constraints.real, 2)
    has_rsample = True

    def __init__(self, parent: CRow, y: torch.Tensor, pad_noise: bool, validate_args: bool | None = None) -> None:
        self.parent, self.y, self.pad_noise = parent, y, pad_noise
        super().__init__(y.shape[:-2], torch.Size((y.shape[-2], parent.x_dim)), validate_args=validate_args)

    def expand(self, batch_shape: Sequence[int], _instance: CRowConditional | None = None) -> CRowConditional:
        batch_shape = torch.Size(batch_shape)
        return CRowConditional(self.parent, self.y.expand(batch_shape + self.y.shape[-2:]), self.pad_noise)

    def step_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(x_t \mid x_{<t}, y_{\le t})` (of the padded frames), shape ``batch + (T,)``."""
        return self.parent.step_log_prob(x, self.y, self.pad_noise)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """The sequence log-density, the sum of :meth:`step_log_prob` over time."""
        return self.step_log_prob(x).sum(-1)

    def _latent(self, sample_shape: Sequence[int]) -> torch.Tensor:
        p, y = self.parent, self.y
        shape = torch.Size(sample_shape) + y.shape[:-1]
        z = torch.randn(shape + (p.z_dim,), dtype=y.dtype, device=y.device)
        c = y + p.eps * torch.randn(shape + (p.y_dim,), dtype=y.dtype, device=y.device)
        return torch.cat([z, c], dim=-1)

    def rsample_with_step_log_prob(self, sample_shape: Sequence[int] = _EMPTY_SHAPE) -> tuple[torch.Tensor, torch.Tensor]:
        r"""``(x, step_log_prob)``: sequences generated forward in time and, from the same pass, the
        per-step :math:`\log p(\hat x_t \mid \hat x_{<t}, y_{\le t})` of the generated (padded) frames
        (the density the paper shows above each generated frame)."""
        latent = self._latent(sample_shape)
        x_hat, logdet, _ = self.parent.decode(latent, y=self.y)
        return x_hat[..., : self.parent.x_dim], self.parent.relaxed_log_prob(latent, logdet, self.y)

    def rsample(self, sample_shape: Sequence[int] = _EMPTY_SHAPE) -> torch.Tensor:
        x_hat, _, _ = self.parent.decode(self._latent(sample_shape), y=self.y)
        return x_hat[..., : self.parent.x_dim]
