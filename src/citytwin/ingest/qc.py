"""Quality control: flags, never deletions.

Checks, all vectorised over a batch of wide readings sorted by (thing, time):

- **range**: outside the property's physically valid range (vocabulary);
- **spike**: one reading departs from both neighbours, in the same direction, by more than the
  property's spike size (*gross* spike) or — for properties that vary smoothly (the vocabulary's
  ``smooth``: PM, temperature, humidity, pressure, dew point) — by more than
  :data:`SPIKE_SIGMAS` times the series' local roughness (*relative* spike, see :func:`_spikes`);
  **step**: a jump larger than the spike size that does not come back;
- **stuck**: the same value for longer than the property's ``stuck_minutes`` (flat-lined sensor);
- **gap**: the reading follows a silence longer than three sampling periods;
- **future**: phenomenon time after ingest time (+5 min clock tolerance);
- **drift**: for smooth properties, a sensor whose departure from the network consensus at the
  same instants *changes*, since the start of its series in the batch, by much more than such
  changes do across the network — overall and at that time of day — or whose departure is
  extreme outright, while at least five sensors report; a departure shared at the same instant
  by neighbouring sensors is a real local event, not a drift (:mod:`citytwin.ingest.drift`).

PM is checked on ``log(x + 5 µg/m³)``: optical PM sensors have multiplicative noise, and sites
differ by a factor rather than an offset, so a spike or a drift is a ratio. The 5 µg/m³ keeps the
ratio stable near zero, where the noise is additive.

The tests follow the WMO/ISO practice of range–step–persistence checks (WMO-No. 8, Annex 1.D;
WMO-No. 488) and the QARTOD spike test (IOOS 2020), with a cross-sensor consistency test in place
of a buddy check. They were tuned on :mod:`citytwin.emulator.feeds` data with injected faults
(``tests/ingest/test_qc.py`` asserts recall ≥ 0.95 and precision ≥ 0.90).

Cost: one pass of a few numpy operations per property over the rows; the only sort is
:func:`sort_readings` (once per batch, skipped when the batch is already ordered).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from citytwin.ingest.base import Readings
from citytwin.ingest.drift import drift_flags
from citytwin.ingest.qc_batch import (
    BatchOrder,
    Bools,
    Floats,
    Ints,
    after,
    shifted,
    steps,
    structure,
)
from citytwin.model.quality import Flag
from citytwin.model.vocabulary import PropertySpec, get_property

FUTURE_TOLERANCE_US = 5 * 60_000_000
GAP_PERIODS = 3  # a silence longer than this many sampling periods is a gap
STUCK_MIN_READINGS = 6  # a stuck run also needs this many readings (hourly integers repeat)
SPIKE_SIGMAS = 3.5  # relative spike: departure / local roughness
SPIKE_WINDOW = 30  # readings each side from which the local roughness is measured
SPIKE_MIN_CONTEXT = 6  # second differences needed around a reading for the relative test
SPIKE_FLOOR = 1 / 30  # the relative test ignores departures under this share of the spike size
LOG_OFFSET = 5.0  # µg/m³ added before taking logs of PM
PARALLEL_VALUES = 2_000_000  # values from which a batch is checked on several threads
PARALLEL_THREADS = 2
RELATIVE = frozenset({"pm25", "pm10", "pm25_corrected", "pm10_corrected"})


def sort_readings(readings: Readings) -> Readings:
    """Rows ordered by (thing, time): what QC and storage expect.

    Already ordered batches are returned as they are. A time-ordered batch (the usual file: all
    sensors at one instant, then the next) needs only a stable sort by thing, which is a radix
    sort for up to 65,536 things.
    """
    thing, time = readings.thing_index, readings.time
    if len(thing) < 2:
        return readings
    d_thing = np.diff(thing)
    d_time = np.diff(time)
    if np.all((d_thing > 0) | ((d_thing == 0) & (d_time >= 0))):
        return readings
    if np.all(d_time >= 0) and thing.min() >= 0:
        small = np.uint16 if thing.max() < 2**16 else np.uint32
        order = np.argsort(thing.astype(small), kind="stable")
    else:
        order = np.lexsort((time, thing))
    return readings.take(order)


def check_quality(readings: Readings, *, now_us: int) -> dict[str, NDArray[np.int32]]:
    """Flags per property for readings sorted by (thing, time).

    Properties are checked independently; a large batch checks them on
    :data:`PARALLEL_THREADS` threads (numpy releases the GIL in its array loops).
    """
    return dict(quality_by_property(readings, now_us=now_us))


def quality_by_property(
    readings: Readings, *, now_us: int
) -> Iterator[tuple[str, NDArray[np.int32]]]:
    """:func:`check_quality` one property at a time, so that the caller can store a property's
    observations while the next ones are being checked: the properties without the costlier
    drift check come first (each in the order of ``readings.values``), so the first ones are
    ready soon."""
    if not len(readings):
        yield from ((key, np.zeros(0, np.int32)) for key in readings.values)
        return
    order = structure(readings)
    future = np.where(
        readings.time > now_us + FUTURE_TOLERANCE_US, np.int32(Flag.FUTURE), np.int32(0)
    )

    def check(key: str) -> NDArray[np.int32]:
        return _check_property(readings, key, order, future)

    keys = sorted(readings.values, key=lambda key: get_property(key).smooth)
    if len(readings) * len(keys) < PARALLEL_VALUES or len(keys) < 2:
        yield from ((key, check(key)) for key in keys)
        return
    if any(get_property(key).smooth for key in keys):
        # shared: computed once, before the threads
        _ = order.time_group, order.series_start, order.neighbours, order.row_keys
    with ThreadPoolExecutor(PARALLEL_THREADS, thread_name_prefix="citytwin-qc") as pool:
        yield from zip(keys, pool.map(check, keys), strict=True)


def _check_property(
    readings: Readings, key: str, order: BatchOrder, future: NDArray[np.int32]
) -> NDArray[np.int32]:
    values = readings.values[key]
    spec = get_property(key)
    bits = future.copy()
    bits[(values < spec.valid_min) | (values > spec.valid_max)] |= np.int32(Flag.RANGE)
    _series_checks(readings, values, spec, order, bits)
    if spec.smooth:
        bits |= drift_flags(_transform(key, values), order, bits)
    if key in readings.source_flags:
        bits[readings.source_flags[key]] |= np.int32(Flag.SOURCE)
    return bits


def _transform(key: str, values: Floats) -> Floats:
    """The scale on which a property's changes are compared: log for PM, else as is."""
    if key not in RELATIVE:
        return values
    out: Floats = np.log(np.maximum(values, 0.0) + LOG_OFFSET)
    return out


