r"""Pyro's faces of a flow family, written once: parameters, ``TransformModule``,
``ConditionalTransformModule`` and the conditioned transform.

A family is its math on given tensors (a :class:`~pyroflows.transforms.base.OnePassTransform`
such as ``ConditionedPlanar(u, w, b)``) plus a module that produces those tensors. The module
subclasses :class:`FlowModule` (no context) or :class:`ConditionalFlowModule` and implements one
method, ``transform(context=None)``: the math at the current parameters (and context). Everything
else (caching, input and context checks, shapes, pickling, ``.condition``) is here.

Most families draw their tensors from :class:`ContextParameters`: named base tensors, plus, when
there is a context, a zero-initialised network of it,

.. math:: \theta(c) = \theta_0 + g(c), \qquad g \equiv 0 \text{ at initialisation},

so a conditional layer starts as the unconditional one (amortised flows: van den Berg et al. 2018).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import torch
import torch.nn as nn
from pyro.distributions import TransformModule
from pyro.distributions.conditional import ConditionalTransformModule
from torch.distributions import Transform

from ..nn.dense import context_mlp
from ..shapes import batch_shape_of
from ..validation import check_broadcast, check_tensor
from .base import OnePassTransform, event_constraint, module_reference, tensor_version


class ContextParameters(nn.Module):
    r"""Named parameter tensors :math:`\theta_0`, each plus its slice of a zero-initialised network
    of a context when ``context_shape`` is given: ``params(context)`` returns the tuple
    :math:`\theta_0 + g(c)` in the order of ``initial``, each of shape ``context_batch + shape``.

    Args:
        initial: name -> initial value of each base tensor (registered as parameters of that name).
        context_shape: event shape of the context (``(K,)``, or a map ``(K, *spatial)`` flattened
            into the network); None for no context.
        hidden: hidden widths of the default network (an MLP; ``()`` is one linear layer).
        net: a network ``context -> sum of the tensors' sizes`` values, replacing the default.

    Example::

        >>> p = ContextParameters({"u": torch.zeros(3), "b": torch.ones(1)}, context_shape=(2,))
        >>> [tuple(t.shape) for t in p(torch.randn(5, 2))]
        [(5, 3), (5, 1)]
    """

    def __init__(
        self,
        initial: Mapping[str, torch.Tensor],
        context_shape: Sequence[int] | None = None,
        hidden: Sequence[int] = (64,),
        net: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.names = tuple(initial)
        for name, value in initial.items():
            # contiguous: Pyro's param store keeps a contiguous copy of anything else, and pyro.module
            # would then train that copy, not the tensor this module computes with
            value = torch.as_tensor(value, dtype=torch.get_default_dtype()).clone(memory_format=torch.contiguous_format)
            self.register_parameter(name, nn.Parameter(value))
        self.context_shape = None if context_shape is None else tuple(int(s) for s in context_shape)
        self.sizes = [getattr(self, n).numel() for n in self.names]
        if self.context_shape is None:
            if net is not None:
                raise ValueError("net: a network of the context needs context_shape, got None")
            self.net = None
        else:
            self.net = context_mlp(self.context_shape, sum(self.sizes), tuple(hidden)) if net is None else net

    def base(self) -> tuple[torch.Tensor, ...]:
        """The base tensors :math:`\\theta_0`."""
        return tuple(getattr(self, n) for n in self.names)

    def forward(self, context: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        base = self.base()
        if self.net is None:
            return base
        offsets = self.net(context)
        batch = offsets.shape[:-1]
        return tuple(b + o.reshape(batch + b.shape) for b, o in zip(base, offsets.split(self.sizes, dim=-1), strict=True))


def _parameter_by_old_name(module: nn.Module, name: str) -> nn.Parameter:
    """``module.params.<name>`` for a base tensor that earlier releases kept on the module itself."""
    params = module.__dict__.get("_modules", {}).get("params")
    if isinstance(params, ContextParameters) and name in params.names:
        warnings.warn(f"{type(module).__name__}.{name} is deprecated; use .params.{name}", DeprecationWarning, stacklevel=3)
        return getattr(params, name)
    raise AttributeError(f"'{type(module).__name__}' object has no attribute '{name}'")


class _Face:
    """What the module faces share: the hook run before each map is built, the reference tensor of
    dtype and device, the input's event shape, and the deprecated names of base tensors."""

    def set_event(self, event_shape_spec: Sequence[int | None]) -> None:
        """Declare the trailing sizes of the inputs (``None``: any size)."""
        self.event_shape_spec = tuple(event_shape_spec)
        if isinstance(self, Transform):
            self.domain = self.codomain = event_constraint(len(self.event_shape_spec))

    def prepare(self, v: torch.Tensor, inverse: bool) -> None:
        """Called with each input before the map is built (default: nothing)."""

    def reference(self) -> torch.Tensor | None:
        return module_reference(self)

    def __getattr__(self, name: str) -> torch.Tensor | nn.Module:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return _parameter_by_old_name(self, name)


