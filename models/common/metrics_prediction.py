r"""Scores of structured and probabilistic predictions: CRPS and CRPS-sum of sampled forecasts, MSE of
point forecasts, the mean per-joint position error of predicted poses, and the mean intersection over
union of predicted masks (the read-outs of MotionFlow's Sec. 5.3-5.5).

Every function takes tensors, returns a tensor, keeps the input's dtype and device, and has no side
effects.

**CRPS from samples.** The continuous ranked probability score of a forecast distribution :math:`F`
at the outcome :math:`y` is :math:`\mathrm{CRPS}(F, y) = \int (F(x) - \mathbb 1[x \ge y])^2 dx`, which
equals the energy form

.. math::

    \mathrm{CRPS}(F, y) = \mathbb E|X - y| - \tfrac12 \mathbb E|X - X'|, \qquad X, X' \sim F \text{ independent}.

With :math:`n` samples :math:`x_1 \le \dots \le x_n` (sorted), the first term is their mean absolute
error and the pair term is the V-statistic
:math:`\frac{1}{n^2}\sum_{i,j}|x_i - x_j| = \frac{2}{n^2}\sum_i (2i - n - 1)\,x_i`, an :math:`O(n \log n)`
sum; ``fair=True`` divides by :math:`n(n-1)` instead of :math:`n^2` (the unbiased U-statistic, so the
estimate's expectation is the CRPS of :math:`F` itself). For a point forecast (:math:`n = 1`) the CRPS is
the absolute error. For a Gaussian, :func:`crps_gaussian` is the closed form
:math:`\sigma\,[z(2\Phi(z) - 1) + 2\varphi(z) - 1/\sqrt\pi]`, :math:`z = (y - \mu)/\sigma`.

**CRPS-sum** (Salinas et al., 2019; the score of MotionFlow's Sec. 5.4 baselines) scores the
forecast of the sum over the series, :math:`\mathrm{CRPS}(F_\Sigma, \sum_d y_d)` with :math:`F_\Sigma`
the distribution of :math:`\sum_d X_d`, averaged over time steps and windows; ``normalize=True`` divides
by the mean of :math:`|\sum_d y_d|` as GluonTS does (only meaningful where that sum is far from 0).

Example::

    >>> samples = torch.tensor([0.0, 1.0, 2.0, 3.0])
    >>> crps(samples, torch.tensor(1.0))     # E|X - 1| = 1, E|X - X'| = 1.25
    tensor(0.3750)
    >>> mean_iou(torch.tensor([[1, 1], [0, 0]]), torch.tensor([[1, 0], [0, 0]]))  # (1/2 + 2/3) / 2
    tensor(0.5833)

References: T. Gneiting, A. Raftery, "Strictly proper scoring rules, prediction, and estimation", JASA
2007 (CRPS, energy form); D. Salinas et al., "High-dimensional multivariate forecasting with
low-rank Gaussian copula processes", NeurIPS 2019 (CRPS-sum); M. Zand, A. Etemad, M. Greenspan,
"Flow-based spatio-temporal structured prediction of motion dynamics" (MotionFlow), IEEE TPAMI 2023,
Sec. 5.3-5.5.
"""

from __future__ import annotations

import math

import torch

__all__ = ["crps", "crps_gaussian", "crps_sum", "mean_iou", "mpjpe", "mse"]


def _check_samples(samples: torch.Tensor, target: torch.Tensor, sample_dim: int) -> int:
    if not isinstance(samples, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(f"samples, target: expected tensors, got {type(samples).__name__} and {type(target).__name__}")
    if samples.dim() < 1:
        raise ValueError("samples: expected a tensor with a sample dimension, got a scalar")
    dim = sample_dim % samples.dim()
    if samples.shape[dim] < 1:
        raise ValueError("samples: expected at least one sample, got none")
    rest = samples.shape[:dim] + samples.shape[dim + 1 :]
    try:
        fits = torch.broadcast_shapes(rest, target.shape) == rest
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"target: expected a shape that broadcasts to {tuple(rest)} (samples {tuple(samples.shape)} without dim {dim}), "
            f"got {tuple(target.shape)}"
        )
    return dim


def crps(samples: torch.Tensor, target: torch.Tensor, sample_dim: int = 0, fair: bool = False) -> torch.Tensor:
    r"""CRPS of the empirical distribution of ``samples`` at ``target``, elementwise (see the module docstring).

    Args:
        samples: draws of the forecast, the draws along ``sample_dim``.
        target: the outcomes; broadcasts to ``samples`` without ``sample_dim``.
        sample_dim: the dimension of ``samples`` that holds the draws.
        fair: divide the pair term by :math:`n(n-1)` (unbiased for the CRPS of the sampled distribution)
            instead of :math:`n^2` (the CRPS of the empirical distribution). Needs ``n >= 2``.

    Returns:
        the score of each forecast: the shape of ``samples`` without ``sample_dim``.
    """
    dim = _check_samples(samples, target, sample_dim)
    x = samples.movedim(dim, 0)
    n = x.shape[0]
    if fair and n < 2:
        raise ValueError(f"samples: fair=True needs at least 2 samples, got {n}")
    error = (x - target).abs().mean(0)
    ordered = x.sort(0).values
    weights = 2 * torch.arange(1, n + 1, dtype=x.dtype, device=x.device) - n - 1
    pair = 2 * torch.tensordot(weights, ordered, dims=([0], [0])) / (n * (n - 1) if fair else n * n)
    return error - 0.5 * pair


