"""MotionFlow: causal masks under every ordering, the encoder of eq. (5), the causal gated
residual network, the dynamic latent prior (rollout, temperature, density), the prediction
distribution (causality, eq. (15), Pyro SVI) and clear errors."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyroflows.distributions import DynamicPrior, MotionFlow
from pyroflows.flows import conditional_latent_dynamics, conditional_motionflow, conditional_motionflow_step
from pyroflows.nn.gated_residual import CausalGatedResNet
from pyroflows.nn.masked_conv import LocallyMaskedConv2d, MaskedARN, SpatioTemporalEncoder, local_masks, ordering_ranks, positional_norm
from pyroflows.testing import perturb_parameters


def _dependence(fn, x, position):
    """Which input positions ``(H, W)`` the output at ``position`` depends on (gradient != 0)."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(x)[..., position[0], position[1]].sum(), x)
    return grad.abs().sum(dim=tuple(range(grad.dim() - 2))) > 0


# ----------------------------------------------------------------------------- orderings and masks


def test_named_orderings():
    assert ordering_ranks("raster", 2, 3).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert ordering_ranks("spatial", 2, 3).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert ordering_ranks("temporal", 2, 3).tolist() == [[0, 2, 4], [1, 3, 5]]
    assert ordering_ranks("temporal_reversed", 2, 3).tolist() == [[5, 3, 1], [4, 2, 0]]


_ORDERS = [
    "raster",
    "temporal",
    "raster_reversed",
    "temporal_reversed",
    torch.randperm(20, generator=torch.Generator().manual_seed(3)).reshape(5, 4),
]


@pytest.mark.parametrize("order", _ORDERS, ids=["raster", "temporal", "raster_reversed", "temporal_reversed", "random"])
def test_masked_network_is_causal_under_its_ordering(order):
    torch.manual_seed(0)
    arn = MaskedARN(3, 2, (5, 4), order=order, hidden_channels=(6, 5), dilation=2)
    ranks = ordering_ranks(order, 5, 4)
    x = torch.randn(2, 3, 5, 4)
    reached = torch.zeros(5, 4, dtype=torch.bool)
    for i in range(5):
        for j in range(4):
            dep = _dependence(arn, x, (i, j))
            assert not (dep & (ranks >= ranks[i, j])).any(), f"output {i, j} depends on a position not before it"
            reached |= dep
    if isinstance(order, str):  # a local ordering: every position but the last feeds some output
        assert reached.sum() == 19
    else:  # a random one leaves some positions without a later neighbour in reach
        assert reached.sum() > 10


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_mask_types_exclude_or_include_the_centre(mask_type):
    torch.manual_seed(0)
    conv = LocallyMaskedConv2d(2, 3, (4, 4), order="temporal", mask_type=mask_type)
    ranks = ordering_ranks("temporal", 4, 4)
    x = torch.randn(1, 2, 4, 4)
    for i, j in [(1, 2), (3, 3), (2, 0)]:
        dep = _dependence(conv, x, (i, j))
        assert bool(dep[i, j]) == (mask_type == "B")
        assert not (dep & (ranks > ranks[i, j])).any()


def test_dilated_masks_read_taps_dilation_apart():
    ranks = ordering_ranks("raster", 5, 5)
    m = local_masks(ranks, 3, dilation=2, mask_type="A").reshape(3, 3, 5, 5)
    # centre (2, 2): the taps above it are (0, 0), (0, 2), (0, 4), and the one on its left is (2, 0)
    assert m[:, :, 2, 2].tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    # corner (0, 0) has no earlier in-grid neighbour
    assert m[:, :, 0, 0].sum() == 0


def test_locally_masked_conv_matches_a_plain_conv_where_the_mask_is_full():
    torch.manual_seed(0)
    conv = LocallyMaskedConv2d(2, 3, (4, 4), order="raster", mask_type="B")
    conv.mask.fill_(1.0)
    plain = torch.nn.functional.conv2d(x := torch.randn(2, 2, 4, 4), conv.weight.reshape(3, 2, 3, 3), conv.bias, padding=1)
    assert torch.allclose(conv(x), plain, atol=1e-5)


