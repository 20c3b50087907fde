"""Planar, radial and Sylvester flows: what the shared suite does not check.

The orthonormal polar factor (and that validation never changes it), the invertibility constraints
at random parameters, the numerical inverses far from initialisation, log-dets away from
initialisation, and agreement of each Sylvester kind
with the formula written out with an explicit ``Q``.
"""

import math

import pyro.distributions as dist
import pytest
import torch

import pyroflows
import pyroflows.transforms as T
from pyroflows import testing as pt
from pyroflows.testing import cases_planar_sylvester
from pyroflows.transforms.planar import planar_parameters, solve_tanh_equation
from pyroflows.transforms.sylvester import bjorck_orthonormalize, householder_product, orthogonality_error, orthonormal_polar_factor

F64 = torch.float64
CASES = {c.name: c for c in cases_planar_sylvester.cases()}


# tiny matrices: one thread avoids stalls of the multi-threaded CPU kernels on shared cores
pytestmark = pytest.mark.usefixtures("one_thread")


def _far(case, perturb=1.0, seed=0):
    """The case's module in float64 with every parameter moved by ``perturb * N(0, 1)``."""
    return pt.instantiate(case, dtype=F64, seed=seed, perturb=perturb)


# ----------------------------------------------------------------------------- scalar solver


def test_solve_tanh_equation_on_a_grid():
    kappa = torch.cat([torch.linspace(-0.999, 1.0, 41), torch.logspace(0, 4, 9), -1 + torch.logspace(-12, -4, 5)]).to(F64)
    s = torch.cat([torch.linspace(-30.0, 30.0, 41), torch.logspace(-12, 0, 7), -torch.logspace(-12, 0, 7), torch.zeros(1)]).to(F64)
    k, s = torch.meshgrid(kappa, s, indexing="ij")
    t = solve_tanh_equation(k, s)
    assert torch.isfinite(t).all()
    residual = (t + k * torch.tanh(t) - s).abs()
    assert residual.max() < 1e-11 * (1 + s.abs().max())
    assert (torch.sign(t) == torch.sign(s)).all()  # the root has the sign of s


def test_solve_tanh_equation_gradients_are_the_implicit_ones():
    kappa = torch.tensor([-0.7, 0.3, 4.0], dtype=F64, requires_grad=True)
    s = torch.tensor([0.4, -1.5, 3.0], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(solve_tanh_equation, (kappa, s))


# ----------------------------------------------------------------------------- orthonormal polar factor


def _with_condition_number(cond: float, d: int = 6, m: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(d, m, dtype=F64, generator=g))[0]
    v = torch.linalg.qr(torch.randn(m, m, dtype=F64, generator=g))[0]
    return u @ torch.diag(torch.logspace(0, -math.log10(cond), m, dtype=F64)) @ v.T


@pytest.mark.parametrize("shape", [(3, 3), (5, 2), (16, 16), (4, 6, 3)])
def test_polar_factor_is_the_svd_one(shape):
    q = torch.randn(shape, dtype=F64, generator=torch.Generator().manual_seed(1))
    out = orthonormal_polar_factor(q)
    assert orthogonality_error(out).max() < 1e-12
    u, _, vh = torch.linalg.svd(q, full_matrices=False)
    assert torch.allclose(out, u @ vh, atol=1e-10)


@pytest.mark.parametrize("cond", [1e2, 1e3, 1e6])
def test_polar_factor_far_from_orthonormal(cond):
    q = _with_condition_number(cond)
    u, _, vh = torch.linalg.svd(q, full_matrices=False)
    assert torch.allclose(orthonormal_polar_factor(q), u @ vh, atol=1e-9)


def test_polar_factor_is_twice_differentiable():
    q = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(2), requires_grad=True)
    assert torch.autograd.gradcheck(orthonormal_polar_factor, (q,))
    assert torch.autograd.gradgradcheck(orthonormal_polar_factor, (q,))


def test_polar_factor_reports_a_rank_deficient_matrix():
    # numerically rank-deficient still gives orthonormal columns (a polar factor, no longer unique);
    # an exactly zero column has none and is reported
    a = torch.randn(5, 1, dtype=F64)
    nearly = torch.cat([a, a, torch.randn(5, 1, dtype=F64)], dim=1)
    assert orthogonality_error(orthonormal_polar_factor(nearly)) < 1e-12
    rank_deficient = torch.cat([a, torch.zeros(5, 1, dtype=F64), torch.randn(5, 1, dtype=F64)], dim=1)
    with pytest.raises(ValueError, match=r"q: .*max\|Q\^T Q - I\| = .*rank-deficient"):
        orthonormal_polar_factor(rank_deficient)
    with pytest.raises(ValueError, match=r"M <= D"):
        orthonormal_polar_factor(torch.randn(2, 3))


