"""Amortized flow posteriors: shapes, a normalised density, gradients, errors, and SVI on a model
whose evidence is known exactly."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

from pyroflows.infer import POSTERIOR_KINDS, AmortizedFlowPosterior, amortized_posterior
from pyroflows.nn import GaussianEncoder


def _perturb(module: torch.nn.Module, scale: float = 0.3, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


@pytest.mark.parametrize("kind", POSTERIOR_KINDS)
def test_shapes_under_sample_and_batch_dims(kind):
    q = amortized_posterior(kind, in_features=6, latent_dim=3, num_flows=2, hidden=(16,))
    d = q.condition(torch.rand(4, 5, 6))
    assert d.batch_shape == (4, 5) and d.event_shape == (3,)
    z = d.rsample((7,))
    assert z.shape == (7, 4, 5, 3)
    assert d.log_prob(z).shape == (7, 4, 5)
    assert torch.isfinite(d.log_prob(z)).all()


@pytest.mark.parametrize("kind", ["planar", "radial", "orthogonal", "householder", "triangular", "iaf"])
def test_density_integrates_to_one_at_perturbed_parameters(kind):
    torch.manual_seed(0)
    q = amortized_posterior(kind, in_features=3, latent_dim=2, num_flows=2, hidden=(8,)).double()
    _perturb(q)
    x = torch.rand(1, 3, dtype=torch.float64)
    d = q.condition(x)
    g = torch.linspace(-9, 9, 361, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 1, 2)
    with torch.no_grad():
        mass = d.log_prob(grid).exp().sum() * (g[1] - g[0]) ** 2
    assert abs(mass.item() - 1.0) < 2e-3, mass.item()


@pytest.mark.parametrize("kind", ["planar", "orthogonal", "householder", "triangular"])
def test_gradients_reach_encoder_flows_and_input(kind):
    q = amortized_posterior(kind, in_features=5, latent_dim=3, num_flows=2, hidden=(8,))
    _perturb(q, 0.1)
    x = torch.rand(4, 5, requires_grad=True)
    d = q.condition(x)
    d.log_prob(d.rsample()).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    missing = [n for n, p in q.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="kind: expected one of"):
        amortized_posterior("sylvester", 4, 2)
    q = amortized_posterior("planar", 4, 2, hidden=(8,))
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., 4\)"):
        q.condition(torch.rand(3, 5))
    no_context = AmortizedFlowPosterior(GaussianEncoder(4, 2, (8,), context_features=0), q.flows)
    with pytest.raises(ValueError, match="encoder: conditional flow layers need a context"):
        no_context.condition(torch.rand(3, 4))


def test_svi_with_an_amortized_guide_reaches_the_exact_evidence():
    """z ~ N(0, 1), x | z ~ N(z^3 / 4 ... ) is awkward; a linear-Gaussian model has a known evidence:
    x | z ~ N(a z, s^2) in 2-D gives log p(x) = log N(x; 0, a a^T + s^2 I), so the ELBO gap is KL."""
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    a = torch.tensor([[1.5], [-0.5]])
    s = 0.4
    x = (torch.randn(64, 1) @ a.T) + s * torch.randn(64, 2)
    q = amortized_posterior("householder", in_features=2, latent_dim=1, num_flows=1, hidden=(16,), num_householder=1)

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(1), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ a.T, s).to_event(1), obs=x)

    def guide(x):
        pyro.module("q", q)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", q.condition(x))

    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO(num_particles=8, vectorize_particles=True))
    for _ in range(600):
        svi.step(x)
    evidence = dist.MultivariateNormal(torch.zeros(2), a @ a.T + s**2 * torch.eye(2)).log_prob(x).sum()
    neg_elbo = sum(Trace_ELBO(num_particles=64, vectorize_particles=True).loss(model, guide, x) for _ in range(4)) / 4
    gap = neg_elbo + evidence.item()  # = KL(q || posterior) summed over the 64 points, >= 0
    assert -1.0 < gap < 0.05 * 64, gap
    assert math.isfinite(gap)
