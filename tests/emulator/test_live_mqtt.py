"""The live city over a real mosquitto: readings out, a spray task in, its ack back, PM down.

The task goes out through the control package's own :class:`MqttActuator` and :class:`TaskBook`,
so the topics and payloads are the ones the twin uses. Without mosquitto these tests skip
locally and fail in CI (see ``tests/conftest.py``).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from citytwin.control.mqtt_ import MqttActuator
from citytwin.control.tasks import TaskBook, TaskState, idempotency_key
from citytwin.emulator.effects import SPRAY_PM25_FRACTION, SPRAY_TAU_MINUTES
from citytwin.emulator.live import LiveCity
from citytwin.emulator.live_mqtt import LiveCityRunner
from citytwin.emulator.processes import KST
from citytwin.errors import ConfigurationError
from citytwin.mqtt.broker import Mosquitto
from citytwin.mqtt.messages import DeviceReading, parse_message

T0 = datetime(2026, 4, 14, 9, tzinfo=KST)
STEP = timedelta(minutes=2)
Ack = tuple[str, bool, str, bool]


@pytest.fixture(scope="module")
def sensors() -> LiveCity:
    return LiveCity.demo(seed=7, sensors=120)


class Listener:
    """A paho client recording every device reading and acknowledgement."""

    def __init__(self, url: str) -> None:
        self.readings: list[DeviceReading] = []
        self.topics: list[str] = []
        self.acks: list[tuple[str, dict[str, object]]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        host, port = url.removeprefix("mqtt://").split(":")
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="live-city-listener")
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, int(port))
        self.client.subscribe([("citytwin/devices/#", 1), ("citytwin/tasks/+/ack", 1)])
        self.client.loop_start()
        assert self._subscribed.wait(5), "the listener did not subscribe within 5 s"

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            if message.topic.endswith("/ack"):
                self.acks.append((message.topic, json.loads(message.payload)))
                return
            reading = parse_message(bytes(message.payload))
            assert isinstance(reading, DeviceReading), reading
            self.readings.append(reading)
            self.topics.append(message.topic)

    def count(self) -> int:
        with self._lock:
            return len(self.readings)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(0.01)


def dong_pm(readings: list[DeviceReading], dong: str, at: datetime) -> float:
    micros = int(at.timestamp() * 1_000_000)
    values = [
        r.values["pm25"]
        for r in readings
        if r.time_us == micros and r.properties and r.properties.get("dong_code") == dong
    ]
    assert values, f"no reading of dong {dong} at {at}"
    return float(np.mean(values))


def test_spray_task_is_acknowledged_and_lowers_pm(broker: Mosquitto, sensors: LiveCity) -> None:
    city = LiveCity(sensors.sensors, seed=sensors.seed, traffic=sensors.state.traffic)
    reference = LiveCity(sensors.sensors, seed=sensors.seed)
    dong = Counter(city.dong_codes.tolist()).most_common(1)[0][0]
    n = len(city.sensors)
    listener = Listener(broker.url)
    acks: queue.Queue[Ack] = queue.Queue()
    book = TaskBook()
    try:
        with LiveCityRunner(city, broker.url) as runner:
            assert runner.run_steps(T0, count=1) == n + 48
            wait_for(lambda: listener.count() == n + 48)
            assert f"citytwin/devices/{city.sensors[0].id}" in listener.topics
            assert "citytwin/devices/link-1-2" in listener.topics
            key = idempotency_key("pm-alert", f"dong:{dong}", "2026-04-14T09", "spray")
            task = book.create(key, actuator_id=f"spray-truck:{dong}", command="spray", now=T0,
                               requires_approval=True)  # fmt: skip
            book.approve(key, actor="operator", reason="test", now=T0)

            def on_ack(task_id: str, ok: bool, detail: str, /, done: bool = False) -> None:
                acks.put((task_id, ok, detail, done))

            with MqttActuator(task.actuator_id, url=broker.url, on_ack=on_ack) as actuator:
                actuator.send(book.mark_sent(key, now=T0))
                receipt, report = acks.get(timeout=10), acks.get(timeout=10)
            assert receipt == (task.id, True, "received", False)
            task_id, ok, detail, done = report
            assert (task_id, ok, done) == (task.id, True, True)
            assert dong in detail
            book.on_ack(task_id, True, receipt[2], now=T0 + timedelta(seconds=5))
            assert book.get(key).state is TaskState.ACKNOWLEDGED
            book.complete(task_id, ok, detail, now=T0 + timedelta(seconds=6))
            assert book.get(key).state is TaskState.DONE
            runner.run_steps(T0 + STEP, count=1)
            wait_for(lambda: listener.count() == 2 * (n + 48))
    finally:
        listener.close()
    assert runner.applied == [(f"spray-truck:{dong}", True, detail)]
    assert listener.acks[0][0] == f"citytwin/tasks/spray-truck:{dong}/ack"
    after = dong_pm(listener.readings, dong, T0 + STEP)
    unsprayed = np.mean(
        [
            m["values"]["pm25"]
            for m in reference.step(T0 + STEP)
            if m["properties"]["dong_code"] == dong
        ]
    )
    expected = 1 - SPRAY_PM25_FRACTION * np.exp(-STEP.total_seconds() / 60 / SPRAY_TAU_MINUTES)
    assert after / unsprayed == pytest.approx(expected, abs=0.005)
    assert after < 0.85 * dong_pm(listener.readings, dong, T0)


def test_silent_and_unresponsive_actuators(broker: Mosquitto, sensors: LiveCity) -> None:
    city = LiveCity(sensors.sensors, seed=sensors.seed)
    listener = Listener(broker.url)
    sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="live-city-test-sender")
    host, port = broker.url.removeprefix("mqtt://").split(":")
    sender.connect(host, int(port))
    sender.loop_start()
    try:
        with LiveCityRunner(city, broker.url, no_ack={"vms:a"}, unresponsive={"vms:b"},
                            traffic=False) as runner:  # fmt: skip
            runner.run_steps(T0, count=1)
            for sign in ("a", "b", "c"):
                task = {"task_id": f"t-{sign}", "idempotency_key": f"k-{sign}", "command": "show",
                        "parameters": {"text": f"sign {sign}"}}  # fmt: skip
                sender.publish(
                    f"citytwin/tasks/vms:{sign}", json.dumps(task), qos=1
                ).wait_for_publish(5)
            refused = {"task_id": "t-d", "idempotency_key": "k-d", "command": "launch"}
            sender.publish("citytwin/tasks/vms:d", json.dumps(refused), qos=1).wait_for_publish(5)
            wait_for(lambda: len(listener.acks) == 3)
            with runner.lock:
                signs = dict(city.signs)
            time.sleep(0.3)  # give a wrongly sent ack time to arrive
            acks = dict(listener.acks[1:])  # the refusal may overtake the report of vms:c
            assert [topic for topic, _ in listener.acks].count("citytwin/tasks/vms:c/ack") == 2
            assert acks["citytwin/tasks/vms:c/ack"] == {
                "task_id": "t-c", "ok": True, "detail": "sign c shows 'sign c'", "done": True
            }  # fmt: skip
            refusal = acks["citytwin/tasks/vms:d/ack"]
            assert (refusal["ok"], refusal["done"]) == (False, True)
            assert str(refusal["detail"]).startswith("unknown command 'launch'")
        runner.close()  # idempotent
    finally:
        sender.disconnect()
        sender.loop_stop()
        listener.close()
    assert signs == {"a": "sign a", "c": "sign c"}
    assert listener.count() == len(city.sensors)


def test_background_run_publishes_until_stopped(broker: Mosquitto, sensors: LiveCity) -> None:
    city = LiveCity(sensors.sensors, seed=sensors.seed)
    listener = Listener(broker.url)
    n = len(city.sensors)
    try:
        with LiveCityRunner(city, broker.url, traffic=False) as runner:
            runner.start(T0, step=STEP, count=3, interval_s=0.01)
            wait_for(lambda: listener.count() == 3 * n)
            runner.stop()
            assert runner.now == T0 + 2 * STEP
    finally:
        listener.close()
    times = sorted({r.time_us for r in listener.readings})
    assert np.diff(times).tolist() == [STEP.total_seconds() * 1e6] * 2


def test_unreachable_broker_is_named() -> None:
    city = LiveCity([], seed=0)
    with pytest.raises(ConfigurationError, match=r"mqtt://127.0.0.1:1'.* cannot be reached"):
        LiveCityRunner(city, "mqtt://127.0.0.1:1").connect()
