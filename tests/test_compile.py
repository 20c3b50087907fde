"""Compiled training steps and sampling calls: the same losses, gradients and draws as eager
execution, one warning and eager results where compiling fails, the function's own errors raised as
they are, and argument checks. The tests in the default suite trace with ``backend="eager"`` or a
backend that fails on purpose (no code generation); those marked ``compile`` run inductor."""

import warnings

import pyro.distributions as dist
import pytest
import torch

import pyroflows
import pyroflows.flows as FL
import pyroflows.transforms as T
from pyroflows import CompileFallbackWarning, compile_sampler, compile_step
from pyroflows.distributions import ConditionalFlowDistribution
from pyroflows.transforms.stacks import FlowSequence

D = 2


# torch.distributions' validation off, as the first torch.compile of a process leaves it
pytestmark = pytest.mark.usefixtures("no_distribution_validation")


def _failing_backend(gm, example_inputs):
    raise RuntimeError("this backend refuses every graph")


def _problem(make=lambda: T.coupling_flow(D, num_blocks=2, hidden=(8,)), event=(D,)):
    torch.manual_seed(0)
    flow = make()
    base = dist.Normal(torch.zeros(event), 1.0).to_event(len(event))
    x = torch.randn((6,) + event)
    flow.inv(x)  # data-dependent initialisation (ActNorm), eagerly

    def loss_fn(v):
        return -dist.TransformedDistribution(base, [flow]).log_prob(v).mean()

    return flow, loss_fn, x


def _eager_loss_and_grads(flow, loss_fn, x):
    params = [p for p in flow.parameters() if p.requires_grad]
    loss = loss_fn(x)
    return loss.detach(), torch.autograd.grad(loss, params)


def _step_loss_and_grads(flow, step, x):
    flow.zero_grad(set_to_none=True)
    loss = step(x)
    return loss, [p.grad for p in flow.parameters() if p.requires_grad]


def _assert_close(got, want, atol):
    (loss_a, grads_a), (loss_b, grads_b) = got, want
    assert torch.allclose(loss_a, loss_b, atol=atol)
    assert len(grads_a) == len(grads_b) > 0
    for a, b in zip(grads_a, grads_b, strict=True):
        assert a is not None and torch.allclose(a, b, atol=atol)


# ----------------------------------------------------------------------------- traced, no code generation


def _trains_as_the_eager_loop(make_step):
    """Three steps of ``make_step(loss_fn, optimizer)`` against the plain eager loop on a twin flow:
    the same losses and, after them, the same parameters."""
    flow, loss_fn, x = _problem()
    twin, twin_loss, _ = _problem()
    twin_opt = torch.optim.Adam(twin.parameters(), lr=1e-2)
    step = make_step(loss_fn, torch.optim.Adam(flow.parameters(), lr=1e-2))
    for _ in range(3):
        got = step(x)
        twin_opt.zero_grad()
        want = twin_loss(x)
        want.backward()
        twin_opt.step()
        assert torch.allclose(got, want.detach(), atol=1e-6)
        assert not got.requires_grad
    for a, b in zip(flow.parameters(), twin.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    return step


def test_traced_steps_train_as_the_eager_loop_does():
    step = _trains_as_the_eager_loop(lambda loss_fn, opt: compile_step(loss_fn, opt, backend="eager"))
    assert step.compiled and step.fallback_reason is None


def test_a_compiled_optimizer_step_trains_as_the_eager_loop_does():
    traced = []

    def recording_backend(gm, example_inputs):
        traced.append(sum(n.op == "call_function" for n in gm.graph.nodes))
        return gm.forward

    step = _trains_as_the_eager_loop(lambda loss_fn, opt: compile_step(loss_fn, opt, compile_optimizer=True, backend=recording_backend))
    assert step.compiled and len(traced) >= 2  # the loss's graph and the optimiser's
    _, loss_fn, _ = _problem()
    with pytest.raises(ValueError, match="compile_optimizer: expected an optimizer"):
        compile_step(loss_fn, compile_optimizer=True)
    with pytest.raises(TypeError, match="compile_optimizer: expected True or False, got 1"):
        compile_step(loss_fn, torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), compile_optimizer=1)