def test_encoder_combines_the_two_networks_as_eq_5():
    torch.manual_seed(0)
    enc = SpatioTemporalEncoder(3, (6, 2), hidden_channels=(8, 4))
    x = torch.randn(4, 3, 6, 2)
    expected = x + positional_norm(enc.arn1(x)) * torch.sigmoid(enc.arn2(x))
    assert torch.allclose(enc(x), expected)
    assert enc.arn1.layers[0].ranks.tolist() == ordering_ranks("raster", 6, 2).tolist()
    assert enc.arn2.layers[0].ranks.tolist() == ordering_ranks("temporal", 6, 2).tolist()
    p = positional_norm(torch.randn(2, 5, 3, 3))
    assert torch.allclose(p.mean(-3), torch.zeros(2, 3, 3), atol=1e-6)


def test_bad_orderings_and_masks_raise():
    with pytest.raises(ValueError, match="order: expected one of"):
        ordering_ranks("zigzag", 2, 2)
    with pytest.raises(ValueError, match=r"order: expected a rank tensor of shape \(2, 2\)"):
        ordering_ranks(torch.arange(6).reshape(2, 3), 2, 2)
    with pytest.raises(ValueError, match="distinct"):
        ordering_ranks(torch.zeros(2, 2), 2, 2)
    with pytest.raises(ValueError, match="mask_type"):
        local_masks(ordering_ranks("raster", 2, 2), mask_type="C")
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., 2, 4, 4\)"):
        LocallyMaskedConv2d(2, 3, (4, 4))(torch.randn(1, 2, 4, 5))


# ----------------------------------------------------------------------------- dynamic latent prior


def test_gated_residual_network_is_causal_in_time():
    torch.manual_seed(0)
    net = perturb_parameters(CausalGatedResNet(2, 4, hidden_channels=6))
    seq = torch.randn(1, 9, 2, 3, 1, requires_grad=True)
    out = net(seq)
    for t in range(9):
        (grad,) = torch.autograd.grad(out[:, t].sum(), seq, retain_graph=True)
        per_frame = grad.abs().sum(dim=(0, 2, 3, 4))
        assert per_frame[t + 1 :].sum() == 0 and per_frame[: t + 1].sum() > 0


def test_prior_rollout_shapes_and_fresh_prior_repeats_the_last_latent():
    prior = DynamicPrior((2, 3, 1), num_frames=6, hidden_channels=8)
    history = torch.randn(4, 2, 2, 3, 1)
    mean = prior.mean_rollout(history)
    assert mean.shape == (4, 6, 2, 3, 1)
    # zero-initialised read-out: Delta z = 0, sigma = 1, so mu_t = z_{t-1} = the last history frame
    assert torch.allclose(mean, history[:, -1:].expand(4, 6, 2, 3, 1))
    z = torch.randn(4, 6, 2, 3, 1)
    prev = torch.cat([history[:, -1:], z[:, :-1]], dim=1)
    expected = dist.Normal(prev, 1.0).log_prob(z).sum((-1, -2, -3, -4))
    assert torch.allclose(prior.condition(history).log_prob(z), expected, atol=1e-5)
    assert prior.condition(history).sample((3,)).shape == (3, 4, 6, 2, 3, 1)


def test_temperature_zero_gives_the_mean_and_small_temperatures_approach_it():
    torch.manual_seed(0)
    prior = perturb_parameters(DynamicPrior((2, 2, 2), num_frames=5, hidden_channels=6), 0.2).double()
    history = torch.randn(3, 1, 2, 2, 2, dtype=torch.float64)
    mean = prior.condition(history, temperature=0).sample()
    t = prior.dynamics.condition(history)
    assert torch.allclose(t.inv(mean.clone()), torch.zeros_like(mean), atol=1e-10)  # every z_t = mu_t(z_<t)
    for k in range(5):  # and mu_t computed from the rolled-out frames is the frame itself
        mu, _ = t.next_params(torch.cat([history, mean[:, :k]], dim=1))
        assert torch.allclose(mu, mean[:, k], atol=1e-10)
    near = prior.condition(history, temperature=1e-4).sample()
    assert (near - mean).abs().max() < 1e-2
    assert not torch.allclose(prior.condition(history, temperature=1.0).sample(), mean)


