"""The shared transform test suite, public so users check their own flows the way pyroflows does.

:func:`transform_cases` lists one :class:`TransformCase` per public transform configuration. Each
``check_*`` function takes a case and raises ``AssertionError`` with a message when the contract of
``DESIGN.md`` is broken:

>>> from pyroflows.testing import transform_cases, check_round_trip, check_log_det
>>> case = transform_cases()[0]
>>> check_round_trip(case); check_log_det(case)

A new transform family joins the suite by adding a module ``pyroflows/testing/cases_<family>.py``
with a ``cases()`` function and naming it in ``CASE_MODULES``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from pyro.distributions.conditional import ConditionalTransform
from torch.distributions import Transform

from ..transforms.base import module_reference

CASE_MODULES = [
    "pyroflows.testing.cases_core",
    "pyroflows.testing.cases_cnf",
    "pyroflows.testing.cases_planar_sylvester",
    "pyroflows.testing.cases_glow",
    "pyroflows.testing.cases_crow",
    "pyroflows.testing.cases_dual_glow",
    "pyroflows.testing.cases_motionflow",
    "pyroflows.testing.cases_spline_autoregressive",
]


@dataclass(frozen=True)
class TransformCase:
    """One configuration of a transform under test.

    Attributes:
        name: id shown by pytest.
        make: zero-argument builder of the transform or conditional transform (float32, CPU).
        event_shape: event shape of the input.
        context_shape: event shape of the context, ``None`` when unconditional.
        inverse_atol: float64 round-trip tolerance (numerical inverses need a looser one).
        logdet_atol: float64 tolerance of log|det J| against the autograd Jacobian.
        input_scale: scale of the random inputs.
        hessian_rtol: relative tolerance of second derivatives against finite differences.
        tags: labels of special behaviour (``"first_order"``: refuses second derivatives, with an
            error that says why).
    """

    name: str
    make: Callable[[], object]
    event_shape: tuple
    context_shape: tuple | None = None
    inverse_atol: float = 1e-8
    logdet_atol: float = 1e-5
    input_scale: float = 1.0
    tags: tuple = field(default_factory=tuple)
    hessian_rtol: float = 1e-6

    @property
    def conditional(self) -> bool:
        return self.context_shape is not None

    def __repr__(self) -> str:
        return f"TransformCase({self.name})"


def transform_cases() -> list[TransformCase]:
    """Every registered case, from the modules named in ``CASE_MODULES``."""
    out: list[TransformCase] = []
    for name in CASE_MODULES:
        out.extend(importlib.import_module(name).cases())
    return out


# ----------------------------------------------------------------------------- building blocks


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_inputs(
    case: TransformCase,
    batch_shape: Sequence[int] = (3,),
    context_batch_shape: Sequence[int] | None = None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    seed: int = 1,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Random ``x`` (and ``context``) for ``case``; the context's batch shape defaults to ``batch_shape``."""
    g = _generator(seed)
    x = case.input_scale * torch.randn(tuple(batch_shape) + tuple(case.event_shape), generator=g, dtype=dtype)
    c = None
    if case.conditional:
        cb = batch_shape if context_batch_shape is None else context_batch_shape
        c = torch.randn(tuple(cb) + tuple(case.context_shape), generator=g, dtype=dtype)
        c = c.to(device)
    return x.to(device), c


def instantiate(case: TransformCase, dtype: torch.dtype = torch.float64, seed: int = 0, perturb: float = 0.1) -> torch.nn.Module:
    """Build the module, run one batch through it (data-dependent init), then perturb every parameter.

    Zero-initialised conditioners make a fresh flow the identity, where many bugs hide; the
    perturbation moves it to a generic point. Each call returns a new module. The first call with
    given arguments does the work; later ones build the module and load the first one's
    ``state_dict``, which :func:`check_state_dict` shows to compute the same outputs. Either way
    the global torch generator is left seeded with ``seed + 300``, so that what a check draws
    next does not depend on which call came first.
    """
    key = (case, dtype, seed, perturb)
    torch.manual_seed(seed)
    module = case.make().to(dtype)
    state = _instantiated_states.get(key)
    if state is None:
        x, c = random_inputs(case, (16,), dtype=dtype, seed=seed + 100)
        with torch.no_grad():
            bind(module, c).inv(x)
        if perturb:
            perturb_parameters(module, perturb, seed + 200)
        _instantiated_states[key] = {k: v.detach().clone() for k, v in module.state_dict().items()}
    else:
        module.load_state_dict(state)
    torch.manual_seed(seed + 300)
    return module


