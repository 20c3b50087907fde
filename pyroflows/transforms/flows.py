"""Factories for stacks of coupling blocks (RealNVP / INN style).

A block is two affine couplings that together update every feature, as in eq. (2) of Xiao et al.:
:math:`y_1 = x_1 e^{s_1(x_2)} + t_1(x_2)`, :math:`y_2 = x_2 e^{s_2(y_1)} + t_2(y_1)`,
followed by a fixed permutation (random by default), optionally preceded by ActNorm. With
``two_sided=False`` a block is one coupling and the permutation (the layout of Pyro's, nflows',
zuko's and FrEIA's one-sided coupling flows).

The stacks are :class:`FlowSequence` / :class:`ConditionalFlowSequence`: Pyro's
``ComposeTransformModule`` / ``ConditionalComposeTransformModule`` whose calls run the parts in one
loop and keep the summed log-det (:class:`~pyroflows.transforms.base.OnePassCompose`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.distributions.conditional import ConditionalComposeTransformModule
from pyro.distributions.transforms import ComposeTransformModule

from .actnorm import ActNorm
from .base import OnePassCompose
from .coupling import affine_coupling, conditional_affine_coupling
from .permute import Permute, permute


class FlowSequence(OnePassCompose, ComposeTransformModule):
    """A ``ComposeTransformModule`` that runs its parts in one loop per call and keeps the summed
    log-det (see :class:`~pyroflows.transforms.base.OnePassCompose`). Same parameters, state_dict
    keys, values and log-dets as ``ComposeTransformModule(parts)``."""

    def with_cache(self, cache_size=1):
        if cache_size == self._cache_size:
            return self
        return FlowSequence(self.parts, cache_size=cache_size)


class ConditionalFlowSequence(ConditionalComposeTransformModule):
    """A ``ConditionalComposeTransformModule`` whose ``.condition(context)`` is a :class:`FlowSequence`.

    Conditioning again on the same, unmodified context tensor (a training loop over a fixed batch, a
    guide conditioned once per step) returns the same :class:`FlowSequence`: the conditioned parts
    read the parameters when called, and its kept ``(x, y, ladj)`` is stamped with them.
    """

    _last_condition = None  # (context, its version counter, the conditioned FlowSequence)

    def condition(self, context: torch.Tensor) -> FlowSequence:
        last = self._last_condition
        if last is not None and last[0] is context and last[1] == context._version:
            return last[2]
        flow = FlowSequence([t.condition(context) for t in self.transforms], cache_size=self._cache_size)
        if isinstance(context, torch.Tensor):
            self._last_condition = (context, context._version, flow)
        return flow

    def __getstate__(self):  # pickling / deepcopy: leave the conditioned stack behind
        state = dict(super().__getstate__())
        state.pop("_last_condition", None)
        return state


def _swap(dim: int, split: int) -> Permute:
    return Permute(torch.cat([torch.arange(split, dim), torch.arange(split)]))


def _block_parts(dim, make_coupling, permutation, generator, use_actnorm, two_sided=True):
    split = dim // 2
    parts = [ActNorm(dim)] if use_actnorm else []
    parts += [make_coupling(split), _swap(dim, split), make_coupling(dim - split)] if two_sided else [make_coupling(split)]
    if isinstance(permutation, torch.Tensor):
        parts.append(Permute(permutation))
    elif permutation is not None:
        parts.append(permute(dim, permutation, generator=generator))
    return parts


def _block_permutations(permutation, num_blocks: int) -> list:
    """One entry per block: the kind (``"random"``, ``"reverse"``, None) or a given permutation tensor."""
    if permutation is None or isinstance(permutation, str):
        return [permutation] * num_blocks
    perms = [torch.as_tensor(p, dtype=torch.long) for p in permutation]
    if len(perms) != num_blocks:
        raise ValueError(f"permutation: expected {num_blocks} permutations (one per block), got {len(perms)}")
    return perms


def coupling_flow(
    dim: int,
    num_blocks: int = 8,
    hidden: int | Sequence[int] = (256, 256),
    permutation: str | Sequence[torch.Tensor] | None = "random",
    actnorm: bool = False,
    clamp: float | None = 3.0,
    seed: int | None = None,
    two_sided: bool = True,
) -> FlowSequence:
    """A stack of ``num_blocks`` two-sided affine coupling blocks on vectors of size ``dim``.

    ``permutation``: the permutation after each block, ``"random"`` (drawn with ``seed``),
    ``"reverse"``, None, or a sequence of ``num_blocks`` permutation tensors. ``two_sided=False``:
    one coupling per block (the first ``dim // 2`` features condition the rest), so the
    permutations must mix the features.

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
    for perm in _block_permutations(permutation, num_blocks):
        parts += _block_parts(dim, lambda s: affine_coupling(dim, hidden, split=s, clamp=clamp), perm, generator, actnorm, two_sided)
    return FlowSequence(parts)


def conditional_coupling_flow(
    dim: int,
    context_dim: int,
    num_blocks: int = 8,
    hidden: int | Sequence[int] = (256, 256),
    permutation: str | Sequence[torch.Tensor] | None = "random",
    actnorm: bool = False,
    clamp: float | None = 3.0,
    seed: int | None = None,
    two_sided: bool = True,
) -> ConditionalFlowSequence:
    """A stack of conditional two-sided coupling blocks; every conditioner sees the context.

    ``permutation`` and ``two_sided`` as in :func:`coupling_flow`.

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
    for perm in _block_permutations(permutation, num_blocks):
        parts += _block_parts(dim, lambda s: conditional_affine_coupling(dim, context_dim, hidden, split=s, clamp=clamp), perm, generator, actnorm, two_sided)
    flow = ConditionalFlowSequence(parts, cache_size=1)
    flow.context_shape = (context_dim,)
    return flow
