"""Labelled data for the anomaly detector: single-sensor faults versus real, local events.

:func:`simulate_anomalies` draws one PM2.5-like property on a network of sensors over a
~20 × 15 km city (EPSG:5186 metres) and returns an :class:`AnomalyScenario`: the readings
(sensors × times, µg/m³, NaN missing), the positions, a ground-truth label per reading
(0 normal, 1 fault, 2 event), a ``scored`` mask and the list of injected episodes.

The clean field is city level × smooth spatial gradient × site factor × local wander: the city
level follows traffic and the boundary-layer depth (:func:`.processes.traffic`,
:func:`.processes.mixing`) and a slow AR(1) episode process, so all sensors rise and fall together;
the measurement adds an optical counter's multiplicative (6 %) and additive (0.8 µg/m³) noise.

- **events** (fires, construction dust, a plume): a disc of radius 1–3 km around a random point
  that holds at least ``min_members`` sensors; every sensor inside sees an additive rise of
  1.5–5 × the local background at the centre, tapering to 60 % of that at the rim, for 1–6 h,
  with a cosine onset (20 % of the duration) and a slower cosine decay (35 %);
- **faults** on single sensors, sized on ``log(x + 5)`` like :mod:`.faults` (PM noise is
  multiplicative): ``spike`` (one reading × e^0.8–2.5), ``stuck`` (value frozen for 1.3–3 × the
  longer of an hour and six readings), ``offset`` (a level jump of ±0.5–1.2 for 1–12 h),
  ``drift`` (a gain ramping from a start in the second half of the series to ±5–10 network
  spreads at its end, as in :mod:`.faults`) and ``range`` (the error codes −1 and 9999).

**Labels.** A reading is an *event* reading where the event adds at least
:data:`DETECTABLE_RISE` (50 %) of the clean background, and a *fault* reading wherever a fault
alters it, except drift whose offset is still under :data:`.faults.DRIFT_TOLERANCE` (4) network
spreads (the robust spread of log readings between sites at one instant: beyond it no siting
explains the departure). Event tails below the 50 % and drift below 4 spreads are real but
ambiguous, so ``scored`` is False there and scoring
ignores them. Faults are not drawn on sensors within 3 km of an event's disc from an hour before
it to an hour after: a fault *inside* a plume is a different question (it overlaps both classes),
while faults and events at different places overlap in time freely. A sensor has at most one
lasting fault (offset or drift), and a drift starts in the second half of the series: a sensor
faulty for most of the series has no healthy baseline left (in operation the days before a drift
provide it). Lasting faults (stuck, offset, drift) within 3 km of each other do not overlap in
time: independent faults rarely coincide, and three neighbours rising together *are* an event
by this definition.

>>> sc = simulate_anomalies(n_sensors=60, days=0.5, seed=1)
>>> sc.values.shape, sc.positions.shape, sorted(set(sc.episodes["kind"])) == ["event", "fault"]
((60, 72), (60, 2), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from citytwin.emulator.faults import DRIFT_TOLERANCE
from citytwin.emulator.processes import F64, I64, Mask, ar1, mixing, random_stream, traffic

DETECTABLE_RISE: Final = 0.5  # an event/drift labelled where it adds ≥ 50 % of the background
ORIGIN: Final = (187_000.0, 543_000.0)  # south-west corner of the emulated city, EPSG:5186
EXTENT: Final = (20_000.0, 15_000.0)
NORMAL, FAULT, EVENT = 0, 1, 2
SPIKE, STUCK, OFFSET, DRIFT, RANGE = range(5)
FAULT_NAMES: Final = ("spike", "stuck", "offset", "drift", "range")
_LOG_OFFSET: Final = 5.0
_KEEP_OUT_M: Final = 3000.0
_Row = tuple[str, str, int, int, int, tuple[int, ...]]  # kind, cause, sensor, start, end, members


@dataclass(frozen=True)
class AnomalyPlan:
    """How many events and faults to inject (rates as in :class:`.faults.FaultPlan`).

    Attributes
    ----------
    events_per_day
        Local events per day over the whole city.
    event_radius_m, event_hours, event_peak
        Disc radius, duration and peak rise (× the background at the centre) ranges.
    min_members
        Fewest sensors inside an event's disc (the disc grows to hold them).
    spikes, out_of_range
        Per 1,000 readings.
    stuck, offsets
        Per sensor and day.
    drift
        Fraction of sensors that drift.
    missing
        Probability that a reading is missing.
    """

    events_per_day: float = 4.0
    event_radius_m: tuple[float, float] = (1000.0, 3000.0)
    event_hours: tuple[float, float] = (1.0, 6.0)
    event_peak: tuple[float, float] = (1.5, 5.0)
    min_members: int = 3
    spikes: float = 0.5
    stuck: float = 0.04
    offsets: float = 0.04
    drift: float = 0.02
    out_of_range: float = 0.2
    missing: float = 0.002


DEFAULT_ANOMALIES: Final = AnomalyPlan()
NO_ANOMALIES: Final = AnomalyPlan(0.0, spikes=0.0, stuck=0.0, offsets=0.0, drift=0.0,
                                  out_of_range=0.0, missing=0.0)  # fmt: skip


@dataclass(frozen=True, eq=False)
class AnomalyScenario:
    """Readings of one property with ground truth (see the module docstring).

    ``values``, ``labels`` and ``scored`` are ``(n_sensors, n_times)``; ``times`` are KST wall-clock
    ``datetime64[m]``; ``episodes`` has one row per injected event or fault: kind, cause
    (plume or the fault kind), sensor (−1 for events), start and end step (inclusive), members.
    """

    values: F64
    positions: F64
    times: NDArray[np.datetime64]
    step_minutes: int
    labels: NDArray[np.int8]
    scored: Mask
    episodes: pd.DataFrame


def simulate_anomalies(
    n_sensors: int = 200,
    days: float = 2.0,
    step_minutes: int = 10,
    seed: int = 0,
    *,
    plan: AnomalyPlan = DEFAULT_ANOMALIES,
    start: str = "2026-03-02T00:00",
) -> AnomalyScenario:
    """Simulate a labelled network of PM2.5 sensors with injected faults and events.

    The same ``seed`` gives the same scenario; each ingredient draws from its own
    :func:`.processes.random_stream`, so changing the plan's fault rates keeps the events.
    """
    steps = round(days * 1440 / step_minutes)
    if n_sensors < plan.min_members or steps < 2:
        raise ValueError(f"need ≥ {plan.min_members} sensors and 2 steps, got {n_sensors}, {steps}")
    minutes = np.arange(steps, dtype=np.int64) * step_minutes
    positions = _positions(random_stream(seed, 40, 0), n_sensors)
    clean = _background(random_stream(seed, 40, 1), positions, minutes, step_minutes)
    rises, rows = _events(random_stream(seed, 40, 2), plan, positions, clean, step_minutes)
    rng = random_stream(seed, 40, 3)
    measured = (clean + rises) * np.exp(rng.normal(0, 0.06, clean.shape))
    measured = np.maximum(measured + rng.normal(0, 0.8, clean.shape), 0.0)
    labels = np.where(rises >= DETECTABLE_RISE * clean, EVENT, NORMAL).astype(np.int8)
    scored = (rises == 0) | (labels == EVENT)
    keep_out = _keep_out(positions, rows, steps, step_minutes)
    faults = _draw_faults(random_stream(seed, 40, 4), plan, n_sensors, steps, step_minutes)
    near = np.hypot(*(positions[:, None, :] - positions[None]).transpose(2, 0, 1)) < _KEEP_OUT_M
    values, rows = _apply_faults(
        np.round(measured, 1), faults, (keep_out, near), labels, scored, rows
    )
    missing = random_stream(seed, 40, 5).random(values.shape) < plan.missing
    values[missing], labels[missing], scored[missing] = np.nan, NORMAL, True
    times = np.datetime64(start, "m") + minutes.astype("timedelta64[m]")
    frame = pd.DataFrame(rows, columns=["kind", "cause", "sensor", "start", "end", "members"])
    return AnomalyScenario(values, positions, times, step_minutes, labels, scored, frame)


def _positions(rng: np.random.Generator, n: int) -> F64:
    """Sensors over the city: two thirds spread evenly, a third around three busy centres."""
    spread = rng.uniform(0, 1, (n, 2)) * EXTENT
    centres = rng.uniform(0.2, 0.8, (3, 2)) * EXTENT
    clustered = centres[rng.integers(0, 3, n)] + rng.normal(0, 2500.0, (n, 2))
    pick = rng.random(n) < 1 / 3
    out: F64 = np.clip(np.where(pick[:, None], clustered, spread), 0, EXTENT) + ORIGIN
    return out


def _background(rng: np.random.Generator, positions: F64, minutes: I64, step: int) -> F64:
    """Clean PM2.5 (sensors × times): city level × gradient × site factor × local wander."""
    hour = (minutes % 1440) / 60.0
    per_hour = 60.0 / step
    episode = np.exp(ar1(rng, len(minutes), 10 * per_hour, 0.3))
    city = 20.0 * episode * (0.6 + 0.5 * traffic(hour)) / (0.55 + 0.45 * mixing(hour))
    u = (positions - positions.mean(axis=0)) / 10_000.0  # the industrial west is dirtier
    gradient = np.exp(-0.2 * u[:, 0] + 0.1 * u[:, 1] + 0.1 * np.sin(2.5 * u[:, 0]) * u[:, 1])
    site = np.exp(rng.normal(0, 0.15, len(positions)))
    wander = ar1(rng, len(minutes), 2 * per_hour, 0.08, len(positions)).T
    out: F64 = city[None, :] * (gradient * site)[:, None] * np.exp(wander)
    return out


def _event_shape(length: int) -> F64:
    """Relative rise over an event's readings: cosine onset, plateau, slower cosine decay."""
    tau = (np.arange(length) + 0.5) / length
    onset = 0.5 * (1 - np.cos(np.pi * np.clip(tau / 0.2, 0, 1)))
    decay = 0.5 * (1 + np.cos(np.pi * np.clip((tau - 0.65) / 0.35, 0, 1)))
    out: F64 = onset * decay
    return out


