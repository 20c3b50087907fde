"""The speed paths (pyroflows.fused) and the shape helpers: same values and derivatives as the plain ops."""

import itertools

import pytest
import torch
import torch.nn as nn

from pyroflows import fused
from pyroflows.nn import MLP
from pyroflows.shapes import broadcast_shapes


@pytest.mark.parametrize("shape", [(7, 3), (40, 5), (3, 300)])
def test_mm_narrow_is_the_product(shape):
    a = torch.randn(shape[0], 9, dtype=torch.float64)
    b = torch.randn(9, shape[1], dtype=torch.float64)
    assert torch.allclose(fused.mm_narrow(a, b), a @ b)


def _mlp_params(widths, dtype=torch.float64):
    params = []
    for a, b in itertools.pairwise(widths):
        params += [torch.randn(b, a, dtype=dtype, requires_grad=True), torch.randn(b, dtype=dtype, requires_grad=True)]
    return params


def _mlp_layers(widths):
    layers = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double()


@pytest.mark.parametrize("widths", [(3, 4), (3, 8, 4), (9, 8, 7, 4)])
def test_relu_mlp_gradcheck_and_gradgradcheck(widths):
    torch.manual_seed(0)  # finite differences across a ReLU's kink would fail for any implementation
    layers = _mlp_layers(widths)
    x = torch.randn(6, widths[0], dtype=torch.float64, requires_grad=True)
    params = fused.relu_mlp_parameters(layers)
    assert torch.allclose(fused.relu_mlp(layers, x), fused.relu_mlp_reference(x, *params))
    assert fused.relu_mlp(layers, x).grad_fn.name().endswith("_ReLUMLPBackward")
    assert torch.autograd.gradcheck(lambda x_, *p: fused.relu_mlp(layers, x_), (x, *params))
    assert torch.autograd.gradgradcheck(lambda x_: fused.relu_mlp(layers, x_), (x,))
    # the parameters' second derivatives go through the reference too
    (g,) = torch.autograd.grad(fused.relu_mlp(layers, x).square().sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), params[0])
    (g_ref,) = torch.autograd.grad(fused.relu_mlp_reference(x, *params).square().sum(), x, create_graph=True)
    assert torch.allclose(gg, torch.autograd.grad(g_ref.sum(), params[0])[0])


def test_relu_mlp_under_torch_func_and_forward_ad():
    import torch.autograd.forward_ad as fwAD

    layers = _mlp_layers((3, 8, 4))
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    ref = torch.func.jacrev(lambda x_: layers(x_))(x)
    assert torch.allclose(torch.func.jacrev(lambda x_: fused.relu_mlp(layers, x_))(x), ref)
    assert torch.allclose(torch.func.jacfwd(lambda x_: fused.relu_mlp(layers, x_))(x), ref)
    dx = torch.randn_like(x)
    with fwAD.dual_level():
        tangent = fwAD.unpack_dual(fused.relu_mlp(layers, fwAD.make_dual(x, dx))).tangent
    assert torch.allclose(tangent, torch.einsum("noij,ij->no", ref, dx))


def test_the_switch_turns_the_speed_paths_off():
    layers = _mlp_layers((3, 8, 4))
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    with fused.enabled(False):
        assert not fused.is_enabled()
        y = fused.relu_mlp(layers, x)
    assert fused.is_enabled()
    assert "ReLUMLP" not in y.grad_fn.name() and torch.allclose(y, fused.relu_mlp(layers, x))
    with pytest.raises(TypeError, match="flag: expected True or False"):
        fused.set_enabled("no")


def test_relu_mlp_falls_back_without_grad():
    with torch.no_grad():
        y = fused.relu_mlp(_mlp_layers((3, 4)), torch.randn(4, 3, dtype=torch.float64))
    assert y.grad_fn is None


@pytest.mark.parametrize("batch", [(7,), (2, 5), (0,)])
def test_relu_mlp_without_grad_equals_the_layers_and_leaves_the_input(batch):
    layers = _mlp_layers((3, 8, 8, 4))
    x = torch.randn(batch + (3,), dtype=torch.float64)
    kept = x.clone()
    with torch.no_grad():
        y = fused.relu_mlp(layers, x)
        assert torch.equal(y, layers(x)) and torch.equal(x, kept)
    x.requires_grad_(False)
    for p in layers.parameters():
        p.requires_grad_(False)
    assert torch.equal(fused.relu_mlp(layers, x), layers(x))  # grad mode on, nothing to record


def _plain_affine(v, raw, bound, event_dim, inverse):
    from pyroflows.transforms.base import soft_clamp
    from pyroflows.transforms.elementwise import elementwise_affine

    h, t = raw.chunk(2, dim=-event_dim)
    return elementwise_affine(v, soft_clamp(h, bound), t, event_dim, inverse)


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("bound", [2.0, None])
@pytest.mark.parametrize(("event_dim", "shape"), [(1, (6, 3)), (2, (2, 3, 5)), (3, (2, 2, 3, 4))])
def test_soft_clamped_affine_without_grad_is_the_plain_map_and_leaves_its_inputs(event_dim, shape, bound, inverse):
    raw_shape = list(shape)
    raw_shape[-event_dim] *= 2
    v, raw = torch.randn(shape, dtype=torch.float64), 2.0 * torch.randn(raw_shape, dtype=torch.float64)
    kept = v.clone(), raw.clone()
    out, ladj = fused.soft_clamped_affine(v, raw, bound, event_dim, inverse)
    ref_out, ref_ladj = _plain_affine(v, raw, bound, event_dim, inverse)
    assert torch.allclose(out, ref_out) and torch.allclose(ladj, ref_ladj) and ladj.shape == shape[: len(shape) - event_dim]
    assert torch.equal(v, kept[0]) and torch.equal(raw, kept[1])
    # where autograd records, or the shapes broadcast, or the switch is off: the caller's plain map
    assert fused.soft_clamped_affine(v, raw.requires_grad_(True), bound, event_dim, inverse) is None
    assert fused.soft_clamped_affine(v, kept[1][:1], bound, event_dim, inverse) is None
    assert fused.soft_clamped_affine(v, kept[1].float(), bound, event_dim, inverse) is None  # autocast's half raw values
    with fused.enabled(False):
        assert fused.soft_clamped_affine(v, kept[1], bound, event_dim, inverse) is None


