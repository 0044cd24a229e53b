"""Hourly forecasts 1–24 h ahead: a direct multi-horizon ridge model and two baselines.

The model is *direct* (one linear model per horizon, all fitted in one SVD; Taieb et al. 2012,
"A review and comparison of strategies for multi-step ahead time series forecasting"), so
errors do not compound as in recursive one-step models. Features at an origin hour *t* (the
last observed hour) are

- the last ``lags`` hourly values (which include the same hour of the previous days),
- the means of the last ``days`` whole 24-hour windows,
- sine/cosine harmonics (1 and 2 cycles per day) of the origin's hour of day,

all lags and means taken *relative to the mean of the last 24 hours*; the targets are the
future values relative to that same mean. Working with anomalies makes the model invariant to
the level, so it extrapolates across seasons (a December fit still works in March) and the
ridge shrinkage pulls towards "tomorrow looks like today", not towards the training mean.
The ridge penalty of each horizon is chosen by generalised cross-validation (Golub, Heath &
Wahba 1979, Technometrics 21:215) over a fixed grid, on standardised features.

Baselines (Hyndman & Athanasopoulos, *Forecasting: Principles and Practice*, 3rd ed., §5.2):
persistence repeats the last value; seasonal-naive repeats the value 24 h before each target.

Series are put on a regular hourly grid first. For the *features* only, gaps of up to
``max_gap`` hours are filled by linear interpolation; targets are never filled. See
:mod:`.backtest` for the rolling-origin evaluation and the CSV loader.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from citytwin.errors import ValidationError

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
#: ridge penalties tried by generalised cross-validation (standardised features)
PENALTIES: FloatArray = np.logspace(-2, 4, 13)
DAY = 24


@dataclass(frozen=True)
class Forecaster:
    """A fitted direct multi-horizon ridge model; ``predict(history)`` gives the next hours.

    ``coefficients`` is ``(features, horizon)``; ``penalties`` the GCV-chosen ridge penalty of
    each horizon; ``samples`` the number of training origins.
    """

    horizon: int
    lags: int
    days: int
    max_gap: int
    feature_mean: FloatArray
    feature_scale: FloatArray
    target_mean: FloatArray
    coefficients: FloatArray
    penalties: FloatArray
    samples: int

    @property
    def history_hours(self) -> int:
        """Hours of history one forecast needs."""
        return max(self.lags, DAY * self.days)

    def predict(self, history: pd.Series[float]) -> FloatArray:
        """Forecast the ``horizon`` hours after the last timestamp of ``history``.

        Raises
        ------
        ValidationError
            The history is shorter than :attr:`history_hours` or has a gap of more than
            ``max_gap`` hours in that window (or at its end).
        """
        index, values = hourly_grid(history, name="forecast history")
        filled = fill_gaps(values, self.max_gap)
        origin = np.array([len(values) - 1])
        if len(values) < self.history_hours:
            raise ValidationError(
                f"forecast history {history.name!r}: {len(values)} hours up to {index[-1]}; "
                f"expected at least {self.history_hours}"
            )
        return np.asarray(self.predict_at(filled, index.hour.to_numpy(), origin)[0], np.float64)

    def predict_at(
        self,
        filled: FloatArray,
        hours: NDArray[np.int64] | NDArray[np.int32],
        origins: NDArray[np.intp],
    ) -> FloatArray:
        """Forecasts ``(len(origins), horizon)`` from a gap-filled hourly array (internal use)."""
        features, level = build_features(filled, hours, origins, lags=self.lags, days=self.days)
        if not np.all(np.isfinite(features)):
            raise ValidationError(
                f"forecast history: a gap of more than {self.max_gap} hours within the last "
                f"{self.history_hours} hours; expected (nearly) complete recent history"
            )
        z = (features - self.feature_mean) / self.feature_scale
        return level[:, None] + self.target_mean + z @ self.coefficients


def hourly_grid(
    series: pd.Series[float], *, name: str = "series"
) -> tuple[pd.DatetimeIndex, FloatArray]:
    """The series on a regular hourly grid from its first to last timestamp, NaN where missing.

    Raises :class:`~citytwin.errors.ValidationError` for a non-datetime index, timestamps off
    the hour or duplicates (with the first position of each problem).
    """
    index = series.index
    if not isinstance(index, pd.DatetimeIndex):
        raise ValidationError(
            f"{name} {series.name!r}: expected a DatetimeIndex, got {type(index).__name__}"
        )
    problems = []
    off = np.flatnonzero(np.asarray(index != index.floor("h")))
    if off.size:
        problems.append(
            f"{off.size} timestamp(s) not on the hour, first at position {off[0]} ({index[off[0]]})"
        )
    dup = np.flatnonzero(np.asarray(index.duplicated()))
    if dup.size:
        problems.append(
            f"{dup.size} duplicate timestamp(s), first at position {dup[0]} ({index[dup[0]]})"
        )
    if len(index) == 0:
        problems.append("no values")
    if problems:
        raise ValidationError(
            f"{name} {series.name!r}: " + "; ".join(problems) + "; expected one value per hour"
        )
    ordered = series.sort_index()
    grid = pd.date_range(ordered.index[0], ordered.index[-1], freq="h")
    values = pd.to_numeric(ordered, errors="coerce").reindex(grid).to_numpy(dtype=np.float64)
    return grid, values


def fill_gaps(values: FloatArray, max_gap: int) -> FloatArray:
    """Linear interpolation across interior gaps of at most ``max_gap`` hours; others stay NaN."""
    series = pd.Series(values)
    missing = series.isna()
    run = missing.groupby((~missing).cumsum()).transform("sum")
    filled = series.interpolate(limit_area="inside")
    return np.where(missing & (run > max_gap), np.nan, filled.to_numpy(dtype=np.float64))


def build_features(
    filled: FloatArray,
    hours: NDArray[np.int64] | NDArray[np.int32],
    origins: NDArray[np.intp],
    *,
    lags: int,
    days: int,
) -> tuple[FloatArray, FloatArray]:
    """Feature rows for each origin and the level (last-24 h mean) they are relative to."""
    lagged = filled[origins[:, None] - np.arange(lags)]
    window_means = np.stack(
        [filled[origins[:, None] - DAY * d - np.arange(DAY)].mean(axis=1) for d in range(days)],
        axis=1,
    )
    level = window_means[:, 0]
    angle = 2.0 * np.pi * hours[origins].astype(np.float64) / DAY
    harmonics = np.stack([np.sin(angle), np.cos(angle), np.sin(2 * angle), np.cos(2 * angle)], 1)
    features = np.hstack([lagged - level[:, None], window_means[:, 1:] - level[:, None], harmonics])
    return features, level


def fit_forecaster(
    series: pd.Series[float],
    *,
    horizon: int = 24,
    lags: int = 48,
    days: int = 7,
    max_gap: int = 6,
) -> Forecaster:
    """Fit the direct ridge forecaster on every usable hour of an hourly series.

    Parameters
    ----------
    series
        Hourly values indexed by timestamps (hour starts); missing hours are allowed.
    horizon
        Hours ahead, 1–24 (seasonal-naive and the daily features assume h ≤ 24).
    lags, days
        Hourly lags and 24-hour window means used as features.
    max_gap
        Longest gap (hours) interpolated for the features.

    Examples
    --------
    >>> t = pd.date_range("2024-01-01", periods=24 * 30, freq="h")
    >>> hour = np.arange(t.size)
    >>> wave = pd.Series(10 + 5 * np.sin(2 * np.pi * hour / 24), index=t)
    >>> model = fit_forecaster(wave, horizon=3)
    >>> np.round(model.predict(wave), 3).tolist()  # hours 0, 1, 2 of the next day
    [10.0, 11.294, 12.5]
    """
    _check_options(horizon=horizon, lags=lags, days=days, max_gap=max_gap)
    index, values = hourly_grid(series)
    return fit_arrays(
        values, index.hour.to_numpy(), horizon=horizon, lags=lags, days=days, max_gap=max_gap
    )


def fit_arrays(
    values: FloatArray,
    hours: NDArray[np.int64] | NDArray[np.int32],
    *,
    horizon: int,
    lags: int,
    days: int,
    max_gap: int,
) -> Forecaster:
    """Fit on an hourly grid array (NaN = missing) and its hours of day (:func:`fit_forecaster`)."""
    filled = fill_gaps(values, max_gap)
    first = max(lags, DAY * days) - 1
    origins = np.arange(first, len(values) - horizon, dtype=np.intp)
    if origins.size == 0:
        raise ValidationError(
            f"forecast training series: {len(values)} hours; expected more than "
            f"{first + horizon + 1} (history of {first + 1} h plus the horizon {horizon} h)"
        )
    features, level = build_features(filled, hours, origins, lags=lags, days=days)
    targets = values[origins[:, None] + np.arange(1, horizon + 1)] - level[:, None]
    usable = np.all(np.isfinite(features), axis=1) & np.all(np.isfinite(targets), axis=1)
    if usable.sum() < 2 * features.shape[1]:
        raise ValidationError(
            f"forecast training series: {int(usable.sum())} usable origins (complete features and "
            f"targets); expected at least {2 * features.shape[1]}"
        )
    mean, scale, target_mean, coefficients, penalties = _ridge_gcv(
        features[usable], targets[usable]
    )
    logger.debug("fitted %d horizons on %d origins", horizon, int(usable.sum()))
    return Forecaster(
        horizon,
        lags,
        days,
        max_gap,
        mean,
        scale,
        target_mean,
        coefficients,
        penalties,
        int(usable.sum()),
    )


def _ridge_gcv(
    features: FloatArray, targets: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Ridge per target column with the penalty minimising GCV (vectorised over penalties)."""
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    target_mean = targets.mean(axis=0)
    # the eigen-decomposition of the small Gram matrix gives the SVD's singular values and right
    # vectors at a fraction of the cost of a full SVD of the (origins × features) matrix
    standardised = (features - mean) / scale
    centred = targets - target_mean
    eigenvalues, vectors = np.linalg.eigh(standardised.T @ standardised)
    keep = eigenvalues > 1e-9 * max(float(eigenvalues.max()), 1e-300)
    s2, vectors = eigenvalues[keep], vectors[:, keep]
    rotated = vectors.T @ (standardised.T @ centred)  # = diag(s) · Uᵀ·y
    projected = rotated / np.sqrt(s2)[:, None]  # = Uᵀ·y
    shrink = s2 / (s2 + PENALTIES[:, None])  # (penalties, components)
    rss = np.sum(centred**2, axis=0) - (2 * shrink - shrink**2) @ projected**2
    n = features.shape[0]
    gcv = n * rss / (n - shrink.sum(axis=1))[:, None] ** 2
    best = np.argmin(gcv, axis=0)
    coefficients = vectors @ (rotated / (s2[:, None] + PENALTIES[best][None, :]))
    return mean, scale, target_mean, coefficients, PENALTIES[best]


