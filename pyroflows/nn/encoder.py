r"""Encoders for amortized posteriors: data -> the base Normal's parameters and a flow context."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..validation import check_tensor


class GaussianEncoder(nn.Module):
    r"""A VAE encoder :math:`x \mapsto (\mu(x), \sigma(x), h(x))`.

    A trunk MLP gives :math:`h_0(x)`; linear heads give :math:`\mu = W_\mu h_0`,
    :math:`\sigma = \mathrm{softplus}(W_\sigma h_0) + \sigma_{\min}` and the context
    :math:`h = W_h h_0` for the amortized flow layers (or :math:`h = h_0` when ``context_features`` is
    ``None``, as in the Sylvester reference code, where every flow parameter is a linear map of the
    encoder's last hidden layer).

    Args:
        in_features: size of the flattened input.
        latent_dim: size of :math:`z`.
        hidden: widths of the trunk's hidden layers (at least one).
        context_features: size of the context head, ``0`` for none, ``None`` to pass the trunk's
            output itself.
        activation: activation module class of the trunk.
        min_scale: :math:`\sigma_{\min}`, keeps the base scale away from zero.

    Example::

        >>> enc = GaussianEncoder(64, 4, hidden=(32,), context_features=8)
        >>> loc, scale, h = enc(torch.rand(5, 64))
        >>> loc.shape, scale.shape, h.shape
        (torch.Size([5, 4]), torch.Size([5, 4]), torch.Size([5, 8]))
    """

    def __init__(
        self,
        in_features: int,
        latent_dim: int,
        hidden: Sequence[int] = (256, 256),
        context_features: int | None = None,
        activation: type[nn.Module] = nn.ReLU,
        min_scale: float = 1e-4,
    ) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("hidden: expected at least one hidden width, got ()")
        widths = [in_features, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(a, b), activation()]
        self.trunk = nn.Sequential(*layers)
        self.in_features, self.latent_dim, self.min_scale = in_features, latent_dim, min_scale
        self.loc = nn.Linear(hidden[-1], latent_dim)
        self.scale = nn.Linear(hidden[-1], latent_dim)
        self.context = None if not context_features else nn.Linear(hidden[-1], context_features)
        self.context_features = hidden[-1] if context_features is None else context_features

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        check_tensor("x", x, (self.in_features,), self.loc.weight.dtype, self.loc.weight.device)
        h0 = self.trunk(x)
        scale = F.softplus(self.scale(h0)) + self.min_scale
        if self.context is not None:
            context = self.context(h0)
        else:
            context = h0 if self.context_features else None
        return self.loc(h0), scale, context
