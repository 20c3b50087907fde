"""Shared machinery of pyroflows transforms: one-pass log-det, input checks and shape helpers.

Every transform computes its output and ``log|det J|`` in the same pass (``forward_and_ladj`` /
``inverse_and_ladj``) and keeps the last triple ``(x, y, ladj)``, so that
``log_abs_det_jacobian(x, y)`` after a call in either direction costs nothing, and so does the
inverse of the last output (as with Pyro's ``cache_size=1``). Called with other tensors, or again
in the same direction, it recomputes.

Pyro's transforms reuse the last ``(x, y)`` pair whenever they see the same tensor objects; but a
pair computed before an optimiser step, in another train / eval mode, without gradients, or from a
tensor since overwritten in place (``x.copy_(next_batch)``, an optimiser updating a latent, the
perturbations of ``torch.autograd.gradcheck``) is stale. Here the kept triple is a
:class:`LastPass`: it is reused only in the direction opposite to the pass that made it, while the
tensors are the same objects at the same in-place version, and it is dropped when the owning module's parameter version counters, its
training flag or the grad mode changed. All of these are host-side integers and flags: no device
sync.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch.distributions import ComposeTransform, Transform, constraints

from ..shapes import broadcast_shapes, sum_event
from ..validation import check_tensor, is_validation_enabled, non_finite_parameters, transformed


def event_constraint(event_dim: int) -> constraints.Constraint:
    return constraints.independent(constraints.real, event_dim) if event_dim else constraints.real


def soft_clamp(s: torch.Tensor, bound: float | None) -> torch.Tensor:
    """``bound * tanh(s / bound)``: a log-scale bound that keeps gradients (identity if ``bound`` is None)."""
    return s if bound is None else bound * torch.tanh(s / bound)


def compiling() -> bool:
    """Whether ``torch.compile`` is tracing: the kept pass and the finiteness checks, which live
    outside the graph, step aside."""
    return torch.compiler.is_compiling()


def keep_traced(owner: object, x: torch.Tensor, y: torch.Tensor, ladj: torch.Tensor) -> None:
    """While ``torch.compile`` traces, keep the pass just made for the log-det asked next in the
    same graph (``TransformedDistribution.log_prob`` asks for it right after the inverse): without
    it, the log-det would run the map a second time inside the graph."""
    owner.__dict__["_traced_pass"] = (x, y, ladj)


def traced_ladj(owner: object, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """The log-det of the pass kept by :func:`keep_traced` if it was made with these very tensors
    (inside one traced function no version counter is read: the tensors are the graph's own)."""
    kept = owner.__dict__.get("_traced_pass")
    if kept is None or kept[0] is not x or kept[1] is not y:
        return None
    owner.__dict__["_traced_pass"] = None  # one use: the graph's tensors are not held after it
    return kept[2]


def tensor_version(t: torch.Tensor) -> int | None:
    """``t``'s in-place version counter, or ``None`` for tensors that keep none (inference tensors)."""
    return None if t.is_inference() else t._version


def drop_kept_pass(state: dict | None) -> dict:
    """An object's pickled state without its kept pass, cache stamp, inverse and kept map."""
    state = dict(state or {})
    for name in ("_last", "_cache_stamp", "_inverse", "_kept_map", "_traced_pass"):
        state.pop(name, None)
    return state


class InverseOf(Transform):
    """The inverse of a transform, calling back into its ``_inv_call`` (so that its kept pass
    serves both directions), as ``Transform.inv`` does."""

    def __init__(self, transform: Transform) -> None:
        super().__init__(cache_size=0)
        self._inv = transform

    @property
    def domain(self) -> constraints.Constraint:
        return self._inv.codomain

    @property
    def codomain(self) -> constraints.Constraint:
        return self._inv.domain

    @property
    def bijective(self) -> bool:
        return self._inv.bijective

    @property
    def sign(self) -> int | torch.Tensor:
        return self._inv.sign

    @property
    def inv(self) -> Transform:
        return self._inv

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._inv._inv_call(x)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -self._inv.log_abs_det_jacobian(y, x)

    def forward_shape(self, shape: Sequence[int]) -> torch.Size:
        return self._inv.inverse_shape(shape)

    def inverse_shape(self, shape: Sequence[int]) -> torch.Size:
        return self._inv.forward_shape(shape)


class LastPass:
    """The last ``(x, y, ladj)`` of a transform, the direction it was computed in, and the in-place
    versions of ``x`` and ``y`` at that time.

    It answers only the questions a distribution asks right after a pass: the inverse of the output
    it just produced (``log_prob`` of a fresh sample), the forward map of the input it just
    recovered, and the log-det of the pair. A call in the same direction as the kept pass always
    recomputes: its input is the caller's tensor, which may have been overwritten in ways no
    version counter records (through ``.data``, as ``torch.autograd.gradcheck`` does).
    """

    __slots__ = ("x", "y", "ladj", "inverse", "x_version", "y_version")

    def __init__(self, x: torch.Tensor, y: torch.Tensor, ladj: torch.Tensor, inverse: bool) -> None:
        self.x, self.y, self.ladj, self.inverse = x, y, ladj, inverse
        self.x_version, self.y_version = tensor_version(x), tensor_version(y)

    def _holds(self, v: torch.Tensor, kept: torch.Tensor, version: int | None) -> bool:
        return v is kept and version is not None and tensor_version(v) == version

    def forward_of(self, x: torch.Tensor) -> torch.Tensor | None:
        """The kept ``y`` if ``x`` is the unmodified output of the kept inverse pass."""
        return self.y if self.inverse and self._holds(x, self.x, self.x_version) else None

    def inverse_of(self, y: torch.Tensor) -> torch.Tensor | None:
        """The kept ``x`` if ``y`` is the unmodified output of the kept forward pass."""
        return self.x if not self.inverse and self._holds(y, self.y, self.y_version) else None

    def ladj_of(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """The kept log-det if ``(x, y)`` is the kept, unmodified pair."""
        if self._holds(x, self.x, self.x_version) and self._holds(y, self.y, self.y_version):
            return self.ladj
        return None


class OnePassTransform:
    """Mixin for :class:`torch.distributions.Transform` subclasses.

    Subclasses set ``event_shape_spec`` (trailing sizes, ``None`` for free sizes) and implement
    ``forward_and_ladj(x) -> (y, ladj)`` and ``inverse_and_ladj(y) -> (x, ladj)`` where ``ladj`` is
    ``log|det dy/dx|`` of the forward map with shape ``batch_shape``. ``context_batch_shape`` is the
    batch shape of the parameters (those computed from a context), which ``forward_shape``
    broadcasts with the input's. A transform on given tensors lists them in ``held_tensors``; a
    module's parameters are found by itself.
    """

    event_shape_spec: tuple = ()
    context_batch_shape: torch.Size = torch.Size()
    #: Without gradients, a call computes the value alone (``forward_value``), for transforms whose
    #: log-det costs as much again (a continuous flow's trace); a log-det asked for later recomputes.
    value_without_ladj: bool = False
    _last = None
    _cache_stamp = None

    def __getstate__(self) -> dict:
        # the kept pass (tensors with their graph) is a cache, not state: pickles and deep copies
        # leave it behind
        return drop_kept_pass(super().__getstate__())

    def _stamp_module(self) -> torch.nn.Module | None:
        """The module whose parameters define the map, if any."""
        return self if isinstance(self, torch.nn.Module) else None

    def held_tensors(self) -> tuple:
        """The tensors a transform on given tensors computes with (their versions stamp the cache)."""
        return ()

    def _stamp(self) -> tuple:
        stamp = (torch.is_grad_enabled(),) + tuple(tensor_version(t) for t in self.held_tensors())
        m = self._stamp_module()
        return stamp if m is None else stamp + (m.training, parameter_versions(m))

    def _drop_stale_cache(self) -> None:
        stamp = self._stamp()
        if stamp != self._cache_stamp:
            self.clear_cache()
            self._cache_stamp = stamp

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if compiling():  # no kept pass while torch.compile traces, only the trace-local one
            return self._call(x, keep=False)
        self._drop_stale_cache()
        kept = None if self._last is None else self._last.forward_of(x)
        return self._call(x) if kept is None else kept

    def _inv_call(self, y: torch.Tensor) -> torch.Tensor:
        if compiling():
            return self._inverse(y, keep=False)
        self._drop_stale_cache()
        kept = None if self._last is None else self._last.inverse_of(y)
        return self._inverse(y) if kept is None else kept

    def reference(self) -> torch.Tensor | None:
        """A tensor whose dtype and device inputs must share: the first held tensor, or the first
        parameter or buffer of the module; None when inputs of any dtype are accepted."""
        m = self._stamp_module()
        if m is not None:
            return module_reference(m)
        return next((t for t in self.held_tensors() if torch.is_tensor(t) and t.is_floating_point()), None)

    def check_input(self, name: str, value: torch.Tensor) -> None:
        """Raise naming ``name`` unless ``value`` has the event shape, dtype and device expected."""
        ref = self.reference()
        check_tensor(
            name,
            value,
            event_shape=self.event_shape_spec,
            dtype=None if ref is None else ref.dtype,
            device=None if ref is None else ref.device,
        )

    def check_output(self, direction: str, *values: torch.Tensor) -> None:
        """While validation is on, raise instead of returning NaN or inf from finite inputs: naming
        the parameters that hold them, or the overflow when every parameter is finite."""
        if not is_validation_enabled() or values[0].device.type == "meta" or transformed(values[0]):
            return
        if all(bool(torch.isfinite(v).all()) for v in values if v.is_floating_point()):
            return
        m = self._stamp_module()
        bad = (
            non_finite_parameters(m)
            if m is not None
            else [f"tensor {i}" for i, t in enumerate(self.held_tensors()) if not bool(torch.isfinite(t).all())]
        )
        owner = type(m).__name__ if m is not None else type(self).__name__
        if bad:
            raise ValueError(f"parameters: non-finite values in {bad} of {owner}")
        raise FloatingPointError(
            f"{owner}: the {direction} map of finite inputs gave NaN or inf (an overflow: parameters far from "
            f"their usual range, or inputs far out in the tails)"
        )

    def _call(self, x: torch.Tensor, keep: bool = True) -> torch.Tensor:
        self.check_input("x", x)
        if self.value_without_ladj and not torch.is_grad_enabled():
            if keep:
                self._last = None
            y = self.forward_value(x)
            self.check_output("forward", y)
            return y
        y, ladj = self.forward_and_ladj(x)
        self.check_output("forward", y, ladj)
        if keep:
            self._last = LastPass(x, y, ladj, inverse=False)
        elif compiling():
            keep_traced(self, x, y, ladj)
        return y

    def _inverse(self, y: torch.Tensor, keep: bool = True) -> torch.Tensor:
        self.check_input("y", y)
        x, ladj = self.inverse_and_ladj(y)
        self.check_output("inverse", x, ladj)
        if keep:
            self._last = LastPass(x, y, ladj, inverse=True)
        elif compiling():
            keep_traced(self, x, y, ladj)
        return x

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if compiling():
            kept = traced_ladj(self, x, y)
        else:
            self._drop_stale_cache()
            kept = None if self._last is None else self._last.ladj_of(x, y)
        if kept is not None:
            return kept
        self.check_input("x", x)
        ladj = self.forward_and_ladj(x)[1]
        self.check_output("forward", ladj)
        return ladj

    # the value alone (OnePassCompose uses these for volume-preserving parts); override to skip the log-det
    def forward_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_and_ladj(x)[0]

    def inverse_value(self, y: torch.Tensor) -> torch.Tensor:
        return self.inverse_and_ladj(y)[0]

    def forward_shape(self, shape: Sequence[int]) -> torch.Size:
        k = len(self.event_shape_spec)
        # an unbatched shape is a base distribution's draw, which Pyro pairs row by row with the
        # contexts (sample(sample_shape=context batch)); only batched inputs broadcast with them
        if not self.context_batch_shape or len(shape) <= k:
            return torch.Size(shape)
        batch = broadcast_shapes(shape[: len(shape) - k], self.context_batch_shape)
        return batch + torch.Size(shape[len(shape) - k :])

    inverse_shape = forward_shape

    def clear_cache(self) -> None:
        self._last = None
        self._cached_x_y = None, None


def parameter_versions(module: torch.nn.Module) -> tuple:
    """The version counters of ``module``'s parameters (shared ones may repeat): a cheap stamp that
    changes with every in-place update, e.g. an optimiser step. A plain walk over ``_parameters``,
    several times faster than ``tuple(p._version for p in module.parameters())``."""
    out = []
    stack = [module]
    while stack:
        m = stack.pop()
        out.extend(p._version for p in m._parameters.values() if p is not None)
        stack.extend(c for c in m._modules.values() if c is not None)
    return tuple(out)


def _compose_constraint(parts: Sequence[Transform], which: str) -> constraints.Constraint:
    """The domain (or codomain) of ``parts`` composed: the first part's domain (last part's
    codomain), reinterpreted over the largest number of event dims any part needs (as
    ``ComposeTransform`` computes it)."""
    if not parts:
        return constraints.real
    forward = which == "domain"
    ends = list(reversed(parts)) if forward else list(parts)
    event_dim = ends[0].codomain.event_dim if forward else ends[0].domain.event_dim
    for part in ends:
        inner, outer = (part.domain, part.codomain) if forward else (part.codomain, part.domain)
        event_dim = max(event_dim + inner.event_dim - outer.event_dim, inner.event_dim)
    base = parts[0].domain if forward else parts[-1].codomain
    return constraints.independent(base, event_dim - base.event_dim) if event_dim > base.event_dim else base


class OnePassCompose:
    """Mixin for ``ComposeTransform`` subclasses: one loop over the parts per direction.

    ``torch.distributions.ComposeTransform`` calls every part through its cache, then recomputes the
    intermediate values (cache hits) and adds the parts' log-dets in ``log_abs_det_jacobian``, and
    ``TransformedDistribution`` walks the parts several times per construction to recompute
    ``domain`` / ``codomain``. Here a call in either direction runs the parts once, adds the log-dets
    of :class:`OnePassTransform` parts as they come (volume-preserving parts add nothing), and keeps
    a :class:`LastPass`: ``log_abs_det_jacobian(x, y)`` after a call in either direction is free, and
    so is the inverse of the last output, as with ``cache_size=1``. It is reused and dropped under the
    same rules as in :class:`OnePassTransform`.
    ``domain`` and ``codomain`` are computed once. The input is checked by the first part; while
    validation is on, each part checks its output, so a NaN is reported by the part that produced it.
    Parts that are not :class:`OnePassTransform` go through their usual call and log-det.
    """

    _last = None
    _cache_stamp = None

    def __getstate__(self) -> dict:
        return drop_kept_pass(super().__getstate__())

    @property
    def domain(self) -> constraints.Constraint:
        d = self.__dict__.get("_domain")
        if d is None:
            d = self.__dict__["_domain"] = _compose_constraint(self.parts, "domain")
        return d

    @property
    def codomain(self) -> constraints.Constraint:
        d = self.__dict__.get("_codomain")
        if d is None:
            d = self.__dict__["_codomain"] = _compose_constraint(self.parts, "codomain")
        return d

    @property
    def inv(self) -> Transform:
        inverse = self.__dict__.get("_inverse")
        if inverse is None:
            inverse = self.__dict__["_inverse"] = InverseOf(self)
        return inverse

    def _plan(self) -> tuple[list[tuple[Transform, bool, bool, int]], list[torch.nn.Module], list[torch.nn.Module]]:
        """(per part: part, one-pass?, volume-preserving?, event dims of its log-det to sum) and the
        parts' modules."""
        plan = self.__dict__.get("_plan_cache")
        if plan is None:
            steps, modules, event_dim = [], [], self.domain.event_dim
            for part in self.parts:
                one_pass = isinstance(part, OnePassTransform)
                steps.append((part, one_pass, bool(getattr(part, "volume_preserving", False)), event_dim - part.domain.event_dim))
                event_dim += part.codomain.event_dim - part.domain.event_dim
                m = part._stamp_module() if one_pass else (part if isinstance(part, torch.nn.Module) else None)
                if m is not None and all(m is not k for k in modules):
                    modules.append(m)
            plan = self.__dict__["_plan_cache"] = (steps, modules)
        return plan

    def _owners(self) -> list:
        """The submodules of the parts' modules that hold parameters (listed once: a flow's
        structure is fixed once built)."""
        owners = self.__dict__.get("_owners_cache")
        if owners is None:
            owners = []
            for m in self._plan()[1]:
                owners += [sub for sub in m.modules() if sub._parameters and all(sub is not k for k in owners)]
            self.__dict__["_owners_cache"] = owners
        return owners

    def _drop_stale_cache(self) -> None:
        modules, owners = self._plan()[1], self._owners()
        # the parameter-holding submodules are listed once (a flow's structure is fixed once built); their
        # ``_parameters`` are read on every call, so a replaced parameter is seen as well as an updated one
        versions = tuple(p._version for m in owners for p in m._parameters.values() if p is not None)
        stamp = (torch.is_grad_enabled(), tuple(m.training for m in modules), versions)
        if stamp != self._cache_stamp:
            self._last = None
            self._cache_stamp = stamp

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if compiling():
            y, total = self._run(x, inverse=False)
            keep_traced(self, x, y, total)
            return y
        self._drop_stale_cache()
        kept = None if self._last is None else self._last.forward_of(x)
        if kept is not None:
            return kept
        y, total = self._run(x, inverse=False)
        self._last = LastPass(x, y, total, inverse=False)
        return y

    def _inv_call(self, y: torch.Tensor) -> torch.Tensor:
        if compiling():
            x, total = self._run(y, inverse=True)
            keep_traced(self, x, y, total)
            return x
        self._drop_stale_cache()
        kept = None if self._last is None else self._last.inverse_of(y)
        if kept is not None:
            return kept
        x, total = self._run(y, inverse=True)
        self._last = LastPass(x, y, total, inverse=True)
        return x

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if compiling():
            kept = traced_ladj(self, x, y)
            return self._run(x, inverse=False)[1] if kept is None else kept
        self._drop_stale_cache()
        kept = None if self._last is None else self._last.ladj_of(x, y)
        return self._run(x, inverse=False)[1] if kept is None else kept

    def _run(self, v: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``(value, ladj)``: the parts applied to ``v`` (in reverse order, inverted, if ``inverse``);
        ``ladj`` is ``log|det J|`` of the forward map."""
        steps = self._plan()[0]
        validate = is_validation_enabled()
        total = None
        batch = v.shape[: v.dim() - (self.codomain if inverse else self.domain).event_dim]
        for k, (part, one_pass, preserving, extra) in enumerate(reversed(steps) if inverse else steps):
            if one_pass:
                if k == 0:
                    self._check_first(part, "y" if inverse else "x", v)
                if preserving:
                    v = part.inverse_value(v) if inverse else part.forward_value(v)
                    continue
                v, ladj = part.inverse_and_ladj(v) if inverse else part.forward_and_ladj(v)
                if validate:  # the part that produced NaN or inf is named, not the next one's input
                    part.check_output("inverse" if inverse else "forward", v, ladj)
            else:
                w = part.inv(v) if inverse else part(v)
                ladj = part.log_abs_det_jacobian(w, v) if inverse else part.log_abs_det_jacobian(v, w)
                v = w
            ladj = sum_event(ladj, extra)
            total = ladj if total is None else total + ladj
        if total is None:  # only volume-preserving parts
            total = v.new_zeros(batch)
        return v, total

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, inverse=False)[0]

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self._run(y, inverse=True)[0]

    def reference(self) -> torch.Tensor | None:
        """The first floating-point parameter or buffer of the parts (inputs must share its dtype)."""
        return next((r for m in self._plan()[1] if (r := module_reference(m)) is not None), None)

    def _check_first(self, part: OnePassTransform, name: str, v: torch.Tensor) -> None:
        """The first part's input checks, and the dtype and device of every part's parameters
        (a parameter-free first part takes any dtype; the later parts do not)."""
        part.check_input(name, v)
        ref = self.reference()
        if ref is not None:
            check_tensor(name, v, dtype=ref.dtype, device=ref.device, finite=False)

    def clear_cache(self) -> None:
        self._last = None
        self._cached_x_y = None, None


def _first_parameter(module: torch.nn.Module) -> torch.Tensor | None:
    # the first of ``module.parameters()`` (own parameters, then submodules depth-first), without
    # the generator machinery of ``named_parameters`` (this runs on every transform call)
    for p in module._parameters.values():
        if p is not None:
            return p
    for m in module._modules.values():
        if m is not None:
            p = _first_parameter(m)
            if p is not None:
                return p
    return None


def module_reference(module: torch.nn.Module) -> torch.Tensor | None:
    p = _first_parameter(module)
    if p is not None:
        return p
    for b in module.buffers():
        if b.is_floating_point():
            return b
    return None


class Chain(OnePassCompose, ComposeTransform):
    """Given transforms applied in order (the last one last), in one loop per call with the summed
    log-det: the math of a composite step whose parts are modules or transforms on given tensors."""

    def __init__(self, parts: Iterable[Transform]) -> None:
        super().__init__(list(parts), cache_size=0)
        self.event_shape_spec = getattr(self.parts[0], "event_shape_spec", ())
        longest = torch.Size()
        for part in self.parts:
            shape = getattr(part, "context_batch_shape", torch.Size())
            longest = shape if len(shape) > len(longest) else longest
        self.context_batch_shape = longest

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._run(x, inverse=False)

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._run(y, inverse=True)
