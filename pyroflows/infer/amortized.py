r"""Amortized flow posteriors for VAEs: an encoder gives the base Normal and the flows' context.

.. math::

    z_0 \sim \mathcal N\bigl(\mu(x), \operatorname{diag}\sigma(x)^2\bigr), \qquad
    z_K = f_K^{h(x)} \circ \dots \circ f_1^{h(x)}(z_0), \qquad
    \log q(z_K \mid x) = \log \mathcal N(z_0) - \sum_{k=1}^K \log\Bigl|\det \frac{\partial f_k}{\partial z_{k-1}}\Bigr|,

where every parameter of the conditional layer :math:`f_k` is computed from the encoder's context
:math:`h(x)` (planar, radial, orthogonal / Householder / triangular Sylvester, or Pyro's conditional
IAF for comparison, or FFJORD's continuous flow with the context in its dynamics). This is the
posterior family of Rezende & Mohamed (2015) and of van den Berg et al. (2018); the Sylvester
reference code computes the flow parameters from the encoder's last hidden layer, which is the
default here.

References: Rezende, Mohamed, "Variational inference with normalizing flows", ICML 2015;
van den Berg, Hasenclever, Tomczak, Welling, "Sylvester normalizing flows for variational
inference", UAI 2018.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch
import torch.nn as nn
from pyro.distributions import ConditionalDistribution
from pyro.distributions.conditional import ConditionalTransformModule
from pyro.distributions.transforms import conditional_affine_autoregressive

from ..nn.encoder import GaussianEncoder
from ..transforms import Permute, conditional_cnf, conditional_planar, conditional_radial, conditional_sylvester
from ..validation import check_size

#: posterior kinds :func:`amortized_posterior` builds.
POSTERIOR_KINDS = ("diagonal", "planar", "radial", "orthogonal", "householder", "triangular", "iaf", "ffjord")


class AmortizedFlowPosterior(nn.Module, ConditionalDistribution):
    r""":math:`q(z \mid x)`: an encoder's Normal pushed through conditional flow layers.

    ``encoder(x)`` returns ``(loc, scale, context)``; ``flows`` are
    ``ConditionalTransformModule``\ s (conditioned on ``context``) or plain transforms.
    ``.condition(x)`` returns a ``TransformedDistribution`` with batch shape ``x.shape[:-1]`` and
    event shape ``(latent_dim,)``, ready for ``pyro.sample`` in a guide.

    Example::

        >>> import pyro
        >>> q = amortized_posterior("householder", in_features=64, latent_dim=4, num_flows=2, hidden=(32,))
        >>> def guide(x):
        ...     pyro.module("q", q)
        ...     with pyro.plate("data", x.shape[0]):
        ...         return pyro.sample("z", q.condition(x))
        >>> guide(torch.rand(10, 64)).shape
        torch.Size([10, 4])
    """

    def __init__(self, encoder: nn.Module, flows: Sequence[nn.Module] = ()) -> None:
        super().__init__()
        self.encoder = encoder
        self.flows = nn.ModuleList(flows)

    def condition(self, x: torch.Tensor) -> dist.TorchDistribution:
        loc, scale, context = self.encoder(x)
        base = dist.Normal(loc, scale).to_event(1)
        if not len(self.flows):
            return base
        if context is None and any(isinstance(f, ConditionalTransformModule) for f in self.flows):
            raise ValueError("encoder: conditional flow layers need a context, but the encoder returned None")
        transforms = [f.condition(context) if isinstance(f, ConditionalTransformModule) else f for f in self.flows]
        return dist.TransformedDistribution(base, transforms)


def _flow_layers(
    kind: str,
    latent_dim: int,
    context_dim: int,
    num_flows: int,
    num_ortho_vecs: int | None,
    num_householder: int | None,
    iaf_hidden: Sequence[int] | None,
    cnf_options: dict | None,
) -> list[nn.Module]:
    if kind == "ffjord":
        options = {"hidden": (4 * latent_dim, 4 * latent_dim), "eval_exact_trace": True, **(cnf_options or {})}
        return [conditional_cnf(latent_dim, context_dim, **options) for _ in range(num_flows)]
    if kind == "planar":
        return [conditional_planar(latent_dim, context_dim, hidden=()) for _ in range(num_flows)]
    if kind == "radial":
        return [conditional_radial(latent_dim, context_dim, hidden=()) for _ in range(num_flows)]
    if kind == "orthogonal":
        return [
            conditional_sylvester(latent_dim, context_dim, "orthogonal", hidden=(), num_ortho_vecs=num_ortho_vecs) for _ in range(num_flows)
        ]
    if kind == "householder":
        return [
            conditional_sylvester(latent_dim, context_dim, "householder", hidden=(), num_householder=num_householder)
            for _ in range(num_flows)
        ]
    if kind == "triangular":
        return [conditional_sylvester(latent_dim, context_dim, "triangular", hidden=(), flip=k % 2 == 1) for k in range(num_flows)]
    layers: list[nn.Module] = []
    for k in range(num_flows):
        if k:
            layers.append(Permute(torch.arange(latent_dim - 1, -1, -1)))
        layers.append(conditional_affine_autoregressive(latent_dim, context_dim, hidden_dims=list(iaf_hidden or (4 * latent_dim,))))
    return layers


def amortized_posterior(
    kind: str,
    in_features: int,
    latent_dim: int,
    num_flows: int = 4,
    hidden: Sequence[int] = (256, 256),
    context_features: int | None = None,
    num_ortho_vecs: int | None = None,
    num_householder: int | None = None,
    iaf_hidden: Sequence[int] | None = None,
    cnf_options: dict | None = None,
) -> AmortizedFlowPosterior:
    """An amortized posterior of one of :data:`POSTERIOR_KINDS` with a :class:`GaussianEncoder`.

    Args:
        kind: ``"diagonal"`` (no flow), ``"planar"``, ``"radial"``, ``"orthogonal"`` /
            ``"householder"`` / ``"triangular"`` (Sylvester), or ``"iaf"`` (Pyro's conditional affine
            autoregressive layers, reversed between layers), ``"ffjord"`` (conditional CNF blocks with the
            context in the dynamics; Hutchinson's trace while training, the exact trace in eval mode).
        in_features: size of the encoder's (flattened) input.
        latent_dim: size of :math:`z`.
        num_flows: number of flow layers :math:`K`.
        hidden: the encoder trunk's hidden widths.
        context_features: size of the flows' context; ``None`` uses the trunk's last hidden layer.
        num_ortho_vecs, num_householder: Sylvester options (see :func:`pyroflows.transforms.sylvester`).
        iaf_hidden: hidden widths of each IAF layer's MADE (default ``(4 * latent_dim,)``).
        cnf_options: keyword arguments of :func:`pyroflows.transforms.conditional_cnf` for ``"ffjord"``
            (default hidden widths ``(4 * latent_dim, 4 * latent_dim)``, ``eval_exact_trace=True``).
    """
    if kind not in POSTERIOR_KINDS:
        raise ValueError(f"kind: expected one of {POSTERIOR_KINDS}, got {kind!r}")
    num_flows = check_size("num_flows", num_flows, 0)
    options = {
        "num_ortho_vecs": (num_ortho_vecs, "orthogonal"),
        "num_householder": (num_householder, "householder"),
        "iaf_hidden": (iaf_hidden, "iaf"),
        "cnf_options": (cnf_options, "ffjord"),
    }
    for name, (value, owner) in options.items():
        if value is not None and kind != owner:
            raise ValueError(f"{name}: an option of kind={owner!r} only, got it with kind={kind!r}")
    encoder = GaussianEncoder(in_features, latent_dim, hidden, context_features=0 if kind == "diagonal" else context_features)
    flows = (
        []
        if kind == "diagonal"
        else _flow_layers(kind, latent_dim, encoder.context_features, num_flows, num_ortho_vecs, num_householder, iaf_hidden, cnf_options)
    )
    return AmortizedFlowPosterior(encoder, flows)
