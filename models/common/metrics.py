r"""Evaluation metrics as pure functions on tensors.

Every function takes tensors, returns a tensor (0-dimensional unless a batch is documented), keeps
the input's dtype and device, and has no side effects. Formulas are in each docstring.

Example::

    >>> accuracy(torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), torch.tensor([0, 1, 1]))
    tensor(0.6667)
    >>> relative_frobenius_error(torch.eye(2) * 2, torch.eye(2))
    tensor(1.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "accuracy",
    "category_shares",
    "correlation_coefficient",
    "mean_absolute_error",
    "psnr",
    "relative_frobenius_error",
    "sample_covariance",
    "sample_mean_error",
    "ssim",
]


def _as_labels(t: torch.Tensor, name: str) -> torch.Tensor:
    if t.is_floating_point():
        if t.dim() < 1:
            raise ValueError(f"{name}: expected class scores of shape (..., K) or integer labels, got a scalar")
        return t.argmax(-1)
    return t


def accuracy(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Classification accuracy :math:`\frac{1}{N}\sum_i \mathbb 1[\hat l_i = l_i]`.

    Args:
        prediction: class scores or (approximately) one-hot vectors of shape ``(N, K)``, reduced by
            :math:`\hat l_i = \arg\max_k p_{ik}`; or integer labels of shape ``(N,)``.
        target: integer labels ``(N,)`` or one-hot vectors ``(N, K)`` (floating point, reduced by argmax).

    Returns:
        the fraction of matches, a 0-dimensional floating tensor.
    """
    pred, true = _as_labels(prediction, "prediction"), _as_labels(target, "target")
    if pred.shape != true.shape:
        raise ValueError(f"target: expected {tuple(pred.shape)} labels to match the prediction, got {tuple(true.shape)}")
    if pred.numel() == 0:
        raise ValueError("prediction: expected at least one example, got none")
    dtype = prediction.dtype if prediction.is_floating_point() else torch.get_default_dtype()
    return (pred == true).to(dtype).mean()