@pytest.mark.parametrize(
    "make, linears_per_pass",
    [
        (lambda: T.coupling_flow(D, num_blocks=2, hidden=(8,)), 2 * 2 * 2),  # 2 blocks of 2 couplings, 2 layers each
        (lambda: T.affine_coupling(D, hidden=(8,)), 2),
    ],
    ids=["flow_sequence", "one_transform"],
)
def test_a_traced_log_prob_runs_each_conditioner_once(make, linears_per_pass):
    # log_prob asks for the log-det of the inverse it has just run: inside the traced graph the pass
    # is kept for it, as in eager mode, instead of running every conditioner a second time
    torch._dynamo.reset()
    flow, loss_fn, x = _problem(make)
    linears = []

    def counting_backend(gm, example_inputs):
        linears.append(sum(n.op == "call_function" and n.target is torch._C._nn.linear for n in gm.graph.nodes))
        return gm.forward

    got = torch.compile(loss_fn, backend=counting_backend, fullgraph=True)(x)
    assert linears == [linears_per_pass]
    assert torch.allclose(got, loss_fn(x), atol=1e-6)
    assert flow.__dict__.get("_traced_pass") is None  # the graph's tensors are not held after it


def test_a_failing_backend_falls_back_to_eager_with_one_warning():
    flow, loss_fn, x = _problem()
    want = _eager_loss_and_grads(flow, loss_fn, x)
    step = compile_step(loss_fn, backend=_failing_backend)
    with pytest.warns(CompileFallbackWarning, match="refuses every graph") as record:
        got = _step_loss_and_grads(flow, step, x)
    assert len(record) == 1
    _assert_close(got, want, atol=1e-6)
    assert not step.compiled and "refuses every graph" in step.fallback_reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        _assert_close(_step_loss_and_grads(flow, step, x), want, atol=1e-6)


# dynamo reads .grad of the tensors it holds when it resumes after the graph break; the warning
# about non-leaf tensors is torch's own
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")
def test_a_graph_break_under_fullgraph_falls_back_and_says_so():
    flow, loss_fn, x = _problem()

    def breaking_loss(v):
        torch._dynamo.graph_break()
        return loss_fn(v)

    step = compile_step(breaking_loss, backend="eager")
    with pytest.warns(CompileFallbackWarning, match="graph_break"):
        got = _step_loss_and_grads(flow, step, x)
    _assert_close(got, _eager_loss_and_grads(flow, loss_fn, x), atol=1e-6)
    assert not step.compiled
    # without fullgraph the same function compiles in two graphs
    step = compile_step(breaking_loss, backend="eager", fullgraph=False)
    step(x)
    assert step.compiled


def test_the_functions_own_error_is_raised_without_a_fallback():
    flow, loss_fn, x = _problem()
    step = compile_step(loss_fn, backend="eager")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="expected shape") as info:
            step(torch.randn(6, D + 1))
    assert info.value.__suppress_context__
    assert step.compiled
    step(x)


def test_an_evaluation_step_leaves_the_gradients_alone():
    flow, loss_fn, x = _problem()
    step = compile_step(loss_fn, backward=False, backend="eager")
    with torch.no_grad():
        loss = step(x)
    assert torch.allclose(loss, loss_fn(x).detach(), atol=1e-6)
    assert all(p.grad is None for p in flow.parameters())


def test_traced_sampler_draws_what_eager_sampling_draws():
    flow, _, _ = _problem()
    d = dist.TransformedDistribution(dist.Normal(torch.zeros(D), 1.0).to_event(1), [flow])
    sampler = compile_sampler(d, backend="eager")
    torch.manual_seed(3)
    got = sampler((5,))
    torch.manual_seed(3)
    assert torch.allclose(got, d.sample((5,)), atol=1e-6) and got.shape == (5, D)
    assert sampler.compiled


