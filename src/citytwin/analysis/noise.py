"""Noise indicators: energetic (dB) averaging and the Lday / Levening / Lnight / Lden levels.

Sound levels are logarithmic, so they are averaged *energetically*: each level is turned back
into a relative sound energy ``10^(L/10)``, the energies are averaged and the mean is turned
back into decibels. Two hours at 60 dB and 70 dB carry as much energy as two hours at
67.4 dB, not 65 dB: the louder hour dominates, as it does for the ear and for health effects.
The arithmetic mean of decibels always underestimates (by Jensen's inequality) and is not the
equivalent continuous level LAeq that every standard uses (ISO 1996-1:2016, §3.2).

Two period schemes are known by name:

``"eu"``
    EU Environmental Noise Directive 2002/49/EC, Annex I: day 07–19 (12 h), evening 19–23
    (4 h, +5 dB), night 23–07 (8 h, +10 dB) and
    ``Lden = 10·log10((12·10^(Ld/10) + 4·10^((Le+5)/10) + 8·10^((Ln+10)/10)) / 24)``.
``"korea"``
    Korean environmental noise standard (소음·진동관리법 / 환경정책기본법 시행령 환경기준):
    주간 (day) 06–22 (16 h), 야간 (night) 22–06 (8 h), no evening. The composite is the
    day–night level ``Ldn = 10·log10((16·10^(Ld/10) + 8·10^((Ln+10)/10)) / 24)`` (ISO 1996-1).

Conventions, stated once:

- Each timestamp is the *start* of its one-hour LEQ interval (as :mod:`citytwin.ingest.noise`
  stores it: workbook hour 1 = 00:00–01:00 KST is stamped 00:00 KST).
- Periods are on the local clock of Seoul (``Asia/Seoul``, KST, no daylight saving), whatever
  the input's time zone.
- An *evaluation day* runs from the start of its day period to the start of the next day's
  day period, so the night belongs to the day it **starts** in (EU: the night of 2025-01-01 is
  2025-01-01 23:00 – 2025-01-02 07:00 KST). The hours before the first day period of the
  series belong to the previous evaluation day, which is then reported as incomplete.
- A period with fewer than ``min_coverage`` of its hours present (default 75 %) gets no level
  (NaN) and makes the day incomplete; the composite level needs every period.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, overload

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from citytwin.errors import UnknownBackendError, ValidationError

logger = logging.getLogger(__name__)

LOCAL_TZ = "Asia/Seoul"
SchemeName = Literal["eu", "korea"]


@dataclass(frozen=True)
class Period:
    """One assessment period: its indicator name, first local hour, length and penalty (dB)."""

    name: str
    start: int
    hours: int
    penalty: float

    @property
    def key(self) -> str:
        """``"day"`` for ``Lday``: the suffix of the ``hours_<key>`` coverage columns."""
        return self.name[1:].lower()


@dataclass(frozen=True)
class Scheme:
    """A set of periods that tile the 24 h evaluation day, and the composite's name."""

    name: str
    periods: tuple[Period, ...]
    composite: str


SCHEMES: dict[str, Scheme] = {
    "eu": Scheme(
        "eu",
        (
            Period("Lday", 7, 12, 0.0),
            Period("Levening", 19, 4, 5.0),
            Period("Lnight", 23, 8, 10.0),
        ),
        "Lden",
    ),
    "korea": Scheme("korea", (Period("Lday", 6, 16, 0.0), Period("Lnight", 22, 8, 10.0)), "Ldn"),
}


