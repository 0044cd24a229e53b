"""The MQTT actuator against a real mosquitto and a fake device (a paho client), driving a TaskBook.

Without mosquitto these tests skip locally and fail in CI (see ``tests/conftest.py``).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from citytwin.control.base import open_actuator
from citytwin.control.mqtt_ import MqttActuator, parse_actuator_url
from citytwin.control.tasks import TaskBook, TaskState, idempotency_key
from citytwin.errors import ConfigurationError
from citytwin.mqtt.broker import Mosquitto, free_port

T0 = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)
TIMEOUT = timedelta(seconds=30)
TOPIC = "citytwin/tasks/truck-1"
Ack = tuple[str, bool, str]


class Device:
    """A fake truck: records every task it receives and answers with ``reply(payload)``, if any."""

    def __init__(self, url: str, reply: Callable[[dict[str, object]], list[bytes]]) -> None:
        self.received: list[dict[str, object]] = []
        self._reply = reply
        self._subscribed = threading.Event()
        self._lock = threading.Lock()
        host, port = url.removeprefix("mqtt://").split(":")
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fake-truck-1")
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect(host, int(port))
        self.client.subscribe(TOPIC, qos=1)
        self.client.loop_start()
        assert self._subscribed.wait(5), "the fake device did not subscribe within 5 s"

    def _on_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, reasons: object, props: object
    ) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        payload = json.loads(message.payload)
        with self._lock:
            self.received.append(payload)
        for answer in self._reply(payload):
            client.publish(f"{TOPIC}/ack", answer, qos=1)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def wait_received(self, count: int) -> None:
        wait_for(lambda: self.count == count)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(0.01)


def ok_reply(payload: dict[str, object]) -> list[bytes]:
    return [json.dumps({"task_id": payload["task_id"], "ok": True, "detail": "done"}).encode()]


def create_task(book: TaskBook, command: str = "dispatch_sweeper") -> str:
    key = idempotency_key("dust-alert", "district:7", "2025-07-01T12", command)
    task = book.create(
        key, actuator_id="truck-1", command=command, now=T0, parameters={"street": "Main St"}
    )
    assert task.state is TaskState.APPROVED
    return key


def test_acknowledged_end_to_end(broker: Mosquitto) -> None:
    acks: queue.Queue[Ack] = queue.Queue()
    device = Device(broker.url, ok_reply)
    book = TaskBook()
    key = create_task(book)
    url = f"{broker.url}/citytwin/tasks?id=truck-1"
    try:
        with open_actuator(url, on_ack=lambda *answer, done=False: acks.put(answer)) as actuator:
            assert isinstance(actuator, MqttActuator)
            assert actuator.acknowledges
            task = book.mark_sent(key, now=T0)
            actuator.send(task)
            task_id, ok, detail = acks.get(timeout=5)
    finally:
        device.close()
    book.on_ack(task_id, ok, detail, now=T0 + timedelta(seconds=1))
    assert (task_id, ok, detail) == (task.id, True, "done")
    assert task.state is TaskState.ACKNOWLEDGED
    assert task.detail == "done"
    assert device.received == [task.payload()]
    delivered = device.received[0]
    assert delivered["idempotency_key"] == key
    assert delivered["command"] == "dispatch_sweeper"
    assert delivered["parameters"] == {"street": "Main St"}
    assert delivered["attempt"] == 1


def test_silent_device_expires_after_max_attempts(broker: Mosquitto) -> None:
    acks: list[Ack] = []
    device = Device(broker.url, lambda payload: [])
    book = TaskBook()
    key = create_task(book)
    now = T0
    try:
        with MqttActuator(
            "truck-1", url=broker.url, on_ack=lambda *a, done=False: acks.append(a)
        ) as actuator:
            task = book.mark_sent(key, now=now)
            actuator.send(task)
            device.wait_received(1)
            for attempt in (2, 3):  # max_attempts is 3: two retries after the first send
                now += TIMEOUT
                (retry,) = book.due_retries(now)
                assert retry.attempts == attempt
                actuator.send(retry)
                device.wait_received(attempt)
            now += TIMEOUT
            assert book.due_retries(now) == []
            assert book.expire(now) == [task]
    finally:
        device.close()
    assert task.state is TaskState.EXPIRED
    assert task.attempts == 3
    assert acks == []
    assert [message["attempt"] for message in device.received] == [1, 2, 3]
    assert {message["idempotency_key"] for message in device.received} == {key}


def test_malformed_acks_are_logged_and_ignored(
    broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    bad = [b"not json", b"[1, 2]", b'{"task_id": 5, "ok": true}', b'{"task_id": "x", "ok": "yes"}']

    def reply(payload: dict[str, object]) -> list[bytes]:
        return [*bad, *ok_reply(payload)]  # QoS 1 on one topic from one client: order is kept

    acks: queue.Queue[Ack] = queue.Queue()
    device = Device(broker.url, reply)
    book = TaskBook()
    key = create_task(book)
    caplog.set_level(logging.WARNING, logger="citytwin.control.mqtt_")
    try:
        with MqttActuator(
            "truck-1", url=broker.url, on_ack=lambda *a, done=False: acks.put(a)
        ) as actuator:
            task = book.mark_sent(key, now=T0)
            actuator.send(task)
            assert acks.get(timeout=5) == (task.id, True, "done")
    finally:
        device.close()
    assert acks.empty()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(bad)
    assert all(f"{TOPIC}/ack" in message for message in warnings)
    assert "not JSON" in warnings[0]
    assert "task_id=5" in warnings[2]
    assert "ok='yes'" in warnings[3]


def test_unreachable_broker_names_the_url() -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"
    with pytest.raises(ConfigurationError, match=f"'{url}' cannot be reached"):
        MqttActuator("truck-1", url=url)


def test_url_parsing_and_bad_names() -> None:
    address = parse_actuator_url("mqtt://broker.local:1884/city/fleet/?id=truck-9")
    assert address == ("mqtt://broker.local:1884", "city/fleet", "truck-9")
    with pytest.raises(ConfigurationError, match="no actuator id"):
        parse_actuator_url("mqtt://broker.local:1884/city")
    with pytest.raises(ConfigurationError, match="'http'"):
        parse_actuator_url("http://broker.local/city?id=a")
    with pytest.raises(ConfigurationError, match="topic part"):
        MqttActuator("truck/#", url="mqtt://127.0.0.1:1")
