"""Mixed precision: what leaves ``torch.autocast``'s half precision.

Under ``torch.autocast`` (bfloat16 on CPU or GPU, float16 on GPU) the conditioner networks' matrix
products and convolutions run in half precision, where the floating-point work of a flow is. Their
outputs are brought back to the data's dtype before they become log-scales and shifts, so the data
path (element-wise maps, the invertible linear maps), the log-determinants and the base density
stay in float32. Outside autocast these helpers return their input unchanged: float32 and float64
results do not change.
"""

from __future__ import annotations

import contextlib

import torch

HALF_DTYPES = (torch.float16, torch.bfloat16)


def full_precision(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` in ``like``'s dtype when ``t`` is half precision and ``like`` is not (a network's output
    under autocast meeting the float32 data); ``t`` itself otherwise."""
    if t.dtype in HALF_DTYPES and like.dtype not in HALF_DTYPES:
        return t.to(like.dtype)
    return t


def accumulation_dtype(t: torch.Tensor) -> torch.dtype | None:
    """float32 for a half-precision ``t`` (sums of log-scales lose digits in 8 or 11 bits of
    mantissa), None (the tensor's own dtype) otherwise."""
    return torch.float32 if t.dtype in HALF_DTYPES else None


def autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """A region where autocast, when it is on for ``device_type``, is off: triangular solves and the
    products of the invertible linear maps run in the dtype of their inputs."""
    # the meta device (and any without autocast) has no autocast state to ask about
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()
