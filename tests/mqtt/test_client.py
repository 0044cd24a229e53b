"""The MQTT 3.1.1 subscriber connection against a scripted broker on a socket pair: packets split
at any byte, messages before the SUBACK, PUBACKs in one write, refusals."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from citytwin.errors import ConfigurationError
from citytwin.mqtt.client import (
    Message,
    Subscription,
    encode_remaining_length,
    puback_packets,
)


def publish_packet(topic: str, payload: bytes, packet_id: int, *, dup: bool = False) -> bytes:
    body = struct.pack("!H", len(topic)) + topic.encode() + struct.pack("!H", packet_id) + payload
    return bytes([0x32 | (0x08 if dup else 0)]) + encode_remaining_length(len(body)) + body


class ScriptedBroker:
    """Accepts one connection, reads CONNECT and SUBSCRIBE, answers with ``script`` bytes."""

    def __init__(self, script: bytes, *, chunk: int) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.script, self.chunk = script, chunk
        self.received = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with self.server:
            conn, _ = self.server.accept()
        with conn:
            for start in range(0, len(self.script), self.chunk):
                conn.sendall(self.script[start : start + self.chunk])
            conn.settimeout(2)
            try:
                while data := conn.recv(65536):
                    self.received += data
            except TimeoutError:
                pass


@pytest.fixture
def messages() -> list[tuple[str, bytes]]:
    return [(f"devices/d{i}", b"x" * (i * 37 % 300)) for i in range(1, 60)]


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_packets_split_anywhere_are_read_whole(
    messages: list[tuple[str, bytes]], chunk: int
) -> None:
    early = publish_packet("devices/early", b"queued", 99, dup=True)
    script = b"\x20\x02\x01\x00" + early + b"\x90\x03\x00\x01\x01"
    script += b"".join(publish_packet(t, p, i + 1) for i, (t, p) in enumerate(messages))
    broker = ScriptedBroker(script, chunk=chunk)
    sub = Subscription("127.0.0.1", broker.port, client_id="c", topics=["devices/#"])
    try:
        assert sub.connect() is True  # session present
        got: list[Message] = []
        while len(got) < len(messages) + 1:
            got.extend(sub.receive(1.0))
        sub.ack([m.packet_id for m in got])
    finally:
        sub.disconnect()
    assert (got[0].topic, got[0].payload, got[0].packet_id, got[0].duplicate) == (
        "devices/early",
        b"queued",
        99,
        True,
    )
    assert [(m.topic, m.payload) for m in got[1:]] == messages
    broker.thread.join(5)
    assert broker.received.endswith(puback_packets([99, *range(1, 60)]) + b"\xe0\x00")


def test_a_refused_client_id_is_a_configuration_error() -> None:
    broker = ScriptedBroker(b"\x20\x02\x00\x02", chunk=4)
    sub = Subscription("127.0.0.1", broker.port, client_id="c", topics=["t"])
    with pytest.raises(ConfigurationError, match="client identifier rejected"):
        sub.connect()


def test_a_refused_topic_is_a_configuration_error() -> None:
    broker = ScriptedBroker(b"\x20\x02\x00\x00\x90\x03\x00\x01\x80", chunk=64)
    sub = Subscription("127.0.0.1", broker.port, client_id="c", topics=["$SYS/#"])
    with pytest.raises(ConfigurationError, match=r"refused the subscription to \$SYS/#"):
        sub.connect()


def test_a_closed_connection_raises_connection_error() -> None:
    broker = ScriptedBroker(b"\x20\x02\x00\x00\x90\x03\x00\x01\x01", chunk=64)
    sub = Subscription("127.0.0.1", broker.port, client_id="c", topics=["t"])
    assert sub.connect() is False
    broker.thread.join(5)
    with pytest.raises(ConnectionError, match="closed"):
        receive_until_closed(sub)
    sub.close()


def receive_until_closed(sub: Subscription) -> None:
    while True:
        sub.receive(1.0)
