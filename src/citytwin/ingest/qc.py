"""Quality control: flags, never deletions.

Checks, all vectorised over a batch of wide readings sorted by (thing, time):

- **range**: outside the property's physically valid range (vocabulary);
- **spike**: one reading departs from both neighbours, in the same direction, by more than the
  property's spike size; **step**: a jump of that size that does not come back;
- **stuck**: the same value for longer than the property's ``stuck_minutes`` (flat-lined sensor);
- **gap**: the reading follows a silence longer than three sampling periods;
- **future**: phenomenon time after ingest time (+5 min clock tolerance);
- **drift**: for spatially smooth properties (PM, temperature, humidity, pressure) a sensor whose
  15-reading running mean departs from the network consensus at the same instants by more than
  four robust standard deviations, while at least five sensors report.

The tests follow the WMO/ISO practice of range–step–persistence checks (WMO-No. 8, Annex 1.D;
WMO-No. 488) with a cross-sensor consistency test in place of a buddy check.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from citytwin.ingest.base import Readings
from citytwin.model.quality import Flag
from citytwin.model.vocabulary import PropertySpec, get_property

FUTURE_TOLERANCE_US = 5 * 60_000_000
DRIFT_WINDOW = 15
DRIFT_SIGMAS = 4.0
DRIFT_MIN_SENSORS = 5


@dataclass(frozen=True)
class _Order:
    """Shared per-batch structure: rows sorted by (thing, time) and time groups."""

    new_thing: NDArray[np.bool_]  # row starts a new thing's series
    time_group: NDArray[np.int64]  # index of the row's instant among distinct instants
    period_us: float  # nominal sampling period


def sort_readings(readings: Readings) -> Readings:
    """Rows ordered by (thing, time): what QC and storage expect."""
    order = np.lexsort((readings.time, readings.thing_index))
    if np.all(order[1:] > order[:-1]):
        return readings
    return readings.take(order)


def check_quality(readings: Readings, *, now_us: int) -> dict[str, NDArray[np.int32]]:
    """Flags per property for readings sorted by (thing, time)."""
    if not len(readings):
        return {key: np.zeros(0, np.int32) for key in readings.values}
    order = _structure(readings)
    future = readings.time > now_us + FUTURE_TOLERANCE_US
    flags: dict[str, NDArray[np.int32]] = {}
    for key, values in readings.values.items():
        spec = get_property(key)
        bits = np.where(future, np.int32(Flag.FUTURE), np.int32(0))
        bits |= np.where((values < spec.valid_min) | (values > spec.valid_max),
                         np.int32(Flag.RANGE), np.int32(0))
        _series_checks(readings, values, spec, order, bits)
        if spec.smooth:
            bits |= _drift(readings, values, order, bits)
        if key in readings.source_flags:
            bits |= np.where(readings.source_flags[key], np.int32(Flag.SOURCE), np.int32(0))
        flags[key] = bits
    return flags


def _structure(readings: Readings) -> _Order:
    new_thing = np.r_[True, readings.thing_index[1:] != readings.thing_index[:-1]]
    _, time_group = np.unique(readings.time, return_inverse=True)
    step = np.diff(readings.time)[~new_thing[1:]]
    period = float(np.median(step[step > 0])) if np.any(step > 0) else 3_600_000_000.0
    return _Order(new_thing, time_group.astype(np.int64), period)


def _series_checks(readings: Readings, values: NDArray[np.float64], spec: PropertySpec,
                   order: _Order, bits: NDArray[np.int32]) -> None:
    """Gap, spike, step and stuck on the valid, in-range values of each series."""
    index = np.flatnonzero(~np.isnan(values) & (bits & Flag.RANGE == 0))
    if index.size < 2:
        return
    x, t = values[index], readings.time[index]
    thing = readings.thing_index[index]
    first = np.r_[True, thing[1:] != thing[:-1]]
    dt = np.r_[0, np.diff(t)]
    gap = ~first & (dt > 3 * order.period_us)
    bits[index[gap]] |= np.int32(Flag.GAP)
    joined = ~first & ~gap  # reading continues the previous one's series
    if spec.spike is not None:
        d_prev = np.where(joined, x - np.r_[x[0], x[:-1]], 0.0)
        d_next = np.r_[-d_prev[1:], 0.0]  # x_i - x_{i+1}
        has_next = np.r_[joined[1:], False]
        spike = has_next & (np.sign(d_prev) == np.sign(d_next)) & (
            np.minimum(np.abs(d_prev), np.abs(d_next)) > spec.spike)
        after_spike = np.r_[False, spike[:-1]]
        step = (np.abs(d_prev) > spec.spike) & ~spike & ~after_spike
        bits[index[spike]] |= np.int32(Flag.SPIKE)
        bits[index[step]] |= np.int32(Flag.STEP)
    if spec.stuck_minutes is not None:
        bits[index[_stuck(x, t, joined, spec.stuck_minutes * 60_000_000)]] |= np.int32(Flag.STUCK)


def _stuck(x: NDArray[np.float64], t: NDArray[np.int64], joined: NDArray[np.bool_],
           limit_us: float) -> NDArray[np.bool_]:
    """Members of runs of an identical value lasting at least ``limit_us``."""
    starts = ~joined | np.r_[True, x[1:] != x[:-1]]
    run = np.cumsum(starts) - 1
    run_start_t = t[starts]
    run_end_t = np.maximum.reduceat(t, np.flatnonzero(starts))
    run_len = np.diff(np.r_[np.flatnonzero(starts), len(x)])
    long_run = (run_end_t - run_start_t >= limit_us) & (run_len >= 3)
    return long_run[run]


def _drift(readings: Readings, values: NDArray[np.float64], order: _Order,
           bits: NDArray[np.int32]) -> NDArray[np.int32]:
    """Persistent departure from the network consensus at the same instants."""
    usable = ~np.isnan(values) & (bits & (Flag.RANGE | Flag.SPIKE | Flag.STUCK) == 0)
    groups = order.time_group
    n_groups = int(groups.max()) + 1
    x = np.where(usable, values, 0.0)
    count = np.bincount(groups, usable, n_groups)
    mean = np.bincount(groups, x, n_groups) / np.maximum(count, 1)
    var = np.bincount(groups, np.where(usable, (x - mean[groups]) ** 2, 0), n_groups)
    std = np.sqrt(var / np.maximum(count - 1, 1))
    # second pass: consensus from values within 2 sd, so the drifting sensor does not pull it
    inner = usable & (np.abs(x - mean[groups]) <= 2 * std[groups] + 1e-12)
    count_in = np.bincount(groups, inner, n_groups)
    consensus = np.bincount(groups, np.where(inner, x, 0), n_groups) / np.maximum(count_in, 1)
    residual = np.where(usable, x - consensus[groups], np.nan)
    spread = 1.4826 * np.nanmedian(np.abs(residual)) if usable.any() else 0.0
    if not spread or not np.isfinite(spread):
        return np.zeros_like(bits)
    running = _running_mean(residual, order.new_thing, DRIFT_WINDOW)
    enough = count_in[groups] >= DRIFT_MIN_SENSORS
    drift = usable & enough & (np.abs(running) > DRIFT_SIGMAS * spread)
    return np.where(drift, np.int32(Flag.DRIFT), np.int32(0))


def _running_mean(values: NDArray[np.float64], new_series: NDArray[np.bool_],
                  window: int) -> NDArray[np.float64]:
    """Trailing mean over the last ``window`` non-NaN values of each series (NaN-aware)."""
    present = ~np.isnan(values)
    filled = np.where(present, values, 0.0)
    series = np.cumsum(new_series) - 1
    csum, ccount = np.cumsum(filled), np.cumsum(present)
    start = np.flatnonzero(new_series)[series]  # first row of each row's series
    lo = np.maximum(np.arange(len(values)) - window + 1, start)
    base_sum = np.where(lo > 0, csum[lo - 1], 0.0)
    base_count = np.where(lo > 0, ccount[lo - 1], 0)
    n = ccount - base_count
    return np.where(n > 0, (csum - base_sum) / np.maximum(n, 1), np.nan)