def test_prior_density_factorises_over_frames():
    torch.manual_seed(0)
    prior = perturb_parameters(DynamicPrior((2, 1, 1), num_frames=4, hidden_channels=6), 0.3).double()
    history = torch.randn(2, 2, 2, 1, 1, dtype=torch.float64)
    z = torch.randn(2, 4, 2, 1, 1, dtype=torch.float64)
    t = prior.dynamics.condition(history)
    total = 0
    for k in range(4):
        mu, log_sigma = t.next_params(torch.cat([history, z[:, :k]], dim=1))
        total = total + dist.Normal(mu, log_sigma.exp()).log_prob(z[:, k]).sum((-1, -2, -3))
    assert torch.allclose(prior.condition(history).log_prob(z), total, atol=1e-10)


# ----------------------------------------------------------------------------- the prediction distribution


def _motionflow(frame_shape=(3,), residual=False, dtype=torch.float64, **kw):
    torch.manual_seed(0)
    kw = dict(dict(num_steps=2, hidden_channels=6, fc_hidden=(8,), encoder_hidden=(6, 4), prior_hidden=6), **kw)
    mf = MotionFlow(frame_shape, num_observed=4, num_future=3, residual=residual, **kw).to(dtype)
    x = torch.randn(5, 4, *frame_shape, dtype=dtype)
    mf.condition(x).log_prob(torch.randn(5, 3, *frame_shape, dtype=dtype))  # data-dependent init
    return perturb_parameters(mf), x


@pytest.mark.parametrize("frame_shape, residual", [((3,), False), ((2, 2, 1), True)], ids=["vector", "image_residual"])
def test_frames_depend_only_on_earlier_noise_and_scores_only_on_earlier_frames(frame_shape, residual):
    mf, x = _motionflow(frame_shape, residual)
    t = mf.transform.condition(x[:1])
    eps = torch.randn(1, 3, *frame_shape, dtype=torch.float64)
    n = eps[0].numel() // 3
    jac = torch.autograd.functional.jacobian(lambda e: t(e.reshape(eps.shape)).reshape(-1), eps.reshape(-1)).reshape(3, n, 3, n)
    y = t(eps)
    jac_inv = torch.autograd.functional.jacobian(
        lambda v: mf.transform.condition(x[:1]).inv(v.reshape(y.shape)).reshape(-1), y.reshape(-1)
    ).reshape(3, n, 3, n)
    for a in range(3):
        for b in range(a + 1, 3):
            assert jac[a, :, b].abs().max() == 0 and jac_inv[a, :, b].abs().max() == 0
    ladj = t.log_abs_det_jacobian(eps, y)
    assert torch.allclose(ladj[0], sum(torch.linalg.slogdet(jac[k, :, k])[1] for k in range(3)), atol=1e-8)


def test_residual_parameterisation_predicts_changes_from_the_last_frame():
    # with the flow and the prior at the identity, the rollout of zero noise repeats the last
    # observed frame's latent; in residual mode that latent is the last change, so the rollout
    # continues the last observed step at constant velocity (here: the flow is the identity)
    torch.manual_seed(0)
    mf = (
        MotionFlow((2,), num_observed=3, num_future=4, residual=True, num_steps=1, hidden_channels=4, fc_hidden=(4,), prior_hidden=4)
        .double()
        .eval()
    )
    x = torch.tensor([[[0.0, 0.0], [1.0, 2.0], [2.0, 4.0]]], dtype=torch.float64)
    mean = mf.condition(x, temperature=0).sample()
    expected = torch.tensor([[[3.0, 6.0], [4.0, 8.0], [5.0, 10.0], [6.0, 12.0]]], dtype=torch.float64)
    assert torch.allclose(mean, expected, atol=1e-10)
    plain = MotionFlow((2,), num_observed=3, num_future=4, num_steps=1, hidden_channels=4, fc_hidden=(4,), prior_hidden=4).double().eval()
    assert torch.allclose(plain.condition(x, temperature=0).sample(), x[:, -1:].expand(1, 4, 2), atol=1e-10)  # last frame repeated


