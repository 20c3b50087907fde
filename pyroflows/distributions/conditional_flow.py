"""A conditional flow distribution whose samples carry the context's batch shape."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from pyro.distributions import TransformedDistribution
from pyro.distributions.conditional import ConditionalDistribution, ConditionalTransform, ConditionalTransformedDistribution
from torch.distributions import Distribution, Transform


class ConditionalFlowDistribution(ConditionalTransformedDistribution):
    r"""Pyro's ``ConditionalTransformedDistribution`` with the base distribution expanded to the
    context's batch shape, so ``.condition(c).sample(sample_shape)`` has shape
    ``sample_shape + context_batch_shape + event_shape``.

    :math:`p(x \mid c) = p_0(f_c^{-1}(x))\,|\det \partial f_c^{-1}(x) / \partial x|`, with ``transforms``
    mapping base samples to data (Pyro's convention).

    Args:
        base_dist: a distribution (or conditional distribution) over the base space.
        transforms: transforms and conditional transforms (``.condition(c)``) applied in order.
        context_event_dim: number of event dims of the context (default 1: a vector).

    Example::

        >>> import pyro.distributions as dist
        >>> from pyroflows.transforms import conditional_coupling_flow
        >>> flow = conditional_coupling_flow(2, context_dim=3, num_blocks=2, hidden=(16,))
        >>> d = ConditionalFlowDistribution(dist.Normal(torch.zeros(2), 1.0).to_event(1), [flow])
        >>> d.condition(torch.randn(5, 3)).sample((4,)).shape
        torch.Size([4, 5, 2])
    """

    def __init__(
        self,
        base_dist: Distribution | ConditionalDistribution,
        transforms: Iterable[Transform | ConditionalTransform],
        context_event_dim: int = 1,
    ) -> None:
        super().__init__(base_dist, transforms)
        self.context_event_dim = context_event_dim

    def condition(self, context: torch.Tensor) -> TransformedDistribution:
        base = self.base_dist.condition(context)
        context_batch = context.shape[: context.dim() - self.context_event_dim]
        batch = torch.broadcast_shapes(base.batch_shape, context_batch)
        if batch != base.batch_shape:
            base = base.expand(batch)
        return TransformedDistribution(base, [t.condition(context) for t in self.transforms])