def relative_frobenius_error(estimate: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    r"""Relative error of a matrix in the Frobenius norm, :math:`\lVert \hat A - A\rVert_F / \lVert A\rVert_F`.

    Args:
        estimate, truth: matrices of shape ``batch + (m, n)`` (batch shapes broadcast).

    Returns:
        the error for each matrix, shape ``batch``.
    """
    if estimate.dim() < 2 or truth.dim() < 2:
        raise ValueError(f"estimate: expected matrices of shape (..., m, n), got {tuple(estimate.shape)} and {tuple(truth.shape)}")
    return torch.linalg.matrix_norm(estimate - truth) / torch.linalg.matrix_norm(truth)


def sample_covariance(samples: torch.Tensor) -> torch.Tensor:
    r"""Unbiased sample covariance :math:`\hat C = \frac{1}{N-1}\sum_i (x_i - \bar x)(x_i - \bar x)^\top`.

    Args:
        samples: shape ``(N, d)`` with ``N >= 2`` (or ``(N,) + batch + (d,)``: one matrix per batch entry).

    Returns:
        shape ``batch + (d, d)``.
    """
    if samples.dim() < 2 or samples.shape[0] < 2:
        raise ValueError(f"samples: expected shape (N, ..., d) with N >= 2, got {tuple(samples.shape)}")
    centred = samples - samples.mean(0)
    return torch.einsum("n...i,n...j->...ij", centred, centred) / (samples.shape[0] - 1)


def sample_mean_error(samples: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    r"""Euclidean distance of the sample mean from a reference mean, :math:`\lVert \bar x - m\rVert_2`.

    Args:
        samples: shape ``(N,) + batch + (d,)``.
        mean: shape broadcastable to ``batch + (d,)``.

    Returns:
        shape ``batch``.
    """
    if samples.dim() < 2:
        raise ValueError(f"samples: expected shape (N, ..., d), got {tuple(samples.shape)}")
    return torch.linalg.vector_norm(samples.mean(0) - mean, dim=-1)


def category_shares(assignment: torch.Tensor, categories: Sequence[int]) -> torch.Tensor:
    r"""Share of entries equal to each category, :math:`s_k = \frac{1}{N}\sum_i \mathbb 1[a_i = k]`.

    The share of everything else is ``1 - category_shares(a, categories).sum()`` (when the
    categories are distinct).

    Args:
        assignment: integer tensor of shape ``(N,)`` (e.g. the mode of each sample, -1 for none).
        categories: the values to count.

    Returns:
        floating tensor of shape ``(len(categories),)``.
    """
    if assignment.is_floating_point() or assignment.dim() != 1 or assignment.numel() == 0:
        raise ValueError(f"assignment: expected a non-empty 1-d integer tensor, got {assignment.dtype} of shape {tuple(assignment.shape)}")
    cats = torch.as_tensor(list(categories), dtype=assignment.dtype, device=assignment.device)
    return (assignment.unsqueeze(-1) == cats).to(torch.get_default_dtype()).mean(0)


# ----------------------------------------------------------------------------- image similarity
#
# The image metrics compare a prediction with a reference of the same shape ``batch + event``,
# where ``event`` is the last ``event_dim`` dims (``(C, H, W)``: 3, ``(C, D, H, W)``: 4); they
# return one value per batch entry (shape ``batch``), as the DUAL-GLOW paper reports them per
# subject before averaging.


def _pair(prediction: torch.Tensor, target: torch.Tensor, event_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    if prediction.shape != target.shape:
        raise ValueError(f"target: expected the prediction's shape {tuple(prediction.shape)}, got {tuple(target.shape)}")
    if not prediction.is_floating_point() or prediction.dtype != target.dtype:
        raise TypeError(f"prediction, target: expected one floating dtype, got {prediction.dtype} and {target.dtype}")
    if not 1 <= event_dim <= prediction.dim():
        raise ValueError(f"event_dim: expected 1 .. {prediction.dim()} for a tensor of shape {tuple(prediction.shape)}, got {event_dim}")
    k = prediction.dim() - event_dim
    return prediction.reshape(prediction.shape[:k] + (-1,)), target.reshape(target.shape[:k] + (-1,))


def mean_absolute_error(prediction: torch.Tensor, target: torch.Tensor, event_dim: int = 3) -> torch.Tensor:
    r"""MAE :math:`\frac1D \sum_i |\hat x_i - x_i|` over the last ``event_dim`` dims; shape ``batch``.

    Example::

        >>> mean_absolute_error(torch.tensor([[1.0, 2.0, 4.0]]), torch.tensor([[1.0, 3.0, 2.0]]), event_dim=1)
        tensor([1.])
    """
    a, b = _pair(prediction, target, event_dim)
    return (a - b).abs().mean(-1)


def correlation_coefficient(prediction: torch.Tensor, target: torch.Tensor, event_dim: int = 3) -> torch.Tensor:
    r"""Pearson's :math:`r = \frac{\sum_i (\hat x_i - \bar{\hat x})(x_i - \bar x)}
    {\sqrt{\sum_i (\hat x_i - \bar{\hat x})^2 \sum_i (x_i - \bar x)^2}}` over the voxels of each
    image; shape ``batch`` (NaN where an image is constant).

    Example::

        >>> correlation_coefficient(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[2.0, 4.0, 7.0]]), event_dim=1)
        tensor([0.9934])
    """
    a, b = _pair(prediction, target, event_dim)
    a, b = a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True)
    return (a * b).sum(-1) / torch.sqrt(a.pow(2).sum(-1) * b.pow(2).sum(-1))


def psnr(prediction: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, event_dim: int = 3) -> torch.Tensor:
    r"""Peak signal-to-noise ratio in dB, :math:`10 \log_{10}(R^2 / \mathrm{MSE})`, with :math:`R` the
    data range (1 for images in :math:`[0, 1]`); shape ``batch`` (inf for identical images).

    Example::

        >>> psnr(torch.tensor([[0.0, 0.5]]), torch.tensor([[0.1, 0.5]]), event_dim=1)   # MSE 0.005
        tensor([23.0103])
    """
    if not data_range > 0:
        raise ValueError(f"data_range: expected a positive number, got {data_range}")
    a, b = _pair(prediction, target, event_dim)
    mse = (a - b).pow(2).mean(-1)
    return 10.0 * torch.log10(data_range**2 / mse)


def gaussian_window(size: int, sigma: float, spatial_dims: int, dtype=None, device=None) -> torch.Tensor:
    r"""The normalised Gaussian window :math:`w(u) \propto \prod_k e^{-u_k^2 / 2\sigma^2}` on a
    ``size``-point grid centred at 0, shape ``(size,) * spatial_dims``, summing to 1."""
    u = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(u**2) / (2 * sigma**2))
    g = g / g.sum()
    w = g
    for _ in range(spatial_dims - 1):
        w = w.unsqueeze(-1) * g
    return w


def ssim(
    prediction: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    spatial_dims: int = 2,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    r"""Structural similarity (Wang et al. 2004) with a Gaussian window, for images and volumes.

    With local means :math:`\mu`, variances :math:`\sigma^2` and covariance :math:`\sigma_{xy}`
    taken under a normalised Gaussian window :math:`w` (``window_size`` points per axis, standard
    deviation ``sigma``) at every position where the window fits inside the image,

    .. math::

        \mathrm{SSIM}(x, y) = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}
        {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)}, \qquad
        C_1 = (k_1 R)^2,\ C_2 = (k_2 R)^2,

    averaged over positions and channels. The local variances are the window-weighted ones,
    :math:`\sigma_x^2 = \sum w x^2 - \mu_x^2`, as in the paper's reference code.

    Args:
        prediction, target: ``batch + (C, *spatial)`` with ``spatial_dims`` (2 or 3) spatial dims.
        data_range: :math:`R`, the dynamic range of the data.
        spatial_dims: 2 for images, 3 for volumes.
        window_size, sigma: the Gaussian window; every spatial size must be at least ``window_size``.
        k1, k2: the stabilising constants.

    Returns:
        one value per image, shape ``batch``.

    Example::

        >>> x = torch.rand(2, 1, 16, 16)
        >>> ssim(x, x)
        tensor([1., 1.])
        >>> ssim(torch.full((1, 1, 11, 11), 0.2), torch.full((1, 1, 11, 11), 0.4))   # luminance term only
        tensor([0.8001])
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims: expected 2 (images) or 3 (volumes), got {spatial_dims}")
    event_dim = spatial_dims + 1
    _pair(prediction, target, event_dim)
    spatial = prediction.shape[prediction.dim() - spatial_dims :]
    if any(s < window_size for s in spatial):
        raise ValueError(f"window_size: expected at most the spatial sizes {tuple(spatial)}, got {window_size}")
    if not data_range > 0:
        raise ValueError(f"data_range: expected a positive number, got {data_range}")
    batch = prediction.shape[: prediction.dim() - event_dim]
    w = gaussian_window(window_size, sigma, spatial_dims, prediction.dtype, prediction.device)
    w = w.reshape((1, 1) + w.shape)
    conv = F.conv2d if spatial_dims == 2 else F.conv3d
    x = prediction.reshape((-1, 1) + tuple(spatial))
    y = target.reshape((-1, 1) + tuple(spatial))
    # one convolution for the five local moments
    moments = conv(torch.cat([x, y, x * x, y * y, x * y], dim=1).reshape((-1, 1) + tuple(spatial)), w)
    moments = moments.reshape((x.shape[0], 5) + moments.shape[2:])
    mu_x, mu_y, xx, yy, xy = moments.unbind(1)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = (2 * mu_x * mu_y + c1) * (2 * cov + c2) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.reshape(batch + (-1,)).mean(-1)