def _events(
    rng: np.random.Generator, plan: AnomalyPlan, positions: F64, clean: F64, step: int
) -> tuple[F64, list[_Row]]:
    """Additive rises (sensors × times) of the local events, and their episode rows."""
    n, steps = clean.shape
    count = int(rng.poisson(plan.events_per_day * steps * step / 1440.0))
    rises, rows = np.zeros_like(clean), list[_Row]()
    for _ in range(count):  # a handful of events, each a vectorised disc
        centre = positions[rng.integers(n)] + rng.normal(0, 300.0, 2)
        distance = np.hypot(*(positions - centre).T)
        nearest = np.sort(distance)[plan.min_members - 1]
        radius = max(rng.uniform(*plan.event_radius_m), nearest + 1.0)
        length = max(2, round(rng.uniform(*plan.event_hours) * 60 / step))
        if length > steps:
            continue
        first = int(rng.integers(0, steps - length + 1))
        members = np.flatnonzero(distance < radius)
        window = slice(first, first + length)
        level = float(np.median(clean[members, window]))
        taper = 1 - 0.4 * (distance[members] / radius) ** 2
        peak = rng.uniform(*plan.event_peak) * level
        rises[members, window] += peak * taper[:, None] * _event_shape(length)[None, :]
        rows.append(("event", "plume", -1, first, first + length - 1, tuple(members.tolist())))
    return rises, rows


