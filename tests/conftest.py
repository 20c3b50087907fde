"""Test-session settings: one torch thread per pytest-xdist worker (the workers already use the cores)."""

import os

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture
def one_thread():
    """One torch thread for the test (small networks run fastest so on a shared CPU), then restore."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def distribution_validation():
    """Restore torch.distributions' default argument validation after every test: torch.compile
    switches it off for the rest of the process the first time it runs, which would otherwise
    change what later tests in the same worker see."""
    validate = torch.distributions.Distribution._validate_args
    yield
    torch.distributions.Distribution.set_default_validate_args(validate)


@pytest.fixture
def no_distribution_validation():
    """torch.distributions' argument validation off for the test, as the first torch.compile of a
    process leaves it: the support check is a data-dependent branch that a whole-graph compile
    refuses. Tests that compile use it, so that they do not depend on running first."""
    torch.distributions.Distribution.set_default_validate_args(False)