def test_traced_conditional_sampler_and_its_fallback():
    torch.manual_seed(0)
    flow = T.conditional_coupling_flow(D, 1, num_blocks=2, hidden=(8,))
    d = ConditionalFlowDistribution(dist.Normal(torch.zeros(D), 1.0).to_event(1), [flow])
    context = torch.randn(4, 1)
    torch.manual_seed(3)
    want = d.condition(context).sample((2,))
    for backend in ("eager", _failing_backend):
        sampler = compile_sampler(d, backend=backend)
        torch.manual_seed(3)
        if backend == "eager":
            got = sampler((2,), context)
        else:
            with pytest.warns(CompileFallbackWarning, match="refuses every graph"):
                got = sampler((2,), context)
        assert got.shape == want.shape == (2, 4, D)
        assert torch.allclose(got, want, atol=1e-6)
        assert sampler.compiled == (backend == "eager")


def test_bad_arguments_name_themselves():
    flow, loss_fn, x = _problem()
    with pytest.raises(TypeError, match="loss_fn: expected a callable"):
        compile_step(3.0)
    with pytest.raises(TypeError, match="optimizer: expected a torch.optim.Optimizer or None, got list"):
        compile_step(loss_fn, [])
    with pytest.raises(TypeError, match="backward: expected True or False, got 1"):
        compile_step(loss_fn, backward=1)
    with pytest.raises(TypeError, match="fullgraph: expected True or False, got 'yes'"):
        compile_step(loss_fn, fullgraph="yes")
    with pytest.raises(ValueError, match="mode: expected one of .*, got 'fastest'"):
        compile_step(loss_fn, mode="fastest")
    with pytest.raises(TypeError, match="backend: expected a backend name"):
        compile_step(loss_fn, backend=3)
    with pytest.raises(TypeError, match="distribution: expected a distribution with a sample or condition method, got Tensor"):
        compile_sampler(torch.zeros(2))
    conditional = ConditionalFlowDistribution(dist.Normal(torch.zeros(D), 1.0).to_event(1), [T.conditional_coupling_flow(D, 1)])
    with pytest.raises(ValueError, match="context: expected a context tensor for ConditionalFlowDistribution, got None"):
        compile_sampler(conditional, backend="eager")((2,))
    step = compile_step(lambda v: flow(v).sum(-1), backend="eager")
    with pytest.raises(ValueError, match=r"loss_fn: expected it to return a scalar tensor, got shape \(6,\)"):
        step(x)


def test_public_names():
    assert pyroflows.compile_step is pyroflows.infer.compile_step
    assert pyroflows.compile_sampler is pyroflows.infer.compile_sampler


# ----------------------------------------------------------------------------- inductor

INDUCTOR = {
    "coupling_flow": (lambda: T.coupling_flow(D, num_blocks=2, hidden=(8,)), (D,)),
    "planar": (lambda: FlowSequence([T.planar(D), T.planar(D)]), (D,)),
    "sylvester_householder": (lambda: T.sylvester(D, "householder", num_householder=2), (D,)),
    "glow": (lambda: FL.glow((1, 4, 4), num_levels=1, num_steps=1, hidden_channels=4), (1, 4, 4)),
}


@pytest.mark.compile
@pytest.mark.parametrize("family", INDUCTOR)
def test_compiled_step_matches_eager(family):
    torch._dynamo.reset()
    flow, loss_fn, x = _problem(*INDUCTOR[family])
    want = _eager_loss_and_grads(flow, loss_fn, x)
    step = compile_step(loss_fn)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)
        for _ in range(2):  # the second call runs the cached graph
            _assert_close(_step_loss_and_grads(flow, step, x), want, atol=1e-4)
    assert step.compiled


@pytest.mark.compile
def test_compiled_sampler_matches_eager_with_torchs_random_numbers():
    torch._dynamo.reset()
    flow, _, _ = _problem()
    d = dist.TransformedDistribution(dist.Normal(torch.zeros(D), 1.0).to_event(1), [flow])
    sampler = compile_sampler(d)
    with torch._inductor.config.patch(fallback_random=True):
        torch.manual_seed(3)
        got = sampler((5,))
    torch.manual_seed(3)
    assert torch.allclose(got, d.sample((5,)), atol=1e-4)
    assert sampler.compiled
