"""Property-based fuzzing of every transform configuration of the shared suite.

Hypothesis draws batch shapes (empty and batch-of-one included), dtypes, memory layouts
(non-contiguous, expanded) and bad values (NaN, inf, wrong event shape, a context whose batch does
not broadcast). Each draw must end in one of two ways (``pyroflows.testing.fuzz``): a correct result
(right shapes, finite values, a round trip within the case's tolerance) or a ``ValueError`` /
``TypeError`` whose message starts with the name of the argument at fault.
"""

import functools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyroflows import testing as pt
from pyroflows.testing.fuzz import BAD_VALUES, LAYOUTS, FuzzInput, fuzz_outcome

CASES = pt.transform_cases()
BAD = (None, None) + BAD_VALUES  # valid inputs drawn half of the time


@functools.cache
def _module(name: str):
    case = next(c for c in CASES if c.name == name)
    module = pt.instantiate(case, dtype=torch.float64)
    return case, module.eval() if hasattr(module, "eval") else module


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_every_input_gets_a_correct_result_or_an_error_naming_the_argument(name, data):
    case, module = _module(name)
    draw = FuzzInput(
        batch=tuple(data.draw(st.lists(st.integers(0, 3), max_size=2), label="batch")),
        dtype=data.draw(st.sampled_from([torch.float64, torch.float64, torch.float32, torch.int64]), label="dtype"),
        layout=data.draw(st.sampled_from(LAYOUTS), label="layout"),
        bad=data.draw(st.sampled_from(BAD), label="bad"),
    )
    outcome = fuzz_outcome(case, module, draw)
    assert outcome.acceptable, f"{name}: {outcome.kind} for {draw}: {outcome.message}"


class _Silent(torch.nn.Module):
    """A transform-like module that returns NaN for a NaN input without a word."""

    def __call__(self, x):
        return x * 2

    def log_abs_det_jacobian(self, x, y):
        return x.new_zeros(x.shape[:-1])

    @property
    def inv(self):
        return lambda y: y / 2


@pytest.mark.parametrize(
    "draw, kind",
    [
        (FuzzInput(batch=(2,)), "result"),
        (FuzzInput(batch=(2,), bad="nan"), "bad input accepted"),
        (FuzzInput(batch=(0,), bad="nan"), "result"),  # no element to hold the NaN: a valid input
    ],
)
def test_the_classifier_catches_a_silent_transform(draw, kind):
    case = pt.TransformCase("silent", _Silent, (3,))
    assert fuzz_outcome(case, _Silent(), draw).kind == kind
