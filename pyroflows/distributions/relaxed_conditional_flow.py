r"""The one-loss conditional flow of Xiao, Yan and Amit (2019).

An invertible network :math:`f` maps the padded data :math:`\hat x = [x, x_0]` to
:math:`[z, c]` with :math:`\dim \hat x = \dim z + \dim c`. The label part is *relaxed*:
:math:`c = f_c(\hat x) \sim \mathcal N(y, \epsilon^2 I)`, and :math:`z \sim \mathcal N(0, I)`
independently. The conditional density is the paper's eq. (6):

.. math::

    \log p([x, x_0] \mid y) = \log \mathcal N(f_z(\hat x); 0, I)
        + \log \mathcal N(f_c(\hat x); y, \epsilon^2 I)
        + \log\left|\det \frac{\partial f(\hat x)}{\partial \hat x}\right|.

Sampling runs the network backwards: :math:`x = f^{-1}([z, y + \epsilon v])_{1:\dim x}` with
:math:`z, v \sim \mathcal N(0, I)`; and the forward pass :math:`f_c(\hat x)` infers the condition
from data (the paper's "classification by the forward process").

Reference: Z. Xiao, Q. Yan, Y. Amit, "A method to model conditional distributions with
normalizing flows", arXiv:1911.02052, 2019.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
from pyro.distributions import TorchDistribution, constraints
from pyro.distributions.conditional import ConditionalDistribution

from ..transforms.stacks import coupling_flow
from ..validation import check_positive, check_size, check_tensor

_LOG_2PI = math.log(2 * math.pi)
_EMPTY_SHAPE = torch.Size()  # the default sample shape (a torch.Size is immutable: one shared instance)


def _std_normal_log_prob(v: torch.Tensor) -> torch.Tensor:
    return -0.5 * (v**2).sum(-1) - 0.5 * v.shape[-1] * _LOG_2PI


class RelaxedLatent:
    r"""The bookkeeping every relaxed-condition flow shares (:class:`RelaxedConditionalFlow`,
    :class:`~pyroflows.distributions.CRow`): the sizes of :math:`x`, :math:`y`, :math:`z` and the
    padding, the padding itself, and the density of eq. (6) from the network's output."""

    def _set_sizes(self, x_dim: int, y_dim: int, z_dim: int | None, eps: float, pad_noise: float) -> None:
        x_dim, y_dim = check_size("x_dim", x_dim), check_size("y_dim", y_dim)
        z_dim = x_dim if z_dim is None else check_size("z_dim", z_dim)
        pad = z_dim + y_dim - x_dim
        if pad < 0:
            raise ValueError(f"z_dim: z_dim + y_dim must be at least x_dim = {x_dim}, got z_dim={z_dim}, y_dim={y_dim}")
        self.x_dim, self.y_dim, self.z_dim, self.pad_dim = x_dim, y_dim, z_dim, pad
        self.eps = check_positive("eps", eps)
        self.pad_noise = float(pad_noise)
        if not self.pad_noise >= 0:
            raise ValueError(f"pad_noise: expected a non-negative standard deviation, got {pad_noise!r}")

    @property
    def dim(self) -> int:
        """Size of the padded data, ``z_dim + y_dim``."""
        return self.z_dim + self.y_dim

    def pad(self, x: torch.Tensor, noise: bool) -> torch.Tensor:
        r""":math:`\hat x = [x, x_0]` (along the last dim), with :math:`x_0 \sim \mathcal N(0, \sigma^2 I)` if ``noise`` else 0."""
        if self.pad_dim == 0:
            return x
        x0 = x.new_zeros(x.shape[:-1] + (self.pad_dim,))
        if noise:
            x0 = x0 + self.pad_noise * torch.randn_like(x0)
        return torch.cat([x, x0], dim=-1)

    def relaxed_log_prob(self, latent: torch.Tensor, log_det: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r"""Eq. (6) from the forward pass: :math:`\log \mathcal N(z) + \log \mathcal N(c; y, \epsilon^2 I) + \log|\det|`
        with ``latent = [z, c]``."""
        z, c = latent[..., : self.z_dim], latent[..., self.z_dim :]
        log_pc = _std_normal_log_prob((c - y) / self.eps) - self.y_dim * math.log(self.eps)
        return _std_normal_log_prob(z) + log_pc + log_det


class RelaxedConditionalFlow(RelaxedLatent, nn.Module, ConditionalDistribution):
    r"""Conditional flow :math:`p(x \mid y)` trained with the single likelihood loss of Xiao et al.

    Args:
        x_dim: size of the data :math:`x`.
        y_dim: size of the condition :math:`y` (e.g. a one-hot label).
        z_dim: size of the latent :math:`z` (default ``x_dim``). The padding has
            ``z_dim + y_dim - x_dim`` entries and must not be negative.
        eps: standard deviation :math:`\epsilon` of the relaxed condition.
        pad_noise: standard deviation :math:`\sigma` of the noise on the zero padding.
        num_blocks, hidden, clamp, seed: the coupling network (see
            :func:`~pyroflows.transforms.coupling_flow`), used when ``flow`` is None.
        flow: any bijective transform (module) on vectors of size ``z_dim + y_dim`` mapping
            latent ``[z, c]`` to padded data ``[x, x_0]`` (Pyro's base-to-data direction).

    ``.condition(y)`` returns a distribution over ``x`` with batch shape ``y.shape[:-1]`` whose
    ``log_prob(x)`` is :math:`\log p(x \mid y)`. Without padding that is eq. (6) itself. With
    padding, eq. (6) is the density of :math:`[x, x_0]`, and the padding is integrated out by
    importance sampling from the training distribution of the padding,
    :math:`q(x_0) = \mathcal N(0, \sigma^2 I)`:

    .. math::

        \log p(x \mid y) \approx \log \frac1K \sum_{k=1}^K
            \frac{p([x, x_0^{(k)}] \mid y)}{q(x_0^{(k)})}, \qquad x_0^{(k)} \sim q,

    with ``num_pad_draws`` draws (:math:`K`, default 100) in eval mode, from a fixed seed so that
    scoring is deterministic, and one fresh draw in training mode: then its gradient is exactly
    that of the paper's objective (eq. (6) at noisy padding), and its value a one-draw lower bound
    of :math:`\log p(x \mid y)`. The estimate is consistent in :math:`K` and biased low by Jensen's
    inequality; where the fit is good, :math:`p(x_0 \mid x, y) \approx q` and the weights are
    nearly equal. The padded density of eq. (6) is ``padded_log_prob(x, pad)``; ``pad="zero"`` or
    ``pad="noise"`` on ``condition`` makes ``log_prob`` return it instead.

    Example::

        >>> import pyro
        >>> flow = RelaxedConditionalFlow(x_dim=2, y_dim=3, num_blocks=2, hidden=(32, 32))
        >>> x, y = torch.randn(10, 2), torch.eye(3)[torch.randint(3, (10,))]
        >>> def model(x, y):
        ...     pyro.module("flow", flow)
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("x", flow.condition(y), obs=x)
        >>> flow.condition(y).sample().shape, flow.predict(x).shape
        (torch.Size([10, 2]), torch.Size([10, 3]))
    """

    def __init__(
        self,
        x_dim: int,
        y_dim: int,
        z_dim: int | None = None,
        eps: float = 0.1,
        pad_noise: float = 0.05,
        num_blocks: int = 8,
        hidden: int | Sequence[int] = (512, 512),
        clamp: float | None = 3.0,
        seed: int | None = None,
        flow: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self._set_sizes(x_dim, y_dim, z_dim, eps, pad_noise)
        self.flow = coupling_flow(self.dim, num_blocks, hidden, clamp=clamp, seed=seed) if flow is None else flow

    def reference(self) -> torch.Tensor:
        return next(self.parameters())

    def _check(self, name: str, value: torch.Tensor, size: int) -> None:
        ref = self.reference()
        check_tensor(name, value, (size,), ref.dtype, ref.device)

    def encode(self, x_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""The forward pass :math:`f(\hat x) = [z, c]` and :math:`\log|\det \partial f / \partial \hat x|`."""
        inverse = self.flow.inv
        latent = inverse(x_hat)
        return latent, -self.flow.log_abs_det_jacobian(latent, x_hat)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        r""":math:`f^{-1}([z, c])`, the padded data."""
        return self.flow(latent)

    def predict(self, x: torch.Tensor, noise: bool = False) -> torch.Tensor:
        r"""The condition inferred by the forward pass, :math:`f_c([x, x_0])` (``x_0 = 0`` unless ``noise``)."""
        self._check("x", x, self.x_dim)
        latent, _ = self.encode(self.pad(x, noise))
        return latent[..., self.z_dim :]

    def joint_log_prob(self, x: torch.Tensor, y: torch.Tensor, noise: bool) -> torch.Tensor:
        """Eq. (6): ``log p([x, x_0] | y)`` with batch shape ``broadcast(x.shape[:-1], y.shape[:-1])``."""
        self._check("x", x, self.x_dim)
        self._check("y", y, self.y_dim)
        latent, ladj = self.encode(self.pad(x, noise))
        return self.relaxed_log_prob(latent, ladj, y)

    def marginal_log_prob(self, x: torch.Tensor, y: torch.Tensor, num_draws: int, seed: int | None = None) -> torch.Tensor:
        r""":math:`\log p(x \mid y)`: eq. (6) with the padding integrated out by importance sampling
        from :math:`\mathcal N(0, \sigma^2 I)` with ``num_draws`` draws (from ``seed`` when given),
        see the class docstring. Exact, with no draws, when there is no padding."""
        self._check("x", x, self.x_dim)
        self._check("y", y, self.y_dim)
        if self.pad_dim == 0:
            return self.joint_log_prob(x, y, noise=False)
        if self.pad_noise == 0:
            raise ValueError(
                "pad_noise: log p(x | y) integrates the padding out by importance sampling from N(0, pad_noise^2), "
                "which needs pad_noise > 0, got 0; padded_log_prob(x, 'zero') gives the density at zero padding"
            )
        num_draws = check_size("num_draws", num_draws)
        batch = torch.broadcast_shapes(x.shape[:-1], y.shape[:-1])
        shape = (num_draws, *batch, self.pad_dim)
        if seed is None:
            x0 = torch.randn(shape, dtype=x.dtype, device=x.device)
        else:
            generator = torch.Generator(device=x.device).manual_seed(seed)
            x0 = torch.randn(shape, dtype=x.dtype, device=x.device, generator=generator)
        x_hat = torch.cat([x.expand(num_draws, *batch, self.x_dim), self.pad_noise * x0], dim=-1)
        latent, ladj = self.encode(x_hat)
        log_q = _std_normal_log_prob(x0) - self.pad_dim * math.log(self.pad_noise)
        log_w = self.relaxed_log_prob(latent, ladj, y) - log_q
        return torch.logsumexp(log_w, 0) - math.log(num_draws)

    def condition(self, y: torch.Tensor, pad: str | None = None, num_pad_draws: int = 100) -> RelaxedConditional:
        """The distribution :math:`p(x \\mid y)` (see the class docstring). ``pad="noise"`` or
        ``pad="zero"`` makes its ``log_prob`` the padded density of eq. (6) instead;
        ``num_pad_draws`` is the number of importance draws over the padding in eval mode."""
        self._check("y", y, self.y_dim)
        if pad not in (None, "noise", "zero"):
            raise ValueError(f"pad: expected None (log p(x | y)), 'noise' or 'zero' (the padded density), got {pad!r}")
        return RelaxedConditional(self, y, pad, check_size("num_pad_draws", num_pad_draws))


class RelaxedConditional(TorchDistribution):
    """``RelaxedConditionalFlow.condition(y)``: a distribution over ``x`` (see the parent class)."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        parent: RelaxedConditionalFlow,
        y: torch.Tensor,
        pad: str | None = None,
        num_pad_draws: int = 100,
        validate_args: bool | None = None,
    ) -> None:
        self.parent, self.y, self.pad, self.num_pad_draws = parent, y, pad, num_pad_draws
        super().__init__(y.shape[:-1], torch.Size((parent.x_dim,)), validate_args=validate_args)

    def expand(self, batch_shape: Sequence[int], _instance: RelaxedConditional | None = None) -> RelaxedConditional:
        batch_shape = torch.Size(batch_shape)
        return RelaxedConditional(self.parent, self.y.expand(batch_shape + self.y.shape[-1:]), self.pad, self.num_pad_draws)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`\\log p(x \\mid y)`, or the padded density when ``condition`` was given ``pad``."""
        if self.pad is not None:
            return self.padded_log_prob(x, self.pad)
        if self.parent.training:
            return self.parent.marginal_log_prob(x, self.y, 1)
        return self.parent.marginal_log_prob(x, self.y, self.num_pad_draws, seed=0)

    def padded_log_prob(self, x: torch.Tensor, pad: str = "zero") -> torch.Tensor:
        """Eq. (6): the density of the padded vector :math:`[x, x_0]` with :math:`x_0 = 0`
        (``pad="zero"``) or :math:`x_0 \\sim \\mathcal N(0, \\sigma^2 I)` (``pad="noise"``)."""
        if pad not in ("noise", "zero"):
            raise ValueError(f"pad: expected 'noise' or 'zero', got {pad!r}")
        return self.parent.joint_log_prob(x, self.y, pad == "noise")

    def rsample(self, sample_shape: Sequence[int] = _EMPTY_SHAPE) -> torch.Tensor:
        p = self.parent
        shape = torch.Size(sample_shape) + self.batch_shape
        z = torch.randn(shape + (p.z_dim,), dtype=self.y.dtype, device=self.y.device)
        c = self.y + p.eps * torch.randn(shape + (p.y_dim,), dtype=self.y.dtype, device=self.y.device)
        return p.decode(torch.cat([z, c], dim=-1))[..., : p.x_dim]
