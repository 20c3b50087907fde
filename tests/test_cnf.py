"""Continuous normalizing flows beyond the shared suite: Hutchinson's estimator, solver options,
learned time, NFE counters, RNODE regularisers, and CNFs inside Pyro models and guides."""

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn as nn
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormalizingFlow

import pyroflows.transforms as T
from pyroflows.nn import ConcatSquashNet

F64 = torch.float64


class RandomDynamics(nn.Module):
    """A random concatsquash net plus a random linear drift with a positive trace, so the log-det is
    far from 0 (a random net alone has a divergence close to 0)."""

    def __init__(self, dim, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = ConcatSquashNet(dim, (16, 16), zero_init=False)
        g = torch.Generator().manual_seed(seed)
        self.A = nn.Parameter(0.2 * torch.randn(dim, dim, generator=g) / dim**0.5 + 0.25 * torch.eye(dim))

    def forward(self, t, z, context=None):
        return self.net(t, z) + z @ self.A.T


class Linear(nn.Module):
    """Time-independent ``f(z) = z A^T``."""

    def __init__(self, A):
        super().__init__()
        self.A = nn.Parameter(A)

    def forward(self, t, z, context=None):
        return z @ self.A.T


class Tanh(nn.Module):
    """Time-independent ``f(z) = tanh(z W + b)``."""

    def __init__(self, dim, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = nn.Parameter(torch.randn(dim, dim, generator=g))
        self.b = nn.Parameter(torch.randn(dim, generator=g))

    def forward(self, t, z, context=None):
        return torch.tanh(z @ self.W + self.b)


def _std_normal_log_prob(z):
    return torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)


# ----------------------------------------------------------------------------- Hutchinson's estimator


@pytest.mark.parametrize("noise", ["gaussian", "rademacher"])
@pytest.mark.parametrize("dim", [2, 10])
def test_hutchinson_mean_matches_exact_log_density(dim, noise):
    # the same solver settings for both: what differs is only the trace
    flow = T.CNF(dim, RandomDynamics(dim), trace="exact", atol=1e-4, rtol=1e-4).to(F64)
    x = torch.randn(2, dim, generator=torch.Generator().manual_seed(1), dtype=F64)
    with torch.no_grad():
        z = flow.inv(x)
        exact_ladj = flow.log_abs_det_jacobian(z, x)
        exact = _std_normal_log_prob(z) - exact_ladj
        assert exact_ladj.abs().min() > 0.5  # a log-det that matters

        flow.trace, flow.noise = "hutchinson", noise
        # enough probes for a standard error near 0.3 % (Gaussian probes in 2-D vary most)
        probes = 10000 if (dim, noise) == (2, "gaussian") else 2000
        xs = x.expand(probes, 2, dim)  # one solve, one noise draw per probe and sample
        torch.manual_seed(2)
        zs = flow.inv(xs)
        ladj = flow.log_abs_det_jacobian(zs, xs)
    estimates = _std_normal_log_prob(zs) - ladj
    rel = ((estimates.mean(0) - exact).abs() / exact.abs()).max().item()
    assert rel < 0.01, f"Hutchinson ({noise}, {probes} probes) differs from the exact log-density by {rel:.2%}"
    assert ladj.std(0).min() > 0  # an estimate, not the exact trace


def test_hutchinson_noise_is_held_fixed_through_a_solve():
    # f(z) = A z has a constant Jacobian: with one draw e per solve the estimate is exactly T e^T A e
    A = torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    flow = T.CNF(3, Linear(A), time=0.7, learn_time=False, trace="hutchinson", noise="gaussian", atol=1e-9, rtol=1e-9).to(F64)
    x = torch.randn(5, 3, dtype=F64)
    torch.manual_seed(11)
    y = flow(x)
    ladj = flow.log_abs_det_jacobian(x, y)
    torch.manual_seed(11)
    e = torch.randn(5, 3, dtype=F64)
    expected = 0.7 * ((e @ A) * e).sum(-1)
    assert torch.allclose(ladj, expected, atol=1e-6)
    # Rademacher noise on a diagonal Jacobian gives the exact trace for every draw
    D = torch.diag(torch.tensor([0.5, -1.0, 2.0], dtype=F64))
    flow = T.CNF(3, Linear(D), learn_time=False, trace="hutchinson", noise="rademacher", atol=1e-9, rtol=1e-9).to(F64)
    y = flow(x)
    assert torch.allclose(flow.log_abs_det_jacobian(x, y), torch.full((5,), 1.5, dtype=F64), atol=1e-6)


def test_eval_mode_exact_trace_for_scoring():
    flow = T.CNF(2, RandomDynamics(2), trace="hutchinson", eval_exact_trace=True, atol=1e-6, rtol=1e-6).to(F64)
    x = torch.randn(4, 2, dtype=F64)

    def ladj():
        z = flow.inv(x.clone())
        return flow.log_abs_det_jacobian(z, x)

    train_a, train_b = ladj(), ladj()
    assert not torch.allclose(train_a, train_b)  # stochastic in training mode
    flow.eval()
    eval_a, eval_b = ladj(), ladj()
    assert torch.equal(eval_a, eval_b)
    flow.trace = "exact"
    assert torch.allclose(eval_a, ladj(), atol=1e-12)


# ----------------------------------------------------------------------------- accuracy of the solved map


@pytest.mark.parametrize("dim", [2, 5])
def test_round_trip_within_1e4_at_tolerance_1e5(dim):
    flow = T.CNF(dim, RandomDynamics(dim, seed=dim), trace="exact", atol=1e-5, rtol=1e-5).to(F64)
    x = torch.randn(32, dim, dtype=F64)
    with torch.no_grad():
        y = flow(x)
        x_back = flow.inv(y.clone())
    assert (y - x).abs().max() > 0.5  # the map moves points
    assert (x_back - x).abs().max() < 1e-4


def test_log_det_matches_autograd_jacobian_of_strong_dynamics():
    flow = T.CNF(3, RandomDynamics(3, seed=1), trace="exact", atol=1e-8, rtol=1e-8).to(F64)
    x = torch.randn(2, 3, dtype=F64)
    y = flow(x)
    ladj = flow.log_abs_det_jacobian(x, y)
    for i in range(2):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v), x[i])
        assert torch.allclose(ladj[i], torch.linalg.slogdet(jac)[1], atol=1e-6)
    assert ladj.abs().min() > 0.5


