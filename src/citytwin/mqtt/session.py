"""A paho-mqtt client that stays subscribed: the MQTT actuator's and the live city's session.

:class:`SubscribedClient` connects (MQTT 3.1.1, clean session), subscribes to its topics at QoS 1
on *every* connect — a clean session means the broker forgot them after a drop — and
:meth:`~SubscribedClient.connect` returns only once the broker has answered both CONNACK and
SUBACK. A broker out of reach, a refused connection or a refused subscription raises
:class:`~citytwin.errors.ConfigurationError` naming the broker URL and who was connecting.
Messages go to ``on_message`` in paho's network thread; whatever it raises is logged, never
allowed to stop that thread. paho reconnects by itself (1–30 s back-off) and queues publishes
meanwhile.

>>> session = SubscribedClient("mqtt://127.0.0.1:1", ["a/+"], who="doc", on_message=print)
>>> session.topics, session.url
(['a/+'], 'mqtt://127.0.0.1:1')
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from citytwin.errors import ConfigurationError
from citytwin.mqtt.broker import parse_broker_url

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
QOS = 1


class SubscribedClient:
    """A connected, subscribed paho client (see the module docstring).

    ``who`` names the owner in messages ("actuator 'truck-1'", "live city"); ``client_id``
    defaults to ``citytwin-<random>``; ``unlimited_inflight`` lifts paho's cap of 20 QoS 1
    messages in flight (a publisher of many readings at once).
    """

    def __init__(
        self,
        url: str,
        topics: Sequence[str],
        *,
        who: str,
        on_message: Callable[[mqtt.MQTTMessage], object],
        client_id: str | None = None,
        unlimited_inflight: bool = False,
    ) -> None:
        self.url, self.topics, self.who = url, list(topics), who
        self.host, self.port = parse_broker_url(url)
        self._handler = on_message
        self._ready = threading.Event()
        self._refusal = ""
        self._started = self._closed = False
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"citytwin-{uuid.uuid4().hex[:12]}",
            clean_session=True,
        )
        if unlimited_inflight:
            self.client.max_inflight_messages_set(0)
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def connect(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """Connect, subscribe and wait for the broker's answers (idempotent)."""
        if self._started:
            return
        where = f"{self.who}: MQTT broker {self.url!r}"
        try:
            self.client.connect(self.host, self.port)
        except OSError as exc:
            raise ConfigurationError(f"{where} cannot be reached: {exc}") from None
        self.client.loop_start()
        self._started = True
        if not self._ready.wait(timeout_s) or self._refusal:
            self.close()
            reason = self._refusal or f"no CONNACK/SUBACK within {timeout_s:.0f} s"
            raise ConfigurationError(f"{where} refused {self.who}: {reason}")
        logger.info("%s: connected to %s, subscribed to %s", self.who, self.url, self.topics)

    def publish(self, topic: str, payload: str | bytes) -> mqtt.MQTTMessageInfo:
        """Publish at QoS 1 (not retained); paho queues it while reconnecting."""
        return self.client.publish(topic, payload, qos=QOS, retain=False)

    def close(self) -> None:
        """Disconnect and stop the network thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._started:
            self.client.disconnect()
            self.client.loop_stop()

    # -- paho callbacks (network thread) ----------------------------------------------------------
    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._refusal = str(reason)
            self._ready.set()
            return
        client.subscribe([(topic, QOS) for topic in self.topics])  # again on every reconnect

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        failed = [str(reason) for reason in reasons if reason.is_failure]
        if failed:
            self._refusal = f"subscription to {self.topics} refused: {', '.join(failed)}"
        self._ready.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            self._handler(message)
        except Exception:  # never let one bad message stop paho's network thread
            logger.exception("%s: handling a message on %s failed", self.who, message.topic)
