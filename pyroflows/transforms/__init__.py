"""Invertible transforms, each a Pyro ``TransformModule`` or ``ConditionalTransformModule``."""

from .actnorm import ActNorm, ConditionalActNorm, ConditionedActNorm, actnorm, conditional_actnorm
from .coupling import (
    AffineCoupling,
    ConditionalAffineCoupling,
    ConditionedAffineCoupling,
    affine_coupling,
    conditional_affine_coupling,
)
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

__all__ = [
    "ActNorm",
    "AffineCoupling",
    "ConditionalActNorm",
    "ConditionalAffineCoupling",
    "ConditionalInvertibleLinear",
    "ConditionedActNorm",
    "ConditionedAffineCoupling",
    "ConditionedInvertibleLinear",
    "InvertibleConv1x1",
    "InvertibleConv1x1x1",
    "InvertibleLinear",
    "Permute",
    "actnorm",
    "affine_coupling",
    "conditional_actnorm",
    "conditional_affine_coupling",
    "conditional_coupling_flow",
    "conditional_invertible_linear",
    "coupling_flow",
    "invertible_linear",
    "permute",
]
