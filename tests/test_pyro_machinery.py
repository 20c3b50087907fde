"""Every family through the machinery that Pyro's own flows work with: each ELBO and its JIT form
(Pyro has no JIT form of RenyiELBO),
AutoNormalizingFlow, Predictive, NUTS with a flow likelihood, the Laplace approximation, Pyro's
documented conditional usage, torch.func, and (marked ``compile``) torch.compile with fullgraph.

Where something cannot work (the JIT and fullgraph compilation of an ODE solve, second derivatives
through the adjoint), the test asserts the error that says why."""

import copy
import io
import pickle
from functools import partial

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.transforms import ReshapeTransform
from pyro.infer import (
    MCMC,
    NUTS,
    SVI,
    JitTrace_ELBO,
    JitTraceGraph_ELBO,
    JitTraceMeanField_ELBO,
    Predictive,
    RenyiELBO,
    Trace_ELBO,
    TraceGraph_ELBO,
    TraceMeanField_ELBO,
)
from pyro.infer.autoguide import AutoLaplaceApproximation, AutoNormalizingFlow

import pyroflows.flows as FL
import pyroflows.transforms as T
from pyroflows.transforms.stacks import FlowSequence

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    # Pyro's Jit* ELBOs call torch.jit.trace, which torch deprecates; the warning is theirs
    pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
]

