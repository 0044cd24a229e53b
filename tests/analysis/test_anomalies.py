"""Sensor faults versus real events on emulated PM2.5 networks with injected ground truth.

Scoring is per reading (stricter than per episode): for each class, precision = readings
predicted *and* labelled as the class / readings predicted as it, recall = the same / readings
labelled as it, over the readings the scenario scores (ambiguous event tails and small drift are
left out, see :mod:`citytwin.emulator.events`). The figures are recomputed here with plain numpy
rather than taken from :func:`score_anomalies` alone.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import ArrayLike, NDArray

from citytwin.analysis.anomalies import EVENT, FAULT, NORMAL, AnomalyResult, detect_anomalies
from citytwin.emulator.events import NO_ANOMALIES, AnomalyScenario, score_anomalies
from citytwin.emulator.events import simulate_anomalies as simulate
from citytwin.errors import ValidationError
from citytwin.model.quality import Flag

LOG_OFFSET = 5.0  # PM differs between sites by a factor: work on log(x + 5 µg/m³)


def _detect(
    sc: AnomalyScenario, values: NDArray[np.float64] | None = None, flags: ArrayLike | None = None
) -> AnomalyResult:
    x = sc.values if values is None else values
    return detect_anomalies(x, sc.positions, flags=flags, times=sc.times, log_offset=LOG_OFFSET)


def _precision_recall(
    pred: NDArray[np.int8], sc: AnomalyScenario, code: int
) -> tuple[float, float]:
    p, t = pred[sc.scored], sc.labels[sc.scored]
    hit = np.sum((p == code) & (t == code))
    return float(hit / np.sum(p == code)), float(hit / np.sum(t == code))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_faults_and_events_are_separated_per_reading(seed: int) -> None:
    sc = simulate(n_sensors=200, days=2, step_minutes=10, seed=seed)
    kinds = set(sc.episodes["cause"])
    assert {"plume", "spike", "stuck", "offset", "range"} <= kinds  # every kind is exercised
    result = _detect(sc)
    table = score_anomalies(result.labels, sc)
    for name, code in (("fault", FAULT), ("event", EVENT)):
        precision, recall = _precision_recall(result.labels, sc, code)
        assert precision >= 0.9, (seed, name, precision, recall)
        assert recall >= 0.9, (seed, name, precision, recall)
        assert table.loc[name, "precision"] == pytest.approx(precision)
        assert table.loc[name, "recall"] == pytest.approx(recall)
        assert table.loc[name, "labelled"] == np.sum(sc.labels[sc.scored] == code)


def test_each_injected_event_is_one_detected_event_with_its_members() -> None:
    sc = simulate(seed=4)
    frame = _detect(sc).to_frame()
    found = frame[frame["kind"] == "event"]
    injected = sc.episodes[sc.episodes["kind"] == "event"]
    detected = [set(m) for m in found["members"].tolist()]
    for first, last, members in zip(
        injected["start"], injected["end"], injected["members"].tolist(), strict=True
    ):
        overlap = (found["start"] <= last) & (found["end"] >= first)
        shared = [
            len(m & set(members)) / len(members)
            for m, o in zip(detected, overlap, strict=True)
            if o
        ]
        assert max(shared, default=0.0) >= 0.8, (first, members)  # most members in one episode
    for row in found.itertuples():  # no event where none was injected
        assert ((injected["start"] <= row.end) & (injected["end"] >= row.start)).any(), row


def test_city_wide_rise_is_weather_not_an_anomaly() -> None:
    sc = simulate(seed=3, plan=NO_ANOMALIES)
    hours = np.arange(sc.values.shape[1]) * sc.step_minutes / 60
    smog = 1 + 2 * np.clip(np.sin(np.pi * (hours - 12) / 12), 0, None) * (hours < 24)  # × 3
    base = _detect(sc)
    everyone = _detect(sc, sc.values * smog[None, :])
    assert everyone.counts()["event"] == 0
    # the tripling leaves only chance false alarms (< 0.1 % of readings), as without it
    for result in (base, everyone):
        assert result.counts()["fault"] < 0.001 * sc.values.size
    assert np.mean(everyone.labels != base.labels) < 0.001
    # the same rise over a 2.5 km disc is one event holding every sensor inside
    inside = np.hypot(*(sc.positions - sc.positions[17]).T) < 2500
    local = sc.values.copy()
    local[inside] *= smog[None, :]
    place = _detect(sc, local)
    plateau = (hours > 16) & (hours < 20)
    assert np.mean(place.labels[np.ix_(inside, plateau)] == EVENT) > 0.95
    assert np.mean(place.labels[np.ix_(~inside, plateau)] == EVENT) < 0.01


def test_qc_flags_raise_the_fault_evidence() -> None:
    sc = simulate(seed=5, plan=NO_ANOMALIES)
    rng = np.random.default_rng(5)
    sensors, times = rng.choice(200, 30, replace=False), rng.integers(10, 280, 30)
    x = sc.values.copy()
    x[sensors, times] = (x[sensors, times] + 5) * 1.2 - 5  # +20 %: within a sensor's wander
    quiet = _detect(sc, x)
    assert np.all(quiet.labels[sensors, times] == NORMAL)
    flagged = np.zeros(x.shape, bool)
    flagged[sensors, times] = True
    assert np.all(_detect(sc, x, flags=flagged).labels[sensors, times] == FAULT)
    bits = np.zeros(x.shape, np.int64)
    bits[sensors, times] = Flag.SPIKE | Flag.GAP
    flagged_result = _detect(sc, x, flags=bits)
    assert np.all(flagged_result.labels[sensors, times] == FAULT)
    causes = flagged_result.to_frame().query("kind == 'fault'")["cause"]
    assert (causes == "flag").sum() >= 30 - 1  # one episode per reading unless two touch
    bits[sensors, times] = Flag.GAP  # a gap says nothing about the value itself
    assert np.all(_detect(sc, x, flags=bits).labels[sensors, times] == NORMAL)


def test_a_spike_flag_inside_an_event_stays_an_event() -> None:
    sc = simulate(seed=0)
    row = sc.episodes[sc.episodes["kind"] == "event"].iloc[0]
    members, middle = list(row.members), (row.start + row.end) // 2
    assert np.all(sc.labels[members, middle] == EVENT)
    bits = np.zeros(sc.values.shape, np.int64)
    bits[members, middle] = Flag.SPIKE  # a QC spike test firing at a plume's onset
    result = _detect(sc, flags=bits)
    assert np.all(result.labels[members, middle] == EVENT)
    bits[members, middle] = Flag.RANGE  # an out-of-range value is wrong whatever happens nearby
    assert np.all(_detect(sc, flags=bits).labels[members, middle] == FAULT)


def test_a_stuck_sensor_is_a_fault_while_its_neighbours_vary() -> None:
    sc = simulate(seed=6, plan=NO_ANOMALIES)
    x = sc.values.copy()
    x[42, 100:130] = x[42, 100]  # frozen for 5 h
    result = _detect(sc, x)
    assert np.all(result.labels[42, 100:130] == FAULT)
    episode = result.to_frame().query("sensor == 42").iloc[0]
    assert (episode["start"], episode["end"], episode["cause"]) == (100, 129, "stuck")
    assert episode["start_time"] == sc.times[100]


def test_bad_input_names_the_input_and_the_expected_shape() -> None:
    xy = np.random.default_rng(0).uniform(0, 5000, (20, 2))
    x = np.ones((20, 30))
    with pytest.raises(
        ValidationError, match=r"positions: expected shape \(20, 2\), got \(19, 2\)"
    ):
        detect_anomalies(x, xy[:19])
    bad = xy.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValidationError, match=r"positions: row 3 .* expected finite"):
        detect_anomalies(x, bad)
    with pytest.raises(ValidationError, match="20 sensors, expected at least neighbours"):
        detect_anomalies(x, xy, neighbours=20)
    with pytest.raises(ValidationError, match=r"flags: expected shape \(20, 30\)"):
        detect_anomalies(x, xy, flags=np.zeros((20, 29), bool))
    with pytest.raises(ValidationError, match="values: expected a 2-D"):
        detect_anomalies(np.ones(20), xy)
    with pytest.raises(ValidationError, match="must be numbers"):
        detect_anomalies([["a"] * 30] * 20, xy)
