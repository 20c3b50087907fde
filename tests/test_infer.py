"""The INN baseline's losses (the fit loop is tested in test_fit.py)."""

import pytest
import torch

from pyroflows.distributions import RelaxedConditionalFlow
from pyroflows.infer import INNLoss, inverse_multiquadric_mmd


def test_mmd_is_small_for_same_distribution_and_large_for_different():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g)
    c = torch.randn(500, 2, generator=g) + torch.tensor([2.0, 0.0])
    same, diff = inverse_multiquadric_mmd(a, b), inverse_multiquadric_mmd(a, c)
    assert same < 0.02 and diff > 10 * same
    assert inverse_multiquadric_mmd(a, a).abs() < 1e-6
    with pytest.raises(ValueError, match="b: expected shape"):
        inverse_multiquadric_mmd(a, torch.randn(5, 3))


def test_inn_loss_terms_and_ramp():
    torch.manual_seed(0)
    model = RelaxedConditionalFlow(2, 4, num_blocks=1, hidden=(8,))
    loss = INNLoss(model, ramp_iters=100)
    assert loss.ramp(0) == pytest.approx(0.004) and loss.ramp(100) == 1.0 and loss.ramp(50) < loss.ramp(90)
    x, y = torch.randn(32, 2), torch.eye(4)[torch.randint(4, (32,))]
    total, terms = loss(x, y, 0)
    assert set(terms) == {"fit_y", "mmd_z", "mmd_x", "rec_x"}
    total.backward()
    assert all(p.grad is not None for p in model.parameters())
    fwd_only = INNLoss(model, w_x=0.0, w_rec=0.0)
    assert set(fwd_only(x, y, 0)[1]) == {"fit_y", "mmd_z"}
    with pytest.raises(ValueError, match="y: expected shape"):
        loss(x, torch.randn(32, 3))
