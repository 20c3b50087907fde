r"""Squeeze (space-to-channel) and its inverse for images ``(C, H, W)`` and volumes ``(C, D, H, W)``.

With factor :math:`f` (2 by default) and :math:`n` spatial dims, every block of :math:`f^n` neighbouring
positions becomes :math:`f^n` channels at one position of a grid :math:`f` times coarser:

.. math::

    y[c\,f^n + \textstyle\sum_k i_k f^{\,n-1-k},\ p_1, \dots, p_n] = x[c,\ f p_1 + i_1, \dots, f p_n + i_n],
    \qquad i_k \in \{0, \dots, f - 1\},

so an image ``(C, H, W)`` becomes ``(4C, H/2, W/2)`` and a volume ``(C, D, H, W)`` becomes
``(8C, D/2, H/2, W/2)``. It is a permutation of the entries: :math:`\log|\det J| = 0` and the inverse
(:class:`Unsqueeze`) is exact. Glow and RealNVP squeeze before each level of a multi-scale flow so
the 1x1 convolutions and couplings of the next level see a larger neighbourhood per position.

Unlike the other transforms, these change the event shape: ``forward_shape`` / ``inverse_shape``
say how, and the checks of an input name the side (``x`` before the map, ``y`` after it).

Reference: Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", ICLR 2017 (Sec. 3.6);
Kingma, Dhariwal, "Glow: generative flow with invertible 1x1 convolutions", NeurIPS 2018.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.distributions import TransformModule

from ..shapes import batch_shape_of
from ..validation import check_tensor
from .base import OnePassTransform, event_constraint


def _names(event_dim: int) -> str:
    return "C, H, W" if event_dim == 3 else "C, D, H, W"


def squeeze(v: torch.Tensor, event_dim: int, factor: int = 2) -> torch.Tensor:
    """Space-to-channel on the last ``event_dim`` dims of ``v`` (no checks; see :class:`Squeeze`)."""
    n = event_dim - 1
    batch = v.shape[: v.dim() - event_dim]
    c, spatial = v.shape[v.dim() - event_dim], v.shape[v.dim() - n :]
    b = len(batch)
    split = []
    for s in spatial:
        split += [s // factor, factor]
    v = v.reshape(batch + (c,) + tuple(split))
    # (c, s1, f, s2, f, ...) -> (c, f, f, ..., s1, s2, ...)
    order = list(range(b)) + [b] + [b + 2 + 2 * k for k in range(n)] + [b + 1 + 2 * k for k in range(n)]
    v = v.permute(order)
    return v.reshape(batch + (c * factor**n,) + tuple(s // factor for s in spatial))


def unsqueeze(v: torch.Tensor, event_dim: int, factor: int = 2) -> torch.Tensor:
    """Channel-to-space, the exact inverse of :func:`squeeze` (no checks; see :class:`Unsqueeze`)."""
    n = event_dim - 1
    batch = v.shape[: v.dim() - event_dim]
    c, spatial = v.shape[v.dim() - event_dim], v.shape[v.dim() - n :]
    b = len(batch)
    v = v.reshape(batch + (c // factor**n,) + (factor,) * n + tuple(spatial))
    # (c, f, f, ..., s1, s2, ...) -> (c, s1, f, s2, f, ...)
    order = list(range(b)) + [b]
    for k in range(n):
        order += [b + 1 + n + k, b + 1 + k]
    v = v.permute(order)
    return v.reshape(batch + (c // factor**n,) + tuple(s * factor for s in spatial))


class _Reshuffle(OnePassTransform, TransformModule):
    """Shared code of :class:`Squeeze` and :class:`Unsqueeze` (``_squeezes``: which way forward goes)."""

    bijective = True
    volume_preserving = True
    _squeezes = True

    def __init__(self, event_dim: int = 3, factor: int = 2, num_channels: int | None = None) -> None:
        super().__init__(cache_size=1)
        if event_dim not in (3, 4):
            raise ValueError(f"event_dim: expected 3 (images (C, H, W)) or 4 (volumes (C, D, H, W)), got {event_dim}")
        if int(factor) < 2:
            raise ValueError(f"factor: expected an integer >= 2, got {factor}")
        self._edim, self.factor = int(event_dim), int(factor)
        self.num_channels = None if num_channels is None else int(num_channels)
        self.block = self.factor ** (self._edim - 1)  # positions per block = channels gained
        if self.num_channels is not None and not self._squeezes and self.num_channels % self.block:
            raise ValueError(f"num_channels: expected a multiple of {self.block} to unsqueeze, got {self.num_channels}")
        self.domain = self.codomain = event_constraint(self._edim)
        self.event_shape_spec = (self.num_channels,) + (None,) * (self._edim - 1)

    # the fine grid (C, H, W) is the domain of Squeeze and the codomain of Unsqueeze
    def _check_fine(self, name: str, v: torch.Tensor) -> None:
        c = None if self.num_channels is None else (self.num_channels if self._squeezes else self.num_channels // self.block)
        check_tensor(name, v, (c,) + (None,) * (self._edim - 1))
        spatial = v.shape[v.dim() - self._edim + 1 :]
        if any(s % self.factor for s in spatial):
            raise ValueError(
                f"{name}: expected shape (..., {_names(self._edim)}) with spatial sizes divisible by {self.factor}, got {tuple(v.shape)}"
            )

    def _check_coarse(self, name: str, v: torch.Tensor) -> None:
        c = None if self.num_channels is None else (self.num_channels * self.block if self._squeezes else self.num_channels)
        check_tensor(name, v, (c,) + (None,) * (self._edim - 1))
        ch = v.shape[v.dim() - self._edim]
        if ch % self.block:
            raise ValueError(f"{name}: expected shape (..., {_names(self._edim)}) with C divisible by {self.block}, got {tuple(v.shape)}")

    def check_input(self, name: str, value: torch.Tensor) -> None:
        fine = (name == "x") == self._squeezes
        (self._check_fine if fine else self._check_coarse)(name, value)

    def _down(self, v: torch.Tensor) -> torch.Tensor:
        return squeeze(v, self._edim, self.factor)

    def _up(self, v: torch.Tensor) -> torch.Tensor:
        return unsqueeze(v, self._edim, self.factor)

    def forward_value(self, x: torch.Tensor) -> torch.Tensor:
        return self._down(x) if self._squeezes else self._up(x)

    def inverse_value(self, y: torch.Tensor) -> torch.Tensor:
        return self._up(y) if self._squeezes else self._down(y)

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_value(x), x.new_zeros(batch_shape_of(x, self._edim))

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inverse_value(y), y.new_zeros(batch_shape_of(y, self._edim))

    def _shape_down(self, shape: Sequence[int], name: str) -> torch.Size:
        shape = torch.Size(shape)
        k = self._edim
        if len(shape) < k or any(s % self.factor for s in shape[len(shape) - k + 1 :]):
            raise ValueError(f"{name}: expected (..., {_names(k)}) with spatial sizes divisible by {self.factor}, got {tuple(shape)}")
        return shape[: len(shape) - k] + (shape[-k] * self.block,) + tuple(s // self.factor for s in shape[len(shape) - k + 1 :])

    def _shape_up(self, shape: Sequence[int], name: str) -> torch.Size:
        shape = torch.Size(shape)
        k = self._edim
        if len(shape) < k or shape[-k] % self.block:
            raise ValueError(f"{name}: expected (..., {_names(k)}) with C divisible by {self.block}, got {tuple(shape)}")
        return shape[: len(shape) - k] + (shape[-k] // self.block,) + tuple(s * self.factor for s in shape[len(shape) - k + 1 :])

    def forward_shape(self, shape: Sequence[int]) -> torch.Size:
        return self._shape_down(shape, "shape") if self._squeezes else self._shape_up(shape, "shape")

    def inverse_shape(self, shape: Sequence[int]) -> torch.Size:
        return self._shape_up(shape, "shape") if self._squeezes else self._shape_down(shape, "shape")

    def extra_repr(self) -> str:
        return f"event_dim={self._edim}, factor={self.factor}" + (
            "" if self.num_channels is None else f", num_channels={self.num_channels}"
        )


class Squeeze(_Reshuffle):
    r"""Space-to-channel: ``(C, H, W) -> (4C, H/2, W/2)`` for images, ``(C, D, H, W) -> (8C, D/2, H/2, W/2)``
    for volumes (factor 2); a permutation of the entries, so :math:`\log|\det J| = 0`.

    Args:
        event_dim: 3 for images ``(C, H, W)``, 4 for volumes ``(C, D, H, W)``.
        factor: block edge (2: 2x2 blocks for images, 2x2x2 for volumes).
        num_channels: the input's channels ``C``, checked when given (any ``C`` when None).

    Spatial sizes not divisible by ``factor`` raise a ``ValueError`` that names them. The output
    channel ``c * f**n + offset`` holds channel ``c`` at the block offset ``offset`` (row-major
    over the ``n`` spatial axes).

    Example::

        >>> t = Squeeze(event_dim=3)
        >>> x = torch.arange(16.).reshape(1, 4, 4)
        >>> y = t(x)
        >>> y.shape, t.forward_shape((5, 1, 4, 4))
        (torch.Size([4, 2, 2]), torch.Size([5, 4, 2, 2]))
        >>> y[:, 0, 0]                        # the top-left 2x2 block of x as channels
        tensor([0., 1., 4., 5.])
        >>> torch.equal(t.inv(y), x)
        True
    """

    _squeezes = True


class Unsqueeze(_Reshuffle):
    r"""Channel-to-space, the inverse of :class:`Squeeze`: ``(4C, H, W) -> (C, 2H, 2W)`` for images,
    ``(8C, D, H, W) -> (C, 2D, 2H, 2W)`` for volumes; :math:`\log|\det J| = 0`.

    Args:
        event_dim, factor: as in :class:`Squeeze`.
        num_channels: the input's channels (a multiple of ``factor ** (event_dim - 1)``), checked when given.

    Example::

        >>> t = Unsqueeze(event_dim=4)
        >>> t(torch.randn(3, 16, 2, 2, 2)).shape
        torch.Size([3, 2, 4, 4, 4])
    """

    _squeezes = False
