r"""Uniform dequantisation of discrete data and likelihoods in bits per dimension (Glow's convention).

Discrete data :math:`x \in \{0, \dots, B-1\}^D` (8-bit images: :math:`B = 256`) are made continuous by

.. math::

    y = (x + u) / B, \qquad u \sim \mathcal U[0, 1)^D,

so :math:`y \in [0, 1)^D` and the cell of :math:`x` is the cube :math:`[x/B, (x+1)/B)`. A density
:math:`p` on :math:`y` defines the discrete model :math:`P(x) = \int_{\text{cell}} p(y)\,dy`, and by
Jensen's inequality

.. math::

    \log P(x) \ge \mathbb E_u[\log p(y)] - D \log B .

The papers (RealNVP, Glow) report :math:`-(\log p(y) - D\log B) / (D \log 2)` averaged over the
test set, in **bits per dimension**: the offset :math:`D \log B` is the log-volume of a cell, and
uniform noise makes the number an upper bound on the discrete model's code length. A model that
is uniform on :math:`[0, 1)^D` scores :math:`\log_2 B` bits/dim (8 for 8-bit data), the baseline
every fitted model must beat.

``log_prob`` must be the density of :math:`y` on the unit scale. Shifting the data (Glow feeds
:math:`y - 1/2`) changes nothing; scaling it by :math:`a` (e.g. to :math:`[-1, 1]`, :math:`a = 2`)
adds :math:`D \log a` to the model's log-density, which must be added before calling
:func:`bits_per_dim`.

Example::

    >>> x = torch.tensor([[0, 255], [7, 128]])              # two 2-pixel 8-bit images
    >>> y = uniform_dequantize(x, 256)
    >>> bool(((y >= x / 256) & (y < (x + 1) / 256)).all()), torch.equal(quantize(y, 256), x)
    (True, True)
    >>> bits_per_dim(torch.zeros(2), num_dims=2)             # the uniform density on [0, 1)^2
    tensor([8., 8.])
"""

from __future__ import annotations

import math

import torch

__all__ = ["bits_per_dim", "dequantization_offset", "discrete_log_likelihood_bound", "quantize", "uniform_dequantize"]


def _check_bins(num_bins: int) -> int:
    if int(num_bins) != num_bins or num_bins < 2:
        raise ValueError(f"num_bins: expected an integer >= 2, got {num_bins}")
    return int(num_bins)


def uniform_dequantize(
    x: torch.Tensor, num_bins: int = 256, generator: torch.Generator | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    r""":math:`y = (x + u) / B` with :math:`u \sim \mathcal U[0, 1)` per entry.

    Args:
        x: integer levels ``0 .. num_bins - 1`` (an integer or floating tensor of any shape).
        num_bins: :math:`B`, the number of levels (256 for 8-bit data).
        generator: random source for ``u``.
        dtype: of the output (default: ``x``'s if floating, else torch's default dtype).
    """
    num_bins = _check_bins(num_bins)
    if dtype is None:
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
    if x.numel() and x.device.type != "meta" and bool(((x < 0) | (x > num_bins - 1) | (x != torch.round(x))).any()):
        raise ValueError(f"x: expected integer levels in [0, {num_bins - 1}], got values in [{x.min().item()}, {x.max().item()}]")
    u = torch.rand(x.shape, generator=generator, dtype=dtype, device=x.device)
    return (x.to(dtype) + u) / num_bins


def quantize(y: torch.Tensor, num_bins: int = 256) -> torch.Tensor:
    """The levels ``floor(y * B)`` (clipped to ``0 .. B - 1``) as ``int64``: the inverse of
    :func:`uniform_dequantize`."""
    num_bins = _check_bins(num_bins)
    return torch.floor(y * num_bins).clamp(0, num_bins - 1).to(torch.int64)


def dequantization_offset(num_dims: int, num_bins: int = 256) -> float:
    r""":math:`D \log B` in nats: the log-volume of the cells' inverse, subtracted from ``log p(y)``."""
    return float(num_dims) * math.log(_check_bins(num_bins))


def discrete_log_likelihood_bound(log_prob: torch.Tensor, num_dims: int, num_bins: int = 256) -> torch.Tensor:
    r""":math:`\log p(y) - D \log B`, in nats: averaged over the noise :math:`u`, a lower bound on
    :math:`\log P(x)` of the discrete data."""
    return log_prob - dequantization_offset(num_dims, num_bins)


def bits_per_dim(log_prob: torch.Tensor, num_dims: int, num_bins: int = 256) -> torch.Tensor:
    r"""Glow's bits per dimension :math:`-(\log p(y) - D\log B) / (D \log 2)`, elementwise.

    Args:
        log_prob: :math:`\log p(y)` of dequantised data on the unit scale (any shape, e.g. a batch).
        num_dims: :math:`D`, entries per example (``C * H * W`` for images).
        num_bins: :math:`B` (256 for 8-bit data).
    """
    return -discrete_log_likelihood_bound(log_prob, num_dims, num_bins) / (num_dims * math.log(2.0))