def test_bjorck_orthonormalize_is_a_deprecated_alias():
    q = torch.randn(5, 3, dtype=F64)
    with pytest.warns(DeprecationWarning, match="orthonormal_polar_factor"):
        out = bjorck_orthonormalize(q)
    assert torch.equal(out, orthonormal_polar_factor(q))


@pytest.mark.parametrize("cond", [30.0, 300.0, 1e3])
def test_validation_does_not_change_the_orthogonal_sylvester_log_det(cond):
    # validation once decided how many Björck steps ran: with it off, 8 steps gave log-dets off by
    # 0.28 nats at cond(Q) = 30 and 0.72 at 300
    t = _far(CASES["sylvester_orthogonal"], perturb=0.3)
    with torch.no_grad():
        t.params.q.copy_(_with_condition_number(cond, *t.params.q.shape))
    x = torch.randn(7, t.dim, dtype=F64)
    with pyroflows.validation(True):
        on = t.log_abs_det_jacobian(x, t(x))
        q_on = t.factors()[0]
    with pyroflows.validation(False):
        off = t.log_abs_det_jacobian(x, t(x))
        q_off = t.factors()[0]
    assert torch.equal(on, off) and torch.equal(q_on, q_off)
    u, _, vh = torch.linalg.svd(t.params.q, full_matrices=False)
    assert torch.allclose(q_off, u @ vh, atol=1e-10)


def test_orthogonal_sylvester_keeps_q_orthonormal_during_training():
    torch.manual_seed(0)
    flow = T.sylvester(4, "orthogonal", num_ortho_vecs=3)
    opt = torch.optim.Adam(flow.parameters(), lr=0.05)
    for _ in range(20):
        x = torch.randn(32, 4)
        y = flow(x)
        loss = (y**2).sum(-1).mean() - flow.log_abs_det_jacobian(x, y).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    q = flow.factors()[0].detach()
    assert orthogonality_error(q).max() < 1e-4  # float32 tolerance of the check


# ----------------------------------------------------------------------------- invertibility constraints


def test_planar_constraint_holds_at_random_parameters():
    g = torch.Generator().manual_seed(3)
    u = 5 * torch.randn(2000, 4, generator=g, dtype=F64)
    w = 5 * torch.randn(2000, 4, generator=g, dtype=F64)
    _, kappa = planar_parameters(u, w)
    wu = (u * w).sum(-1)
    # w.u_hat = m(w.u) = softplus(w.u) - 1 >= -1 (strictly in exact arithmetic; it rounds to -1 for w.u < -37)
    assert torch.allclose(kappa, torch.nn.functional.softplus(wu) - 1)
    assert (kappa >= -1).all() and (kappa[wu > -30] > -1).all()
    u_hat, _ = planar_parameters(u, w)
    assert torch.allclose((w * u_hat).sum(-1), kappa, atol=1e-9 * (1 + wu.abs().max()))


def test_radial_constraint_holds_at_random_parameters():
    from pyroflows.transforms.radial import radial_parameters

    g = torch.Generator().manual_seed(4)
    alpha, gamma = radial_parameters(10 * torch.randn(1000, generator=g), 10 * torch.randn(1000, generator=g))
    beta = gamma - alpha
    assert (alpha > 0).all() and (beta >= -alpha).all()


@pytest.mark.parametrize("kind", ["orthogonal", "householder", "triangular"])
def test_sylvester_constraint_and_positive_jacobian_at_random_parameters(kind):
    torch.manual_seed(5)
    flow = T.sylvester(3, kind).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(4 * torch.randn_like(p))
    _, r1, r2, _ = flow.factors()
    kappa = torch.diagonal(r1) * torch.diagonal(r2)
    assert (kappa > -1).all() and (kappa < 1).all()
    assert torch.equal(r1, torch.triu(r1)) and torch.equal(r2, torch.triu(r2))
    x = 3 * torch.randn(20, 3, dtype=F64)
    for xi in x:
        sign, _ = torch.linalg.slogdet(torch.autograd.functional.jacobian(flow, xi))
        assert sign > 0


