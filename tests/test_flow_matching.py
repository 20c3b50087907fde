"""Flow matching for CNFs: the loss on hand-set fields, the time convention against the solve,
minibatch OT pairing, learning a density whose exact log_prob is then right, and input checks."""

import itertools
import math

import pyro.distributions as dist
import pytest
import torch
import torch.nn as nn

import pyroflows.transforms as T
from pyroflows.infer import FlowMatching, fit, ot_pairing
from pyroflows.nn import ConcatSquashNet

F64 = torch.float64


class AffineField(nn.Module):
    """Hand-set dynamics ``f(t, z, c) = z A^T + t b (+ c W^T)``: per-sample times broadcast like ``z``'s batch."""

    def __init__(self, A, b, W=None):
        super().__init__()
        self.A, self.b = nn.Parameter(A), nn.Parameter(b)
        self.W = None if W is None else nn.Parameter(W)

    def forward(self, t, z, context=None):
        t = t.unsqueeze(-1) if t.dim() else t
        out = z @ self.A.T + t * self.b
        return out if context is None else out + context @ self.W.T


def affine_flow(time=2.0, dtype=F64, context_dim=None):
    g = torch.Generator().manual_seed(0)
    A, b = torch.randn(2, 2, generator=g, dtype=dtype), torch.randn(2, generator=g, dtype=dtype)
    if context_dim is None:
        return T.CNF(2, AffineField(A, b), time=time, learn_time=False, trace="exact")
    W = torch.randn(2, context_dim, generator=g, dtype=dtype)
    return T.ConditionalCNF(2, context_dim, AffineField(A, b, W), time=time, learn_time=False, trace="exact")


def test_regression_equals_the_analytic_value_of_a_hand_set_field():
    flow = affine_flow(time=2.0)
    f = flow.dynamics
    g = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(7, 2, generator=g, dtype=F64), torch.randn(7, 2, generator=g, dtype=F64)
    s = torch.rand(7, generator=g, dtype=F64)
    xs = (1 - s)[:, None] * x0 + s[:, None] * x1
    # the field on the normalised time is T f(x_s, sT); the target velocity is x1 - x0
    v = 2.0 * (xs @ f.A.T + (2.0 * s)[:, None] * f.b)
    expected = ((v - (x1 - x0)) ** 2).sum(-1).mean()
    got = FlowMatching(flow).regression(x0, x1, s)
    torch.testing.assert_close(got, expected, rtol=1e-14, atol=0)
    noise = 0.1 * torch.randn(7, 2, generator=g, dtype=F64)
    v = 2.0 * ((xs + noise) @ f.A.T + (2.0 * s)[:, None] * f.b)
    torch.testing.assert_close(FlowMatching(flow).regression(x0, x1, s, noise=noise), ((v - (x1 - x0)) ** 2).sum(-1).mean())


def test_conditional_regression_passes_the_context_to_the_field():
    flow = affine_flow(time=0.5, context_dim=3)
    f = flow.dynamics
    g = torch.Generator().manual_seed(2)
    x0, x1, c = (torch.randn(5, k, generator=g, dtype=F64) for k in (2, 2, 3))
    s = torch.rand(5, generator=g, dtype=F64)
    xs = (1 - s)[:, None] * x0 + s[:, None] * x1
    v = 0.5 * (xs @ f.A.T + (0.5 * s)[:, None] * f.b + c @ f.W.T)
    torch.testing.assert_close(FlowMatching(flow).regression(x0, x1, s, c), ((v - (x1 - x0)) ** 2).sum(-1).mean(), rtol=1e-14, atol=0)


