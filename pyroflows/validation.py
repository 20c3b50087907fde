"""Input checks with messages that name the argument, the expected and the received value.

Shape, dtype and device checks cost nothing on the device and always run. Finiteness checks
(NaN / inf) need a host-device sync, so they run only while validation is enabled: pyroflows'
own switch (on by default; ``pyroflows.set_validation(False)`` or the ``validation(False)``
context manager) and Pyro's (``pyro.enable_validation(False)`` turns these checks off too, as it
does Pyro's own distribution checks).
"""

from __future__ import annotations

import contextlib
import math
import operator
from collections.abc import Iterator, Sequence

import torch
from pyro.infer.util import is_validation_enabled as pyro_validation_enabled

_VALIDATE = True


def set_validation(enabled: bool) -> None:
    """Turn the NaN / inf checks on inputs and outputs on or off globally. They only check: the
    numbers computed are the same either way."""
    global _VALIDATE
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled: expected True or False, got {enabled!r}")
    _VALIDATE = enabled


def is_validation_enabled() -> bool:
    """Whether NaN / inf checks run: both pyroflows' switch and Pyro's validation are on, and
    ``torch.compile`` is not tracing (a check reads the device, which a graph cannot)."""
    return _VALIDATE and pyro_validation_enabled() and not torch.compiler.is_compiling()


@contextlib.contextmanager
def validation(enabled: bool) -> Iterator[None]:
    """Context manager that sets :func:`set_validation` for the duration of a block."""
    previous = _VALIDATE
    set_validation(enabled)
    try:
        yield
    finally:
        set_validation(previous)


def _fmt_shape(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("*" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def check_tensor(
    name: str,
    value: object,
    event_shape: Sequence[int | None] | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
    finite: bool = True,
) -> None:
    """Raise a clear error when ``value`` is not a tensor of the expected event shape, dtype or device.

    ``event_shape`` lists the trailing sizes; ``None`` accepts any size in that place. Any number
    of leading batch dims is accepted.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    if event_shape is not None:
        k = len(event_shape)
        trailing = tuple(value.shape[value.dim() - k :]) if value.dim() >= k else None
        if trailing is None or any(e is not None and e != s for e, s in zip(event_shape, trailing, strict=True)):
            raise ValueError(
                f"{name}: expected shape (..., {_fmt_shape(event_shape)[1:-1].rstrip(',')}) with event shape "
                f"{_fmt_shape(event_shape)}, got {tuple(value.shape)}"
            )
    if dtype is not None and value.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype} (that of the parameters), got {value.dtype}")
    if device is not None and value.device != device:
        raise RuntimeError(f"{name}: expected a tensor on device {device} (that of the parameters), got {value.device}")
    if finite and is_validation_enabled() and value.device.type != "meta" and value.is_floating_point() and not transformed(value):
        if not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise ValueError(f"{name}: expected finite values, got {bad} NaN or inf entries in a tensor of shape {tuple(value.shape)}")


def check_size(name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int, or a ``ValueError`` naming ``name`` unless it is an integer ``>= minimum``
    (a size, width, count or number of steps)."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    value = operator.index(value)
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return value


def check_sizes(name: str, values: object, minimum: int = 1) -> tuple[int, ...]:
    """A sequence of sizes (hidden widths) as a tuple of ints, each checked as by :func:`check_size`."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{name}: expected a sequence of integers >= {minimum}, got {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not hasattr(v, "__index__") or operator.index(v) < minimum:
            raise ValueError(f"{name}: expected integers >= {minimum}, got {tuple(values)!r}")
        out.append(operator.index(v))
    return tuple(out)


EVENT_KINDS = {1: "vectors", 2: "sequences (T, D)", 3: "images (C, H, W)", 4: "volumes (C, D, H, W)"}


def check_event_dim(event_dim: object, allowed: Sequence[int] = (1, 2, 3, 4)) -> int:
    """``event_dim`` as an int, or a ``ValueError`` naming the allowed values and what they mean."""
    if isinstance(event_dim, bool) or not hasattr(event_dim, "__index__") or operator.index(event_dim) not in allowed:
        kinds = ", ".join(f"{k} ({EVENT_KINDS[k]})" for k in allowed)
        raise ValueError(f"event_dim: expected one of {kinds}, got {event_dim!r}")
    return operator.index(event_dim)


def check_positive(name: str, value: object, allow_none: bool = False) -> float | None:
    """``value`` as a float, or a ``ValueError`` naming ``name`` unless it is a finite number ``> 0``
    (or None where ``allow_none``)."""
    if value is None and allow_none:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    if isinstance(value, bool) or number is None or not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name}: expected a positive number{' or None' if allow_none else ''}, got {value!r}")
    return number


def transformed(value: torch.Tensor) -> bool:
    """Whether ``value`` is wrapped by a ``torch.func`` transform (vmap, grad, jacrev): its values
    cannot be read, so the finiteness checks step aside."""
    return torch.func.debug_unwrap(value, recurse=False) is not value


def check_broadcast(name: str, batch: Sequence[int], other_name: str, other_batch: Sequence[int]) -> None:
    """Raise naming ``name`` when the batch shape ``batch`` does not broadcast with ``other_batch``."""
    # the shapes align on the right; the longer one's extra leading dims broadcast with anything
    for a, b in zip(reversed(tuple(batch)), reversed(tuple(other_batch)), strict=False):
        if a != b and a != 1 and b != 1:
            raise ValueError(
                f"{name}: batch shape {tuple(batch)} does not broadcast with the batch shape {tuple(other_batch)} of {other_name}"
            )


def non_finite_parameters(module: torch.nn.Module) -> list[str]:
    """Names of the parameters of ``module`` that hold NaN or inf (one host sync per parameter)."""
    return [
        n for n, p in module.named_parameters() if p.device.type != "meta" and p.is_floating_point() and not bool(torch.isfinite(p).all())
    ]
