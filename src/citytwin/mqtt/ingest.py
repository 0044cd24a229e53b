"""``citytwin ingest mqtt``: a durable MQTT subscriber that loses nothing.

Durability, in the order things happen:

1. The subscriber connects with a fixed client id and ``clean_session=False`` (MQTT 3.1.1
   persistent session) and subscribes at QoS 1, so the broker queues messages while it is away.
2. Messages are gathered into a batch; a batch is flushed when it holds ``batch_size`` messages,
   when its oldest message waited ``max_delay_s``, or when the stream goes quiet for ``quiet_s``
   (a broker sends at most its in-flight window — mosquitto's ``max_inflight_messages`` — before
   it waits for acknowledgements, so waiting for a full batch would stall).
3. A flush parses and validates every message (format: :mod:`citytwin.mqtt.messages`), writes the
   valid readings through the ingest pipeline (entities, QC, idempotent write) as one
   ``FeedBatch`` and quarantines the bad messages with topic, message number, reason and raw
   payload. Only then are the batch's messages acknowledged (PUBACK). An acknowledged message is
   therefore always committed; a message not yet acknowledged when the connection, the broker or
   this process dies is delivered again, and writing it again is a no-op (an observation's
   identity is its datastream and phenomenon time).
4. A lost connection is retried with exponential backoff (``backoff_min_s`` doubling to
   ``backoff_max_s``, reset once connected); what was gathered but not acknowledged is written
   (it may be the only copy if the broker died before saving it) and arrives again later.
5. A store whose server went away for a moment (a PostgreSQL restart) fails a write with a
   transient store error; the ingest pipeline makes the same idempotent write again with
   backoff (:mod:`citytwin.ingest.retry`) before the batch is acknowledged. A store still gone
   after the last try ends the run with an error naming it; the unacknowledged messages stay
   queued on the broker for the next run.

A run ends on ``stop`` (the CLI sets it on SIGINT/SIGTERM), after ``max_messages`` or after
``idle_exit_s`` without a message: the last batch is flushed and acknowledged, then the client
disconnects, leaving its session on the broker.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import ClassVar

from citytwin.bus.base import Bus
from citytwin.ingest.base import FeedBatch
from citytwin.ingest.pipeline import FeedSummary, Ingestor
from citytwin.mqtt.broker import parse_broker_url
from citytwin.mqtt.client import DEFAULT_CLIENT_ID, Message, Subscription
from citytwin.mqtt.messages import (
    FEED,
    MAX_PAYLOAD_BYTES,
    BadMessage,
    DeviceBook,
    DeviceReading,
    build_batch,
    parse_message,
)
from citytwin.store.base import QuarantineRecord, Store

__all__ = ["DEFAULT_CLIENT_ID", "MqttIngest", "MqttOptions", "MqttSummary"]

logger = logging.getLogger(__name__)


@dataclass
class MqttSummary(FeedSummary):
    """What a run did: the pipeline's counts (read, stored, duplicates, flagged, quarantined,
    notes) plus messages received and acknowledged, reconnects, batches and time."""

    feed: str = FEED
    received: int = 0
    acknowledged: int = 0
    reconnects: int = 0
    batches: int = 0
    elapsed_s: float = 0.0

    #: The counts ``citytwin ingest mqtt`` prints, in its summary table's order.
    COUNTS: ClassVar[tuple[str, ...]] = (
        "received",
        "acknowledged",
        "stored",
        "duplicates",
        "flagged",
        "quarantined",
        "reconnects",
    )


@dataclass(frozen=True)
class MqttOptions:
    """How a subscriber batches, reconnects and ends (see the module docstring)."""

    client_id: str = DEFAULT_CLIENT_ID
    batch_size: int = 5_000
    max_delay_s: float = 0.2
    quiet_s: float = 0.005
    backoff_min_s: float = 0.1
    backoff_max_s: float = 10.0
    max_messages: int | None = None
    idle_exit_s: float | None = None
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    keepalive_s: int = 30


class MqttIngest:
    """Subscribe to ``topics`` on ``broker_url`` and ingest every message into ``store``."""

    def __init__(
        self,
        store: Store,
        broker_url: str,
        topics: list[str],
        *,
        options: MqttOptions | None = None,
        bus: Bus | None = None,
        lock: AbstractContextManager[object] | None = None,
    ) -> None:
        """``lock`` is held around every store call: the server passes its store lock, as a
        store connection serves one thread at a time."""
        self.store = store
        self._lock = lock or nullcontext()
        self.address = parse_broker_url(broker_url)
        self.broker_url = broker_url
        self.topics = topics
        self.options = options or MqttOptions()
        self.summary = MqttSummary()
        self._ingestor = Ingestor(store, bus=bus)
        self._book = DeviceBook()
        self._pending: list[Message] = []
        self._oldest = 0.0
        self._last_message = time.monotonic()
        self.connected = False  # subscribed right now (tests wait for it before publishing)

    def run(self, stop: threading.Event | None = None) -> MqttSummary:
        """Ingest until ``stop`` is set, ``max_messages`` arrived or the stream is idle."""
        stop = stop or threading.Event()
        started = self._last_message = time.monotonic()
        delay, connected_before = self.options.backoff_min_s, False
        while not self._finished(stop):
            session = Subscription(
                self.address.host,
                self.address.port,
                client_id=self.options.client_id,
                topics=self.topics,
                keepalive_s=self.options.keepalive_s,
            )
            try:
                kept = session.connect()
            except OSError as exc:  # refused, reset, timed out: the broker is not there (yet)
                logger.warning(
                    "broker %s unreachable (%s); retry in %.1f s", self.broker_url, exc, delay
                )
                stop.wait(delay)
                delay = min(delay * 2, self.options.backoff_max_s)
                continue
            delay = self.options.backoff_min_s
            if connected_before:
                self.summary.reconnects += 1
                logger.warning("reconnected to %s (session kept: %s)", self.broker_url, kept)
            if connected_before and not kept:
                self._note(
                    f"the broker lost session {self.options.client_id!r}: messages it queued "
                    "while this subscriber was away are gone"
                )
            connected_before = self.connected = True
            try:
                self._consume(session, stop)
                self._flush(session)
            except ConnectionError as exc:
                self.connected = False
                logger.warning("disconnected from %s: %s", self.broker_url, exc)
                self._flush(None)  # no ack possible: these arrive again, and rewriting is a no-op
                session.close()
                continue
            session.disconnect()
            self.connected = False
            break
        self._flush(None)
        self.summary.elapsed_s = time.monotonic() - started
        return self.summary

    def _finished(self, stop: threading.Event) -> bool:
        options = self.options
        if stop.is_set():
            return True
        if options.max_messages is not None and self.summary.received >= options.max_messages:
            return True
        idle = time.monotonic() - self._last_message
        return options.idle_exit_s is not None and idle >= options.idle_exit_s

    def _consume(self, session: Subscription, stop: threading.Event) -> None:
        """Receive and flush until the run is finished; a lost connection raises."""
        options = self.options
        while not self._finished(stop):
            now = time.monotonic()
            if self._pending:
                timeout = max(0.0, min(options.quiet_s, self._oldest + options.max_delay_s - now))
            else:
                timeout = 0.1
            messages = session.receive(timeout)
            if messages:
                self._take(messages)
            if self._pending and (
                not messages
                or len(self._pending) >= options.batch_size
                or time.monotonic() >= self._oldest + options.max_delay_s
                or self._finished(stop)
            ):
                self._flush(session)

    def _take(self, messages: list[Message]) -> None:
        if self.options.max_messages is not None:
            # the rest stay unacknowledged: the broker keeps them for the next run
            messages = messages[: max(0, self.options.max_messages - self.summary.received)]
        if not self._pending:
            self._oldest = time.monotonic()
        self._pending.extend(messages)
        self.summary.received += len(messages)
        self._last_message = time.monotonic()

    def _flush(self, session: Subscription | None) -> None:
        """Write the pending messages, quarantine the bad ones, then (with a session) ack."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        first = self.summary.received - len(pending) + 1
        good: list[tuple[int, DeviceReading]] = []
        bad: list[QuarantineRecord] = []
        raw: dict[int, bytes] = {}
        for number, message in enumerate(pending, start=first):
            parsed = parse_message(message.payload, max_bytes=self.options.max_payload_bytes)
            if isinstance(parsed, BadMessage):
                bad.append(
                    _quarantine(message, number, parsed.reason, self.options.max_payload_bytes)
                )
            else:
                good.append((number, parsed))
                raw[number] = message.payload
        with self._lock:
            if good:
                self._write(build_batch(good, self._book, source=self.broker_url, raw=raw))
            if bad:
                self._ingestor.retrying(
                    lambda: self.store.write_quarantine(bad),
                    what=f"quarantining {len(bad)} bad messages from {self.broker_url}",
                )
        self.summary.quarantined += len(bad)
        if session is not None:
            acks = [m.packet_id for m in pending if m.qos]
            session.ack(acks)
            self.summary.acknowledged += len(acks)

    def _write(self, batch: FeedBatch) -> None:
        result = self._ingestor.write(batch)
        notes, result.notes = result.notes, []  # logged once each, not once per batch
        self.summary.add(result)
        self.summary.batches += 1
        for note in notes:
            self._note(note)

    def _note(self, note: str) -> None:
        logger.warning("%s", note)
        if note not in self.summary.notes:
            self.summary.notes.append(note)


def _quarantine(message: Message, number: int, reason: str, limit: int) -> QuarantineRecord:
    raw = message.payload[:limit].decode("utf-8", errors="replace")
    return QuarantineRecord(FEED, message.topic, number, raw, reason)
