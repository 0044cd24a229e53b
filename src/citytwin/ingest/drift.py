"""The drift check of :mod:`citytwin.ingest.qc`: one sensor departing from the network, not a
place whose air really changes (see :func:`drift_flags`)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from citytwin.ingest.qc_batch import NEAR_RADIUS_M, BatchOrder, Bools, Floats, shifted
from citytwin.model.quality import Flag

DRIFT_WINDOW_MINUTES = 60  # running mean of a sensor's departure (at least 3 readings)
DRIFT_BASELINE_MINUTES = 180  # start of a series that defines its usual departure (≥ 12 readings)
DRIFT_SIGMAS = 5.0  # change of departure, in robust spreads of such changes over the batch
DRIFT_INSTANT_SIGMAS = 3.5  # … and in spreads of the changes at the same instant
DRIFT_ABS_SIGMAS = 6.0  # departure, in robust between-site spreads
DRIFT_FLOOR = 0.25  # changes under this share of the between-site spread are never drift
DRIFT_MIN_SENSORS = 5
COHERENT_NEIGHBOURS = 2  # other sensors departing alike that make a departure an event
COHERENT_RADIUS_M = NEAR_RADIUS_M  # … within this distance (see drift_flags)
COHERENT_SHARE = 0.5  # … each by at least this share of the sensor's own departure


def drift_flags(values: Floats, order: BatchOrder, bits: NDArray[np.int32]) -> NDArray[np.int32]:
    """Persistent departure from the network consensus at the same instants.

    A sensor's *departure* is its value minus the consensus (a 2-sd trimmed mean over the
    sensors at that instant, so that the drifting sensor does not pull it), smoothed by a running
    mean over :data:`DRIFT_WINDOW_MINUTES`. Sites genuinely differ — a heat island, a busy road,
    the calibration of a cheap PM sensor — so the departure itself is a poor test: instead each
    series' *change* of departure since its first :data:`DRIFT_BASELINE_MINUTES` is tested. It
    is a drift when the change is large both for the batch — :data:`DRIFT_SIGMAS` robust spreads
    of all changes — and for the time of day — :data:`DRIFT_INSTANT_SIGMAS` spreads of the
    changes at the same instant (estimated from their mean absolute value). The second condition
    spares the central sites whose heat island fades by day all at once; the first spares the
    quiet night hours, when every site barely changes. On emulated data the two together keep
    clean sensors below the thresholds while a drift of four between-site spreads exceeds them
    (see ``tests/ingest/test_qc.py``). The hour-long mean keeps the lag behind a slow drift
    short; the three-hour baseline averages out a site's own wander.

    A sensor that enters the batch already drifted is caught by its departure beyond
    :data:`DRIFT_ABS_SIGMAS` between-site spreads. Both tests need :data:`DRIFT_MIN_SENSORS`
    sensors at the instant.

    The spread of changes is never taken below :data:`DRIFT_FLOOR` × the between-site spread: in
    a small network of near-identical sensors it would otherwise be tiny, and the pull of a
    drifting sensor on the consensus (1/n of its drift) would flag all the others. On realistic
    networks the changes spread over ~0.7 between-site spreads and the floor is inactive.

    A drift is a fault of one sensor; a place whose air really changes moves all its sensors at
    once. So a row either test flags is spared when at least :data:`COHERENT_NEIGHBOURS` other
    sensors within :data:`COHERENT_RADIUS_M` depart at the same instant in the same direction by at
    least :data:`COHERENT_SHARE` of its own departure (see :func:`_coherent`; the principle by which
    :mod:`citytwin.analysis.anomalies` tells a fault from an event, after the buddy check of Lussana
    et al. 2010, QJRMS 136, 1075–1088). Each test is checked on its own statistic: the change of
    departure for the change test — so that a neighbour with a standing high siting offset (a busy
    road) cannot vouch for a drifting sensor — and the running departure for the outright test. The
    neighbours' series are smoothed by the same hour-long mean as the sensor's, so a shared rise
    looks alike in both (an instant residual would lag differently and let one noisy reading vote);
    in a one-instant batch (MQTT) both are the instant residual. 2 km spans a dong and the 1–3 km of
    local events (fires, construction dust, plumes; :mod:`citytwin.emulator.events`) and holds a few
    neighbours on a network as dense as Seoul's S-DoT (~1,100 sensors over 605 km², ~20 within
    2 km); two sensors rising together may still be two faults, three are an event. A 50 % share
    admits the taper of a plume towards its rim. Independent drifts almost never meet this: two more
    within 2 km, at the same time, the same way and of similar size.
    """
    usable = ~np.isnan(values) & (bits & (Flag.RANGE | Flag.SPIKE | Flag.STUCK) == 0)
    if not usable.any():
        return np.zeros_like(bits)
    groups = order.time_group
    n_groups = int(groups.max()) + 1
    x = np.where(usable, values, 0.0)
    count = np.bincount(groups, usable, n_groups)
    mean = np.bincount(groups, x, n_groups) / np.maximum(count, 1)
    deviation = np.where(usable, x - mean[groups], 0.0)
    std = np.sqrt(np.bincount(groups, deviation**2, n_groups) / np.maximum(count - 1, 1))
    inner = usable & (np.abs(deviation) <= 2 * std[groups] + 1e-12)
    count_in = np.bincount(groups, inner, n_groups)
    consensus = np.bincount(groups, np.where(inner, x, 0), n_groups) / np.maximum(count_in, 1)
    enough = usable & (count_in[groups] >= DRIFT_MIN_SENSORS)
    residual = np.where(enough, x - consensus[groups], np.nan)
    minutes = order.period_us / 60_000_000
    window = max(3, round(DRIFT_WINDOW_MINUTES / minutes))
    running = _running_mean(residual, order, window)
    baseline = max(12, round(DRIFT_BASELINE_MINUTES / minutes))
    change = running - _baseline(residual, order, baseline)
    spread = _robust_sd(residual)
    if not spread:
        return np.zeros_like(bits)
    size = np.abs(change)
    known = np.isfinite(size)
    instant = (
        1.2533
        * np.bincount(groups, np.where(known, size, 0.0), n_groups)
        / np.maximum(np.bincount(groups, known, n_groups), 1)
    )  # σ from the mean absolute change
    floor = DRIFT_FLOOR * spread
    moved = (size > DRIFT_SIGMAS * max(_robust_sd(change), floor)) & (
        size > DRIFT_INSTANT_SIGMAS * np.maximum(instant, floor)[groups]
    )
    moved &= enough
    moved &= ~_coherent(change, moved, order)
    outright = enough & (np.abs(running) > DRIFT_ABS_SIGMAS * spread)
    outright &= ~_coherent(running, outright, order)
    return np.where(moved | outright, np.int32(Flag.DRIFT), np.int32(0))


def _coherent(departure: Floats, candidate: Bools, order: BatchOrder) -> Bools:
    """The ``candidate`` rows that at least :data:`COHERENT_NEIGHBOURS` neighbours (sensors
    within :data:`COHERENT_RADIUS_M`) match at the same instant: a ``departure`` of the same sign
    and at least :data:`COHERENT_SHARE` of the row's own."""
    out = np.zeros(len(departure), bool)
    rows = np.flatnonzero(candidate)
    if not rows.size:
        return out
    start, nearby = order.neighbours
    thing = order.thing[rows]
    counts = start[thing + 1] - start[thing]
    owner = np.repeat(np.arange(rows.size), counts)  # one entry per (candidate, neighbour)
    first = np.repeat(start[thing] - (np.cumsum(counts) - counts), counts)
    at = order.row_at(nearby[first + np.arange(owner.size)], order.time_group[rows][owner])
    own = departure[rows][owner]
    other = np.where(at >= 0, departure[at], 0.0)
    agree = (at >= 0) & np.isfinite(other) & (other * np.sign(own) >= COHERENT_SHARE * np.abs(own))
    out[rows] = np.bincount(owner, agree, rows.size) >= COHERENT_NEIGHBOURS
    return out