# the state of every module :func:`instantiate` built, by its arguments
_instantiated_states: dict[tuple, dict[str, torch.Tensor]] = {}


def perturb_parameters(module: torch.nn.Module, scale: float = 0.1, seed: int = 0) -> torch.nn.Module:
    """Add ``scale`` times seeded standard Normal noise to every parameter of ``module`` (in place;
    returns ``module``): moves zero-initialised conditioners away from the identity."""
    g = _generator(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device))
    return module


def bind(module: Transform | ConditionalTransform, context: torch.Tensor | None) -> Transform:
    """``module.condition(context)`` for a conditional transform, ``module`` itself otherwise."""
    if isinstance(module, ConditionalTransform):
        return module.condition(context)
    return module


def _flat(v: torch.Tensor, event_shape: Sequence[int]) -> torch.Tensor:
    return v.reshape(v.shape[: v.dim() - len(event_shape)] + (-1,))


# ----------------------------------------------------------------------------- the checks


def check_round_trip(case: TransformCase, batch_shape: Sequence[int] = (4,)) -> None:
    """``inverse(forward(x)) == x`` and ``forward(inverse(y)) == y`` in float64, without the cache."""
    module = instantiate(case)
    x, c = random_inputs(case, batch_shape)
    t = bind(module, c)
    with torch.no_grad():
        y = t(x)
        x_back = bind(module, c).inv(y.clone())
        err = (x_back - x).abs().max().item()
        assert err < case.inverse_atol, f"{case.name}: inverse(forward(x)) differs from x by {err:.3g} (tolerance {case.inverse_atol})"
        x2 = bind(module, c).inv(x.clone())
        y_back = bind(module, c)(x2.clone())
        err = (y_back - x).abs().max().item()
        assert err < case.inverse_atol, f"{case.name}: forward(inverse(y)) differs from y by {err:.3g} (tolerance {case.inverse_atol})"


def check_log_det(case: TransformCase, num_samples: int = 2) -> None:
    """``log_abs_det_jacobian`` after a forward and after an inverse call equals
    ``log|det|`` of the autograd Jacobian of the forward map, per sample, in float64."""
    module = instantiate(case)
    x, c = random_inputs(case, (num_samples,))
    t = bind(module, c)
    y = t(x)
    ladj_fwd = t.log_abs_det_jacobian(x, y)
    t2 = bind(module, c)
    x_inv = t2.inv(y.clone())
    ladj_inv = t2.log_abs_det_jacobian(x_inv, y)
    for i in range(num_samples):
        ci = None if c is None else c[i]

        def f(v: torch.Tensor, ci: torch.Tensor | None = ci) -> torch.Tensor:
            return _flat(bind(module, ci)(v.reshape(case.event_shape)), case.event_shape)

        jac = torch.autograd.functional.jacobian(f, x[i].reshape(-1))
        expected = torch.linalg.slogdet(jac)[1]
        for label, got in (("forward", ladj_fwd[i]), ("inverse", ladj_inv[i])):
            err = (got - expected).abs().item()
            assert err < case.logdet_atol, (
                f"{case.name}: log|det J| after the {label} call is {got.item():.8f}, "
                f"the autograd Jacobian gives {expected.item():.8f} (error {err:.3g})"
            )