def test_predict_is_the_mean_of_samples_eq_15():
    mf, x = _motionflow()
    torch.manual_seed(5)
    pred = mf.predict(x, num_samples=4, temperature=0.5)
    torch.manual_seed(5)
    samples = mf.condition(x, temperature=0.5).sample((4,))
    assert pred.shape == (5, 3, 3) and torch.allclose(pred, samples.mean(0))


def test_log_prob_broadcasts_and_samples_carry_the_context_batch():
    mf, x = _motionflow((2, 2, 1))
    d = mf.condition(x)
    assert d.batch_shape == (5,) and d.event_shape == (3, 2, 2, 1)
    y = d.sample((2,))
    assert y.shape == (2, 5, 3, 2, 2, 1) and d.log_prob(y).shape == (2, 5)
    assert torch.isfinite(d.log_prob(y)).all()


def test_bad_inputs_raise_clear_errors():
    mf, x = _motionflow()
    # the errors name the argument the user passed: the observed frames
    with pytest.raises(ValueError, match=r"observed: expected shape \(\.\.\., 4, 3\)"):
        mf.condition(torch.randn(5, 3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"observed: expected shape \(\.\.\., 4, 3\)"):
        mf.predict(torch.randn(5, 4, 2, dtype=torch.float64))
    with pytest.raises(TypeError, match="observed: expected dtype torch.float64"):
        mf.condition(x.float())
    with pytest.raises(ValueError, match="observed: expected finite values"):
        mf.condition(torch.full_like(x, float("nan")))
    with pytest.raises(ValueError, match="temperature"):
        mf.condition(x, temperature=-1.0)
    with pytest.raises(ValueError, match="num_samples"):
        mf.predict(x, num_samples=0)
    with pytest.raises(ValueError, match="event_shape"):  # Pyro's own check of the value
        mf.condition(x).log_prob(torch.randn(5, 3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="history"):
        MotionFlow((3,), num_observed=4, num_future=2, history=4)
    with pytest.raises(ValueError, match="frame_shape"):
        MotionFlow((3, 2), num_observed=4, num_future=2)
    with pytest.raises(ValueError, match="at least 2 channels"):
        MotionFlow((1,), num_observed=4, num_future=2)
    with pytest.raises(ValueError, match="num_future"):
        MotionFlow((3,), num_observed=4, num_future=0)
    with pytest.raises(ValueError, match="context_shape"):
        conditional_motionflow_step(4, (3, 2))
    with pytest.raises(ValueError, match=r"context: expected shape \(\.\.\., \*, 2, 3, 1\)"):
        conditional_latent_dynamics((2, 3, 1)).condition(torch.randn(4, 2, 3))
    with pytest.raises(ValueError, match="frame_shape"):
        conditional_motionflow((3, 2), num_observed=3)


def test_pyro_svi_with_motionflow_as_likelihood_decreases_the_loss(one_thread):
    pyro.clear_param_store()
    torch.manual_seed(0)
    # straight lines with random slopes: frame t = a + b t (two coordinates)
    n, u, v = 64, 4, 3
    a, b = torch.randn(n, 1, 2), 0.3 * torch.randn(n, 1, 2)
    seq = a + b * torch.arange(u + v, dtype=torch.float32).view(1, -1, 1)
    x, y = seq[:, :u], seq[:, u:]
    mf = MotionFlow(
        (2,), num_observed=u, num_future=v, num_steps=2, hidden_channels=16, fc_hidden=(16,), encoder_hidden=(8, 8), prior_hidden=8
    )

    def model(x, y):
        pyro.module("motionflow", mf)
        with pyro.plate("sequences", len(x)):
            pyro.sample("y", mf.condition(x), obs=y)

    svi = SVI(model, lambda x, y: None, Adam({"lr": 3e-3}), Trace_ELBO())
    losses = [svi.step(x, y) / n for _ in range(40)]
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5, losses
