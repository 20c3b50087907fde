"""Conditioner networks: shapes, context handling, zero initialisation, clear errors."""

import pytest
import torch

from pyroflows.nn import MLP, ConvNet, ResidualMLP


@pytest.mark.parametrize("net", [MLP(3, 4, (8,), context_features=2), ResidualMLP(3, 4, 8, 2, context_features=2)])
def test_dense_broadcasts_context_and_starts_at_zero(net):
    out = net(torch.randn(5, 6, 3), torch.randn(6, 2))
    assert out.shape == (5, 6, 4) and torch.all(out == 0)
    with pytest.raises(ValueError, match=r"context: expected shape \(\.\.\., 2\), got \(6, 3\)"):
        net(torch.randn(6, 3), torch.randn(6, 3))
    with pytest.raises(ValueError, match="context: expected a tensor"):
        net(torch.randn(6, 3))


def test_dense_without_context_rejects_one():
    with pytest.raises(ValueError, match="takes no context"):
        MLP(3, 4)(torch.randn(2, 3), torch.randn(2, 1))


def test_convnet_vector_and_map_context():
    net = ConvNet(2, 4, 8, context_channels=3)
    assert net(torch.randn(7, 2, 2, 5, 5), torch.randn(2, 3)).shape == (7, 2, 4, 5, 5)
    net_map = ConvNet(2, 4, 8, context_channels=3, context_is_map=True)
    assert net_map(torch.randn(2, 2, 5, 5), torch.randn(2, 3, 5, 5)).shape == (2, 4, 5, 5)
    with pytest.raises(ValueError, match=r"context: expected shape \(\.\.\., 3, 5, 5\)"):
        net_map(torch.randn(2, 2, 5, 5), torch.randn(2, 3, 4, 4))
    vol = ConvNet(1, 2, 4, spatial_dims=3)
    assert vol(torch.randn(3, 1, 4, 4, 4)).shape == (3, 2, 4, 4, 4)