def check_shapes(case: TransformCase) -> None:
    """Outputs keep ``batch_shape + event_shape`` for several batch shapes; log-det has ``batch_shape``;
    a context broadcasts against the input's batch dims."""
    module = instantiate(case)
    for batch in [(), (3,), (2, 3)]:
        if case.conditional and batch == ():
            continue
        x, c = random_inputs(case, batch)
        t = bind(module, c)
        y = t(x)
        assert y.shape == x.shape, f"{case.name}: forward of {tuple(x.shape)} gave {tuple(y.shape)}"
        ladj = t.log_abs_det_jacobian(x, y)
        assert ladj.shape == torch.Size(batch), f"{case.name}: log-det shape {tuple(ladj.shape)}, expected {batch}"
        assert tuple(t.forward_shape(x.shape)) == tuple(y.shape), f"{case.name}: forward_shape disagrees with the output"
        assert bind(module, c).inv(y.clone()).shape == x.shape
    if case.conditional:
        # context batch (3,) against input batch (2, 3): the same as an explicitly expanded context
        x, _ = random_inputs(case, (2, 3))
        _, c = random_inputs(case, (3,), seed=7)
        y = bind(module, c)(x)
        y_full = bind(module, c.expand((2,) + tuple(c.shape)))(x)
        assert y.shape == x.shape, f"{case.name}: broadcasting a context of {tuple(c.shape)} gave {tuple(y.shape)}"
        assert torch.allclose(y, y_full, atol=1e-10), f"{case.name}: broadcast context differs from the expanded one"
        # input batch (3,) against context batch (2, 3): the output takes the broadcast shape
        x, _ = random_inputs(case, (3,))
        _, c = random_inputs(case, (2, 3), seed=8)
        t = bind(module, c)
        y = t(x)
        assert y.shape == torch.Size((2, 3) + tuple(case.event_shape)), f"{case.name}: got {tuple(y.shape)}"
        assert t.log_abs_det_jacobian(x, y).shape == torch.Size((2, 3))


def check_gradients(case: TransformCase) -> None:
    """Forward and inverse losses send finite, non-zero gradients to every parameter and the context."""
    module = instantiate(case)
    x, c = random_inputs(case, (5,))
    x.requires_grad_(True)
    if c is not None:
        c.requires_grad_(True)
    t = bind(module, c)
    y = t(x)
    loss = (y**2).sum() + t.log_abs_det_jacobian(x, y).sum()
    y2, _ = random_inputs(case, (5,), seed=3)
    t2 = bind(module, c)
    x2 = t2.inv(y2)
    loss = loss + (x2**2).sum() + t2.log_abs_det_jacobian(x2, y2).sum()
    loss.backward()
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        assert p.grad is not None, f"{case.name}: parameter {name} gets no gradient"
        assert torch.isfinite(p.grad).all(), f"{case.name}: parameter {name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{case.name}: parameter {name} has an all-zero gradient"
    assert x.grad is not None and x.grad.abs().sum() > 0, f"{case.name}: the input gets no gradient"
    if c is not None:
        assert c.grad is not None and c.grad.abs().sum() > 0, f"{case.name}: the context gets no gradient"


def check_dtypes(case: TransformCase) -> None:
    """float32 and float64 modules map inputs of their dtype to outputs of that dtype."""
    for dtype in (torch.float32, torch.float64):
        module = instantiate(case, dtype=dtype)
        x, c = random_inputs(case, (3,), dtype=dtype)
        t = bind(module, c)
        y = t(x)
        assert y.dtype == dtype and t.log_abs_det_jacobian(x, y).dtype == dtype, f"{case.name}: {dtype} in, {y.dtype} out"
        assert torch.isfinite(y).all()


