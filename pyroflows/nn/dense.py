"""Fully connected conditioner networks: ``net(x, context=None)`` on vectors of any batch shape.

A context of shape ``batch' + (context_features,)`` is broadcast against the input's batch shape
and concatenated to the input. The last layer is zero-initialised (``zero_init=True``), so a flow
whose parameters come from these networks starts as the identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..transforms.base import broadcast_batch

_NARROW = 8  # results with at most this many columns (and more rows) are computed transposed


def _mm_wide(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b``, computed as ``(b.T @ a.T).T`` when the result is narrow (``<= _NARROW`` columns).

    Same product, same FLOPs; only the operand order handed to BLAS changes. CPU BLAS (MKL 2024.2
    on the 2-core Zen 4 benchmark machine) has a slow path for such narrow results: the weight
    gradient ``(256, 1600) @ (1600, 8)`` of a coupling conditioner's first layer, and its input
    gradient ``(1600, 256) @ (256, 8)``, ran 7-10x slower than their transposed forms. From 12
    columns on the two forms were within noise of each other, and flipping wider results (whose
    transposed output then meets contiguous tensors in elementwise ops) made the step slower.
    """
    if b.shape[-1] <= _NARROW < a.shape[-2]:
        return (b.mT @ a.mT).mT
    return a @ b


class _LinearFn(torch.autograd.Function):
    """``F.linear`` on 2-D inputs whose backward computes narrow products in their fast orientation.

    torch's ``addmm`` backward computes the weight gradient in the weight's own layout,
    ``grad.T @ x``, and the input gradient as ``grad @ weight``; for a layer with few inputs (the first
    layer of a coupling conditioner, ``in_features`` = 8) both are the slow case of :func:`_mm_wide`.
    The backward is written with differentiable ops on the saved inputs, so double backward works;
    ``jvp`` gives forward-mode AD. (An old-style ``forward(ctx, ...)`` Function: the
    ``setup_context`` style that torch.func needs cost about 40 us more per call, so :func:`linear`
    uses plain ``F.linear`` under torch.func transforms instead.)
    """

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.save_for_forward(x, weight)
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        grad_x = _mm_wide(grad, weight) if need_x else None
        grad_w = _mm_wide(grad.mT, x) if need_w else None
        grad_b = grad.sum(0) if need_b else None
        return grad_x, grad_w, grad_b

    @staticmethod
    def jvp(ctx, dx, dweight, dbias):
        x, weight = ctx.saved_tensors
        out = None
        if dx is not None:
            out = F.linear(dx, weight)
        if dweight is not None:
            out = F.linear(x, dweight) if out is None else out + F.linear(x, dweight)
        if dbias is not None:
            out = dbias.expand(x.shape[0], -1) if out is None else out + dbias
        return out


def linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """``layer(x)`` for any batch shape, the same map and derivatives.

    With few inputs (``in_features <= _NARROW``), on CPU, when a gradient will be taken, it goes
    through :class:`_LinearFn`; otherwise through ``F.linear``.
    """
    if (
        layer.in_features > _NARROW
        or x.device.type != "cpu"
        or not torch.is_grad_enabled()
        or not (x.requires_grad or layer.weight.requires_grad)
        or torch._C._are_functorch_transforms_active()
    ):
        return F.linear(x, layer.weight, layer.bias)
    if x.dim() == 2:
        return _LinearFn.apply(x, layer.weight, layer.bias)
    y = _LinearFn.apply(x.reshape(-1, x.shape[-1]), layer.weight, layer.bias)
    return y.reshape(x.shape[:-1] + y.shape[-1:])


