r"""MADE: a masked MLP whose outputs for feature :math:`i` depend only on the inputs :math:`x_{<i}`.

Each unit carries a degree: input :math:`i` has degree :math:`i` (1-based, in the order of the
features), hidden units degrees in :math:`[1, D - 1]` (assigned in turn; from 0 with a context,
whose degree-0 units reach the first feature's outputs), and a weight is kept when
the receiving unit's degree is at least the sending one's (strictly greater into the outputs), so
output :math:`i` sees only inputs of degree :math:`< i`. A context enters the first layer unmasked.
The outputs are ``params_per_feature`` blocks of ``in_features`` values (block ``p``, feature
``i`` at index ``p * in_features + i``), the layout the element-wise maps of
:mod:`pyroflows.transforms` read; the last layer is zero-initialised.

Reference: Germain, Gregor, Murray, Larochelle, "MADE: Masked Autoencoder for Distribution
Estimation", ICML 2015.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..validation import check_size, check_sizes
from .dense import join_context


class MaskedLinear(nn.Linear):
    """``nn.Linear`` whose weight is multiplied by a fixed 0/1 ``mask`` (a buffer of the weight's shape)."""

    def __init__(self, mask: torch.Tensor, bias: bool = True) -> None:
        super().__init__(mask.shape[1], mask.shape[0], bias)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def made_degrees(in_features: int, hidden_features: Sequence[int], context: bool = False) -> list[torch.Tensor]:
    """The degrees of the inputs (``1..D``) and of each hidden layer, assigned in turn: ``1..D-1``,
    or ``0..D-1`` with a context (units of degree 0 see the context alone, and carry it to the
    first feature's outputs); all 0 when ``D = 1``."""
    low = 0 if context or in_features == 1 else 1
    degrees = [torch.arange(1, in_features + 1)]
    for width in hidden_features:
        degrees.append(torch.arange(width) % (in_features - low) + low)
    return degrees


class MADE(nn.Module):
    r"""Masked autoregressive MLP: ``(x, context) -> raw`` where ``raw[..., p * D + i]`` depends
    on :math:`x_{<i}` and the context only.

    Args:
        in_features: :math:`D`, the size of ``x``'s last dim.
        params_per_feature: outputs per feature.
        hidden_features: widths of the hidden layers (any number, ``()`` included).
        context_features: size of the context's last dim (0: no context); the context reaches
            every hidden unit of the first layer (every output when there is no hidden layer).
        activation: activation module class.
        zero_init: zero the last layer.

    Example::

        >>> net = MADE(3, 2, (16, 16), context_features=2)
        >>> x = torch.randn(5, 3)
        >>> out = net(x, torch.randn(5, 2))
        >>> out.shape
        torch.Size([5, 6])
        >>> jac = torch.autograd.functional.jacobian(lambda v: MADE(3, 1, (8,), zero_init=False)(v), torch.randn(3))
        >>> bool((jac.triu() == 0).all())  # output i sees only inputs before i
        True
    """

    def __init__(
        self,
        in_features: int,
        params_per_feature: int = 2,
        hidden_features: Sequence[int] = (256, 256),
        context_features: int = 0,
        activation: type[nn.Module] = nn.ReLU,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        check_size("in_features", in_features)
        check_size("params_per_feature", params_per_feature)
        hidden_features = check_sizes("hidden_features", hidden_features, minimum=1) if len(hidden_features) else ()
        check_size("context_features", context_features, 0)
        self.in_features, self.params_per_feature, self.context_features = in_features, params_per_feature, context_features
        degrees = made_degrees(in_features, hidden_features, context_features > 0)
        out_degrees = degrees[0].repeat(params_per_feature)
        layers = []
        for k, receiving in enumerate(degrees[1:] + [out_degrees]):
            last = k == len(degrees) - 1
            mask = (receiving[:, None] > degrees[k][None, :]) if last else (receiving[:, None] >= degrees[k][None, :])
            mask = mask.float()
            if k == 0 and context_features:
                mask = torch.cat([mask, mask.new_ones(mask.shape[0], context_features)], dim=1)
            layers.append(MaskedLinear(mask))
        if zero_init:
            nn.init.zeros_(layers[-1].weight)
            nn.init.zeros_(layers[-1].bias)
        self.layers = nn.ModuleList(layers)
        self.act = activation()

    @property
    def out_features(self) -> int:
        return self.params_per_feature * self.in_features

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = join_context(x, context, self.context_features)
        for layer in self.layers[:-1]:
            h = self.act(layer(h))
        return self.layers[-1](h)