def _keep_out(positions: F64, rows: list[_Row], steps: int, step: int) -> Mask:
    """(sensors, times) where no fault is drawn: near an event's disc, an hour either side."""
    out = np.zeros((len(positions), steps), bool)
    margin = math.ceil(60 / step)
    for _, _, _, first, last, members in rows:
        inside = positions[np.asarray(members, np.int64)]
        gap = np.min(np.hypot(*(positions[:, None, :] - inside[None]).transpose(2, 0, 1)), 1)
        near = gap < _KEEP_OUT_M
        out[near, max(0, first - margin) : last + margin + 1] = True
    return out


def _draw_faults(
    rng: np.random.Generator, plan: AnomalyPlan, n: int, steps: int, step: int
) -> tuple[I64, I64, I64, I64, F64]:
    """Fault kinds, sensors, starts, lengths and sizes (log scale; drift: network spreads;
    range: the error code)."""
    days, per_hour = steps * step / 1440.0, 60.0 / step
    counts = (
        rng.poisson(plan.spikes / 1000 * n * steps),
        rng.poisson(plan.stuck * n * days),
        rng.poisson(plan.offsets * n * days),
        rng.binomial(n, plan.drift),
        rng.poisson(plan.out_of_range / 1000 * n * steps),
    )
    kind = np.repeat(np.arange(5), counts)
    stuck = np.ceil(rng.uniform(1.3, 3.0, len(kind)) * max(6.0, per_hour)).astype(np.int64)
    offset = np.rint(rng.uniform(1.0, 12.0, len(kind)) * per_hour).astype(np.int64)
    drift_start = rng.integers(int(0.5 * steps), int(0.8 * steps) + 1, len(kind))
    length = np.choose(kind, [np.ones_like(stuck), stuck, offset, steps - drift_start,
                              rng.integers(1, 3, len(kind))])  # fmt: skip
    length = np.clip(length, 1, steps - 2)
    start = np.where(kind == DRIFT, drift_start, rng.integers(1, steps - length))
    sign = rng.choice([-1.0, 1.0], len(kind))
    size = np.choose(kind, [rng.uniform(0.8, 2.5, len(kind)), np.zeros(len(kind)),
                            sign * rng.uniform(0.5, 1.2, len(kind)),
                            sign * rng.uniform(5.0, 10.0, len(kind)),
                            rng.choice([-1.0, 9999.0], len(kind))])  # fmt: skip
    return kind, rng.integers(0, n, len(kind)), start, np.minimum(length, steps - start), size


