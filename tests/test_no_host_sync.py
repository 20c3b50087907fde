"""No host-device synchronisation on the hot path: a training step of every transform configuration
(forward, log-det, inverse, backward) reads no tensor value on the host.

On a GPU, ``.item()``, ``bool(tensor)`` and ``if tensor:`` wait for the device; on the CPU they run
through the same ``aten`` operators (``_local_scalar_dense``, ``is_nonzero``), so a dispatch mode
that records them finds every such read without a GPU. Validation is off: its NaN checks read the
device by design, and only while it is on.
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


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_training_step_reads_nothing_on_the_host(case):
    module = instantiate(case, dtype=torch.float32)
    x, context = random_inputs(case, (4,), dtype=torch.float32)
    bind(module, context).inv(x)  # data-dependent initialisation happens once, before training
    with pyroflows.validation(False), HostReads() as mode:
        transform = bind(module, context)
        y = transform(x.clone())
        loss = transform.log_abs_det_jacobian(x, y).sum() + transform.inv(y.clone()).sum()
        if loss.requires_grad:
            loss.backward()
    if case.name in SYNCS_BY_DESIGN:
        assert mode.reads, f"{case.name} no longer syncs ({SYNCS_BY_DESIGN[case.name]}): drop it from SYNCS_BY_DESIGN"
    else:
        assert not mode.reads, f"{case.name}: host reads {sorted(set(mode.reads))} in a training step"


def test_the_recorder_sees_item_and_branches_on_tensors():
    with HostReads() as mode:
        t = torch.tensor([1.0, 2.0])
        t.sum().item()
        if t.max() > 1:
            pass
    assert len(mode.reads) == 2
