"""The speed paths (pyroflows.nn.dense, pyroflows.transforms.base): same values and derivatives as the plain ops."""

import itertools

import pytest
import torch
import torch.nn as nn

from pyroflows.nn import MLP
from pyroflows.nn.dense import _LinearFn, _mm_wide, _relu_mlp, _ReLUMLPFn, linear
from pyroflows.transforms.base import broadcast_shapes


@pytest.mark.parametrize("shape", [(7, 3), (40, 5), (3, 300)])
def test_mm_wide_is_the_product(shape):
    a = torch.randn(shape[0], 9, dtype=torch.float64)
    b = torch.randn(9, shape[1], dtype=torch.float64)
    assert torch.allclose(_mm_wide(a, b), a @ b)


def test_linear_fn_gradcheck_and_gradgradcheck():
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_LinearFn.apply, (x, w, b))
    assert torch.autograd.gradgradcheck(_LinearFn.apply, (x, w, b))


def test_linear_under_torch_func_and_forward_ad():
    layer = nn.Linear(3, 4).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    ref = torch.func.jacrev(lambda x_: torch.nn.functional.linear(x_, layer.weight, layer.bias))(x)
    assert torch.allclose(torch.func.jacrev(lambda x_: linear(x_, layer))(x), ref)
    assert torch.allclose(torch.func.jacfwd(lambda x_: linear(x_, layer))(x), ref)
    # forward-mode AD with dual tensors goes through _LinearFn.jvp
    import torch.autograd.forward_ad as fwAD

    dx, dw, db = torch.randn_like(x), torch.randn_like(layer.weight), torch.randn_like(layer.bias)
    with fwAD.dual_level():
        y = _LinearFn.apply(fwAD.make_dual(x, dx), fwAD.make_dual(layer.weight.detach(), dw), fwAD.make_dual(layer.bias.detach(), db))
        tangent = fwAD.unpack_dual(y).tangent
    assert torch.allclose(tangent, dx @ layer.weight.T + x @ dw.T + db)


def _mlp_params(widths, dtype=torch.float64):
    params = []
    for a, b in itertools.pairwise(widths):
        params += [torch.randn(b, a, dtype=dtype, requires_grad=True), torch.randn(b, dtype=dtype, requires_grad=True)]
    return params


@pytest.mark.parametrize("widths", [(3, 4), (3, 8, 4), (9, 8, 7, 4)])
def test_relu_mlp_fn_gradcheck_and_gradgradcheck(widths):
    x = torch.randn(6, widths[0], dtype=torch.float64, requires_grad=True)
    params = _mlp_params(widths)
    assert torch.allclose(_ReLUMLPFn.apply(x, *params), _relu_mlp(x, params))
    assert torch.autograd.gradcheck(_ReLUMLPFn.apply, (x, *params))
    assert torch.autograd.gradgradcheck(_ReLUMLPFn.apply, (x, *params))


def test_relu_mlp_fn_forward_ad():
    import torch.autograd.forward_ad as fwAD

    x = torch.randn(6, 3, dtype=torch.float64)
    params = [p.detach() for p in _mlp_params((3, 8, 8, 4))]
    tangents = [torch.randn_like(t) for t in (x, *params)]
    _, ref = torch.func.jvp(lambda *a: _relu_mlp(a[0], a[1:]), (x, *params), tuple(tangents))
    with fwAD.dual_level():
        duals = [fwAD.make_dual(t, d) for t, d in zip((x, *params), tangents)]
        got = fwAD.unpack_dual(_ReLUMLPFn.apply(*duals)).tangent
    assert torch.allclose(got, ref)


def test_broadcast_shapes_matches_torch():
    shapes = [(), (1,), (3,), (2, 1), (2, 3), (1, 3), (4, 1, 3), (5, 2, 3), (2, 2)]
    for a, b in itertools.product(shapes, shapes):
        try:
            ref = torch.broadcast_shapes(a, b)
        except RuntimeError:
            with pytest.raises(RuntimeError):
                broadcast_shapes(a, b)
            continue
        assert broadcast_shapes(a, b) == ref and type(broadcast_shapes(a, b)) is torch.Size


@pytest.mark.parametrize("hidden", [(), (16,), (16, 16)])
@pytest.mark.parametrize("context", [0, 2])
def test_mlp_matches_plain_modules(context, hidden):
    torch.manual_seed(0)
    net = MLP(3, 4, hidden, context_features=context, zero_init=False).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    c = torch.randn(5, context, dtype=torch.float64) if context else None
    y = net(x, c)
    h = x if c is None else torch.cat([x, c.expand(2, 5, context)], -1)
    y_ref = net.net(h)
    assert torch.allclose(y, y_ref)
    g = torch.autograd.grad(y.square().sum(), [x, *net.parameters()])
    g_ref = torch.autograd.grad(y_ref.square().sum(), [x, *net.parameters()])
    for a, b in zip(g, g_ref):
        assert torch.allclose(a, b)


def test_mlp_does_not_modify_its_input_and_respects_hooks():
    net = MLP(3, 2, (8,), activation=nn.Identity, zero_init=False)
    x = -torch.ones(4, 3)
    before = x.clone()
    net(x)
    assert torch.equal(x, before)
    seen = []
    net.net[0].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    net(torch.randn(4, 3, requires_grad=True))
    assert seen == [torch.Size([4, 8])]


def test_linear_falls_back_without_grad():
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        y = linear(torch.randn(4, 3), layer)
    assert y.grad_fn is None


def _perturb(module, scale=0.3):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


