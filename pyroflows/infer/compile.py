"""Compiled training steps and sampling calls, with a fall-back to eager execution.

:func:`compile_step` turns a loss function into a training step whose loss (and, through
AOTAutograd, its backward pass) runs as one ``torch.compile`` graph; :func:`compile_sampler` does
the same for a flow distribution's sampling call. Both return a :class:`CompiledCall`: where
compilation fails (a graph break under ``fullgraph=True``, an operator the backend cannot lower, a
backend error), the call runs the same function eagerly, warns once with the reason, and stays
eager from then on.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

__all__ = ["CompileFallbackWarning", "CompiledCall", "compile_sampler", "compile_step"]

_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class CompileFallbackWarning(UserWarning):
    """Compilation failed and a :class:`CompiledCall` now runs its function eagerly."""


def _check_options(backend: object, fullgraph: object, mode: object, dynamic: object) -> None:
    if not (isinstance(backend, str) or callable(backend)):
        raise TypeError(f"backend: expected a backend name such as 'inductor' or 'eager', or a callable, got {type(backend).__name__}")
    if not isinstance(fullgraph, bool):
        raise TypeError(f"fullgraph: expected True or False, got {fullgraph!r}")
    if mode not in _MODES:
        raise ValueError(f"mode: expected one of {_MODES}, got {mode!r}")
    if dynamic not in (None, True, False):
        raise TypeError(f"dynamic: expected True, False or None, got {dynamic!r}")


class CompiledCall:
    """A function run through ``torch.compile``, or eagerly once compiling it has failed.

    A call runs the compiled function. If that raises, the same call is repeated eagerly: when the
    eager call succeeds, compilation is what failed, so one :class:`CompileFallbackWarning` naming
    the compiler's error is issued and every later call runs eagerly; when the eager call raises
    too, the error is the function's own and is raised as it is (the compiled path is kept).

    Args:
        fn: the function to compile.
        backend, fullgraph, mode, dynamic: as in ``torch.compile``.
        around: builds the call from the (compiled or eager) function, as ``around(fn)``: work
            outside the traced function (a backward pass, an optimiser step) that falls back with it.

    Attributes:
        compiled: False once the call has fallen back to eager execution.
        fallback_reason: the compiler's error message after a fall-back, else None.
    """

    def __init__(
        self,
        fn: Callable,
        backend: str | Callable = "inductor",
        fullgraph: bool = True,
        mode: str | None = None,
        dynamic: bool | None = None,
        around: Callable[[Callable], Callable] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"fn: expected a callable, got {type(fn).__name__}")
        _check_options(backend, fullgraph, mode, dynamic)
        self.fn = fn
        self.compiled = True
        self.fallback_reason: str | None = None
        kwargs = {"backend": backend, "fullgraph": fullgraph, "dynamic": dynamic}
        if mode is not None:
            kwargs["mode"] = mode
        compiled_fn = torch.compile(fn, **kwargs)
        self._eager_call = fn if around is None else around(fn)
        self._compiled_call = compiled_fn if around is None else around(compiled_fn)

    def __call__(self, *args: object, **kwargs: object) -> object:
        if not self.compiled:
            return self._eager_call(*args, **kwargs)
        try:
            return self._compiled_call(*args, **kwargs)
        except Exception as compile_error:  # noqa: BLE001 - told apart from the function's own errors below
            try:
                out = self._eager_call(*args, **kwargs)
            except Exception as own_error:
                own_error.__suppress_context__ = True  # the function's own error, not the compiler's
                raise
            self.compiled = False
            # the compiler's messages put the cause on their first lines, then pages of context
            lines = [line.strip() for line in str(compile_error).splitlines() if line.strip()]
            self.fallback_reason = f"{type(compile_error).__name__}: {' '.join(lines[:2])[:300]}"
            warnings.warn(
                f"torch.compile failed for {getattr(self.fn, '__name__', type(self.fn).__name__)} "
                f"({self.fallback_reason}); running it eagerly from now on",
                CompileFallbackWarning,
                stacklevel=2,
            )
            return out


def compile_step(
    loss_fn: Callable[..., torch.Tensor],
    optimizer: torch.optim.Optimizer | None = None,
    *,
    backward: bool = True,
    compile_optimizer: bool = False,
    backend: str | Callable = "inductor",
    fullgraph: bool = True,
    mode: str | None = None,
    dynamic: bool | None = None,
) -> CompiledCall:
    r"""A training step whose loss and backward pass run as one compiled graph.

    The returned step, called as ``step(*args, **kwargs)``, runs

    .. code-block:: python

        optimizer.zero_grad(set_to_none=True)   # with an optimizer
        loss = loss_fn(*args, **kwargs)          # compiled; its backward pass too (AOTAutograd)
        loss.backward()                          # with backward=True
        optimizer.step()                         # with an optimizer
        return loss.detach()

    where ``loss_fn`` is compiled with ``torch.compile`` (``fullgraph=True`` by default: every
    pyroflows transform but the ODE solve of a CNF compiles without a graph break). The backward
    pass and the optimiser step stay outside the traced function, so the step has no graph break
    of its own. With ``compile_optimizer=True`` the optimiser step is compiled too, as a graph of
    its own (PyTorch's recipe for compiled optimisers): the update of every parameter tensor in
    one generated loop instead of a dozen small ops per tensor, which counts at small batches,
    for one more compile, longer the more parameter tensors there are. If compiling fails at a
    call, that call and all later ones run eagerly after one :class:`CompileFallbackWarning` (see
    :class:`CompiledCall`).

    Args:
        loss_fn: returns a scalar loss tensor; its tensor arguments are the step's arguments.
        optimizer: a ``torch.optim.Optimizer``; None leaves ``zero_grad`` and the update to the caller
            (the gradients are then accumulated into ``.grad`` as ``loss.backward()`` does).
        backward: run ``loss.backward()``; False compiles the loss alone (an evaluation step).
        compile_optimizer: also compile ``optimizer.step()`` (needs an ``optimizer``). A learning
            rate changed by a scheduler should then be a tensor (``lr=torch.tensor(1e-3)``), or
            each new value compiles again.
        backend, fullgraph, mode, dynamic: as in ``torch.compile`` (``backend="eager"`` traces
            without generating code: a quick check that a loss traces as one graph).

    Returns:
        a :class:`CompiledCall`; calling it returns the detached loss.

    Raises:
        TypeError, ValueError: an argument of the wrong type or value (the message names it).

    Example::

        >>> import pyro.distributions as dist
        >>> from pyroflows.transforms import coupling_flow
        >>> flow = coupling_flow(2, num_blocks=2, hidden=(8,))
        >>> base = dist.Normal(torch.zeros(2), 1.0, validate_args=False).to_event(1)
        >>> opt = torch.optim.Adam(flow.parameters(), lr=1e-2)
        >>> def loss_fn(x):
        ...     # validate_args=False: checking the sample's support is a data-dependent branch
        ...     return -dist.TransformedDistribution(base, [flow], validate_args=False).log_prob(x).mean()
        >>> step = compile_step(loss_fn, opt, backend="eager")
        >>> x = torch.randn(64, 2)
        >>> losses = [float(step(x)) for _ in range(3)]
        >>> step.compiled
        True
        >>> torch._dynamo.reset()  # drop the compiled code and its guards (before the example's names go)
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a callable returning a scalar loss, got {type(loss_fn).__name__}")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer: expected a torch.optim.Optimizer or None, got {type(optimizer).__name__}")
    if not isinstance(backward, bool):
        raise TypeError(f"backward: expected True or False, got {backward!r}")
    if not isinstance(compile_optimizer, bool):
        raise TypeError(f"compile_optimizer: expected True or False, got {compile_optimizer!r}")
    if compile_optimizer and optimizer is None:
        raise ValueError("compile_optimizer: expected an optimizer to compile the step of, got optimizer=None")
    compiled_update = None
    if compile_optimizer:
        # the optimiser's own graph breaks (its bookkeeping) are allowed: fullgraph=False
        compiled_update = torch.compile(optimizer.step, backend=backend, fullgraph=False, dynamic=dynamic)

    def around(loss_call: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        # the compiled call gets the compiled update, the eager fall-back the optimiser's own step
        update = compiled_update if compiled_update is not None and loss_call is not loss_fn else getattr(optimizer, "step", None)

        def step(*args: object, **kwargs: object) -> torch.Tensor:
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
            loss = loss_call(*args, **kwargs)
            if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
                got = f"shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
                raise ValueError(f"loss_fn: expected it to return a scalar tensor, got {got}")
            if backward:
                loss.backward()
            if optimizer is not None:
                update()
            return loss.detach()

        return step

    return CompiledCall(loss_fn, backend=backend, fullgraph=fullgraph, mode=mode, dynamic=dynamic, around=around)


def compile_sampler(
    distribution: torch.distributions.Distribution,
    *,
    backend: str | Callable = "inductor",
    fullgraph: bool = True,
    mode: str | None = None,
    dynamic: bool | None = None,
) -> CompiledCall:
    r"""A compiled sampling call of a flow distribution: ``sampler(sample_shape=(), context=None)``.

    The call draws ``distribution.sample(sample_shape)`` under ``torch.no_grad`` (with a
    ``context``, from ``distribution.condition(context)``: a conditional flow distribution), as one
    compiled graph. A new ``sample_shape`` compiles once more. Falls back to eager sampling with one
    :class:`CompileFallbackWarning` where compiling fails (see :class:`CompiledCall`).

    The inductor backend draws its random numbers with its own generator: a compiled sampler gives
    other draws than the eager call under the same seed (``torch._inductor.config.fallback_random =
    True`` makes them equal, for tests).

    Args:
        distribution: a distribution with ``sample``, or a conditional one with ``condition``
            (then every call needs a ``context``).
        backend, fullgraph, mode, dynamic: as in ``torch.compile``.

    Returns:
        a :class:`CompiledCall`.

    Example::

        >>> import pyro.distributions as dist
        >>> from pyroflows.transforms import planar
        >>> d = dist.TransformedDistribution(dist.Normal(torch.zeros(3), 1.0).to_event(1), [planar(3)])
        >>> sampler = compile_sampler(d, backend="eager")
        >>> sampler((5,)).shape
        torch.Size([5, 3])
    """
    name = type(distribution).__name__
    if not (hasattr(distribution, "sample") or hasattr(distribution, "condition")):
        raise TypeError(f"distribution: expected a distribution with a sample or condition method, got {name}")

    def sample(sample_shape: tuple[int, ...] | torch.Size = (), context: torch.Tensor | None = None) -> torch.Tensor:
        if context is None and not hasattr(distribution, "sample"):
            raise ValueError(f"context: expected a context tensor for {name}, got None")
        with torch.no_grad():
            d = distribution if context is None else distribution.condition(context)
            return d.sample(torch.Size(sample_shape))

    sample.__name__ = f"{type(distribution).__name__}.sample"
    return CompiledCall(sample, backend=backend, fullgraph=fullgraph, mode=mode, dynamic=dynamic)
