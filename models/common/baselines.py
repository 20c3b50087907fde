r"""Reference forecasters for sequence prediction: seasonal-naive (and its period-1 case, the
zero-velocity / last-frame forecast) and a Gaussian vector autoregression fitted by least squares.

**Seasonal-naive.** With context :math:`y_{1:C}` and period :math:`m`, the forecast of step
:math:`h = 1, \dots, H` repeats the last observed season,
:math:`\hat y_{C+h} = y_{C - m + 1 + ((h - 1) \bmod m)}`; :math:`m = 1` repeats the last frame (the
zero-velocity baseline of motion prediction). It is a point forecast: its CRPS is its absolute error.

**Gaussian VAR(p).** :math:`v_t = c + \sum_{l=1}^p A_l v_{t-l} + \varepsilon_t`,
:math:`\varepsilon_t \sim \mathcal N(0, \Sigma)`, where :math:`v_t = y_t` or, with ``difference=True``,
:math:`v_t = y_t - y_{t-1}` (a VAR in differences, for series with unit roots such as prices).
:meth:`GaussianVAR.fit` solves the least-squares problem
:math:`\min_B \lVert V - X B\rVert_F^2` with rows :math:`X_t = (1, v_{t-1}^\top, \dots, v_{t-p}^\top)`
(``torch.linalg.lstsq``, plus an optional ridge term), and sets :math:`\Sigma` to the residual
covariance with :math:`N - (1 + pD)` degrees of freedom. :meth:`GaussianVAR.sample` simulates paths
forward from each context, all windows and draws at once; :meth:`GaussianVAR.mean` runs the same
recursion without noise.

Example::

    >>> y = torch.arange(12.0).reshape(1, 6, 2)          # one window, 6 frames, 2 series
    >>> seasonal_naive(y, horizon=3, period=2)[0, :, 0]  # repeats frames 5, 6, 5
    tensor([ 8., 10.,  8.])

Reference: H. Lütkepohl, "New introduction to multiple time series analysis", Springer 2005, ch. 3
(least-squares estimation of VAR models); MotionFlow (Zand et al., IEEE TPAMI 2023) Sec. 5.3-5.4 uses
such baselines' tasks.
"""

from __future__ import annotations

import torch

__all__ = ["GaussianVAR", "seasonal_naive"]


def _check_context(context: torch.Tensor, name: str = "context") -> None:
    if not isinstance(context, torch.Tensor) or context.dim() < 2:
        shape = tuple(context.shape) if isinstance(context, torch.Tensor) else type(context).__name__
        raise ValueError(f"{name}: expected a tensor of shape (..., C, D) (frames, series), got {shape}")


def _check_positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return value


def seasonal_naive(context: torch.Tensor, horizon: int, period: int = 1) -> torch.Tensor:
    r"""Repeat the last ``period`` frames of ``context`` over ``horizon`` steps.

    Args:
        context: observed frames, shape ``batch + (C, ...)``: the frame axis is ``-2`` for vector
            frames ``(C, D)``; pass any frame shape by flattening it into ``D``.
        horizon: number of future frames :math:`H`.
        period: season length :math:`m \le C` (1: the last frame, the zero-velocity forecast).

    Returns:
        shape ``batch + (H, D)``.
    """
    _check_context(context)
    _check_positive("horizon", horizon)
    _check_positive("period", period)
    frames = context.shape[-2]
    if period > frames:
        raise ValueError(f"period: expected at most the {frames} context frames, got {period}")
    index = frames - period + torch.arange(horizon, device=context.device) % period
    return context.index_select(-2, index)