def test_fresh_flow_is_the_identity():
    flow = T.cnf(4, hidden=(8,))
    x = torch.randn(6, 4)
    y = flow(x)
    assert torch.allclose(y, x, atol=1e-5) and torch.equal(flow.log_abs_det_jacobian(x, y), torch.zeros(6))


def test_integration_time_scales_the_solve():
    # time-independent dynamics: flowing for 2 equals flowing twice for 1, log-dets add up
    dyn = Tanh(3)
    long = T.CNF(3, dyn, time=2.0, trace="exact", atol=1e-9, rtol=1e-9).to(F64)
    short = T.CNF(3, dyn, time=1.0, trace="exact", atol=1e-9, rtol=1e-9).to(F64)
    assert torch.allclose(long.integration_time, torch.tensor(2.0, dtype=F64))
    x = torch.randn(4, 3, dtype=F64)
    y = long(x)
    mid = short(x)
    first = short.log_abs_det_jacobian(x, mid)
    mid = mid.clone()
    y2 = short(mid)
    second = short.log_abs_det_jacobian(mid, y2)
    assert torch.allclose(y, y2, atol=1e-7)
    assert torch.allclose(long.log_abs_det_jacobian(x, y), first + second, atol=1e-7)


def test_empty_batch():
    flow = T.conditional_cnf(2, 3, hidden=(4,))
    t = flow.condition(torch.randn(3))
    y = t(torch.randn(0, 2))
    assert y.shape == (0, 2) and t.log_abs_det_jacobian(torch.randn(0, 2), y).shape == (0,)


