"""The SensorThings MQTT extension (OGC 18-088 section 14.2) as a bridge to an MQTT broker.

Receive updates via MQTT (14.2.2)
    The bridge subscribes to the app bus (``observations/#``, the frames the ingest pipeline and
    MQTT creates announce) and publishes every observation's full STA JSON — the HTTP read side's
    rendering, ``@iot.id`` and ``@iot.selfLink`` included — on ``v1.1/Observations`` (the entity
    set) and ``v1.1/Datastreams(<id>)/Observations`` (the set navigated from its Datastream).

    It also subscribes to ``entities/#``, the events the HTTP write routes publish after each
    commit (``{"event": "create"|"update", "entity_set": ..., "id": ...}``, see
    :func:`~citytwin.api.sta_write.entity_event`), looks the entity up in the store and publishes
    its STA JSON (:func:`entity_topics` says where): a created entity on its entity set
    (``v1.1/Things``), on itself (``v1.1/Things(5)``) and on every navigation set it is linked
    into (a Datastream on ``v1.1/Things(<id>)/Datastreams``, ``v1.1/Sensors(<id>)/Datastreams``
    and ``v1.1/ObservedProperties(<id>)/Datastreams``); an updated one on itself, on the topic of
    each property that changed (``v1.1/Things(5)/name`` → ``{"name": ...}``) and on the
    navigation sets a changed link put it in. The entity is read when the event is handled, so a
    notification always carries its state at that moment.

Create via MQTT (14.2.1)
    With ``create=True`` the bridge subscribes to ``v1.1/Observations`` and
    ``v1.1/+/Observations``. A publication on ``v1.1/Datastreams(<id>)/Observations`` (or on
    ``v1.1/Observations`` with ``"Datastream": {"@iot.id": n}``) is created as an HTTP POST would
    create it: the same input model (:class:`~citytwin.api.sta_write.ObservationIn`), the
    datastream must exist and one observation per (datastream, phenomenonTime). What is not
    created is logged and quarantined (feed ``mqtt-sta``, source = the topic, line = the message's
    number since the bridge started, raw = the payload, and the reason) — nothing is dropped
    silently. A created observation is announced on the bus (``observations/mqtt``), so WebSocket
    clients and the MQTT topics above see it too.

Choices
    * **Security: create is off by default.** MQTT has no bearer token; the broker's own
      authentication and ACL decide who may publish on ``v1.1/#``. HTTP writes are refused until
      tokens are configured, so MQTT writes are refused until the deployer opts in after setting
      that ACL (the broker citytwin starts for tests allows anonymous clients on loopback only).
    * **QoS 1** for what the bridge publishes and subscribes to: a subscriber that asks for QoS 1
      with a persistent session gets every observation even across its reconnects (a broker
      downgrades to the subscriber's QoS, never upgrades, so QoS 0 here would deny that choice);
      QoS 2's extra round trip buys nothing, as observations are idempotent by identity.
    * **MQTT v5 with No Local**: the create topics are the notification topics (the standard's
      design), so the bridge would otherwise receive its own notifications back as create
      requests. Use one citytwin server per broker topic tree. Create stays for Observations
      only: the bridge subscribes to no entity topic (``v1.1/Things``…), so other entities'
      notifications never come back to it.
    * **Links need a public root.** HTTP renders links from each request's host; a notification
      has no request, so ``base_url`` (the service root, ``…/v1.1``) is given by whoever builds
      the bridge (the app passes ``Settings.public_url`` + ``/v1.1``; env ``CITYTWIN_PUBLIC_URL``).
    * **Never blocks the bus or the event loop**: frames are rendered and published in a worker
      thread, in chunks of :data:`CHUNK_ROWS`; at most :data:`MAX_UNACKED` messages wait for the
      broker's acknowledgement (so a broker that is away costs bounded memory); meanwhile the bus
      subscription keeps :data:`QUEUE_FRAMES` frames and drops the oldest, counted and logged (the
      store keeps everything). Entity events wait the same way (up to :data:`QUEUE_EVENTS`); each
      is looked up under ``store_access.lock`` in a worker thread. Creates are written by a
      writer thread, so a store busy with an ingest never stalls the MQTT network thread.
    * **A broker that is down** at start or later is retried in the background with exponential
      backoff (1 s doubling to :data:`RECONNECT_MAX_S`); the server starts regardless.

Not implemented: ``$select`` in topics, ``FeaturesOfInterest(<id>)/Observations``, single
Observation and Observation property topics (``v1.1/Observations(<id>)``), notifications for
Observations updated over HTTP PATCH/PUT, and for the HistoricalLocation a PATCH that
moves a Location records.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import re
import threading
import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from citytwin.api.errors import InvalidParameterError
from citytwin.api.sta import VERSION, StoreAccess, render_entity, render_observations
from citytwin.api.sta_schema import ENTITY_SETS, NAVIGATION
from citytwin.api.sta_write import ENTITIES, ObservationIn, new_rows, parse
from citytwin.bus.base import OBSERVATIONS, Bus, Subscription, observations_topic
from citytwin.errors import ValidationError
from citytwin.model.sensing import Datastream, Entity
from citytwin.mqtt.broker import parse_broker_url
from citytwin.store.base import ObservationFrame, QuarantineRecord, to_micros

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = f"http://127.0.0.1:8000/{VERSION}"
FEED = "mqtt-sta"
QOS = 1
CHUNK_ROWS = 1_000  # observations rendered at once: bounds the JSON held in memory
MAX_UNACKED = 10_000  # published messages the broker has not acknowledged yet
QUEUE_FRAMES = 16  # bus frames waiting for the publisher before the oldest is dropped
QUEUE_CREATES = 1_000  # received create requests waiting for the writer
QUEUE_EVENTS = 10_000  # entity events (small mappings) waiting for the publisher
RECONNECT_MAX_S = 30
KEEPALIVE_S = 30
CREATE_TOPICS = (f"{VERSION}/Observations", f"{VERSION}/+/Observations")
_DATASTREAM_TOPIC = re.compile(rf"{re.escape(VERSION)}/Datastreams\((\d+)\)/Observations")


class Rejected(ValidationError):
    """A create request that is not created; the message is the quarantine reason (it never
    leaves this module: MQTT has no response to carry it)."""


def observation_topics(datastream_id: int) -> tuple[str, str]:
    """The topics one new observation is announced on.

    >>> observation_topics(7)
    ('v1.1/Datastreams(7)/Observations', 'v1.1/Observations')
    """
    return f"{VERSION}/Datastreams({datastream_id})/Observations", f"{VERSION}/Observations"


def entity_topics(entity: Entity, *, created: bool, linked: list[str] | None = None) -> list[str]:
    """The topics a created or updated entity's STA JSON is published on (without the property
    topics and those carrying a related entity, see :func:`reverse_links`): on creation its entity
    set, itself, and the navigation sets each link puts it in; on update itself and the navigation
    sets of the ``linked`` fields (those that changed).

    >>> from citytwin.model.sensing import Datastream, UnitOfMeasurement
    >>> unit = UnitOfMeasurement(name="degree Celsius", symbol="degC", definition="")
    >>> ds = Datastream(id=9, name="t", unit_of_measurement=unit, thing_id=1, sensor_id=2,
    ...                 observed_property_id=3)
    >>> entity_topics(ds, created=True)  # doctest: +NORMALIZE_WHITESPACE
    ['v1.1/Datastreams', 'v1.1/Datastreams(9)', 'v1.1/Things(1)/Datastreams',
     'v1.1/Sensors(2)/Datastreams', 'v1.1/ObservedProperties(3)/Datastreams']
    >>> entity_topics(ds, created=False, linked=["sensor_id"])
    ['v1.1/Datastreams(9)', 'v1.1/Sensors(2)/Datastreams']
    """
    entity_set = entity.entity_set
    topics = [f"{VERSION}/{entity_set}"] if created else []
    topics.append(f"{VERSION}/{entity_set}({entity.id})")
    fields = sorted(entity.link_fields()) if created else (linked or [])
    for source, navs in NAVIGATION.items():
        for nav in navs:
            if nav.target != entity_set or nav.on_source or not nav.many or nav.key not in fields:
                continue
            if (source_id := getattr(entity, nav.key, None)) is not None:
                topics.append(f"{VERSION}/{source}({source_id})/{nav.name}")
    return topics


def reverse_links(
    entity: Entity, *, created: bool, linked: list[str] | None = None
) -> list[tuple[str, str, int]]:
    """(topic, entity set, id) of the related entities that are new in one of this entity's own
    navigation sets: a Location linked to Thing 5 puts Thing 5 in ``Locations(<id>)/Things``."""
    fields = entity.link_fields() if created else set(linked or [])
    out = []
    for nav in NAVIGATION[entity.entity_set]:
        target_id = getattr(entity, nav.key, None)
        if nav.on_source and nav.many and nav.key in fields and target_id is not None:
            topic = f"{VERSION}/{entity.entity_set}({entity.id})/{nav.name}"
            out.append((topic, nav.target, target_id))
    return out


def parse_create(topic: str, payload: bytes) -> tuple[int, ObservationIn]:
    """The datastream id and observation a create request names; :class:`Rejected` says why not.

    >>> body = b'{"phenomenonTime": "2020-03-14T15:00:00Z", "result": 1.5}'
    >>> parse_create("v1.1/Datastreams(3)/Observations", body)[0]
    3
    """
    path_id: int | None = None
    if topic != f"{VERSION}/Observations":
        match = _DATASTREAM_TOPIC.fullmatch(topic)
        if match is None:
            raise Rejected(
                f"topic {topic!r}: create via MQTT takes {VERSION}/Observations or "
                f"{VERSION}/Datastreams(<id>)/Observations"
            )
        path_id = int(match.group(1))
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting beyond Python's limit
        raise Rejected(f"body: not valid JSON: {exc}") from None
    try:
        observation: ObservationIn = parse(ObservationIn, body)
    except InvalidParameterError as exc:
        raise Rejected(str(exc)) from None
    linked = None if observation.datastream is None else observation.datastream.id
    if path_id is None and linked is None:
        raise Rejected("Datastream: an Observation needs a Datastream link")
    if path_id is not None and linked is not None and linked != path_id:
        raise Rejected(f"Datastream: differs from the topic's Datastreams({path_id})")
    datastream_id = path_id if path_id is not None else linked
    assert datastream_id is not None
    if not 0 <= datastream_id < 2**63:  # the stores keep ids as BIGINT: this names nothing
        raise Rejected(f"Datastream: no Datastreams({datastream_id})")
    return datastream_id, observation


class StaMqttBridge:
    """Connects the app (bus and store) to an MQTT broker; :meth:`start` and :meth:`stop` it
    from the app's event loop (the FastAPI lifespan does)."""

    def __init__(
        self,
        broker_url: str,
        *,
        bus: Bus,
        store_access: StoreAccess,
        base_url: str = DEFAULT_BASE_URL,
        create: bool = False,
        client_id: str | None = None,
    ) -> None:
        self.address = parse_broker_url(broker_url)
        self.bus = bus
        self.store_access = store_access
        self.base_url = base_url.rstrip("/")
        self.create = create
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"citytwin-sta-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=RECONNECT_MAX_S)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._acked = threading.Condition()
        self._unacked = 0
        self._received = 0  # create requests so far: the quarantine's line number
        self._creates: queue.Queue[tuple[str, bytes, int] | None] = queue.Queue(QUEUE_CREATES)
        self._writer: threading.Thread | None = None
        self._subscription: Subscription | None = None
        self._forwarder: asyncio.Task[None] | None = None
        self._events: Subscription | None = None
        self._event_forwarder: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        """True while the broker connection is up and, with ``create``, the create topics are
        subscribed (for tests and health checks)."""
        return self._connected.is_set()

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Subscribe to the bus, then connect in the background (a broker that is down is
        retried, never an error here)."""
        self._subscription = self.bus.subscribe(f"{OBSERVATIONS}/#", maxsize=QUEUE_FRAMES)
        self._forwarder = asyncio.create_task(self._forward(self._subscription, "frame(s)"))
        self._events = self.bus.subscribe(f"{ENTITIES}/#", maxsize=QUEUE_EVENTS)
        self._event_forwarder = asyncio.create_task(self._forward(self._events, "entity event(s)"))
        if self.create:
            self._writer = threading.Thread(target=self._write_creates, name="sta-mqtt-writer")
            self._writer.start()
        self.client.connect_async(
            self.address.host, self.address.port, keepalive=KEEPALIVE_S, clean_start=True
        )
        self.client.loop_start()
        logger.info("SensorThings MQTT: connecting to %s:%s", *self.address)

    async def stop(self) -> None:
        """Stop forwarding and creating, disconnect. Observations not yet published are left to
        the store (a subscriber can read them over HTTP)."""
        self._stopping.set()
        with self._acked:
            self._acked.notify_all()
        for subscription in (self._subscription, self._events):
            if subscription is not None:
                subscription.close()
        for forwarder in (self._forwarder, self._event_forwarder):
            if forwarder is not None:
                await forwarder
        self.client.disconnect()
        self.client.loop_stop()
        if self._writer is not None:
            await asyncio.to_thread(self._end_writer, self._writer)

    def _end_writer(self, writer: threading.Thread) -> None:
        self._creates.put(None)  # after everything received before the disconnect
        writer.join()

    # -- broker callbacks (the paho network thread) ---------------------------------------------
    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            logger.warning("SensorThings MQTT: the broker refused the connection: %s", reason)
            return
        logger.info("SensorThings MQTT: connected to %s:%s", *self.address)
        if not self.create:
            self._connected.set()
            return
        options = SubscribeOptions(qos=QOS, noLocal=True)
        client.subscribe([(topic, options) for topic in CREATE_TOPICS])

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [str(reason) for reason in reasons if reason.is_failure]
        if refused:  # the broker's ACL may forbid v1.1/# to this client
            logger.error("SensorThings MQTT: create topics refused by the broker: %s", refused)
            return
        self._connected.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        logger.warning(
            "SensorThings MQTT: broker %s:%s unreachable; retrying in the background",
            *self.address,
        )

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        if not self._stopping.is_set():
            logger.warning("SensorThings MQTT: disconnected (%s); reconnecting", reason)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason: ReasonCode,
        properties: Properties,
    ) -> None:
        with self._acked:
            self._unacked -= 1
            self._acked.notify()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self._received += 1
        # blocks only when the writer is QUEUE_CREATES behind: back-pressure on the publishers
        self._creates.put((message.topic, bytes(message.payload), self._received))

    # -- create via MQTT (the writer thread) ----------------------------------------------------
    def _write_creates(self) -> None:
        while (item := self._creates.get()) is not None:
            topic, payload, number = item
            try:
                frame = self.create_observation(topic, payload, number)
            except Exception:  # a store failure must not end creation for everyone after it
                logger.exception("SensorThings MQTT: creating from %s failed", topic)
                continue
            if frame is not None:
                self.bus.publish(observations_topic("mqtt"), frame)

    def create_observation(
        self, topic: str, payload: bytes, number: int
    ) -> ObservationFrame | None:
        """Store one create request; quarantine it with the reason when it is not created."""
        try:
            datastream_id, observation = parse_create(topic, payload)
        except Rejected as exc:
            self._quarantine(topic, payload, number, str(exc))
            return None
        frame = ObservationFrame.from_arrays(
            [datastream_id], [to_micros(observation.phenomenon_time)], [observation.result]
        )
        with self.store_access.lock:
            store = self.store_access.store()
            if not store.entities(Datastream, [datastream_id]):
                reason = f"Datastream: no Datastreams({datastream_id})"
            elif not new_rows(store, datastream_id, frame.phenomenon_time).all():
                reason = (
                    f"phenomenonTime: Datastreams({datastream_id}) has an Observation at "
                    f"{observation.phenomenon_time.isoformat()} already (one per phenomenonTime)"
                )
            else:
                store.write_observations(frame)
                return frame
        self._quarantine(topic, payload, number, reason)
        return None

    def _quarantine(self, topic: str, payload: bytes, number: int, reason: str) -> None:
        logger.warning("SensorThings MQTT: %s message %d not created: %s", topic, number, reason)
        record = QuarantineRecord(FEED, topic, number, payload.decode(errors="replace"), reason)
        with self.store_access.lock:
            self.store_access.store().write_quarantine([record])

    # -- receive updates via MQTT ---------------------------------------------------------------
    async def _forward(self, subscription: Subscription, what: str) -> None:
        """Publish what the bus delivers, in a worker thread: observation frames or entity
        events (``what`` names them in the log)."""
        reported = 0
        async for topic, message in subscription:
            try:
                if isinstance(message, ObservationFrame):
                    if len(message):
                        await asyncio.to_thread(self.publish_frame, message)
                else:
                    await asyncio.to_thread(self.publish_event, message)
            except Exception:  # one bad message must not end the notifications for good
                logger.exception("SensorThings MQTT: publishing %s from %s failed", what, topic)
            if subscription.dropped > reported:
                logger.warning(
                    "SensorThings MQTT: %d %s dropped before publishing (the broker or this "
                    "bridge is slower than the writes); they are in the store",
                    subscription.dropped - reported,
                    what,
                )
                reported = subscription.dropped

    def publish_frame(self, frame: ObservationFrame) -> None:
        """Publish each observation's STA JSON on its topics, a chunk of rows at a time (blocking:
        call from a worker thread). Returns early when the bridge stops."""
        for start in range(0, len(frame), CHUNK_ROWS):
            rows = np.arange(start, min(start + CHUNK_ROWS, len(frame)), dtype=np.intp)
            part = frame.take(rows)
            bodies = render_observations(part, self.base_url)
            for datastream_id, body in zip(part.datastream_id.tolist(), bodies, strict=True):
                payload = json.dumps(body, separators=(",", ":"))
                for topic in observation_topics(datastream_id):
                    if not self._publish(topic, payload):
                        return

    def publish_event(self, message: Mapping[str, object]) -> None:
        """Publish the STA JSON of the entity an event names on its topics (blocking: call from a
        worker thread). An entity deleted meanwhile is not published."""
        event, entity_set, entity_id = (
            message.get("event"),
            message.get("entity_set"),
            message.get("id"),
        )
        kind = ENTITY_SETS.get(entity_set) if isinstance(entity_set, str) else None
        if kind is None or event not in ("create", "update") or not isinstance(entity_id, int):
            logger.warning("SensorThings MQTT: ignoring the entity event %r", dict(message))
            return
        created = event == "create"
        linked = [str(name) for name in _strings(message.get("linked"))]
        changed = [str(name) for name in _strings(message.get("changed"))]
        messages: list[tuple[str, Any]] = []
        with self.store_access.lock:
            store = self.store_access.store()
            found = store.entities(kind, [entity_id])
            if not found:
                return
            entity = found[0]
            body = render_entity(entity, self.base_url)
            messages += [(t, body) for t in entity_topics(entity, created=created, linked=linked)]
            if not created:
                own = f"{VERSION}/{entity.entity_set}({entity.id})"
                messages += [(f"{own}/{p}", {p: body.get(p)}) for p in changed]
            for topic, target_set, target_id in reverse_links(
                entity, created=created, linked=linked
            ):
                target_kind = ENTITY_SETS[target_set]
                if target_kind is not None and (
                    targets := store.entities(target_kind, [target_id])
                ):
                    messages.append((topic, render_entity(targets[0], self.base_url)))
        for topic, payload in messages:
            if not self._publish(topic, json.dumps(payload, separators=(",", ":"))):
                return

    def _publish(self, topic: str, payload: str) -> bool:
        """Publish once fewer than MAX_UNACKED messages await their PUBACK; False when stopping."""
        with self._acked:
            while self._unacked >= MAX_UNACKED and not self._stopping.is_set():
                self._acked.wait(1.0)
            if self._stopping.is_set():
                return False
            self._unacked += 1
        # paho queues a QoS 1 message while disconnected and sends it after reconnecting
        self.client.publish(topic, payload, qos=QOS)
        return True


def _strings(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else []
