"""Conditioner networks: ``net(x, context=None)`` on any batch shape, last layer zero-initialised."""

from .concatsquash import ConcatSquashLinear, ConcatSquashNet
from .conv import ContextCouplingNet, ConvNet
from .dense import MLP, ResidualMLP
from .encoder import GaussianEncoder
from .gated_residual import CausalGatedResNet, GatedResidualBlock
from .gradient_reversal import GradientReversal, gradient_reversal
from .gru import GRUConditioner
from .made import MADE, MaskedLinear
from .masked_conv import LocallyMaskedConv2d, MaskedARN, PositionalNorm, SpatioTemporalEncoder

__all__ = [
    "CausalGatedResNet",
    "ConcatSquashLinear",
    "ConcatSquashNet",
    "ContextCouplingNet",
    "ConvNet",
    "GatedResidualBlock",
    "GaussianEncoder",
    "GradientReversal",
    "gradient_reversal",
    "GRUConditioner",
    "LocallyMaskedConv2d",
    "MADE",
    "MaskedLinear",
    "MaskedARN",
    "MLP",
    "PositionalNorm",
    "ResidualMLP",
    "SpatioTemporalEncoder",
]
