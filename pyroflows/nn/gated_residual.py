r"""A causal stack of gated 3-D residual blocks over sequences of feature maps (MotionFlow's
dynamic-latent network, eqs. (10)-(11); the residual network of VideoFlow's latent prior).

Inputs are sequences ``batch + (T, C, H, W)``. A 1x1x1 convolution embeds every frame
(``conv1`` of eq. (10)); each block then computes

.. math::

    a = \mathrm{conv}_{2\times3\times3}(h), \qquad
    g = \tanh(W_f a) \odot \sigma(W_g a), \qquad
    h \leftarrow h + \mathrm{conv}_{2\times3\times3}(g),

with :math:`W_f, W_g` 1x1x1 convolutions (the gated activation unit) and the last convolution
zero-initialised, and a final 1x1x1 convolution (``conv2`` of eq. (11), zero-initialised) reads
the output channels. The temporal kernel of size 2 sees frames :math:`t - d` and :math:`t` (the
concatenation :math:`[h_{t-1}, h_t]` of eq. (10) at dilation :math:`d = 1`); time is padded on the
left only, so the output at time :math:`t` depends on frames :math:`\le t`, never later ones. The
blocks take the dilations ``(1, 2, 4)`` in time (the paper's rates); space is undilated.

Reference: M. Zand, A. Etemad, M. Greenspan, MotionFlow, Sec. 4.4; M. Kumar et al., "VideoFlow: a
conditional flow-based model for stochastic video generation", ICLR 2020; A. van den Oord et al.,
"Conditional image generation with PixelCNN decoders", NeurIPS 2016 (gated activation unit).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..shapes import flatten_batch


class _CausalConv3d(nn.Conv3d):
    """A ``(2, 3, 3)`` convolution with dilation ``d`` in time, padded ``d`` frames on the left."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int) -> None:
        super().__init__(in_channels, out_channels, (2, 3, 3), padding=(0, 1, 1), dilation=(dilation, 1, 1))
        self.time_pad = dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (0, 0, 0, 0, self.time_pad, 0)))


class GatedResidualBlock(nn.Module):
    """One block: causal (2, 3, 3) conv, gated activation unit, zero-initialised causal (2, 3, 3)
    conv, added to the input. Works on ``(N, C, T, H, W)``."""

    def __init__(self, channels: int, dilation: int = 1, init_std: float = 0.05) -> None:
        super().__init__()
        self.first = _CausalConv3d(channels, channels, dilation)
        self.gate = nn.Conv3d(channels, 2 * channels, 1)
        self.last = _CausalConv3d(channels, channels, dilation)
        for conv in (self.first, self.gate):  # Gaussian initialisation of the first two layers
            nn.init.normal_(conv.weight, std=init_std)
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.last.weight)
        nn.init.zeros_(self.last.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        f, g = self.gate(self.first(h)).chunk(2, dim=1)
        return h + self.last(torch.tanh(f) * torch.sigmoid(g))


class CausalGatedResNet(nn.Module):
    r"""Causal residual network over frame sequences ``batch + (T, C, H, W)`` returning
    ``batch + (T, out_channels, H, W)``; the output at ``t`` depends on frames ``<= t`` only.

    Args:
        in_channels: channels ``C`` of the frames.
        out_channels: channels of the output (MotionFlow: ``2 C`` for :math:`[\Delta z, \log\sigma]`).
        hidden_channels: width of the blocks.
        dilations: one block per temporal dilation rate.

    Example::

        >>> net = CausalGatedResNet(3, 6, hidden_channels=8)
        >>> net(torch.randn(5, 7, 3, 4, 2)).shape
        torch.Size([5, 7, 6, 4, 2])
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int = 64, dilations: Sequence[int] = (1, 2, 4)) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.embed = nn.Conv3d(in_channels, hidden_channels, 1)
        self.blocks = nn.ModuleList(GatedResidualBlock(hidden_channels, int(d)) for d in dilations)
        self.head = nn.Conv3d(hidden_channels, out_channels, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        flat, batch = flatten_batch(seq, 4)
        h = self.embed(flat.transpose(1, 2))  # (N, C, T, H, W)
        for block in self.blocks:
            h = block(h)
        out = self.head(h).transpose(1, 2)
        return out.reshape(batch + out.shape[1:])
