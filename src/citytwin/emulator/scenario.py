"""A scenario: one file's world drawn up front, then simulated a chunk of rows at a time.

:func:`draw_scenario` fixes the time axis, the weather, the site model, the outages and the fault
events; :func:`simulate_chunks` turns them into values — the sensors' clean fields, faults
injected on the scale they are sized on (log for PM), the derived (corrected) PM columns, values
quantised to what the file can hold (e.g. 0.1 °C in the 2020 integer encoding) so QC sees what a
parser would, and NaN where a row or cell is missing — with each chunk's fault labels. Working in
chunks of :data:`CHUNK_ROWS` rows keeps memory flat for a day of 1,100 sensors; the writers only
lay the chunks out in their file formats.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import numpy as np

from citytwin.emulator.faults import (
    DRIFT,
    DRIFT_TOLERANCE,
    GROSS,
    KIND_NAMES,
    RANGE,
    RELATIVE_SPIKE,
    SPIKE,
    STUCK,
    FaultLabels,
    FaultPlan,
    FaultPlanner,
    FaultPoints,
    draw_outages,
    drop_clashes,
    expand_events,
    gap_points,
)
from citytwin.emulator.processes import F64, I64, Mask, kst_minute, random_stream, utc_micros
from citytwin.emulator.sensors import (
    SiteModel,
    Step,
    gases,
    light,
    particles,
    site_model,
    sound,
    thermal,
    vibration,
    wind,
)
from citytwin.emulator.sites import Sites
from citytwin.emulator.weather import Lerp, Weather, city_state, simulate_weather
from citytwin.model.vocabulary import get_property

CHUNK_ROWS: Final = 400_000  # rows simulated and written at a time
_LOG_OFFSET: Final = 5.0  # PM is handled as log(x + 5 µg/m³): its noise is multiplicative
_DERIVED: Final = {"pm25_corrected": ("pm25", "gain25"), "pm10_corrected": ("pm10", "gain10")}


def _forward(prop: str, x: F64) -> F64:
    """The scale faults are sized on: log(x + 5) for PM, else the value itself."""
    out: F64 = np.log(np.maximum(x, 0.0) + _LOG_OFFSET) if prop.startswith("pm") else x
    return out


def _inverse(prop: str, y: F64) -> F64:
    """Back from :func:`_forward`'s scale."""
    out: F64 = np.exp(y) - _LOG_OFFSET if prop.startswith("pm") else y
    return out


@dataclass(eq=False)
class Scenario:
    """What one file is simulated from (see :func:`draw_scenario`); ``frozen``, ``spread`` and
    ``change`` are filled in as the chunks are simulated."""

    sites: Sites
    minutes: I64
    interval: int
    extended: bool  # newer sensors: acceleration in g, gases, visitor counter
    props: tuple[str, ...]
    quantum: dict[str, float]
    weather: Weather
    model: SiteModel
    plan: FaultPlan
    points: FaultPoints
    outage: Mask
    gaps: tuple[I64, I64]
    seed: int
    frozen: F64
    spread: dict[str, float] = field(default_factory=dict)  # network spread (transformed)
    change: dict[str, F64] = field(default_factory=dict)  # per sensor reading-to-reading sd


def draw_scenario(
    sites: Sites,
    start: datetime,
    hours: int,
    interval: int,
    plan: FaultPlan,
    seed: int,
    quantum: dict[str, float],
    extended: bool,
) -> Scenario:
    """Everything drawn up front: time axis, weather, sites, outages and fault events."""
    steps = hours * 60 // interval
    if steps < 1 or len(sites) < 1:
        raise ValueError(f"need at least one step and one sensor; got {hours} h, {len(sites)}")
    first = kst_minute(start)
    minutes = first + interval * np.arange(steps, dtype=np.int64)
    weather = simulate_weather(first, hours, seed)
    props = tuple(quantum)
    rng = random_stream(seed, 3)
    outage = draw_outages(rng, plan, steps, len(sites), interval)
    events = drop_clashes(
        FaultPlanner(rng, plan, props, steps, len(sites), interval).events(), outage
    )
    return Scenario(
        sites,
        minutes,
        interval,
        extended,
        props,
        quantum,
        weather,
        site_model(sites, len(weather.knots), seed),
        plan,
        expand_events(events),
        outage,
        gap_points(outage),
        seed,
        np.full(len(events.sensor), np.nan),
    )


