"""Fully connected conditioner networks: ``net(x, context=None)`` on vectors of any batch shape.

A context of shape ``batch' + (context_features,)`` is broadcast against the input's batch shape
and concatenated to the input. The last layer is zero-initialised (``zero_init=True``), so a flow
whose parameters come from these networks starts as the identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from .. import fused
from ..shapes import broadcast_batch
from ..validation import check_size, check_sizes


def join_context(x: torch.Tensor, context: torch.Tensor | None, context_features: int) -> torch.Tensor:
    """``[x, context]`` along the last dim, the context broadcast against ``x``'s batch dims; checks
    that a context is given exactly when ``context_features > 0``."""
    if context_features == 0:
        if context is not None:
            raise ValueError("context: this network takes no context (context_features=0), got a tensor")
        return x
    if context is None:
        raise ValueError(f"context: expected a tensor of shape (..., {context_features}), got None")
    if context.shape[-1] != context_features:
        raise ValueError(f"context: expected shape (..., {context_features}), got {tuple(context.shape)}")
    x, context = broadcast_batch(x, 1, context, 1)
    return torch.cat([x, context], dim=-1)


def _zero_(layer: nn.Linear) -> nn.Linear:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class MLP(nn.Module):
    r"""Multi-layer perceptron :math:`[x, c] \mapsto` out, ReLU by default.

    Args:
        in_features: size of ``x``'s last dim.
        out_features: size of the output's last dim.
        hidden_features: widths of the hidden layers.
        context_features: size of the context's last dim (0: no context).
        activation: activation module class.
        zero_init: zero the last layer.

    Example::

        >>> net = MLP(3, 4, (16, 16), context_features=2)
        >>> net(torch.randn(5, 3), torch.randn(5, 2)).shape
        torch.Size([5, 4])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden_features: Sequence[int] = (256, 256),
        context_features: int = 0,
        activation: type[nn.Module] = nn.ReLU,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        check_size("in_features", in_features)
        check_size("out_features", out_features)
        hidden_features = check_sizes("hidden_features", hidden_features)
        check_size("context_features", context_features, 0)
        self.in_features, self.out_features, self.context_features = in_features, out_features, context_features
        widths = [in_features + context_features, *hidden_features]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(a, b), activation()]
        last = nn.Linear(widths[-1], out_features)
        layers.append(_zero_(last) if zero_init else last)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return fused.relu_mlp(self.net, join_context(x, context, self.context_features))

    def relu_stack(self, x: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]] | None:
        """``(the network's input for x and context, [W0, b0, W1, b1, ...])`` when the network is a
        plain ReLU stack without hooks, so that a caller may fuse it with what follows
        (:func:`pyroflows.fused.relu_mlp_soft_clamped_affine`); None otherwise."""
        if self._forward_hooks or self._forward_pre_hooks:
            return None
        params = fused.relu_mlp_parameters(self.net)
        return None if params is None else (join_context(x, context, self.context_features), params)


def context_mlp(context_shape: Sequence[int], out_features: int, hidden_features: Sequence[int] = (64,)) -> nn.Module:
    """A zero-initialised :class:`MLP` from a context of event shape ``context_shape`` to
    ``out_features``: for a vector ``(K,)`` the MLP itself, for a map ``(K, *spatial)`` the MLP on the
    flattened map (MotionFlow's fully connected heads). Accepts any batch shape.

    Example::

        >>> context_mlp((3, 4, 2), 5)(torch.randn(7, 3, 4, 2)).shape
        torch.Size([7, 5])
    """
    size = 1
    for s in context_shape:
        size *= int(s)
    mlp = MLP(size, out_features, tuple(hidden_features))
    return mlp if len(context_shape) == 1 else nn.Sequential(nn.Flatten(-len(context_shape)), mlp)


class ResidualMLP(nn.Module):
    r"""Residual MLP: a linear lift, ``num_blocks`` pre-activation blocks
    :math:`h \leftarrow h + W_2\,\sigma(W_1\,\sigma(h))`, a zero-initialised linear read-out.

    Takes the same arguments as :class:`MLP` with one width ``hidden_features`` and ``num_blocks``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden_features: int = 128,
        num_blocks: int = 2,
        context_features: int = 0,
        activation: type[nn.Module] = nn.ReLU,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        check_size("in_features", in_features)
        check_size("out_features", out_features)
        check_size("hidden_features", hidden_features)
        check_size("num_blocks", num_blocks, 0)
        check_size("context_features", context_features, 0)
        self.in_features, self.out_features, self.context_features = in_features, out_features, context_features
        self.lift = nn.Linear(in_features + context_features, hidden_features)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                activation(), nn.Linear(hidden_features, hidden_features), activation(), nn.Linear(hidden_features, hidden_features)
            )
            for _ in range(num_blocks)
        )
        self.out = nn.Linear(hidden_features, out_features)
        self.act = activation()
        if zero_init:
            _zero_(self.out)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = self.lift(join_context(x, context, self.context_features))
        for block in self.blocks:
            h = h + block(h)
        return self.out(self.act(h))
