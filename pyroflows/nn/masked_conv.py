r"""Locally masked convolutions with arbitrary orderings, and MotionFlow's spatio-temporal encoder.

**Orderings.** An ordering of an ``(H, W)`` grid is a tensor of distinct ranks, one per position
(rank 0 comes first). MotionFlow lays an observed sequence out as a pseudo-image whose rows are
time steps and whose columns are positions in a frame (entities, joints or pixels), and uses two
orderings of it (Fig. 1 of the paper):

* ``"raster"`` (also ``"spatial"``): row by row, left to right in a row, i.e. every position of
  frame 1, then every position of frame 2, ...: rank :math:`= iW + j`;
* ``"temporal"``: column by column, top to bottom in a column, i.e. the whole history of position
  1, then of position 2, ...: rank :math:`= jH + i`;

and their reversals (``"raster_reversed"``, ``"temporal_reversed"``). Any other ordering is given
as the rank tensor itself.

**Locally masked convolution** (LMConv). At output position :math:`p` the kernel tap that reads
position :math:`q = p + d\,o` (offset :math:`o`, dilation :math:`d`) is kept iff
:math:`\mathrm{rank}(q) < \mathrm{rank}(p)` (mask type ``"A"``, a first layer) or
:math:`\mathrm{rank}(q) \le \mathrm{rank}(p)` (type ``"B"``, later layers). The mask differs at
every position, so it is applied to the unfolded input patches (``F.unfold``) rather than to the
weights: :math:`y_p = W \,(m_p \odot \mathrm{patch}_p) + b`. A stack of one type-A layer followed
by type-B layers is causal: the output at :math:`p` depends only on inputs strictly before
:math:`p` in the ordering.

**Positional normalisation** (PONO) normalises the channels at every position:
:math:`\hat c = (c - \mu_p) / \sqrt{\sigma_p^2 + \epsilon}`, with the mean and variance taken over
the channels at position :math:`p`. It lets positions whose masks keep different numbers of taps
share one scale.

**The encoder** (eq. (5)). Two autoregressive networks :math:`\mathrm{ARN}_1, \mathrm{ARN}_2` with
different orderings each run three LMConvs (type A; type B; type B dilated) and return as many
channels as the input :math:`x`; with :math:`c_1 = \mathrm{ARN}_1(x)`, :math:`c_2 = \mathrm{ARN}_2(x)`
(the two halves of the concatenated outputs),

.. math::

    c_1 \leftarrow \mathrm{PONO}(c_1), \qquad c_3 = c_1 \odot \sigma(c_2), \qquad u = x + c_3 .

(The paper prints the PONO line as :math:`c_1 - \mathrm{mean}(c_1)/\mathrm{std}(c_1)`; we read it as
positional normalisation, which the text around it describes.)

Reference: M. Zand, A. Etemad, M. Greenspan, "Flow-based Spatio-Temporal Structured Prediction of
Dynamics" (MotionFlow), Sec. 3.2, 4.3; A. Jain, P. Abbeel, D. Pathak, "Locally Masked Convolution
for Autoregressive Models", UAI 2020; B. Li et al., "Positional Normalization", NeurIPS 2019.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..shapes import flatten_batch

ORDERINGS = ("raster", "spatial", "temporal", "raster_reversed", "temporal_reversed")


def ordering_ranks(order: str | torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Rank of every position of an ``(height, width)`` grid under ``order`` (a name of
    :data:`ORDERINGS` or a tensor of distinct ranks), as a long tensor ``(height, width)``.

    Example::

        >>> ordering_ranks("temporal", 2, 3)
        tensor([[0, 2, 4],
                [1, 3, 5]])
    """
    if isinstance(order, torch.Tensor):
        ranks = order.to(torch.long)
        if tuple(ranks.shape) != (height, width):
            raise ValueError(f"order: expected a rank tensor of shape ({height}, {width}), got {tuple(ranks.shape)}")
        if torch.unique(ranks).numel() != ranks.numel():
            raise ValueError("order: expected distinct ranks, got repeated values")
        return ranks
    if order not in ORDERINGS:
        raise ValueError(f"order: expected one of {ORDERINGS} or a rank tensor, got {order!r}")
    i = torch.arange(height).unsqueeze(1)
    j = torch.arange(width).unsqueeze(0)
    ranks = j * height + i if order.startswith("temporal") else i * width + j
    return ranks.numel() - 1 - ranks if order.endswith("reversed") else ranks