D = 4
FAMILIES = {
    "coupling_flow": lambda dim: T.coupling_flow(dim, num_blocks=2, hidden=(8,)),
    "planar": lambda dim: FlowSequence([T.planar(dim), T.planar(dim)]),
    "radial": lambda dim: T.radial(dim),
    "sylvester_orthogonal": lambda dim: T.sylvester(dim, "orthogonal"),
    "sylvester_householder": lambda dim: T.sylvester(dim, "householder", num_householder=2),
    "sylvester_triangular": lambda dim: FlowSequence([T.sylvester(dim, "triangular"), T.sylvester(dim, "triangular", flip=True)]),
    "actnorm_linear": lambda dim: FlowSequence([T.ActNorm(dim), T.InvertibleLinear(dim)]),
    "cnf_rk4": lambda dim: T.cnf(dim, hidden=(8,), method="rk4", step_size=0.25, trace="exact"),
    "spline_coupling_flow": lambda dim: T.spline_coupling_flow(dim, num_blocks=2, hidden=(8,), count_bins=4),
    "spline_coupling_flow_transform_passive": lambda dim: T.spline_coupling_flow(
        dim, num_blocks=2, hidden=(8,), count_bins=4, transform_passive=True
    ),
    "maf": lambda dim: T.maf(dim, num_blocks=2, hidden=(8,)),
    "iaf": lambda dim: T.iaf(dim, num_blocks=2, hidden=(8,)),
    "spline_autoregressive_iaf": lambda dim: T.spline_autoregressive(dim, (8,), cheap="forward", count_bins=4),
    # a multi-scale Glow on the latent vector seen as a 1x2x2 image
    "glow": lambda dim: FlowSequence(
        [
            ReshapeTransform((dim,), (1, 2, dim // 2)),
            FL.glow((1, 2, dim // 2), num_levels=1, num_steps=1, hidden_channels=4),
            ReshapeTransform((1, 2, dim // 2), (dim,)),
        ]
    ),  # fmt: skip
}
ODE = ("cnf_rk4",)
# rational-quadratic splines are C^1: the log-density's gradient is continuous but its derivative
# jumps at the knots, where a mode can sit without a Hessian (the Laplace approximation's premise)
C1 = ("spline_coupling_flow", "spline_coupling_flow_transform_passive", "spline_autoregressive_iaf")
ELBOS = {
    "Trace_ELBO": Trace_ELBO,
    "TraceMeanField_ELBO": TraceMeanField_ELBO,
    "TraceGraph_ELBO": TraceGraph_ELBO,
    "RenyiELBO": partial(RenyiELBO, alpha=0.5, num_particles=2),
    "JitTrace_ELBO": JitTrace_ELBO,
    "JitTraceMeanField_ELBO": JitTraceMeanField_ELBO,
    "JitTraceGraph_ELBO": JitTraceGraph_ELBO,
}
X = torch.tensor([[0.8, -0.4, 0.3, 1.1], [1.2, 0.1, -0.6, 0.2], [0.5, -0.9, 0.0, -0.3]])


def _model(x):
    z = pyro.sample("z", dist.Normal(torch.zeros(D), 1.0).to_event(1))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)


def _flow_guide(flow):
    def guide(x):
        pyro.module("flow", flow)
        loc = pyro.param("loc", torch.zeros(D))
        pyro.sample("z", dist.TransformedDistribution(dist.Normal(loc, 1.0).to_event(1), [flow]))

    return guide


@pytest.mark.parametrize("elbo", ELBOS)
@pytest.mark.parametrize("family", FAMILIES)
def test_every_elbo_trains_a_flow_guide(family, elbo):
    pyro.clear_param_store()
    torch.manual_seed(0)
    flow = FAMILIES[family](D)
    svi = SVI(_model, _flow_guide(flow), pyro.optim.Adam({"lr": 0.02}), ELBOS[elbo]())
    if elbo.startswith("Jit") and family in ODE:
        with pytest.raises(RuntimeError, match=r"cannot trace an ODE solve.*use the non-JIT ELBO"):
            svi.step(X)
        return
    before = {k: v.detach().clone() for k, v in flow.named_parameters()}
    losses = [svi.step(X) for _ in range(2)]  # a JIT ELBO traces the first step and replays the second
    assert all(torch.isfinite(torch.tensor(losses)))
    moved = [k for k, v in flow.named_parameters() if not torch.equal(v, before[k])]
    assert moved, f"{family} under {elbo}: no flow parameter moved"


@pytest.mark.parametrize("family", FAMILIES)
def test_auto_normalizing_flow_and_predictive(family):
    pyro.clear_param_store()
    torch.manual_seed(0)
    guide = AutoNormalizingFlow(_model, FAMILIES[family])
    svi = SVI(_model, guide, pyro.optim.Adam({"lr": 0.02}), Trace_ELBO())
    losses = [svi.step(X) for _ in range(15)]
    assert all(torch.isfinite(torch.tensor(losses)))
    draws = Predictive(_model, guide=guide, num_samples=7, return_sites=["z", "x"])(X)
    assert draws["z"].shape == (7, 1, D) and draws["x"].shape == (7, 3, D)


def test_one_scalar_latent_with_a_coupling_flow_says_what_to_use():
    def model():
        pyro.sample("a", dist.Normal(0.0, 1.0))

    guide = AutoNormalizingFlow(model, partial(T.coupling_flow, num_blocks=2, hidden=(8,)))
    with pytest.raises(ValueError, match=r"dim: a coupling needs at least 2 features .*, got 1; .*FlowSequence\(\[planar\(1\)"):
        guide()
    # what the message names works: a stack of planar maps guides the one scalar
    pyro.clear_param_store()
    guide = AutoNormalizingFlow(model, lambda dim: FlowSequence([T.planar(dim) for _ in range(4)]))
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.02}), Trace_ELBO())
    losses = [svi.step() for _ in range(15)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert Predictive(model, guide=guide, num_samples=5)()["a"].shape == (5,)


@pytest.mark.parametrize("family", FAMILIES)
def test_nuts_with_a_flow_likelihood(family):
    torch.manual_seed(0)
    flow = FAMILIES[family](D)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    flow.requires_grad_(False)

    def model(x):
        mu = pyro.sample("mu", dist.Normal(torch.zeros(D), 2.0).to_event(1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.TransformedDistribution(dist.Normal(mu, 1.0).to_event(1), [flow]), obs=x)

    mcmc = MCMC(NUTS(model, max_tree_depth=5), num_samples=10, warmup_steps=10, disable_progbar=True)
    mcmc.run(X)
    mu = mcmc.get_samples()["mu"]
    assert mu.shape == (10, D) and torch.isfinite(mu).all()


@pytest.mark.parametrize("family", [f for f in FAMILIES if f not in C1])
def test_laplace_approximation_with_a_flow_prior_is_the_inverse_hessian(family):
    # exact second derivatives through the (numerical) inverse: Pyro's Laplace covariance equals the
    # inverse Hessian of the log joint computed by our own double backward
    pyro.clear_param_store()
    torch.manual_seed(0)
    flow = FAMILIES[family](D).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    flow.requires_grad_(False)
    x = X.double()
    prior = dist.TransformedDistribution(dist.Normal(torch.zeros(D, dtype=torch.float64), 1.0).to_event(1), [flow])

    def model(x):
        z = pyro.sample("z", prior)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    guide = AutoLaplaceApproximation(model)
    # the identity holds at any point where the Hessian is negative definite: 30 steps toward the mode reach one
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.1}), Trace_ELBO())
    for _ in range(30):
        svi.step(x)
    laplace = guide.laplace_approximation(x)
    posterior = laplace.get_posterior()
    z_map, covariance = posterior.loc.detach(), posterior.covariance_matrix.detach()

    def log_joint(z):
        return prior.log_prob(z) + dist.Normal(z, 1.0).to_event(1).log_prob(x).sum()

    hessian = torch.autograd.functional.hessian(log_joint, z_map)
    expected = torch.linalg.inv(-hessian)
    assert torch.allclose(covariance, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    "make",
    [
        lambda: T.conditional_coupling_flow(2, 1, num_blocks=2, hidden=(8,)),
        lambda: T.conditional_planar(2, 1),
        lambda: T.conditional_sylvester(2, 1, "triangular"),
        lambda: T.conditional_affine_coupling(2, 1, hidden=(8,)),
    ],
)
def test_pyros_documented_conditional_usage_gives_pyros_shapes(make):
    # Pyro's normalizing-flow tutorial: an unexpanded base, and sample(sample_shape=context batch)
    # pairs draw i with context row i
    flow = make()
    base = dist.Normal(torch.zeros(2), torch.ones(2)).to_event(1)
    given = dist.ConditionalTransformedDistribution(base, [flow])
    context = torch.randn(50, 1)
    samples = given.condition(context).sample(torch.Size([50]))
    assert samples.shape == (50, 2)
    assert given.condition(context).log_prob(samples).shape == (50,)
    # our own convention: the base is expanded to the context's batch, one draw per context
    from pyroflows.distributions import ConditionalFlowDistribution

    ours = ConditionalFlowDistribution(base, [flow]).condition(context)
    assert ours.sample().shape == (50, 2) and ours.sample((3,)).shape == (3, 50, 2)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f not in ODE])
