"""Run a :class:`~citytwin.emulator.live.LiveCity` over MQTT: readings out, tasks in, acks back.

:class:`LiveCityRunner` is the physical city as the twin sees it through a broker (paho-mqtt,
MQTT 3.1.1, as :mod:`citytwin.control.mqtt_` speaks it):

- each step's device messages go out at QoS 1 to ``{device_prefix}/{thing}`` (default
  ``citytwin/devices``), sensors first, then road links;
- tasks arrive on ``{task_prefix}/+`` (default ``citytwin/tasks``; the last level is the
  actuator id), are applied at the runner's emulated clock (the time of the last step published,
  or the start) through :meth:`LiveCity.apply`, and answered on
  ``{task_prefix}/{actuator id}/ack`` at QoS 1 as :mod:`citytwin.control.mqtt_` reads it: a task
  carried out gets a receipt ``{"task_id", "ok": true, "detail": "received", "done": false}``
  and then the final report ``{"task_id", "ok": true, "detail": <what it did>, "done": true}``;
  a refused one only ``{"task_id", "ok": false, "detail": <reason>, "done": true}``. Except
  for the actuator ids in ``no_ack``, which act but never answer (a device whose uplink is broken),
  and those in ``unresponsive``, which neither act nor answer.

The city is shared between paho's network thread (tasks) and the stepping thread (readings), so
every use of it holds one lock::

    with LiveCityRunner(LiveCity.demo(), "mqtt://127.0.0.1:1883") as runner:
        runner.run_steps(start, count=30, interval_s=1.0)   # 30 steps of 2 emulated minutes
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Self

import paho.mqtt.client as mqtt

from citytwin.emulator.live import LiveCity
from citytwin.errors import ConfigurationError
from citytwin.mqtt.session import SubscribedClient

logger = logging.getLogger(__name__)

DEVICE_PREFIX = "citytwin/devices"
TASK_PREFIX = "citytwin/tasks"
PUBLISH_TIMEOUT_S = 30.0


class LiveCityRunner:
    """Publishes a live city's readings and carries out the tasks sent to its actuators.

    Parameters
    ----------
    city
        The city to run; the runner owns it while running (use :attr:`lock` to look inside).
    url
        ``mqtt://host:port`` of the broker.
    no_ack
        Actuator ids that act on tasks but never acknowledge them.
    unresponsive
        Actuator ids that ignore tasks entirely.
    traffic
        Also publish the road links' ``link_speed`` readings each step.
    """

    def __init__(
        self,
        city: LiveCity,
        url: str,
        *,
        device_prefix: str = DEVICE_PREFIX,
        task_prefix: str = TASK_PREFIX,
        no_ack: Iterable[str] = (),
        unresponsive: Iterable[str] = (),
        traffic: bool = True,
        client_id: str | None = None,
    ) -> None:
        self.city, self.url = city, url
        self.device_prefix = device_prefix.strip("/")
        self.task_prefix = task_prefix.strip("/")
        self.no_ack, self.unresponsive = frozenset(no_ack), frozenset(unresponsive)
        self.traffic = traffic
        self.lock = threading.Lock()
        self.now: datetime | None = None
        self.applied: list[tuple[str, bool, str]] = []  # (actuator, ok, detail) in order
        self._closed = False
        self._connected = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.session = SubscribedClient(
            url, [f"{self.task_prefix}/+"], who="live city", on_message=self._on_message,
            client_id=client_id or f"citytwin-live-city-{uuid.uuid4().hex[:8]}",
            unlimited_inflight=True,
        )  # fmt: skip

    # -- lifecycle ---------------------------------------------------------------------------

    def connect(self) -> Self:
        """Connect and subscribe to the task topics; a broker out of reach raises
        :class:`~citytwin.errors.ConfigurationError` naming its URL."""
        if not self._connected:
            self.session.connect()
            self._connected = True
        return self

    def __enter__(self) -> Self:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the background thread, disconnect. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.stop()
        self.session.close()

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        """A task (paho's network thread; the session logs whatever this raises)."""
        actuator = message.topic.rsplit("/", 1)[-1]
        if actuator in self.unresponsive:
            logger.info("live city: %s ignores a task (unresponsive)", actuator)
            return
        self._handle(actuator, bytes(message.payload))

    def _handle(self, actuator: str, raw: bytes) -> None:
        try:
            payload = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            logger.warning("live city: task for %s is not JSON (%s); dropped", actuator, exc)
            return
        if not isinstance(payload, dict) or not isinstance(payload.get("task_id"), str):
            logger.warning("live city: task for %s has no task_id; dropped", actuator)
            return
        with self.lock:
            at = self.now or datetime.now().astimezone()
            ok, detail = self.city.apply(payload, at=at, actuator=actuator)
            self.applied.append((actuator, ok, detail))
        if actuator in self.no_ack:
            logger.info("live city: %s acted on %s but stays silent", actuator, payload["task_id"])
            return
        topic, task_id = f"{self.task_prefix}/{actuator}/ack", payload["task_id"]
        if ok:  # receipt first, then the final report: the action is instantaneous here
            receipt = {"task_id": task_id, "ok": True, "detail": "received", "done": False}
            self.session.publish(topic, json.dumps(receipt))
        report = {"task_id": task_id, "ok": ok, "detail": detail, "done": True}
        self.session.publish(topic, json.dumps(report, ensure_ascii=False))

    # -- stepping ----------------------------------------------------------------------------

    def publish_step(self, now: datetime) -> int:
        """Publish every reading at ``now`` at QoS 1 and wait until the broker has them all."""
        with self.lock:
            messages = self.city.step(now)
            if self.traffic:
                messages += self.city.link_speeds(now)
            self.now = now
        infos = [
            self.session.publish(f"{self.device_prefix}/{m['thing']}", _encode(m)) for m in messages
        ]
        deadline = time.monotonic() + PUBLISH_TIMEOUT_S
        for info in infos:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            if not info.is_published():
                raise ConfigurationError(
                    f"live city: broker {self.url!r} did not acknowledge the readings at "
                    f"{now.isoformat()} within {PUBLISH_TIMEOUT_S:.0f} s"
                )
        return len(messages)

    def run_steps(
        self,
        start: datetime,
        *,
        step: timedelta = timedelta(minutes=2),
        count: int = 1,
        interval_s: float = 0.0,
    ) -> int:
        """Publish ``count`` steps from ``start``, ``step`` of emulated time apart, sleeping
        ``interval_s`` of real time between them; returns the number of messages published."""
        if not self._connected:
            raise ConfigurationError("live city: run_steps before connect() (use `with`)")
        published = 0
        for k in range(count):
            if self._stop.is_set():
                break
            published += self.publish_step(start + k * step)
            if interval_s and k + 1 < count:
                self._stop.wait(interval_s)
        return published

    def start(
        self,
        start: datetime,
        *,
        step: timedelta = timedelta(minutes=2),
        count: int = 10**9,
        interval_s: float = 1.0,
    ) -> None:
        """:meth:`run_steps` in a background thread until :meth:`stop` (or ``count`` steps)."""
        if self._thread is not None and self._thread.is_alive():
            raise ConfigurationError("live city: already running in the background")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run_quietly, args=(start, step, count, interval_s),
            name="citytwin-live-city", daemon=True,
        )  # fmt: skip
        self._thread.start()

    def _run_quietly(self, start: datetime, step: timedelta, count: int, interval: float) -> None:
        try:
            self.run_steps(start, step=step, count=count, interval_s=interval)
        except Exception:
            logger.exception("live city: the background run stopped")

    def stop(self) -> None:
        """Stop the background run after its current step. Idempotent."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._stop.clear()


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False).encode()
