"""Convolutional conditioner networks for images ``(C, H, W)`` and volumes ``(C, D, H, W)``.

``net(x, context=None)`` accepts any batch shape. A context is either a vector ``(..., K)``,
tiled over the spatial grid, or a map ``(..., K, *spatial)`` with the input's spatial size,
concatenated as channels.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..shapes import broadcast_batch, flatten_batch
from ..validation import check_size

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def join_spatial_context(
    x: torch.Tensor, context: torch.Tensor | None, context_channels: int, spatial_dims: int, context_is_map: bool
) -> tuple[torch.Tensor, torch.Size]:
    """Join ``context`` to ``x`` as extra channels; returns ``(N, C + K, *spatial)`` and the batch shape."""
    event_dim = spatial_dims + 1
    if context_channels == 0:
        if context is not None:
            raise ValueError("context: this network takes no context (context_channels=0), got a tensor")
        return flatten_batch(x, event_dim)
    if context is None:
        raise ValueError(f"context: expected a tensor with {context_channels} features, got None")
    c_event_dim = event_dim if context_is_map else 1
    expected = (context_channels,) + (tuple(x.shape[-spatial_dims:]) if context_is_map else ())
    if context.dim() < c_event_dim or tuple(context.shape[context.dim() - c_event_dim :]) != expected:
        raise ValueError(f"context: expected shape (..., {', '.join(map(str, expected))}), got {tuple(context.shape)}")
    x, context = broadcast_batch(x, event_dim, context, c_event_dim)
    x, batch = flatten_batch(x, event_dim)
    context, _ = flatten_batch(context, c_event_dim)
    if not context_is_map:
        context = context.reshape(context.shape + (1,) * spatial_dims).expand((-1, -1) + tuple(x.shape[2:]))
    return torch.cat([x, context], dim=1), batch


class PriorConv(nn.Module):
    """One zero-initialised 3x3 (3x3x3) convolution of ``[x, context]``: Glow's split-prior network,
    which returns the standard Normal's ``[log sigma, mu] = 0`` at initialisation."""

    def __init__(
        self, in_channels: int, out_channels: int, context_channels: int = 0, spatial_dims: int = 2, context_is_map: bool = False
    ) -> None:
        super().__init__()
        check_size("in_channels", in_channels)
        check_size("out_channels", out_channels)
        check_size("context_channels", context_channels, 0)
        self.spatial_dims, self.context_channels, self.context_is_map = spatial_dims, context_channels, context_is_map
        self.conv = CONV[spatial_dims](in_channels + context_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h, batch = join_spatial_context(x, context, self.context_channels, self.spatial_dims, self.context_is_map)
        out = self.conv(h)
        return out.reshape(batch + out.shape[1:])


class ConvNet(nn.Module):
    r"""Glow's coupling network: conv 3 -> ReLU -> conv 1 -> ReLU -> conv 3 (zero-initialised).

    Args:
        in_channels: channels of ``x``.
        out_channels: channels of the output.
        hidden_channels: channels of the two hidden layers.
        context_channels: features (vector context) or channels (map context) of the context.
        spatial_dims: 2 for images, 3 for volumes (1 for signals).
        context_is_map: the context is a spatial map rather than a vector.
        kernel_size: size of the outer kernels.

    Example::

        >>> net = ConvNet(2, 4, 8, context_channels=3)
        >>> net(torch.randn(5, 2, 6, 6), torch.randn(5, 3)).shape
        torch.Size([5, 4, 6, 6])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int = 64,
        context_channels: int = 0,
        spatial_dims: int = 2,
        context_is_map: bool = False,
        kernel_size: int = 3,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        check_size("in_channels", in_channels)
        check_size("out_channels", out_channels)
        check_size("hidden_channels", hidden_channels)
        check_size("context_channels", context_channels, 0)
        check_size("kernel_size", kernel_size)
        if spatial_dims not in CONV:
            raise ValueError(f"spatial_dims: expected 1, 2 or 3, got {spatial_dims!r}")
        conv = CONV[spatial_dims]
        pad = kernel_size // 2
        self.spatial_dims, self.context_channels, self.context_is_map = spatial_dims, context_channels, context_is_map
        self.out_channels = out_channels
        last = conv(hidden_channels, out_channels, kernel_size, padding=pad)
        if zero_init:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        self.net = nn.Sequential(
            conv(in_channels + context_channels, hidden_channels, kernel_size, padding=pad),
            nn.ReLU(),
            conv(hidden_channels, hidden_channels, 1),
            nn.ReLU(),
            last,
        )

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h, batch = join_spatial_context(x, context, self.context_channels, self.spatial_dims, self.context_is_map)
        out = self.net(h)
        return out.reshape(batch + out.shape[1:])


class ContextCouplingNet(nn.Module):
    r"""MotionFlow's coupling network, eq. (7): a context map :math:`u` goes through
    :math:`\mathrm{CNN}_1` (conv 3 - ReLU - conv 3), joins the passive half :math:`\alpha_1` as
    channels, :math:`h = [\alpha_1, \mathrm{CNN}_1(u)]`, and :math:`\mathrm{CNN}_2` (a :class:`ConvNet`
    with a zero-initialised last layer) maps :math:`h` to the coupling parameters. Its output is
    returned in the "cross" layout: :math:`\mathrm{cross}()` takes the even channels as the first
    parameter (the scale) and the odd ones as the second (the bias), and they are returned one after
    the other, ``[even, odd]``, which is the ``[s, t]`` layout that
    :class:`~pyroflows.transforms.ConditionalAffineCoupling` splits in halves.

    Args:
        in_channels: channels of the passive half :math:`\alpha_1`.
        out_channels: channels of the output (even: twice the active half).
        context_channels: channels ``K`` of the context map ``(K, H, W)`` (the input's spatial size).
        hidden_channels: width of :math:`\mathrm{CNN}_2`.
        context_features: channels of :math:`\mathrm{CNN}_1(u)` (and width of its hidden layer).

    Example::

        >>> net = ContextCouplingNet(2, 4, context_channels=6, hidden_channels=8)
        >>> net(torch.randn(5, 2, 3, 1), torch.randn(5, 6, 3, 1)).shape
        torch.Size([5, 4, 3, 1])
    """

    def __init__(
        self, in_channels: int, out_channels: int, context_channels: int, hidden_channels: int = 64, context_features: int = 8
    ) -> None:
        super().__init__()
        if out_channels % 2:
            raise ValueError(f"out_channels: expected an even number (scale and bias), got {out_channels}")
        self.context_channels = context_channels
        self.cnn1 = nn.Sequential(
            nn.Conv2d(context_channels, context_features, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(context_features, context_features, 3, padding=1),
        )
        self.cnn2 = ConvNet(in_channels + context_features, out_channels, hidden_channels)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        h, batch = join_spatial_context(x, context, self.context_channels, 2, True)
        a, u = h.split([h.shape[1] - self.context_channels, self.context_channels], dim=1)
        out = self.cnn2(torch.cat([a, self.cnn1(u)], dim=1))
        out = torch.cat([out[:, 0::2], out[:, 1::2]], dim=1)
        return out.reshape(batch + out.shape[1:])
