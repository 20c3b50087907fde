"""Conditioner networks: ``net(x, context=None)`` on any batch shape, last layer zero-initialised."""

from .conv import ConvNet
from .dense import MLP, ResidualMLP

__all__ = ["ConvNet", "MLP", "ResidualMLP"]
