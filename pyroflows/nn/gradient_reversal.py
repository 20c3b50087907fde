r"""Gradient reversal: the identity in the forward pass, :math:`-\alpha` times the gradient in the backward pass.

.. math::

    R_\alpha(x) = x, \qquad \frac{\partial R_\alpha}{\partial x} = -\alpha I .

A classifier :math:`d` placed behind :math:`R_\alpha` on a feature :math:`h = f(x)` is trained to
*minimise* its loss :math:`\ell(d(R_\alpha(h)), c)`, while :math:`f`, which receives the reversed
gradient, is pushed to *maximise* it: :math:`f` learns features from which :math:`c` cannot be
predicted. DUAL-GLOW uses it to push side information (age) out of the lower levels of the source
flow.

Example::

    >>> x = torch.tensor([1.0, -2.0], requires_grad=True)
    >>> y = GradientReversal(alpha=0.5)(x)
    >>> torch.equal(y, x)
    True
    >>> (3 * y).sum().backward()
    >>> x.grad
    tensor([-1.5000, -1.5000])

Reference: Y. Ganin, V. Lempitsky, "Unsupervised domain adaptation by backpropagation", ICML 2015.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import FunctionCtx


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.alpha * grad, None


def gradient_reversal(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    r""":math:`R_\alpha(x)`: ``x`` unchanged, its gradient multiplied by :math:`-\alpha` on the way back."""
    return _Reverse.apply(x, float(alpha))


class GradientReversal(nn.Module):
    r"""Module form of :func:`gradient_reversal` with a fixed :math:`\alpha \ge 0`.

    Args:
        alpha: the factor of the reversed gradient (1: an exact sign flip).
    """

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        if not alpha >= 0:
            raise ValueError(f"alpha: expected a number >= 0, got {alpha}")
        self.alpha = float(alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gradient_reversal(x, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"
