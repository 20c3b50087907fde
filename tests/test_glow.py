"""Glow: squeeze, the packed multi-scale latent, Glow's likelihood, temperature, checkpointing,
dequantisation / bits per dimension, a small fit on 8x8 digits and the conditional Glow in Pyro."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pytest
import torch

import pyroflows
from pyroflows.distributions import ConditionalFlowDistribution
from pyroflows.distributions.dequantize import (
    bits_per_dim,
    dequantization_offset,
    discrete_log_likelihood_bound,
    quantize,
    uniform_dequantize,
)
from pyroflows.flows import conditional_glow, glow
from pyroflows.testing import perturb_parameters
from pyroflows.transforms import Squeeze, Unsqueeze
from pyroflows.transforms.base import soft_clamp
from pyroflows.transforms.squeeze import squeeze, unsqueeze

pytestmark = pytest.mark.usefixtures("one_thread")


def _initialised(flow, x, context=None, perturb=0.05, seed=0):
    """Run one batch (ActNorm's initialisation), then move every parameter off its initial value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        (flow if context is None else flow.condition(context)).inv(x)
        for p in flow.parameters():
            p.add_(perturb * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return flow


# ----------------------------------------------------------------------------- squeeze


@pytest.mark.parametrize("shape", [(5, 3, 4, 6), (2, 3, 2, 4, 6, 8)])
def test_squeeze_round_trip_is_exact(shape):
    event_dim = 3 if len(shape) == 4 else 4  # (batch, C, H, W) or (batch, batch, C, D, H, W)
    x = torch.randn(shape)
    t = Squeeze(event_dim)
    y = t(x)
    block = 2 ** (event_dim - 1)
    assert y.shape == x.shape[: x.dim() - event_dim] + (shape[-event_dim] * block,) + tuple(
        s // 2 for s in shape[x.dim() - event_dim + 1 :]
    )
    assert torch.equal(Squeeze(event_dim).inv(y), x)
    assert torch.equal(Unsqueeze(event_dim)(y), x)
    assert torch.equal(Unsqueeze(event_dim).inv(x), y)
    assert tuple(t.forward_shape(x.shape)) == tuple(y.shape) and tuple(t.inverse_shape(y.shape)) == tuple(x.shape)
    assert torch.equal(t.log_abs_det_jacobian(x, y), torch.zeros(x.shape[: x.dim() - event_dim]))


def test_squeeze_layout():
    # channel c * 8 + 4 i + 2 j + k of the squeezed volume holds x[c, 2p + i, 2q + j, 2r + k]
    x = torch.randn(2, 3, 4, 6, 8)
    y = squeeze(x, 4)
    for c, i, j, k, p, q, r in [(0, 0, 0, 0, 0, 0, 0), (1, 1, 0, 1, 1, 2, 3), (1, 1, 1, 1, 0, 1, 2)]:
        assert y[1, c * 8 + 4 * i + 2 * j + k, p, q, r] == x[1, c, 2 * p + i, 2 * q + j, 2 * r + k]
    img = torch.arange(16.0).reshape(1, 4, 4)
    assert squeeze(img, 3)[:, 1, 1].tolist() == [10.0, 11.0, 14.0, 15.0]
    assert torch.equal(unsqueeze(squeeze(x, 4), 4), x)


def test_squeeze_factor_three_round_trip():
    x = torch.randn(2, 1, 6, 9)
    t = Squeeze(3, factor=3)
    assert t(x).shape == (2, 9, 2, 3)
    assert torch.equal(t.inv(t(x)), x)


def test_squeeze_shape_errors_name_the_sizes():
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., C, H, W\) with spatial sizes divisible by 2, got \(2, 3, 5, 4\)"):
        Squeeze(3)(torch.randn(2, 3, 5, 4))
    with pytest.raises(ValueError, match=r"y: expected .* C divisible by 8"):
        Squeeze(4).inv(torch.randn(2, 4, 2, 2, 2))
    with pytest.raises(ValueError, match=r"x: expected shape"):
        Squeeze(3, num_channels=2)(torch.randn(3, 4, 4))
    with pytest.raises(ValueError, match=r"shape: expected"):
        Squeeze(4).forward_shape((3, 1, 4, 5, 4))
    with pytest.raises(ValueError, match=r"event_dim"):
        Squeeze(2)


# ----------------------------------------------------------------------------- the packed latent


def _encode_by_hand(flow, x):
    """Glow's encoder written out level by level: ``(eps parts, log p(x))`` with the priors
    scored as Gaussians N(mu(h), sigma(h)) -- the formulation of the Glow paper."""
    edim = flow.layout.event_dim
    normal = torch.distributions.Normal
    logp, parts, v = 0.0, [], x
    for level in range(flow.num_levels):
        v = squeeze(v, edim)
        for step in flow.steps[level]:
            v, ladj = step.inverse_and_ladj(v)
            logp = logp - ladj  # log|det| of the encoder = -log|det| of Pyro's forward
        if level < flow.num_levels - 1:
            prior = flow.priors[level]
            h, z = v.split(flow.splits[level], dim=-edim)
            log_sigma, mu = prior.conditioner(h).chunk(2, dim=-edim)
            log_sigma = soft_clamp(log_sigma, flow.prior_clamp)
            logp = logp + normal(mu, log_sigma.exp()).log_prob(z).flatten(-edim).sum(-1)
            parts.append((z - mu) / log_sigma.exp())
            v = h
    log_sigma, mu = flow.top()
    log_sigma = soft_clamp(log_sigma, flow.prior_clamp)
    logp = logp + normal(mu, log_sigma.exp()).log_prob(v).flatten(-edim).sum(-1)
    parts.append((v - mu) / log_sigma.exp())
    return parts, logp


@pytest.mark.parametrize("shape", [(2, 8, 8), (1, 4, 8, 8)])
def test_packed_latent_layout_and_glow_likelihood(shape):
    torch.manual_seed(0)
    flow = glow(shape, num_levels=3 if len(shape) == 3 else 2, num_steps=2, hidden_channels=8).double()
    x = torch.randn((4,) + shape, dtype=torch.float64)
    _initialised(flow, x)
    z = flow.inv(x)
    assert z.shape == x.shape
    parts, logp = _encode_by_hand(flow, x)
    got = flow.unpack(z)
    assert [p.shape for p in got] == [p.shape for p in parts]
    for a, b in zip(got, parts, strict=True):
        assert torch.allclose(a, b, atol=1e-10)
    # packing is a fixed rearrangement: exact both ways
    assert torch.equal(flow.pack(got), z)
    assert all(torch.equal(a, b) for a, b in zip(flow.unpack(flow.pack(parts)), parts, strict=True))
    # a standard Normal over the packed latent gives Glow's likelihood with its learned priors
    assert torch.allclose(flow.distribution().log_prob(x), logp, atol=1e-9)
    # the whole multi-scale map round-trips
    assert (flow(z.clone()) - x).abs().max() < 1e-10


def test_unpack_shapes_image():
    flow = glow((3, 16, 16), num_levels=3, num_steps=1, hidden_channels=4)
    parts = flow.unpack(torch.randn(5, 3, 16, 16))
    # level 0: 12 channels at 8x8, half factored out; level 1: 24 at 4x4; top: 48 at 2x2
    assert [tuple(p.shape) for p in parts] == [(5, 6, 8, 8), (5, 12, 4, 4), (5, 48, 2, 2)]
    assert sum(p[0].numel() for p in parts) == 3 * 16 * 16


def test_bad_configurations_raise():
    with pytest.raises(ValueError, match=r"divisible by 8"):
        glow((1, 12, 12), num_levels=3)
    with pytest.raises(ValueError, match=r"scale"):
        glow((1, 8, 8), 2, 1, 4, scale="exp")
    with pytest.raises(ValueError, match=r"context_shape"):
        conditional_glow((1, 8, 8), (2, 4, 4), 2, 1, 4)
    with pytest.raises(ValueError, match=r"temperature"):
        glow((1, 8, 8), 2, 1, 4).distribution(temperature=0.0)


# ----------------------------------------------------------------------------- temperature


def test_temperature_scales_the_base_noise_at_every_level():
    torch.manual_seed(0)
    flow = glow((1, 8, 8), num_levels=2, num_steps=1, hidden_channels=8)
    _initialised(flow, torch.rand(32, 1, 8, 8) - 0.5)
    temperature = 0.6
    with torch.no_grad():
        torch.manual_seed(3)
        x = flow.distribution(temperature).sample((6,))
        torch.manual_seed(3)
        eps = torch.randn(6, 1, 8, 8)
        assert torch.allclose(x, flow(temperature * eps), atol=1e-6)
        # at the top level z = mu + T sigma eps: Glow's reduced-temperature prior
        z_top = _encode_by_hand(flow, x)[0][-1]
        assert torch.allclose(z_top, temperature * flow.unpack(eps)[-1], atol=1e-4)
        # lower temperature, less spread around the mode
        spread = {t: flow.distribution(t).sample((200,)).std(0).mean() for t in (0.3, 1.0)}
    assert spread[0.3] < spread[1.0]


# ----------------------------------------------------------------------------- checkpointing


class _Saved:
    def __init__(self):
        self.bytes = 0

    def __enter__(self):
        def pack(t):
            self.bytes += t.numel() * t.element_size()
            return t

        self._ctx = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


@pytest.mark.parametrize("kind", ["image", "volume_map_context"])
def test_checkpoint_gives_the_same_gradients(kind):
    if kind == "image":
        shape, ctx = (2, 8, 8), None

        def make(ck):
            return glow(shape, 2, 2, 8, checkpoint=ck)

    else:
        shape, ctx = (1, 4, 4, 4), (2, 4, 4, 4)

        def make(ck):
            return conditional_glow(shape, ctx, 2, 2, 4, checkpoint=ck)

    torch.manual_seed(0)
    plain = make(False).double()
    torch.manual_seed(0)
    ckpt = make(True).double()
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), ckpt.state_dict().values(), strict=True))
    g = torch.Generator().manual_seed(1)
    x = torch.randn((3,) + shape, generator=g, dtype=torch.float64)
    c = None if ctx is None else torch.randn((3,) + ctx, generator=g, dtype=torch.float64)
    eps = torch.randn((3,) + shape, generator=g, dtype=torch.float64)
    grads, saved = {}, {}
    for name, flow in (("plain", plain), ("checkpoint", ckpt)):
        xi, ci = x.clone().requires_grad_(True), None if c is None else c.clone().requires_grad_(True)
        with _Saved() as rec:
            # fresh flows: ActNorm initialises on this first call with gradients, then the rest
            # of the calls run under checkpointing
            t = flow if ci is None else flow.condition(ci)
            z = t.inv(xi)
            loss = (z**2).sum() - t.log_abs_det_jacobian(z, xi).sum()
            t = flow if ci is None else flow.condition(ci)
            xs = t(eps.clone())
            loss = loss + (xs**3).sum() + t.log_abs_det_jacobian(eps, xs).sum()
        loss.backward()
        saved[name] = rec.bytes
        grads[name] = [p.grad for p in flow.parameters()] + [xi.grad] + ([] if ci is None else [ci.grad])
    for a, b in zip(grads["plain"], grads["checkpoint"], strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-11)
    # the second half of the loss (after initialisation) ran checkpointed: less was stored
    assert saved["checkpoint"] < saved["plain"]


