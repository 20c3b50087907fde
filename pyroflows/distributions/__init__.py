"""Flow distributions and learned priors, each usable in ``pyro.sample``."""

from .conditional_flow import ConditionalFlowDistribution
from .crow import CRow, CRowConditional
from .dual_glow import DualGlow, SideDiscriminator, dual_glow
from .dynamic_prior import DynamicPrior
from .motionflow import MotionFlow
from .relaxed_conditional_flow import RelaxedConditional, RelaxedConditionalFlow

__all__ = [
    "CRow",
    "CRowConditional",
    "ConditionalFlowDistribution",
    "DualGlow",
    "SideDiscriminator",
    "dual_glow",
    "DynamicPrior",
    "MotionFlow",
    "RelaxedConditional",
    "RelaxedConditionalFlow",
]
