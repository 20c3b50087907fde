"""The papers' architectures, built from the primitives of :mod:`pyroflows.transforms`.

- :mod:`~pyroflows.flows.glow`: Glow steps and the multi-scale Glow for images and volumes
  (DUAL-GLOW's flows);
- :mod:`~pyroflows.flows.crow_blocks`: CRow's recurrent coupling blocks with temporal context gating;
- :mod:`~pyroflows.flows.motionflow_steps`: MotionFlow's context-driven steps and prediction map;
- :mod:`~pyroflows.flows.latent_relation`: DUAL-GLOW's relation prior between two Glows' latents;
- :mod:`~pyroflows.flows.latent_dynamics`: MotionFlow's autoregressive latent dynamics.
"""

from .crow_blocks import (
    ConditionalCRowTransform,
    ConditionedCRow,
    CRowArchitecture,
    CRowTransform,
    conditional_crow,
    crow,
)
from .glow import (
    ConditionalGlow,
    ConditionalGlowStep,
    ConditionedGlow,
    ConditionedGlowStep,
    Glow,
    GlowStep,
    conditional_glow,
    conditional_glow_step,
    glow,
    glow_step,
)
from .latent_dynamics import (
    ConditionalLatentDynamics,
    ConditionedLatentDynamics,
    conditional_latent_dynamics,
)
from .latent_relation import (
    ConditionedLatentRelation,
    LatentRelation,
    latent_relation,
    multiscale_layout,
)
from .motionflow_steps import (
    ConditionalMotionFlowStep,
    ConditionalMotionFlowTransform,
    ConditionedMotionFlow,
    conditional_motionflow,
    conditional_motionflow_step,
)

__all__ = [
    "CRowArchitecture",
    "CRowTransform",
    "ConditionalCRowTransform",
    "ConditionalGlow",
    "ConditionalGlowStep",
    "ConditionalLatentDynamics",
    "ConditionalMotionFlowStep",
    "ConditionalMotionFlowTransform",
    "ConditionedCRow",
    "ConditionedGlow",
    "ConditionedGlowStep",
    "ConditionedLatentDynamics",
    "ConditionedLatentRelation",
    "ConditionedMotionFlow",
    "Glow",
    "GlowStep",
    "LatentRelation",
    "conditional_crow",
    "conditional_glow",
    "conditional_glow_step",
    "conditional_latent_dynamics",
    "conditional_motionflow",
    "conditional_motionflow_step",
    "crow",
    "glow",
    "glow_step",
    "latent_relation",
    "multiscale_layout",
]