def _fields(sc: Scenario, a: int, b: int, rng: np.random.Generator) -> dict[str, F64]:
    """Clean (fault-free, unquantised) values of every simulated property, (steps, sites)."""
    minutes = sc.minutes[a:b]
    s = Step(
        city_state(sc.weather, minutes),
        Lerp.at(sc.weather.knots, minutes),
        sc.model,
        rng,
        math.sqrt(2.0 / sc.interval),
    )
    out = wind(s)
    out.update(thermal(s, out["wind_speed"]))
    out.update(particles(s))
    out.update(light(s))
    out.update(sound(s))
    if sc.extended:
        out.update(vibration(s, "acceleration", 0.05 * s.p("vibration")))
        out.update(gases(s, sc.interval, out["air_temperature"]))
    else:
        out.update(vibration(s, "vibration", s.p("vibration")))
    return out


def _quantise(values: F64, quantum: float) -> F64:
    """Round to the file's resolution (0.1, 1, 0.0001 …), as the nearest decimal double."""
    decimals = max(0, round(-math.log10(quantum)))
    out: F64 = np.round(values, decimals)
    return out


def _calibrate(sc: Scenario, clean: dict[str, F64]) -> None:
    """Measure, on the first chunk's clean quantised values, the network spread of the
    drift/spike properties (robust spread across sensors at one instant) and each sensor's
    reading-to-reading variability (robust sd of its changes), on the transformed scale."""
    for prop in RELATIVE_SPIKE:
        if prop not in clean:
            continue
        y = _forward(prop, _quantise(clean[prop], sc.quantum[prop]))
        sc.spread[prop] = 1.4826 * float(np.median(np.abs(y - np.median(y, axis=1)[:, None])))
        level = np.median(clean[prop], axis=0) + (_LOG_OFFSET if prop.startswith("pm") else 0.0)
        floor = (
            sc.quantum[prop] / level
            if prop.startswith("pm")
            else np.full(y.shape[1], sc.quantum[prop])
        )
        change = np.abs(np.diff(y, axis=0))
        step = 1.4826 * np.median(change, axis=0) if len(change) else np.zeros(y.shape[1])
        sc.change[prop] = np.maximum(step, floor)


def _apply_faults(sc: Scenario, a: int, b: int, values: dict[str, F64]) -> FaultPoints:
    """Inject the chunk's fault points into ``values`` (in place); return those points."""
    pts = sc.points.between(a, b)
    for index, prop in enumerate(sc.props):
        mine = pts.prop == index
        if not mine.any():
            continue
        x = values[prop]
        t, s, kind, event = pts.step[mine] - a, pts.sensor[mine], pts.kind[mine], pts.event[mine]
        _freeze(sc, event, kind, x[t, s])
        x[t, s] = _faulty(sc, prop, x[t, s], kind, pts.param[mine], sc.frozen[event], s)
    return pts


def _freeze(sc: Scenario, event: I64, kind: I64, clean: F64) -> None:
    """Remember a stuck run's value at its first step (runs may continue into later chunks).

    Points are sorted by step and chunks come in order, so an event's first point seen is its
    start."""
    first = (kind == STUCK) & np.isnan(sc.frozen[event])
    if first.any():
        events, where = np.unique(event[first], return_index=True)
        sc.frozen[events] = clean[first][where]


def _faulty(
    sc: Scenario, prop: str, x: F64, kind: I64, param: F64, frozen: F64, sensor: I64
) -> F64:
    """Values after faults: drift offset, frozen value, spike (kept in range), error code."""
    out = x.copy()
    drift = kind == DRIFT
    out[drift] = _inverse(prop, _forward(prop, x[drift]) + param[drift] * sc.spread.get(prop, 0))
    stuck = kind == STUCK
    out[stuck] = frozen[stuck]
    spike, gross = kind == SPIKE, kind == GROSS
    change = sc.change.get(prop, np.zeros(len(sc.sites)))[sensor[spike]]
    relative = _inverse(prop, _forward(prop, x[spike]) + param[spike] * change)
    out[spike] = _spiked(prop, x[spike], relative - x[spike])
    out[gross] = _spiked(prop, x[gross], param[gross])
    out[kind == RANGE] = param[kind == RANGE]
    return out


