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
