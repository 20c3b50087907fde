"""Shape helpers shared by the conditioner networks and the transforms: batch shapes, broadcasting
of an input against a context, flattening the batch, and sums over event dims."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .precision import accumulation_dtype


def batch_shape_of(x: torch.Tensor, event_dim: int) -> torch.Size:
    return x.shape[: x.dim() - event_dim]


def broadcast_shapes(a: Sequence[int], b: Sequence[int]) -> torch.Size:
    """``torch.broadcast_shapes(a, b)`` for two shapes, in plain Python for the common cases (it runs
    several times per transform call); mismatches are left to torch for its error message."""
    if len(a) < len(b):
        a, b = b, a
    if tuple(a[len(a) - len(b) :]) == tuple(b):
        return torch.Size(a)
    out = list(a)
    for i in range(1, len(b) + 1):
        x, y = a[-i], b[-i]
        if x == 1:
            out[-i] = y
        elif y != 1 and y != x:
            return torch.broadcast_shapes(a, b)  # raises
    return torch.Size(out)


def broadcast_batch(
    x: torch.Tensor, x_event_dim: int, c: torch.Tensor | None, c_event_dim: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Expand ``x`` and ``c`` to their common batch shape (trailing event dims untouched)."""
    if c is None:
        return x, c
    x_batch, c_batch = batch_shape_of(x, x_event_dim), batch_shape_of(c, c_event_dim)
    if x_batch == c_batch:
        return x, c
    batch = broadcast_shapes(x_batch, c_batch)
    if batch != x_batch:
        x = x.expand(batch + x.shape[x.dim() - x_event_dim :])
    if batch != c_batch:
        c = c.expand(batch + c.shape[c.dim() - c_event_dim :])
    return x, c


def flatten_batch(x: torch.Tensor, event_dim: int) -> tuple[torch.Tensor, torch.Size]:
    """Reshape ``batch + event`` to ``(N,) + event``; returns the tensor and the batch shape."""
    batch = batch_shape_of(x, event_dim)
    return x.reshape((-1,) + x.shape[x.dim() - event_dim :]), batch


def sum_event(t: torch.Tensor, event_dim: int) -> torch.Tensor:
    """Sum over the rightmost ``event_dim`` dims (any batch shape, empty ones included); a
    half-precision ``t`` (autocast) is summed and returned in float32."""
    dtype = accumulation_dtype(t)
    if not event_dim:
        return t if dtype is None else t.to(dtype)
    return t.sum(tuple(range(-event_dim, 0)), dtype=dtype)


def as_shape(shape: int | Sequence[int]) -> tuple:
    return (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)


def context_event_shape(context_dim: int, context_shape: Sequence[int] | None) -> tuple:
    """A conditional transform's context event shape: ``context_shape`` (a map) or ``(context_dim,)``."""
    return (int(context_dim),) if context_shape is None else as_shape(context_shape)