def _series_checks(
    readings: Readings,
    values: Floats,
    spec: PropertySpec,
    order: BatchOrder,
    bits: NDArray[np.int32],
) -> None:
    """Gap, spike, step and stuck on the valid, in-range values of each series."""
    index = np.flatnonzero(~np.isnan(values) & (bits & Flag.RANGE == 0))
    if index.size < 2:
        return
    x, t = values[index], readings.time[index]
    first = after(readings.thing_index[index], np.not_equal, True)
    dt = steps(t)
    gap = ~first & (dt > GAP_PERIODS * order.period_us)
    bits[index[gap]] |= np.int32(Flag.GAP)
    joined = ~first & ~gap  # reading continues the previous one's series
    stuck = np.zeros(len(x), bool)
    if spec.stuck_minutes is not None:
        stuck = _stuck(x, t, joined, spec.stuck_minutes * 60_000_000)
        bits[index[stuck]] |= np.int32(Flag.STUCK)
    if spec.spike is not None:
        spike, step = _spikes(x, joined, first, stuck, spec)
        bits[index[spike]] |= np.int32(Flag.SPIKE)
        # a sensor that unfreezes jumps back to reality: that jump is not a fault of its own
        bits[index[step & ~shifted(stuck, 1, False)]] |= np.int32(Flag.STEP)


def _spikes(
    x: Floats, joined: Bools, first: Bools, stuck: Bools, spec: PropertySpec
) -> tuple[Bools, Bools]:
    """Spike and step masks of one property's valid values (rows sorted by thing, time).

    A spike departs from both neighbours in the same direction; its size is the smaller of the
    two departures (the QARTOD spike statistic ``|x - (a + b)/2| - |b - a|/2``). It is a spike
    when that exceeds the vocabulary's spike size (a jump no real signal makes), or, for smooth
    properties, when it exceeds :data:`SPIKE_SIGMAS` × the local roughness: the mean absolute
    second difference of the :data:`SPIKE_WINDOW` readings either side, leaving out the three
    that the candidate itself disturbs and any stuck readings (their zero curvature would make a
    neighbour look rough). The roughness adapts to the sensor, the weather and the quantisation
    (a 0.1 °C sensor at night, PM in an episode), so glitches a few times larger than the
    reading-to-reading variability are found without flagging ordinary change. White noise of
    standard deviation σ has roughness ≈ 1.95σ, so the threshold is ≈ 7σ; with ±30 readings the
    ratio of Gaussian noise stays below ~3.1 in 10⁵ readings, while a glitch of 6 robust sds of
    the reading-to-reading change (≈ 8.5σ) scores ≈ 4.3. Spikes found are then left out of the
    roughness and the test repeated, so that one glitch does not hide a smaller one nearby.
    Departures under :data:`SPIKE_FLOOR` × the spike size are never relative spikes
    (quantisation steps of a very quiet series).

    A step is a jump beyond the spike size that is not part of a spike.
    """
    limit = spec.spike or np.inf
    d_prev = np.where(joined, steps(x), 0.0)
    has_next = shifted(joined, -1, False)
    d_next = shifted(-d_prev, -1, 0.0)  # x_i - x_{i+1}
    same = has_next & (d_prev * d_next > 0)
    departure = np.minimum(np.abs(d_prev), np.abs(d_next))
    spike = same & (departure > limit)
    if spec.smooth:
        y = _transform(spec.key, x)
        e_prev = np.where(joined, steps(y), 0.0) if y is not x else d_prev
        e_next = shifted(-e_prev, -1, 0.0)
        size = np.minimum(np.abs(e_prev), np.abs(e_next))
        candidate = same & (departure > SPIKE_FLOOR * limit)
        calm = has_next & joined & ~_near(stuck)
        curvature = np.where(calm, np.abs(e_prev + e_next), np.nan)
        windows = _Windows.of(first, np.flatnonzero(candidate))
        for _ in range(2):
            curvature[_near(spike)] = np.nan
            test = windows.without(spike)  # a spike stays one: test only the others
            found = size[test.rows] > SPIKE_SIGMAS * _roughness(curvature, test)
            spike[test.rows[found]] = True
    step = (np.abs(d_prev) > limit) & ~spike & ~shifted(spike, 1, False)
    return spike, step