# ----------------------------------------------------------------------------- far from initialisation


@pytest.mark.parametrize("name", sorted(CASES))
def test_numerical_inverse_far_from_initialisation(name):
    case = CASES[name]
    module = _far(case, perturb=1.0)
    x, c = pt.random_inputs(case, (64,), seed=5)
    x = 3 * x
    with torch.no_grad():
        y = pt.bind(module, c)(x)
        x_back = pt.bind(module, c).inv(y.clone())
    assert (x_back - x).abs().max() < 1e-10, f"{name}: round trip error {(x_back - x).abs().max():.3g}"
    # float32 as well
    module32 = pt.instantiate(case, dtype=torch.float32, perturb=1.0)
    x32, c32 = pt.random_inputs(case, (64,), dtype=torch.float32, seed=5)
    with torch.no_grad():
        y32 = pt.bind(module32, c32)(x32)
        back32 = pt.bind(module32, c32).inv(y32.clone())
    assert (back32 - x32).abs().max() < 1e-4


@pytest.mark.parametrize("name", sorted(CASES))
def test_log_det_matches_autograd_far_from_initialisation(name):
    case = CASES[name]
    module = _far(case, perturb=1.0, seed=1)
    x, c = pt.random_inputs(case, (3,), seed=6)
    t = pt.bind(module, c)
    y = t(x)
    ladj = t.log_abs_det_jacobian(x, y)
    t_inv = pt.bind(module, c)
    x_inv = t_inv.inv(y.clone())
    ladj_inv = t_inv.log_abs_det_jacobian(x_inv, y)
    for i in range(3):
        ci = None if c is None else c[i]
        jac = torch.autograd.functional.jacobian(lambda v, ci=ci: pt.bind(module, ci)(v), x[i])
        expected = torch.linalg.slogdet(jac)[1]
        assert abs(ladj[i] - expected) < 1e-9, f"{name}: {ladj[i].item()} vs autograd {expected.item()}"
        assert abs(ladj_inv[i] - expected) < 1e-9


@pytest.mark.parametrize("wu", [-15.0, -40.0])
def test_planar_inverse_near_the_singular_limit(wu):
    # kappa = softplus(w.u) - 1: -1 + 3e-7 for w.u = -15; exactly -1 after rounding for w.u = -40
    flow = T.planar(3).double()
    with torch.no_grad():
        flow.params.w.copy_(torch.tensor([1.0, 0.5, -0.2], dtype=F64))
        flow.params.u.copy_(wu * flow.params.w / (flow.params.w**2).sum())
        flow.params.b.fill_(0.3)
    _, kappa = planar_parameters(flow.params.u, flow.params.w)
    assert kappa >= -1 and (kappa > -1 or wu < -37)
    x = torch.randn(100, 3, dtype=F64)
    with torch.no_grad():
        y = flow(x)
        x_back = flow.inv(y.clone())
        assert torch.isfinite(flow.log_abs_det_jacobian(x, y)).all()
    # the inverse is ill-conditioned only where w.x + b is near 0; elsewhere it is exact
    good = ((x @ flow.params.w.detach() + 0.3).abs() > 0.05).unsqueeze(-1)
    assert ((x_back - x).abs() * good).max() < 1e-8


def test_inverse_gradients_match_finite_differences():
    torch.manual_seed(6)
    d = 3
    params = [torch.randn(d, d, dtype=F64), torch.randn(d, dtype=F64), torch.randn(d, dtype=F64), torch.randn(d, dtype=F64)]
    params = [p.requires_grad_() for p in params]
    y = torch.randn(2, d, dtype=F64, requires_grad=True)

    def inverse(y, r, d1, d2, b):
        t = T.ConditionedTriangularSylvester(r, d1, d2, b, flip=True)
        return t.inverse_and_ladj(y)

    assert torch.autograd.gradcheck(inverse, (y, *params))


# ----------------------------------------------------------------------------- explicit Q


def _formula(x, q, r1, r2, b):
    return x + (q @ r1 @ torch.tanh(r2 @ q.T @ x.unsqueeze(-1) + b.unsqueeze(-1))).squeeze(-1)


