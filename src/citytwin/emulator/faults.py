"""Which faults occur where, and the ground-truth labels that describe them.

:class:`FaultPlan` sets how often each fault occurs; every writer returns the injected faults as
:class:`FaultLabels` (sensor index, time, property, kind):

- ``spike``: one reading off by 6–15 robust standard deviations of that sensor's
  reading-to-reading change (e.g. 1–2 °C, +20–60 µg/m³ at moderate PM: the glitches of cheap
  sensors; on a log scale for PM), and a quarter of them *gross*: 1.1–2 × the vocabulary's spike
  size. Glitches happen per reading, so their rate is per 1,000 readings;
- ``stuck``: the value frozen for 1.3–3 × the longer of the property's ``stuck_minutes`` and six
  readings;
- ``range``: an error code outside the valid range (raw 0 in the temperature encoding, i.e.
  −100 °C; 9999; −1; a 0 dB microphone);
- ``drift``: a linearly growing offset on one property of a few sensors (additive for
  temperature and humidity, a gain for PM), reaching 5–10 network spreads. Only points whose
  offset exceeds :data:`DRIFT_TOLERANCE` (4) network spreads are *detectable*. The network spread
  is the robust spread of sensors around the city at one instant, i.e. how much sites genuinely
  differ. Two things make smaller drifts ambiguous: in a network of ~1,000 sensors the most
  extreme honest sites already sit ~3.3 spreads from the consensus (the 1-in-2,000 tail of a
  normal distribution), and a site's own departure wanders by ~0.7 spreads over a day (the heat
  island waxing at night, rush hour at a roadside sensor). Beyond 4 spreads no siting explains it;
- ``gap``: the first reading after an outage of three or more readings (a sensor offline);
- ``source`` (KMA only): a value the KMA QC marked as an error (QC flag 1).

This module only draws the faults — events (:class:`FaultPlanner`), outages and the gaps they
leave — as plain arrays; :mod:`.scenario` applies them to the simulated values and writes the
labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from citytwin.emulator.processes import F64, I64, Mask
from citytwin.model.vocabulary import get_property

DRIFT_TOLERANCE: Final = 4.0  # network spreads beyond which a drift is labelled detectable


@dataclass(frozen=True)
class FaultPlan:
    """How often faults occur, per property they affect.

    Glitches (spikes, error codes) happen per reading, so their rates are per 1,000 readings;
    stuck runs, outages and drift happen in time, so theirs are per sensor and day.

    Attributes
    ----------
    spikes
        Single-reading spikes per 1,000 readings on PM, temperature and humidity (a
        ``gross_fraction`` share of that rate also on wind, gust and black-globe temperature,
        which only carry gross spikes).
    stuck
        Frozen runs per sensor-day on PM, temperature, humidity, noise and black globe.
    out_of_range
        Error codes (1–2 readings) per 1,000 readings on PM, temperature, humidity, noise,
        wind and black globe.
    drift
        Fraction of sensors with one drifting property (PM, temperature or humidity).
    outages
        Sensor outages (missing rows, 2 minutes to 3 hours) per sensor-day.
    blank_cells
        Probability that a single value is missing.
    spike_size
        Spike height in robust standard deviations of the sensor's reading-to-reading change.
    gross_fraction
        Share of spikes that are 1.1–2 × the vocabulary's spike size instead.
    """

    spikes: float = 0.7
    stuck: float = 0.05
    out_of_range: float = 0.15
    drift: float = 0.01
    outages: float = 0.2
    blank_cells: float = 1e-4
    spike_size: tuple[float, float] = (6.0, 15.0)
    gross_fraction: float = 0.25


NO_FAULTS: Final = FaultPlan(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
DEFAULT_FAULTS: Final = FaultPlan()

SPIKE, GROSS, STUCK, RANGE, DRIFT = range(5)
KIND_NAMES: Final = ("spike", "spike", "stuck", "range", "drift")
RELATIVE_SPIKE: Final = ("pm25", "pm10", "air_temperature", "relative_humidity")
_GROSS_ONLY: Final = ("wind_speed", "gust_speed", "black_globe_temperature")
_STUCK_PROPS: Final = (*RELATIVE_SPIKE, "noise", "black_globe_temperature")
_SENTINELS: Final[dict[str, tuple[float, ...]]] = {
    "pm25": (-1.0, 9999.0),
    "pm10": (-1.0, 9999.0),
    "air_temperature": (-100.0, 899.9),  # raw 0 and 9999 of the (v + 100) × 10 encoding
    "relative_humidity": (-1.0, 120.0),
    "noise": (0.0,),
    "wind_speed": (999.9,),
    "black_globe_temperature": (-100.0,),
}


@dataclass(frozen=True, eq=False)
class FaultLabels:
    """Ground truth: one row per faulty value.

    ``sensor`` indexes the sites (or stations); ``time`` is the phenomenon time in µs since the
    epoch, UTC (what the readers return); ``prop`` the vocabulary key; ``kind`` one of spike,
    stuck, range, drift, gap, source. ``detectable`` is False only for drift below
    :data:`DRIFT_TOLERANCE` network spreads: a real fault, but not one QC can be asked to find.
    """

    sensor: I64
    time: I64
    prop: NDArray[np.str_]
    kind: NDArray[np.str_]
    detectable: Mask

    def __len__(self) -> int:
        return int(self.sensor.shape[0])

    @classmethod
    def empty(cls) -> FaultLabels:
        """No labels."""
        return cls(
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros(0, "<U1"),
            np.zeros(0, "<U1"),
            np.zeros(0, bool),
        )

    @classmethod
    def concat(cls, parts: Sequence[FaultLabels]) -> FaultLabels:
        """All rows of ``parts``, in order."""
        if not parts:
            return cls.empty()
        return cls(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("sensor", "time", "prop", "kind", "detectable")
            )
        )

    def counts(self) -> dict[str, int]:
        """Labelled values per kind."""
        kinds, counts = np.unique(self.kind, return_counts=True)
        return {str(k): int(c) for k, c in zip(kinds, counts, strict=True)}


@dataclass(frozen=True, eq=False)
class _Events:
    """Fault events: a kind on one property of one sensor from ``start`` for ``length`` steps."""

    sensor: I64
    prop: I64  # index into the scenario's properties
    kind: I64
    start: I64
    length: I64
    param: F64  # spike: size (signed); range: the value; drift: final offset in network spreads

    def take(self, index: I64 | Mask) -> _Events:
        return _Events(
            self.sensor[index],
            self.prop[index],
            self.kind[index],
            self.start[index],
            self.length[index],
            self.param[index],
        )

    @classmethod
    def concat(cls, parts: Sequence[_Events]) -> _Events:
        if not parts:
            empty = np.zeros(0, np.int64)
            return cls(empty, empty, empty, empty, empty, np.zeros(0))
        return cls(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("sensor", "prop", "kind", "start", "length", "param")
            )
        )


@dataclass(frozen=True, eq=False)
class FaultPoints:
    """Expanded fault events: one entry per affected (step, sensor, property), sorted by step."""

    step: I64
    sensor: I64
    prop: I64
    kind: I64
    event: I64
    param: F64  # as the event's, except drift: the offset reached at this step

    def between(self, a: int, b: int) -> FaultPoints:
        lo, hi = np.searchsorted(self.step, [a, b])
        return FaultPoints(
            self.step[lo:hi],
            self.sensor[lo:hi],
            self.prop[lo:hi],
            self.kind[lo:hi],
            self.event[lo:hi],
            self.param[lo:hi],
        )


class FaultPlanner:
    """Draws fault events for a scenario (see :class:`FaultPlan` for the kinds and sizes)."""

    def __init__(
        self,
        rng: np.random.Generator,
        plan: FaultPlan,
        props: tuple[str, ...],
        steps: int,
        n: int,
        interval: int,
    ) -> None:
        self.rng, self.plan, self.props = rng, plan, props
        self.steps, self.n, self.interval = steps, n, interval
        self.days = steps * interval / 1440.0

    def events(self) -> _Events:
        parts = [self._spikes(p) for p in (*RELATIVE_SPIKE, *_GROSS_ONLY)]
        parts += [self._stuck(p) for p in _STUCK_PROPS]
        parts += [self._range(p, codes) for p, codes in _SENTINELS.items()]
        parts.append(self._drift())
        return _Events.concat([p for p in parts if p is not None])

    def _make(self, prop: str, kind: I64, length: I64, param: F64) -> _Events | None:
        fits = length <= self.steps
        if prop not in self.props or not fits.any():
            return None
        kind, length, param = kind[fits], length[fits], param[fits]
        count = len(length)
        start = self.rng.integers(0, self.steps - length + 1)
        if np.all(length == 1) and self.steps >= 3:  # a spike needs a neighbour on each side
            start = np.clip(start, 1, self.steps - 2)
        sensor = self.rng.integers(0, self.n, count)
        return _Events(sensor, np.full(count, self.props.index(prop)), kind, start, length, param)

    def _spikes(self, prop: str) -> _Events | None:
        spec, rng, plan = get_property(prop), self.rng, self.plan
        relative = prop in RELATIVE_SPIKE
        count = int(
            rng.poisson(
                plan.spikes
                / 1000
                * self.n
                * self.steps
                * (1.0 if relative else plan.gross_fraction)
            )
        )
        gross = (rng.random(count) < plan.gross_fraction) | (not relative)
        sign = np.ones(count) if prop.startswith("pm") else rng.choice([-1.0, 1.0], count)
        size = np.where(
            gross,
            (spec.spike or 0.0) * rng.uniform(1.1, 2.0, count),
            rng.uniform(*plan.spike_size, count),
        )
        kind = np.where(gross, GROSS, SPIKE).astype(np.int64)
        return self._make(prop, kind, np.ones(count, np.int64), sign * size)

    def _stuck(self, prop: str) -> _Events | None:
        """Frozen for 1.3–3 × the longer of ``stuck_minutes`` and six readings (with fewer, an
        hourly series of integers repeats by chance)."""
        count = int(self.rng.poisson(self.plan.stuck * self.n * self.days))
        limit = max(get_property(prop).stuck_minutes or 0.0, 6.0 * self.interval)
        minutes = limit * self.rng.uniform(1.3, 3.0, count)
        length = np.ceil(minutes / self.interval).astype(np.int64) + 1
        return self._make(prop, np.full(count, STUCK), length, np.zeros(count))

    def _range(self, prop: str, codes: tuple[float, ...]) -> _Events | None:
        count = int(self.rng.poisson(self.plan.out_of_range / 1000 * self.n * self.steps))
        length = self.rng.integers(1, 3, count)
        return self._make(
            prop, np.full(count, RANGE), length, self.rng.choice(np.array(codes), count)
        )

    def _drift(self) -> _Events | None:
        """Drifting sensors: a ramp from a start in the first half to the end, 5–10 spreads."""
        candidates = np.array([self.props.index(p) for p in RELATIVE_SPIKE if p in self.props])
        count = int(self.rng.binomial(self.n, self.plan.drift)) if len(candidates) else 0
        if not count:
            return None
        start = self.rng.integers(0, max(self.steps // 2, 1), count)
        return _Events(
            self.rng.choice(self.n, count, replace=False),
            self.rng.choice(candidates, count),
            np.full(count, DRIFT),
            start,
            self.steps - start,
            self.rng.choice([-1.0, 1.0], count) * self.rng.uniform(5.0, 10.0, count),
        )


def drop_clashes(events: _Events, outage: Mask) -> _Events:
    """Drop events that overlap an earlier one on the same sensor and property (3-step margin),
    and all but drift events that come within two steps of an outage."""
    order = np.lexsort((events.start, events.prop, events.sensor))
    e = events.take(order)
    steps = int(outage.shape[0])
    span = steps + 10
    group = e.sensor * 1000 + e.prop
    end = e.start + e.length - 1
    reach = np.maximum.accumulate(group * span + end + 3)
    clash = np.r_[False, group[1:] * span + e.start[1:] <= reach[:-1]]
    cum = np.vstack([np.zeros((1, outage.shape[1]), np.int64), np.cumsum(outage, axis=0)])
    lo, hi = np.clip(e.start - 2, 0, steps), np.clip(end + 3, 0, steps)
    touched = cum[hi, e.sensor] - cum[lo, e.sensor] > 0
    return e.take(~clash & ~(touched & (e.kind != DRIFT)))


def expand_events(events: _Events) -> FaultPoints:
    length = events.length
    event = np.repeat(np.arange(len(length)), length)
    offset = np.arange(int(length.sum())) - np.repeat(np.cumsum(length) - length, length)
    kind, param = events.kind[event], events.param[event]
    param = np.where(kind == DRIFT, param * (offset + 1) / length[event], param)
    step = events.start[event] + offset
    order = np.argsort(step, kind="stable")
    return FaultPoints(
        step[order],
        events.sensor[event][order],
        events.prop[event][order],
        kind[order],
        event[order],
        param[order],
    )


def draw_outages(
    rng: np.random.Generator, plan: FaultPlan, steps: int, n: int, interval: int
) -> Mask:
    """Missing rows (steps, sites): sensors offline for 2 minutes to 3 hours (mean 20 minutes),
    i.e. 1–90 readings of a 2-minute file and mostly one of an hourly file."""
    count = rng.poisson(plan.outages * n * steps * interval / 1440.0)
    sensor, start = rng.integers(0, n, count), rng.integers(0, steps, count)
    minutes = 2 * np.minimum(rng.geometric(0.1, count), 90)
    length = np.maximum(1, np.rint(minutes / interval).astype(np.int64))
    mask = np.zeros((steps + int(length.max(initial=1)), n), bool)
    offsets = np.arange(int(length.sum())) - np.repeat(np.cumsum(length) - length, length)
    mask[np.repeat(start, length) + offsets, np.repeat(sensor, length)] = True
    return mask[:steps]


def gap_points(outage: Mask) -> tuple[I64, I64]:
    """(step, sensor) of the first reading after an outage of ≥ 3 readings (QC's gap size)."""
    edges = np.diff(np.pad(outage.T.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    sensor, first = np.nonzero(edges == 1)
    _, after = np.nonzero(edges == -1)
    keep = (first > 0) & (after < outage.shape[0]) & (after - first >= 3)
    return after[keep].astype(np.int64), sensor[keep].astype(np.int64)