def crps_gaussian(mean: torch.Tensor, std: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Closed-form CRPS of :math:`\mathcal N(\mu, \sigma^2)` at ``target``:
    :math:`\sigma\,[z(2\Phi(z) - 1) + 2\varphi(z) - 1/\sqrt\pi]`, :math:`z = (y - \mu)/\sigma`.

    Args:
        mean, std: the forecast's parameters (``std > 0``); broadcast with ``target``.
        target: the outcomes.

    Returns:
        the elementwise score, of the broadcast shape.
    """
    if bool((torch.as_tensor(std) <= 0).any()):
        raise ValueError("std: expected positive standard deviations, got a value <= 0")
    z = (target - mean) / std
    normal = torch.distributions.Normal(torch.zeros((), dtype=z.dtype, device=z.device), 1.0)
    return std * (z * (2 * normal.cdf(z) - 1) + 2 * normal.log_prob(z).exp() - 1 / math.sqrt(math.pi))


def crps_sum(samples: torch.Tensor, target: torch.Tensor, normalize: bool = False, fair: bool = False) -> torch.Tensor:
    r"""CRPS of the sum over the series, averaged over everything else.

    Args:
        samples: forecast draws of shape ``(S, ..., D)``: ``S`` draws first, the ``D`` series last
            (e.g. ``(S, windows, horizon, D)``).
        target: outcomes of shape ``(..., D)``.
        normalize: divide by the mean of :math:`|\sum_d y_d|` (GluonTS' CRPS-sum).
        fair: as in :func:`crps`.

    Returns:
        a 0-dimensional tensor.
    """
    if samples.dim() < 2 or target.dim() < 1 or samples.shape[-1] != target.shape[-1]:
        raise ValueError(
            f"samples, target: expected shapes (S, ..., D) and (..., D) with the same D, "
            f"got {tuple(samples.shape)} and {tuple(target.shape)}"
        )
    total = target.sum(-1)
    score = crps(samples.sum(-1), total, 0, fair).mean()
    return score / total.abs().mean() if normalize else score


def mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Mean squared error :math:`\frac1N\sum (\hat y - y)^2` over every element (shapes must match)."""
    if prediction.shape != target.shape:
        raise ValueError(f"target: expected shape {tuple(prediction.shape)} (that of the prediction), got {tuple(target.shape)}")
    return (prediction - target).pow(2).mean()


def mpjpe(prediction: torch.Tensor, target: torch.Tensor, reduce_dims: tuple[int, ...] | None = None) -> torch.Tensor:
    r"""Mean per-joint position error :math:`\frac1J\sum_j \lVert \hat p_j - p_j\rVert_2`, averaged further over ``reduce_dims``.

    Args:
        prediction, target: joint positions of the same shape ``(..., J, 3)``.
        reduce_dims: the leading dims to average over as well (e.g. ``(0,)`` for the sequences of a
            ``(N, T, J, 3)`` batch, leaving one error per frame); ``None`` averages over all of them.

    Returns:
        the error in the units of the positions: the shape of the leading dims less ``reduce_dims``.
    """
    if prediction.shape != target.shape or prediction.dim() < 2 or prediction.shape[-1] != 3:
        raise ValueError(f"prediction, target: expected equal shapes (..., J, 3), got {tuple(prediction.shape)} and {tuple(target.shape)}")
    per_frame = (prediction - target).norm(dim=-1).mean(-1)
    if reduce_dims is None:
        return per_frame.mean()
    return per_frame.mean(reduce_dims) if reduce_dims else per_frame


def mean_iou(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Mean over the two classes (foreground 1, background 0) of the intersection over union
    :math:`|P_c \cap T_c| / |P_c \cup T_c|`, pooled over every pixel of the batch.

    Args:
        prediction, target: binary masks (bool, integer or 0/1 floats) of the same shape.

    Returns:
        a 0-dimensional tensor (floating, the default dtype unless ``prediction`` is floating). A class
        absent from both masks counts as IoU 1.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"target: expected shape {tuple(prediction.shape)} (that of the prediction), got {tuple(target.shape)}")
    dtype = prediction.dtype if prediction.is_floating_point() else torch.get_default_dtype()
    p, t = prediction.bool(), target.bool()
    scores = []
    for pc, tc in ((p, t), (~p, ~t)):
        inter = (pc & tc).sum().to(dtype)
        union = (pc | tc).sum().to(dtype)
        scores.append(torch.where(union > 0, inter / union.clamp(min=1), torch.ones((), dtype=dtype, device=p.device)))
    return (scores[0] + scores[1]) / 2