def test_learned_and_fixed_time():
    flow = T.cnf(2, hidden=(8,), trace="exact", time=0.5)
    assert isinstance(flow.raw_time, nn.Parameter)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(5, 2)
    y = flow(x)
    (y.pow(2).sum() + flow.log_abs_det_jacobian(x, y).sum()).backward()
    assert flow.raw_time.grad is not None and flow.raw_time.grad.abs() > 0
    fixed = T.cnf(2, hidden=(8,), learn_time=False, time=0.5)
    assert "raw_time" in fixed.state_dict() and "raw_time" not in dict(fixed.named_parameters())
    assert torch.allclose(fixed.integration_time, torch.tensor(0.5))


def test_adjoint_gradients_match_backpropagation():
    grads = []
    for adjoint in (False, True):
        torch.manual_seed(0)
        flow = T.conditional_cnf(2, 3, hidden=(8,), trace="exact", adjoint=adjoint, atol=1e-9, rtol=1e-9)
        with torch.no_grad():
            for p in flow.parameters():
                p.add_(0.3 * torch.randn_like(p))
        flow = flow.to(F64)
        x = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        c = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
        t = flow.condition(c)
        z = t.inv(x)
        loss = _std_normal_log_prob(z).sum() - t.log_abs_det_jacobian(z, x).sum()
        loss.backward()
        grads.append([x.grad, c.grad] + [p.grad for p in flow.parameters()])
        assert (flow.nfe_backward > 0) == adjoint
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)


SOLVER_SETTINGS = [("euler", 0.01, 2e-2), ("midpoint", 0.05, 2e-3), ("rk4", 0.05, 1e-5), ("bosh3", None, 1e-4), ("dopri8", None, 1e-4)]


@pytest.mark.parametrize("method,step_size,tol", SOLVER_SETTINGS)
def test_other_solvers(method, step_size, tol):
    flow = T.CNF(2, Tanh(2), trace="exact", method=method, step_size=step_size, atol=1e-6, rtol=1e-6).to(F64)
    x = torch.randn(8, 2, dtype=F64)
    with torch.no_grad():
        y = flow(x)
        back = flow.inv(y.clone())
    assert (y - x).abs().max() > 0.3
    assert (back - x).abs().max() < tol
    if step_size is not None:
        assert flow.last_nfe == round(1 / step_size) * {"euler": 1, "midpoint": 2, "rk4": 4}[method]


# ----------------------------------------------------------------------------- counters and regularisers


def test_nfe_counters():
    flow = T.cnf(2, hidden=(8,), trace="exact", method="rk4", step_size=0.25)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(3, 2)
    y = flow(x)
    assert flow.last_nfe == flow.nfe_forward == 16  # 4 steps of 4 stages
    flow.log_abs_det_jacobian(x, y).sum().backward()
    assert flow.nfe_backward == 0  # backpropagation through the steps calls no dynamics
    flow.inv(y.detach())
    assert flow.nfe_forward == 32
    flow.reset_nfe()
    assert (flow.nfe_forward, flow.nfe_backward, flow.last_nfe) == (0, 0, 0)

    adj = T.cnf(2, hidden=(8,), trace="exact", adjoint=True)
    with torch.no_grad():
        for p in adj.parameters():
            p.add_(0.3 * torch.randn_like(p))
    y = adj(x)
    forward = adj.nfe_forward
    assert forward > 0 and adj.nfe_backward == 0
    (y.sum() + adj.log_abs_det_jacobian(x, y).sum()).backward()
    assert adj.nfe_backward > 0 and adj.nfe_forward == forward


