"""The kept forward pass is reused only where it is still the right answer.

A flow keeps its last ``(x, y, log-det)`` so that a guide scores its own sample without a second
pass. Reusing it for a tensor that has since been overwritten (a batch buffer refilled with
``copy_``, a latent updated by an optimiser, ``gradcheck``'s perturbations) would return the
previous values.
"""

import pyro.distributions as dist
import pytest
import torch

import pyroflows.transforms as T
from pyroflows.transforms.stacks import FlowSequence

F64 = torch.float64

FLOWS = {
    "coupling_flow": lambda: T.coupling_flow(3, num_blocks=2, hidden=(16,)),
    "planar": lambda: T.planar(3),
    "sylvester": lambda: T.sylvester(3, "triangular"),
    "glow_steps": lambda: FlowSequence([T.ActNorm(3), T.InvertibleLinear(3), T.affine_coupling(3, hidden=(8,))]),
}


def _distribution(name):
    torch.manual_seed(0)
    flow = FLOWS[name]().double()
    with torch.no_grad():
        flow.inv(torch.randn(16, 3, dtype=F64))  # data-dependent initialisation, where there is one
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    base = dist.Normal(torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64)).to_event(1)
    return flow, dist.TransformedDistribution(base, [flow])


@pytest.mark.parametrize("name", FLOWS)
def test_a_batch_buffer_refilled_in_place_gets_its_own_log_prob(name):
    _, d = _distribution(name)
    g = torch.Generator().manual_seed(1)
    batches = [3.0 * torch.randn(8, 3, dtype=F64, generator=g) for _ in range(3)]
    want = [d.log_prob(batch) for batch in batches]
    buf = torch.empty(8, 3, dtype=F64)
    for batch, w in zip(batches, want, strict=True):
        buf.copy_(batch)
        got = d.log_prob(buf)
        assert torch.allclose(got, w, atol=1e-10), f"{name}: {(got - w).abs().max():.3g} nats off"


@pytest.mark.parametrize("name", FLOWS)
def test_an_optimiser_updating_a_latent_in_place_runs_100_steps(name):
    _, d = _distribution(name)
    z = torch.zeros(4, 3, dtype=F64, requires_grad=True)
    opt = torch.optim.Adam([z], lr=0.05)
    losses = []
    for _ in range(100):
        opt.zero_grad()
        loss = -d.log_prob(z).sum()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        # every step scored the latent as it is now, not as it was at the previous step
        assert torch.allclose(d.log_prob(z), d.log_prob(z.detach().clone()), atol=1e-10)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name", FLOWS)
def test_gradcheck_through_log_prob(name):
    _, d = _distribution(name)
    x = torch.randn(2, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(d.log_prob, (x,))