def _explicit_triangles(params):
    r, d1, d2 = params.r.detach(), params.d1.detach(), params.d2.detach()
    m = r.shape[-1]
    r1 = torch.zeros(m, m, dtype=r.dtype)
    r2 = torch.zeros(m, m, dtype=r.dtype)
    for i in range(m):
        r1[i, i], r2[i, i] = math.tanh(d1[i]), math.tanh(d2[i])
        for j in range(i + 1, m):
            r1[i, j], r2[i, j] = r[i, j], r[j, i]
    return r1, r2


def test_householder_kind_matches_an_explicit_product_of_reflections():
    torch.manual_seed(7)
    flow = T.sylvester(4, "householder", num_householder=3).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(torch.randn_like(p))
    q = torch.eye(4, dtype=F64)
    for v in flow.params.q.detach():
        q = q @ (torch.eye(4, dtype=F64) - 2 * torch.outer(v, v) / v.dot(v))
    assert torch.allclose(householder_product(flow.params.q.detach()), q, atol=1e-12)
    r1, r2 = _explicit_triangles(flow.params)
    x = torch.randn(10, 4, dtype=F64)
    with torch.no_grad():
        assert torch.allclose(flow(x), _formula(x, q, r1, r2, flow.params.b), atol=1e-12)


def test_orthogonal_kind_matches_the_formula_with_the_polar_factor():
    torch.manual_seed(8)
    flow = T.sylvester(5, "orthogonal", num_ortho_vecs=3).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.5 * torch.randn_like(p))
    u, _, vh = torch.linalg.svd(flow.params.q.detach(), full_matrices=False)
    q = u @ vh
    r1, r2 = _explicit_triangles(flow.params)
    x = torch.randn(10, 5, dtype=F64)
    with torch.no_grad():
        y = flow(x)
    assert torch.allclose(y, _formula(x, q, r1, r2, flow.params.b), atol=1e-10)
    # the part of x outside the span of Q is left alone
    assert torch.allclose((y - x) - (y - x) @ q @ q.T, torch.zeros_like(x), atol=1e-12)


@pytest.mark.parametrize("flip", [False, True])
def test_triangular_kind_matches_the_formula_with_a_permutation(flip):
    torch.manual_seed(9)
    flow = T.sylvester(4, "triangular", flip=flip).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(torch.randn_like(p))
    q = torch.eye(4, dtype=F64).flip(-1) if flip else torch.eye(4, dtype=F64)
    r1, r2 = _explicit_triangles(flow.params)
    x = torch.randn(10, 4, dtype=F64)
    with torch.no_grad():
        assert torch.allclose(flow(x), _formula(x, q, r1, r2, flow.params.b), atol=1e-12)


def test_conditional_householder_matches_per_sample_explicit_q():
    torch.manual_seed(10)
    flow = T.conditional_sylvester(3, 2, "householder", hidden=(8,), num_householder=2).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.5 * torch.randn_like(p))
    c, x = torch.randn(4, 2, dtype=F64), torch.randn(4, 3, dtype=F64)
    with torch.no_grad():
        y = flow.condition(c)(x)  # per-sample Q, applied as reflections
        q_matrices = flow.condition(c).factors()[0]
        v, r, d1, d2, b = flow.params(c)
        for i in range(4):
            q = torch.eye(3, dtype=F64)
            for vk in v[i]:
                q = q @ (torch.eye(3, dtype=F64) - 2 * torch.outer(vk, vk) / vk.dot(vk))
            assert torch.allclose(q_matrices[i], q, atol=1e-12)
            single = T.sylvester(3, "householder", num_householder=2).double()
            for name, value in zip(["q", "r", "d1", "d2", "b"], [v[i], r[i], d1[i], d2[i], b[i]], strict=True):
                getattr(single.params, name).copy_(value)
            r1, r2 = _explicit_triangles(single.params)
            assert torch.allclose(y[i], _formula(x[i : i + 1], q, r1, r2, b[i])[0], atol=1e-12)


# ----------------------------------------------------------------------------- API


@pytest.mark.parametrize(
    "make",
    [
        lambda: T.planar(3),
        lambda: T.radial(3),
        lambda: T.sylvester(3, "orthogonal", num_ortho_vecs=2),
        lambda: T.sylvester(3, "householder"),
        lambda: T.sylvester(3, "triangular", flip=True),
    ],
)
def test_fresh_flows_are_the_identity(make):
    t = make()
    x = torch.randn(5, 3)
    y = t(x)
    assert torch.equal(y, x) or torch.allclose(y, x, atol=1e-6)
    assert t.log_abs_det_jacobian(x, y).abs().max() < 1e-6