@pytest.mark.parametrize("trace,noise", [("exact", "gaussian"), ("hutchinson", "rademacher")])
def test_rnode_regularisers_match_closed_form(trace, noise):
    # f(z) = a z: z(t) = z0 e^{at}, so int ||f||^2 = a |z0|^2 (e^{2aT} - 1) / 2 and int ||df/dz||_F^2 = a^2 D T
    a, dim = 0.4, 3
    flow = T.CNF(dim, Linear(a * torch.eye(dim)), trace=trace, noise=noise, atol=1e-9, rtol=1e-9, kinetic_energy=0.5, jacobian_norm=0.25)
    flow = flow.to(F64)
    x = torch.randn(4, dim, dtype=F64)
    y = flow(x)
    kinetic = a * x.pow(2).sum(-1) * (torch.exp(torch.tensor(2 * a, dtype=F64)) - 1) / 2
    frobenius = torch.full((4,), a * a * dim, dtype=F64)
    assert torch.allclose(flow.regularization["kinetic_energy"], kinetic, atol=1e-6)
    assert torch.allclose(flow.regularization["jacobian_norm"], frobenius, atol=1e-6)
    assert torch.allclose(flow.regularization_loss(), 0.5 * kinetic.mean() + 0.25 * frobenius.mean())
    # the inverse solve runs the same path backwards: the same (positive) integrals
    flow.inv(y.detach().clone())
    assert torch.allclose(flow.regularization["kinetic_energy"], kinetic, atol=1e-6)
    # gradients reach the dynamics through the regulariser
    flow.regularization_loss().backward()
    assert flow.dynamics.A.grad.abs().sum() > 0
    assert torch.allclose(T.cnf_regularization(nn.ModuleList([flow])), flow.regularization_loss())


def test_regularisers_only_in_training_mode_and_only_when_weighted():
    x = torch.randn(4, 2)
    plain = T.cnf(2, hidden=(8,), trace="exact")
    plain(x)
    assert plain.regularization == {} and plain.regularization_loss() == 0
    flow = T.cnf(2, hidden=(8,), trace="exact", kinetic_energy=1.0).eval()
    flow(x)
    assert flow.regularization == {}
    flow.train()
    flow(x.clone())
    assert set(flow.regularization) == {"kinetic_energy", "jacobian_norm"}


def test_bad_options_raise():
    net = ConcatSquashNet(2, (4,))
    for kwargs, match in [
        (dict(trace="brute"), "trace"),
        (dict(noise="uniform"), "noise"),
        (dict(method="rk45"), "method"),
        (dict(time=0.0), "time"),
        (dict(step_size=2.0), "step_size"),
        (dict(norm="l1"), "norm"),
        (dict(kinetic_energy=-1.0), "kinetic_energy"),
    ]:
        with pytest.raises(ValueError, match=match):
            T.CNF(2, net, **kwargs)


# ----------------------------------------------------------------------------- inside Pyro


def _losses(svi, steps, *args):
    return [svi.step(*args) for _ in range(steps)]


def test_cnf_as_svi_guide_through_autonormalizingflow():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    data = torch.tensor([1.5, 2.0, 1.8])

    def model():  # the posterior of z is a correlated Gaussian, away from the prior
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        with pyro.plate("data", len(data)):
            pyro.sample("x", dist.Normal(z[..., 0] + z[..., 1], 0.3), obs=data)

    guide = AutoNormalizingFlow(model, lambda dim: T.cnf(dim, hidden=(16,), trace="exact", atol=1e-3, rtol=1e-3))
    evaluate = Trace_ELBO(num_particles=256, vectorize_particles=True)
    guide()  # builds the flow
    with torch.no_grad():
        before = evaluate.loss(model, guide)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO(num_particles=4, vectorize_particles=True))
    _losses(svi, 10)
    with torch.no_grad():
        after = evaluate.loss(model, guide)
    assert after < before - 1.0
    assert guide.transform.nfe_forward > 0
    assert guide().keys() == {"z"}
    pyro.clear_param_store()


