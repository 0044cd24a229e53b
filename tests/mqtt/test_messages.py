"""The MQTT message format: what is accepted, and the reason given for what is not."""

from __future__ import annotations

import json

import pytest

from citytwin.mqtt.messages import BadMessage, DeviceBook, DeviceReading, parse_message

AT = "2026-03-15T09:00:00+09:00"


def payload(**fields: object) -> bytes:
    return json.dumps(
        {"thing": "d1", "phenomenonTime": AT, "values": {"pm25": 7}, **fields}
    ).encode()


def test_a_full_message_is_read() -> None:
    reading = parse_message(
        payload(values={"pm25": 7, "noise": 55.5}, lon=126.9, lat=37.5, name="n", properties={})
    )
    assert reading == DeviceReading(
        "d1", 1773532800000000, {"pm25": 7, "noise": 55.5}, 126.9, 37.5, "n", {}
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"thing": "d1", "values": {"pm25": NaN}}', "not UTF-8 JSON: NaN"),
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b'"text"', "expected a JSON object, got str"),
        (payload(thing=""), "'thing' must be a non-empty string"),
        (payload(values={}), "'values' must be a non-empty object"),
        (payload(values={"pm25": True}), "value of 'pm25' must be a finite number, got True"),
        (payload(values={"pm25": None}), "value of 'pm25' must be a finite number, got None"),
        (payload().replace(b"7", b"1e999"), "value of 'pm25' must be a finite number, got inf"),
        (payload(lon=200), "'lon' must be a number in -180…180, got 200"),
        (payload(lat="37"), "'lat' must be a number in -90…90"),
        (payload(name=3), "'name' must be a string"),
        (payload(properties=[1]), "'properties' must be an object"),
        (payload(battery=90), "unknown field(s) battery"),
        (payload(phenomenonTime="2026-13-01T00:00:00Z"), "is not ISO 8601"),
    ],
)
def test_bad_messages_say_why(raw: bytes, reason: str) -> None:
    result = parse_message(raw)
    assert isinstance(result, BadMessage)
    assert reason in result.reason


def test_size_limit() -> None:
    result = parse_message(payload(name="x" * 100), max_bytes=100)
    assert isinstance(result, BadMessage)
    assert "over the 100-byte limit" in result.reason


def test_a_device_keeps_its_latest_description() -> None:
    book = DeviceBook()
    first = parse_message(payload(lon=127.0, lat=37.5, name="first"))
    bare = parse_message(payload())
    moved = parse_message(payload(lon=127.1))
    assert isinstance(first, DeviceReading)
    assert isinstance(bare, DeviceReading)
    assert isinstance(moved, DeviceReading)
    spec = book.update(first)
    assert book.update(bare) is spec
    after = book.update(moved)
    assert (after.key, after.name, after.lon, after.lat) == ("mqtt:d1", "first", 127.1, 37.5)