def test_checkpoint_stores_less_after_initialisation():
    torch.manual_seed(0)
    flow = glow((1, 8, 8, 8), num_levels=2, num_steps=3, hidden_channels=16)
    x = torch.rand(2, 1, 8, 8, 8) - 0.5
    _initialised(flow, x, perturb=0.0)
    saved = {}
    for mode in (False, True):
        flow.checkpoint = mode
        with _Saved() as rec:
            loss = -flow.distribution().log_prob(x.clone()).sum()
        loss.backward()
        saved[mode] = rec.bytes
    assert saved[True] * 4 < saved[False], saved


# ----------------------------------------------------------------------------- dequantisation, bits/dim


def test_bits_per_dim_hand_computed():
    # uniform density on the unit cube: log p = 0, bits/dim = log2(B)
    assert torch.allclose(bits_per_dim(torch.zeros(3), num_dims=5), torch.full((3,), 8.0))
    assert torch.allclose(bits_per_dim(torch.zeros(()), num_dims=64, num_bins=17), torch.tensor(math.log2(17)))
    # D = 2, B = 4, log p = log 2: -(log 2 - 2 log 4) / (2 log 2) = -(1 - 4) / 2 = 1.5 bits
    assert torch.allclose(bits_per_dim(torch.tensor(math.log(2.0)), num_dims=2, num_bins=4), torch.tensor(1.5))
    # a density of 2^D on a half cube: one bit per dim fewer than uniform
    d = 10
    assert torch.allclose(bits_per_dim(torch.tensor(d * math.log(2.0)), d), torch.tensor(7.0))
    assert dequantization_offset(3, 256) == pytest.approx(3 * math.log(256))
    assert torch.allclose(discrete_log_likelihood_bound(torch.tensor(1.0), 2, 4), torch.tensor(1.0 - 2 * math.log(4)))