def test_torch_func_jacrev_and_vmap(family):
    torch.manual_seed(0)
    flow = FAMILIES[family](D).double()
    x = torch.randn(5, D, dtype=torch.float64)
    if family in ("glow", "actnorm_linear"):  # ActNorm initialises from its first batch, which a transform cannot write
        with pytest.raises(RuntimeError, match=r"ActNorm: .*call the flow once on a batch of data"):
            torch.func.jacrev(lambda v: flow(v.unsqueeze(0))[0])(x[0])
        flow(x)
    jac = torch.func.vmap(torch.func.jacrev(lambda v: flow(v.unsqueeze(0))[0]))(x)
    for i in range(5):
        ref = torch.autograd.functional.jacobian(lambda v: flow(v.unsqueeze(0))[0], x[i])
        assert torch.allclose(jac[i], ref, atol=1e-10)


@pytest.mark.parametrize("family", FAMILIES)
def test_save_and_load_with_weights_only(family):
    flow = FAMILIES[family](D)
    x = torch.randn(4, D)
    y = flow(x).detach()
    buf = io.BytesIO()
    torch.save(flow.state_dict(), buf)
    buf.seek(0)
    fresh = FAMILIES[family](D)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.allclose(fresh(x), y, atol=1e-6)
    for clone in (pickle.loads(pickle.dumps(flow)), copy.deepcopy(flow)):
        assert torch.allclose(clone(x), y, atol=1e-6)


