"""QC: each check on tiny hand-made series, then recall and precision on emulated city data.

The emulated files carry ground-truth faults (:mod:`citytwin.emulator.feeds`): spikes a few
times the sensor's reading-to-reading variability, stuck runs, error codes, slow drifts and
outages. QC must find ≥ 95 % of them while ≥ 90 % of what it flags is a real fault.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from citytwin.emulator import (
    FaultPlan,
    LiveCity,
    LiveSensor,
    QcScore,
    WrittenFeed,
    label_rows,
    load_sites,
    score_flags,
    write_sdot_2020,
    write_sdot_hourly,
)
from citytwin.emulator.feeds import VALUE_FLAGS
from citytwin.emulator.processes import KST
from citytwin.ingest import read_feed
from citytwin.ingest.base import Readings, ThingSpec
from citytwin.ingest.pipeline import datastream_key, ingest
from citytwin.ingest.qc import check_quality, sort_readings
from citytwin.model.quality import Flag
from citytwin.model.sensing import stable_id
from citytwin.store import open_store
from citytwin.store.base import to_micros

T0 = to_micros(datetime(2020, 3, 15, tzinfo=UTC))
MINUTE = 60_000_000
NOW = T0 + 10 * 24 * 60 * MINUTE
START = datetime(2020, 3, 15)  # KST
# fault rates well above the defaults, for enough of each kind in a small test network
BUSY = FaultPlan(spikes=3.0, stuck=0.2, out_of_range=0.7, drift=0.05, outages=0.5,
                 blank_cells=1e-4)  # fmt: skip

Ints = NDArray[np.int64]


def _readings(
    values: dict[str, list[float]], minutes: list[int] | None = None, things: int = 1
) -> Readings:
    """One property series per thing, every 2 minutes unless ``minutes`` says otherwise."""
    count = len(next(iter(values.values())))
    per_thing = count // things
    offsets = np.array(minutes if minutes is not None else list(range(0, 2 * per_thing, 2)))
    time = np.tile(T0 + offsets * MINUTE, things)
    return Readings(
        [ThingSpec(f"test:{i}", f"sensor {i}") for i in range(things)],
        np.repeat(np.arange(things), per_thing),
        time,
        {k: np.asarray(v, np.float64) for k, v in values.items()},
        np.arange(count) + 2,
    )


def _flagged(readings: Readings, prop: str, flag: Flag) -> list[int]:
    bits = check_quality(readings, now_us=NOW)[prop]
    return np.flatnonzero(bits & flag).tolist()


def _wiggle(base: float, count: int, step: float) -> list[float]:
    """A quiet deterministic series: base + 0, 1, 2, 1, 0, 1, 2 … × step."""
    return [base + step * (1 - abs(1 - i % 4)) for i in range(count)]


# -- each check on a hand-made series ---------------------------------------------------------


def test_spike_flags_only_the_glitch() -> None:
    temperature = [10.0 + 0.1 * i for i in range(40)]
    temperature[12] += 2.0  # well below the 8 °C gross size, far above the ramp's roughness
    pm = _wiggle(20.0, 40, 1.0)
    pm[30] = 400.0  # gross: beyond 150 µg/m³ from both neighbours
    readings = _readings({"air_temperature": temperature, "pm25": pm})
    assert _flagged(readings, "air_temperature", Flag.SPIKE) == [12]
    assert _flagged(readings, "pm25", Flag.SPIKE) == [30]
    assert _flagged(readings, "air_temperature", Flag.STEP | Flag.DRIFT | Flag.STUCK) == []
    assert _flagged(readings, "pm25", Flag.STEP | Flag.DRIFT | Flag.STUCK) == []


def test_noise_and_quantisation_are_not_spikes() -> None:
    rng = np.random.default_rng(0)
    temperature = np.round(15 + np.cumsum(rng.normal(0, 0.05, 2000)) + rng.normal(0, 0.1, 2000),
                           1)  # fmt: skip
    readings = _readings({"air_temperature": temperature.tolist()})
    assert _flagged(readings, "air_temperature", Flag.SPIKE | Flag.STEP) == []


def test_step_flags_the_jump_that_stays() -> None:
    pm = _wiggle(20.0, 20, 1.0) + _wiggle(200.0, 20, 1.0)
    readings = _readings({"pm25": pm})
    assert _flagged(readings, "pm25", Flag.STEP) == [20]
    assert _flagged(readings, "pm25", Flag.SPIKE) == []


def test_stuck_flags_the_frozen_run() -> None:
    humidity = _wiggle(60.0, 10, 1.0) + [55.0] * 70 + _wiggle(60.0, 10, 1.0)  # 138 min frozen
    readings = _readings({"relative_humidity": humidity})
    assert _flagged(readings, "relative_humidity", Flag.STUCK) == list(range(10, 80))
    short = _wiggle(60.0, 10, 1.0) + [55.0] * 50 + _wiggle(60.0, 10, 1.0)  # 98 min: not stuck
    assert _flagged(_readings({"relative_humidity": short}), "relative_humidity", Flag.STUCK) == []


def test_recovery_from_a_stuck_run_is_not_a_step() -> None:
    temperature = [10.0] * 70 + [20.0 + 0.1 * i for i in range(10)]
    readings = _readings({"air_temperature": temperature})
    assert _flagged(readings, "air_temperature", Flag.STUCK) == list(range(70))
    assert _flagged(readings, "air_temperature", Flag.STEP | Flag.SPIKE) == []


def test_gap_flags_the_reading_after_a_silence() -> None:
    minutes = [0, 2, 4, 6, 16, 18, 20, 26, 28]  # 10 min silence: gap; 6 min (3 periods): none
    readings = _readings({"noise": [50.0, 51, 52, 51, 50, 51, 52, 51, 50]}, minutes)
    assert _flagged(readings, "noise", Flag.GAP) == [4]


def test_future_times_are_flagged_beyond_the_clock_tolerance() -> None:
    readings = _readings({"noise": [50.0, 51.0, 52.0]}, [0, 2, 4])
    now = T0 + 2 * MINUTE  # reading 1 is now, reading 2 is 2 min ahead: within the tolerance
    assert np.flatnonzero(check_quality(readings, now_us=now)["noise"] & Flag.FUTURE).size == 0
    bits = check_quality(readings, now_us=T0 - 4 * MINUTE)["noise"]  # 4, 6, 8 min ahead
    assert np.flatnonzero(bits & Flag.FUTURE).tolist() == [1, 2]


def test_range_flags_only_the_error_code() -> None:
    temperature = [10.0 + 0.1 * i for i in range(40)]
    temperature[20] = -100.0  # raw 0 of the (v + 100) × 10 encoding
    readings = _readings({"air_temperature": temperature})
    assert _flagged(readings, "air_temperature", Flag.RANGE) == [20]
    assert _flagged(readings, "air_temperature", Flag(~Flag.RANGE & 0x1FF)) == []


def test_drift_flags_the_sensor_that_departs() -> None:
    rng = np.random.default_rng(1)
    sensors, count = 8, 400
    city = 10 + 3 * np.sin(np.arange(count) / 120)
    values = city + rng.normal(0, 0.8, (sensors, 1)) + rng.normal(0, 0.1, (sensors, count))
    values[3, 200:] += np.linspace(0, 4, count - 200)  # +4 °C by the end
    readings = _readings({"air_temperature": np.round(values, 1).ravel().tolist()},
                         things=sensors)  # fmt: skip
    flagged = np.array(_flagged(readings, "air_temperature", Flag.DRIFT))
    assert len(flagged)
    assert set(flagged // count) == {3}
    assert flagged.min() % count > 200
    assert (flagged % count).max() == count - 1


def test_sort_readings_orders_by_thing_then_time() -> None:
    readings = _readings({"noise": [float(v) for v in range(12)]}, things=3)
    shuffled = readings.take(np.array([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]))  # time-major
    ordered = sort_readings(shuffled)
    assert ordered.values["noise"].tolist() == list(range(12))
    assert sort_readings(ordered) is ordered
    backwards = readings.take(np.arange(12)[::-1])
    assert sort_readings(backwards).values["noise"].tolist() == list(range(12))


# -- recall and precision on emulated city data -----------------------------------------------


def _score(written: WrittenFeed, serials: tuple[str, ...]) -> dict[str, QcScore]:
    (batch,) = read_feed("sdot", str(written.path))
    readings = sort_readings(batch.readings)
    flags = check_quality(readings, now_us=NOW)
    rows = label_rows(written.labels, [f"sdot:{s}" for s in serials], readings)
    assert np.all(rows >= 0)  # every labelled value is in the file
    return score_flags(written.labels, rows, flags, readings.values)


def _report(title: str, scores: dict[str, QcScore]) -> str:
    lines = [title, f"{'kind':6s} {'labelled':>9s} {'recall':>7s} {'matching':>9s} "
                    f"{'flagged':>8s} {'precision':>9s}"]  # fmt: skip
    lines += [f"{s.kind:6s} {s.labelled:9d} {s.recall:7.4f} {s.recall_matching:9.4f} "
              f"{s.flagged:8d} {s.precision:9.4f}" for s in scores.values()]  # fmt: skip
    text = "\n".join(lines)
    print(text)
    return text


def _check(scores: dict[str, QcScore], report: str, kinds: tuple[str, ...]) -> None:
    overall = scores["all"]
    assert overall.recall >= 0.95, report
    assert overall.precision >= 0.90, report
    for kind in kinds:
        score = scores[kind]
        assert score.labelled >= 30, report  # enough of every kind to measure
        assert score.recall_matching >= 0.95, report
        assert score.precision >= 0.90, report


Writer = Callable[..., WrittenFeed]


SPIKE_STUCK_RANGE_DRIFT = ("spike", "stuck", "range", "drift")


@pytest.mark.parametrize(("writer", "sensors", "hours", "seed", "kinds"), [
    # 2-minute raw files: 173 k rows, 3.4 M values
    (write_sdot_2020, 120, 48, 1, (*SPIKE_STUCK_RANGE_DRIFT, "gap")),
    # hourly exports over 10 days (outages of minutes rarely leave a gap of 3+ hours)
    (write_sdot_hourly, 150, 240, 2, SPIKE_STUCK_RANGE_DRIFT),
])  # fmt: skip
def test_qc_finds_injected_faults(
    tmp_path: Path, writer: Writer, sensors: int, hours: int, seed: int, kinds: tuple[str, ...]
) -> None:
    sites = load_sites(None, sensors, seed=seed)
    written = writer(tmp_path / "sdot.csv", sites, START, hours, faults=BUSY, seed=seed)
    scores = _score(written, sites.serials)
    _check(scores, _report(f"{writer.__name__}: {sensors} sensors, {hours} h", scores), kinds)


def test_pipeline_stores_the_flags(tmp_path: Path) -> None:
    """parse → QC → memory store: the stored quality bits find the injected faults."""
    sites = load_sites(None, 40, seed=4)
    written = write_sdot_2020(tmp_path / "ALLDATA.csv", sites, START, 12, faults=BUSY, seed=4)
    with open_store("memory://") as store:
        report = ingest(read_feed("sdot", str(written.path)), store)
        frame = store.observations()
    assert report.feeds["sdot"].quarantined == 0
    assert report.feeds["sdot"].stored == written.values == len(frame)
    labels = written.labels
    ids = np.array(
        [
            stable_id("Datastream", datastream_key(f"sdot:{sites.serials[s]}", str(p)))
            for s, p in zip(labels.sensor, labels.prop, strict=True)
        ],
        np.int64,
    )
    key = {
        (int(d), int(t)): i
        for i, (d, t) in enumerate(zip(frame.datastream_id, frame.phenomenon_time, strict=True))
    }
    at = np.array([key[(int(d), int(t))] for d, t in zip(ids, labels.time, strict=True)])
    flagged = (frame.quality & VALUE_FLAGS) != 0
    recall = flagged[at[labels.detectable]].mean()
    precision = np.isin(np.flatnonzero(flagged), at).mean()
    print(f"pipeline: recall {recall:.4f}, precision {precision:.4f}, {flagged.sum()} flagged")
    assert recall >= 0.95
    assert precision >= 0.90


# -- a real local event is not drift -----------------------------------------------------------
# The live emulator's +120 µg/m³ PM2.5 episode in one dong (the end-to-end control test): a fault
# is one sensor leaving the consensus, an event is a place whose neighbouring sensors leave it
# together. Positions spread over ~15 × 15 km of central Seoul, ~88 km per degree of longitude.

CENTRE = (126.98, 37.55)
KM_LON, KM_LAT = 1 / 88.2, 1 / 111.0  # degrees per km at 37.5° N


def _at(east_km: float, north_km: float) -> tuple[float, float]:
    return CENTRE[0] + east_km * KM_LON, CENTRE[1] + north_km * KM_LAT


def _live_city(extra: dict[str, list[tuple[float, float]]], background: int) -> LiveCity:
    """``background`` sensors spread evenly (dong "B<i>" each) plus the ``extra`` groups, one dong
    per group, at the given (east, north) km."""
    rng = np.random.default_rng(7)
    spots = [
        ("B" + str(i), (e, n)) for i, (e, n) in enumerate(rng.uniform(-7.5, 7.5, (background, 2)))
    ]
    spots += [(dong, spot) for dong, group in extra.items() for spot in group]
    sensors = [
        LiveSensor(f"s{i}", *_at(*spot), "11110", dong, dong)
        for i, (dong, spot) in enumerate(spots)
    ]
    return LiveCity(sensors, seed=3, weather=False)


def _live_readings(
    city: LiveCity, moments: list[datetime], located: Callable[[str], bool]
) -> Readings:
    """The city's PM at ``moments`` as one batch sorted by (thing, time); things for which
    ``located`` is False have no position."""
    pm = np.array([city.fields(m)["pm25"] for m in moments]).T  # things × moments
    things = [
        ThingSpec(s.id, s.id, lon=s.lon, lat=s.lat)
        if located(s.dong_code)
        else ThingSpec(s.id, s.id)
        for s in city.sensors
    ]
    n, m = pm.shape
    time = np.tile([to_micros(t) for t in moments], n)
    pm25 = np.round(pm, 1).ravel()
    return Readings(things, np.repeat(np.arange(n), m), time, {"pm25": pm25}, np.arange(n * m) + 2)


def _drifting_dongs(city: LiveCity, readings: Readings, rows: Ints | None = None) -> list[str]:
    bits = check_quality(readings, now_us=to_micros(datetime(2031, 1, 1, tzinfo=KST)))["pm25"]
    hit = np.flatnonzero(bits & Flag.DRIFT)
    if rows is not None:
        hit = np.intersect1d(hit, rows)
    return sorted({city.sensors[i].dong_code for i in readings.thing_index[hit]})


def test_a_local_pm_episode_at_one_instant_is_not_drift() -> None:
    """One MQTT instant: a dong of six sensors within 1 km is an event; one sensor, or two, are
    faults; a sensor without a position cannot be vouched for."""
    cluster = [(-3.0 + 0.3 * (i % 3), 2.0 + 0.4 * (i // 3)) for i in range(6)]
    city = _live_city({"C": cluster, "PAIR": [(5.0, -5.0), (5.3, -5.2)], "ONE": [(-5.5, -5.5)],
                       "NOWHERE": [(6.0, 6.0)]}, background=50)  # fmt: skip
    assert max(np.hypot(e - f, n - g) for e, n in cluster for f, g in cluster) < 1.0
    now = datetime(2026, 3, 15, 14, tzinfo=KST)  # midday: +120 is ~8 between-site spreads
    for dong in ("C", "PAIR", "ONE", "NOWHERE"):
        city.raise_pm(dong, start=now - timedelta(minutes=30), duration=timedelta(hours=1),
                      add=120.0)  # fmt: skip
    readings = _live_readings(city, [now], lambda dong: dong != "NOWHERE")
    assert len(readings) == 60
    assert _drifting_dongs(city, readings) == ["NOWHERE", "ONE", "PAIR"]
    # without positions, as before the exemption, the event itself is flagged
    blind = _live_readings(city, [now], lambda dong: False)
    assert _drifting_dongs(city, blind) == ["C", "NOWHERE", "ONE", "PAIR"]


def test_a_local_pm_episode_over_a_day_is_not_drift_but_a_drift_still_is() -> None:
    """Twelve hours every 4 minutes: a two-hour episode in a dong of seven sensors is not drift,
    while one sensor ramping by the same +120 µg/m³ over four hours is."""
    cluster = [(2.0 + 0.35 * (i % 4), -1.0 + 0.5 * (i // 4)) for i in range(7)]
    city = _live_city({"C": cluster, "DRIFT": [(-6.0, 6.0)]}, background=52)
    start = datetime(2026, 3, 15, 6, tzinfo=KST)
    moments = [start + timedelta(minutes=4 * k) for k in range(180)]
    city.raise_pm("C", start=start + timedelta(hours=5), duration=timedelta(hours=2), add=120.0)
    readings = _live_readings(city, moments, lambda dong: True)
    drifter = len(city.sensors) - 1
    late = readings.thing_index == drifter
    readings.values["pm25"][late] += np.clip(np.arange(180) - 120, 0, None) * 2.0  # 0 → +118
    in_episode = np.flatnonzero(
        np.isin(readings.thing_index, [i for i, s in enumerate(city.sensors) if s.dong_code == "C"])
        & (readings.time >= to_micros(start + timedelta(hours=5)))
        & (readings.time < to_micros(start + timedelta(hours=7)))
    )
    assert len(in_episode) == 7 * 30
    assert _drifting_dongs(city, readings) == ["DRIFT"]
    bits = check_quality(readings, now_us=to_micros(datetime(2031, 1, 1, tzinfo=KST)))["pm25"]
    assert bits[np.flatnonzero(late)[-1]] & Flag.DRIFT  # the ramp's end is caught
    blind = _live_readings(city, moments, lambda dong: False)
    assert _drifting_dongs(city, blind, in_episode) == ["C"]  # the old behaviour


def test_qc_finds_injected_faults_when_sensors_have_positions(tmp_path: Path) -> None:
    """With a registry the neighbour exemption is active, on a network drawn together to the
    density of Seoul's S-DoT (~1,100 sensors over 605 km²: ~20 within 2 km); faults are still
    found, drifts included: independent faults do not rise together."""
    sites = load_sites(None, 120, seed=1)
    lon = sites.lon.mean() + 0.3 * (sites.lon - sites.lon.mean())
    lat = sites.lat.mean() + 0.3 * (sites.lat - sites.lat.mean())
    east, north = (lon[:, None] - lon) * 88.2, (lat[:, None] - lat) * 111.0  # km at 37.5° N
    assert np.median(np.sum(np.hypot(east, north) < 2.0, axis=1) - 1) >= 10
    registry = tmp_path / "sensor_longitude_latitude.csv"
    rows = zip(sites.serials, lat, lon, strict=True)
    registry.write_text(
        "시리얼,위도,경도\n" + "".join(f"{s},{a},{o}\n" for s, a, o in rows), encoding="utf-8"
    )
    written = write_sdot_2020(tmp_path / "sdot.csv", sites, START, 48, faults=BUSY, seed=1)
    (batch,) = read_feed("sdot", str(written.path), registry=registry)
    assert all(t.lon is not None for t in batch.readings.things)
    readings = sort_readings(batch.readings)
    rows_of = label_rows(written.labels, [f"sdot:{s}" for s in sites.serials], readings)
    flags = check_quality(readings, now_us=NOW)
    scores = score_flags(written.labels, rows_of, flags, readings.values)
    report = _report("write_sdot_2020 with positions, S-DoT density", scores)
    _check(scores, report, (*SPIKE_STUCK_RANGE_DRIFT, "gap"))
