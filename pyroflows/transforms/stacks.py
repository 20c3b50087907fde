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

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import torch
import torch.nn as nn
from pyro.distributions.conditional import ConditionalComposeTransformModule
from pyro.distributions.transforms import ComposeTransformModule

from ..validation import check_size
from .actnorm import ActNorm
from .base import OnePassCompose, compiling, tensor_version
from .coupling import affine_coupling, conditional_affine_coupling
from .permute import Permute, block_permutations
from .spline import conditional_spline_coupling, spline_coupling


class FlowSequence(OnePassCompose, ComposeTransformModule):
    """A ``ComposeTransformModule`` that runs its parts in one loop per call and keeps the summed
    log-det (see :class:`~pyroflows.transforms.base.OnePassCompose`). Same parameters, state_dict
    keys, values and log-dets as ``ComposeTransformModule(parts)``."""

    def with_cache(self, cache_size: int = 1) -> FlowSequence:
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
        if compiling():
            return FlowSequence([t.condition(context) for t in self.transforms], cache_size=self._cache_size)
        last = self._last_condition
        if last is not None and last[0] is context and last[1] == tensor_version(context):
            return last[2]
        flow = FlowSequence([t.condition(context) for t in self.transforms], cache_size=self._cache_size)
        if isinstance(context, torch.Tensor):
            self._last_condition = (context, tensor_version(context), flow)
        return flow

    def forward(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(f"{type(self).__name__} is a conditional transform: call .condition(context) first, then the transform it returns")

    def __getstate__(self) -> dict[str, Any]:  # pickling / deepcopy: leave the conditioned stack behind
        state = dict(super().__getstate__())
        state.pop("_last_condition", None)
        return state


def check_split_dim(dim: int, conditional: bool = False) -> int:
    """``dim`` as an int of at least 2: a coupling maps some features given the others. The error for
    one feature (what ``AutoNormalizingFlow`` passes for a model with a single scalar latent) names a
    stack that works on one feature."""
    dim = check_size("dim", dim)
    if dim < 2:
        example = (
            "ConditionalFlowSequence([conditional_planar(1, context_dim) for _ in range(4)])"
            if conditional
            else "FlowSequence([planar(1) for _ in range(4)])"
        )
        raise ValueError(
            f"dim: a coupling needs at least 2 features (it maps some given the others), got {dim}; for a single "
            f"scalar, such as the one latent an autoguide sees in a model with one scalar site, stack maps that "
            f"work on one feature instead, e.g. {example} (pyroflows.transforms.stacks, pyroflows.transforms)"
        )
    return dim


def two_sided_blocks(
    dim: int,
    num_blocks: int,
    make_coupling: Callable[[int], nn.Module],
    permutations: Iterator,
    actnorm: bool = False,
    two_sided: bool = True,
) -> list:
    """The parts of a stack of coupling blocks: per block an optional ActNorm, a coupling of the last
    ``dim - dim // 2`` features given the first, then (two-sided) a swap of the halves and a coupling of
    the others given those, and the block's permutation (a tensor, or None for none).
    ``make_coupling(split)`` builds a coupling that passes its first ``split`` features through."""
    split = dim // 2
    swap = torch.cat([torch.arange(split, dim), torch.arange(split)])
    parts = []
    for _ in range(num_blocks):
        parts += [ActNorm(dim)] if actnorm else []
        parts += [make_coupling(split), Permute(swap), make_coupling(dim - split)] if two_sided else [make_coupling(split)]
        perm = next(permutations)  # drawn after the block's couplings
        if perm is not None:
            parts.append(Permute(perm))
    return parts


def _stack(
    dim: int,
    num_blocks: int,
    make_coupling: Callable[[int], nn.Module],
    permutation: str | Sequence[torch.Tensor] | None,
    actnorm: bool,
    seed: int | None,
    two_sided: bool,
) -> list:
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    num_blocks = check_size("num_blocks", num_blocks)
    perms = block_permutations(dim, permutation, num_blocks, generator)
    return two_sided_blocks(dim, num_blocks, make_coupling, perms, actnorm, two_sided)


def conditional_sequence(parts: list, context_dim: int) -> ConditionalFlowSequence:
    """The :class:`ConditionalFlowSequence` of ``parts``, whose context has event shape ``(context_dim,)``."""
    flow = ConditionalFlowSequence(parts, cache_size=1)
    flow.context_shape = (context_dim,)
    return flow


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
    dim = check_split_dim(dim)
    make = lambda s: affine_coupling(dim, hidden, split=s, clamp=clamp)  # noqa: E731
    return FlowSequence(_stack(dim, num_blocks, make, permutation, actnorm, seed, two_sided))


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
    dim = check_split_dim(dim, conditional=True)
    make = lambda s: conditional_affine_coupling(dim, context_dim, hidden, split=s, clamp=clamp)  # noqa: E731
    return conditional_sequence(_stack(dim, num_blocks, make, permutation, actnorm, seed, two_sided), context_dim)


def spline_coupling_flow(
    dim: int,
    num_blocks: int = 4,
    hidden: int | Sequence[int] = (256, 256),
    count_bins: int = 8,
    bound: float = 3.0,
    permutation: str | Sequence[torch.Tensor] | None = "random",
    actnorm: bool = False,
    seed: int | None = None,
    two_sided: bool = False,
    transform_passive: bool = False,
) -> FlowSequence:
    r"""A neural spline flow of coupling layers (Durkan et al. 2019's RQ-NSF (C)): ``num_blocks``
    blocks of a :func:`~pyroflows.transforms.spline.spline_coupling` (two with a swap between when
    ``two_sided``) and a permutation; ``permutation``, ``actnorm`` and ``seed`` as in :func:`coupling_flow`.

    ``transform_passive=True`` gives each coupling's passive features a learned, input-independent
    spline as well, :math:`y_a = \mathrm{RQS}_{\phi}(x_a)`,
    :math:`y_b = \mathrm{RQS}_{\theta(x_a)}(x_b)` (:class:`~pyroflows.transforms.spline.SplineCoupling`),
    so that every block maps every feature at the cost of ``3 * count_bins - 1`` parameters per
    passive feature: the layout of zuko's coupling ``NSF`` (a two-pass MADE) at the same size.

    Example::

        >>> import pyro.distributions as dist
        >>> flow = spline_coupling_flow(4, num_blocks=2, hidden=(32, 32))
        >>> d = dist.TransformedDistribution(dist.Normal(torch.zeros(4), 1.0).to_event(1), [flow])
        >>> d.log_prob(torch.randn(10, 4)).shape
        torch.Size([10])
    """
    dim = check_split_dim(dim)
    make = lambda s: spline_coupling(dim, hidden, split=s, count_bins=count_bins, bound=bound, transform_passive=transform_passive)  # noqa: E731
    return FlowSequence(_stack(dim, num_blocks, make, permutation, actnorm, seed, two_sided))


def conditional_spline_coupling_flow(
    dim: int,
    context_dim: int,
    num_blocks: int = 4,
    hidden: int | Sequence[int] = (256, 256),
    count_bins: int = 8,
    bound: float = 3.0,
    permutation: str | Sequence[torch.Tensor] | None = "random",
    actnorm: bool = False,
    seed: int | None = None,
    two_sided: bool = False,
    transform_passive: bool = False,
) -> ConditionalFlowSequence:
    """:func:`spline_coupling_flow` whose conditioners see a context of shape ``batch' + (context_dim,)``;
    with ``transform_passive`` the passive features' splines depend on the context only
    (:class:`~pyroflows.transforms.spline.ConditionalSplineCoupling`)."""
    dim = check_split_dim(dim, conditional=True)
    make = lambda s: conditional_spline_coupling(  # noqa: E731
        dim, context_dim, hidden, split=s, count_bins=count_bins, bound=bound, transform_passive=transform_passive
    )
    return conditional_sequence(_stack(dim, num_blocks, make, permutation, actnorm, seed, two_sided), context_dim)
