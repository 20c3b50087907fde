"""DUAL-GLOW: the conditional density against eq. (10) written out, shapes, temperature, context
broadcast, gradients to both flows, the relation and the discriminators, gradient reversal, float64,
state_dict, the Pyro model of eq. (12) under SVI, and errors on bad inputs."""

from __future__ import annotations

import io

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

from pyroflows.distributions import DualGlow
from pyroflows.nn import GradientReversal, gradient_reversal

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (1, 8, 8)


def _dual(dtype=torch.float32, side=0, perturb=0.05, **kw):
    torch.manual_seed(0)
    kw = dict({"num_levels": 2, "num_steps": 1, "hidden_channels": 8, "relation_hidden": 8}, **kw)
    dual = DualGlow(SHAPE, side_features=side, **kw).to(dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.rand((16,) + SHAPE, generator=g, dtype=dtype) - 0.5
    c = torch.rand(16, side, generator=g, dtype=dtype) if side else None
    with torch.no_grad():
        dual.condition(x, c).log_prob(x.flip(0))  # ActNorm's initialisation in both flows
        for p in dual.parameters():
            p.add_(perturb * torch.randn(p.shape, generator=g, dtype=dtype))
    return dual


def _pairs(n=5, dtype=torch.float32, side=0, seed=2):
    g = torch.Generator().manual_seed(seed)
    x_m = torch.rand((n,) + SHAPE, generator=g, dtype=dtype) - 0.5
    x_p = torch.rand((n,) + SHAPE, generator=g, dtype=dtype) - 0.5
    c = torch.rand(n, side, generator=g, dtype=dtype) if side else None
    return x_m, x_p, c


def test_log_prob_is_eq_10():
    dual = _dual(torch.float64)
    x_m, x_p, _ = _pairs(dtype=torch.float64)
    got = dual.condition(x_m).log_prob(x_p)
    # eq. (10): log N(f_p(x_p); mu(f_m(x_m)), sigma^2) + log|det d f_p / d x_p|
    z_p, z_m = dual.target.inv(x_p), dual.source.inv(x_m)
    ladj_p = dual.target.log_abs_det_jacobian(z_p, x_p)  # forward map's log-det (latent -> data)
    rel = dual.relation.condition(z_m)
    u = rel.inv(z_p)
    log_normal = torch.distributions.Normal(0.0, 1.0).log_prob(u).flatten(1).sum(-1) - rel.log_abs_det_jacobian(u, z_p)
    assert got.shape == (5,)
    assert torch.allclose(got, log_normal - ladj_p, atol=1e-9)
    # a relation that ignores the source gives back the target Glow's own likelihood
    with torch.no_grad():
        for net in dual.relation.nets:
            net.net[-1].weight.zero_()
            net.net[-1].bias.zero_()
    assert torch.allclose(dual.condition(x_m).log_prob(x_p), dual.target.distribution().log_prob(x_p), atol=1e-9)


def test_sample_shapes_and_temperature():
    dual = _dual(side=1)
    x_m, _, c = _pairs(3, side=1)
    d = dual.condition(x_m, c)
    assert d.batch_shape == (3,) and d.event_shape == SHAPE
    assert d.sample((4,)).shape == (4, 3) + SHAPE
    assert d.rsample().shape == (3,) + SHAPE
    with torch.no_grad():
        torch.manual_seed(5)
        cold = dual.condition(x_m, c, temperature=0.2).sample((64,))
        torch.manual_seed(5)
        warm = dual.condition(x_m, c, temperature=1.0).sample((64,))
    assert cold.std(0).mean() < warm.std(0).mean()
    with pytest.raises(ValueError, match=r"temperature"):
        dual.condition(x_m, c, temperature=0.0)


def test_context_broadcast():
    dual = _dual(side=2)
    x_m, x_p, c = _pairs(3, side=2)
    # one source image, three side values: batch (3,)
    d = dual.condition(x_m[:1], c)
    assert d.batch_shape == (3,)
    one = dual.condition(x_m[:1].expand(3, *SHAPE), c).log_prob(x_p)
    assert torch.allclose(d.log_prob(x_p), one, atol=1e-5)
    # a side batch (2, 1) against a source batch (3,): batch (2, 3)
    d2 = dual.condition(x_m, c[:2].unsqueeze(1))
    assert d2.batch_shape == (2, 3) and d2.log_prob(x_p).shape == (2, 3)
    assert d2.sample((2,)).shape == (2, 2, 3) + SHAPE


def test_gradients_reach_both_flows_relation_and_discriminators():
    dual = _dual(side=1)
    x_m, x_p, c = _pairs(4, side=1)
    (-dual.objective(x_m, x_p, c).sum()).backward()
    for name, module in [
        ("source", dual.source),
        ("target", dual.target),
        ("relation", dual.relation),
        ("discriminators", dual.discriminators),
    ]:
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert sum(g.abs().sum() for g in grads) > 0, name


def test_gradient_reversal_flips_the_sign():
    x = torch.randn(5, requires_grad=True)
    w = torch.randn(5)
    (w * GradientReversal(0.5)(x)).sum().backward()
    assert torch.allclose(x.grad, -0.5 * w)
    y = torch.randn(3, requires_grad=True)
    assert torch.equal(gradient_reversal(y), y)
    # a reversed discriminator pushes the source flow the opposite way to a plain one
    grads = {}
    for reverse in (False, True):
        dual = _dual(side=1)
        disc = dual.discriminators[0]
        disc.reversal = GradientReversal(1.0) if reverse else None
        x_m, _x_p, c = _pairs(4, side=1)
        part = dual.source.unpack(dual.source.inv(x_m))[0]
        (disc(part) - c).pow(2).sum().backward()
        grads[reverse] = torch.cat([p.grad.flatten() for p in dual.source.parameters() if p.grad is not None])
        disc_grad = torch.cat([p.grad.flatten() for p in disc.parameters()])
        grads[(reverse, "disc")] = disc_grad
    assert torch.allclose(grads[True], -grads[False], atol=1e-6) and grads[True].abs().sum() > 0
    assert torch.allclose(grads[(True, "disc")], grads[(False, "disc")])  # the discriminator still descends
    with pytest.raises(ValueError, match=r"alpha"):
        GradientReversal(-1.0)


def test_float64_and_device_follow_the_parameters():
    dual = _dual(torch.float64, side=1)
    x_m, x_p, c = _pairs(2, torch.float64, side=1)
    d = dual.condition(x_m, c)
    assert d.log_prob(x_p).dtype == torch.float64 and d.sample().dtype == torch.float64
    # sampling inverts exactly: the sample's log-density is that of its noise
    torch.manual_seed(0)
    x = d.sample()
    assert torch.isfinite(d.log_prob(x)).all()


def test_state_dict_round_trip():
    src = _dual(side=1)
    buf = io.BytesIO()
    torch.save(src.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(3)
    dst = DualGlow(SHAPE, side_features=1, num_levels=2, num_steps=1, hidden_channels=8, relation_hidden=8)
    dst.load_state_dict(torch.load(buf, weights_only=True))
    x_m, x_p, c = _pairs(3, side=1)
    x_m, x_p = 3 * x_m, 3 * x_p  # would change a re-initialised ActNorm
    with torch.no_grad():
        assert torch.allclose(src.condition(x_m, c).log_prob(x_p), dst.condition(x_m, c).log_prob(x_p), atol=1e-5)
        assert torch.allclose(src.objective(x_m, x_p, c), dst.objective(x_m, x_p, c), atol=1e-4)


def test_pyro_model_is_eq_12_and_svi_lowers_the_loss():
    pyro.clear_param_store()
    dual = _dual(side=1, perturb=0.0)
    g = torch.Generator().manual_seed(4)
    x_m = torch.rand(32, *SHAPE, generator=g) - 0.5
    c = torch.rand(32, 1, generator=g)
    x_p = (0.8 - 0.5 * c.reshape(-1, 1, 1, 1)) * x_m + 0.05 * torch.randn(x_m.shape, generator=g)
    trace = pyro.poutine.trace(dual.model).get_trace(x_m, x_p, c)
    with torch.no_grad():
        expected = dual.objective(x_m, x_p, c).sum()
    assert abs(trace.log_prob_sum().item() - expected.item()) < 1e-2 * abs(expected.item()) ** 0.5
    assert trace.nodes["x_m"]["scale"] == dual.source_weight
    svi = SVI(dual.model, dual.guide, pyro.optim.Adamax({"lr": 3e-3}), Trace_ELBO())
    losses = [svi.step(x_m, x_p, c) for _ in range(25)]
    assert sum(losses[-5:]) < sum(losses[:5])
    assert any(name.startswith("dual_glow$$$") for name in pyro.get_param_store())
    pyro.clear_param_store()


def test_bad_inputs():
    dual = _dual(side=1)
    x_m, _x_p, c = _pairs(2, side=1)
    with pytest.raises(ValueError, match=r"x_m: expected shape \(\.\.\., 1, 8, 8\)"):
        dual.condition(torch.rand(2, 1, 8, 4), c)
    with pytest.raises(TypeError, match=r"x_m: expected dtype torch.float32"):
        dual.condition(x_m.double(), c)
    bad = x_m.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"x_m: expected finite values"):
        dual.condition(bad, c)
    with pytest.raises(ValueError, match=r"side: expected side information"):
        dual.condition(x_m)
    with pytest.raises(ValueError, match=r"side: expected shape"):
        dual.condition(x_m, torch.rand(2, 3))
    with pytest.raises(ValueError, match=r"event_shape"):  # Pyro's own check of the value
        dual.condition(x_m, c).log_prob(torch.rand(2, 2, 8, 8))
    with pytest.raises(ValueError, match=r"x_p: expected shape"):
        dual.model(x_m, torch.rand(2, 1, 4, 4), c)
    with pytest.raises(ValueError, match=r"side: this model takes no side information"):
        _dual().condition(x_m, c)
    with pytest.raises(ValueError, match=r"source_shape"):
        DualGlow((1, 8, 8), (1, 4, 4), num_levels=2, num_steps=1, hidden_channels=4)
