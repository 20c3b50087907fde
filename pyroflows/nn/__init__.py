"""Conditioner networks: ``net(x, context=None)`` on any batch shape, last layer zero-initialised."""

from .concatsquash import ConcatSquashLinear, ConcatSquashNet
from .conv import ConvNet
from .dense import MLP, ResidualMLP
from .encoder import GaussianEncoder
from .gradient_reversal import GradientReversal, gradient_reversal
from .gru import GRUConditioner

__all__ = ["ConcatSquashLinear", "ConcatSquashNet", "ConvNet", "GaussianEncoder", "GradientReversal", "gradient_reversal", "GRUConditioner", "MLP", "ResidualMLP"]
