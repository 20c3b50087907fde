r"""Continuous normalizing flows (FFJORD) with RNODE regularisers, unconditional and conditional.

The forward map solves an ordinary differential equation from :math:`t = 0` to a learned time
:math:`T > 0`, starting at the input:

.. math::

    \frac{dz}{dt} = f(z, t[, c]), \quad z(0) = x, \quad y = z(T), \qquad
    \log\left|\det \frac{\partial y}{\partial x}\right| = \int_0^T \operatorname{tr}\frac{\partial f}{\partial z}(z(t), t)\,dt,

and the inverse solves the same equation backwards from :math:`z(T) = y`. The log-determinant is
one more component of the solver's state, so a single solve returns both. The trace is computed
either exactly (one vector-Jacobian product per dimension) or with Hutchinson's estimator
:math:`\operatorname{tr} A = \mathbb{E}[\varepsilon^\top A \varepsilon]` with Gaussian or Rademacher
:math:`\varepsilon`, one draw held fixed through a whole solve (an unbiased estimate, so the
log-density is stochastic).

The solve runs on the normalised time :math:`s = t / T \in [0, 1]` with the right-hand side
:math:`T f(z, sT)`, so :math:`T = \operatorname{softplus}(\tau)` is an ordinary parameter inside the
dynamics and gets its gradient both from backpropagation through the solver and from the adjoint
method (:func:`torchdiffeq.odeint_adjoint`).

RNODE's regularisers, integrated along the same solve in training mode when their weights are
positive, are the kinetic energy :math:`\int_0^T \lVert f \rVert^2 dt` and the Jacobian Frobenius
norm :math:`\int_0^T \lVert \partial f / \partial z \rVert_F^2 dt` (exact with the exact trace, else
estimated by :math:`\lVert \varepsilon^\top \partial f / \partial z \rVert^2` from the same
vector-Jacobian product). Read them after a pass through :attr:`CNF.regularization` or add
:meth:`CNF.regularization_loss` (or :func:`cnf_regularization` over a whole model) to a loss.

References: Chen, Rubanova, Bettencourt, Duvenaud, "Neural ordinary differential equations",
NeurIPS 2018; Grathwohl, Chen, Bettencourt, Sutskever, Duvenaud, "FFJORD: free-form continuous
dynamics for scalable reversible generative models", ICLR 2019; Finlay, Jacobsen, Nurbekyan,
Oberman, "How to train your neural ODE: the world of Jacobian and kinetic regularization",
ICML 2020.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Transform

from ..nn.concatsquash import ConcatSquashNet
from ..shapes import batch_shape_of, broadcast_batch, flatten_batch
from ..validation import check_positive, check_size
from .base import OnePassTransform, event_constraint, module_reference
from .parameterized import ConditionalFlowModule, FlowModule

_TRACES = ("exact", "hutchinson")
_NOISES = ("gaussian", "rademacher")
_NORMS = ("max", "rms")
_ADAPTIVE_RK = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
_FIXED_GRID = ("euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams", "fixed_adams")
#: The solvers of :func:`torchdiffeq.odeint`'s ``method`` argument.
SOLVER_METHODS = _ADAPTIVE_RK + _FIXED_GRID + ("scipy_solver",)


def _inverse_softplus(value: float) -> float:
    return value + math.log(-math.expm1(-value))


def _max_norm(state: Sequence[torch.Tensor]) -> torch.Tensor:
    """Largest absolute entry over the components of a tupled state (per-element error control)."""
    return torch.stack([v.abs().max() for v in state]).max()


class _FirstOrderOnly(torch.autograd.Function):
    """Identity on the adjoint solve's outputs whose backward refuses to be differentiated: the
    adjoint method's backward solve has no graph, so a second derivative would silently be wrong."""

    @staticmethod
    def forward(ctx: Any, *outputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:  # noqa: ANN401
        return outputs if len(outputs) > 1 else outputs[0]

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor, ...]:  # noqa: ANN401
        if torch.is_grad_enabled():
            raise RuntimeError(
                "CNF(adjoint=True): second derivatives (create_graph=True: Hessians, gradgradcheck, "
                "Laplace) need the solver's graph; use adjoint=False"
            )
        return grads