def test_uniform_dequantize_cells_and_quantize():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (1000, 3))
    y = uniform_dequantize(x, 256, generator=g)
    assert y.dtype == torch.get_default_dtype()
    assert bool(((y >= x / 256) & (y < (x + 1) / 256)).all())
    assert torch.equal(quantize(y, 256), x)
    # the noise is uniform in the cell: mean offset 1/2, variance 1/12 (in units of a cell)
    u = y * 256 - x
    assert abs(u.mean().item() - 0.5) < 0.02 and abs(u.var().item() - 1 / 12) < 0.01
    assert uniform_dequantize(x.double(), 256).dtype == torch.float64
    with pytest.raises(ValueError, match=r"x: expected integer levels in \[0, 16\]"):
        uniform_dequantize(torch.tensor([0, 17]), 17)
    with pytest.raises(ValueError, match=r"num_bins"):
        bits_per_dim(torch.zeros(1), 4, num_bins=1)


@pytest.mark.experiment
def test_digits_maximum_likelihood_beats_simple_baselines():
    """A small Glow fitted to the 8x8 digits (levels 0..16, so B = 17 bins and a uniform model
    scores log2(17) = 4.09 bits/dim), scored on the held-out split.

    Measured: test bits/dim 2.53 after 400 steps (2.44 after 600); a full-covariance Gaussian
    fitted to the dequantised training data scores 2.93, an independent per-pixel histogram (a
    discrete model with add-one smoothing) 2.43. The bar: at least 0.2 bits/dim below the Gaussian
    and 1.3 below uniform.
    """
    from models.common.data.digits import sklearn_digits

    torch.manual_seed(0)
    data = sklearn_digits()
    bins = 17
    x_train = torch.tensor(np.round(data.x_train * 16)).reshape(-1, 1, 8, 8)
    x_test = torch.tensor(np.round(data.x_test * 16)).reshape(-1, 1, 8, 8)
    g = torch.Generator().manual_seed(1)
    flow = glow((1, 8, 8), num_levels=2, num_steps=4, hidden_channels=32)
    d = flow.distribution()
    with pyroflows.validation(False):
        with torch.no_grad():  # ActNorm's data-dependent initialisation on a large batch
            d.log_prob(uniform_dequantize(x_train[:512], bins, g) - 0.5)
        opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
        for _ in range(400):
            idx = torch.randint(len(x_train), (64,), generator=g)
            loss = -d.log_prob(uniform_dequantize(x_train[idx], bins, g) - 0.5).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            g_test = torch.Generator().manual_seed(2)
            test_bpd = bits_per_dim(d.log_prob(uniform_dequantize(x_test, bins, g_test) - 0.5), 64, bins).mean().item()
    y = (uniform_dequantize(x_train, bins, g) - 0.5).reshape(len(x_train), -1).double()
    gauss = torch.distributions.MultivariateNormal(y.mean(0), torch.cov(y.T) + 1e-6 * torch.eye(64, dtype=torch.float64))
    y_test = (uniform_dequantize(x_test, bins, torch.Generator().manual_seed(2)) - 0.5).reshape(len(x_test), -1).double()
    gauss_bpd = bits_per_dim(gauss.log_prob(y_test), 64, bins).mean().item()
    assert test_bpd < math.log2(bins) - 1.3, test_bpd
    assert test_bpd < gauss_bpd - 0.2, (test_bpd, gauss_bpd)