class ConstantField(nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = nn.Parameter(value)

    def forward(self, t, z, context=None):
        return self.value.expand_as(z)


def test_a_zero_loss_field_carries_the_base_point_to_the_data_point_through_the_solve():
    """The time convention: a field with zero flow-matching loss on one pair moves x0 (base) to x1
    (data) in the flow's forward direction, whatever the integration time."""
    x0, x1 = torch.tensor([[0.5, -1.0]], dtype=F64), torch.tensor([[2.0, 1.0]], dtype=F64)
    flow = T.CNF(2, ConstantField((x1 - x0)[0] / 3.0), time=3.0, learn_time=False, trace="exact")
    s = torch.tensor([0.1, 0.5, 0.9], dtype=F64)
    assert FlowMatching(flow).regression(x0.expand(3, 2), x1.expand(3, 2), s).item() == pytest.approx(0.0, abs=1e-28)
    torch.testing.assert_close(flow(x0), x1)
    torch.testing.assert_close(flow.inv(x1.clone()), x0)


def test_loss_of_a_zero_field_is_the_mean_squared_pair_distance():
    """With the fresh (zero) field the loss is E||x1 - x0||^2 = ||x1||^2 + dim for x0 ~ N(0, I)."""
    torch.manual_seed(0)
    flow = T.cnf(3, hidden=(8,)).double()
    x1 = torch.full((20000, 3), 2.0, dtype=F64)
    loss = FlowMatching(flow, sigma=0.3)(x1)  # the noise moves x_s only: the field is 0 everywhere
    # ||x1 - x0||^2 has mean 15 and variance 2 * 3 + 4 * 12 = 54
    assert loss.item() == pytest.approx(15.0, abs=4 * math.sqrt(54 / 20000))


def test_ot_pairing_is_the_exact_assignment():
    g = torch.Generator().manual_seed(3)
    x0, x1 = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
    perm = ot_pairing(x0, x1)
    assert sorted(perm.tolist()) == list(range(6))
    best = min(((x0[list(p)] - x1) ** 2).sum().item() for p in itertools.permutations(range(6)))
    assert ((x0[perm] - x1) ** 2).sum().item() == pytest.approx(best, rel=1e-6)


def test_ot_pairing_lowers_the_mean_pair_cost():
    g = torch.Generator().manual_seed(4)
    x0 = torch.randn(256, 2, generator=g)
    x1 = toy_mixture(256, g)
    random_cost = ((x0 - x1) ** 2).sum(-1).mean()
    ot_cost = ((x0[ot_pairing(x0, x1)] - x1) ** 2).sum(-1).mean()
    assert ot_cost < 0.5 * random_cost


def test_ot_loss_uses_the_paired_base_points():
    """With the zero field the OT loss is the mean paired distance: far below the independent one."""
    torch.manual_seed(5)
    flow = T.cnf(2, hidden=(8,))
    x1 = toy_mixture(512, torch.Generator().manual_seed(6))
    independent, paired = FlowMatching(flow)(x1), FlowMatching(flow, ot=True)(x1)
    assert paired < 0.5 * independent


def toy_mixture(n, generator):
    """Two Gaussian blobs at (+-3, 0) with standard deviation 0.3."""
    sign = torch.randint(0, 2, (n, 1), generator=generator) * 2.0 - 1.0
    return torch.cat([3.0 * sign, torch.zeros_like(sign)], -1) + 0.3 * torch.randn(n, 2, generator=generator)


def train(flow, fm, sample, steps=300, lr=1e-2):
    optimizer = torch.optim.Adam(flow.parameters(), lr=lr)

    def step(i):
        loss = fm(*sample())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    return fit(step, steps, {"flow": flow, "optimizer": optimizer}, progress=False, log_every=50)


@pytest.mark.parametrize("ot, sigma, batch", [(False, 0.0, 256), (True, 0.01, 128)])
def test_flow_matching_learns_a_gaussian_whose_exact_log_prob_is_right(ot, sigma, batch, one_thread):
    torch.manual_seed(0)
    target = dist.MultivariateNormal(torch.tensor([1.0, -0.5]), scale_tril=torch.tensor([[0.5, 0.0], [0.6, 0.8]]))
    flow = T.cnf(2, hidden=(32, 32), trace="exact", atol=1e-5, rtol=1e-5)
    q = dist.TransformedDistribution(dist.Normal(torch.zeros(2), 1.0).to_event(1), [flow])
    test = target.sample((1000,))
    truth = -target.log_prob(test).mean()
    with torch.no_grad():
        untrained = -q.log_prob(test).mean()
    history = train(flow, FlowMatching(flow, ot=ot, sigma=sigma), lambda: (target.sample((batch,)),))
    assert history.loss.iloc[-1] < history.loss.iloc[0]
    flow.reset_nfe()
    with torch.no_grad():
        nll = -q.log_prob(test).mean()
    assert flow.nfe_forward > 0  # scored by the ODE solve with the exact trace, not by the regression
    assert untrained > truth + 0.5
    assert abs(nll - truth) < 0.06


def test_conditional_flow_matching_learns_a_conditional_density(one_thread):
    torch.manual_seed(1)
    direction, noise = torch.tensor([1.0, -1.0]), 0.4

    def sample(n):
        c = 4 * torch.rand(n, 1) - 2
        return c * direction + noise * torch.randn(n, 2), c

    flow = T.conditional_cnf(2, 1, hidden=(32, 32), trace="exact", atol=1e-5, rtol=1e-5)
    train(flow, FlowMatching(flow, sigma=0.01), lambda: sample(256))
    x, c = sample(1000)
    base = dist.Normal(torch.zeros(2), 1.0).to_event(1)
    with torch.no_grad():
        nll = -dist.TransformedDistribution(base, [flow.condition(c)]).log_prob(x).mean()
    truth = -dist.Normal(c * direction, noise).to_event(1).log_prob(x).mean()
    assert abs(nll - truth) < 0.1


def test_batch_dims_and_context_broadcasting():
    torch.manual_seed(2)
    flow = affine_flow(context_dim=3, dtype=torch.float32)
    loss = FlowMatching(flow)(torch.randn(4, 8, 2), torch.randn(8, 3))
    assert loss.shape == ()
    loss = FlowMatching(flow)(torch.randn(8, 2), torch.randn(4, 1, 3))
    assert loss.shape == ()


def test_a_base_distribution_supplies_the_base_points():
    torch.manual_seed(3)
    flow = T.cnf(2, hidden=(8,))
    base = dist.Normal(torch.tensor([10.0, 10.0]), 1e-3).to_event(1)
    # zero field: the loss is ||x1 - x0||^2 with x0 at (10, 10) up to 1e-3
    loss = FlowMatching(flow, base=base)(torch.zeros(50, 2))
    assert loss.item() == pytest.approx(200.0, rel=1e-3)


def test_a_time_distribution_supplies_the_times():
    flow = affine_flow(time=2.0, dtype=torch.float32)
    seen = []
    flow.dynamics.register_forward_hook(lambda module, args, out: seen.append(args[0].detach()))
    FlowMatching(flow, time_distribution=dist.Delta(torch.tensor(0.25)))(torch.randn(6, 2))
    # the field is T f(z, sT): the network sees s T = 0.5 for every sample
    torch.testing.assert_close(seen[0], torch.full((6,), 0.5))
    seen.clear()
    torch.manual_seed(5)
    logit_normal = dist.TransformedDistribution(dist.Normal(2.0, 1.0), [dist.transforms.SigmoidTransform()])
    FlowMatching(flow, time_distribution=logit_normal)(torch.randn(4000, 2))
    s = seen[0] / 2.0
    # E[sigmoid(u)] for u ~ N(2, 1) is 0.845; uniform times would average 0.5
    assert s.shape == (4000,) and 0.0 <= s.min() and s.max() <= 1.0
    assert s.mean().item() == pytest.approx(0.845, abs=0.01)
    seen.clear()
    torch.manual_seed(5)
    FlowMatching(flow)(torch.randn(4000, 2))
    assert (seen[0] / 2.0).mean().item() == pytest.approx(0.5, abs=0.02)


def test_per_sample_times_of_the_concatsquash_net():
    torch.manual_seed(4)
    net = ConcatSquashNet(2, (8,), context_features=3, zero_init=False)
    t, z, c = torch.rand(5), torch.randn(5, 2), torch.randn(5, 3)
    rows = torch.stack([net(t[i], z[i : i + 1], c[i : i + 1])[0] for i in range(5)])
    torch.testing.assert_close(net(t, z, c), rows)
    net = ConcatSquashNet(2, (8,), zero_init=False)
    rows = torch.stack([net(t[i], z[i : i + 1])[0] for i in range(5)])
    torch.testing.assert_close(net(t, z), rows)


class TimeAsBatch(nn.Module):
    """Written for a 0-dim time only: a time per sample becomes an extra batch dim."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))

    def forward(self, t, z, context=None):
        return z * self.w + t.reshape(t.shape + (1,) * z.dim())


def test_bad_input_gets_clear_errors():
    flow, cflow = T.cnf(2, hidden=(8,)), T.conditional_cnf(2, 3, hidden=(8,))
    x = torch.randn(10, 2)
    cases = [
        (lambda: FlowMatching(T.affine_coupling(2, hidden=(8,))), TypeError, "flow: expected a CNF or ConditionalCNF"),
        (lambda: FlowMatching(flow, sigma=-0.1), ValueError, "sigma: expected a finite number >= 0, got -0.1"),
        (lambda: FlowMatching(flow, ot=1), TypeError, "ot: expected True or False"),
        (lambda: FlowMatching(cflow, ot=True), ValueError, "ot: minibatch OT pairing needs an unconditional flow"),
        (lambda: FlowMatching(flow, base=dist.Normal(torch.zeros(3), 1.0).to_event(1)), ValueError, r"base: expected event shape \(2,\)"),
        (lambda: FlowMatching(flow, time_distribution=0.5), TypeError, "time_distribution: expected a torch Distribution"),
        (
            lambda: FlowMatching(flow, time_distribution=dist.Uniform(torch.zeros(2), 1.0)),
            ValueError,
            r"time_distribution: expected event shape \(\)",
        ),
        (lambda: FlowMatching(flow, time_distribution=dist.Normal(0.0, 1.0))(x), ValueError, r"time sample: expected times in \[0, 1\]"),
        (
            lambda: FlowMatching(flow, time_distribution=dist.Delta(torch.tensor(0.5, dtype=F64)))(x),
            TypeError,
            "time sample: expected dtype",
        ),
        (lambda: FlowMatching(flow)(torch.randn(10, 3)), ValueError, r"x: expected shape \(\.\.\., 2\)"),
        (lambda: FlowMatching(flow)(x.double()), TypeError, "x: expected dtype torch.float32"),
        (lambda: FlowMatching(flow)(torch.full((10, 2), float("nan"))), ValueError, "x: expected finite values"),
        (lambda: FlowMatching(flow)(torch.randn(0, 2)), ValueError, "x: expected at least one sample"),
        (lambda: FlowMatching(flow)(x, torch.randn(10, 3)), ValueError, "context: an unconditional CNF takes no context"),
        (lambda: FlowMatching(cflow)(x), ValueError, r"context: expected a tensor of shape \(\.\.\., 3\)"),
        (lambda: FlowMatching(cflow)(x, torch.randn(10, 4)), ValueError, r"context: expected shape \(\.\.\., 3\)"),
        (lambda: FlowMatching(cflow)(x, torch.randn(7, 3)), ValueError, r"context: batch shape \(7,\) does not broadcast"),
        (lambda: FlowMatching(T.CNF(2, TimeAsBatch()))(x), ValueError, "flow.dynamics: expected dz/dt of shape"),
        (lambda: ot_pairing(x, torch.randn(9, 2)), ValueError, r"x1: expected shape \(10, 2\) \(that of x0\)"),
        (lambda: ot_pairing(x, torch.randn(10, 3)), ValueError, r"x1: expected shape \(\.\.\., 2\)"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