@pytest.mark.parametrize("two_sided", [True, False])
def test_flow_sequence_matches_pyro_compose(two_sided):
    import pyro.distributions as dist
    from pyro.distributions.transforms import ComposeTransformModule

    from pyroflows.transforms import coupling_flow

    torch.manual_seed(0)
    perms = [torch.randperm(5) for _ in range(3)]
    flow = coupling_flow(5, num_blocks=3, hidden=(8,), permutation=perms, two_sided=two_sided, actnorm=True).double()
    _perturb(flow)
    plain = ComposeTransformModule(list(flow.parts))
    base = dist.Normal(torch.zeros(5, dtype=torch.float64), 1.0).to_event(1)
    x = torch.randn(7, 5, dtype=torch.float64)
    lp = dist.TransformedDistribution(base, [flow]).log_prob(x)
    for p in flow.parts:
        p.clear_cache()
    lp_ref = dist.TransformedDistribution(base, [plain]).log_prob(x)
    assert torch.allclose(lp, lp_ref)
    y = flow(x)
    assert torch.allclose(flow.log_abs_det_jacobian(x, y), plain.log_abs_det_jacobian(x, plain(x)))
    assert flow.inv(y) is x  # the inverse of the last output is kept
    assert len([p for p in flow.parts if type(p).__name__ == "AffineCoupling"]) == 3 * (2 if two_sided else 1)


def test_coupling_flow_permutation_list_is_checked():
    from pyroflows.transforms import coupling_flow

    with pytest.raises(ValueError, match="expected 3 permutations"):
        coupling_flow(4, num_blocks=3, permutation=[torch.arange(4)] * 2)


def test_flow_sequence_cache_is_dropped_after_a_step_and_conditions_are_reused():
    from pyroflows.transforms import conditional_coupling_flow

    torch.manual_seed(0)
    flow = conditional_coupling_flow(4, 2, num_blocks=2, hidden=(8,))
    _perturb(flow)
    c, x = torch.randn(6, 2), torch.randn(6, 4)
    t = flow.condition(c)
    assert flow.condition(c) is t
    z = t.inv(x)
    ladj = t.log_abs_det_jacobian(z, x)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1)
    z2 = t.inv(x)
    assert not torch.allclose(z2, z) and not torch.allclose(t.log_abs_det_jacobian(z2, x), ladj)
    c.mul_(2.0)  # modified in place: a fresh conditioned flow
    assert flow.condition(c) is not t


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("clamp", [None, 2.0])
@pytest.mark.parametrize("context", [0, 3])
def test_fused_affine_coupling_gradcheck_and_gradgradcheck(inverse, clamp, context):
    from pyroflows.transforms.coupling import _coupling_reference, _FusedAffineCouplingFn

    torch.manual_seed(0)
    split = 2
    v = torch.randn(5, 5, dtype=torch.float64, requires_grad=True)
    c = torch.randn(5, context, dtype=torch.float64, requires_grad=True) if context else None
    # moderate weights: without a clamp, exp(s) of large s makes the finite differences useless
    params = [(0.3 * p).detach().requires_grad_() for p in _mlp_params((split + context, 6, 6, 2 * (5 - split)))]

    def fused(v, c, *p):
        return _FusedAffineCouplingFn.apply(v, c, split, clamp, inverse, *p)

    out, ladj = fused(v, c, *params)
    ref_out, ref_ladj = _coupling_reference(v, c, split, clamp, inverse, params)
    assert torch.allclose(out, ref_out) and torch.allclose(ladj, ref_ladj)
    assert torch.autograd.gradcheck(fused, (v, c, *params))
    assert torch.autograd.gradgradcheck(fused, (v, c, *params))


@pytest.mark.parametrize("context", [0, 3])
def test_coupling_takes_the_fused_path_with_the_same_results(context):
    from pyroflows.transforms import affine_coupling, conditional_affine_coupling
    from pyroflows.transforms import coupling as coupling_module

    torch.manual_seed(0)
    module = (conditional_affine_coupling(5, context, hidden=(8, 8)) if context else affine_coupling(5, hidden=(8, 8))).double()
    _perturb(module)
    c = torch.randn(4, 1, context, dtype=torch.float64) if context else None  # broadcasts against x's batch (4, 3)
    t = module.condition(c) if context else module
    x = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    assert t._fusable(x) is not None
    outs = [t.forward_and_ladj(x), t.inverse_and_ladj(x)]
    original = coupling_module.ConditionedAffineCoupling._fusable
    coupling_module.ConditionedAffineCoupling._fusable = lambda self, v: None
    try:
        refs = [t.forward_and_ladj(x), t.inverse_and_ladj(x)]
    finally:
        coupling_module.ConditionedAffineCoupling._fusable = original
    params = list(module.parameters())
    for (y, l), (y_ref, l_ref) in zip(outs, refs):
        assert y.shape == y_ref.shape == (4, 3, 5) and l.shape == l_ref.shape == (4, 3)
        assert torch.allclose(y, y_ref) and torch.allclose(l, l_ref)
        g = torch.autograd.grad(y.square().sum() + l.sum(), [x, *params])
        g_ref = torch.autograd.grad(y_ref.square().sum() + l_ref.sum(), [x, *params])
        assert all(torch.allclose(a, b) for a, b in zip(g, g_ref))


def test_coupling_falls_back_under_forward_ad_and_torch_func():
    import torch.autograd.forward_ad as fwAD

    from pyroflows.transforms import affine_coupling

    t = affine_coupling(4, hidden=(8,)).double()
    _perturb(t)
    x, dx = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    with fwAD.dual_level():
        y, _ = t.forward_and_ladj(fwAD.make_dual(x, dx))
        tangent = fwAD.unpack_dual(y).tangent
    jac = torch.func.jacrev(lambda v: t.forward_and_ladj(v)[0])(x)
    assert torch.allclose(tangent, torch.einsum("bibj,bj->bi", jac.reshape(3, 4, 3, 4), dx))
