"""QC: each check on tiny hand-made series, then recall and precision on emulated city data.

The emulated files carry ground-truth faults (:mod:`citytwin.emulator.feeds`): spikes a few
times the sensor's reading-to-reading variability, stuck runs, error codes, slow drifts and
outages. QC must find ≥ 95 % of them while ≥ 90 % of what it flags is a real fault.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from citytwin.emulator import (
    FaultPlan,
    QcScore,
    WrittenFeed,
    label_rows,
    load_sites,
    score_flags,
    write_sdot_2020,
    write_sdot_hourly,
)
from citytwin.emulator.feeds import VALUE_FLAGS
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