@pytest.mark.parametrize("inverse", [False, True])
def test_soft_clamped_affine_of_half_inputs_sums_the_log_det_as_the_plain_map(inverse):
    # a model cast to bfloat16: the plain map sums the log-det in float32, and so must the fast one
    v, raw = torch.randn(6, 3).bfloat16(), torch.randn(6, 6).bfloat16()
    out, ladj = fused.soft_clamped_affine(v, raw, 2.0, 1, inverse)
    ref_out, ref_ladj = _plain_affine(v, raw, 2.0, 1, inverse)
    assert ladj.dtype == ref_ladj.dtype == torch.float32 and out.dtype == ref_out.dtype == torch.bfloat16
    assert torch.allclose(ladj, ref_ladj, atol=1e-2)


def _mlp_and_affine_reference(inverse, bound):
    def reference(v, x, *params):
        return _plain_affine(v, fused.relu_mlp_reference(x, *params), bound, 1, inverse)

    return reference


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("bound", [2.0, None])
def test_relu_mlp_soft_clamped_affine_is_its_reference_to_second_order(inverse, bound):
    torch.manual_seed(0)  # finite differences across a ReLU's kink would fail for any implementation
    params = _mlp_params((3, 8, 4))
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    v = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    reference = _mlp_and_affine_reference(inverse, bound)

    def fast(v_, x_, *p):
        return fused.relu_mlp_soft_clamped_affine(reference, p, x_, v_, bound, inverse)

    out, ladj = fast(v, x, *params)
    assert out.grad_fn.name().endswith("_ReLUMLPSoftClampedAffineBackward")
    ref_out, ref_ladj = reference(v, x, *params)
    assert torch.allclose(out, ref_out) and torch.allclose(ladj, ref_ladj)
    assert torch.autograd.gradcheck(fast, (v, x, *params))
    assert torch.autograd.gradgradcheck(fast, (v, x, *params))
    # where it does not apply: broadcast rows, the wrong number of outputs, no gradient, switched off
    assert fused.relu_mlp_soft_clamped_affine(reference, params, x[:1], v, bound, inverse) is None
    assert fused.relu_mlp_soft_clamped_affine(reference, params, x, v[:, :1], bound, inverse) is None
    with torch.no_grad():
        assert fused.relu_mlp_soft_clamped_affine(reference, params, x, v, bound, inverse) is None
    with fused.enabled(False):
        assert fused.relu_mlp_soft_clamped_affine(reference, params, x, v, bound, inverse) is None


def test_a_coupling_fuses_its_relu_mlp_and_affine_map_unless_the_conditioner_has_hooks():
    from pyroflows.transforms import affine_coupling

    torch.manual_seed(0)
    t = affine_coupling(4, hidden=(8,)).double()
    with torch.no_grad():
        for p in t.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)

    def node_names(y):
        names, todo = set(), [y.grad_fn]
        while todo:
            node = todo.pop()
            if node is not None and node.name() not in names:
                names.add(node.name())
                todo += [n for n, _ in node.next_functions]
        return names

    y, ladj = t.inverse_and_ladj(x)
    assert any(n.endswith("_ReLUMLPSoftClampedAffineBackward") for n in node_names(y))
    with fused.enabled(False):
        y_plain, ladj_plain = t.inverse_and_ladj(x)
    assert torch.allclose(y, y_plain) and torch.allclose(ladj, ladj_plain)
    seen = []
    t.conditioner.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    y_hooked, _ = t.inverse_and_ladj(x)
    assert seen and not any(n.endswith("_ReLUMLPSoftClampedAffineBackward") for n in node_names(y_hooked))
    assert torch.allclose(y_hooked, y)


def test_double_backward_counts_each_path_once_when_inputs_depend_on_each_other():
    # the graph of the gradient (create_graph) must count a path from one input of a node through
    # another input once, as plain autograd does: here the MLP's input is computed from its weight
    layers = _mlp_layers((3, 6, 2))
    weight = layers[0].weight
    u = torch.randn(5, 3, dtype=torch.float64)

    def loss(fast):
        x = u * weight.sum(0)
        return ((fused.relu_mlp(layers, x) if fast else layers(x)) ** 2).sum()

    d = torch.randn_like(weight)
    got = []
    for fast in (True, False):
        (g,) = torch.autograd.grad(loss(fast), weight, create_graph=True)
        got.append((g, torch.autograd.grad((g * d).sum(), weight)[0]))
    assert torch.allclose(got[0][0], got[1][0]) and torch.allclose(got[0][1], got[1][1])


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
    for a, b in zip(g, g_ref, strict=True):
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
