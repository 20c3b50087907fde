"""Factories for stacks of coupling blocks (RealNVP / INN style).

A block is two affine couplings that together update every feature, as in eq. (2) of Xiao et al.:
:math:`y_1 = x_1 e^{s_1(x_2)} + t_1(x_2)`, :math:`y_2 = x_2 e^{s_2(y_1)} + t_2(y_1)`,
followed by a fixed permutation (random by default), optionally preceded by ActNorm.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.distributions.conditional import ConditionalComposeTransformModule
from pyro.distributions.transforms import ComposeTransformModule

from .actnorm import ActNorm
from .coupling import affine_coupling, conditional_affine_coupling
from .permute import Permute, permute


def _swap(dim: int, split: int) -> Permute:
    return Permute(torch.cat([torch.arange(split, dim), torch.arange(split)]))


def _block_parts(dim, make_coupling, permutation, generator, use_actnorm):
    split = dim // 2
    parts = [ActNorm(dim)] if use_actnorm else []
    parts += [make_coupling(split), _swap(dim, split), make_coupling(dim - split)]
    if permutation is not None:
        parts.append(permute(dim, permutation, generator=generator))
    return parts


def coupling_flow(
    dim: int,
    num_blocks: int = 8,
    hidden: int | Sequence[int] = (256, 256),
    permutation: str | None = "random",
    actnorm: bool = False,
    clamp: float | None = 3.0,
    seed: int | None = None,
) -> ComposeTransformModule:
    """A stack of ``num_blocks`` two-sided affine coupling blocks on vectors of size ``dim``.

    Example::

        >>> import pyro.distributions as dist
        >>> flow = coupling_flow(4, num_blocks=2, hidden=(32, 32))
        >>> d = dist.TransformedDistribution(dist.Normal(torch.zeros(4), 1.0).to_event(1), [flow])
        >>> d.log_prob(torch.randn(10, 4)).shape
        torch.Size([10])
    """
    if dim < 2:
        raise ValueError(f"dim: coupling needs at least 2 features, got {dim}")
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    parts = []
    for _ in range(num_blocks):
        parts += _block_parts(dim, lambda s: affine_coupling(dim, hidden, split=s, clamp=clamp), permutation, generator, actnorm)
    return ComposeTransformModule(parts)


def conditional_coupling_flow(
    dim: int,
    context_dim: int,
    num_blocks: int = 8,
    hidden: int | Sequence[int] = (256, 256),
    permutation: str | None = "random",
    actnorm: bool = False,
    clamp: float | None = 3.0,
    seed: int | None = None,
) -> ConditionalComposeTransformModule:
    """A stack of conditional two-sided coupling blocks; every conditioner sees the context.

    Example::

        >>> import pyro.distributions as dist
        >>> from pyroflows.distributions import ConditionalFlowDistribution
        >>> flow = conditional_coupling_flow(4, context_dim=2, num_blocks=2, hidden=(32, 32))
        >>> d = ConditionalFlowDistribution(dist.Normal(torch.zeros(4), 1.0).to_event(1), [flow])
        >>> d.condition(torch.randn(7, 2)).sample().shape
        torch.Size([7, 4])
    """
    if dim < 2:
        raise ValueError(f"dim: coupling needs at least 2 features, got {dim}")
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    parts = []
    for _ in range(num_blocks):
        parts += _block_parts(dim, lambda s: conditional_affine_coupling(dim, context_dim, hidden, split=s, clamp=clamp), permutation, generator, actnorm)
    flow = ConditionalComposeTransformModule(parts, cache_size=1)
    flow.context_shape = (context_dim,)
    return flow