class GaussianVAR:
    r"""Gaussian VAR(p) fitted by least squares (see the module docstring).

    Args:
        lags: the order :math:`p`.
        difference: model the first differences :math:`y_t - y_{t-1}` and integrate the forecast.
        ridge: :math:`\lambda \ge 0` in :math:`\min_B \lVert V - XB\rVert^2 + \lambda\lVert B_{1:}\rVert^2`
            (the intercept is not shrunk); 0 is ordinary least squares.

    Attributes (after :meth:`fit`): ``intercept`` :math:`c` ``(D,)``, ``coefficients`` :math:`A`
    ``(p, D, D)`` (``coefficients[l - 1]`` multiplies :math:`v_{t-l}`), ``noise_cov`` :math:`\Sigma`
    ``(D, D)``.

    Example::

        >>> var = GaussianVAR(lags=1).fit(torch.randn(500, 3))
        >>> var.coefficients.shape, var.sample(torch.randn(4, 10, 3), horizon=5, num_samples=7).shape
        (torch.Size([1, 3, 3]), torch.Size([7, 4, 5, 3]))
    """

    def __init__(self, lags: int, difference: bool = False, ridge: float = 0.0):
        self.lags = _check_positive("lags", lags)
        self.difference = bool(difference)
        if ridge < 0:
            raise ValueError(f"ridge: expected a value >= 0, got {ridge}")
        self.ridge = float(ridge)
        self.intercept = self.coefficients = self.noise_cov = None

    def _design(self, v: torch.Tensor) -> torch.Tensor:
        """Rows :math:`(1, v_{t-1}, \\dots, v_{t-p})` for every t with a full lag window, shape ``(N, 1 + pD)``."""
        n = v.shape[-2] - self.lags
        lagged = [v[..., self.lags - lag : self.lags - lag + n, :] for lag in range(1, self.lags + 1)]
        ones = torch.ones(v.shape[:-2] + (n, 1), dtype=v.dtype, device=v.device)
        return torch.cat([ones] + lagged, -1)

    def fit(self, series: torch.Tensor) -> GaussianVAR:
        """Least-squares fit on ``series`` of shape ``(T, D)`` or ``(B, T, D)`` (several stretches of one process)."""
        _check_context(series, "series")
        if series.dim() == 2:
            series = series.unsqueeze(0)
        if series.dim() != 3 or not series.is_floating_point():
            raise ValueError(f"series: expected a floating tensor of shape (T, D) or (B, T, D), got {series.dtype} {tuple(series.shape)}")
        v = series.diff(dim=-2) if self.difference else series
        dim = v.shape[-1]
        x = self._design(v).reshape(-1, 1 + self.lags * dim)
        target = v[:, self.lags :, :].reshape(-1, dim)
        free = x.shape[0] - x.shape[1]
        if free < 1:
            raise ValueError(
                f"series: expected more than {x.shape[1]} usable frames for a VAR({self.lags}) of {dim} series, got {x.shape[0]}"
            )
        if self.ridge > 0:
            penalty = torch.eye(x.shape[1], dtype=x.dtype, device=x.device) * self.ridge
            penalty[0, 0] = 0
            solution = torch.linalg.solve(x.T @ x + penalty, x.T @ target)
        else:
            solution = torch.linalg.lstsq(x, target).solution
        residual = target - x @ solution
        self.intercept = solution[0]
        self.coefficients = solution[1:].reshape(self.lags, dim, dim).transpose(-1, -2)
        self.noise_cov = residual.T @ residual / free
        return self

    def _check_ready(self, context: torch.Tensor) -> None:
        if self.coefficients is None:
            raise RuntimeError("GaussianVAR: call fit(series) before forecasting")
        _check_context(context)
        need = self.lags + int(self.difference)
        if context.shape[-2] < need or context.shape[-1] != self.intercept.shape[0]:
            raise ValueError(f"context: expected shape (..., C, {self.intercept.shape[0]}) with C >= {need}, got {tuple(context.shape)}")

    def _rollout(self, context: torch.Tensor, horizon: int, noise: torch.Tensor | None) -> torch.Tensor:
        c, a = self.intercept.to(context), self.coefficients.to(context)
        v = context.diff(dim=-2) if self.difference else context
        history = v[..., v.shape[-2] - self.lags :, :]  # oldest first
        if noise is not None:
            history = history.expand(noise.shape[:1] + history.shape)
        level = context[..., -1, :]
        out = []
        for h in range(horizon):  # a recursion over the horizon, batched over windows and draws
            nxt = c + torch.einsum("lij,...lj->...i", a, history.flip(-2))
            if noise is not None:
                nxt = nxt + noise[..., h, :]
            history = torch.cat([history[..., 1:, :], nxt.unsqueeze(-2)], -2)
            level = level + nxt if self.difference else nxt
            out.append(level)
        return torch.stack(out, -2)

    def mean(self, context: torch.Tensor, horizon: int) -> torch.Tensor:
        """The forecast mean (the noise-free recursion), shape ``context.shape[:-2] + (horizon, D)``."""
        self._check_ready(context)
        _check_positive("horizon", horizon)
        return self._rollout(context, horizon, None)

    def sample(self, context: torch.Tensor, horizon: int, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Simulated paths, shape ``(num_samples,) + context.shape[:-2] + (horizon, D)``."""
        self._check_ready(context)
        _check_positive("horizon", horizon)
        _check_positive("num_samples", num_samples)
        dim = context.shape[-1]
        chol = torch.linalg.cholesky(self.noise_cov.to(context) + 1e-12 * torch.eye(dim, dtype=context.dtype, device=context.device))
        shape = (num_samples,) + context.shape[:-2] + (horizon, dim)
        eps = torch.randn(shape, generator=generator, dtype=context.dtype, device=context.device)
        return self._rollout(context, horizon, eps @ chol.T)
