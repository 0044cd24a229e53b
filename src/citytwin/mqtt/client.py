"""A lean MQTT 3.1.1 subscriber connection: persistent session, QoS 1, acknowledgements on demand.

Why not paho-mqtt for the subscriber: measured on the 2-core machine this was built on, paho 2.2's
per-packet path (a ``select`` and three ``recv`` calls per packet, one ``send`` per PUBACK)
delivers 15–19k QoS 1 messages/s to a callback that only counts them — below the ingest goal of
20k/s before any parsing or storing. This module reads the socket in large chunks, parses every
complete packet in them, and sends a whole batch's PUBACKs in one write. It speaks only what a
durable subscriber needs: CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH in (QoS 0 and 1), PUBACK out,
PINGREQ/PINGRESP and DISCONNECT (OASIS MQTT 3.1.1, sections 3.1–3.14). paho stays the publisher
in tests and the baseline in ``bench/mqtt.py``.

A :class:`Subscription` is one TCP connection; reconnecting is the caller's loop (see
``citytwin.mqtt.ingest``). A lost connection raises :class:`ConnectionError`; a broker that
refuses the client id or a topic raises :class:`~citytwin.errors.ConfigurationError` (retrying
cannot help).

>>> encode_remaining_length(321)
b'\\xc1\\x02'
>>> decode_remaining_length(b"\\xc1\\x02", 0)
(321, 2)
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

from citytwin.errors import ConfigurationError

logger = logging.getLogger(__name__)

DEFAULT_CLIENT_ID = "citytwin-ingest"
READ_CHUNK = 256 * 1024
CONNECT_TIMEOUT_S = 10.0
# packet types (high nibble of the first byte)
CONNECT, CONNACK, PUBLISH, PUBACK = 0x10, 0x20, 0x30, 0x40
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 0x82, 0x90, 0xC0, 0xD0, 0xE0
CONNACK_REFUSALS = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


@dataclass(frozen=True, slots=True)
class Message:
    """One PUBLISH received: ``packet_id`` is 0 for QoS 0 (nothing to acknowledge)."""

    topic: str
    payload: bytes
    qos: int
    packet_id: int
    duplicate: bool


def encode_remaining_length(length: int) -> bytes:
    """The variable-length integer of a fixed header (MQTT 3.1.1 section 2.2.3)."""
    out = bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def decode_remaining_length(data: bytes | bytearray, start: int) -> tuple[int, int] | None:
    """(length, bytes used) of the variable-length integer at ``start``; None if incomplete."""
    value, shift = 0, 0
    for used in range(1, 5):
        if start + used > len(data):
            return None
        byte = data[start + used - 1]
        value += (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, used
        shift += 7
    raise ConnectionError("malformed remaining length in a packet from the broker")


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def _packet(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + encode_remaining_length(len(body)) + body


def connect_packet(client_id: str, *, clean_session: bool, keepalive_s: int) -> bytes:
    flags = 0x02 if clean_session else 0x00
    return _packet(
        CONNECT,
        _string("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive_s) + _string(client_id),
    )


def subscribe_packet(packet_id: int, topics: Sequence[str], qos: int = 1) -> bytes:
    body = struct.pack("!H", packet_id) + b"".join(_string(t) + bytes([qos]) for t in topics)
    return _packet(SUBSCRIBE, body)


def puback_packets(packet_ids: Sequence[int]) -> bytes:
    """PUBACKs for ``packet_ids`` in order, as one buffer (MQTT 3.1.1 section 4.6 wants them in
    the order the PUBLISHes arrived)."""
    return b"".join(struct.pack("!BBH", PUBACK, 2, pid) for pid in packet_ids)


class Subscription:
    """One connection to a broker, subscribed at QoS 1 to ``topics``; see the module docstring."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        topics: Sequence[str],
        clean_session: bool = False,
        keepalive_s: int = 30,
    ) -> None:
        self.host, self.port = host, port
        self.client_id = client_id
        self.topics = list(topics)
        self.clean_session = clean_session
        self.keepalive_s = keepalive_s
        self.session_present = False
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._early: list[Message] = []  # PUBLISHes that arrived before the SUBACK
        self._last_sent = self._last_received = time.monotonic()
        self._ping_sent: float | None = None

    def connect(self) -> bool:
        """Connect, subscribe, return whether the broker kept our session (queued messages)."""
        self._sock = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT_S)
        try:
            return self._handshake()
        except BaseException:
            self.close()
            raise

    def _handshake(self) -> bool:
        self._require().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer.clear()
        self._early.clear()
        self._ping_sent = None
        self._send(
            connect_packet(
                self.client_id, clean_session=self.clean_session, keepalive_s=self.keepalive_s
            )
        )
        flags, code = self._await(CONNACK)
        if code:
            reason = CONNACK_REFUSALS.get(code, f"return code {code}")
            if code == 3:
                raise ConnectionError(f"broker {self.host}:{self.port} refused: {reason}")
            raise ConfigurationError(
                f"broker {self.host}:{self.port} refused client id {self.client_id!r}: {reason}"
            )
        self.session_present = bool(flags & 0x01)
        # subscribing again on a kept session is harmless, and restores a lost one
        self._send(subscribe_packet(1, self.topics))
        granted = self._await(SUBACK)[2:]
        refused = [t for t, g in zip(self.topics, granted, strict=False) if g == 0x80]
        if refused:
            raise ConfigurationError(f"broker refused the subscription to {', '.join(refused)}")
        # what came in the same reads as the SUBACK would otherwise wait for the next packet
        self._early.extend(self._parse()[0])
        return self.session_present

    def receive(self, timeout_s: float) -> list[Message]:
        """Every message that arrives within ``timeout_s`` (one read); [] when none did."""
        if self._early:
            early, self._early = self._early, []
            return early
        sock = self._require()
        self._keep_alive()
        readable, _, _ = select.select([sock], [], [], timeout_s)
        if not readable:
            return []
        try:
            data = sock.recv(READ_CHUNK)
        except OSError as exc:
            raise ConnectionError(f"reading from the broker failed: {exc}") from exc
        if not data:
            raise ConnectionError("the broker closed the connection")
        self._buffer += data
        self._last_received = time.monotonic()
        messages, _ = self._parse()
        return messages

    def ack(self, packet_ids: Sequence[int]) -> None:
        """PUBACK these QoS 1 messages (in the order given) in one write."""
        if packet_ids:
            self._send(puback_packets(packet_ids))

    def disconnect(self) -> None:
        """Say goodbye (DISCONNECT) and close; the persistent session stays on the broker."""
        if self._sock is not None:
            with contextlib.suppress(ConnectionError):
                self._send(bytes([DISCONNECT, 0]))
        self.close()

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _require(self) -> socket.socket:
        if self._sock is None:
            raise ConnectionError("not connected")
        return self._sock

    def _send(self, data: bytes) -> None:
        try:
            self._require().sendall(data)
        except OSError as exc:
            raise ConnectionError(f"writing to the broker failed: {exc}") from exc
        self._last_sent = time.monotonic()

    def _keep_alive(self) -> None:
        now = time.monotonic()
        if self._ping_sent is not None and now - self._ping_sent > self.keepalive_s:
            raise ConnectionError(f"no PINGRESP from the broker within {self.keepalive_s} s")
        if self._ping_sent is None and now - self._last_sent > self.keepalive_s / 2:
            self._send(bytes([PINGREQ, 0]))
            self._ping_sent = now

    def _await(self, kind: int) -> bytes:
        """Read until a packet of ``kind`` arrives; return its body. PUBLISHes are kept."""
        sock = self._require()
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while True:
            messages, found = self._parse(until=kind)
            self._early.extend(messages)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise ConnectionError(f"no answer from the broker within {CONNECT_TIMEOUT_S} s")
            try:
                data = sock.recv(READ_CHUNK)
            except OSError as exc:
                raise ConnectionError(f"reading from the broker failed: {exc}") from exc
            if not data:
                raise ConnectionError("the broker closed the connection")
            self._buffer += data

    def _parse(self, until: int | None = None) -> tuple[list[Message], bytes | None]:
        """Complete packets in the buffer → messages; stops after a packet of kind ``until``."""
        buffer, offset, messages = self._buffer, 0, []
        found: bytes | None = None
        while offset + 2 <= len(buffer):
            decoded = decode_remaining_length(buffer, offset + 1)
            if decoded is None:
                break
            length, used = decoded
            start = offset + 1 + used
            end = start + length
            if end > len(buffer):
                break
            header = buffer[offset]
            kind = header & 0xF0
            offset = end
            if kind == PUBLISH:
                messages.append(_decode_publish(header, bytes(buffer[start:end])))
            elif kind == PINGRESP:
                self._ping_sent = None
            elif until is not None and header == until:
                found = bytes(buffer[start:end])
                break
        del buffer[:offset]
        return messages, found


def _decode_publish(header: int, body: bytes) -> Message:
    qos = (header >> 1) & 0x03
    (topic_length,) = struct.unpack_from("!H", body)
    topic = body[2 : 2 + topic_length].decode("utf-8", errors="replace")
    at = 2 + topic_length
    packet_id = 0
    if qos:
        (packet_id,) = struct.unpack_from("!H", body, at)
        at += 2
    return Message(topic, body[at:], qos, packet_id, bool(header & 0x08))