# ----------------------------------------------------------------------------- torch.compile

COMPILED = {
    "coupling_flow": FAMILIES["coupling_flow"],
    "conditional_coupling_flow": lambda dim: T.conditional_coupling_flow(dim, 1, num_blocks=2, hidden=(8,)),
    "planar": FAMILIES["planar"],
    "radial": FAMILIES["radial"],
    "sylvester_orthogonal": FAMILIES["sylvester_orthogonal"],
    "sylvester_householder": FAMILIES["sylvester_householder"],
    "sylvester_triangular": FAMILIES["sylvester_triangular"],
    "actnorm_linear": FAMILIES["actnorm_linear"],
    "glow": lambda dim: FL.glow((1, 4, 4), num_levels=1, num_steps=1, hidden_channels=4),
    "spline_coupling_flow": FAMILIES["spline_coupling_flow"],
    "conditional_spline_coupling_flow": lambda dim: T.conditional_spline_coupling_flow(dim, 1, num_blocks=2, hidden=(8,), count_bins=4),
    "spline_coupling_flow_transform_passive": FAMILIES["spline_coupling_flow_transform_passive"],
    "conditional_spline_coupling_flow_transform_passive": lambda dim: T.conditional_spline_coupling_flow(
        dim, 1, num_blocks=2, hidden=(8,), count_bins=4, transform_passive=True
    ),
    "maf": FAMILIES["maf"],
    "iaf": FAMILIES["iaf"],
    "conditional_maf": lambda dim: T.conditional_maf(dim, 1, num_blocks=2, hidden=(8,)),
    "spline_autoregressive_iaf": FAMILIES["spline_autoregressive_iaf"],
}


@pytest.mark.compile
@pytest.mark.usefixtures("no_distribution_validation")
@pytest.mark.parametrize("family", COMPILED)
def test_compile_with_fullgraph_matches_eager(family):
    torch._dynamo.reset()
    torch.manual_seed(0)
    flow = COMPILED[family](D)
    conditional = family.startswith("conditional")
    event = (1, 4, 4) if family == "glow" else (D,)
    x = torch.randn((6,) + event)
    c = torch.randn(6, 1) if conditional else None
    base = dist.Normal(torch.zeros(event), 1.0).to_event(len(event))
    flow.inv(x) if not conditional else None  # data-dependent initialisation, eagerly

    def loss(v, ctx):
        t = flow.condition(ctx) if conditional else flow
        return -dist.TransformedDistribution(base, [t]).log_prob(v).mean()

    params = [p for p in flow.parameters() if p.requires_grad]
    compiled = torch.compile(loss, fullgraph=True)
    got = torch.autograd.grad(compiled(x, c), params)
    want = torch.autograd.grad(loss(x, c), params)
    assert torch.allclose(compiled(x, c), loss(x, c), atol=1e-4)
    for a, b in zip(got, want, strict=True):
        assert torch.allclose(a, b, atol=1e-4)


# Dynamo reads .grad of every tensor local when it resumes after the graph break at the solver,
# and torch warns about it for the solver's non-leaf outputs; the warning is torch's own.
@pytest.mark.compile
@pytest.mark.usefixtures("no_distribution_validation")
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")
def test_compile_leaves_an_ode_solve_eager_and_says_why_under_fullgraph():
    torch._dynamo.reset()
    flow = T.cnf(D, hidden=(8,), method="rk4", step_size=0.25)
    x = torch.randn(4, D)
    assert torch.allclose(torch.compile(lambda v: flow.inv(v))(x), flow.inv(x), atol=1e-6)
    with pytest.raises(Exception, match=r"torchdiffeq's solvers check their inputs"):
        torch.compile(lambda v: flow.inv(v), fullgraph=True)(x)