@pytest.mark.parametrize(
    "make",
    [
        lambda: T.conditional_planar(3, 2),
        lambda: T.conditional_radial(3, 2),
        lambda: T.conditional_sylvester(3, 2, "orthogonal"),
        lambda: T.conditional_sylvester(3, 2, "householder"),
        lambda: T.conditional_sylvester(3, 2, "triangular"),
    ],
)
def test_fresh_conditional_flows_are_the_identity(make):
    t = make().condition(torch.randn(5, 2))
    x = torch.randn(5, 3)
    assert torch.allclose(t(x), x, atol=1e-6)


def test_factories_check_their_arguments():
    assert isinstance(T.sylvester(3), T.OrthogonalSylvester)
    assert isinstance(T.sylvester(3, "householder"), T.HouseholderSylvester)
    assert isinstance(T.conditional_sylvester(3, 2, "triangular"), T.ConditionalTriangularSylvester)
    assert T.sylvester(4, num_ortho_vecs=2).num_hidden == 2
    with pytest.raises(ValueError, match=r"kind: expected one of"):
        T.sylvester(3, "diagonal")
    with pytest.raises(ValueError, match=r"flip: not an option of kind='orthogonal'"):
        T.sylvester(3, "orthogonal", flip=True)
    with pytest.raises(ValueError, match=r"num_ortho_vecs: expected an integer in \[1, 3\], got 4"):
        T.sylvester(3, num_ortho_vecs=4)
    with pytest.raises(ValueError, match=r"num_householder: expected an integer >= 1, got 0"):
        T.conditional_sylvester(3, 2, "householder", num_householder=0)


def test_observed_data_is_scored_through_the_numerical_inverses():
    torch.manual_seed(11)
    layers = [T.planar(2), T.radial(2), T.sylvester(2, "householder"), T.sylvester(2, "triangular", flip=True)]
    with torch.no_grad():
        for layer in layers:
            for p in layer.parameters():
                p.add_(0.5 * torch.randn_like(p))
    base = dist.Normal(torch.zeros(2), 1.0).to_event(1)
    flow_dist = dist.TransformedDistribution(base, layers)
    x = torch.randn(7, 2)
    with torch.no_grad():
        y = x
        ladj = torch.zeros(7)
        for layer in layers:
            y_next = layer(y)
            ladj = ladj + layer.log_abs_det_jacobian(y, y_next)
            y = y_next
        expected = base.log_prob(x) - ladj
        assert torch.allclose(flow_dist.log_prob(y.clone()), expected, atol=1e-4)


def test_conditional_flow_scores_observed_data():
    torch.manual_seed(12)
    flow = T.conditional_sylvester(3, 2, "orthogonal", hidden=(8,))
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    d = dist.ConditionalTransformedDistribution(dist.Normal(torch.zeros(3), 1.0).to_event(1), [flow])
    c = torch.randn(6, 2)
    cond = d.condition(c)
    sample = cond.sample()
    assert sample.shape == (6, 3)
    lp = cond.log_prob(sample.clone())
    assert lp.shape == (6,) and torch.isfinite(lp).all()


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per_sample"])
def test_fused_planar_matches_reference_with_exact_derivatives(shared):
    from pyroflows import fused
    from pyroflows.transforms.planar import planar_map, tanh_slope

    def fast(*args):
        return fused.planar(planar_map, planar_parameters, tanh_slope, *args)

    torch.manual_seed(21)
    n, d = 6, 4
    shape = (d,) if shared else (n, d)
    x = torch.randn(n, d, dtype=torch.float64, requires_grad=True)
    u, w = (torch.randn(shape, dtype=torch.float64, requires_grad=True) for _ in range(2))
    b = torch.randn((1,) if shared else (n, 1), dtype=torch.float64, requires_grad=True)
    out = fast(x, u, w, b)
    assert out[0].grad_fn.next_functions[0][0].name().endswith("_PlanarBackward")  # the hand-written node ran
    for got, want in zip(out, planar_map(x, u, w, b), strict=True):
        assert torch.allclose(got, want, atol=1e-12)
    assert torch.autograd.gradcheck(fast, (x, u, w, b))
    assert torch.autograd.gradgradcheck(fast, (x, u, w, b))
