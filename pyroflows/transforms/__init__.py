"""The primitives: invertible transforms on given tensors and their Pyro ``TransformModule`` /
``ConditionalTransformModule`` faces. The papers' architectures built from them (multi-scale Glow,
CRow, MotionFlow, DUAL-GLOW's relation and MotionFlow's latent dynamics) are in :mod:`pyroflows.flows`."""

from typing import Any

from .actnorm import ActNorm, ConditionalActNorm, ConditionedActNorm, actnorm, conditional_actnorm
from .autoregressive import (
    AffineAutoregressive,
    Autoregressive,
    ConditionalAffineAutoregressive,
    ConditionalElementwiseAutoregressive,
    ConditionalSplineAutoregressive,
    ElementwiseAutoregressive,
    SplineAutoregressive,
    affine_autoregressive,
    conditional_affine_autoregressive,
    conditional_iaf,
    conditional_maf,
    conditional_spline_autoregressive,
    iaf,
    maf,
    spline_autoregressive,
)
from .cnf import CNF, ConditionalCNF, ConditionedCNF, cnf, cnf_regularization, conditional_cnf
from .coupling import (
    AffineCoupling,
    ConditionalAffineCoupling,
    ConditionalElementwiseCoupling,
    ConditionedAffineCoupling,
    Coupling,
    ElementwiseCoupling,
    affine_coupling,
    conditional_affine_coupling,
)
from .elementwise import Affine, Elementwise, ElementwiseAffine, elementwise_affine
from .linear import (
    ConditionalInvertibleLinear,
    ConditionedInvertibleLinear,
    InvertibleConv1x1,
    InvertibleConv1x1x1,
    InvertibleLinear,
    conditional_invertible_linear,
    invertible_linear,
)
from .parameterized import ConditionalFlowModule, ConditionedFlow, ContextParameters, FlowModule
from .permute import Permute, permute
from .planar import ConditionalPlanar, ConditionedPlanar, Planar, conditional_planar, planar
from .radial import ConditionalRadial, ConditionedRadial, Radial, conditional_radial, radial
from .spline import (
    ConditionalSplineCoupling,
    Spline,
    SplineCoupling,
    bounded_bin_logits,
    conditional_spline_coupling,
    rational_quadratic,
    spline_coupling,
)
from .squeeze import Squeeze, Unsqueeze
from .stacks import conditional_coupling_flow, conditional_spline_coupling_flow, coupling_flow, spline_coupling_flow
from .sylvester import (
    ConditionalHouseholderSylvester,
    ConditionalOrthogonalSylvester,
    ConditionalTriangularSylvester,
    ConditionedHouseholderSylvester,
    ConditionedOrthogonalSylvester,
    ConditionedTriangularSylvester,
    HouseholderSylvester,
    OrthogonalSylvester,
    TriangularSylvester,
    conditional_sylvester,
    sylvester,
)

__all__ = [
    "Affine",
    "ConditionalFlowModule",
    "ConditionedFlow",
    "ContextParameters",
    "Coupling",
    "ElementwiseAffine",
    "FlowModule",
    "elementwise_affine",
    "ActNorm",
    "AffineCoupling",
    "CNF",
    "ConditionalActNorm",
    "ConditionalAffineCoupling",
    "ConditionalCNF",
    "ConditionalInvertibleLinear",
    "ConditionedActNorm",
    "ConditionedAffineCoupling",
    "ConditionedCNF",
    "ConditionedInvertibleLinear",
    "InvertibleConv1x1",
    "InvertibleConv1x1x1",
    "InvertibleLinear",
    "Permute",
    "actnorm",
    "affine_coupling",
    "cnf",
    "cnf_regularization",
    "conditional_actnorm",
    "conditional_affine_coupling",
    "conditional_cnf",
    "conditional_coupling_flow",
    "conditional_invertible_linear",
    "coupling_flow",
    "invertible_linear",
    "permute",
    "ConditionalPlanar",
    "ConditionedPlanar",
    "Planar",
    "conditional_planar",
    "planar",
    "ConditionalRadial",
    "ConditionedRadial",
    "Radial",
    "conditional_radial",
    "radial",
    "ConditionalHouseholderSylvester",
    "ConditionalOrthogonalSylvester",
    "ConditionalTriangularSylvester",
    "ConditionedHouseholderSylvester",
    "ConditionedOrthogonalSylvester",
    "ConditionedTriangularSylvester",
    "HouseholderSylvester",
    "OrthogonalSylvester",
    "TriangularSylvester",
    "conditional_sylvester",
    "sylvester",
    "Squeeze",
    "Unsqueeze",
    "Elementwise",
    "ElementwiseCoupling",
    "ConditionalElementwiseCoupling",
    "Spline",
    "SplineCoupling",
    "ConditionalSplineCoupling",
    "bounded_bin_logits",
    "rational_quadratic",
    "spline_coupling",
    "conditional_spline_coupling",
    "spline_coupling_flow",
    "conditional_spline_coupling_flow",
    "Autoregressive",
    "ElementwiseAutoregressive",
    "ConditionalElementwiseAutoregressive",
    "AffineAutoregressive",
    "ConditionalAffineAutoregressive",
    "SplineAutoregressive",
    "ConditionalSplineAutoregressive",
    "affine_autoregressive",
    "conditional_affine_autoregressive",
    "spline_autoregressive",
    "conditional_spline_autoregressive",
    "maf",
    "iaf",
    "conditional_maf",
    "conditional_iaf",
]


_MOVED_TO_FLOWS = (
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
)


def __getattr__(name: str) -> Any:  # noqa: ANN401 - the moved classes and factories, by name
    # the architectures lived here before 0.2; their names still resolve, with a warning
    if name in _MOVED_TO_FLOWS:
        import warnings

        from .. import flows

        warnings.warn(f"pyroflows.transforms.{name} moved to pyroflows.flows.{name}", DeprecationWarning, stacklevel=2)
        return getattr(flows, name)
    raise AttributeError(f"module 'pyroflows.transforms' has no attribute {name!r}")