def _relu_mlp(x: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
    """Linear - ReLU - ... - Linear with plain differentiable ops (the reference of :class:`_ReLUMLPFn`)."""
    n = len(params) // 2
    for i in range(n):
        x = F.linear(x, params[2 * i], params[2 * i + 1])
        if i < n - 1:
            x = torch.relu(x)
    return x


def _relu_mlp_forward(x: torch.Tensor, params: Sequence[torch.Tensor]):
    """Forward of a ReLU stack on 2-D ``x`` (no autograd): ``(out, acts)``, ``acts`` the inputs of
    every layer (``x`` and the post-ReLU hidden activations); ReLU runs in place."""
    n = len(params) // 2
    acts = [x]
    h = x
    for i in range(n):
        h = torch.addmm(params[2 * i + 1], h, params[2 * i].mT)
        if i < n - 1:
            h = h.relu_()
            acts.append(h)
    return h, acts


def _relu_mlp_backward(grad: torch.Tensor, acts: Sequence[torch.Tensor], params: Sequence[torch.Tensor], need_x: bool, need_params: Sequence[bool]):
    """Backward of :func:`_relu_mlp_forward` by hand: ``(grad_x or None, [grad_W0, grad_b0, ...])``
    (None where not needed). ``grad`` may be modified in place only if the caller owns it."""
    n = len(params) // 2
    out = [None] * (2 * n)
    g = grad
    for i in range(n - 1, -1, -1):
        a, w = acts[i], params[2 * i]
        if need_params[2 * i + 1]:
            out[2 * i + 1] = g.sum(0)
        if need_params[2 * i]:
            out[2 * i] = _mm_wide(g.mT, a)
        if i > 0 or need_x:
            g = _mm_wide(g, w)
            if i > 0:  # ReLU backward, in place on the fresh gradient
                g = torch.ops.aten.threshold_backward.grad_input(g, a, 0, grad_input=g)
    return (g if need_x else None), out


class _ReLUMLPFn(torch.autograd.Function):
    """A whole ``Linear - ReLU - ... - Linear`` stack on 2-D inputs as one autograd node.

    ``apply(x, W0, b0, W1, b1, ...)``. Compared with one node per layer: ReLU runs in place on the
    linear outputs and its backward in place on the incoming gradient (two fewer ``(N, hidden)``
    allocations per hidden layer, which on the benchmark machine also means fewer page faults),
    the narrow products go through :func:`_mm_wide`, and the autograd graph holds one node instead
    of ``2 * layers``. The saved activations are the post-ReLU outputs, as in the layer-by-layer
    graph (same memory).

    Double backward: when the backward itself is differentiated (``create_graph=True``), it
    recomputes the stack from the saved inputs with plain ops and differentiates that, so higher
    derivatives are exact. ``jvp`` propagates tangents through the saved activations.
    """

    @staticmethod
    def forward(ctx, x, *params):
        h, acts = _relu_mlp_forward(x, params)
        ctx.save_for_backward(*acts, *params)
        ctx.save_for_forward(*acts, *params)
        ctx.n = len(params) // 2
        return h

    @staticmethod
    def backward(ctx, grad):
        n = ctx.n
        saved = ctx.saved_tensors
        acts, params = saved[:n], saved[n:]
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled():  # create_graph=True: differentiate a differentiable recomputation
            inputs = [t for t, need in zip((acts[0], *params), needs) if need]
            with torch.enable_grad():
                out = _relu_mlp(acts[0], params)
            grads = iter(torch.autograd.grad(out, inputs, grad, create_graph=True, allow_unused=True, materialize_grads=True))
            return tuple(next(grads) if need else None for need in needs)
        grad_x, grads = _relu_mlp_backward(grad, acts, params, needs[0], needs[1:])
        return (grad_x, *grads)

    @staticmethod
    def jvp(ctx, dx, *dparams):
        n = ctx.n
        saved = ctx.saved_tensors
        acts, params = saved[:n], saved[n:]
        d = None
        for i in range(n):
            w, dw, db = params[2 * i], dparams[2 * i], dparams[2 * i + 1]
            terms = [] if d is None else [F.linear(d, w)]
            if dw is not None:
                terms.append(F.linear(acts[i], dw))
            if db is not None:
                terms.append(db.expand(acts[i].shape[0], -1))
            if i == 0 and dx is not None:
                terms.append(F.linear(dx, w))
            d = sum(terms[1:], terms[0]) if terms else torch.zeros(acts[i].shape[0], w.shape[0], dtype=w.dtype, device=w.device)
            if i < n - 1:
                d = d * (acts[i + 1] > 0)
        return d


def _fused_params(layers: nn.Sequential) -> list[torch.Tensor] | None:
    """``[W0, b0, W1, b1, ...]`` when ``layers`` is exactly Linear, ReLU, ..., Linear without hooks."""
    mods = list(layers)
    if len(mods) % 2 == 0:
        return None
    params = []
    for k, m in enumerate(mods):
        if m._forward_hooks or m._forward_pre_hooks or type(m) is not (nn.Linear if k % 2 == 0 else nn.ReLU):
            return None
        if k % 2 == 0:
            if m.bias is None:
                return None
            params += [m.weight, m.bias]
    return params


def _run(layers: nn.Sequential, h: torch.Tensor) -> torch.Tensor:
    """``layers(h)``, the same map and derivatives, faster on CPU.

    With gradients, a plain ``Linear - ReLU - ... - Linear`` stack on CPU runs as one
    :class:`_ReLUMLPFn` node. Otherwise ``nn.Linear`` layers go through :func:`linear` and ``nn.ReLU``
    is applied in place on the linear output (saving an allocation per hidden layer); a layer
    carrying module hooks is called as a module, so its hooks still fire.
    """
    if h.device.type == "cpu" and torch.is_grad_enabled() and not torch._C._are_functorch_transforms_active():
        params = _fused_params(layers)
        if params is not None and (h.requires_grad or any(p.requires_grad for p in params)):
            flat = h.reshape(-1, h.shape[-1]) if h.dim() != 2 else h
            out = _ReLUMLPFn.apply(flat, *params)
            return out if h.dim() == 2 else out.reshape(h.shape[:-1] + out.shape[-1:])
    fresh = False  # True while ``h`` is an intermediate created here (safe to modify in place)
    for layer in layers:
        plain = not (layer._forward_hooks or layer._forward_pre_hooks)
        if plain and type(layer) is nn.Linear:
            h, fresh = linear(h, layer), True
        elif plain and type(layer) is nn.ReLU and fresh:
            h = torch.relu_(h)
        else:
            h, fresh = layer(h), False  # may return its input or a view of it
    return h


def _join_context(x: torch.Tensor, context: torch.Tensor | None, context_features: int) -> torch.Tensor:
    if context_features == 0:
        if context is not None:
            raise ValueError("context: this network takes no context (context_features=0), got a tensor")
        return x
    if context is None:
        raise ValueError(f"context: expected a tensor of shape (..., {context_features}), got None")
    if context.shape[-1] != context_features:
        raise ValueError(f"context: expected shape (..., {context_features}), got {tuple(context.shape)}")
    x, context = broadcast_batch(x, 1, context, 1)
    return torch.cat([x, context], dim=-1)


def _zero_(layer: nn.Linear) -> nn.Linear:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class MLP(nn.Module):
    r"""Multi-layer perceptron :math:`[x, c] \mapsto` out, ReLU by default.

    Args:
        in_features: size of ``x``'s last dim.
        out_features: size of the output's last dim.
        hidden_features: widths of the hidden layers.
        context_features: size of the context's last dim (0: no context).
        activation: activation module class.
        zero_init: zero the last layer.

    Example::

        >>> net = MLP(3, 4, (16, 16), context_features=2)
        >>> net(torch.randn(5, 3), torch.randn(5, 2)).shape
        torch.Size([5, 4])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden_features: Sequence[int] = (256, 256),
        context_features: int = 0,
        activation: type[nn.Module] = nn.ReLU,
        zero_init: bool = True,
    ):
        super().__init__()
        self.in_features, self.out_features, self.context_features = in_features, out_features, context_features
        widths = [in_features + context_features, *hidden_features]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), activation()]
        last = nn.Linear(widths[-1], out_features)
        layers.append(_zero_(last) if zero_init else last)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return _run(self.net, _join_context(x, context, self.context_features))


def context_mlp(context_shape: Sequence[int], out_features: int, hidden_features: Sequence[int] = (64,)) -> nn.Module:
    """A zero-initialised :class:`MLP` from a context of event shape ``context_shape`` to
    ``out_features``: for a vector ``(K,)`` the MLP itself, for a map ``(K, *spatial)`` the MLP on the
    flattened map (MotionFlow's fully connected heads). Accepts any batch shape.

    Example::

        >>> context_mlp((3, 4, 2), 5)(torch.randn(7, 3, 4, 2)).shape
        torch.Size([7, 5])
    """
    size = 1
    for s in context_shape:
        size *= int(s)
    mlp = MLP(size, out_features, tuple(hidden_features))
    return mlp if len(context_shape) == 1 else nn.Sequential(nn.Flatten(-len(context_shape)), mlp)


class ResidualMLP(nn.Module):
    r"""Residual MLP: a linear lift, ``num_blocks`` pre-activation blocks
    :math:`h \leftarrow h + W_2\,\sigma(W_1\,\sigma(h))`, a zero-initialised linear read-out.

    Takes the same arguments as :class:`MLP` with one width ``hidden_features`` and ``num_blocks``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden_features: int = 128,
        num_blocks: int = 2,
        context_features: int = 0,
        activation: type[nn.Module] = nn.ReLU,
        zero_init: bool = True,
    ):
        super().__init__()
        self.in_features, self.out_features, self.context_features = in_features, out_features, context_features
        self.lift = nn.Linear(in_features + context_features, hidden_features)
        self.blocks = nn.ModuleList(
            nn.Sequential(activation(), nn.Linear(hidden_features, hidden_features), activation(), nn.Linear(hidden_features, hidden_features))
            for _ in range(num_blocks)
        )
        self.out = nn.Linear(hidden_features, out_features)
        self.act = activation()
        if zero_init:
            _zero_(self.out)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = self.lift(_join_context(x, context, self.context_features))
        for block in self.blocks:
            h = h + block(h)
        return self.out(self.act(h))
