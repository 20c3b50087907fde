"""Flow distributions and learned priors, each usable in ``pyro.sample``."""

from .conditional_flow import ConditionalFlowDistribution
from .relaxed_conditional_flow import RelaxedConditional, RelaxedConditionalFlow

__all__ = ["ConditionalFlowDistribution", "RelaxedConditional", "RelaxedConditionalFlow"]