def _near(mask: Bools) -> Bools:
    """The rows of ``mask`` and their neighbours."""
    out: Bools = mask | shifted(mask, 1, False) | shifted(mask, -1, False)
    return out


@dataclass(frozen=True)
class _Windows:
    """The ±:data:`SPIKE_WINDOW` neighbourhood of some ``rows``, clipped to their series."""

    rows: Ints
    lo: Ints
    hi: Ints  # exclusive
    first: Bools  # the row starts its series
    last: Bools  # the row ends its series

    @classmethod
    def of(cls, first: Bools, rows: Ints) -> _Windows:
        """Windows of ``rows`` (ascending) among values whose series start where ``first``."""
        heads = np.flatnonzero(first)
        series = np.searchsorted(heads, rows, side="right") - 1
        start = heads[series]
        end = np.append(heads[1:], len(first))[series] - 1  # last row of the series
        return cls(
            rows,
            np.maximum(rows - SPIKE_WINDOW, start),
            np.minimum(rows + SPIKE_WINDOW, end) + 1,
            rows == start,
            rows == end,
        )

    def without(self, mask: Bools) -> _Windows:
        """The windows of the rows that ``mask`` does not select."""
        keep = ~mask[self.rows]
        return _Windows(
            self.rows[keep], self.lo[keep], self.hi[keep], self.first[keep], self.last[keep]
        )


def _roughness(curvature: Floats, windows: _Windows) -> Floats:
    """Leave-three-out windowed mean of |second differences| at the windows' rows (NaN where
    undefined), per series.

    Returns NaN where fewer than :data:`SPIKE_MIN_CONTEXT` second differences are around.
    """
    present = ~np.isnan(curvature)
    a = np.where(present, curvature, 0.0)
    c_sum = np.concatenate(([0.0], np.cumsum(a)))
    c_cnt = np.concatenate(([0], np.cumsum(present)))
    rows, first, last = windows.rows, windows.first, windows.last
    padded = np.concatenate(([0.0], a, [0.0]))  # padded[i + 1] is a[i]
    counted = np.concatenate(([0], present, [0]))
    own = (
        a[rows]
        + np.where(first, 0.0, padded[rows])
        + np.where(last, 0.0, padded[rows + 2])
    )  # fmt: skip
    own_n = (
        present[rows].astype(np.int64)
        + np.where(first, 0, counted[rows])
        + np.where(last, 0, counted[rows + 2])
    )  # fmt: skip
    total = c_sum[windows.hi] - c_sum[windows.lo] - own
    count = c_cnt[windows.hi] - c_cnt[windows.lo] - own_n
    out: Floats = np.where(count >= SPIKE_MIN_CONTEXT, total / np.maximum(count, 1), np.nan)
    return out


def _stuck(x: Floats, t: Ints, joined: Bools, limit_us: float) -> Bools:
    """Members of runs of an identical value lasting at least ``limit_us`` and
    :data:`STUCK_MIN_READINGS` readings: three equal hourly means of an integer-valued PM or
    humidity sensor are common at night, six are not."""
    head = np.flatnonzero(~joined | after(x, np.not_equal, True))  # first row of each run
    tail = np.append(head[1:], len(x)) - 1  # its last row (times ascend within a series)
    length = tail - head + 1
    long_run = (t[tail] - t[head] >= limit_us) & (length >= STUCK_MIN_READINGS)
    if not long_run.any():
        return np.zeros(len(x), bool)
    out: Bools = np.repeat(long_run, length)
    return out
