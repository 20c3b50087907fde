"""Unusual and bad inputs for a transform case, and what became of each call.

A :class:`FuzzInput` names a batch shape (empty and batch-of-one included), a dtype, a memory
layout (non-contiguous, expanded) and at most one bad value (NaN, inf, a wrong event shape, a context
whose batch does not broadcast). :func:`fuzz_outcome` runs the forward map, the log-det and the
inverse on it and sorts the call into one outcome class. A transform behaves when every input ends
in :data:`ACCEPTABLE`: a correct result, or a ``ValueError`` / ``TypeError`` whose message starts
with the name of the argument at fault.

>>> import torch
>>> from pyroflows.testing import instantiate, transform_cases
>>> from pyroflows.testing.fuzz import FuzzInput, fuzz_outcome
>>> case = transform_cases()[0]
>>> module = instantiate(case).eval()
>>> fuzz_outcome(case, module, FuzzInput(batch=(0,))).kind
'result'
>>> fuzz_outcome(case, module, FuzzInput(batch=(2,), bad="nan")).kind
'named error'
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch

from . import TransformCase, bind

#: the bad values an input may carry (``None``: a valid input)
BAD_VALUES = (None, "nan", "inf", "event", "context_batch")
LAYOUTS = ("contiguous", "noncontiguous", "expanded")
#: the outcome classes, best first; the first two are what a transform must give
OUTCOMES = (
    "result", "named error", "refused valid input", "wrong argument named", "unnamed error",
    "crash", "bad input accepted", "wrong result",
)  # fmt: skip
ACCEPTABLE = ("result", "named error")
ARGUMENTS = ("x", "y", "context")


@dataclass(frozen=True)
class FuzzInput:
    """One input to try: ``batch`` shape, ``dtype``, ``layout`` (one of :data:`LAYOUTS`) and
    ``bad`` (one of :data:`BAD_VALUES`)."""

    batch: tuple = (3,)
    dtype: torch.dtype = torch.float64
    layout: str = "contiguous"
    bad: str | None = None


@dataclass(frozen=True)
class FuzzOutcome:
    """The class of one call (one of :data:`OUTCOMES`) and what it said."""

    kind: str
    message: str = ""

    @property
    def acceptable(self) -> bool:
        return self.kind in ACCEPTABLE


def effective_bad(case: TransformCase, draw: FuzzInput) -> str | None:
    """The bad value ``draw`` can really carry for ``case``: a context batch that does not broadcast
    needs a conditional case and a batch other than 1, a NaN or inf needs a float input with
    elements; otherwise the input is valid."""
    bad = draw.bad
    if bad == "context_batch" and not (case.conditional and draw.batch and draw.batch[0] != 1):
        return None
    if bad in ("nan", "inf") and (draw.dtype == torch.int64 or 0 in draw.batch):
        return None
    return bad


def _layout(v: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "noncontiguous" and v.dim() >= 1 and v.numel() > 0 and v.shape[-1]:
        return torch.cat([v, v], dim=-1)[..., ::2]
    if layout == "expanded" and v.dim() >= 2 and v.shape[-2]:
        return v[..., :1, :].expand(v.shape)
    return v


def fuzz_inputs(case: TransformCase, draw: FuzzInput) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``x`` and the context (``None`` for an unconditional case) that ``draw`` describes, seeded
    by the case and the draw so that a failure repeats."""
    bad = effective_bad(case, draw)
    event = tuple(case.event_shape)
    if bad == "event":
        event = tuple(s + 1 for s in event)
    seed = zlib.crc32(repr((case.name, draw.batch, str(draw.dtype), draw.layout, bad)).encode())
    g = torch.Generator().manual_seed(seed)
    x = case.input_scale * torch.randn(draw.batch + event, generator=g, dtype=torch.float64)
    if bad in ("nan", "inf"):
        x.view(-1)[0] = float(bad)
    x = x.round().to(draw.dtype) if draw.dtype == torch.int64 else x.to(draw.dtype)
    x = _layout(x, draw.layout)
    c = None
    if case.conditional:
        cbatch = draw.batch if bad != "context_batch" else (draw.batch[0] + 2,) + draw.batch[1:]
        c = _layout(torch.randn(cbatch + tuple(case.context_shape), generator=g, dtype=torch.float64), draw.layout)
    return x, c


def fuzz_outcome(case: TransformCase, module: object, draw: FuzzInput) -> FuzzOutcome:
    """Run ``module`` (built from ``case``, e.g. by :func:`~pyroflows.testing.instantiate`) forward,
    through its log-det and back on the input ``draw`` describes, and classify the call."""
    bad = effective_bad(case, draw)
    x, c = fuzz_inputs(case, draw)
    try:
        t = bind(module, c)
        y = t(x)
        ladj = t.log_abs_det_jacobian(x, y)
        x_back = bind(module, c).inv(y.clone())
    except (ValueError, TypeError) as err:
        message = str(err)
        named = message.split(":")[0]
        if named not in ARGUMENTS:
            return FuzzOutcome("unnamed error", message)
        if bad is None and draw.dtype == torch.float64:
            return FuzzOutcome("refused valid input", message)
        if bad == "context_batch" and draw.dtype == torch.float64 and named != "context":
            return FuzzOutcome("wrong argument named", message)
        return FuzzOutcome("named error", message)
    except Exception as err:  # noqa: BLE001 - every other exception is an outcome class of its own
        return FuzzOutcome("crash", f"{type(err).__name__}: {err}")
    if bad is not None:
        return FuzzOutcome("bad input accepted", f"{bad} input, batch {draw.batch}, {draw.dtype}, {draw.layout}")
    batch = torch.Size(draw.batch)
    if y.shape != x.shape or x_back.shape != x.shape or ladj.shape != batch:
        shapes = f"x {tuple(x.shape)}, y {tuple(y.shape)}, inverse {tuple(x_back.shape)}, log-det {tuple(ladj.shape)}"
        return FuzzOutcome("wrong result", f"shapes for batch {draw.batch}: {shapes}")
    if not y.is_floating_point():
        ok = torch.equal(x_back, x)
        return FuzzOutcome("result" if ok else "wrong result", "" if ok else "integer round trip off")
    if not (torch.isfinite(y).all() and torch.isfinite(ladj).all()):
        return FuzzOutcome("wrong result", "non-finite output from a finite input")
    tol = case.inverse_atol if draw.dtype == torch.float64 else 1e-3
    if x.numel() and (x_back.double() - x.double()).abs().max().item() >= tol:
        return FuzzOutcome("wrong result", f"round trip off by more than {tol:g}")
    return FuzzOutcome("result")