def check_state_dict(case: TransformCase) -> None:
    """``state_dict`` survives ``torch.save`` / ``torch.load(weights_only=True)`` into a fresh module,
    which then computes the same outputs (and is not data-initialised again)."""
    src = instantiate(case, seed=0)
    buf = io.BytesIO()
    torch.save(src.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    torch.manual_seed(123)
    dst = case.make().to(torch.float64)
    dst.load_state_dict(state)
    dst.train()
    x, c = random_inputs(case, (4,), seed=11)
    x = 3.0 * x + 1.0  # a batch whose statistics would change a re-initialised ActNorm
    with torch.no_grad():
        a = bind(src, c)(x)
        b = bind(dst, c)(x)
    assert torch.allclose(a, b, atol=1e-12), f"{case.name}: the reloaded module computes other outputs"


def check_device(case: TransformCase, device: str | torch.device) -> None:
    """Run forward, inverse and log-det on ``device`` (e.g. ``"meta"`` or ``"cuda"``): every output
    follows the input's device."""
    device = torch.device(device)
    module = instantiate(case, dtype=torch.float32).to(device)
    x, c = random_inputs(case, (3,), dtype=torch.float32, device=device)
    t = bind(module, c)
    y = t(x)
    ladj = t.log_abs_det_jacobian(x, y)
    x_back = bind(module, c).inv(y.clone() if device.type != "meta" else torch.empty_like(y))
    for name, v in (("y", y), ("log-det", ladj), ("inverse", x_back)):
        assert v.device == device, f"{case.name}: {name} is on {v.device}, expected {device}"
    assert y.shape == x.shape and ladj.shape == torch.Size((3,))
    if device.type != "meta":
        assert (x_back - x).abs().max().item() < 1e-3, f"{case.name}: round trip on {device} fails"


def check_bad_inputs(case: TransformCase) -> None:
    """Wrong event shape, wrong dtype and NaN inputs (and a wrong context shape) raise errors that
    name the argument and the expected and received values."""
    import pytest  # only needed when the check runs

    module = instantiate(case, dtype=torch.float32)
    x, c = random_inputs(case, (3,), dtype=torch.float32)
    t = bind(module, c)
    wrong = torch.randn(3, *[s + 1 for s in case.event_shape])
    with pytest.raises(ValueError, match=r"x: expected shape"):
        t(wrong)
    with pytest.raises(ValueError, match=r"y: expected shape"):
        bind(module, c).inv(wrong)
    if module_reference(module) is not None:  # transforms without float parameters take any dtype
        with pytest.raises(TypeError, match=r"expected dtype torch.float32.*got torch.float64"):
            bind(module, c)(x.double())
    bad = x.clone()
    bad.view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match=r"x: expected finite values"):
        bind(module, c)(bad)
    if case.conditional:
        wrong_c = torch.randn(3, *[s + 1 for s in case.context_shape])
        with pytest.raises(ValueError, match=r"context: expected shape"):
            module.condition(wrong_c)


def check_cache_freshness(case: TransformCase) -> None:
    """Calling a transform again on the same tensor after an in-place parameter update (an optimiser
    step), or with gradients after a ``no_grad`` call, gives fresh results, not the cached ones."""
    module = instantiate(case)
    x, c = random_inputs(case, (3,))
    t = bind(module, c)
    params = [p for p in module.parameters() if p.requires_grad]
    with torch.no_grad():
        y_old = t(x).clone()
        x_old = t.inv(x).clone()
    y = t(x)
    if params:
        assert y.requires_grad, f"{case.name}: a call with gradients returned the cached no-grad result"
        with torch.no_grad():
            for p in params:
                p.add_(0.05)
        y_new, x_new = t(x), t.inv(x)
        assert not torch.allclose(y_new, y_old), f"{case.name}: forward returned a stale cached result after a parameter update"
        assert not torch.allclose(x_new, x_old), f"{case.name}: inverse returned a stale cached result after a parameter update"
        ladj = t.log_abs_det_jacobian(x, y_new)
        fresh = bind(module, c)
        assert torch.allclose(ladj, fresh.log_abs_det_jacobian(x, fresh(x)), atol=1e-8), (
            f"{case.name}: stale log-det after a parameter update"
        )


def check_in_place_input(case: TransformCase) -> None:
    """A tensor overwritten in place (``x.copy_(next_batch)``) between calls gives the new batch's
    values and log-det, in either direction and through a distribution's ``log_prob``, not those
    of the batch it held before."""
    module = instantiate(case)
    x, c = random_inputs(case, (3,))
    t = bind(module, c)
    for direction in ("forward", "inverse"):
        run = t if direction == "forward" else t.inv
        buf = x.clone()
        with torch.no_grad():
            run(buf)
            buf.copy_(2.0 * x + 0.5)
            got = run(buf)
            want = (bind(module, c) if direction == "forward" else bind(module, c).inv)(buf.clone())
        err = (got - want).abs().max().item()
        assert err < 1e-10, (
            f"{case.name}: the {direction} call on a tensor updated in place returned the old batch's result (error {err:.3g})"
        )
    buf = x.clone()
    with torch.no_grad():
        y = t(buf)
        t.log_abs_det_jacobian(buf, y)
        buf.copy_(2.0 * x + 0.5)
        y.copy_(bind(module, c)(buf.clone()))
        got = t.log_abs_det_jacobian(buf, y)
    fresh = bind(module, c)
    want = fresh.log_abs_det_jacobian(buf, fresh(buf.clone()))
    err = (got - want).abs().max().item()
    assert err < 1e-8, f"{case.name}: log_abs_det_jacobian of tensors updated in place returned the old log-det (error {err:.3g})"