# ----------------------------------------------------------------------------- Pyro


def test_conditional_glow_is_a_pyro_likelihood():
    torch.manual_seed(0)
    pyro.clear_param_store()
    flow = conditional_glow((1, 8, 8), (10,), num_levels=2, num_steps=1, hidden_channels=8)
    d = ConditionalFlowDistribution(flow.base(), [flow], context_event_dim=flow.context_event_dim)
    labels = torch.tensor([0, 3, 3, 7, 9, 1])
    c = torch.nn.functional.one_hot(labels, 10).float()
    x = torch.rand(6, 1, 8, 8) - 0.5

    def model(x, c):
        pyro.module("glow", flow)
        with pyro.plate("data", len(x)):
            pyro.sample("x", d.condition(c), obs=x)

    def guide(x, c):
        pass

    with torch.no_grad():
        d.condition(c).log_prob(x)  # ActNorm's initialisation
    trace = pyro.poutine.trace(model).get_trace(x, c)
    trace.compute_log_prob()
    expected = d.condition(c).log_prob(x.clone())
    assert torch.allclose(trace.nodes["x"]["log_prob"], expected, atol=1e-4)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), pyro.infer.Trace_ELBO())
    losses = [svi.step(x, c) for _ in range(15)]
    assert losses[-1] < losses[0]
    assert any(name.startswith("glow$$$") for name in pyro.get_param_store())
    # conditional samples: sample_shape + context batch + event, at any temperature
    assert ConditionalFlowDistribution(flow.base(0.7), [flow], context_event_dim=1).condition(c[:2]).sample((3,)).shape == (3, 2, 1, 8, 8)
    pyro.clear_param_store()


