r"""Time-conditioned dynamics networks for continuous normalizing flows (FFJORD's "concatsquash").

A concatsquash layer maps a hidden vector :math:`h` to

.. math::

    \operatorname{CS}(h; u) = (W h + b) \odot \sigma(G u + g) + B u, \qquad u = [t, c],

where :math:`u` joins the time :math:`t` and, for conditional flows, a context :math:`c`: the time
and the context gate ("squash") and shift every layer's output instead of being concatenated to
its input only once. :class:`ConcatSquashNet` stacks such layers with a smooth activation (the
solver and the trace of the Jacobian need a differentiable right-hand side) and is called as
``net(t, z, context=None) -> dz/dt``, the signature the CNF transforms expect of any dynamics
network.

Reference: Grathwohl, Chen, Bettencourt, Sutskever, Duvenaud, "FFJORD: free-form continuous
dynamics for scalable reversible generative models", ICLR 2019 (the layer type of their code).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from ..shapes import broadcast_shapes
from ..validation import check_size, check_sizes

_ACTIVATIONS = {"tanh": nn.Tanh, "softplus": nn.Softplus, "elu": nn.ELU, "silu": nn.SiLU, "swish": nn.SiLU}


class ConcatSquashLinear(nn.Module):
    r"""One concatsquash layer :math:`(W h + b) \odot \sigma(G u + g) + B u` with :math:`u = [t, c]`.

    Args:
        in_features: size of ``h``'s last dim.
        out_features: size of the output's last dim.
        cond_features: size of ``u`` (1 for the time alone, ``1 + context_features`` with a context).

    ``u`` must broadcast against ``h`` in its batch dims.
    """

    def __init__(self, in_features: int, out_features: int, cond_features: int = 1) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.gate = nn.Linear(cond_features, out_features)
        self.shift = nn.Linear(cond_features, out_features, bias=False)

    def zero_(self) -> ConcatSquashLinear:
        """Zero the output path (``W``, ``b`` and ``B``), so that the layer returns 0 for every input."""
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.zero_()
            self.shift.weight.zero_()
        return self

    def forward(self, h: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.linear(h) * torch.sigmoid(self.gate(u)) + self.shift(u)


class ConcatSquashNet(nn.Module):
    r"""Dynamics network :math:`f(z, t, c)` built from :class:`ConcatSquashLinear` layers.

    Args:
        features: size of the state ``z`` (and of the output).
        hidden_features: widths of the hidden layers.
        context_features: size of the context's last dim (0: no context).
        activation: ``"tanh"`` (default), ``"softplus"``, ``"elu"`` or ``"silu"``, or a module class.
        zero_init: zero the output path of the last layer, so the flow starts as the identity.

    Called as ``net(t, z, context=None)`` with a time ``t``, ``z`` of shape ``batch + (features,)``
    and ``context`` of shape ``batch' + (context_features,)`` with ``batch'`` broadcastable against
    ``batch``; returns ``dz/dt`` of ``z``'s shape. The time is a 0-dim tensor (one time for the whole
    batch, as in an ODE solve) or has a shape that broadcasts against ``batch`` (one time per sample,
    as :class:`~pyroflows.infer.FlowMatching` needs).

    Example::

        >>> net = ConcatSquashNet(2, (16, 16), context_features=3)
        >>> net(torch.tensor(0.5), torch.randn(5, 2), torch.randn(5, 3)).shape
        torch.Size([5, 2])
    """

    def __init__(
        self,
        features: int,
        hidden_features: Sequence[int] = (64, 64),
        context_features: int = 0,
        activation: str | type[nn.Module] = "tanh",
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(activation, str):
            if activation not in _ACTIVATIONS:
                raise ValueError(f"activation: expected one of {sorted(_ACTIVATIONS)} or a module class, got {activation!r}")
            activation = _ACTIVATIONS[activation]
        self.features, self.context_features = check_size("features", features), check_size("context_features", context_features, 0)
        widths = [self.features, *check_sizes("hidden_features", hidden_features), self.features]
        cond = 1 + self.context_features
        self.layers = nn.ModuleList(ConcatSquashLinear(a, b, cond) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.acts = nn.ModuleList(activation() for _ in range(len(self.layers) - 1))
        if zero_init:
            self.layers[-1].zero_()

    def _cond(self, t: torch.Tensor, z: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        # a 0-dim time is shared by the whole batch (an ODE solve); a time of shape ``batch`` gives each
        # sample its own (flow matching regresses the field at random times)
        time = t.to(z.dtype).reshape((1,) * z.dim()) if t.dim() == 0 else t.to(z.dtype).unsqueeze(-1)
        if self.context_features == 0:
            if context is not None:
                raise ValueError("context: this network takes no context (context_features=0), got a tensor")
            return time
        if context is None:
            raise ValueError(f"context: expected a tensor of shape (..., {self.context_features}), got None")
        if context.shape[-1] != self.context_features:
            raise ValueError(f"context: expected shape (..., {self.context_features}), got {tuple(context.shape)}")
        batch = broadcast_shapes(time.shape[:-1], context.shape[:-1])
        return torch.cat([time.to(context.dtype).expand(batch + (1,)), context.expand(batch + context.shape[-1:])], dim=-1)

    def forward(self, t: torch.Tensor, z: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        u = self._cond(t, z, context)
        h = z
        for i, layer in enumerate(self.layers):
            h = layer(h, u)
            if i < len(self.acts):
                h = self.acts[i](h)
        return h
