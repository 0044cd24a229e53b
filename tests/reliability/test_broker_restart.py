"""mosquitto restarted twice while a publisher streams readings at QoS 1 into the real
``citytwin ingest mqtt`` process: every published reading is stored exactly once.

What makes it hold (see docs/reliability.md): the broker persists sessions and queued messages
(``persistence true``, saved on SIGTERM); the subscriber keeps a persistent session
(``clean_session=False``, QoS 1) and acknowledges a message only after it is stored, so the broker
redelivers whatever was in flight and a rewrite is a no-op; the publisher (paho, persistent
session) queues while the broker is away and resends what the broker had not acknowledged.

A SIGKILL of the broker is tested in ``tests/mqtt/test_ingest.py`` (with the publisher paused at
the kill: mosquitto may lose a message it had acknowledged but not yet saved, whoever
subscribes).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from citytwin.model.sensing import Datastream, Thing
from citytwin.mqtt.broker import Mosquitto
from citytwin.mqtt.publish import Publisher
from citytwin.store import open_store

MESSAGES = 3_000
DEVICES = 40
PER_PAUSE = 50  # messages between two 0.1 s pauses: about 500 messages/s, a 6 s stream
RESTART_AT = (MESSAGES // 3, 2 * MESSAGES // 3)  # published so far when the broker restarts
BASE = datetime(2026, 3, 15, tzinfo=UTC)
BASE_US = int(BASE.timestamp() * 1_000_000)


def reading(number: int) -> bytes:
    """Message ``number``: device ``d<number % 40>`` at one minute per round of devices, with
    two values derived from the number (each message is a distinct pair of observations)."""
    at = BASE + timedelta(minutes=number // DEVICES)
    return json.dumps(
        {
            "thing": f"d{number % DEVICES}",
            "phenomenonTime": at.isoformat().replace("+00:00", "Z"),
            "values": {"pm25": (number % 997) / 10, "relative_humidity": number % 100},
        }
    ).encode()


def _command(broker: Mosquitto, store: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "citytwin.cli", "ingest", "mqtt", "--broker", broker.url,
        "--topic", "devices/#", "--client-id", "reliability", "--store", store, *extra,
    ]  # fmt: skip


def _publish_all(publisher: Publisher, progress: list[int]) -> None:
    for number in range(MESSAGES):
        publisher.publish(f"devices/d{number % DEVICES}", reading(number))
        progress[0] = number + 1
        if number % PER_PAUSE == PER_PAUSE - 1:
            time.sleep(0.1)


def _stored_readings(store: str) -> tuple[list[tuple[int, float]], int]:
    """(message number, pm25) of every stored pm25 observation, sorted, with repeats; and the
    total count of observations."""
    with open_store(store) as opened:
        streams = {d.id: d for d in opened.entities(Datastream)}
        devices = {t.id: int((t.key or "").removeprefix("mqtt:d")) for t in opened.entities(Thing)}
        frame = opened.observations()
    found = []
    for stream, at, value in zip(
        frame.datastream_id.tolist(), frame.phenomenon_time.tolist(), frame.result.tolist(),
        strict=True,
    ):  # fmt: skip
        if streams[stream].properties["observedProperty"] == "pm25":
            minute = (at - BASE_US) // 60_000_000
            found.append((minute * DEVICES + devices[streams[stream].thing_id], value))
    return sorted(found), len(frame)


@pytest.mark.timeout(120)
def test_broker_restarts_mid_stream_lose_and_double_nothing(
    broker: Mosquitto, tmp_path: Path
) -> None:
    store = f"duckdb:///{tmp_path / 'city.duckdb'}"
    # the persistent session exists from here on: the broker queues for it, up or restarted
    subprocess.run(_command(broker, store, "--idle-exit", "0.1"), check=True, timeout=30,
                   capture_output=True)  # fmt: skip
    subscriber = subprocess.Popen(
        _command(broker, store, "--idle-exit", "3"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert subscriber.stderr is not None
        assert "ingesting devices/#" in subscriber.stderr.readline()  # it connects right after
        with Publisher(broker.url, client_id="reliability-publisher") as publisher:
            progress = [0]
            sender = threading.Thread(target=_publish_all, args=(publisher, progress), daemon=True)
            sender.start()
            for mark in RESTART_AT:
                while progress[0] < mark and sender.is_alive():
                    time.sleep(0.002)
                broker.restart(pause_s=0.3)  # SIGTERM: mosquitto saves its state and exits
            sender.join(60)
            published = publisher.wait_acked(60)
        out, err = subscriber.communicate(timeout=60)
    finally:
        if subscriber.poll() is None:
            subscriber.kill()
            subscriber.wait(10)
    assert subscriber.returncode == 0, err
    assert published == MESSAGES
    row = next(line for line in out.splitlines() if line.startswith("│"))
    cells = [cell.strip().replace(",", "") for cell in row.split("│")[1:8]]
    received, acknowledged, stored, duplicates, _, quarantined, reconnects = map(int, cells)
    assert reconnects >= len(RESTART_AT)  # the subscriber saw both restarts
    assert (stored, quarantined) == (2 * MESSAGES, 0)
    # messages in flight at a restart come again; each redelivery is two duplicate values
    assert received == MESSAGES + duplicates // 2
    found, total = _stored_readings(store)
    assert [number for number, _ in found] == list(range(MESSAGES)), "lost or doubled readings"
    assert all(value == (number % 997) / 10 for number, value in found)
    assert total == 2 * MESSAGES
    assert acknowledged >= MESSAGES