def _spiked(prop: str, x: F64, size: F64) -> F64:
    """``x + size``, or ``x - size`` when that leaves the valid range (else the bound)."""
    spec = get_property(prop)
    up, down = x + np.abs(size), x - np.abs(size)
    fits_up, fits_down = up <= spec.valid_max, down >= spec.valid_min
    out: F64 = np.where(
        size > 0,
        np.where(fits_up, up, np.where(fits_down, down, spec.valid_max)),
        np.where(fits_down, down, np.where(fits_up, up, spec.valid_min)),
    )
    return out


def _blank(sc: Scenario, rng: np.random.Generator, values: dict[str, F64], present: Mask) -> None:
    """Missing channels, single missing cells and missing rows become NaN (in place)."""
    shape = present.shape
    for prop, x in values.items():
        x[~present] = np.nan
        absent = sc.model.missing.get(prop)
        if absent is not None:
            x[:, absent] = np.nan
        count = rng.poisson(sc.plan.blank_cells * x.size)
        if count:
            x[rng.integers(0, shape[0], count), rng.integers(0, shape[1], count)] = np.nan


def _labels(sc: Scenario, a: int, values: dict[str, F64], pts: FaultPoints) -> FaultLabels:
    """Labels of the chunk's fault points that hold a value, plus the derived PM columns."""
    parts: list[FaultLabels] = []
    time = utc_micros(sc.minutes)
    for index, prop in enumerate(sc.props):
        mine = pts.prop == index
        targets = [prop, *(d for d, (src, _) in _DERIVED.items() if src == prop and d in values)]
        for target in targets:
            t, s = pts.step[mine], pts.sensor[mine]
            ok = ~np.isnan(values[target][t - a, s])
            kind = np.asarray(KIND_NAMES)[pts.kind[mine][ok]]
            detectable = (pts.kind[mine][ok] != DRIFT) | (
                np.abs(pts.param[mine][ok]) > DRIFT_TOLERANCE
            )
            parts.append(
                FaultLabels(s[ok], time[t[ok]], np.full(int(ok.sum()), target), kind, detectable)
            )
    step, sensor = sc.gaps
    here = (step >= a) & (step < a + len(next(iter(values.values()))))
    for prop, x in values.items():
        ok = ~np.isnan(x[step[here] - a, sensor[here]])
        count = int(ok.sum())
        parts.append(
            FaultLabels(
                sensor[here][ok],
                time[step[here][ok]],
                np.full(count, prop),
                np.full(count, "gap"),
                np.ones(count, bool),
            )
        )
    return FaultLabels.concat(parts)


@dataclass(frozen=True, eq=False)
class Chunk:
    """Consecutive steps of a scenario for every site, ready to write, with their labels."""

    first: int
    minutes: I64
    values: dict[str, F64]  # (steps, sites); NaN = no value
    present: Mask  # (steps, sites): the row exists
    labels: FaultLabels


def simulate_chunks(sc: Scenario) -> Iterator[Chunk]:
    """Simulate, inject, quantise and blank the scenario a chunk of steps at a time."""
    n, steps = len(sc.sites), len(sc.minutes)
    size = max(1, CHUNK_ROWS // n)
    for a in range(0, steps, size):
        b = min(steps, a + size)
        rng = random_stream(sc.seed, 4, a)
        clean = _fields(sc, a, b, rng)
        if a == 0:
            _calibrate(sc, clean)
        values = {p: clean[p] for p in sc.props if p not in _DERIVED}
        pts = _apply_faults(sc, a, b, values)
        for derived, (source, gain) in _DERIVED.items():
            if derived in sc.props:
                values[derived] = values[source] * sc.model.params[gain]
        values = {p: _quantise(values[p], sc.quantum[p]) for p in sc.props}
        present = ~sc.outage[a:b]
        _blank(sc, rng, values, present)
        yield Chunk(a, sc.minutes[a:b], values, present, _labels(sc, a, values, pts))
