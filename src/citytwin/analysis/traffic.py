"""Congestion patterns from Seoul TOPIS link speeds: index, TOPIS levels, recurring bottlenecks.

Input is the long frame of :func:`citytwin.analysis.topis_files.read_topis` (one row per link,
day and hour; ``hour = 0`` is 00:00–01:00 KST, dates are local calendar days). The pictures and
the map layer are in :mod:`citytwin.analysis.traffic_maps`.

Method
------
The congestion index of a link at a weekday and hour is ``1 − v / v_free`` (0 free flow, 1 at
standstill): one minus the Speed Performance Index of He et al. (2016), "A traffic congestion
assessment method for urban road networks based on Speed Performance Index", *Procedia
Engineering* 137, 425–433. ``v`` is the mean speed over the month's days of that weekday; the
free-flow speed ``v_free`` is a high percentile (default 90th; 85th–95th is usual, FHWA/INRIX
practice) of the link's own hourly speeds, which on Seoul streets are reached at night. Each cell
also gets the Seoul TOPIS level for urban roads: 원활 (smooth, > 30 km/h), 서행 (slow, 15–30) and
정체 (congested, < 15) — the thresholds of TOPIS's 도시부 도로 소통정보.

A day's hour is *congested* when its index is ≥ 0.7 (default): below 30 % of free flow, which on
a 50 km/h arterial is TOPIS's 정체 (< 15 km/h); ordinary Seoul rush hours run at 40–55 % of free
flow (index 0.45–0.6) and do not count. A bottleneck is *recurring* when it is congested at the
same weekday and hour on at least ``min_share`` of the weeks observed (cf. FHWA, *Traffic
Bottlenecks: A Primer*, 2007, recurring vs non-recurring congestion); a one-off incident reaches
one week in four or five.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from citytwin.errors import ValidationError

WEEKDAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
#: Seoul TOPIS urban-road levels (km/h): < 15 정체, 15–30 서행, > 30 원활.
LEVELS: Final = ("congested", "slow", "smooth")
LEVEL_LIMITS: Final = (15.0, 30.0)
ORDER: Final = [
    "link_id", "weekday", "hour", "mean_speed_kmh", "free_flow_kmh", "congestion_index", "level",
    "days", "congested_days", "congested_share", "road", "distance_m",
]  # fmt: skip


def congestion_index(
    long: pd.DataFrame,
    *,
    free_flow: float | pd.Series | None = None,
    percentile: float = 90.0,
    threshold: float = 0.7,
) -> pd.DataFrame:
    """Mean speed, congestion index ``1 − v / v_free`` and TOPIS level per link × weekday × hour.

    Parameters
    ----------
    long
        :func:`~citytwin.analysis.topis_files.read_topis` output.
    free_flow
        Free-flow speed (km/h): one number, a Series by link id, or None for each link's
        ``percentile``-th percentile of its observed hourly speeds.
    threshold
        Index at or above which a single day's hour counts as congested (``congested_days``);
        0.7 is TOPIS's 정체 (< 15 km/h) on a 50 km/h arterial.

    Returns
    -------
    DataFrame
        ``link_id, weekday, hour, mean_speed_kmh, free_flow_kmh, congestion_index, level,
        days, congested_days, congested_share, road, distance_m``; ``level`` is the TOPIS
        class of the mean speed (``congested`` < 15, ``slow`` 15–30, ``smooth`` > 30 km/h).

    Examples
    --------
    >>> long = pd.DataFrame({"link_id": "a", "weekday": 0, "hour": [8, 8, 3, 3],
    ...                      "speed_kmh": [10.0, 14.0, 40.0, 40.0]})
    >>> index = congestion_index(long, free_flow=40.0)
    >>> index[["hour", "mean_speed_kmh", "congestion_index", "level"]].values.tolist()
    [[3, 40.0, 0.0, 'smooth'], [8, 12.0, 0.7, 'congested']]
    """
    _require(long, ("link_id", "weekday", "hour", "speed_kmh"), "congestion_index long")
    _check_range("percentile", percentile, 0.0, 100.0)
    _check_range("threshold", threshold, 0.0, 1.0)
    codes, labels = pd.factorize(long["link_id"], use_na_sentinel=True)
    links = pd.Index(np.asarray(labels, dtype=str))
    key = _cell_keys(long, codes)
    speed = long["speed_kmh"].to_numpy(float)
    free = _free_flow(codes, links, speed, free_flow, percentile)
    observed = ~np.isnan(speed)
    with np.errstate(invalid="ignore", divide="ignore"):
        congested = observed & (1 - speed / free[codes] >= threshold)
    size = len(links) * 168
    days = np.bincount(key[observed], minlength=size)
    total = np.bincount(key[observed], weights=speed[observed], minlength=size)
    cell = np.flatnonzero(np.bincount(key, minlength=size))
    link, slot = np.divmod(cell, 168)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total[cell] / days[cell]
    index = pd.DataFrame(
        {
            "link_id": links[link],
            "weekday": slot // 24,
            "hour": slot % 24,
            "mean_speed_kmh": mean,
            "free_flow_kmh": free[link],
            "days": days[cell],
            "congested_days": np.bincount(key[congested], minlength=size)[cell],
        }
    )
    return _finish_index(index, long, codes, link, threshold)


def _cell_keys(long: pd.DataFrame, codes: NDArray[np.intp]) -> NDArray[np.int64]:
    """``(link × 7 + weekday) × 24 + hour`` of each row, after checking the ranges."""
    weekday = long["weekday"].to_numpy(np.int64)
    hour = long["hour"].to_numpy(np.int64)
    bad = (codes < 0) | (weekday < 0) | (weekday > 6) | (hour < 0) | (hour > 23)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValidationError(
            f"congestion_index long: row {row} has link_id={long['link_id'].iloc[row]!r}, "
            f"weekday={weekday[row]}, hour={hour[row]}; expected an id, 0–6 and 0–23"
        )
    keys: NDArray[np.int64] = (codes.astype(np.int64) * 7 + weekday) * 24 + hour
    return keys


def _free_flow(
    codes: NDArray[np.intp],
    links: pd.Index,
    speed: NDArray[np.float64],
    given: float | pd.Series | None,
    percentile: float,
) -> NDArray[np.float64]:
    """Free-flow speed per link code."""
    if given is None:
        quantile = pd.Series(speed).groupby(codes).quantile(percentile / 100)
        return np.asarray(quantile.reindex(range(len(links))), dtype=np.float64)
    if isinstance(given, pd.Series):
        free = given.set_axis(given.index.astype(str)).reindex(links)
        if free.isna().any():
            missing = ", ".join(free.index[free.isna()][:5])
            raise ValidationError(f"congestion_index free_flow: no speed for link(s) {missing}")
        speeds: NDArray[np.float64] = free.to_numpy(np.float64)
        return speeds
    if not given > 0:
        raise ValidationError(f"congestion_index free_flow={given}: expected a speed > 0 km/h")
    return np.full(len(links), float(given), dtype=np.float64)


def _finish_index(
    index: pd.DataFrame,
    long: pd.DataFrame,
    codes: NDArray[np.intp],
    link: NDArray[np.int64],
    threshold: float,
) -> pd.DataFrame:
    ratio = index["mean_speed_kmh"] / index["free_flow_kmh"]
    index["congestion_index"] = np.clip(1 - ratio, 0.0, 1.0)
    index["level"] = speed_level(index["mean_speed_kmh"].to_numpy(float))
    index["congested_share"] = index["congested_days"] / index["days"].replace(0, np.nan)
    _, first = np.unique(codes, return_index=True)  # codes are 0…n−1, so first[k] is link k's
    for column in ("road", "distance_m"):
        values = long[column].to_numpy()[first] if column in long else np.full(len(first), None)
        index[column] = values[link]
    index.attrs["threshold"] = threshold
    return index[ORDER]


def speed_level(speed_kmh: NDArray[np.float64]) -> NDArray[np.object_]:
    """TOPIS urban-road level of each speed: ``congested`` (정체) < 15 ≤ ``slow`` (서행) ≤ 30 <
    ``smooth`` (원활); None for NaN.

    >>> speed_level(np.array([10.0, 15.0, 30.0, 30.5, np.nan])).tolist()
    ['congested', 'slow', 'slow', 'smooth', None]
    """
    low, high = LEVEL_LIMITS
    level: NDArray[np.object_] = np.select(
        [speed_kmh < low, speed_kmh <= high, speed_kmh > high], LEVELS, ""
    ).astype(object)
    level[level == ""] = None
    return level


def recurring_bottlenecks(
    data: pd.DataFrame,
    *,
    threshold: float | None = None,
    min_share: float = 0.75,
    min_days: int = 3,
) -> pd.DataFrame:
    """Links congested at the same weekday and hour in most weeks, worst first.

    A cell (link, weekday, hour) recurs when its index is ≥ ``threshold`` on at least
    ``min_share`` of its ``days`` (≥ ``min_days`` observed). Links are ranked by
    ``severity × hours_per_week × length_km``: mean index of the recurring cells, their count,
    and the link length.

    Parameters
    ----------
    data
        :func:`~citytwin.analysis.topis_files.read_topis` output (the index is computed with
        ``threshold``, default 0.7) or a :func:`congestion_index` result (which carries the
        threshold it was computed with).

    Returns
    -------
    DataFrame
        ``link_id, road, distance_m, weekdays, hours, hours_per_week, share, severity, score``.

    Examples
    --------
    >>> days = pd.date_range("2024-03-04", periods=28)
    >>> long = pd.DataFrame({"link_id": "a", "date": days.repeat(2), "hour": [3, 8] * 28,
    ...                      "weekday": days.day_of_week.repeat(2), "distance_m": 500.0,
    ...                      "speed_kmh": [50.0, 12.0] * 28})
    >>> found = recurring_bottlenecks(long).round(2)
    >>> found[["link_id", "hours", "hours_per_week", "severity", "score"]].values.tolist()
    [['a', (8,), 7, 0.76, 2.66]]
    """
    if "congested_days" in data:
        made = data.attrs.get("threshold")
        if threshold is not None and made is not None and made != threshold:
            raise ValidationError(
                f"recurring_bottlenecks threshold={threshold}: the index was computed with "
                f"{made}; pass the long frame or the same threshold"
            )
        index = data
    else:
        index = congestion_index(data, threshold=0.7 if threshold is None else threshold)
    _check_range("min_share", min_share, 0.0, 1.0)
    recurring = index[(index["days"] >= min_days) & (index["congested_share"] >= min_share)]
    return _rank(recurring)


def _rank(cells: pd.DataFrame) -> pd.DataFrame:
    grouped = cells.groupby("link_id", sort=False)
    found = grouped.agg(
        road=("road", "first"), distance_m=("distance_m", "first"),
        weekdays=("weekday", lambda w: tuple(WEEKDAYS[d] for d in sorted(set(w)))),
        hours=("hour", lambda h: tuple(sorted({int(x) for x in h}))),
        hours_per_week=("hour", "size"), share=("congested_share", "mean"),
        severity=("congestion_index", "mean"),
    ).reset_index()  # fmt: skip
    found["score"] = found["severity"] * found["hours_per_week"] * found["distance_m"] / 1000
    found = found.sort_values(["score", "severity"], ascending=False, na_position="last")
    return found.reset_index(drop=True)


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame]
    if missing:
        raise ValidationError(
            f"{what}: column(s) {', '.join(missing)} missing; found {', '.join(map(str, frame))}"
        )


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low < value <= high:
        raise ValidationError(f"{name}={value}: expected a value in ({low:g}, {high:g}]")


__all__ = [
    "LEVELS", "WEEKDAYS", "congestion_index", "recurring_bottlenecks", "speed_level",
]  # fmt: skip
