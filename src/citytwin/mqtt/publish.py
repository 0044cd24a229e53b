"""A durable QoS 1 publisher (paho-mqtt) that knows which messages the broker acknowledged.

Tests, benchmarks and device emulators publish with it. It keeps a persistent session
(``clean_session=False``), so after a reconnect paho sends again every message the broker had not
acknowledged (PUBACK); :meth:`Publisher.wait_acked` waits until each one was::

    with Publisher("mqtt://127.0.0.1:1883", client_id="sensor-1") as publisher:
        publisher.publish("devices/sensor-1", payload)
        publisher.wait_acked()

paho numbers messages 1…65,535 and wraps: with more than that many unacknowledged at once, two
share an id, so publish in windows (``wait_acked`` between them) beyond that.
"""

from __future__ import annotations

import threading
import time
from typing import Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from citytwin.mqtt.broker import parse_broker_url


class Publisher:
    """paho client at QoS 1 with its own persistent session, counting PUBACKs."""

    def __init__(self, url: str, *, client_id: str = "citytwin-publisher") -> None:
        self.host, self.port = parse_broker_url(url)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
        )
        self.client.max_inflight_messages_set(0)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_publish = self._on_publish
        self._acked: set[int] = set()
        self._waiting: set[int] = set()
        self._lock = threading.Lock()
        self.published = 0

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason: ReasonCode,
        properties: Properties,
    ) -> None:
        with self._lock:
            if mid in self._waiting:
                self._waiting.discard(mid)
            else:  # acknowledged before publish() recorded it
                self._acked.add(mid)

    def __enter__(self) -> Self:
        self.client.connect(self.host, self.port)
        self.client.loop_start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1; queued by paho while disconnected, sent on reconnect."""
        # not under our lock: paho calls _on_publish holding its own, which publish() takes
        info = self.client.publish(topic, payload, qos=1)
        with self._lock:
            if info.mid in self._acked:
                self._acked.discard(info.mid)
            else:
                self._waiting.add(info.mid)
            self.published += 1

    @property
    def unacknowledged(self) -> int:
        with self._lock:
            return len(self._waiting)

    def wait_acked(self, timeout_s: float = 30.0) -> int:
        """Wait until the broker acknowledged every message; return how many were published."""
        deadline = time.monotonic() + timeout_s
        while self.unacknowledged:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.unacknowledged} of {self.published:,} messages not acknowledged by "
                    f"the broker {self.host}:{self.port} within {timeout_s} s"
                )
            time.sleep(0.01)
        return self.published
