"""Conditioner networks: ``net(x, context=None)`` on any batch shape, last layer zero-initialised."""

from .concatsquash import ConcatSquashLinear, ConcatSquashNet
from .conv import ConvNet
from .dense import MLP, ResidualMLP
from .encoder import GaussianEncoder
from .gru import GRUConditioner

__all__ = ["ConcatSquashLinear", "ConcatSquashNet", "ConvNet", "GaussianEncoder", "GRUConditioner", "MLP", "ResidualMLP"]
