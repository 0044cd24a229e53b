"""Control latency benchmark: a reading published → the rule fired → the task on the broker.

A mosquitto of citytwin's own runs on loopback, and ``citytwin serve`` runs in its own process
exactly as deployed: the durable MQTT subscriber ingesting device readings into a DuckDB file
(the embedded default: QC, STA registration, idempotent write), the bus, the control loop with a
rule, the audit log (fsynced), and the MQTT actuator. The rule fires on a sensor's 2-minute
window above 75 µg/m³ and sends a task without approval.

Each trial publishes a high PM2.5 reading (window *w*), then the reading that closes *w* — the
trigger — and times, in this process, from publishing the trigger to receiving the task on
``citytwin/tasks/bench:<sensor>``: receive → batch → QC → store → bus → rule → audit → actuator
→ broker → here. The **baseline**, measured in the same run with the same two clients and the
same broker, is the broker's own publish → receive latency (QoS 1 both ways). The goal is a p95
of at most 50 ms for citytwin. Results also go to ``bench/out/control.json``.

Usage: ``python bench/control.py [--trials 200] [--quick]``
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from citytwin.mqtt.broker import Mosquitto

OUT = Path(__file__).parent / "out"
START = datetime(2026, 6, 1, tzinfo=UTC)
SENSOR = "bench-s1"
CONTROL = """
actuators:
  - match: "bench:*"
    url: {broker}/citytwin/tasks
    ack_timeout: 1h          # nobody answers here: no re-send may disturb the timing
    max_attempts: 1
    expires: 2h
rules:
  - name: bench-pm25
    when: {{property: pm25, scope: sensor, window: 2min, on: {{above: 75}}, off: {{below: 50}}}}
    actions:
      - task: {{actuator: "bench:{{sensor}}", command: alarm, approval: none}}
"""


def client(url: str, name: str) -> mqtt.Client:
    host, port = url.removeprefix("mqtt://").split(":")
    made = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, clean_session=True)
    made.connect(host, int(port))
    made.loop_start()
    return made


def reading(moment: datetime, value: float) -> bytes:
    return json.dumps({"thing": SENSOR, "phenomenonTime": moment.isoformat(),
                       "values": {"pm25": value}, "lon": 127.0, "lat": 37.5}).encode()  # fmt: skip


def serve(folder: Path, broker: Mosquitto) -> subprocess.Popen[bytes]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    control = folder / "control.yaml"
    control.write_text(CONTROL.format(broker=broker.url), encoding="utf-8")
    env = {**os.environ, "CITYTWIN_AUDIT_LOG": str(folder / "audit.jsonl")}
    command = [sys.executable, "-m", "citytwin.cli", "serve", "--port", str(port),
               "--store", f"duckdb:///{folder / 'city.duckdb'}", "--mqtt", broker.url,
               "--ingest-topic", "bench/devices/#", "--control", str(control)]  # fmt: skip
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{root}/control", timeout=2) as answer:
                if answer.status == 200:
                    return server
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            errors = server.stderr.read().decode() if server.stderr else ""
            raise SystemExit(f"citytwin serve did not start: {errors[-2000:]}")
        time.sleep(0.2)


def percentiles(values: list[float]) -> dict[str, float]:
    array = np.asarray(values) * 1000
    return {"p50_ms": float(np.percentile(array, 50)), "p95_ms": float(np.percentile(array, 95)),
            "max_ms": float(array.max()), "n": len(values)}  # fmt: skip


def measure(
    publisher: mqtt.Client, arrivals: queue.Queue[tuple[str, float]], trials: int
) -> tuple[list[float], list[float]]:
    """Control latencies (trigger → task) and broker latencies (publish → receive)."""
    control, broker = [], []
    warm = 3  # the first firings open the actuator's connection and load the catalogue
    for k in range(trials + warm):
        window = START + timedelta(minutes=6 * k)
        publisher.publish(
            f"bench/devices/{SENSOR}", reading(window, 100.0), qos=1
        ).wait_for_publish()
        time.sleep(0.05)  # the high reading is in before its window is closed
        sent = time.perf_counter()
        publisher.publish(
            f"bench/devices/{SENSOR}", reading(window + timedelta(minutes=2), 10.0), qos=1
        )
        topic, received = arrivals.get(timeout=30)
        assert topic.startswith("citytwin/tasks/bench:"), topic
        if k >= warm:
            control.append(received - sent)
        sent = time.perf_counter()
        publisher.publish("bench/echo", b"x" * 200, qos=1)
        topic, received = arrivals.get(timeout=30)
        assert topic == "bench/echo", topic
        if k >= warm:
            broker.append(received - sent)
    return control, broker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="50 trials")
    args = parser.parse_args()
    trials = 50 if args.quick else args.trials
    with tempfile.TemporaryDirectory(prefix="citytwin-bench-control-") as scratch:
        folder = Path(scratch)
        with Mosquitto(folder / "broker") as broker:
            server = serve(folder, broker)
            arrivals: queue.Queue[tuple[str, float]] = queue.Queue()
            observer = client(broker.url, "bench-observer")
            observer.on_message = lambda c, u, m: arrivals.put((m.topic, time.perf_counter()))
            observer.subscribe([("citytwin/tasks/+", 1), ("bench/echo", 1)])
            publisher = client(broker.url, "bench-publisher")
            time.sleep(0.5)  # subscriptions in place
            try:
                control, baseline = measure(publisher, arrivals, trials)
            finally:
                publisher.loop_stop()
                observer.loop_stop()
                server.terminate()
                server.wait(30)
    c, b = percentiles(control), percentiles(baseline)
    ratio = c["p95_ms"] / b["p95_ms"]
    result = {"control": c, "broker": b, "trials": trials, "ratio_p95": ratio}
    OUT.mkdir(exist_ok=True)
    (OUT / "control.json").write_text(json.dumps(result, indent=2))
    print(
        f"control: reading published -> task on the broker  p50 {c['p50_ms']:.1f} ms  "
        f"p95 {c['p95_ms']:.1f} ms  (goal p95 <= 50 ms; {trials} trials)"
    )
    print(
        f"baseline: broker publish -> receive (QoS 1)        p50 {b['p50_ms']:.2f} ms  "
        f"p95 {b['p95_ms']:.2f} ms"
    )
    print(f"ratio p95 control / broker: {ratio:.1f}x")


if __name__ == "__main__":
    main()