@dataclasses.dataclass(frozen=True)
class ODESolver:
    r"""How a continuous flow's ODE is solved and its log-det estimated (a frozen configuration).

    Args:
        trace: ``"exact"`` (``dim`` vector-Jacobian products per evaluation: small dims) or
            ``"hutchinson"`` (one, with a noise vector drawn per solve).
        noise: Hutchinson noise, ``"gaussian"`` or ``"rademacher"``.
        eval_exact_trace: use the exact trace in eval mode (``.eval()``) whatever ``trace`` says, for
            deterministic scoring.
        method: any :func:`torchdiffeq.odeint` solver (:data:`SOLVER_METHODS`: ``"dopri5"``, ``"rk4"``,
            ``"euler"``, ...).
        atol, rtol: solver tolerances (adaptive solvers); the log-det component is under the same
            error control as the state. Adaptive Runge-Kutta steps land on the end time rather than
            interpolating past it.
        norm: error norm of adaptive steps: ``"max"`` bounds every entry of every sample (a sample's
            accuracy does not depend on the batch it is solved in), ``"rms"`` is torchdiffeq's
            default (root mean square over the batch, per state component).
        step_size: step of fixed-grid solvers as a fraction of the integration interval (the solve
            runs on :math:`s = t/T \in [0, 1]`, so ``1 / step_size`` steps whatever :math:`T` is).
        options: further solver options passed to torchdiffeq.
        adjoint: differentiate with the adjoint method (:func:`torchdiffeq.odeint_adjoint`, constant
            memory in the number of steps) instead of backpropagating through the solver's steps.
        kinetic_energy, jacobian_norm: RNODE weights :math:`\lambda_K, \lambda_J`; when positive,
            the regularisers are integrated along every training-mode solve.

    Example::

        >>> ODESolver(method="rk4", step_size=0.25).method
        'rk4'
    """

    trace: str = "hutchinson"
    noise: str = "gaussian"
    eval_exact_trace: bool = False
    method: str = "dopri5"
    atol: float = 1e-5
    rtol: float = 1e-5
    norm: str = "max"
    step_size: float | None = None
    options: Mapping | None = None
    adjoint: bool = False
    kinetic_energy: float = 0.0
    jacobian_norm: float = 0.0

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("trace", self.trace, _TRACES),
            ("noise", self.noise, _NOISES),
            ("norm", self.norm, _NORMS),
            ("method", self.method, SOLVER_METHODS),
        ):
            if value not in allowed:
                raise ValueError(f"{name}: expected one of {allowed}, got {value!r}")
        object.__setattr__(self, "atol", check_positive("atol", self.atol))
        object.__setattr__(self, "rtol", check_positive("rtol", self.rtol))
        if self.step_size is not None and not (isinstance(self.step_size, (int, float)) and 0 < self.step_size <= 1):
            raise ValueError(f"step_size: expected a fraction of the integration interval in (0, 1], got {self.step_size!r}")
        for name in ("kinetic_energy", "jacobian_norm"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or not math.isfinite(value):
                raise ValueError(f"{name}: expected a non-negative weight, got {value!r}")
            object.__setattr__(self, name, float(value))
        object.__setattr__(self, "options", dict(self.options or {}))

    def exact(self, training: bool) -> bool:
        """Whether a solve in this mode uses the exact trace."""
        return self.trace == "exact" or (self.eval_exact_trace and not training)

    def solve_kwargs(self, s: torch.Tensor, direction: int) -> dict:
        """Keyword arguments of ``odeint`` / ``odeint_adjoint`` for a solve over the times ``s``."""
        options = dict(self.options)
        if self.step_size is not None and self.method in _FIXED_GRID:
            options.setdefault("step_size", self.step_size)
        backward = dict(options)
        if self.method in _ADAPTIVE_RK:
            # land the last step on the end time instead of interpolating past it (unchecked error)
            options.setdefault("step_t", s[-1:])
            # torchdiffeq runs the adjoint on the solve's times made increasing (negated when decreasing)
            backward.setdefault("step_t", s[:1] * direction)
        if self.norm == "max":
            options.setdefault("norm", _max_norm)
        kwargs = dict(rtol=self.rtol, atol=self.atol, method=self.method, options=options or None)
        if self.adjoint:
            kwargs["adjoint_options"] = backward or None
        return kwargs


_SOLVER_FIELDS = tuple(f.name for f in dataclasses.fields(ODESolver))


class _Dynamics:
    """Right-hand side of the augmented system on the normalised time ``s`` for one solve.

    State: ``(z, a[, kinetic, frobenius])`` with ``dz/ds = T f(z, sT)``, ``da/ds = T tr(df/dz)`` and,
    when regularising, ``T ||f||^2`` and ``T ||df/dz||_F^2``.
    """

    def __init__(
        self,
        owner: _ODEFlow,
        net: nn.Module,
        time: torch.Tensor,
        context: torch.Tensor | None,
        noise: torch.Tensor | None,
        regularize: bool,
    ) -> None:
        self.owner, self.net, self.time, self.context = owner, net, time, context
        self.noise, self.regularize = noise, regularize
        self.solving = False

    def __call__(self, s: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        if self.solving:
            self.owner.nfe_forward += 1
            self.owner.last_nfe += 1
        else:  # only the adjoint's backward solve calls the dynamics outside of a solve
            self.owner.nfe_backward += 1
        z = state[0]
        if len(state) == 1:  # the state alone (a value-only solve without gradients): no trace
            return (self.time * self.net(s * self.time, z, self.context),)
        differentiable = torch.is_grad_enabled()
        with torch.enable_grad():
            if not (differentiable and z.requires_grad):  # a fresh leaf: outside grad mode (e.g. the
                z = z.detach().requires_grad_(True)  # adjoint's forward solve) z may be a view without a graph
            f = self.net(s * self.time, z, self.context)
            if self.noise is None:
                trace, frob = None, None
                for i in range(z.shape[-1]):
                    row = torch.autograd.grad(f[..., i].sum(), z, create_graph=differentiable, retain_graph=True, materialize_grads=True)[0]
                    trace = row[..., i] if trace is None else trace + row[..., i]
                    if self.regularize:
                        frob = row.pow(2).sum(-1) if frob is None else frob + row.pow(2).sum(-1)
            else:
                vjp = torch.autograd.grad(f, z, self.noise, create_graph=differentiable, materialize_grads=True)[0]
                trace = (vjp * self.noise).sum(-1)
                frob = vjp.pow(2).sum(-1) if self.regularize else None
        out = (self.time * f, self.time * trace)
        if self.regularize:
            out = out + (self.time * f.pow(2).sum(-1), self.time * frob)
        if not differentiable:
            out = tuple(o.detach() for o in out)
        return out


class ConditionedCNF(OnePassTransform, Transform):
    """The solve of a :class:`CNF` or :class:`ConditionalCNF` ``flow`` (its dynamics, integration time
    and :class:`ODESolver`) with a fixed context or None (the math)."""

    bijective = True
    domain = event_constraint(1)
    codomain = event_constraint(1)
    value_without_ladj = True

    def __init__(self, flow: CNF | ConditionalCNF, context: torch.Tensor | None = None) -> None:
        super().__init__(cache_size=1)
        self.flow, self.context = flow, context
        self.dim = flow.dim
        self.event_shape_spec = (self.dim,)
        self.context_batch_shape = torch.Size() if context is None else batch_shape_of(context, 1)

    def _stamp_module(self) -> CNF | ConditionalCNF:
        return self.flow

    def held_tensors(self) -> tuple:
        return () if self.context is None else (self.context,)

    def _solve(self, v: torch.Tensor, direction: int, with_ladj: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        if torch.compiler.is_compiling():
            return _solve_outside_the_graph()(self, v, direction, with_ladj)
        return self._solve_eagerly(v, direction, with_ladj)

    def _solve_eagerly(self, v: torch.Tensor, direction: int, with_ladj: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        if torch.jit.is_tracing():
            raise RuntimeError(
                "CNF: torch.jit.trace (and so Pyro's JitTrace_ELBO and the other Jit* ELBOs) cannot trace an ODE "
                "solve: torchdiffeq reads tensor values to choose its steps, and the exact trace calls "
                "torch.autograd.grad; use the non-JIT ELBO"
            )
        # imported here: torchdiffeq imports scipy.integrate, a third of a second of every import of the package
        from torchdiffeq import odeint, odeint_adjoint

        m, solver = self.flow, self.flow.solver
        v, c = broadcast_batch(v, 1, self.context, 1)
        flat, batch = flatten_batch(v, 1)
        c = None if c is None else c.reshape(-1, c.shape[-1])
        time = m.integration_time
        if flat.device.type == "meta" or flat.shape[0] == 0:  # nothing to solve: one evaluation carries shapes and dtypes
            f = m.dynamics(time, flat, c)
            return (flat + 0 * f).reshape(v.shape), (0 * f).sum(-1).reshape(batch)
        noise = None
        if not solver.exact(m.training) and with_ladj:
            noise = torch.randn_like(flat) if solver.noise == "gaussian" else torch.randint_like(flat, 0, 2) * 2 - 1
        regularize = with_ladj and m.training and (solver.kinetic_energy > 0 or solver.jacobian_norm > 0)
        func = _Dynamics(m, m.dynamics, time, c, noise, regularize)
        zeros = flat.new_zeros(flat.shape[:1])
        state = ((flat, zeros) if with_ladj else (flat,)) + ((zeros, zeros) if regularize else ())
        s = flat.new_tensor([0.0, 1.0] if direction > 0 else [1.0, 0.0])
        kwargs = solver.solve_kwargs(s, direction)
        m.last_nfe = 0
        func.solving = True
        try:
            if solver.adjoint and torch.is_grad_enabled():
                params = tuple(m.dynamics.parameters()) + (time,) + (() if c is None else (c,))
                out = odeint_adjoint(func, state, s, adjoint_params=params, **kwargs)
                out = _FirstOrderOnly.apply(*out)
                out = out if isinstance(out, tuple) else (out,)
            else:
                kwargs.pop("adjoint_options", None)  # no gradients to take: a plain solve
                out = odeint(func, state, s, **kwargs)
        finally:
            func.solving = False
        final = [o[-1] for o in out]
        if regularize:
            m.regularization = {
                "kinetic_energy": (direction * final[2]).reshape(batch),
                "jacobian_norm": (direction * final[3]).reshape(batch),
            }
        return final[0].reshape(v.shape), (direction * final[1]).reshape(batch) if with_ladj else None

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._solve(x, 1)

    def forward_value(self, x: torch.Tensor) -> torch.Tensor:
        return self._solve(x, 1, with_ladj=False)[0]

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._solve(y, -1)


class _ODEFlow:
    """What :class:`CNF` and :class:`ConditionalCNF` share: the dynamics, the integration time, the
    :class:`ODESolver`, the evaluation counters and the regularisers of the latest solve."""

    value_without_ladj = True  # sampling without gradients solves for the state alone

    def _setup(self, dim: int, dynamics: nn.Module, time: float, learn_time: bool, solver: ODESolver | None, options: dict) -> None:
        if solver is not None and options:
            raise ValueError(f"solver: pass the solver options in the ODESolver or as keywords, not both (got {sorted(options)})")
        self.solver = ODESolver(**options) if solver is None else solver
        if not isinstance(self.solver, ODESolver):
            raise TypeError(f"solver: expected an ODESolver, got {type(self.solver).__name__}")
        self.dim = check_size("dim", dim)
        self.dynamics = dynamics
        raw = torch.tensor(_inverse_softplus(check_positive("time", time)))
        if learn_time:
            self.raw_time = nn.Parameter(raw)
        else:
            self.register_buffer("raw_time", raw)
        self.regularization: dict = {}
        self.reset_nfe()
        self.set_event((self.dim,))

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - a solver option or a module attribute
        if name in _SOLVER_FIELDS:  # the solver's options read as attributes, as in earlier releases
            return getattr(self.__dict__["solver"], name)
        return super().__getattr__(name)

    def __setattr__(self, name: str, value: object) -> None:
        if name in _SOLVER_FIELDS and "solver" in self.__dict__:
            self.__dict__["solver"] = dataclasses.replace(self.__dict__["solver"], **{name: value})
        else:
            super().__setattr__(name, value)

    @property
    def integration_time(self) -> torch.Tensor:
        """The end time :math:`T = \\operatorname{softplus}(\\tau)` (a 0-dim tensor)."""
        return F.softplus(self.raw_time)

    def velocity(self, s: torch.Tensor, z: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        r"""The field the solve integrates on the normalised time, :math:`dz/ds = T f(z, sT[, c])`.

        Args:
            s: normalised time in :math:`[0, 1]`: a 0-dim tensor, or one time per sample (a shape
                that broadcasts against ``z``'s batch shape, if the dynamics network accepts it, as
                :class:`~pyroflows.nn.ConcatSquashNet` does).
            z: states of shape ``batch + (dim,)``.
            context: the context of a :class:`ConditionalCNF` (``batch' + (context_dim,)``), else None.

        Returns:
            :math:`dz/ds` of ``z``'s shape: :math:`s = 0` is the base side and :math:`s = 1` the
            data side of the flow (its forward direction).
        """
        time = self.integration_time
        return time * self.dynamics(s * time, z, context)

    def reset_nfe(self) -> None:
        """Set the function-evaluation counters to 0.

        ``nfe_forward`` counts evaluations of the dynamics inside solves (either direction),
        ``nfe_backward`` those of the adjoint's backward solves (0 without ``adjoint``: plain
        backpropagation replays the recorded graph instead of calling the dynamics), and
        ``last_nfe`` those of the latest solve. Counting is host-side and never syncs the device.
        """
        self.nfe_forward, self.nfe_backward, self.last_nfe = 0, 0, 0

    def regularization_loss(self) -> torch.Tensor:
        r"""RNODE's penalty of the latest training solve:
        :math:`\lambda_K\,\overline{\int \lVert f\rVert^2} + \lambda_J\,\overline{\int \lVert \partial f/\partial z\rVert_F^2}`
        (batch means); 0 when both weights are 0 or no training solve ran yet."""
        ref = module_reference(self)
        loss = ref.new_zeros(())
        if "kinetic_energy" in self.regularization:
            loss = loss + self.solver.kinetic_energy * self.regularization["kinetic_energy"].mean()
            loss = loss + self.solver.jacobian_norm * self.regularization["jacobian_norm"].mean()
        return loss

    def _settings_repr(self) -> str:
        o = self.solver
        solver = f"method={o.method!r}, atol={o.atol:g}, rtol={o.rtol:g}"
        if o.step_size is not None:
            solver += f", step_size={o.step_size:g}"
        return f"trace={o.trace!r}, noise={o.noise!r}, {solver}, norm={o.norm!r}, adjoint={o.adjoint}"


_SOLVE_OUTSIDE_THE_GRAPH: list[Callable[..., tuple[torch.Tensor, torch.Tensor | None]]] = []


def _solve_outside_the_graph() -> Callable[..., tuple[torch.Tensor, torch.Tensor | None]]:
    """``ConditionedCNF._solve_eagerly`` excluded from ``torch.compile``'s graph (a graph break, with
    the reason). Made on first use under the compiler, which has imported ``torch._dynamo`` by then:
    decorating at import would import it for every user of the package."""
    if not _SOLVE_OUTSIDE_THE_GRAPH:
        _SOLVE_OUTSIDE_THE_GRAPH.append(
            torch.compiler.disable(
                ConditionedCNF._solve_eagerly,
                reason="torchdiffeq's solvers check their inputs by reading tensor values, which torch.compile cannot "
                "trace: the solve runs eagerly (a graph break), so fullgraph=True is not possible with a CNF",
            )
        )
    return _SOLVE_OUTSIDE_THE_GRAPH[0]


class CNF(_ODEFlow, FlowModule):
    r"""Continuous normalizing flow :math:`y = x + \int_0^T f(z(t), t)\,dt` (FFJORD).

    Args:
        dim: size of the vectors it maps (event shape ``(dim,)``).
        dynamics: network called as ``dynamics(t, z) -> dz/dt`` with a 0-dim ``t`` and ``z`` of shape
            ``(N, dim)``; :func:`cnf` builds a :class:`~pyroflows.nn.ConcatSquashNet`.
        time: initial integration time :math:`T`.
        learn_time: learn :math:`T = \operatorname{softplus}(\tau)` (else a fixed buffer).
        solver: an :class:`ODESolver` (trace estimator, solver, tolerances, adjoint, regularisers);
            or give its fields as keywords (``trace="exact"``, ``method="rk4"``, ...). Each is also
            readable and settable as an attribute (``flow.method = "rk4"``).

    After each training-mode solve ``regularization`` holds the integrals (shape ``batch_shape``,
    with their graph, until the next solve) and ``regularization_loss()`` the weighted penalty; ``nfe_forward``, ``nfe_backward`` and
    ``last_nfe`` count evaluations of the dynamics (see :meth:`reset_nfe`).

    Example::

        >>> flow = cnf(2, hidden=(16, 16), trace="exact")
        >>> x = torch.randn(10, 2)
        >>> y = flow(x)
        >>> ladj = flow.log_abs_det_jacobian(x, y)
        >>> bool((flow.inv(y.clone()) - x).abs().max() < 1e-4), ladj.shape, flow.last_nfe > 0
        (True, torch.Size([10]), True)

    Reference: Grathwohl et al., "FFJORD", ICLR 2019; Finlay et al., "How to train your neural
    ODE", ICML 2020.
    """

    def __init__(
        self, dim: int, dynamics: nn.Module, time: float = 1.0, learn_time: bool = True, solver: ODESolver | None = None, **options: Any
    ) -> None:
        super().__init__()
        self._setup(dim, dynamics, time, learn_time, solver, options)

    def transform(self) -> ConditionedCNF:
        return ConditionedCNF(self)

    __repr__ = nn.Module.__repr__

    def extra_repr(self) -> str:
        return f"dim={self.dim}, {self._settings_repr()}"


class ConditionalCNF(_ODEFlow, ConditionalFlowModule):
    r"""Continuous normalizing flow whose dynamics see a context: :math:`dz/dt = f(z, t, c)`.

    ``.condition(context)`` evaluates a :class:`ConditionedCNF` at each call. The context has shape
    ``batch' + (context_dim,)`` where ``batch'`` broadcasts against the input's batch shape; the
    default dynamics (:func:`conditional_cnf`) join it to the time in every concatsquash layer's
    gate and shift. Use it as an amortized posterior (context: the observation) or as a
    conditional likelihood (context: the covariates).

    Args:
        dim: size of the vectors it maps.
        context_dim: size of the context's last dim.
        dynamics: network called as ``dynamics(t, z, context) -> dz/dt``.
        Other arguments: as in :class:`CNF`.

    Example::

        >>> flow = conditional_cnf(2, 3, hidden=(16,), trace="exact")
        >>> x, c = torch.randn(10, 2), torch.randn(10, 3)
        >>> y = flow.condition(c)(x)
        >>> bool((flow.condition(c).inv(y.clone()) - x).abs().max() < 1e-4)
        True

    Reference: Grathwohl et al., "FFJORD", ICLR 2019.
    """

    def __init__(
        self,
        dim: int,
        context_dim: int,
        dynamics: nn.Module,
        time: float = 1.0,
        learn_time: bool = True,
        solver: ODESolver | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        self.context_dim = check_size("context_dim", context_dim)
        self.context_shape = (self.context_dim,)
        self._setup(dim, dynamics, time, learn_time, solver, options)

    def transform(self, context: torch.Tensor) -> ConditionedCNF:
        return ConditionedCNF(self, context)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, context_dim={self.context_dim}, {self._settings_repr()}"


def cnf(dim: int, hidden: Sequence[int] = (64, 64), activation: str = "tanh", **kwargs: Any) -> CNF:
    """A :class:`CNF` with :class:`~pyroflows.nn.ConcatSquashNet` dynamics (last layer zeroed: a fresh
    flow is the identity); ``kwargs`` are :class:`CNF`'s options (``trace``, ``method``, ``adjoint``, ...)."""
    return CNF(dim, ConcatSquashNet(dim, hidden, 0, activation), **kwargs)


def conditional_cnf(
    dim: int, context_dim: int, hidden: Sequence[int] = (64, 64), activation: str = "tanh", **kwargs: Any
) -> ConditionalCNF:
    """A :class:`ConditionalCNF` with :class:`~pyroflows.nn.ConcatSquashNet` dynamics taking the context
    in every layer's gate and shift; ``kwargs`` as in :class:`CNF`."""
    return ConditionalCNF(dim, context_dim, ConcatSquashNet(dim, hidden, context_dim, activation), **kwargs)


def cnf_regularization(*modules: nn.Module) -> torch.Tensor:
    """Sum of :meth:`CNF.regularization_loss` over every CNF inside ``modules`` (a flow, a list of
    transforms wrapped in ``nn.ModuleList``, a guide, ...): add it to a training loss."""
    total = None
    for module in modules:
        for sub in module.modules():
            if isinstance(sub, _ODEFlow):
                term = sub.regularization_loss()
                total = term if total is None else total + term
    if total is None:
        raise ValueError("modules: no CNF or ConditionalCNF found")
    return total
