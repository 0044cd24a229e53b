"""The shared structure of a QC batch: rows sorted by (thing, time), their instants, series,
and which sensors are near each other.

:class:`BatchOrder` is computed once per batch (its cached properties are filled before the
per-property threads start) and read by every check of :mod:`citytwin.ingest.qc` and
:mod:`citytwin.ingest.drift`; the small array helpers shift and difference rows without Python
loops.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from citytwin.ingest.base import Readings, ThingSpec

Floats = NDArray[np.float64]
Bools = NDArray[np.bool_]
Ints = NDArray[np.int64]
T = TypeVar("T", bound=np.generic)

NEAR_RADIUS_M = 2000.0  # "near each other": see citytwin.ingest.drift.NEAR_RADIUS_M
EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)


@dataclass(frozen=True)
class BatchOrder:
    """Shared per-batch structure of rows sorted by (thing, time)."""

    time: Ints
    new_thing: Bools  # row starts a new thing's series
    period_us: float  # nominal sampling period
    thing: Ints  # each row's index into ``things``
    things: Sequence[ThingSpec]

    @cached_property
    def time_group(self) -> Ints:
        """Index of each row's instant among the batch's instants (only drift needs it)."""
        t0 = int(self.time.min())
        step = int(self.period_us)
        offset = self.time - t0
        if (
            step > 0
            and int(offset.max()) // step < 4 * len(self.time) + 1024
            and not np.any(offset % step)
        ):
            return offset // step  # a regular grid: no sort needed
        _, group = np.unique(self.time, return_inverse=True)
        return group.astype(np.int64)

    @cached_property
    def series(self) -> Ints:
        """Number of each row's series (thing) in the batch."""
        out: Ints = np.cumsum(self.new_thing) - 1
        return out

    @cached_property
    def series_start(self) -> Ints:
        """First row of each row's series."""
        out: Ints = np.flatnonzero(self.new_thing)[self.series]
        return out

    @cached_property
    def neighbours(self) -> tuple[Ints, Ints]:
        """Things within :data:`NEAR_RADIUS_M` of each thing, as CSR: thing *i*'s are
        ``nearby[start[i]:start[i + 1]]``. Things without a position have none."""
        unknown = (np.nan, np.nan)
        lonlat = np.array(
            [unknown if t.lon is None or t.lat is None else (t.lon, t.lat) for t in self.things],
            np.float64,
        ).reshape(-1, 2)
        located = np.flatnonzero(np.isfinite(lonlat).all(axis=1))
        pairs = np.zeros((0, 2), np.int64)
        if located.size > 1:
            tree = cKDTree(metres(lonlat[located]))
            pairs = located[tree.query_pairs(NEAR_RADIUS_M, output_type="ndarray")]
        source = np.concatenate((pairs[:, 0], pairs[:, 1]))
        order = np.argsort(source, kind="stable")
        start = np.searchsorted(source[order], np.arange(len(self.things) + 1))
        nearby = np.concatenate((pairs[:, 1], pairs[:, 0]))[order]
        return start.astype(np.int64), nearby.astype(np.int64)

    @cached_property
    def row_keys(self) -> tuple[Ints, Ints]:
        """Sorted ``thing × instants + time group`` of the rows and the row of each key."""
        key = self.thing * (int(self.time_group.max()) + 1) + self.time_group
        if np.all(key[1:] >= key[:-1]):  # rows sorted by (thing, time): the usual case
            return key, np.arange(len(key), dtype=np.int64)
        rows = np.argsort(key, kind="stable").astype(np.int64)
        return key[rows], rows

    def row_at(self, thing: Ints, group: Ints) -> Ints:
        """The row of ``thing`` at time group ``group`` (-1 where it has none)."""
        keys, rows = self.row_keys
        wanted = thing * (int(self.time_group.max()) + 1) + group
        at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
        out: Ints = np.where(keys[at] == wanted, rows[at], -1)
        return out

    def window_start(self, window: int) -> Ints:
        """First row of the trailing ``window`` rows of each row, clipped to its series."""
        out: Ints = np.maximum(np.arange(len(self.time)) - window + 1, self.series_start)
        return out


def structure(readings: Readings) -> BatchOrder:
    new_thing = after(readings.thing_index, np.not_equal, True)
    step = np.diff(readings.time)[~new_thing[1:]]
    positive = step[step > 0]
    period = median_int(positive) if positive.size else 3_600_000_000.0
    return BatchOrder(readings.time, new_thing, period, readings.thing_index, readings.things)


def metres(lonlat: Floats) -> Floats:
    """Local equirectangular x, y in metres about the median latitude. Within ±25 km of that
    latitude (a city) the east–west scale is off by under 0.4 % at Seoul's 37.5° N: far finer
    than :data:`NEAR_RADIUS_M` is meant."""
    rad = np.radians(lonlat)
    out: Floats = EARTH_RADIUS_M * np.column_stack(
        (rad[:, 0] * np.cos(np.median(rad[:, 1])), rad[:, 1])
    )
    return out


def median_int(values: Ints) -> float:
    """``np.median`` of integers, by a full sort: the introselect behind ``np.median`` slows down
    ~20× on the many equal sampling steps of a regular feed."""
    ordered = np.sort(values)
    middle = ordered[[(len(ordered) - 1) // 2, len(ordered) // 2]]
    return float(middle[0]) if middle[0] == middle[1] else float(np.mean(middle))


def after(values: NDArray[np.generic], compare: np.ufunc, head: bool) -> Bools:
    """``compare(values[i], values[i - 1])`` for each row, ``head`` for the first."""
    out = np.empty(len(values), bool)
    if len(values):
        out[0] = head
        compare(values[1:], values[:-1], out=out[1:])
    return out


def steps(values: NDArray[T]) -> NDArray[T]:
    """``values[i] - values[i - 1]`` for each row, 0 for the first."""
    out = np.empty_like(values)
    if len(values):
        out[0] = 0
        np.subtract(values[1:], values[:-1], out=out[1:])
    return out


def shifted(values: NDArray[T], by: int, fill: float) -> NDArray[T]:
    """``values`` moved ``by`` rows later (negative: earlier), ``fill`` where nothing comes."""
    out = np.empty_like(values)
    if by > 0:
        out[:by], out[by:] = fill, values[:-by]
    else:
        out[by:], out[:by] = fill, values[-by:]
    return out
