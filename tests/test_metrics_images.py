"""Image metrics of models.common.metrics (MAE, correlation, PSNR, SSIM in 2-D and 3-D) against cases
worked out by hand and an explicit loop over window positions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from models.common.metrics import correlation_coefficient, gaussian_window, mean_absolute_error, psnr, ssim


def test_mae_by_hand_and_batch_shape():
    a = torch.tensor([[1.0, 2.0, 4.0], [0.0, 0.0, 0.0]])
    b = torch.tensor([[1.0, 3.0, 2.0], [1.0, -1.0, 1.0]])
    assert torch.allclose(mean_absolute_error(a, b, event_dim=1), torch.tensor([1.0, 1.0]))
    x = torch.zeros(2, 3, 1, 2, 2, 2)
    y = x.clone()
    y[1, 2, 0, 1, 1, 1] = 8.0  # one voxel of eight off by 8
    got = mean_absolute_error(x, y, event_dim=4)
    assert got.shape == (2, 3) and got[1, 2] == 1.0 and got.sum() == 1.0


def test_correlation_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    y = torch.tensor([[2.0, 4.0, 7.0]], dtype=torch.float64)
    # centred: (-1, 0, 1) and (-7/3, -1/3, 8/3); sum of products 5; sums of squares 2 and 114/9
    expected = 5.0 / math.sqrt(2.0 * 114.0 / 9.0)
    assert abs(correlation_coefficient(x, y, event_dim=1).item() - expected) < 1e-12
    img = torch.rand(4, 1, 5, 5, dtype=torch.float64)
    assert torch.allclose(correlation_coefficient(img, 3 * img + 2), torch.ones(4, dtype=torch.float64))
    assert torch.allclose(correlation_coefficient(img, -img), -torch.ones(4, dtype=torch.float64))


def test_psnr_by_hand():
    a, b = torch.tensor([[0.0, 0.5]]), torch.tensor([[0.1, 0.5]])
    # MSE = 0.01 / 2 = 0.005: 10 log10(1 / 0.005) = 23.0103 dB; a range of 2 adds 20 log10(2) dB
    assert torch.allclose(psnr(a, b, event_dim=1), torch.tensor([10 * math.log10(200.0)]))
    assert torch.allclose(psnr(a, b, data_range=2.0, event_dim=1), torch.tensor([10 * math.log10(200.0) + 20 * math.log10(2.0)]))
    vol = torch.rand(3, 1, 4, 4, 4)
    assert psnr(vol, vol + 0.1, event_dim=4).allclose(torch.full((3,), 20.0))


def _ssim_loop(x: np.ndarray, y: np.ndarray, size: int, sigma: float, data_range: float = 1.0) -> float:
    """SSIM of two single-channel arrays by an explicit loop over the window positions."""
    u = np.arange(size) - (size - 1) / 2
    g = np.exp(-(u**2) / (2 * sigma**2))
    g /= g.sum()
    w = g
    for _ in range(x.ndim - 1):
        w = np.multiply.outer(w, g)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for start in itertools.product(*[range(s - size + 1) for s in x.shape]):
        sl = tuple(slice(i, i + size) for i in start)
        px, py = x[sl], y[sl]
        mx, my = (w * px).sum(), (w * py).sum()
        vx, vy = (w * px * px).sum() - mx**2, (w * py * py).sum() - my**2
        cxy = (w * px * py).sum() - mx * my
        values.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


@pytest.mark.parametrize("spatial", [(7, 6), (5, 4, 6)])
def test_ssim_against_an_explicit_window_loop(spatial):
    g = torch.Generator().manual_seed(0)
    x = torch.rand((2, 2) + spatial, generator=g, dtype=torch.float64)
    y = (0.7 * x + 0.3 * torch.rand(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    got = ssim(x, y, spatial_dims=len(spatial), window_size=3, sigma=0.8)
    assert got.shape == (2,)
    for i in range(2):
        expected = np.mean([_ssim_loop(x[i, c].numpy(), y[i, c].numpy(), 3, 0.8) for c in range(2)])
        assert abs(got[i].item() - expected) < 1e-12


def test_ssim_closed_forms():
    # identical images: 1; constant images a, b: only the luminance term (2ab + C1) / (a^2 + b^2 + C1)
    x = torch.rand(3, 1, 16, 16)
    assert torch.allclose(ssim(x, x), torch.ones(3))
    a, b = 0.2, 0.4
    c1 = 0.01**2
    vol_a, vol_b = torch.full((1, 1, 12, 12, 12), a, dtype=torch.float64), torch.full((1, 1, 12, 12, 12), b, dtype=torch.float64)
    assert abs(ssim(vol_a, vol_b, spatial_dims=3).item() - (2 * a * b + c1) / (a * a + b * b + c1)) < 1e-12
    # a zero-mean pattern against its negative: luminance 1, structure (C2 - 2 s^2) / (2 s^2 + C2) < 0
    checker = (torch.arange(11).reshape(-1, 1) + torch.arange(11)) % 2 * 2.0 - 1.0
    s = ssim((0.5 + 0.1 * checker).reshape(1, 1, 11, 11).double(), (0.5 - 0.1 * checker).reshape(1, 1, 11, 11).double(), window_size=11)
    assert s.item() < -0.9
    # the window sums to one
    assert abs(gaussian_window(11, 1.5, 3).sum().item() - 1.0) < 1e-6


def test_image_metric_errors():
    with pytest.raises(ValueError, match=r"target: expected the prediction's shape"):
        psnr(torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 5))
    with pytest.raises(ValueError, match=r"window_size: expected at most the spatial sizes \(8, 8\)"):
        ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"spatial_dims"):
        ssim(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16), spatial_dims=1)
    with pytest.raises(TypeError, match=r"floating dtype"):
        mean_absolute_error(torch.ones(2, 3, dtype=torch.int64), torch.ones(2, 3, dtype=torch.int64), event_dim=1)
