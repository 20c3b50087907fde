"""Every public transform works as an SVI guide: in a hand-written guide for every case of the shared
suite (vectors, images, volumes; conditional ones with a learnable context), and inside Pyro's
``AutoNormalizingFlow`` for the unconditional vector ones."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormalizingFlow

from pyroflows.testing import transform_cases

CASES = transform_cases()
VECTOR_CASES = [c for c in CASES if not c.conditional and len(c.event_shape) == 1]


def _target(shape):
    # a shifted, narrower Normal: the identity flow (where every transform starts) is far from it
    return dist.Normal(torch.full(shape, 0.8), 0.7).to_event(len(shape))


def _steps(case) -> int:
    return 12 if "cnf" in case.name else 20


def _neg_elbo(model, guide, particles=64):
    return Trace_ELBO(num_particles=particles, vectorize_particles=True).loss(model, guide)


def _lr(case) -> float:
    # MotionFlow's sequence maps roll many frames through one network: 2e-2 overshoots in 40 steps
    return 1e-2 if "motionflow" in case.name else 2e-2


def _initial_context(case) -> torch.Tensor:
    # a non-constant context: a constant map can leave every ReLU of a small
    # conditioner below zero (it did for one case), so no gradient would reach it
    g = torch.Generator().manual_seed(2)
    return 0.5 + 0.25 * torch.randn(case.context_shape, generator=g)


def _fit(model, guide, steps, lr=2e-2):
    svi = SVI(model, guide, pyro.optim.Adam({"lr": lr}), Trace_ELBO(num_particles=8, vectorize_particles=True))
    for _ in range(steps):
        svi.step()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_hand_written_guide(case):
    pyro.clear_param_store()
    torch.manual_seed(0)
    shape = case.event_shape
    target = _target(shape)
    transform = case.make()

    def model():
        pyro.sample("x", target)

    def guide():
        pyro.module("flow", transform)
        t = transform
        if case.conditional:
            t = transform.condition(pyro.param("context", _initial_context(case)))
        base = dist.Normal(torch.zeros(shape), 1.0).to_event(len(shape))
        pyro.sample("x", dist.TransformedDistribution(base, [t]))

    learnable = any(True for _ in transform.parameters()) if isinstance(transform, torch.nn.Module) else False
    torch.manual_seed(1)
    before = _neg_elbo(model, guide)
    _fit(model, guide, _steps(case), _lr(case))
    torch.manual_seed(1)
    after = _neg_elbo(model, guide)
    assert after == after and abs(after) < 1e6, after
    if learnable:
        assert after < before, (before, after)
    if case.conditional:
        context = pyro.param("context")
        assert not torch.equal(context.detach(), _initial_context(case)), "the context was not trained"


@pytest.mark.parametrize("case", VECTOR_CASES, ids=lambda c: c.name)
def test_inside_autonormalizingflow(case):
    pyro.clear_param_store()
    torch.manual_seed(0)
    (dim,) = case.event_shape
    target = _target((dim,))

    def model():
        pyro.sample("x", target)

    def make(d):
        assert d == dim
        return case.make()

    guide = AutoNormalizingFlow(model, make)
    _fit(model, guide, 2)  # builds the guide's parameters
    torch.manual_seed(1)
    before = _neg_elbo(model, guide)
    _fit(model, guide, _steps(case))
    torch.manual_seed(1)
    after = _neg_elbo(model, guide)
    if any(True for _ in guide.parameters()):
        assert after < before, (before, after)
    draws = guide.get_posterior().sample((5,))
    assert draws.shape == (5, dim)
