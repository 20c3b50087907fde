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

__all__ = ["accuracy", "category_shares", "relative_frobenius_error", "sample_covariance", "sample_mean_error"]


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