_FAR_FROM_INIT = {
    "image": (lambda **kw: glow((3, 8, 8), 2, 2, 8, **kw), None),
    "volume": (lambda **kw: glow((1, 8, 8, 8), 2, 2, 4, **kw), None),
    "conditional_image": (lambda **kw: conditional_glow((3, 8, 8), (3,), 2, 2, 8, **kw), (3,)),
    "conditional_volume_map": (lambda **kw: conditional_glow((1, 8, 8, 8), (1, 8, 8, 8), 2, 2, 4, **kw), (1, 8, 8, 8)),
}


def _far_from_init(kind, dtype, **kw):
    """A Glow initialised on data, then moved by N(0, 0.3^2) per parameter (as far as training goes)."""
    make, context_shape = _FAR_FROM_INIT[kind]
    torch.manual_seed(0)
    flow = make(**kw).to(dtype)
    context = None if context_shape is None else torch.randn(6, *context_shape, dtype=dtype)
    bound = flow if context is None else flow.condition(context)
    bound.inv(torch.randn(6, *flow.event_shape, dtype=dtype))  # data-dependent initialisation
    perturb_parameters(flow, 0.3, seed=1)
    return flow, context


@pytest.mark.parametrize("kind", list(_FAR_FROM_INIT))
def test_sampling_far_from_the_initialisation_stays_finite_and_scores_its_log_det(kind):
    flow, context = _far_from_init(kind, torch.float32)
    with torch.no_grad():
        if context is None:
            x = flow.distribution().sample((6,))
        else:
            x = ConditionalFlowDistribution(flow.base(), [flow], context_event_dim=flow.context_event_dim).condition(context).sample()
    assert torch.isfinite(x).all()
    # in float64 the log density of a sample, inverted afresh, is the base density minus the log-det
    flow, context = _far_from_init(kind, torch.float64)
    bound = flow if context is None else flow.condition(context)
    with torch.no_grad():
        z = torch.randn(6, *flow.event_shape, dtype=torch.float64)
        x = bound(z)
        ladj_forward = bound.log_abs_det_jacobian(z, x)
        z_again = bound.inv(x.clone())  # no cache
        ladj_inverse = bound.log_abs_det_jacobian(z_again, x)
    assert torch.isfinite(x).all() and torch.allclose(ladj_inverse, ladj_forward, rtol=1e-4)


def test_an_unbounded_scale_far_from_the_initialisation_is_reported_not_returned():
    flow, _ = _far_from_init("image", torch.float32, clamp=None)
    with torch.no_grad(), pytest.raises(FloatingPointError, match="gave NaN or inf"):
        flow(torch.randn(6, *flow.event_shape))