def test_cnf_as_likelihood_with_rnode_loss():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    data = torch.randn(64, 2) * torch.tensor([0.5, 1.0]) + torch.tensor([1.5, -1.0])
    flow = T.cnf(
        2,
        hidden=(8, 8),
        trace="hutchinson",
        noise="rademacher",
        eval_exact_trace=True,
        atol=1e-3,
        rtol=1e-3,
        kinetic_energy=0.01,
        jacobian_norm=0.01,
    )
    base = dist.Normal(torch.zeros(2), 1.0).to_event(1)

    def model(x):
        pyro.module("flow", flow)
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.TransformedDistribution(base, [flow]), obs=x)

    def guide(x):
        pass

    def exact_nll():
        flow.eval()
        with torch.no_grad():
            nll = -dist.TransformedDistribution(base, [flow]).log_prob(data).mean()
        flow.train()
        return nll

    elbo = Trace_ELBO()

    def loss(model, guide, *args):  # negative log-likelihood plus RNODE's penalty of the same solve
        return elbo.differentiable_loss(model, guide, *args) + len(data) * T.cnf_regularization(flow)

    before = exact_nll()
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), loss)
    calls = flow.nfe_forward
    svi.step(data)
    assert flow.nfe_forward - calls == flow.last_nfe  # log_prob reuses the solve for the log-det
    assert flow.regularization["kinetic_energy"].shape == (64,)
    _losses(svi, 5, data)
    assert exact_nll() < before - 0.2
    pyro.clear_param_store()


def test_conditional_cnf_as_amortized_posterior_and_conditional_likelihood():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    n = 32
    z_true = torch.randn(n, 2)
    x_obs = z_true + 0.5 * torch.randn(n, 2)
    posterior = T.conditional_cnf(2, 2, hidden=(16,), trace="exact", method="rk4", step_size=0.25)
    base = dist.Normal(torch.zeros(2), 1.0).to_event(1)

    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", base)
            pyro.sample("x", dist.Normal(z, 0.5).to_event(1), obs=x)

    def guide(x):
        pyro.module("posterior", posterior)
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.ConditionalTransformedDistribution(base, [posterior]).condition(x))

    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    losses = _losses(svi, 10, x_obs)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3

    # conditional likelihood: y | c ~ N(2 c, 0.3^2) learned by a ConditionalCNF
    pyro.clear_param_store()
    likelihood = T.conditional_cnf(1, 1, hidden=(16,), trace="exact", atol=1e-3, rtol=1e-3)
    c = torch.rand(n, 1) * 2 - 1
    y = 2 * c + 0.3 * torch.randn(n, 1)
    base1 = dist.Normal(torch.zeros(1), 1.0).to_event(1)

    def cond_model(y, c):
        pyro.module("likelihood", likelihood)
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.ConditionalTransformedDistribution(base1, [likelihood]).condition(c), obs=y)

    svi = SVI(cond_model, lambda y, c: None, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    losses = _losses(svi, 10, y, c)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 5.0
    pyro.clear_param_store()


def test_sampling_without_gradients_solves_the_state_alone():
    torch.manual_seed(3)
    flow = T.cnf(2, hidden=(16,), trace="exact")
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    d = dist.TransformedDistribution(dist.Normal(torch.zeros(2), 1.0).to_event(1), [flow])
    z = torch.randn(7, 2)
    y_full, ladj_full = flow.forward_and_ladj(z)
    with torch.no_grad():
        y = flow(z)
        assert flow._last is None  # the log-det was not integrated
        assert torch.allclose(y, y_full, atol=1e-4)
        assert torch.allclose(flow.log_abs_det_jacobian(z, y), ladj_full, atol=1e-4)  # its own solve
        assert torch.allclose(d.log_prob(y), d.base_dist.log_prob(z) - ladj_full, atol=1e-3)
