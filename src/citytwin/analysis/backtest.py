"""Rolling-origin evaluation of the hourly forecaster, and a tolerant CSV loader for it.

A rolling-origin backtest (Tashman 2000, "Out-of-sample tests of forecasting accuracy",
Int. J. Forecasting 16:437) moves the forecast origin through the series; at each origin the
model is refitted on the data up to and including the origin only, forecasts the next
``horizon`` hours, and its errors are compared with those of the persistence and
seasonal-naive baselines at the very same origins and targets.

An origin is the last observed hour; its targets are the ``horizon`` hours after it. Origins
are *skipped and counted*, never dropped silently, when a target is missing or when the recent
history has a gap longer than the forecaster's ``max_gap``.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from citytwin.analysis.forecast import (
    DAY,
    fill_gaps,
    fit_arrays,
    hourly_grid,
    persistence,
    seasonal_naive,
)
from citytwin.errors import FeedError, ValidationError

logger = logging.getLogger(__name__)

METHODS = ("model", "persistence", "seasonal_naive")
ENCODINGS = ("utf-8-sig", "cp949")  # utf-8-sig also reads plain UTF-8
HOUR_COLUMN = re.compile(r"^\s*(hour|hr|시간|시)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class BacktestResult:
    """Errors per horizon of the model and both baselines over the evaluated origins.

    ``table`` is indexed by horizon (1…H) with columns ``<method>_mae`` and ``<method>_rmse``
    for ``model``, ``persistence`` and ``seasonal_naive``; ``overall`` holds their means over
    the horizons. ``origins`` are the evaluated origin timestamps.
    """

    horizon: int
    origins: pd.DatetimeIndex
    skipped_missing_target: int
    skipped_gap_in_history: int
    table: pd.DataFrame
    initial: int
    step: int

    @property
    def overall(self) -> dict[str, float]:
        """Mean of each error column over all horizons."""
        return {column: float(self.table[column].mean()) for column in self.table.columns}

    def skill(self, horizon: int, *, baseline: str = "seasonal_naive") -> float:
        """``1 − MAE_model / MAE_baseline`` at one horizon (0.2 = 20 % below the baseline)."""
        model = self.table["model_mae"].to_numpy()[horizon - 1]
        return float(1.0 - model / self.table[f"{baseline}_mae"].to_numpy()[horizon - 1])

    def to_dict(self, *, digits: int = 4) -> dict[str, object]:
        """A JSON-ready summary: counts, overall means and one row per horizon (rounded)."""
        values = self.table.to_numpy(dtype=np.float64)
        rows = [
            {
                "horizon": h + 1,
                **dict(zip(self.table.columns, np.round(values[h], digits).tolist(), strict=True)),
            }
            for h in range(len(values))
        ]
        return {
            "method": "rolling-origin backtest (Tashman 2000), direct ridge per horizon",
            "horizon": self.horizon,
            "initial_hours": self.initial,
            "step_hours": self.step,
            "origins_evaluated": len(self.origins),
            "origins_skipped_missing_target": self.skipped_missing_target,
            "origins_skipped_gap_in_history": self.skipped_gap_in_history,
            "first_origin": self.origins[0].isoformat() if len(self.origins) else None,
            "last_origin": self.origins[-1].isoformat() if len(self.origins) else None,
            "overall": {k: round(v, digits) for k, v in self.overall.items()},
            "by_horizon": rows,
        }


def backtest(
    series: pd.Series[float],
    *,
    horizon: int = 24,
    initial: int = 30 * DAY,
    step: int = DAY,
    window: int | None = None,
    lags: int = 48,
    days: int = 7,
    max_gap: int = 6,
    refit_every: int = 1,
) -> BacktestResult:
    """Rolling-origin backtest of :func:`~citytwin.analysis.forecast.fit_forecaster`.

    Parameters
    ----------
    series
        Hourly values indexed by timestamps; put on an hourly grid first (gaps become NaN).
    horizon
        Hours ahead, 1–24.
    initial
        Hours of data before the first origin (the first training window).
    step
        Hours between origins (24: one forecast a day at the same hour).
    window
        Train on the last ``window`` hours only (a sliding window); ``None`` expands.
    lags, days, max_gap
        Passed to the forecaster.
    refit_every
        Refit at every ``refit_every``-th evaluated origin and reuse the coefficients in between
        (Tashman's "updating" without recalibration); the features always use the data up to
        each origin. 1 refits everywhere.

    Examples
    --------
    >>> t = pd.date_range("2024-01-01", periods=24 * 40, freq="h")
    >>> hour = np.arange(t.size)
    >>> trend = pd.Series(0.01 * hour + np.sin(2 * np.pi * hour / 24), index=t)
    >>> result = backtest(trend, horizon=24, initial=24 * 30)
    >>> len(result.origins), round(float(result.table.loc[24, "seasonal_naive_mae"]), 6)
    (10, 0.24)
    >>> bool(result.table.loc[24, "model_mae"] < 1e-6)
    True
    """
    if initial < 1 or step < 1 or refit_every < 1 or (window is not None and window < 1):
        raise ValidationError(
            f"backtest options initial={initial}, step={step}, window={window}, "
            f"refit_every={refit_every}: "
            "expected positive numbers of hours"
        )
    index, values = hourly_grid(series, name="backtest series")
    hours = index.hour.to_numpy()
    candidates = np.arange(initial - 1, len(values) - horizon, step, dtype=np.intp)
    if candidates.size == 0:
        raise ValidationError(
            f"backtest series {series.name!r}: {len(values)} hours; expected more than "
            f"initial + horizon = {initial + horizon}"
        )
    targets = values[candidates[:, None] + np.arange(1, horizon + 1)]
    has_targets = np.all(np.isfinite(targets), axis=1)
    filled = fill_gaps(values, max_gap)
    need = max(lags, DAY * days)
    has_history = candidates >= need - 1
    # the model needs (nearly) complete features, seasonal-naive the raw last 24 h: both baselines
    # and the model are then scored on exactly the same origins and targets
    recent = np.where(has_history[:, None], candidates[:, None] - np.arange(need), 0)
    last_day = np.where(has_history[:, None], candidates[:, None] - np.arange(DAY), 0)
    has_history &= np.all(np.isfinite(filled[recent]), axis=1)
    has_history &= np.all(np.isfinite(values[last_day]), axis=1)
    origins = candidates[has_targets & has_history]
    forecasts = np.empty((origins.size, horizon))
    model = None
    for row, origin in enumerate(origins):
        if model is not None and row % refit_every:
            forecasts[row] = model.predict_at(filled, hours, origins[row : row + 1])[0]
            continue
        start = 0 if window is None else max(0, origin + 1 - window)
        model = fit_arrays(
            values[start : origin + 1],
            hours[start : origin + 1],
            horizon=horizon,
            lags=lags,
            days=days,
            max_gap=max_gap,
        )
        forecasts[row] = model.predict_at(filled, hours, origins[row : row + 1])[0]
    result = BacktestResult(
        horizon,
        index[origins],
        int((~has_targets).sum()),
        int((has_targets & ~has_history).sum()),
        _error_table(values, origins, forecasts, horizon),
        initial,
        step,
    )
    logger.info(
        "backtest: %d origins evaluated, %d skipped (missing target), %d skipped (history gap)",
        len(result.origins),
        result.skipped_missing_target,
        result.skipped_gap_in_history,
    )
    return result


def _error_table(
    values: NDArray[np.float64],
    origins: NDArray[np.intp],
    forecasts: NDArray[np.float64],
    horizon: int,
) -> pd.DataFrame:
    """MAE and RMSE per horizon of the model and the baselines at the same origins."""
    actual = values[origins[:, None] + np.arange(1, horizon + 1)]
    predictions = {
        "model": forecasts,
        "persistence": persistence(values, origins, horizon),
        "seasonal_naive": seasonal_naive(values, origins, horizon),
    }
    columns: dict[str, NDArray[np.float64]] = {}
    for method in METHODS:
        error = predictions[method] - actual
        if origins.size == 0:
            error = np.full((1, horizon), np.nan)
        columns[f"{method}_mae"] = np.mean(np.abs(error), axis=0)
        columns[f"{method}_rmse"] = np.sqrt(np.mean(error**2, axis=0))
    return pd.DataFrame(columns, index=pd.RangeIndex(1, horizon + 1, name="horizon"))


def load_series_csv(
    path: str,
    *,
    time: str,
    value: str,
    date_format: str | None = None,
    hour: str | None = None,
    tz: str | None = "Asia/Seoul",
) -> pd.Series[float]:
    """Read one hourly series from any CSV: a timestamp (or date + hour) column and a value column.

    Parameters
    ----------
    path
        The CSV file, in UTF-8 (with or without BOM) or CP949 (Korean Excel exports).
    time
        Column with timestamps, or dates only when hours are in another column.
    value
        Column with the values; non-numeric cells count as missing (``attrs["non_numeric"]``).
    date_format
        ``strftime`` format of ``time`` (e.g. ``"%d/%m/%Y"``); ``None`` accepts ISO 8601 only,
        because ``1/12/2017`` could be either day or month first.
    hour
        Hour-of-day column (0–23, or 1–24 where 24 is midnight of the next day). ``None`` with a
        date-only ``time`` column uses a column named Hour/hour/시간/시 if there is one.
    tz
        Time zone of naive timestamps (``None`` keeps them naive).

    Raises
    ------
    FeedError
        Unknown column, unparsable time or hour, or duplicate timestamps (file and line named).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> csv = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = csv.write_text("Date,Hour,T\\n1/12/2017,0,-5.2\\n1/12/2017,1,x\\n", encoding="utf-8")
    >>> series = load_series_csv(str(csv), time="Date", value="T", date_format="%d/%m/%Y")
    >>> [str(t) for t in series.index], series.attrs["non_numeric"]
    (['2017-12-01 00:00:00+09:00', '2017-12-01 01:00:00+09:00'], 1)
    """
    frame = _read_csv(path)
    hour = _hour_column(path, frame, time, hour)
    _require_columns(path, frame, [time, value, *([hour] if hour else [])])
    stamps = _parse_times(path, frame[time], date_format)
    if hour is not None:
        stamps = stamps + pd.to_timedelta(_parse_hours(path, frame[hour]), unit="h")
    _check_duplicates(path, stamps)
    raw = frame[value].str.strip()
    numbers = pd.to_numeric(raw.str.replace(",", "", regex=False), errors="coerce")
    bad = int((numbers.isna() & (raw != "")).sum())
    if bad:
        logger.warning("%s: %d non-numeric %r cell(s) taken as missing", path, bad, value)
    index = pd.DatetimeIndex(stamps, name=time)
    if tz is not None:
        index = index.tz_localize(tz) if index.tz is None else index.tz_convert(tz)
    series = pd.Series(numbers.to_numpy(dtype=np.float64), index=index, name=value).sort_index()
    series.attrs.update(source=path, non_numeric=bad, empty=int((raw == "").sum()))
    return series


def _read_csv(path: str) -> pd.DataFrame:
    """All cells as stripped-able text, decoded with the first encoding that works."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise FeedError(path, f"cannot be read ({exc.strerror or exc})") from None
    for encoding in ENCODINGS:
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise FeedError(path, f"is not text in any of {', '.join(ENCODINGS)}")
    try:
        return pd.read_csv(
            io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise FeedError(path, f"is not a readable CSV ({str(exc).strip()})") from None


def _require_columns(path: str, frame: pd.DataFrame, names: list[str]) -> None:
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise FeedError(
            path,
            f"no column(s) {', '.join(map(repr, missing))} in the header; expected one of "
            f"{', '.join(map(repr, frame.columns))}",
            line=1,
        )


def _hour_column(path: str, frame: pd.DataFrame, time: str, hour: str | None) -> str | None:
    """The hour column given, or one found by name when ``time`` holds dates only."""
    if hour is not None or time not in frame.columns:
        return hour
    if frame[time].str.contains(r"\d:\d", regex=True).any():
        return None
    found = next((c for c in frame.columns if HOUR_COLUMN.match(str(c))), None)
    if found is not None:
        logger.info("%s: column %r holds dates only; hours taken from column %r", path, time, found)
    return found


def _parse_times(
    path: str, text: pd.Series[str], date_format: str | None
) -> pd.Series[pd.Timestamp]:
    stripped = text.str.strip()
    stamps = pd.to_datetime(stripped, format=date_format or "ISO8601", errors="coerce")
    bad = np.flatnonzero(stamps.isna().to_numpy())
    if bad.size:
        expected = f"format {date_format!r}" if date_format else "ISO 8601 (or pass date_format)"
        raise FeedError(
            path,
            f"column {text.name!r}: {stripped.iloc[bad[0]]!r} is not a time; expected {expected}"
            f" ({bad.size} such row(s))",
            line=int(bad[0]) + 2,
        )
    return stamps


def _parse_hours(path: str, text: pd.Series[str]) -> NDArray[np.float64]:
    hours = pd.to_numeric(text.str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(
        ~(np.isfinite(hours) & (hours == np.round(hours)) & (hours >= 0) & (hours <= 24))
    )
    if bad.size:
        raise FeedError(
            path,
            f"column {text.name!r}: {text.iloc[bad[0]]!r} is not an hour of day; expected an "
            f"integer 0–23 (or 1–24, 24 = midnight of the next day) ({bad.size} such row(s))",
            line=int(bad[0]) + 2,
        )
    return hours


def _check_duplicates(path: str, stamps: pd.Series[pd.Timestamp]) -> None:
    duplicated = stamps.duplicated(keep=False).to_numpy()
    if duplicated.any():
        lines = np.flatnonzero(duplicated)[:2] + 2
        raise FeedError(
            path,
            f"timestamp {stamps.iloc[lines[0] - 2]} appears more than once (lines "
            f"{lines[0]} and {lines[1]}; {int(duplicated.sum())} rows in all); expected one "
            "value per hour",
            line=int(lines[0]),
        )


__all__ = ["BacktestResult", "backtest", "load_series_csv"]