def local_masks(ranks: torch.Tensor, kernel_size: int = 3, dilation: int = 1, mask_type: str = "B") -> torch.Tensor:
    r"""Per-position kernel masks ``(kernel_size ** 2, H * W)`` (float): entry ``[o, p]`` is 1 iff the
    tap ``o`` of the kernel centred on ``p`` reads an in-grid position of lower rank (``"A"``) or of
    lower-or-equal rank (``"B"``). The layout matches ``F.unfold`` (taps row-major, positions
    row-major)."""
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type: expected 'A' (first layer) or 'B' (later layers), got {mask_type!r}")
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size: expected an odd size, got {kernel_size}")
    height, width = ranks.shape
    half = kernel_size // 2
    offsets = torch.arange(-half, half + 1) * dilation
    qi = torch.arange(height).view(1, 1, height, 1) + offsets.view(-1, 1, 1, 1)  # (k, 1, H, 1)
    qj = torch.arange(width).view(1, 1, 1, width) + offsets.view(1, -1, 1, 1)  # (1, k, 1, W)
    inside = (qi >= 0) & (qi < height) & (qj >= 0) & (qj < width)
    neighbour = ranks[qi.clamp(0, height - 1), qj.clamp(0, width - 1)]  # (k, k, H, W)
    centre = ranks.view(1, 1, height, width)
    keep = (neighbour < centre) if mask_type == "A" else (neighbour <= centre)
    return (keep & inside).reshape(kernel_size * kernel_size, height * width).float()


class LocallyMaskedConv2d(nn.Module):
    r"""A 2-D convolution whose kernel is masked differently at every position (LMConv).

    Args:
        in_channels, out_channels: channels of input and output.
        grid: the ``(H, W)`` size of the inputs (the masks are built for it).
        order: an ordering name of :data:`ORDERINGS` or an ``(H, W)`` rank tensor.
        mask_type: ``"A"`` (the centre tap is masked: first layer) or ``"B"`` (kept: later layers).
        kernel_size: odd kernel size.
        dilation: spacing of the kernel taps.

    Inputs are ``batch + (in_channels, H, W)`` with any batch shape.

    Example::

        >>> conv = LocallyMaskedConv2d(2, 3, (4, 5), order="temporal", mask_type="A")
        >>> conv(torch.randn(6, 2, 4, 5)).shape
        torch.Size([6, 3, 4, 5])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        grid: Sequence[int],
        order: str | torch.Tensor = "raster",
        mask_type: str = "B",
        kernel_size: int = 3,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.grid, self.kernel_size, self.dilation, self.mask_type = tuple(int(g) for g in grid), kernel_size, dilation, mask_type
        ranks = ordering_ranks(order, *self.grid)
        self.register_buffer("ranks", ranks)
        self.register_buffer("mask", local_masks(ranks, kernel_size, dilation, mask_type))
        conv = nn.Conv2d(in_channels, out_channels, kernel_size)  # for its default initialisation
        self.weight = nn.Parameter(conv.weight.detach().reshape(out_channels, -1).clone())
        self.bias = nn.Parameter(conv.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-3:]) != (self.in_channels,) + self.grid:
            raise ValueError(f"x: expected shape (..., {self.in_channels}, {self.grid[0]}, {self.grid[1]}), got {tuple(x.shape)}")
        flat, batch = flatten_batch(x, 3)
        k = self.kernel_size
        patches = F.unfold(flat, k, dilation=self.dilation, padding=self.dilation * (k // 2))  # (N, C*k*k, L)
        patches = (patches.unflatten(1, (self.in_channels, k * k)) * self.mask.to(patches.dtype)).flatten(1, 2)
        out = torch.matmul(self.weight, patches) + self.bias.unsqueeze(-1)  # (N, out, L)
        return out.reshape(batch + (self.out_channels,) + self.grid)


def positional_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    r"""Positional normalisation: standardise the channels (dim ``-3``) at every position of ``(..., C, H, W)``."""
    centred = x - x.mean(dim=-3, keepdim=True)
    var = centred.square().mean(dim=-3, keepdim=True)  # (torch.var over dim -3 is ~20x slower on CPU)
    return centred * torch.rsqrt(var + eps)


class PositionalNorm(nn.Module):
    """:func:`positional_norm` as a module."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return positional_norm(x, self.eps)


