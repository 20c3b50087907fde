"""RelaxedConditionalFlow: eq. (6), sampling, forward-pass prediction, Pyro SVI, clear errors."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyroflows.distributions import ConditionalFlowDistribution, RelaxedConditionalFlow
from pyroflows.transforms import InvertibleLinear, conditional_coupling_flow


def _flow(**kw):
    torch.manual_seed(0)
    flow = RelaxedConditionalFlow(2, 3, num_blocks=2, hidden=(16, 16), **kw)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return flow


def test_padding_sizes_and_invalid_z_dim():
    flow = RelaxedConditionalFlow(2, 8, num_blocks=1, hidden=(8,))
    assert (flow.z_dim, flow.pad_dim, flow.dim) == (2, 8, 10)
    assert RelaxedConditionalFlow(20, 10, z_dim=10, num_blocks=1, hidden=(8,)).pad_dim == 0
    with pytest.raises(ValueError, match="z_dim"):
        RelaxedConditionalFlow(20, 3, z_dim=10)


def test_padded_log_prob_is_eq6_at_zero_padding():
    flow = _flow().double().eval()
    x, y = torch.randn(5, 2, dtype=torch.float64), torch.eye(3, dtype=torch.float64)[[0, 1, 2, 0, 1]]
    lp = flow.condition(y).padded_log_prob(x)
    assert torch.equal(lp, flow.condition(y, pad="zero").log_prob(x))
    x_hat = torch.cat([x, torch.zeros(5, flow.pad_dim, dtype=torch.float64)], -1)
    latent = flow.flow.inv(x_hat)
    jac = torch.stack([torch.autograd.functional.jacobian(lambda v: flow.flow.inv(v), xi) for xi in x_hat])
    logdet = torch.linalg.slogdet(jac)[1]
    z, c = latent[:, :2], latent[:, 2:]
    expected = dist.Normal(0.0, 1.0).log_prob(z).sum(-1) + dist.Normal(y, flow.eps).log_prob(c).sum(-1) + logdet
    assert torch.allclose(lp, expected, atol=1e-8)


def test_log_prob_without_padding_is_a_normalised_density():
    # pad = 0: log_prob is exactly log p(x | y); integrate it on a grid in 1-D (x_dim=1, y_dim=1).
    torch.manual_seed(0)
    flow = RelaxedConditionalFlow(2, 1, z_dim=1, num_blocks=2, hidden=(16,)).double().eval()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    g = torch.linspace(-8, 8, 401, dtype=torch.float64)
    xx = torch.cartesian_prod(g, g)
    with torch.no_grad():
        p = flow.condition(torch.tensor([0.5], dtype=torch.float64)).log_prob(xx).exp()
    mass = p.sum() * (g[1] - g[0]) ** 2
    assert abs(mass.item() - 1.0) < 1e-2


def test_training_mode_scores_one_fresh_padding_eval_mode_a_fixed_set():
    flow = _flow()
    x, y = torch.randn(4, 2), torch.eye(3)[[0, 1, 2, 0]]
    flow.train()
    assert not torch.equal(flow.condition(y).log_prob(x), flow.condition(y).log_prob(x))
    # one draw: the paper's objective (eq. (6) at noisy padding) up to a term without parameters
    torch.manual_seed(4)
    one = flow.condition(y).log_prob(x)
    torch.manual_seed(4)
    x0 = flow.pad_noise * torch.randn(4, flow.pad_dim)
    latent, ladj = flow.encode(torch.cat([x, x0], -1))
    log_q = dist.Normal(0.0, flow.pad_noise).log_prob(x0).sum(-1)
    assert torch.allclose(one, flow.relaxed_log_prob(latent, ladj, y) - log_q, atol=1e-5)
    flow.eval()
    assert torch.equal(flow.condition(y).log_prob(x), flow.condition(y).log_prob(x))
    assert not torch.equal(flow.condition(y, pad="zero").log_prob(x), flow.condition(y).log_prob(x))


def test_log_prob_integrates_the_padding_out_exactly_for_a_linear_flow():
    # latent [z, c] ~ N([0, y], diag(1, eps^2)) mapped by x_hat = A latent + b is Gaussian, so
    # p(x | y), the marginal of its first x_dim entries, is known in closed form
    torch.manual_seed(2)
    flow = RelaxedConditionalFlow(2, 2, flow=InvertibleLinear(4), eps=0.5, pad_noise=1.0).double().eval()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.2 * torch.randn_like(p))
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.3, 0.7]], dtype=torch.float64)
    A = torch.autograd.functional.jacobian(flow.decode, torch.zeros(4, dtype=torch.float64))
    b = flow.decode(torch.zeros(1, 4, dtype=torch.float64))[0].detach()
    mean = torch.cat([torch.zeros(3, 2, dtype=torch.float64), y], -1) @ A.T + b
    cov = A @ torch.diag(torch.tensor([1.0, 1.0, flow.eps**2, flow.eps**2], dtype=torch.float64)) @ A.T
    x = mean[:, :2] + torch.randn(3, 2, dtype=torch.float64)
    exact = dist.MultivariateNormal(mean[:, :2], cov[:2, :2]).log_prob(x)
    with torch.no_grad():
        estimate = flow.condition(y, num_pad_draws=20000).log_prob(x)
        padded = flow.condition(y).padded_log_prob(x)
    assert torch.allclose(estimate, exact, atol=0.02), (estimate, exact)
    assert (padded - exact).abs().max() > 0.1  # the padded density is another number


def test_held_out_log_prob_matches_the_true_conditional_density_after_fitting():
    # x | y ~ N(mu_y, 0.3^2 I) in 2-D, padded by 2: the score must be log p(x | y), not the padded
    # density (which the zero padding puts nats away from it); a seed at which 400 steps fit well
    torch.manual_seed(3)

    def data(n):
        labels = torch.randint(0, 2, (n,))
        mu = torch.stack([3.0 * labels.float() - 1.5, torch.zeros(n)], -1)
        x = mu + 0.3 * torch.randn(n, 2)
        return x, torch.eye(2)[labels], dist.Normal(mu, 0.3).log_prob(x).sum(-1)

    (x, y, _), (x_test, y_test, truth) = data(2048), data(1000)
    flow = RelaxedConditionalFlow(2, 2, num_blocks=3, hidden=(32, 32), pad_noise=0.05)
    optim = torch.optim.Adam(flow.parameters(), lr=5e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optim, 400)
    for _ in range(400):
        idx = torch.randint(0, len(x), (256,))
        loss = -flow.condition(y[idx]).log_prob(x[idx]).mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
        schedule.step()
    with torch.no_grad():
        one_draw = flow.condition(y_test).log_prob(x_test).mean()  # training mode: a lower bound
        flow.eval()
        held_out = flow.condition(y_test).log_prob(x_test).mean()
        padded = flow.condition(y_test).padded_log_prob(x_test).mean()
    assert abs(float(held_out - truth.mean())) < 0.05, (float(held_out), float(truth.mean()))
    assert float(padded - truth.mean()) > 1.0 and one_draw < held_out


def test_marginal_errors_name_the_argument():
    flow = RelaxedConditionalFlow(2, 2, num_blocks=1, hidden=(8,), pad_noise=0.0).eval()
    with pytest.raises(ValueError, match="pad_noise: log p"):
        flow.condition(torch.eye(2)).log_prob(torch.randn(2, 2))
    with pytest.raises(ValueError, match="num_pad_draws"):
        flow.condition(torch.eye(2), num_pad_draws=0)


def test_sample_shapes_and_decode_roundtrip():
    flow = _flow().eval()
    y = torch.eye(3)[[0, 1]]
    d = flow.condition(y)
    assert d.batch_shape == (2,) and d.event_shape == (2,)
    assert d.sample().shape == (2, 2)
    assert d.rsample((7,)).shape == (7, 2, 2)
    assert d.expand((4, 2)).sample().shape == (4, 2, 2)
    latent = torch.randn(6, flow.dim)
    latent_back, _ = flow.encode(flow.decode(latent).clone())
    assert torch.allclose(latent_back, latent, atol=1e-4)


def test_predict_recovers_condition_of_decoded_points():
    flow = _flow().double().eval()
    y = torch.eye(3, dtype=torch.float64)[[0, 1, 2]]
    latent = torch.cat([torch.randn(3, 2, dtype=torch.float64), y], -1)
    x_hat = flow.decode(latent)
    # predict pads with zeros; use the decoded padding itself through encode
    assert torch.allclose(flow.encode(x_hat.clone())[0][:, 2:], y, atol=1e-8)
    assert flow.predict(x_hat[:, :2]).shape == (3, 3)


def test_relaxed_flow_as_pyro_likelihood_learns_with_svi():
    pyro.clear_param_store()
    torch.manual_seed(1)
    n = 512
    labels = torch.randint(0, 2, (n,))
    x = torch.stack([3.0 * labels.float() - 1.5, torch.zeros(n)], -1) + 0.3 * torch.randn(n, 2)
    y = torch.eye(2)[labels]
    flow = RelaxedConditionalFlow(2, 2, num_blocks=3, hidden=(32, 32))

    def model(x, y):
        pyro.module("flow", flow)
        with pyro.plate("data", len(x)):
            pyro.sample("x", flow.condition(y), obs=x)

    svi = SVI(model, lambda x, y: None, Adam({"lr": 3e-3}), Trace_ELBO())
    losses = [svi.step(x, y) / n for _ in range(300)]
    assert sum(losses[-20:]) / 20 < losses[0] - 2.0
    flow.eval()
    with torch.no_grad():
        acc = (flow.predict(x).argmax(-1) == labels).float().mean().item()
        s = flow.condition(torch.eye(2)).sample((500,))
    assert acc > 0.95
    assert abs(s[:, 0, 0].mean().item() + 1.5) < 0.3 and abs(s[:, 1, 0].mean().item() - 1.5) < 0.3


@pytest.mark.parametrize(
    "x, y, err, pattern",
    [
        (torch.randn(4, 3), torch.eye(3)[:4], ValueError, r"x: expected shape \(\.\.\., 2\).*got \(4, 3\)"),
        (torch.randn(4, 2), torch.randn(4, 5), ValueError, r"y: expected shape \(\.\.\., 3\).*got \(4, 5\)"),
        (torch.randn(4, 2).double(), torch.eye(3)[:1].expand(4, 3), TypeError, r"x: expected dtype torch.float32.*got torch.float64"),
        (torch.full((4, 2), float("nan")), torch.eye(3)[:1].expand(4, 3), ValueError, r"x: expected finite values"),
    ],
)
def test_bad_inputs_raise_clear_errors(x, y, err, pattern):
    flow = _flow()
    with pytest.raises(err, match=pattern):
        flow.condition(y).log_prob(x)


def test_wrong_device_is_named():
    flow = _flow()
    with pytest.raises(RuntimeError, match=r"y: expected a tensor on device cpu.*got meta"):
        flow.condition(torch.empty(2, 3, device="meta"))


def test_nan_condition_is_reported():
    flow = _flow()
    with pytest.raises(ValueError, match="y: expected finite values, got 1 NaN"):
        flow.condition(torch.tensor([[0.0, float("nan"), 1.0]]))


def test_conditional_flow_distribution_samples_carry_context_batch():
    flow = conditional_coupling_flow(3, 2, num_blocks=2, hidden=(8,))
    d = ConditionalFlowDistribution(dist.Normal(torch.zeros(3), 1.0).to_event(1), [flow])
    c = torch.randn(4, 2)
    cond = d.condition(c)
    assert cond.batch_shape == (4,) and cond.event_shape == (3,)
    s = cond.sample((5,))
    assert s.shape == (5, 4, 3)
    assert cond.log_prob(s).shape == (5, 4)
    with pytest.raises(ValueError, match=r"context: expected shape \(\.\.\., 2\)"):
        d.condition(torch.randn(4, 3))


def test_conditional_flow_log_prob_matches_change_of_variables():
    torch.manual_seed(0)
    flow = conditional_coupling_flow(2, 1, num_blocks=2, hidden=(8,)).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.2 * torch.randn_like(p))
    d = ConditionalFlowDistribution(dist.Normal(torch.zeros(2, dtype=torch.float64), 1.0).to_event(1), [flow])
    g = torch.linspace(-9, 9, 361, dtype=torch.float64)
    xx = torch.cartesian_prod(g, g)
    with torch.no_grad():
        mass = d.condition(torch.tensor([0.7], dtype=torch.float64)).log_prob(xx).exp().sum() * (g[1] - g[0]) ** 2
    assert math.isclose(mass.item(), 1.0, abs_tol=1e-2)


def test_nan_checks_follow_pyroflows_and_pyro_switches():
    import pyroflows

    flow = _flow()
    bad = torch.full((1, 2), float("nan"))
    y = torch.eye(3)[:1]
    with pyroflows.validation(False):
        assert torch.isnan(flow.condition(y).log_prob(bad)).all()
    with pyro.validation_enabled(False):
        assert torch.isnan(flow.condition(y).log_prob(bad)).all()
    with pytest.raises(ValueError, match="x: expected finite values"):
        flow.condition(y).log_prob(bad)