class _Evaluated:
    """The one-pass methods of a transform whose map is ``self.transform()``, built when called
    after ``prepare`` has seen the input."""

    def _face(self) -> _Face:
        return self

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._face().prepare(x, inverse=False)
        return self.transform().forward_and_ladj(x)

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._face().prepare(y, inverse=True)
        return self.transform().inverse_and_ladj(y)

    def forward_value(self, x: torch.Tensor) -> torch.Tensor:
        self._face().prepare(x, inverse=False)
        return self.transform().forward_value(x)

    def inverse_value(self, y: torch.Tensor) -> torch.Tensor:
        self._face().prepare(y, inverse=True)
        return self.transform().inverse_value(y)


class FlowModule(_Face, _Evaluated, OnePassTransform, TransformModule):
    """A learnable transform whose map is ``self.transform()``, the family's math at the current
    parameters; Pyro's ``TransformModule``.

    Subclasses declare the input's event shape (:meth:`set_event`) and implement :meth:`transform`;
    :meth:`prepare` is called with each input first (data-dependent initialisation).
    """

    bijective = True

    def transform(self) -> OnePassTransform:
        """The map at the current parameters, as a transform on given tensors."""
        raise NotImplementedError


class ConditionalFlowModule(_Face, ConditionalTransformModule):
    """A learnable conditional transform: ``.condition(context)`` is a :class:`ConditionedFlow`
    whose map is ``self.transform(context)`` at the current parameters; Pyro's
    ``ConditionalTransformModule``.

    Subclasses set ``context_shape`` (the context's event shape), declare the input's event shape
    (:meth:`set_event`) and implement :meth:`transform`; :meth:`prepare` as in :class:`FlowModule`.
    """

    context_shape: tuple = ()
    value_without_ladj = False

    def transform(self, context: torch.Tensor) -> OnePassTransform:
        """The map at the current parameters and ``context``, as a transform on given tensors."""
        raise NotImplementedError

    def check_context(self, context: torch.Tensor) -> None:
        ref = self.reference()
        check_tensor("context", context, self.context_shape, None if ref is None else ref.dtype, None if ref is None else ref.device)

    def condition(self, context: torch.Tensor) -> ConditionedFlow:
        self.check_context(context)
        return ConditionedFlow(self, context)

    def forward(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(f"{type(self).__name__} is a conditional transform: call .condition(context) first, then the transform it returns")


class ConditionedFlow(_Evaluated, OnePassTransform, Transform):
    """``module.condition(context)``: the map ``module.transform(context)``, built from the module's
    parameters when called, so that it stays right across optimiser steps. Its context's batch
    dims broadcast against the input's. Pickles (it holds the module and the context)."""

    bijective = True

    def __init__(self, module: ConditionalFlowModule, context: torch.Tensor) -> None:
        super().__init__(cache_size=1)
        self.module, self.context = module, context
        self.event_shape_spec = module.event_shape_spec
        self.domain = self.codomain = event_constraint(len(self.event_shape_spec))
        self.context_batch_shape = batch_shape_of(context, len(module.context_shape))

    def _stamp_module(self) -> ConditionalFlowModule:
        return self.module

    def _stamp(self) -> tuple:
        return super()._stamp() + (tensor_version(self.context),)

    def reference(self) -> torch.Tensor | None:
        return self.module.reference()

    def transform(self) -> OnePassTransform:
        """The map at the module's current parameters."""
        return self.module.transform(self.context)

    def check_input(self, name: str, value: torch.Tensor) -> None:
        super().check_input(name, value)
        batch = value.shape[: value.dim() - len(self.event_shape_spec)]
        check_broadcast("context", self.context_batch_shape, name, batch)

    def _face(self) -> ConditionalFlowModule:
        return self.module

    @property
    def value_without_ladj(self) -> bool:
        return self.module.value_without_ladj

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - any attribute of the family's transform
        # the family's own methods (``encode``, ``factors``, ``unpack``, ...) at the current parameters
        if name.startswith("_") or "module" not in self.__dict__ or "context" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return getattr(self.transform(), name)
