"""Neural spline flows, MADE and the autoregressive flows: tails, masks, directions, Pyro parity."""

import math
from functools import partial

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.transforms import AffineAutoregressive as PyroAffineAutoregressive
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormalizingFlow
from pyro.nn import AutoRegressiveNN

import pyroflows.transforms as T
from pyroflows.nn import MADE
from pyroflows.testing import perturb_parameters

SPLINE_FLOWS = {
    "spline_coupling": lambda: T.spline_coupling(4, (16,), bound=2.0),
    "spline_coupling_image": lambda: T.spline_coupling(2, 4, event_dim=3, bound=2.0),
    "spline_autoregressive_maf": lambda: T.spline_autoregressive(4, (16,), bound=2.0),
    "spline_autoregressive_iaf": lambda: T.spline_autoregressive(4, (16,), cheap="forward", bound=2.0),
    "conditional_spline_coupling": lambda: T.conditional_spline_coupling(4, 2, (16,), bound=2.0),
    "conditional_spline_autoregressive": lambda: T.conditional_spline_autoregressive(4, 2, (16,), bound=2.0),
    "spline_coupling_flow": lambda: T.spline_coupling_flow(4, num_blocks=2, hidden=(16,), bound=2.0, seed=0),
    "spline_coupling_transform_passive": lambda: T.spline_coupling(4, (16,), bound=2.0, transform_passive=True),
    "conditional_spline_coupling_transform_passive": lambda: T.conditional_spline_coupling(4, 2, (16,), bound=2.0, transform_passive=True),
}


def _bind(flow, n):
    if isinstance(flow, T.ConditionalFlowModule) or hasattr(flow, "context_shape"):
        return flow.condition(torch.randn(n, 2, dtype=torch.float64))
    return flow


@pytest.mark.parametrize("name", SPLINE_FLOWS)
def test_far_tails_are_the_identity_with_zero_log_det(name):
    torch.manual_seed(0)
    flow = perturb_parameters(SPLINE_FLOWS[name]().double(), 0.5)
    shape = (2, 3, 3) if name.endswith("image") else (4,)
    x = torch.full((2,) + shape, 1e3, dtype=torch.float64)
    x[1] = -1e3
    t = _bind(flow, 2)
    for direction in ("forward", "inverse"):
        fresh = _bind(flow, 2) if not isinstance(t, torch.nn.Module) else t
        run = fresh if direction == "forward" else fresh.inv
        out = run(x.clone())
        assert torch.isfinite(out).all()
        assert torch.equal(out, x), f"{name}: the {direction} map moved points at +-1e3"
    ladj = t.log_abs_det_jacobian(x, t(x))
    assert torch.isfinite(ladj).all() and torch.equal(ladj, torch.zeros_like(ladj))


def test_spline_is_monotone_continuous_at_the_bounds_and_its_inverse_is_exact():
    torch.manual_seed(1)
    raw = torch.randn(1, 3 * 5 - 1, dtype=torch.float64)
    x = torch.linspace(-4, 4, 20001, dtype=torch.float64)
    y, logd = T.rational_quadratic(x, raw, bound=3.0)
    assert (y.diff() > 0).all()
    # C1 at the bounds: the value and slope match the identity tails
    for b in (-3.0, 3.0):
        v = torch.tensor([b - 1e-7, b + 1e-7], dtype=torch.float64)
        yv, lv = T.rational_quadratic(v, raw, bound=3.0)
        assert (yv - v).abs().max() < 1e-6 and lv.abs().max() < 1e-5
    x_back, logd_inv = T.rational_quadratic(y, raw, bound=3.0, inverse=True)
    assert (x_back - x).abs().max() < 1e-10
    assert (logd_inv - logd).abs().max() < 1e-8  # both are log dy/dx of the forward map
    v = x.clone().requires_grad_(True)
    (slope,) = torch.autograd.grad(T.rational_quadratic(v, raw, bound=3.0)[0].sum(), v)
    assert (torch.log(slope) - logd).abs().max() < 1e-10