def _robust_sd(values: Floats) -> float:
    """1.4826 × median absolute value of the finite values (0 when there are none)."""
    finite = values[np.isfinite(values)]
    return 1.4826 * float(np.median(np.abs(finite))) if finite.size else 0.0


def _baseline(values: Floats, order: BatchOrder, first: int) -> Floats:
    """Each row's series mean over its first ``first`` non-NaN values."""
    present = ~np.isnan(values)
    series = order.series
    seen = np.cumsum(present)
    before = shifted(seen, 1, 0)[order.series_start]
    early = present & (seen - before <= first)
    total = np.bincount(series, np.where(early, values, 0.0))
    count = np.bincount(series, early)
    out: Floats = (total / np.maximum(count, 1))[series]
    return out


def _running_mean(values: Floats, order: BatchOrder, window: int) -> Floats:
    """Trailing mean over the last ``window`` non-NaN values of each series (NaN-aware)."""
    present = ~np.isnan(values)
    filled = np.where(present, values, 0.0)
    csum, ccount = np.cumsum(filled), np.cumsum(present)
    lo = order.window_start(window)
    base_sum = np.where(lo > 0, csum[lo - 1], 0.0)
    base_count = np.where(lo > 0, ccount[lo - 1], 0)
    n = ccount - base_count
    out: Floats = np.where(n > 0, (csum - base_sum) / np.maximum(n, 1), np.nan)
    return out