def _apply_faults(
    values: F64,
    faults: tuple[I64, I64, I64, I64, F64],
    keep_out: tuple[Mask, Mask],
    labels: NDArray[np.int8],
    scored: Mask,
    rows: list[_Row],
) -> tuple[F64, list[_Row]]:
    """Inject the faults that clash with no event and no earlier fault (3-reading margin);
    update ``labels`` and ``scored`` in place."""
    busy, near = keep_out[0].copy(), keep_out[1]
    crowded, long = np.zeros_like(busy), np.zeros(len(values), bool)
    logged = np.log(values + _LOG_OFFSET)
    centred = np.abs(logged - np.median(logged, axis=0))
    spread = 1.4826 * float(np.median(np.median(centred, axis=0)))  # between sites, one instant
    for kind, sensor, start, length, size in zip(*faults, strict=True):  # tens of faults
        span = slice(int(start), int(start + length))
        lasting = kind in (OFFSET, DRIFT, STUCK)
        clash = busy[sensor, max(0, start - 3) : start + length + 3].any()
        if clash or (lasting and (crowded[sensor, span].any() or (kind != STUCK and long[sensor]))):
            continue
        busy[sensor, span], long[sensor] = True, long[sensor] or kind in (OFFSET, DRIFT)
        crowded[near[sensor], span] |= lasting
        if kind == DRIFT:
            ramp = size * spread * np.arange(1, length + 1) / length
            values[sensor, span] = np.exp(logged[sensor, span] + ramp) - _LOG_OFFSET
            scored[sensor, span] = np.abs(ramp) >= DRIFT_TOLERANCE * spread
        elif kind == STUCK:
            values[sensor, span] = values[sensor, start]
        elif kind == RANGE:
            values[sensor, span] = size
        else:
            values[sensor, span] = np.exp(logged[sensor, span] + size) - _LOG_OFFSET
        labels[sensor, span] = FAULT
        last = int(start + length - 1)
        rows.append(("fault", FAULT_NAMES[kind], int(sensor), int(start), last, (int(sensor),)))
    out: F64 = np.round(np.maximum(values, -1.0), 1).astype(np.float64)
    return out, rows


def score_anomalies(predicted: NDArray[np.integer], scenario: AnomalyScenario) -> pd.DataFrame:
    """Per-reading precision and recall of each anomalous class over the scored readings.

    A reading counts once: precision = readings predicted *and* labelled as the class / readings
    predicted as it; recall = the same / readings labelled as it. Unscored (ambiguous) readings
    are left out of both. Rows: fault, event; columns: precision, recall, labelled, predicted.
    """
    pred, truth = predicted[scenario.scored], scenario.labels[scenario.scored]
    rows = {}
    for name, code in (("fault", FAULT), ("event", EVENT)):
        hit = int(np.sum((pred == code) & (truth == code)))
        said, true = int(np.sum(pred == code)), int(np.sum(truth == code))
        rows[name] = (hit / max(said, 1), hit / max(true, 1), true, said)
    return pd.DataFrame.from_dict(
        rows, orient="index", columns=["precision", "recall", "labelled", "predicted"]
    )