def test_max_bin_ratio_bounds_the_bins_softly_and_none_leaves_them_free():
    # after the soft bound, no softmax share exceeds another by more than the ratio, however far
    # apart the raw values; raw zeros stay zeros, so the identity at initialisation is kept
    u = torch.tensor([[-1e6, -30.0, -1.0, 0.0, 1.0, 30.0, 1e6]], dtype=torch.float64)
    for ratio in (10.0, 1e3):
        b = T.bounded_bin_logits(u, ratio)
        share = torch.softmax(b, -1)
        assert share.max() / share.min() < ratio
        c = 0.5 * math.log(ratio)
        assert torch.allclose(b, u / (1 + u.abs() / c)) and b[0, 3] == 0.0
    assert torch.equal(T.bounded_bin_logits(u, None), u)
    # in the spline: a first bin of huge width and tiny height makes the map nearly flat there
    # unbounded; bounded, the flattest slope stays orders of magnitude steeper
    k = 4
    raw = torch.zeros(1, 3 * k - 1, dtype=torch.float64)
    raw[0, 0], raw[0, k] = 50.0, -50.0
    x = torch.linspace(-3.0, 3.0, 4001, dtype=torch.float64)[1:-1]
    _, free = T.rational_quadratic(x, raw, 3.0, max_bin_ratio=None)
    _, bounded = T.rational_quadratic(x, raw, 3.0)
    assert free.min() < bounded.min() - math.log(100.0)


def test_zero_raw_values_give_the_identity():
    x = torch.randn(50, dtype=torch.float64)
    y, logd = T.rational_quadratic(x, torch.zeros(50, 3 * 8 - 1, dtype=torch.float64))
    assert torch.allclose(y, x, atol=1e-12) and logd.abs().max() < 1e-12


@pytest.mark.parametrize("inverse", [False, True])
def test_shared_raw_values_give_what_the_same_values_per_element_give(inverse):
    # raw values shared by a batch are normalised once and broadcast; values and first and second
    # derivatives must be those of the same values repeated for every element
    torch.manual_seed(0)
    raw = torch.randn(3, 3 * 5 - 1, dtype=torch.float64, requires_grad=True)
    v = torch.randn(7, 3, dtype=torch.float64) * 2.5
    v[0, 0] = 40.0  # a tail element
    per_element = raw.expand(7, 3, -1)

    def outputs(r):
        out, logd = T.rational_quadratic(v, r, bound=3.0, inverse=inverse)
        return out.sin().sum() + logd.cos().sum()

    shared, repeated = outputs(raw), outputs(per_element.clone())
    assert torch.allclose(shared, repeated, atol=1e-12)
    (g_shared,) = torch.autograd.grad(outputs(raw), raw, create_graph=True)
    (g_repeated,) = torch.autograd.grad(outputs(per_element.clone()), raw, create_graph=True)
    assert torch.allclose(g_shared, g_repeated, atol=1e-10)
    (h_shared,) = torch.autograd.grad(g_shared.square().sum(), raw)
    (h_repeated,) = torch.autograd.grad(g_repeated.square().sum(), raw)
    assert torch.allclose(h_shared, h_repeated, atol=1e-8)


def test_a_transformed_passive_half_is_an_input_independent_spline_and_the_conditioner_sees_x_a():
    torch.manual_seed(0)
    plain = T.spline_coupling(4, (16,), count_bins=5).double()
    passive = T.spline_coupling(4, (16,), count_bins=5, transform_passive=True).double()
    x = torch.randn(50, 4, dtype=torch.float64)
    y = passive(x)
    assert torch.allclose(y, x, atol=1e-12)  # zero raw values: the identity at initialisation
    passive.conditioner.load_state_dict(perturb_parameters(plain, 0.3).conditioner.state_dict())
    with torch.no_grad():
        passive.passive.raw.normal_(0.0, 0.5)
    y, y_plain = passive(x), plain(x)
    # the second half is the plain coupling's map, conditioned on x_a, not on y_a
    assert torch.allclose(y[:, 2:], y_plain[:, 2:], atol=1e-12)
    # the first half: one spline per feature, the same for every input
    phi = passive.passive.raw.unflatten(0, (14, 2)).T
    expected, logd = T.rational_quadratic(x[:, :2], phi, bound=3.0)
    assert torch.allclose(y[:, :2], expected, atol=1e-12) and not torch.allclose(y[:, :2], x[:, :2])
    ladj = passive.log_abs_det_jacobian(x, y)
    assert torch.allclose(ladj, plain.log_abs_det_jacobian(x, y_plain) + logd.sum(-1), atol=1e-10)
    assert torch.allclose(passive.inv(y.clone()), x, atol=1e-10)


