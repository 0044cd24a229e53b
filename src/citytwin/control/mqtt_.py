"""The MQTT actuator: tasks go out as JSON on a device topic, acknowledgements come back on another.

One actuator talks to one device through a broker (paho-mqtt, MQTT 3.1.1):

- ``send(task)`` publishes ``json.dumps(task.payload())`` at QoS 1 (at-least-once, the delivery
  semantics :mod:`citytwin.control.tasks` assumes), not retained, to ``{prefix}/{actuator id}``;
- the device answers on ``{prefix}/{actuator id}/ack`` with a JSON object
  ``{"task_id": "...", "ok": true, "detail": "...", "done": false}``, passed on as
  ``on_ack(task_id, ok, detail, done=done)`` (``done`` marks the final report).

``on_ack`` runs in paho's network thread (``loop_start``): hand the answer to the thread that owns
the :class:`~citytwin.control.tasks.TaskBook` (a queue) rather than touching the book from it. A
malformed acknowledgement is logged as a warning naming its topic and dropped; nothing raised by
``on_ack`` escapes into the network thread either (it is logged). The session is clean: an
acknowledgement sent while the actuator is disconnected is lost, and the book re-sends the task.

>>> parse_actuator_url("mqtt://10.0.0.5:1884/city/tasks?id=truck-1")
ActuatorAddress(broker_url='mqtt://10.0.0.5:1884', topic_prefix='city/tasks', actuator_id='truck-1')
>>> parse_actuator_url("mqtt://broker?id=pump-2").topic_prefix
'citytwin/tasks'
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import ClassVar, NamedTuple, Self
from urllib.parse import parse_qs, urlsplit

import paho.mqtt.client as mqtt

from citytwin.control.base import AckCallback, Actuator
from citytwin.control.tasks import Task
from citytwin.errors import ConfigurationError
from citytwin.mqtt.broker import parse_broker_url
from citytwin.mqtt.session import SubscribedClient

logger = logging.getLogger(__name__)

DEFAULT_URL = "mqtt://127.0.0.1:1883"
DEFAULT_PREFIX = "citytwin/tasks"
_TOPIC_FORBIDDEN = ("+", "#", "\0")


class ActuatorAddress(NamedTuple):
    broker_url: str
    topic_prefix: str
    actuator_id: str


def parse_actuator_url(url: str) -> ActuatorAddress:
    """``mqtt://host[:port][/topic/prefix]?id=actuator`` → broker URL, topic prefix and id."""
    parts = urlsplit(url)
    host, port = parse_broker_url(f"mqtt://{parts.netloc}" if parts.scheme == "mqtt" else url)
    ids = parse_qs(parts.query).get("id", [])
    if not ids or not ids[-1].strip():
        raise ConfigurationError(f"actuator URL {url!r}: no actuator id; expected ...?id=truck-1")
    prefix = parts.path.strip("/") or DEFAULT_PREFIX
    return ActuatorAddress(f"mqtt://{host}:{port}", prefix, ids[-1])


def _check_topic_part(name: str, value: str) -> None:
    if not value or any(char in value for char in _TOPIC_FORBIDDEN):
        raise ConfigurationError(
            f"{name}={value!r}: expected a non-empty MQTT topic part without '+', '#' or NUL"
        )


class MqttActuator(Actuator):
    """Publishes each task to ``{topic_prefix}/{id}`` and reports the device's acknowledgements.

    Connects (and subscribes to the acknowledgement topic) when constructed; a broker that cannot
    be reached raises :class:`~citytwin.errors.ConfigurationError` naming its URL.
    """

    kind: ClassVar[str] = "mqtt"
    acknowledges: ClassVar[bool] = True

    def __init__(
        self,
        id: str,
        *,
        url: str = DEFAULT_URL,
        topic_prefix: str = DEFAULT_PREFIX,
        on_ack: AckCallback | None = None,
    ) -> None:
        super().__init__(id, on_ack=on_ack)
        _check_topic_part("actuator id", id)
        if "/" in id:
            raise ConfigurationError(f"actuator id={id!r}: expected no '/' (one topic level)")
        _check_topic_part("topic_prefix", topic_prefix)
        self.url = url
        self.topic = f"{topic_prefix.strip('/')}/{id}"
        self.ack_topic = f"{self.topic}/ack"
        self._closed = False
        self.session = SubscribedClient(
            url, [self.ack_topic], who=f"actuator {id!r}", on_message=self._on_message,
            client_id=f"citytwin-actuator-{id}-{uuid.uuid4().hex[:8]}",
        )  # fmt: skip
        self.session.connect()
        logger.info("actuator %s: connected to %s, topic %s", self.id, self.url, self.topic)

    @classmethod
    def from_url(cls, url: str, *, on_ack: AckCallback | None = None) -> Self:
        """``mqtt://host:port/topic-prefix?id=actuator`` (the prefix defaults to citytwin/tasks)."""
        address = parse_actuator_url(url)
        return cls(
            address.actuator_id,
            url=address.broker_url,
            topic_prefix=address.topic_prefix,
            on_ack=on_ack,
        )

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        answer = _parse_ack(message.payload)
        if isinstance(answer, str):
            logger.warning("actuator %s: ignored ack on %s: %s", self.id, message.topic, answer)
            return
        logger.info("actuator %s: ack %s on %s", self.id, answer, message.topic)
        if self.on_ack is None:
            return
        task_id, ok, detail, done = answer
        self.on_ack(task_id, ok, detail, done=done)  # errors: logged by the session

    def send(self, task: Task) -> None:
        """Publish one attempt of ``task`` at QoS 1; paho queues it while reconnecting."""
        if self._closed:
            raise ConfigurationError(f"actuator {self.id!r}: send after close()")
        payload = json.dumps(task.payload())
        info = self.session.publish(self.topic, payload)
        if info.rc == mqtt.MQTT_ERR_NO_CONN:
            logger.warning("actuator %s: not connected; task %s queued", self.id, task.id)
        elif info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConfigurationError(
                f"actuator {self.id!r}: publishing task {task.id} to {self.topic!r} on "
                f"{self.url!r} failed: {mqtt.error_string(info.rc)}"
            )
        logger.info("actuator %s: sent task %s attempt %d", self.id, task.id, task.attempts)

    def close(self) -> None:
        """Disconnect and stop the network thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.session.close()


def _parse_ack(raw: bytes | bytearray) -> tuple[str, bool, str, bool] | str:
    """The answer as ``(task_id, ok, detail, done)``, or what is wrong with it.

    ``{"task_id": "...", "ok": true, "detail": "...", "done": false}``: ``detail`` and ``done``
    are optional (``done`` marks the final report of a finished action).
    """
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"not JSON ({exc})"
    if not isinstance(body, dict):
        return f"expected a JSON object, got {type(body).__name__}"
    task_id, ok = body.get("task_id"), body.get("ok")
    detail, done = body.get("detail", ""), body.get("done", False)
    checks = (
        (isinstance(task_id, str) and bool(task_id), f"task_id={task_id!r}: expected a text"),
        (isinstance(ok, bool), f"ok={ok!r}: expected true or false"),
        (isinstance(detail, str), f"detail={detail!r}: expected a string"),
        (isinstance(done, bool), f"done={done!r}: expected true or false"),
    )  # fmt: skip
    problems = [message for passed, message in checks if not passed]
    if problems:
        return "; ".join(problems)
    return str(task_id), bool(ok), str(detail), bool(done)
