"""Invertible transforms, each a Pyro ``TransformModule`` or ``ConditionalTransformModule``."""

from .actnorm import ActNorm, ConditionalActNorm, ConditionedActNorm, actnorm, conditional_actnorm
from .coupling import (
    AffineCoupling,
    ConditionalAffineCoupling,
    ConditionedAffineCoupling,
    affine_coupling,
    conditional_affine_coupling,
)
from .cnf import CNF, ConditionalCNF, ConditionedCNF, cnf, cnf_regularization, conditional_cnf
from .flows import coupling_flow, conditional_coupling_flow
from .linear import (
    ConditionalInvertibleLinear,
    ConditionedInvertibleLinear,
    InvertibleConv1x1,
    InvertibleConv1x1x1,
    InvertibleLinear,
    conditional_invertible_linear,
    invertible_linear,
)
from .permute import Permute, permute
from .planar import ConditionalPlanar, ConditionedPlanar, Planar, conditional_planar, planar
from .radial import ConditionalRadial, ConditionedRadial, Radial, conditional_radial, radial
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
]