def check_empty_batch(case: TransformCase) -> None:
    """A batch of zero inputs gives zero outputs and a zero-length log-det in both directions, with
    and without gradients, and leaves data-dependent initialisation for a batch that has data."""

    def fresh() -> torch.nn.Module:
        torch.manual_seed(0)
        return case.make().to(torch.float64)  # in training mode, not yet initialised

    touched = fresh()
    for m in (instantiate(case), touched):
        for batch in ((0,), (2, 0)):
            x, c = random_inputs(case, batch)
            for grad in (True, False):
                with torch.set_grad_enabled(grad):
                    t = bind(m, c)
                    y = t(x)
                    ladj = t.log_abs_det_jacobian(x, y)
                    x_back = bind(m, c).inv(y.clone())
                assert y.shape == x.shape and x_back.shape == x.shape, f"{case.name}: batch {batch} gave {tuple(y.shape)}"
                assert ladj.shape == torch.Size(batch), f"{case.name}: log-det of batch {batch} has shape {tuple(ladj.shape)}"
    x, c = random_inputs(case, (8,), seed=5)
    x = 3.0 * x + 1.0
    with torch.no_grad():
        after_empty, untouched = bind(touched, c).inv(x), bind(fresh(), c).inv(x)
    err = (after_empty - untouched).abs().max().item()
    assert err < 1e-10, f"{case.name}: empty batches changed what the first real batch gives (by {err:.3g}): they initialised the module"