class MaskedARN(nn.Module):
    r"""One autoregressive network of MotionFlow (Sec. 4.3): LMConv type A, then type B, then type B
    dilated, all 3x3 with one ordering, with PONO and ELU between layers. The output at a position
    depends only on input positions strictly before it in the ordering.

    Args:
        in_channels, out_channels: channels of input and output.
        grid: ``(H, W)`` of the pseudo-image.
        order: the ordering (a name of :data:`ORDERINGS` or a rank tensor).
        hidden_channels: channels of the two hidden layers (the paper's Table 1: 32, 16).
        dilation: dilation of the last layer.

    Example::

        >>> arn = MaskedARN(4, 4, (10, 3), order="raster")
        >>> arn(torch.randn(2, 4, 10, 3)).shape
        torch.Size([2, 4, 10, 3])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        grid: Sequence[int],
        order: str | torch.Tensor = "raster",
        hidden_channels: Sequence[int] = (32, 16),
        dilation: int = 2,
    ) -> None:
        super().__init__()
        h1, h2 = hidden_channels
        self.layers = nn.ModuleList(
            [
                LocallyMaskedConv2d(in_channels, h1, grid, order, "A"),
                LocallyMaskedConv2d(h1, h2, grid, order, "B"),
                LocallyMaskedConv2d(h2, out_channels, grid, order, "B", dilation=dilation),
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for k, layer in enumerate(self.layers):
            h = layer(h)
            if k < len(self.layers) - 1:
                h = F.elu(positional_norm(h))
        return h


class SpatioTemporalEncoder(nn.Module):
    r"""MotionFlow's conditioning encoder, eq. (5): :math:`u = x + \mathrm{PONO}(\mathrm{ARN}_1(x))
    \odot \sigma(\mathrm{ARN}_2(x))` with two :class:`MaskedARN` of different orderings.

    Args:
        channels: channels ``C`` of the pseudo-image ``x`` (and of ``u``).
        grid: ``(H, W)`` of the pseudo-image; MotionFlow uses (time steps, positions per frame).
        orders: the orderings of :math:`\mathrm{ARN}_1` and :math:`\mathrm{ARN}_2` (default
            spatial (raster) and temporal).
        hidden_channels, dilation: as in :class:`MaskedARN`.

    Example::

        >>> enc = SpatioTemporalEncoder(4, (9, 3))
        >>> enc(torch.randn(5, 4, 9, 3)).shape
        torch.Size([5, 4, 9, 3])
    """

    def __init__(
        self,
        channels: int,
        grid: Sequence[int],
        orders: Sequence[str | torch.Tensor] = ("raster", "temporal"),
        hidden_channels: Sequence[int] = (32, 16),
        dilation: int = 2,
    ) -> None:
        super().__init__()
        if len(orders) != 2:
            raise ValueError(f"orders: expected two orderings (one per network), got {len(orders)}")
        self.channels, self.grid = channels, tuple(int(g) for g in grid)
        self.arn1 = MaskedARN(channels, channels, grid, orders[0], hidden_channels, dilation)
        self.arn2 = MaskedARN(channels, channels, grid, orders[1], hidden_channels, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1 = positional_norm(self.arn1(x))
        c2 = self.arn2(x)
        return x + c1 * torch.sigmoid(c2)
