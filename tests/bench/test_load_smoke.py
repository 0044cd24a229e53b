"""Smoke run of ``bench/load.py``'s core: the production topology (mosquitto → ``citytwin ingest
mqtt`` → PostgreSQL ← ``citytwin serve``) under a small compressed load loses and doubles nothing.

300 devices × 17 values register themselves (round 0), then are published round after round for
about 30 s as fast as the ingest stores them. PostgreSQL's own count of observations per round
must equal what was published — nothing lost, nothing extra — the ingest must report no
duplicate, and sampled observations must become readable through the SensorThings API. No
timing is asserted (the figures are ``bench/load.py``'s job).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from citytwin.errors import ConfigurationError
from citytwin.mqtt.broker import find_mosquitto

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from _load_city import PROPERTIES, observations_per_round  # noqa: E402
from _load_publish import PublishPlan  # noqa: E402
from _load_run import run_load  # noqa: E402

SENSORS = 300


@pytest.mark.timeout(180)
def test_compressed_load_loses_and_doubles_nothing(postgres_url: str) -> None:
    try:
        find_mosquitto()
    except ConfigurationError as exc:
        pytest.skip(str(exc))  # conftest's rule: a skip fails in CI
    plan = PublishPlan(
        broker_url="", store_url="", sensors=SENSORS, duration_s=30.0, samples_per_round=2
    )

    result = run_load(plan, sample_every_s=5.0, postgres_url=postgres_url)

    per_round = SENSORS * len(PROPERTIES)
    assert per_round == observations_per_round(SENSORS) == 5_100
    assert result.datastreams == per_round  # every (device, property) registered itself
    assert result.rounds >= 2
    assert result.published == (result.rounds + 1) * per_round  # round 0 + the timed ones
    assert result.stored == result.published
    assert (result.lost, result.extra, result.duplicates, result.quarantined) == (0, 0, 0, 0)
    summary = result.ingest_summary
    assert summary["received"] == summary["acknowledged"] == (result.rounds + 1) * SENSORS
    assert summary["stored"] == result.published
    assert result.samples == 2 * result.rounds
    assert result.unseen == 0  # each sampled observation became readable over the API
    assert result.latencies_s == sorted(result.latencies_s)
    assert len(result.latencies_s) == result.samples