def check_gradcheck(case: TransformCase) -> None:
    """``torch.autograd.gradcheck`` (which perturbs its input in place) passes on the forward map and
    its log-det, and on the inverse, with respect to the input, in float64."""
    module = instantiate(case)
    x, c = random_inputs(case, (1,))
    x.requires_grad_(True)

    def forward(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = bind(module, c)
        y = t(v)
        return y, t.log_abs_det_jacobian(v, y)

    def inverse(v: torch.Tensor) -> torch.Tensor:
        return bind(module, c).inv(v)

    for label, fn in (("forward", forward), ("inverse", inverse)):
        ok = torch.autograd.gradcheck(fn, (x,), atol=1e-5, rtol=1e-4, fast_mode=True, raise_exception=False)
        assert ok, f"{case.name}: torch.autograd.gradcheck fails on the {label} map"


def pytest_raises(exception: type[Exception], match: str) -> contextlib.AbstractContextManager:
    """``pytest.raises``, imported only when a check needs it (pytest is a test dependency)."""
    import pytest

    return pytest.raises(exception, match=match)


def _log_density(case: TransformCase, module: object, c: torch.Tensor | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> log p(x)`` of a standard Normal pushed through the case's transform."""
    t = bind(module, c)
    zeros = torch.zeros(case.event_shape, dtype=torch.float64)
    base = torch.distributions.Independent(torch.distributions.Normal(zeros, torch.ones_like(zeros)), len(case.event_shape))

    def log_p(x: torch.Tensor) -> torch.Tensor:
        z = t.inv(x)
        return base.log_prob(z) - t.log_abs_det_jacobian(z, x)

    return log_p


def check_hessian(case: TransformCase, perturb: float = 0.3, num_directions: int = 2) -> None:
    """Second derivatives of ``log p(x)`` (base Normal through the case's transform) are exact: the
    Hessian-vector product by double backward, through the inverse (numerical or not), matches
    central finite differences of the gradient to ``case.hessian_rtol``, in float64 at parameters
    perturbed by ``perturb``."""
    module = instantiate(case, perturb=perturb)
    x, c = random_inputs(case, (2,))
    log_p = _log_density(case, module, c)
    if "first_order" in case.tags:  # refuses a graph of the gradient, with an error that says why
        v = x.detach().requires_grad_(True)
        with pytest_raises(RuntimeError, r"second derivatives"):
            torch.autograd.grad(log_p(v).sum(), v, create_graph=True)
        return

    def grad(v: torch.Tensor) -> torch.Tensor:
        v = v.detach().requires_grad_(True)
        return torch.autograd.grad(log_p(v).sum(), v)[0]

    g = _generator(7)
    for _ in range(num_directions):
        d = torch.randn(x.shape, generator=g, dtype=x.dtype)
        d = d / d.norm()
        v = x.detach().requires_grad_(True)
        (gv,) = torch.autograd.grad(log_p(v).sum(), v, create_graph=True)
        (hvp,) = torch.autograd.grad((gv * d).sum(), v)
        eps = 1e-5
        fd = (grad(x + eps * d) - grad(x - eps * d)) / (2 * eps)
        err = ((hvp - fd).norm() / fd.norm().clamp_min(1e-12)).item()
        assert err < case.hessian_rtol, f"{case.name}: the Hessian of log p differs from finite differences by {err:.3g} (relative)"


def check_gradgradcheck(case: TransformCase) -> None:
    """``torch.autograd.gradgradcheck`` passes on the inverse map (the direction ``log_prob`` takes)
    with respect to the input, in float64."""
    if "first_order" in case.tags:
        return  # check_hessian checks the refusal
    module = instantiate(case)
    x, c = random_inputs(case, (1,))
    x.requires_grad_(True)

    def inverse(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = bind(module, c)
        u = t.inv(v)
        return u, t.log_abs_det_jacobian(u, v)

    ok = torch.autograd.gradgradcheck(inverse, (x,), atol=1e-5, rtol=1e-4, fast_mode=True, raise_exception=False)
    assert ok, f"{case.name}: torch.autograd.gradgradcheck fails on the inverse map"


def check_pickle(case: TransformCase) -> None:
    """The module and the transform it conditions to pickle (after a call, with a kept pass) and
    deep-copy, and the copies compute the same values."""
    import copy
    import pickle

    module = instantiate(case)
    x, c = random_inputs(case, (3,))
    t = bind(module, c)
    y = t(x)
    for label, obj in (("module", module), ("transform", t)):
        for how, clone in (("pickle", lambda o: pickle.loads(pickle.dumps(o))), ("deepcopy", copy.deepcopy)):
            try:
                other = clone(obj)
            except Exception as err:  # report which object and how
                raise AssertionError(f"{case.name}: the {label} does not {how}: {type(err).__name__}: {err}") from err
            with torch.no_grad():
                got = other(x) if label == "transform" else bind(other, c)(x)
            assert torch.allclose(got, y.detach(), atol=1e-10), f"{case.name}: the {how}d {label} computes other values"


def check_pyro_module(case: TransformCase) -> None:
    """``pyro.module`` registers the module's own parameters: Pyro's param store holds the very
    tensors the transform computes with (it copies non-contiguous ones, which would leave the
    module's untrained)."""
    import pyro

    module = case.make()
    store = pyro.get_param_store()
    names = [n for n in store.keys() if n.startswith("pyroflows_check$$$")]
    for n in names:
        del store[n]
    pyro.module("pyroflows_check", module)
    held = dict(store.named_parameters())
    copied = [n for n, p in module.named_parameters() if held.get(f"pyroflows_check$$${n}") is not p]
    for n in list(store.keys()):
        if n.startswith("pyroflows_check$$$"):
            del store[n]
    assert not copied, f"{case.name}: Pyro's param store holds copies of {copied}, which SVI would train instead of the module's"


ALL_CHECKS: Sequence[Callable[[TransformCase], None]] = (
    check_round_trip,
    check_log_det,
    check_shapes,
    check_gradients,
    check_dtypes,
    check_state_dict,
    check_bad_inputs,
    check_cache_freshness,
    check_in_place_input,
    check_empty_batch,
    check_gradcheck,
    check_hessian,
    check_gradgradcheck,
    check_pickle,
    check_pyro_module,
)


def covered_classes(case: TransformCase) -> set[type]:
    """Classes a case exercises: the module, the transform it conditions to, the math transforms
    they evaluate, and their parts."""
    module = case.make()
    x, c = random_inputs(case, (1,), dtype=torch.float32)
    seen: set[type] = set()

    def visit(t: object) -> None:
        if type(t) in seen:
            return
        seen.add(type(t))
        for part in list(getattr(t, "parts", ()) or ()) + list(getattr(t, "transforms", ()) or ()):
            visit(part)
        if callable(getattr(t, "transform", None)) and not isinstance(t, ConditionalTransform):
            visit(t.transform())

    with torch.no_grad():
        visit(bind(module, c))
    visit(module)
    return seen