def test_a_conditional_transformed_passive_half_depends_on_the_context_only():
    torch.manual_seed(0)
    flow = perturb_parameters(T.conditional_spline_coupling(4, 2, (16,), transform_passive=True).double(), 0.3)
    x = torch.randn(1, 4, dtype=torch.float64).expand(3, 4)
    c = torch.randn(3, 2, dtype=torch.float64)
    y = flow.condition(c)(x)
    assert not torch.allclose(y[0, :2], y[1, :2])  # other contexts, other splines
    x2 = x.clone()
    x2[:, 2:] += 1.0
    assert torch.allclose(flow.condition(c)(x2)[:, :2], y[:, :2], atol=1e-12)  # not a function of x_b


def test_a_transformed_passive_half_learns_the_marginal_a_plain_coupling_cannot():
    # x_0 is bimodal and conditions x_1: a single plain coupling leaves x_0 as it is, so its density
    # stays Gaussian in x_0; the passive spline learns the bimodal marginal
    g = torch.Generator().manual_seed(0)

    def batch(n):
        x0 = torch.where(torch.rand(n, generator=g) < 0.5, -1.5, 1.5) + 0.3 * torch.randn(n, generator=g)
        return torch.stack([x0, 0.5 * x0 + 0.2 * torch.randn(n, generator=g)], -1)

    losses = {}
    for transform_passive in (False, True):
        torch.manual_seed(0)
        flow = T.spline_coupling(2, (32,), split=1, count_bins=8, transform_passive=transform_passive)
        d = dist.TransformedDistribution(dist.Normal(torch.zeros(2), 1.0).to_event(1), [flow])
        opt = torch.optim.Adam(flow.parameters(), lr=1e-2)
        for _ in range(300):
            opt.zero_grad()
            loss = -d.log_prob(batch(256)).mean()
            loss.backward()
            opt.step()
        with torch.no_grad():
            losses[transform_passive] = -d.log_prob(batch(4096)).mean().item()
    assert losses[True] < losses[False] - 0.3, losses


@pytest.mark.parametrize("hidden", [(), (7,), (5, 9, 4)])
@pytest.mark.parametrize("context", [0, 2])
def test_made_outputs_depend_only_on_preceding_inputs(hidden, context):
    torch.manual_seed(0)
    d, p = 4, 3
    net = MADE(d, p, hidden, context_features=context, activation=torch.nn.Tanh, zero_init=False).double()  # no dead units
    x = torch.randn(d, dtype=torch.float64)
    c = torch.randn(context, dtype=torch.float64) if context else None
    jac = torch.autograd.functional.jacobian(lambda v: net(v, c), x)  # (p * d, d)
    for k in range(p * d):
        i = k % d
        assert (jac[k, i:] == 0).all(), f"output {k} (feature {i}) depends on inputs >= {i}"
    assert jac[d - 1 :: d, : d - 1].abs().sum() > 0, "the last feature's outputs see none of the inputs before it"
    if context:
        jc = torch.autograd.functional.jacobian(lambda u: net(x, u), c)
        assert (jc.abs().sum(1) > 0).all(), "some outputs do not see the context"