@overload
def energetic_mean(
    levels_db: ArrayLike, *, axis: None = None, weights: ArrayLike | None = None
) -> float: ...
@overload
def energetic_mean(
    levels_db: ArrayLike, *, axis: int, weights: ArrayLike | None = None
) -> NDArray[np.float64]: ...
def energetic_mean(
    levels_db: ArrayLike, *, axis: int | None = None, weights: ArrayLike | None = None
) -> float | NDArray[np.float64]:
    """Energetic (logarithmic) mean of sound levels: ``10·log10(mean(10^(L/10)))``.

    This is the equivalent continuous level of equal-length intervals (ISO 1996-1:2016,
    LAeq,T). Averaging decibels arithmetically would understate loud intervals: a 60 dB and a
    70 dB hour together are 67.4 dB, not 65 dB. NaN levels are ignored; a slice with no level
    gives NaN. The largest level is factored out first, so very loud inputs cannot overflow.

    Parameters
    ----------
    levels_db
        Levels in dB.
    axis
        Axis to average along; ``None`` averages everything.
    weights
        Non-negative durations (or other weights), broadcastable to ``levels_db``.

    Examples
    --------
    >>> round(energetic_mean([60.0, 70.0]), 4)
    67.4036
    >>> round(energetic_mean([60.0, 70.0, float("nan")], weights=[3, 1, 5]), 4)
    65.1188
    """
    levels = np.asarray(levels_db, dtype=np.float64)
    if weights is None:
        w = np.ones_like(levels)
    else:
        w = np.broadcast_to(np.asarray(weights, dtype=np.float64), levels.shape)
        if not np.all(np.isfinite(w) & (w >= 0)):
            raise ValidationError("energetic_mean weights: expected finite values >= 0")
    present = ~np.isnan(levels)
    top = np.fmax.reduce(levels, axis=axis, keepdims=True, initial=-np.inf, where=present)
    top = np.where(np.isfinite(top), top, 0.0)
    energy = np.where(present, w * 10.0 ** ((np.where(present, levels, 0.0) - top) / 10.0), 0.0)
    total = np.sum(energy, axis=axis)
    count = np.sum(np.where(present, w, 0.0), axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = 10.0 * np.log10(total / count) + np.squeeze(top, axis=axis)
    result = np.where(count > 0, mean, np.nan)
    return float(result) if axis is None else np.asarray(result, dtype=np.float64)


def noise_indicators(
    hourly: pd.Series[float], *, periods: SchemeName = "eu", min_coverage: float = 0.75
) -> pd.DataFrame:
    """Per evaluation day: the period levels, the composite (Lden or Ldn) and their coverage.

    Parameters
    ----------
    hourly
        Hourly LEQ in dB, indexed by tz-aware interval-start timestamps (any zone); NaN = missing.
    periods
        ``"eu"`` (Directive 2002/49/EC Annex I: Lday, Levening, Lnight, Lden) or ``"korea"``
        (소음·진동관리법 환경기준: Lday 06–22, Lnight 22–06, Ldn).
    min_coverage
        Smallest share of a period's hours that must be present for its level to be computed.

    Returns
    -------
    pandas.DataFrame
        Indexed by the evaluation day (``datetime.date``, local): one column per period level,
        the composite, ``hours_<key>`` (hours present) and ``complete``.

    Examples
    --------
    >>> index = pd.date_range("2025-01-01 07:00", periods=24, freq="h", tz="Asia/Seoul")
    >>> day = noise_indicators(pd.Series(60.0, index=index))
    >>> [round(float(day.iloc[0][c]), 3) for c in ("Lday", "Levening", "Lnight", "Lden")]
    [60.0, 60.0, 60.0, 66.395]
    >>> bool(day.iloc[0]["complete"]), int(day.iloc[0]["hours_night"])
    (True, 8)
    """
    scheme = _scheme(periods)
    energy, hours = _period_sums(hourly, scheme)
    return _indicator_table(energy, hours, scheme, min_coverage)


def noise_indicators_overall(
    hourly: pd.Series[float], *, periods: SchemeName = "eu", min_coverage: float = 0.75
) -> pd.Series[float]:
    """Long-term levels over the whole span (END: "determined over all the periods of a year").

    Every period level is the energetic mean of all that period's hours in the span, so the
    result is the same as weighting the daily levels by their hours present. ``hours_<key>``
    gives the hours present and ``coverage_<key>`` their share of the span's hours; a period
    below ``min_coverage`` gets NaN, and so does the composite.

    Examples
    --------
    >>> index = pd.date_range("2025-01-01 06:00", periods=48, freq="h", tz="Asia/Seoul")
    >>> levels = pd.Series(np.r_[np.full(24, 60.0), np.full(24, 70.0)], index=index)
    >>> overall = noise_indicators_overall(levels, periods="korea")
    >>> round(float(overall["Lday"]), 4), round(float(overall["Ldn"]), 4)
    (67.4036, 73.4242)
    """
    scheme = _scheme(periods)
    energy, hours = _period_sums(hourly, scheme)
    days = len(hours)
    total = _indicator_table(energy.sum().to_frame().T, hours.sum().to_frame().T, scheme, 0.0)
    result = total.iloc[0].drop("complete").astype(float)
    for period in scheme.periods:
        coverage = result[f"hours_{period.key}"] / (days * period.hours) if days else 0.0
        result[f"coverage_{period.key}"] = coverage
        if not coverage >= min_coverage:
            result[period.name] = np.nan
            result[scheme.composite] = np.nan
    return result


def station_indicators(
    readings: pd.DataFrame,
    *,
    periods: SchemeName = "eu",
    min_coverage: float = 0.75,
) -> pd.DataFrame:
    """Long-term period levels of many stations at once, from readings of any step.

    ``readings`` has columns ``station``, ``time`` (tz-aware) and ``level`` (dB). Readings are
    first averaged energetically into hourly LAeq,1h per station (so a 2-minute sensor and an
    hourly station weigh hours alike), then into each period over the station's whole span.
    ``coverage_<key>`` is the share of the period's hours between the station's first and last
    hour that hold a value; a period under ``min_coverage`` gets NaN, and so does the composite.

    Examples
    --------
    >>> times = pd.date_range("2025-01-01 00:00", periods=24, freq="h", tz="Asia/Seoul")
    >>> readings = pd.DataFrame({"station": "a", "time": times, "level": 60.0})
    >>> row = station_indicators(readings).iloc[0]
    >>> round(float(row["Lden"]), 3), float(row["coverage_night"])
    (66.395, 1.0)
    """
    scheme = _scheme(periods)
    valid = readings.dropna(subset=["level"])
    hour = pd.DatetimeIndex(valid["time"]).tz_convert(LOCAL_TZ).floor("h")
    hourly = (
        pd.DataFrame(
            {"station": valid["station"].to_numpy(), "hour": hour,
             "energy": 10.0 ** (valid["level"].to_numpy(np.float64) / 10.0)}
        )
        .groupby(["station", "hour"], sort=True)["energy"]
        .mean()
        .reset_index()
    )  # fmt: skip
    hourly["period"] = _period_names(scheme, pd.DatetimeIndex(hourly["hour"]).hour.to_numpy())
    names = [p.name for p in scheme.periods]
    grouped = hourly.groupby(["station", "period"])["energy"]
    energy = grouped.sum().unstack().reindex(columns=names).fillna(0.0)
    hours = grouped.count().unstack().reindex(columns=names).fillna(0).astype(np.int64)
    span = _span_hours(hourly, scheme)
    table = _indicator_table(energy, hours, scheme, 0.0).drop(columns="complete")
    for period in scheme.periods:
        coverage = hours[period.name] / span[period.name].replace(0, np.nan)
        table[f"coverage_{period.key}"] = coverage.fillna(0.0).to_numpy()
        short = (coverage < min_coverage).to_numpy()
        table.loc[short, [period.name, scheme.composite]] = np.nan
    table.index.name = "station"
    return table.reset_index()


def _period_names(scheme: Scheme, local_hours: NDArray[np.int64]) -> NDArray[np.str_]:
    offset = (local_hours - scheme.periods[0].start) % 24
    edges = np.cumsum([0] + [p.hours for p in scheme.periods])
    names = np.array([p.name for p in scheme.periods])
    return names[np.searchsorted(edges, offset, "right") - 1]


def _span_hours(hourly: pd.DataFrame, scheme: Scheme) -> pd.DataFrame:
    """Hours of each period between each station's first and last hour (inclusive)."""
    bounds = hourly.groupby("station")["hour"].agg(["min", "max"])
    spans = pd.DatetimeIndex(bounds["max"]) - pd.DatetimeIndex(bounds["min"])
    total = np.asarray(spans // pd.Timedelta(hours=1), np.int64) + 1
    first = pd.DatetimeIndex(bounds["min"]).hour.to_numpy()
    # each whole day holds every period's hours; the remainder starts at the first hour
    clock = (first[:, None] + np.arange(24)[None, :]) % 24
    in_rest = np.arange(24)[None, :] < (total % 24)[:, None]
    names = _period_names(scheme, clock.ravel()).reshape(clock.shape)
    return pd.DataFrame(
        {p.name: (total // 24) * p.hours + (in_rest & (names == p.name)).sum(axis=1)
         for p in scheme.periods},
        index=bounds.index,
    )  # fmt: skip


def _scheme(name: str) -> Scheme:
    if name not in SCHEMES:
        raise UnknownBackendError("noise period scheme", name, list(SCHEMES))
    return SCHEMES[name]


def _period_sums(hourly: pd.Series[float], scheme: Scheme) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Relative energy sums and hours present per (evaluation day, period), absent days as 0."""
    local = _local_index(hourly)
    levels = pd.to_numeric(hourly, errors="coerce").to_numpy(dtype=np.float64)
    first = scheme.periods[0].start
    shifted = local - pd.Timedelta(hours=first)
    offset = ((local.hour - first) % 24).to_numpy()
    edges = np.cumsum([0] + [p.hours for p in scheme.periods])
    label = np.array([p.name for p in scheme.periods])[np.searchsorted(edges, offset, "right") - 1]
    present = ~np.isnan(levels)
    frame = pd.DataFrame(
        {
            "day": shifted.date,
            "period": label,
            "energy": np.where(present, 10.0 ** (np.where(present, levels, 0.0) / 10.0), 0.0),
            "hours": present.astype(np.int64),
        }
    )
    sums = frame.groupby(["day", "period"]).sum()
    names = [p.name for p in scheme.periods]
    all_days = pd.date_range(min(frame["day"]), max(frame["day"]), freq="D").date
    grid = pd.MultiIndex.from_product([all_days, names], names=["day", "period"])
    sums = sums.reindex(grid, fill_value=0)
    return sums["energy"].unstack()[names], sums["hours"].unstack()[names]


def _local_index(hourly: pd.Series[float]) -> pd.DatetimeIndex:
    """The series' index on the Seoul clock, after checking it is tz-aware, hourly and unique."""
    index = hourly.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise ValidationError(
            f"hourly noise series {hourly.name!r}: expected a tz-aware DatetimeIndex "
            f"(interval starts), got {type(index).__name__} without a time zone"
        )
    if len(index) == 0:
        raise ValidationError(f"hourly noise series {hourly.name!r}: no values")
    local = index.tz_convert(LOCAL_TZ)
    problems: list[str] = []
    off_hour = np.flatnonzero(np.asarray(local != local.floor("h")))
    if off_hour.size:
        problems.append(
            f"{off_hour.size} timestamp(s) not on the hour, first at position {off_hour[0]} "
            f"({local[off_hour[0]]}); expected hourly interval starts"
        )
    duplicated = np.flatnonzero(np.asarray(local.duplicated()))
    if duplicated.size:
        problems.append(
            f"{duplicated.size} duplicate timestamp(s), first at position {duplicated[0]} "
            f"({local[duplicated[0]]}); expected one value per hour"
        )
    if problems:
        raise ValidationError(f"hourly noise series {hourly.name!r}: " + "; ".join(problems))
    return local


def _indicator_table(
    energy: pd.DataFrame, hours: pd.DataFrame, scheme: Scheme, min_coverage: float
) -> pd.DataFrame:
    """Levels from energy sums; a period under ``min_coverage`` of its hours gets NaN."""
    table = pd.DataFrame(index=energy.index)
    table.index.name = "day"
    composite = np.zeros(len(table))
    complete = np.ones(len(table), dtype=bool)
    for period in scheme.periods:
        count = hours[period.name].to_numpy(dtype=np.float64)
        enough = (count > 0) & (count >= min_coverage * period.hours)
        with np.errstate(divide="ignore", invalid="ignore"):
            level = 10.0 * np.log10(energy[period.name].to_numpy(dtype=np.float64) / count)
        table[period.name] = np.where(enough, level, np.nan)
        composite += period.hours * 10.0 ** ((table[period.name].to_numpy() + period.penalty) / 10)
        complete &= enough
    table[scheme.composite] = np.where(complete, 10.0 * np.log10(composite / 24.0), np.nan)
    for period in scheme.periods:
        table[f"hours_{period.key}"] = hours[period.name].to_numpy(dtype=np.int64)
    table["complete"] = complete
    if not complete.all():
        logger.info("%d of %d evaluation day(s) incomplete", (~complete).sum(), len(table))
    return table


__all__ = [
    "SCHEMES",
    "Period",
    "Scheme",
    "energetic_mean",
    "noise_indicators",
    "noise_indicators_overall",
    "station_indicators",
]
