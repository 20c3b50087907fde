"""No host-device synchronisation on the hot path: a training step of every transform configuration
(forward, log-det, inverse, backward) reads no tensor value on the host.

On a GPU, ``.item()``, ``bool(tensor)`` and ``if tensor:`` wait for the device; on the CPU they run
through the same ``aten`` operators (``_local_scalar_dense``, ``is_nonzero``), so a dispatch mode
that records them finds every such read without a GPU. Validation is off: its NaN checks read the
device by design, and only while it is on. Where CUDA exists, the same step on the GPU is profiled
and its ``cudaStreamSynchronize`` calls are counted.
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import pyroflows
from pyroflows.testing import bind, instantiate, random_inputs, transform_cases

HOST_READS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default, torch.ops.aten.item.default}

# Solvers that adapt their step size compare the error estimate on the host, and torchdiffeq's
# adjoint checks its step grid there: these CNF configurations sync by construction.
SYNCS_BY_DESIGN = {
    "cnf_exact_dopri5": "adaptive step size (dopri5)",
    "conditional_cnf_exact_dopri5": "adaptive step size (dopri5)",
    "cnf_exact_rk4_adjoint_fixed_time": "torchdiffeq's adjoint",
    "conditional_cnf_exact_adjoint": "torchdiffeq's adjoint",
}


class HostReads(TorchDispatchMode):
    """Records the operators that read a tensor's value on the host."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in HOST_READS:
            self.reads.append(str(func))
        return func(*args, **(kwargs or {}))


CASES = transform_cases()


def _training_step(module, x, context) -> None:
    """Forward, log-det, inverse and backward of one batch, validation off."""
    with pyroflows.validation(False):
        transform = bind(module, context)
        y = transform(x.clone())
        loss = transform.log_abs_det_jacobian(x, y).sum() + transform.inv(y.clone()).sum()
        if loss.requires_grad:
            loss.backward()


def _check(case, syncs: list[str]) -> None:
    if case.name in SYNCS_BY_DESIGN:
        assert syncs, f"{case.name} no longer syncs ({SYNCS_BY_DESIGN[case.name]}): drop it from SYNCS_BY_DESIGN"
    else:
        assert not syncs, f"{case.name}: host syncs {sorted(set(syncs))} in a training step"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_training_step_reads_nothing_on_the_host(case):
    module = instantiate(case, dtype=torch.float32)
    x, context = random_inputs(case, (4,), dtype=torch.float32)
    bind(module, context).inv(x)  # data-dependent initialisation happens once, before training
    with HostReads() as mode:
        _training_step(module, x, context)
    _check(case, mode.reads)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_training_step_on_cuda_never_waits_for_the_device(case):
    from torch.profiler import ProfilerActivity, profile

    module = instantiate(case, dtype=torch.float32).cuda()
    x, context = random_inputs(case, (4,), dtype=torch.float32, device="cuda")
    _training_step(module, x, context)  # first step: lazy CUDA and library initialisation
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        _training_step(module, x, context)
    _check(case, [e.name for e in prof.events() if e.name == "cudaStreamSynchronize"])


def test_the_recorder_sees_item_and_branches_on_tensors():
    with HostReads() as mode:
        t = torch.tensor([1.0, 2.0])
        t.sum().item()
        if t.max() > 1:
            pass
    assert len(mode.reads) == 2