def forecast(
    series: pd.Series[float], *, horizon: int = 24, lags: int = 48, days: int = 7
) -> pd.Series[float]:
    """Fit on the whole series and forecast the ``horizon`` hours after its last timestamp.

    Examples
    --------
    >>> t = pd.date_range("2024-01-01", periods=24 * 30, freq="h", tz="Asia/Seoul")
    >>> wave = pd.Series(np.cos(2 * np.pi * np.arange(t.size) / 24), index=t, name="wave")
    >>> ahead = forecast(wave, horizon=2)
    >>> [str(stamp) for stamp in ahead.index], np.round(ahead.to_numpy(), 3).tolist()
    (['2024-01-31 00:00:00+09:00', '2024-01-31 01:00:00+09:00'], [1.0, 0.966])
    """
    model = fit_forecaster(series, horizon=horizon, lags=lags, days=days)
    index, _ = hourly_grid(series)
    future = pd.date_range(index[-1] + pd.Timedelta(hours=1), periods=horizon, freq="h")
    return pd.Series(model.predict(series), index=future, name=series.name)


def persistence(values: FloatArray, origins: NDArray[np.intp], horizon: int) -> FloatArray:
    """Persistence baseline: the value at the origin for every horizon, ``(origins, horizon)``."""
    return np.repeat(values[origins][:, None], horizon, axis=1)


def seasonal_naive(values: FloatArray, origins: NDArray[np.intp], horizon: int) -> FloatArray:
    """Seasonal-naive baseline: for horizon h the value at ``origin + h − 24`` (h ≤ 24)."""
    return np.asarray(values[origins[:, None] + np.arange(1, horizon + 1) - DAY], np.float64)


def _check_options(*, horizon: int, lags: int, days: int, max_gap: int) -> None:
    problems = []
    if not 1 <= horizon <= DAY:
        problems.append(f"horizon={horizon}: expected 1–{DAY} hours")
    if lags < 1:
        problems.append(f"lags={lags}: expected at least 1")
    if days < 1:
        problems.append(f"days={days}: expected at least 1")
    if max_gap < 0:
        problems.append(f"max_gap={max_gap}: expected 0 or more hours")
    if problems:
        raise ValidationError("forecast options: " + "; ".join(problems))


__all__ = [
    "Forecaster",
    "fill_gaps",
    "fit_forecaster",
    "forecast",
    "hourly_grid",
    "persistence",
    "seasonal_naive",
]
