r"""Speed paths: hand-written forward and backward passes for the hot spots of CPU training.

Each is one autograd node computing exactly what a plain reference computes with differentiable
ops, with fewer intermediate tensors and graph nodes:

- :func:`relu_mlp`: a ``Linear - ReLU - ... - Linear`` stack (the default conditioner), ReLU and
  its backward in place, products with few output columns in the orientation CPU BLAS is fast at;
  reference :func:`relu_mlp_reference`;
- :func:`relu_mlp_soft_clamped_affine`: a vector coupling's step, that MLP as its conditioner and
  the soft-clamped affine map of the other features with the conditioner's output, in one node; its
  reference is passed in by the caller (the network's reference and the affine map's plain ops);
- :func:`planar`: the forward planar map with the reparameterisation of :math:`u`; its reference is
  passed in by the caller (the planar transform's own plain map).

They run only where they are an exact drop-in: while :func:`is_enabled` (the one switch,
:func:`set_enabled` or the :func:`enabled` context manager), on CPU, when a gradient is wanted, not
under autocast, and not while ``torch.compile`` traces (the compiler fuses the plain ops itself). Under ``torch.func``
transforms and forward-mode AD, which these nodes do not implement, the reference runs instead.
Double backward (``create_graph=True``) differentiates the reference recomputed from the saved
inputs, so every derivative is exact. The tests compare each path with its reference.

Where autograd records nothing (sampling), :func:`relu_mlp` and :func:`soft_clamped_affine` (a
coupling's affine map from the conditioner's raw output) run their plain ops with fewer
intermediate tensors, overwriting the tensors they made. A node for the affine map alone was tried
and did not pay (it cost more per call than the few autograd nodes it replaced); joined with the
conditioner's node it does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import FunctionCtx

from .shapes import sum_event

_ENABLED = True

#: Products with at most this many output columns (and more rows) are handed to BLAS transposed.
NARROW = 8


def set_enabled(flag: bool) -> None:
    """Switch the speed paths on or off globally (the results are the same either way)."""
    global _ENABLED
    if not isinstance(flag, bool):
        raise TypeError(f"flag: expected True or False, got {flag!r}")
    _ENABLED = flag


def is_enabled() -> bool:
    """Whether the speed paths may run."""
    return _ENABLED


@contextlib.contextmanager
def enabled(flag: bool) -> Iterator[None]:
    """Context manager form of :func:`set_enabled`."""
    previous = _ENABLED
    set_enabled(flag)
    try:
        yield
    finally:
        set_enabled(previous)


def applicable(*tensors: torch.Tensor | None) -> bool:
    """Whether a speed path may take these tensors: switched on, gradients recorded, all on CPU,
    one of them requiring a gradient, not inside ``torch.compile`` and not under CPU autocast (the
    plain ops then take autocast's dtypes)."""
    if not _ENABLED or not torch.is_grad_enabled() or torch.compiler.is_compiling() or torch.is_autocast_enabled("cpu"):
        return False
    present = [t for t in tensors if t is not None]
    return all(t.device.type == "cpu" for t in present) and any(t.requires_grad for t in present)


def _apply(fn: type[torch.autograd.Function], reference: Callable, *args: object) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """``fn.apply(*args)``, or ``reference(*args)`` under a ``torch.func`` transform or forward-mode
    AD, which the hand-written nodes do not support (torch refuses them before any work is done)."""
    try:
        return fn.apply(*args)
    except (RuntimeError, NotImplementedError) as err:
        message = str(err)
        if "functorch" in message or "forward mode AD" in message or "jvp" in message:
            return reference(*args)
        raise


def _differentiable_backward(reference: Callable, inputs: Sequence, needs: Sequence[bool], grads: Sequence) -> tuple:
    """The backward of ``reference`` at ``inputs`` with a graph (double backward): gradients of the
    inputs that need one, None for the others."""
    # the reference sees aliases of the inputs: the gradient with respect to an alias counts only the
    # paths through this recomputation, where one input may also depend on another (a network's
    # input computed from its own weights), a path the caller's graph already has
    with torch.enable_grad():
        inputs = [t.view_as(t) if need and torch.is_tensor(t) else t for t, need in zip(inputs, needs, strict=True)]
        wanted = [t for t, need in zip(inputs, needs, strict=True) if need and torch.is_tensor(t)]
        outs = reference(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    got = iter(torch.autograd.grad(outs, wanted, grads, create_graph=True, allow_unused=True, materialize_grads=True))
    return tuple(next(got) if need and torch.is_tensor(t) else None for t, need in zip(inputs, needs, strict=True))


def mm_narrow(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b``, computed as ``(b.T @ a.T).T`` when the result has few columns (``<= NARROW``) and
    more rows: the same product, in the operand order CPU BLAS has a fast kernel for."""
    if b.shape[-1] <= NARROW < a.shape[-2]:
        return (b.mT @ a.mT).mT
    return a @ b


# ----------------------------------------------------------------------------- ReLU MLP


def relu_mlp_reference(x: torch.Tensor, *params: torch.Tensor, in_place: bool = False) -> torch.Tensor:
    """``Linear - ReLU - ... - Linear`` with plain differentiable ops; ``params`` are
    ``W0, b0, W1, b1, ...``. ``in_place`` overwrites each fresh product with its ReLU, for calls
    autograd does not record."""
    n = len(params) // 2
    for i in range(n):
        x = F.linear(x, params[2 * i], params[2 * i + 1])
        if i < n - 1:
            x = x.relu_() if in_place else torch.relu(x)
    return x


def _relu_mlp_forward(x: torch.Tensor, params: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The output of the MLP on a 2-d ``x`` and the layers' inputs (``x``, then each ReLU's output)."""
    n = len(params) // 2
    acts, h = [x], x
    for i in range(n):
        h = torch.addmm(params[2 * i + 1], h, params[2 * i].mT)
        if i < n - 1:
            h = h.relu_()
            acts.append(h)
    return h, acts


_THRESHOLD_BACKWARD_INTO = torch.ops.aten.threshold_backward.grad_input


def _relu_mlp_backward(grad: torch.Tensor, acts: Sequence[torch.Tensor], params: Sequence[torch.Tensor], needs: Sequence[bool]) -> tuple:
    """``(gradient of x, gradients of W0, b0, W1, b1, ...)`` from the output's gradient ``grad``
    (None where ``needs``, one flag per input ``x, W0, b0, ...``, is False)."""
    n = len(params) // 2
    out: list[torch.Tensor | None] = [None] * (2 * n)
    g = grad
    for i in range(n - 1, -1, -1):
        if needs[2 * i + 2]:
            out[2 * i + 1] = g.sum(0)
        if needs[2 * i + 1]:
            out[2 * i] = mm_narrow(g.mT, acts[i])
        if i > 0 or needs[0]:
            g = mm_narrow(g, params[2 * i])
            if i > 0:
                # ReLU's backward, the kernel autograd itself uses (masked_fill_ or a product with
                # the mask run 10x slower on CPU), written into the fresh gradient through the op's
                # out argument: a second batch-wide buffer per layer is memory the allocator may
                # have to fault in again on every step. The overload is named, so that no call
                # resolves it from the arguments again.
                g = _THRESHOLD_BACKWARD_INTO(g, acts[i], 0.0, grad_input=g)
    return (g if needs[0] else None, *out)


class _ReLUMLP(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        h, acts = _relu_mlp_forward(x, params)
        ctx.save_for_backward(*acts, *params)
        ctx.n = len(acts)
        return h

    @staticmethod
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        saved, n = ctx.saved_tensors, ctx.n
        acts, params = saved[:n], saved[n:]
        if torch.is_grad_enabled():
            return _differentiable_backward(relu_mlp_reference, (acts[0], *params), ctx.needs_input_grad, (grad,))
        return _relu_mlp_backward(grad, acts, params, ctx.needs_input_grad)


def relu_mlp_parameters(layers: nn.Sequential) -> list[torch.Tensor] | None:
    """``[W0, b0, W1, b1, ...]`` when ``layers`` is exactly Linear, ReLU, ..., Linear (with biases,
    without hooks), else None."""
    # read from the modules' dicts: Module.__getattr__ costs more than the rest of this check,
    # which runs on every call of every block
    mods = tuple(layers._modules.values())
    if len(mods) % 2 == 0:
        return None
    params = []
    for k, m in enumerate(mods):
        if m._forward_hooks or m._forward_pre_hooks or type(m) is not (nn.Linear if k % 2 == 0 else nn.ReLU):
            return None
        if k % 2 == 0:
            weight, bias = m._parameters.get("weight"), m._parameters.get("bias")
            if weight is None or bias is None:
                return None
            params += [weight, bias]
    return params


def relu_mlp(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``layers(x)`` for any batch shape: one hand-written node when ``layers`` is a plain ReLU MLP
    and :func:`applicable`, its reference ops when it is a plain ReLU MLP otherwise, the layers
    themselves for any other stack."""
    params = relu_mlp_parameters(layers)
    if params is None:
        return layers(x)
    if x.numel() == 0 or not applicable(x, *params):
        # the same ops as the layers without a module call per layer; with nothing to record for
        # autograd the ReLU overwrites the fresh product (an out-of-place ReLU allocates a batch-wide
        # tensor per layer, which sampling would pay in every block)
        recorded = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params))
        return relu_mlp_reference(x, *params, in_place=not recorded)
    flat = x.reshape(-1, x.shape[-1]) if x.dim() != 2 else x
    out = _apply(_ReLUMLP, relu_mlp_reference, flat, *params)
    return out if x.dim() == 2 else out.reshape(x.shape[:-1] + out.shape[-1:])


# ----------------------------------------------------------------------------- soft-clamped affine


def _soft_clamped_affine_values(
    v: torch.Tensor, raw: torch.Tensor, bound: float | None, event_dim: int, inverse: bool, keep: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    r"""``(output, log-det, factor, tanh)`` with every in-place op writing to a tensor made here:
    ``factor`` multiplies the input (:math:`e^{\pm s}`); ``tanh`` is :math:`\tanh(h/B)` when ``keep``
    (for a backward pass; None without a bound), else overwritten."""
    h, t = raw.chunk(2, dim=-event_dim)
    th = None if bound is None else torch.tanh(h / bound)
    s = h if th is None else (th * bound if keep else th.mul_(bound))
    if inverse:
        factor = torch.neg(s).exp_()
        out = torch.sub(v, t).mul_(factor)
    else:
        factor = torch.exp(s)
        out = torch.addcmul(t, v, factor)
    return out, sum_event(s, event_dim), factor, (th if keep else None)


class _ReLUMLPSoftClampedAffine(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: FunctionCtx, reference: Callable, bound: float | None, inverse: bool, v: torch.Tensor, x: torch.Tensor, *params: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raw, acts = _relu_mlp_forward(x, params)
        out, ladj, factor, th = _soft_clamped_affine_values(v, raw, bound, 1, inverse, keep=True)
        ctx.save_for_backward(v, out, factor, th, *acts, *params)
        ctx.reference, ctx.inverse, ctx.n = reference, inverse, len(acts)
        return out, ladj

    @staticmethod
    def backward(ctx: FunctionCtx, g_out: torch.Tensor, g_ladj: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        v, out, factor, th, *rest = ctx.saved_tensors
        acts, params = rest[: ctx.n], rest[ctx.n :]
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled():
            return (None, None, None) + _differentiable_backward(ctx.reference, (v, acts[0], *params), needs[3:], (g_out, g_ladj))
        g_v = g_out * factor
        # y = v e^s + t: dy/ds = v e^s; x = (v - t) e^-s: dx/ds = -x, dx/dt = -e^-s
        g_ladj = g_ladj.unsqueeze(-1)
        g_s = torch.addcmul(g_ladj, g_out, out, value=-1.0) if ctx.inverse else torch.addcmul(g_ladj, g_v, v)
        g_h = g_s if th is None else g_s.mul_(1.0 - th * th)
        g_raw = torch.cat([g_h, torch.neg(g_v) if ctx.inverse else g_out], dim=-1)
        return (None, None, None, g_v if needs[3] else None) + _relu_mlp_backward(g_raw, acts, params, needs[4:])


def relu_mlp_soft_clamped_affine(
    reference: Callable, params: Sequence[torch.Tensor], x: torch.Tensor, v: torch.Tensor, bound: float | None, inverse: bool
) -> tuple[torch.Tensor, torch.Tensor] | None:
    r"""A coupling's conditioner and affine map as one node: ``raw`` = the ReLU MLP ``params``
    (``W0, b0, W1, b1, ...``) at ``x``, then :func:`soft_clamped_affine` of ``v`` with it; or None
    where this does not apply (then call the conditioner and the map).

    ``reference(v, x, *params)`` computes the same with plain ops. Vectors only: ``x`` ``(N, K)``
    and ``v`` ``(N, D)`` with the network's ``2 D`` outputs, on CPU, when :func:`applicable`.
    """
    if x.dim() != 2 or v.dim() != 2 or x.shape[0] != v.shape[0] or v.shape[0] == 0 or params[-1].shape[0] != 2 * v.shape[1]:
        return None
    if not applicable(x, v, *params):
        return None
    return _apply(_ReLUMLPSoftClampedAffine, lambda ref, bound_, inverse_, *a: ref(*a), reference, bound, inverse, v, x, *params)


def soft_clamped_affine(
    v: torch.Tensor, raw: torch.Tensor, bound: float | None, event_dim: int, inverse: bool
) -> tuple[torch.Tensor, torch.Tensor] | None:
    r"""``(output, log|det J| of the forward map)`` of :math:`y = v\,e^{s} + t` (``inverse``:
    :math:`(v - t)\,e^{-s}`) with :math:`[h, t]` = ``raw`` split in two along dim ``-event_dim`` and
    :math:`s = B\tanh(h/B)` (:math:`s = h` when ``bound`` is None), computed with the fewest ops
    when autograd records nothing (sampling), or None otherwise (then call the plain map).

    ``raw`` must have ``v``'s shape with twice the features (no broadcasting) and its dtype. Any
    device.
    """
    if not _ENABLED or (torch.is_grad_enabled() and (v.requires_grad or raw.requires_grad)):
        return None
    if raw.dtype != v.dtype or raw.dim() != v.dim() or v.dim() < event_dim:
        return None
    dim = v.dim() - event_dim
    if raw.shape[:dim] != v.shape[:dim] or raw.shape[dim + 1 :] != v.shape[dim + 1 :] or raw.shape[dim] != 2 * v.shape[dim]:
        return None
    return _soft_clamped_affine_values(v, raw, bound, event_dim, inverse)[:2]


# ----------------------------------------------------------------------------- planar


class _Planar(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: FunctionCtx,
        reference: Callable,
        parameters: Callable,
        tanh_slope: Callable,
        x: torch.Tensor,
        u: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        shared = w.dim() == 1
        u_hat, kappa = parameters(u, w)
        pre = torch.addmv(b, x, w) if shared else (x * w).sum(-1) + b[:, 0]
        th = torch.tanh(pre)
        y = torch.addcmul(x, th.unsqueeze(-1), u_hat)
        slope = tanh_slope(kappa, th)
        ctx.save_for_backward(x, u, w, b, th, slope, u_hat, kappa)
        ctx.reference = reference
        return y, torch.log(slope)

    @staticmethod
    def backward(ctx: FunctionCtx, g_y: torch.Tensor, g_l: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, u, w, b, th, slope, u_hat, kappa = ctx.saved_tensors
        needs = ctx.needs_input_grad[3:]
        if torch.is_grad_enabled():
            return (None, None, None) + _differentiable_backward(ctx.reference, (x, u, w, b), needs, (g_y, g_l))
        shared = w.dim() == 1
        one_m = 1.0 - th * th
        g_over = g_l / slope
        g_th = (g_y.mv(u_hat) if shared else (g_y * u_hat).sum(-1)) - 2.0 * kappa * th * g_over
        g_pre = g_th * one_m
        g_x = torch.addcmul(g_y, g_pre.unsqueeze(-1), w) if needs[0] else None
        g_b = (g_pre.sum().reshape(1) if shared else g_pre.unsqueeze(-1)) if needs[3] else None
        if not (needs[1] or needs[2]):
            return None, None, None, g_x, None, None, g_b
        # y depends on (u, w) through u_hat = u + c w, c = (kappa - a) / n, kappa = softplus(a) - 1,
        # a = w.u, n = |w|^2, and through the pre-activation w.x
        g_uhat = g_y.t().mv(th) if shared else g_y * th.unsqueeze(-1)
        g_kappa = (g_over * one_m).sum() if shared else g_over * one_m
        a = (w * u).sum(-1)
        n = (w * w).sum(-1).clamp_min(torch.finfo(w.dtype).tiny)
        g_c = (g_uhat * w).sum(-1)
        g_a = (g_kappa + g_c / n) * torch.sigmoid(a) - g_c / n
        g_n = -g_c * (kappa - a) / (n * n)
        c = ((kappa - a) / n).unsqueeze(-1)
        g_u = g_uhat + g_a.unsqueeze(-1) * w
        g_w = c * g_uhat + g_a.unsqueeze(-1) * u + (2.0 * g_n).unsqueeze(-1) * w
        g_w = g_w + (x.t().mv(g_pre) if shared else x * g_pre.unsqueeze(-1))
        return None, None, None, g_x, (g_u if needs[1] else None), (g_w if needs[2] else None), g_b


def planar(
    reference: Callable, parameters: Callable, tanh_slope: Callable, x: torch.Tensor, u: torch.Tensor, w: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    r"""``(y, log|det J|)`` of the forward planar map :math:`y = x + \hat u \tanh(w^\top x + b)` as one
    node, or None where it does not apply (then call ``reference``).

    ``reference(x, u, w, b)`` is the plain map, ``parameters(u, w) -> (u_hat, kappa)`` the
    reparameterisation and ``tanh_slope(kappa, th)`` the slope :math:`1 + \kappa (1 - \tanh^2)` whose
    log is the log-det (the planar transform's own functions). Shared raw parameters (``u, w``
    ``(D,)``, ``b`` ``(1,)``) or exactly per-sample ones (``batch + (D,)``, ``batch + (1,)``).
    """
    if x.dim() < 1 or x.numel() == 0 or not applicable(x, u, w, b):
        return None
    batch, d = x.shape[:-1], x.shape[-1]
    if w.dim() == 1:
        if u.shape != (d,) or b.shape != (1,):
            return None
        params = (u, w, b)
    elif w.shape == x.shape and u.shape == x.shape and b.shape == batch + (1,):
        params = (u.reshape(-1, d), w.reshape(-1, d), b.reshape(-1, 1))
    else:
        return None
    y, ladj = _apply(_Planar, lambda ref, par, slope, *a: reference(*a), reference, parameters, tanh_slope, x.reshape(-1, d), *params)
    return y.reshape(x.shape), ladj.reshape(batch)
