r"""The INN baseline of Ardizzone et al. (2018), trained on the same invertible network.

The network maps padded data :math:`\hat x = [x, x_0]` to :math:`[z, \hat y]` (the layout of
:class:`~pyroflows.distributions.RelaxedConditionalFlow`). Four losses:

.. math::

    \mathcal L = w_y \lVert \hat y - y \rVert^2
      + w_z\,\mathrm{MMD}([z, \operatorname{sg}(\hat y)], [z', y])
      + r(i)\, w_x\,\mathrm{MMD}(f^{-1}([z', y])_{x}, x)
      + w_{rec} \lVert f^{-1}([z + \eta, y]) - \hat x \rVert^2,

with :math:`z' \sim \mathcal N(0, I)`, :math:`\eta` small Gaussian noise, :math:`\operatorname{sg}` a
stop-gradient, and a ramp :math:`r(i) = \min(1, 2 \cdot r_0^{1 - i/I})` on the backward MMD. The MMD
uses the inverse multiquadric kernel :math:`k(a, b) = \sum_h h^2 / (h^2 + \lVert a - b\rVert^2)`.

Reference: L. Ardizzone, J. Kruse, S. Wirkert, et al., "Analyzing inverse problems with invertible
neural networks", ICLR 2019 (arXiv:1808.04730).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..distributions.relaxed_conditional_flow import RelaxedConditionalFlow


def inverse_multiquadric_mmd(a: torch.Tensor, b: torch.Tensor, widths: Sequence[float] = (0.05, 0.2, 0.9)) -> torch.Tensor:
    r"""Biased (V-statistic) squared MMD between samples ``a`` (n, d) and ``b`` (m, d) with the kernel
    :math:`k(u, v) = \sum_h h^2 / (h^2 + \lVert u - v\rVert^2)`."""
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"b: expected shape (m, {a.shape[-1]}) to match a, got {tuple(b.shape)}")

    def k(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(u, v).pow(2)
        return sum(h * h / (h * h + d2) for h in widths)

    return k(a, a).mean() + k(b, b).mean() - 2 * k(a, b).mean()


@dataclass
class INNLoss:
    """The four INN losses on a :class:`RelaxedConditionalFlow`'s network.

    Args:
        model: the network and dimensions (its ``eps`` and ``pad_noise`` are ignored here).
        w_y: forward regression weight.
        w_z: forward (latent) MMD weight.
        w_x: backward MMD weight (ramped).
        w_rec: backward reconstruction weight.
        y_noise: noise added to ``y`` and to ``z`` for the reconstruction loss.
        pad_noise: noise on the zero padding.
        ramp_iters: iterations over which the backward MMD weight ramps up to ``w_x``.
        ramp_start: the ramp's start factor :math:`r_0`.
        mmd_widths: kernel widths.

    Calling it with ``(x, y, iteration)`` returns the total loss and a dict of the four terms.
    """

    model: RelaxedConditionalFlow
    w_y: float = 3.0
    w_z: float = 300.0
    w_x: float = 400.0
    w_rec: float = 3.0
    y_noise: float = 0.1
    pad_noise: float = 0.05
    ramp_iters: int = 400
    ramp_start: float = 0.002
    mmd_widths: Sequence[float] = (0.05, 0.2, 0.9)

    def ramp(self, iteration: int) -> float:
        return min(1.0, 2.0 * self.ramp_start ** (1.0 - iteration / max(self.ramp_iters, 1)))

    def __call__(self, x: torch.Tensor, y: torch.Tensor, iteration: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        m = self.model
        m._check("x", x, m.x_dim)
        m._check("y", y, m.y_dim)
        y_noisy = y + self.y_noise * torch.randn_like(y)
        x_hat = _pad(m, x, self.pad_noise)
        latent, _ = m.encode(x_hat)
        z, y_pred = latent[..., : m.z_dim], latent[..., m.z_dim :]
        z_prior = torch.randn_like(z)
        terms = {
            "fit_y": ((y_pred - y_noisy) ** 2).sum(-1).mean(),
            "mmd_z": inverse_multiquadric_mmd(torch.cat([z, y_pred.detach()], -1), torch.cat([z_prior, y_noisy], -1), self.mmd_widths),
        }
        total = self.w_y * terms["fit_y"] + self.w_z * terms["mmd_z"]
        if self.w_x or self.w_rec:
            x_rand = m.decode(torch.cat([z_prior, y_noisy], -1))
            x_rec = m.decode(torch.cat([z.detach() + self.y_noise * torch.randn_like(z), y_noisy], -1))
            terms["mmd_x"] = inverse_multiquadric_mmd(x_rand[..., : m.x_dim], x, self.mmd_widths)
            terms["rec_x"] = ((x_rec - x_hat) ** 2).sum(-1).mean()
            total = total + self.ramp(iteration) * self.w_x * terms["mmd_x"] + self.w_rec * terms["rec_x"]
        return total, terms


def _pad(model: RelaxedConditionalFlow, x: torch.Tensor, noise: float) -> torch.Tensor:
    if model.pad_dim == 0:
        return x
    return torch.cat([x, noise * torch.randn(x.shape[:-1] + (model.pad_dim,), dtype=x.dtype, device=x.device)], -1)
