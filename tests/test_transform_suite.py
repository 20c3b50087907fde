"""The shared suite: every public transform case against every contract check."""

import pytest
import torch

import pyroflows.transforms as T
from pyroflows import testing as pt

CASES = pt.transform_cases()


@pytest.mark.parametrize("check", pt.ALL_CHECKS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_contract(case, check):
    check(case)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_meta_device(case):
    pt.check_device(case, "meta")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_cuda_device(case):
    pt.check_device(case, "cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_seeded_stack_builds_on_a_cuda_default_device_with_the_cpu_permutations():
    from pyroflows.transforms import coupling_flow

    on_cpu = coupling_flow(4, num_blocks=2, seed=0)
    torch.set_default_device("cuda")
    try:
        on_gpu = coupling_flow(4, num_blocks=2, seed=0)
    finally:
        torch.set_default_device(None)
    perms = [(n, b) for n, b in on_gpu.named_buffers() if "permutation" in n]
    assert perms and all(b.device.type == "cuda" for _, b in perms)
    cpu_buffers = dict(on_cpu.named_buffers())
    assert all(torch.equal(cpu_buffers[n], b.cpu()) for n, b in perms)


def test_every_public_transform_class_is_covered():
    from pyro.distributions.conditional import ConditionalTransform
    from torch.distributions import Transform

    public = {
        getattr(T, name)
        for name in T.__all__
        if isinstance(getattr(T, name), type) and issubclass(getattr(T, name), (Transform, ConditionalTransform))
    }
    covered = set().union(*(pt.covered_classes(c) for c in CASES))
    # a base class (FlowModule, ...) counts as covered through its covered subclasses
    missing = sorted(cls.__name__ for cls in public if not any(issubclass(c, cls) for c in covered))
    assert not missing, f"public transforms without a case in pyroflows.testing: {missing}"


def test_case_names_are_unique():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
