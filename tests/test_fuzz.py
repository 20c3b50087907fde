"""Property-based fuzzing of every transform configuration of the shared suite.

Hypothesis draws batch shapes (empty and batch-of-one included), dtypes, memory layouts
(non-contiguous, expanded) and bad values (NaN, inf, wrong event shape, a context whose batch does
not broadcast). Each draw must end in one of two ways: a correct result (right shapes, finite
values, a round trip within the case's tolerance) or a ``ValueError`` / ``TypeError`` whose
message starts with the name of the argument at fault.
"""

import functools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyroflows import testing as pt

CASES = pt.transform_cases()
BAD = (None, None, None, "nan", "inf", "event", "context_batch")


@functools.cache
def _module(name: str):
    case = next(c for c in CASES if c.name == name)
    module = pt.instantiate(case, dtype=torch.float64)
    return case, module.eval() if hasattr(module, "eval") else module


def _layout(v: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "noncontiguous" and v.dim() >= 1 and v.numel() > 0:
        return torch.cat([v, v], dim=-1)[..., ::2] if v.shape[-1] else v
    if layout == "expanded" and v.dim() >= 1:
        return v[..., :1, :].expand(v.shape) if v.dim() >= 2 and v.shape[-2] else v
    return v


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_every_input_gets_a_correct_result_or_an_error_naming_the_argument(name, data):
    case, module = _module(name)
    batch = tuple(data.draw(st.lists(st.integers(0, 3), max_size=2), label="batch"))
    dtype = data.draw(st.sampled_from([torch.float64, torch.float64, torch.float32, torch.int64]), label="dtype")
    layout = data.draw(st.sampled_from(["contiguous", "noncontiguous", "expanded"]), label="layout")
    bad = data.draw(st.sampled_from(BAD), label="bad")
    if bad == "context_batch" and not (case.conditional and batch and batch[0] != 1):
        bad = None  # a context batch of 3 would broadcast against 1
    if bad in ("nan", "inf") and (dtype == torch.int64 or 0 in batch):
        bad = None  # nowhere to put the bad value
    event = tuple(case.event_shape)
    if bad == "event":
        event = tuple(s + 1 for s in event)
    g = torch.Generator().manual_seed(hash((name, batch, str(dtype), layout, bad)) % 2**31)
    x = case.input_scale * torch.randn(batch + event, generator=g, dtype=torch.float64)
    if bad in ("nan", "inf") and x.numel():
        x.view(-1)[0] = float(bad)
    x = _layout(x.to(dtype) if dtype != torch.int64 else x.round().to(dtype), layout)
    c = None
    if case.conditional:
        cbatch = batch if bad != "context_batch" else (batch[0] + 2,) + batch[1:]
        c = _layout(torch.randn(cbatch + tuple(case.context_shape), generator=g, dtype=torch.float64), layout)
    try:
        t = pt.bind(module, c)
        y = t(x)
        ladj = t.log_abs_det_jacobian(x, y)
        x_back = pt.bind(module, c).inv(y.clone())
    except (ValueError, TypeError) as err:
        message = str(err)
        allowed = ("x", "y", "context")
        assert message.split(":")[0] in allowed, f"{name}: the error names no argument: {message}"
        named = message.split(":")[0]
        if bad is None and dtype == torch.float64:
            raise AssertionError(f"{name}: a valid input was refused: {message}") from err
        if bad == "context_batch" and dtype == torch.float64:
            assert named == "context", f"{name}: a context batch that does not broadcast was blamed on {named}: {message}"
        return
    assert bad is None, f"{name}: a bad input ({bad}, {dtype}, {layout}, batch {batch}) gave a result instead of an error"
    assert y.shape == x.shape and x_back.shape == x.shape, f"{name}: shapes {tuple(x.shape)} -> {tuple(y.shape)}"
    assert ladj.shape == torch.Size(batch), f"{name}: log-det shape {tuple(ladj.shape)} for batch {batch}"
    if y.is_floating_point():
        assert torch.isfinite(y).all() and torch.isfinite(ladj).all(), f"{name}: non-finite result from finite input"
        tol = case.inverse_atol if dtype == torch.float64 else 1e-3
        assert (x_back.double() - x.double()).abs().max().item() < tol if x.numel() else True, f"{name}: round trip off"
    else:
        assert torch.equal(x_back, x), f"{name}: round trip of integer input off"