@pytest.mark.parametrize("cheap", ["forward", "inverse"])
def test_the_cheap_direction_takes_one_network_pass_the_other_one_per_feature(cheap):
    d = 5
    layer = T.affine_autoregressive(d, (8,), cheap=cheap)
    calls = []
    layer.conditioner.register_forward_hook(lambda *args: calls.append(1))
    x = torch.randn(3, d)
    layer(x)
    forward_calls = len(calls)
    calls.clear()
    layer.inv(x.clone())
    inverse_calls = len(calls)
    assert (forward_calls, inverse_calls) == ((1, d) if cheap == "forward" else (d, 1))


def _pyro_and_ours_on_copied_weights(d, hidden):
    """Pyro's ``AffineAutoregressive`` and ours with ``cheap="forward"``, the same weights."""
    torch.manual_seed(0)
    arn = AutoRegressiveNN(d, hidden, param_dims=[1, 1], permutation=torch.arange(d), skip_connections=False)
    pyro_layer = PyroAffineAutoregressive(arn)
    ours = T.affine_autoregressive(d, tuple(hidden), cheap="forward", clamp=None)
    with torch.no_grad():
        for p in arn.parameters():
            p.mul_(0.3)  # keep Pyro's hard clip of the log-scale, [-5, 3], inactive
        for mine, theirs in zip(ours.conditioner.layers, arn.layers, strict=True):
            w, b, m = theirs.weight, theirs.bias, theirs.mask
            if mine is ours.conditioner.layers[-1]:  # Pyro's blocks are [mean, log_scale], ours [log_scale, shift]
                w, b, m = (torch.cat([v[d:], v[:d]]) for v in (w, b, m))
            mine.weight.copy_(w)
            mine.bias.copy_(b)
            mine.mask.copy_(m)
    return pyro_layer, ours


def test_iaf_matches_pyro_affine_autoregressive_on_copied_weights():
    d = 4
    pyro_layer, ours = _pyro_and_ours_on_copied_weights(d, [12, 12])
    base = dist.Normal(torch.zeros(d), 1.0).to_event(1)
    x = torch.randn(10, d)
    want = dist.TransformedDistribution(base, [pyro_layer]).log_prob(x)
    got = dist.TransformedDistribution(base, [ours]).log_prob(x)
    assert torch.allclose(got, want, atol=1e-6), (got - want).abs().max()
    eps = torch.randn(10, d)
    assert torch.allclose(ours(eps), pyro_layer(eps), atol=1e-6)


def test_maf_in_pyros_form_matches_pyro_on_copied_weights():
    # Pyro's MAF is its affine autoregressive layer entered as .inv: log_prob runs the layer's
    # one-pass direction on the data; ours in the same form is the same density, weight for weight
    d = 4
    pyro_layer, ours = _pyro_and_ours_on_copied_weights(d, [12, 12])
    base = dist.Normal(torch.zeros(d), 1.0).to_event(1)
    x = 2.0 * torch.randn(10, d)
    want = dist.TransformedDistribution(base, [pyro_layer.inv]).log_prob(x)
    got = dist.TransformedDistribution(base, [ours.inv]).log_prob(x)
    assert torch.allclose(got, want, atol=1e-6), (got - want).abs().max()
    calls = []
    ours.conditioner.register_forward_hook(lambda *args: calls.append(1))
    dist.TransformedDistribution(base, [ours.inv]).log_prob(x.clone())
    assert len(calls) == 1  # one MADE pass per layer for the density
    eps = torch.randn(10, d)
    assert torch.allclose(ours.inv(eps), pyro_layer.inv(eps), atol=1e-5)  # sampling: D passes in both


def test_iaf_is_a_one_line_swap_for_auto_normalizing_flow():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    target = torch.tensor([1.0, -2.0, 0.5])

    def model():
        pyro.sample("z", dist.Normal(target, 0.5).to_event(1))

    guide = AutoNormalizingFlow(model, partial(T.iaf, num_blocks=2, hidden=(16,)))
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 2e-2}), Trace_ELBO(num_particles=4))
    losses = [svi.step() for _ in range(200)]
    assert sum(losses[-20:]) / 20 < sum(losses[:20]) / 20 - 1.0
    with torch.no_grad():
        mean = torch.stack([guide()["z"] for _ in range(400)]).mean(0)
    assert (mean - target).abs().max() < 0.2
