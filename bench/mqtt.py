"""MQTT ingest benchmark: sustained messages/s through ``citytwin ingest mqtt``, with zero loss.

A mosquitto of citytwin's own (``citytwin.mqtt.broker.Mosquitto``) runs on loopback. A separate
process publishes ``--messages`` realistic device readings (1,100 S-DoT-like sensors, six values
each, a reading every 2 minutes, with position and name) at QoS 1 and waits for every PUBACK.
The broker queues them for a persistent session that was created before publishing (a Python
publisher on the same small machine cannot sustain the goal rate, so a live race would measure the
publisher); then each subscriber drains that backlog — on the same broker and the same messages, in
the same run:

- **citytwin**: ``MqttIngest`` — exactly what ``citytwin ingest mqtt`` runs: persistent session,
  QoS 1, batches parsed and validated, STA registration, QC, idempotent write to a DuckDB file
  store, PUBACK only after the commit — drains the queue. Its figure is messages/s from connect
  to the last acknowledged message. The stored observations must equal messages × 6 (zero loss),
  otherwise the benchmark exits with 1.
- **baseline**: a bare paho-mqtt subscriber (persistent session, QoS 1, paho's automatic PUBACK)
  that only counts the messages — what any Python MQTT consumer pays before doing anything.

The ratio citytwin / baseline says what durability, validation and storage cost on top of
receiving; the goal is ≥ 20,000 msg/s for citytwin. The broker saves its persistence every
``--autosave`` seconds here: ``citytwin broker``'s save-on-every-change setting (best durability
under SIGKILL) holds mosquitto to a few hundred messages/s, which would measure the broker, not
the subscriber. Results also go to ``bench/out/mqtt.json``.

Usage: ``python bench/mqtt.py [--messages 200000] [--quick]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from citytwin.mqtt.broker import Mosquitto, parse_broker_url
from citytwin.mqtt.ingest import MqttIngest, MqttOptions
from citytwin.mqtt.publish import Publisher
from citytwin.store import open_store

OUT = Path(__file__).parent / "out"
SENSORS = 1_100
VALUES = ("pm25", "pm10", "air_temperature", "relative_humidity", "noise", "illuminance")
TOPIC = "devices/#"
# paho's message ids wrap at 65,535: waiting for the PUBACKs of each window keeps them unique
WINDOW = 20_000


def device_messages(count: int, *, seed: int = 0) -> list[tuple[str, bytes]]:
    """(topic, payload) of ``count`` readings: sensor ``i % 1100`` every 2 minutes."""
    rng = np.random.default_rng(seed)
    start = datetime(2026, 3, 15, tzinfo=UTC)
    lon = 126.9 + rng.random(SENSORS) * 0.2
    lat = 37.45 + rng.random(SENSORS) * 0.2
    base = {
        "pm25": rng.uniform(5, 60, count),
        "pm10": rng.uniform(10, 120, count),
        "air_temperature": rng.uniform(-5, 30, count),
        "relative_humidity": rng.uniform(20, 95, count),
        "noise": rng.uniform(35, 80, count),
        "illuminance": rng.uniform(0, 50_000, count),
    }
    messages = []
    for number in range(count):
        sensor = number % SENSORS
        at = start + timedelta(minutes=2 * (number // SENSORS))
        payload = {
            "thing": f"V02Q{sensor:07d}",
            "phenomenonTime": at.isoformat().replace("+00:00", "Z"),
            "values": {key: round(float(base[key][number]), 1) for key in VALUES},
            "lon": round(float(lon[sensor]), 6),
            "lat": round(float(lat[sensor]), 6),
            "name": f"S-DoT {sensor}",
        }
        messages.append((f"devices/V02Q{sensor:07d}", json.dumps(payload).encode()))
    return messages


def publish(url: str, count: int, client_id: str) -> None:
    """Publish ``count`` messages at QoS 1 and wait until each was PUBACKed (own process)."""
    messages = device_messages(count)
    with Publisher(url, client_id=client_id) as publisher:
        for start in range(0, count, WINDOW):
            for topic, payload in messages[start : start + WINDOW]:
                publisher.publish(topic, payload)
            publisher.wait_acked(timeout_s=120)


def publish_in_process(url: str, count: int, client_id: str) -> float:
    """Run :func:`publish` in a fresh process; return its wall time."""
    start = time.perf_counter()
    process = multiprocessing.get_context("spawn").Process(
        target=publish, args=(url, count, client_id)
    )
    process.start()
    process.join()
    if process.exitcode != 0:
        sys.exit(f"the publisher failed with exit code {process.exitcode}")
    return time.perf_counter() - start


def bare_paho_client(url: str, client_id: str) -> tuple[mqtt.Client, list[int]]:
    host, port = parse_broker_url(url)
    counted = [0]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.on_connect = lambda c, *_: c.subscribe(TOPIC, qos=1)

    def on_message(*_: object) -> None:
        counted[0] += 1

    client.on_message = on_message
    client.connect(host, port)
    return client, counted


def run_baseline(url: str, count: int) -> float:
    """Create the session, have ``count`` messages queued, drain them counting; return seconds."""
    client, _ = bare_paho_client(url, "bench-baseline")
    for _ in range(20):
        client.loop(0.02)
    client.disconnect()
    publish_in_process(url, count, "bench-publisher-baseline")
    client, counted = bare_paho_client(url, "bench-baseline")
    start = time.perf_counter()
    while counted[0] < count:
        client.loop(0.1)
    elapsed = time.perf_counter() - start
    client.disconnect()
    return elapsed


def run_citytwin(url: str, count: int, store_url: str) -> tuple[float, int, int]:
    """Same for ``MqttIngest``; return seconds, stored observations, quarantined messages."""
    with open_store(store_url) as store:
        options = MqttOptions(client_id="bench-citytwin", idle_exit_s=0.1)
        MqttIngest(store, url, [TOPIC], options=options).run()
        publish_in_process(url, count, "bench-publisher-citytwin")
        options = MqttOptions(client_id="bench-citytwin", max_messages=count)
        summary = MqttIngest(store, url, [TOPIC], options=options).run()
        observations = sum(row.observations for row in store.stats())
    return summary.elapsed_s, observations, summary.quarantined


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--autosave", type=int, default=10, help="broker persistence period (s)")
    parser.add_argument("--quick", action="store_true", help="20,000 messages")
    args = parser.parse_args()
    count = 20_000 if args.quick else args.messages
    scratch = Path(tempfile.mkdtemp(prefix="citytwin-bench-mqtt-"))
    try:
        with Mosquitto(scratch / "broker", autosave_s=args.autosave) as broker:
            print(f"{count:,} QoS 1 messages × {len(VALUES)} values on {broker.url}")
            baseline = run_baseline(broker.url, count)
            ours, observations, quarantined = run_citytwin(
                broker.url, count, f"duckdb:///{scratch / 'city.duckdb'}"
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rate, base_rate = count / ours, count / baseline
    expected = count * len(VALUES)
    print(f"citytwin ingest mqtt (DuckDB) : {ours:6.2f} s  {rate:10,.0f} msg/s")
    print(f"baseline bare paho, counting  : {baseline:6.2f} s  {base_rate:10,.0f} msg/s")
    print(f"ratio citytwin / baseline     : {rate / base_rate:6.2f}  (goal ≥ 20,000 msg/s)")
    print(
        f"stored observations           : {observations:,} of {expected:,}; "
        f"quarantined {quarantined}"
    )
    OUT.mkdir(exist_ok=True)
    (OUT / "mqtt.json").write_text(
        json.dumps(
            {
                "messages": count,
                "values_per_message": len(VALUES),
                "citytwin_s": ours,
                "baseline_s": baseline,
                "citytwin_msg_per_s": rate,
                "baseline_msg_per_s": base_rate,
                "ratio_vs_baseline": rate / base_rate,
                "stored_observations": observations,
                "expected_observations": expected,
            },
            indent=2,
        )
        + "\n"
    )
    if observations != expected or quarantined:
        print("LOSS: stored observations differ from what was published", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
