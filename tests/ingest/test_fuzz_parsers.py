"""Property-based fuzzing of every feed parser that ``test_fuzz.py`` (S-DoT and KMA CSV) does not
cover: generic CSV (AirKorea, TOPIS presets) and JSON feeds, feed mappings, noise workbooks, the
TOPIS analysis reader, MQTT device messages, and the SensorThings bodies (HTTP create, dataArray,
create over MQTT).

The property is the same everywhere: any input gives accepted records and/or rejects that each
carry a reason, or exactly one citytwin error whose message names the input — never another
exception (which the CLI would show as a traceback and the API as a 500). The ``@example``\\ s are
crashes fuzzing found, fixed in the parser named next to each.
"""

from __future__ import annotations

import asyncio
import json
import math
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import openpyxl
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from citytwin.analysis.topis_files import HOUR_COLUMNS, read_topis
from citytwin.api.errors import InvalidParameterError
from citytwin.api.sta_mqtt import Rejected, parse_create
from citytwin.api.sta_write import (
    DataArrayIn,
    DatastreamIn,
    FeatureOfInterestIn,
    LocationIn,
    ObservationIn,
    SensorIn,
    ThingIn,
    _block_rows,
    _data_array_rows,
    json_body,
    parse,
)
from citytwin.errors import CitytwinError, FeedError, MappingError
from citytwin.ingest import read_feed
from citytwin.ingest.mapping import load_mapping
from citytwin.ingest.pipeline import Ingestor, ingest
from citytwin.mqtt.messages import BadMessage, DeviceBook, build_batch, parse_message
from citytwin.store import open_store
from citytwin.store.base import to_micros

T = TypeVar("T")
E = TypeVar("E", bound=Exception)
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
FILE_FUZZ = settings(FUZZ, max_examples=100)  # each example writes and reads a file

# --- values --------------------------------------------------------------------------------------
huge_ints = st.integers(10**300, 10**400) | st.integers(-(10**400), -(10**300))
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(), huge_ints, st.booleans()
)
json_values = st.recursive(
    st.none() | numbers | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
recent = st.datetimes(datetime(1990, 1, 1), datetime(2040, 12, 31))  # what feeds date their rows
aware_instants = st.builds(lambda d, tz: d.replace(tzinfo=tz).isoformat(), st.datetimes(), offsets)
instants = st.one_of(  # ISO 8601 with an offset, naive, out of range once in UTC, or garbage
    st.builds(lambda d, tz: d.replace(tzinfo=tz).isoformat(), st.datetimes(), offsets),
    st.datetimes().map(datetime.isoformat),
    st.datetimes().map(lambda d: d.strftime("%Y%m%d%H")),
    st.sampled_from(
        ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-02-30T00:00Z"]
    ),
    st.text(alphabet="0123456789-:TZ+/. ", max_size=26),
)
cells = st.one_of(
    st.integers(-(10**6), 10**13).map(str),
    st.floats().map(str),
    st.text(alphabet="0123456789.-+eE:/ 가나,\"'\t\n", max_size=14),
    st.just(""),
)
speeds = st.floats(0, 150).map(lambda v: f"{v:.1f}") | st.just("")  # an hour cell
bad_speeds = speeds | st.sampled_from(["-", "x", "1e3", "-5", "1,2"])
deep_json = st.integers(1_000, 30_000).map(lambda n: b"[" * n + b"]" * n)


def _attempt(call: Callable[[], T], kind: type[E]) -> tuple[T | None, E | None]:
    """``call()``, or the ``kind`` error it raised (any other exception fails the test)."""
    try:
        return call(), None
    except kind as exc:
        return None, exc


def _check_batches(feed: str, path: Path, named: str, **options: str) -> None:
    """Read a file and store it: one CitytwinError naming ``named`` may escape, nothing else;
    every reject has a reason and is quarantined."""
    batches, error = _attempt(lambda: list(read_feed(feed, str(path), **options)), CitytwinError)
    if error is not None:
        assert named in str(error)
        return
    assert batches is not None
    for batch in batches:
        assert len(batch.readings.line) == len(batch.readings)
        assert all(reject.reason for reject in batch.rejects)
    with open_store("memory://") as store:
        report = ingest(iter(batches), store)
        quarantined = store.quarantined()
    assert all(record.reason for record in quarantined)
    assert sum(s.quarantined for s in report.feeds.values()) == len(quarantined)
    assert len(quarantined) >= sum(len(b.rejects) for b in batches)


# --- generic CSV and JSON feeds ------------------------------------------------------------------
AIRKOREA = "지역,망,측정소코드,측정소명,측정일시,SO2,CO,O3,NO2,PM10,PM25,주소"
TOPIS = "일자,요일,도로명,링크아이디,시점명,종점명,방향,거리,차선수," + ",".join(HOUR_COLUMNS)
JSON_MAPPING = (
    "feed: api\nformat: json\nrecords: response.body.items\n"
    "thing: {id_column: station, key_prefix: api}\n"
    'time: {column: at, format: "%Y-%m-%d %H:%M", timezone: Asia/Seoul}\n'
    "values:\n  - {column: pm10, property: pm10}\n  - {column: no2, property: no2, unit: ppb}\n"
)


def _topis_rows(prefix_cells: int) -> st.SearchStrategy[list[str]]:
    """TOPIS-shaped rows: a date (valid or not), ``prefix_cells`` text cells with the link id
    among them, then 24 hour cells of garbage; some rows a cell short or long."""
    row = st.tuples(
        st.one_of(*[recent.map(lambda d: d.strftime("%Y%m%d"))] * 3, cells),
        st.lists(
            st.text(alphabet="0123456789가나 ", max_size=6),
            min_size=prefix_cells,
            max_size=prefix_cells,
        ),
        st.lists(speeds, min_size=24, max_size=24) | st.lists(bad_speeds, min_size=23, max_size=25),
    ).map(lambda r: ",".join([r[0], *r[1], *r[2]]))
    return st.lists(row, max_size=15)


def _rows(width: int) -> st.SearchStrategy[list[str]]:
    """Rows of about ``width`` cells (some shorter or longer) with a plausible time in one."""
    row = st.lists(cells, min_size=max(0, width - 2), max_size=width + 2)
    return st.lists(row.map(",".join), max_size=20)


@FILE_FUZZ
@given(
    body=_rows(12),
    times=st.lists(st.integers(2000010100, 2030123125), max_size=20),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp949"]),
)
def test_airkorea_csv_survives_anything(
    tmp_path: Path, body: list[str], times: list[int], encoding: str
) -> None:
    lines = [
        f"서울,도시대기,{111 + i % 3},중구,{t},0.003,0.4,0.02,0.03,40,20"
        for i, t in enumerate(times)
    ]
    path = tmp_path / "airkorea.csv"
    path.write_bytes("\n".join([AIRKOREA, *lines, *body]).encode(encoding, "replace"))
    _check_batches("generic", path, str(path), mapping="airkorea")


@FILE_FUZZ
@given(body=_rows(33) | _topis_rows(8), noise=st.binary(max_size=30))
def test_topis_csv_survives_anything(tmp_path: Path, body: list[str], noise: bytes) -> None:
    path = tmp_path / "topis.csv"
    path.write_bytes(("\n".join([TOPIS, *body])).encode("cp949", "replace") + noise)
    _check_batches("generic", path, str(path), mapping="topis")


plausible_records = st.fixed_dictionaries(  # mostly readable: reaches readings and the store
    {
        "station": st.text(alphabet="가나다123", max_size=3),
        "at": recent.map(lambda d: d.strftime("%Y-%m-%d %H:%M")) | instants,
        "pm10": numbers | numbers.map(str),
        "no2": numbers | st.none(),
    }
)
records = st.lists(
    plausible_records
    | st.fixed_dictionaries(
        {},
        optional={
            "station": json_values,
            "at": json_values,
            "pm10": json_values,
            "no2": json_values,
        },
    )
    | json_values,
    max_size=12,
)


@FILE_FUZZ
@given(
    document=st.one_of(
        records.map(lambda r: json.dumps({"response": {"body": {"items": r}}})).map(str.encode),
        json_values.map(json.dumps).map(str.encode),
        deep_json,
        st.binary(max_size=60).map(lambda b: b"\xff\xfe" + b),
        st.integers(4_400, 6_000).map(
            lambda n: b'{"response": {"body": {"items": [1' + b"0" * n + b"]}}}"
        ),
    )
)
@example(document=b"[" * 20_000 + b"]" * 20_000)  # RecursionError (fixed in generic.py)
@example(document=b"[1" + b"0" * 5_000 + b"]")  # ValueError: int digits (fixed in generic.py)
@example(document=b"\xff\xfex")  # UnicodeDecodeError: UTF-16 BOM (fixed in source.py)
def test_json_feed_survives_anything(tmp_path: Path, document: bytes) -> None:
    mapping = tmp_path / "api.yaml"
    mapping.write_text(JSON_MAPPING, encoding="utf-8")
    path = tmp_path / "items.json"
    path.write_bytes(document)
    _check_batches("generic", path, str(path), mapping=str(mapping))


mapping_documents = st.fixed_dictionaries(
    {},
    optional={
        "feed": st.text(max_size=8) | json_values,
        "format": st.sampled_from(["csv", "json", "xml"]) | json_values,
        "thing": st.fixed_dictionaries(
            {},
            optional={
                "id_column": st.text(max_size=6),
                "name": st.text(max_size=12),
                "key_prefix": json_values,
            },
        )
        | json_values,
        "time": st.fixed_dictionaries(
            {},
            optional={
                "column": st.text(max_size=6),
                "format": st.text("%YmdHMS-yh ", max_size=12),
                "timezone": st.text(max_size=12),
                "label": json_values,
            },
        )
        | json_values,
        "values": st.lists(
            st.fixed_dictionaries(
                {"column": st.text(max_size=5)},
                optional={
                    "property": st.sampled_from(["pm10", "no2", "bogus"]),
                    "unit": st.text(max_size=8),
                    "scale": numbers,
                },
            )
            | json_values,
            max_size=3,
        )
        | json_values,
        "period": st.text(alphabet="PTHMS0123456789", max_size=6) | json_values,
    },
)


@FILE_FUZZ
@given(
    text=st.one_of(
        mapping_documents.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
        st.text(alphabet="abc:{}[]-#&*!|>'\"\n\t %", max_size=80),
    )
)
def test_mapping_files_load_or_say_why(tmp_path: Path, text: str) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text(text, encoding="utf-8")
    spec, error = _attempt(lambda: load_mapping(path), MappingError)
    if error is not None:
        assert str(error).startswith(str(path))
        return
    assert spec is not None
    assert spec.values  # a valid mapping names at least one value column


# --- noise workbooks and TOPIS files for analysis -----------------------------------------------
sheet_cells = st.one_of(
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.integers(-(10**9), 10**9),
    st.text(alphabet="0123456789.-/시 가측정일", max_size=10),
    st.dates().map(lambda d: datetime(d.year, d.month, d.day)),
    st.booleans(),
)


march_2025 = st.integers(1, 31).map(lambda day: datetime(2025, 3, day))
noise_rows = st.tuples(  # a day's row: mostly a date of the month and levels in dB, some garbage
    st.one_of(march_2025, march_2025, sheet_cells),
    st.lists(st.floats(20, 90) | sheet_cells, max_size=27),
).map(lambda row: [row[0], *row[1]])


@settings(FILE_FUZZ, max_examples=60)  # a workbook is ~30 ms to write and read back
@given(
    month=sheet_cells | st.just("2025-03"),
    header=st.lists(sheet_cells | st.integers(1, 24), max_size=4),
    body=st.lists(noise_rows, max_size=12),
    stored_as=st.none() | huge_ints | st.integers(),
)
@example(month="2025-03", header=[], body=[], stored_as=10**400)  # OverflowError (noise.py)
def test_noise_workbook_survives_anything(
    tmp_path: Path,
    month: object,
    header: list[object],
    body: list[list[object]],
    stored_as: int | None,
) -> None:
    """``stored_as`` rewrites one hourly cell's XML value: openpyxl cannot write an integer
    beyond the float range, but a workbook can hold one, and openpyxl reads it as an int."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "시청(시간별)"
    for _ in range(3):
        sheet.append([None])
    sheet.append(["측정월:", month, None, "측정장소 :", "시청", None, "측정 데이터:", "LEQ"])
    sheet.append([None])
    sheet.append(["측정일\\시간", *range(1, 25), "낮", "밤", *header])
    for row in body:
        sheet.append(row)
    sheet.append([datetime(2025, 3, 1), SENTINEL])
    path = tmp_path / "noise.xlsx"
    workbook.save(path)
    if stored_as is not None:
        _rewrite_cell(path, f">{SENTINEL}<".encode(), f">{stored_as}<".encode())
    _check_batches("noise", path, str(path))


SENTINEL = 987_654_321


def _rewrite_cell(path: Path, old: bytes, new: bytes) -> None:
    """Replace bytes in every part of an xlsx (a zip of XML files)."""
    parts = {}
    with zipfile.ZipFile(path) as archive:
        for item in archive.infolist():
            parts[item] = archive.read(item.filename).replace(old, new)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for item, data in parts.items():
            archive.writestr(item, data)


@FILE_FUZZ
@given(body=_rows(32) | _topis_rows(7))
def test_topis_analysis_reader_skips_with_reasons(tmp_path: Path, body: list[str]) -> None:
    path = tmp_path / "topis.csv"
    header = "일자,요일,도로명,링크아이디,시점명,종점명,거리,방향," + ",".join(HOUR_COLUMNS)
    path.write_text("\n".join([header, *body]), encoding="utf-8")
    frame, error = _attempt(lambda: read_topis(path), FeedError)
    if error is not None:
        assert str(path) in str(error)
        return
    assert frame is not None
    rejects = frame.attrs["rejects"]
    assert all(r.reason and r.line >= 2 for r in rejects)
    assert frame["hour"].between(0, 23).all()
    speeds = frame["speed_kmh"].to_numpy(dtype=float)
    assert not (speeds[~np.isnan(speeds)] < 0).any()


# --- MQTT device messages ------------------------------------------------------------------------
plausible_messages = st.fixed_dictionaries(  # mostly valid: reaches the batch and the store
    {
        "thing": st.text(min_size=1, max_size=8),
        "phenomenonTime": aware_instants,
        "values": st.dictionaries(
            st.sampled_from(["pm25", "air_temperature", "noise"]), numbers, min_size=1, max_size=3
        ),
    },
    optional={
        "lon": numbers,
        "lat": numbers,
        "name": st.text(max_size=8),
        "properties": json_values,
    },
)
device_messages = plausible_messages | st.fixed_dictionaries(
    {},
    optional={
        "thing": st.text(max_size=8) | json_values,
        "phenomenonTime": instants | json_values,
        "values": st.dictionaries(
            st.sampled_from(["pm25", "air_temperature", "noise", "bogus"]),
            numbers | json_values,
            max_size=3,
        )
        | json_values,
        "lon": numbers | json_values,
        "lat": numbers | json_values,
        "name": st.text(max_size=8) | json_values,
        "properties": json_values,
        "extra": json_values,
    },
)
GOOD_PREFIX = b'{"thing": "d1", "phenomenonTime": "2026-01-01T00:00:00Z", "values": {"pm25": '


@FUZZ
@given(
    payload=st.one_of(
        device_messages.map(json.dumps).map(str.encode),
        st.binary(max_size=80),
        deep_json.map(lambda b: b[:60_000]),
    )
)
@example(payload=GOOD_PREFIX + b"1" + b"0" * 400 + b"}}")  # OverflowError (fixed in messages.py)
@example(payload=GOOD_PREFIX + b'1}, "lon": 1' + b"0" * 400 + b"}")  # OverflowError (idem)
def test_mqtt_messages_parse_or_say_why(payload: bytes) -> None:
    parsed = parse_message(payload)
    if isinstance(parsed, BadMessage):
        assert parsed.reason
        return
    assert all(type(v) in (int, float) and math.isfinite(v) for v in parsed.values.values())
    batch = build_batch([(1, parsed)], DeviceBook(), source="fuzz", raw={1: payload})
    with open_store("memory://") as store:
        summary = Ingestor(store).write(batch)
    assert summary.read == len(parsed.values)
    assert summary.stored + summary.duplicates == len(parsed.values)


# --- SensorThings bodies -------------------------------------------------------------------------
links = st.fixed_dictionaries({"@iot.id": st.integers(0, 2**63 - 1) | numbers | json_values})
observations = st.fixed_dictionaries(  # mostly valid
    {"phenomenonTime": aware_instants | instants.map(lambda t: f"{t}/{t}"), "result": numbers},
    optional={"resultTime": instants, "Datastream": links},
) | st.fixed_dictionaries(
    {},
    optional={
        "phenomenonTime": instants | instants.map(lambda t: f"{t}/{t}") | json_values,
        "result": numbers | json_values,
        "resultTime": instants | json_values,
        "Datastream": links | json_values,
    },
)
entity_bodies = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=6) | json_values,
        "description": json_values,
        "definition": st.text(max_size=6),
        "properties": json_values,
        "location": st.fixed_dictionaries(
            {
                "type": st.sampled_from(["Point", "Polygon", "Bogus"]),
                "coordinates": st.lists(numbers, max_size=3) | json_values,
            }
        )
        | json_values,
        "unitOfMeasurement": json_values,
        "Thing": links,
        "Sensor": links | json_values,
        "ObservedProperty": links | json_values,
        "Observations": st.lists(observations, max_size=3),
        "Locations": st.lists(links | json_values, max_size=2),
        "Datastreams": st.lists(json_values, max_size=2),
    },
)
MODELS: list[Any] = [
    ObservationIn,
    ThingIn,
    LocationIn,
    SensorIn,
    FeatureOfInterestIn,
    DatastreamIn,
    list[DataArrayIn],
]


@FUZZ
@given(
    model=st.sampled_from(MODELS),
    body=st.one_of(observations, entity_bodies, json_values, st.lists(entity_bodies, max_size=2)),
)
@example(model=ObservationIn, body={"phenomenonTime": "0001-01-01T00:00:00+01:00", "result": 1})
@example(  # OverflowError from the UTC conversion (both fixed in sta_write.parse)
    model=ObservationIn,
    body={"phenomenonTime": "2020-01-01T00:00Z/9999-12-31T23:00-01:00", "result": 1},
)
def test_sta_bodies_parse_or_name_the_field(model: Any, body: Any) -> None:
    parsed, error = _attempt(lambda: parse(model, body), InvalidParameterError)
    if error is not None:
        assert error.parameter
        assert str(error).startswith(f"{error.parameter}: ")
        return
    if isinstance(parsed, ObservationIn):
        assert math.isfinite(parsed.result)
        to_micros(parsed.phenomenon_time)  # representable as the stores keep it


data_rows = st.lists(
    st.one_of(
        st.tuples(aware_instants | instants, numbers).map(list),
        st.tuples(numbers | json_values, instants).map(list),
        st.lists(instants | numbers | json_values, max_size=4),
    ),
    max_size=8,
)


@FUZZ
@given(
    datastream=st.integers(0, 2**63 - 1),
    swap=st.booleans(),
    result_time=st.booleans(),
    rows=data_rows,
)
def test_data_arrays_take_or_mark_each_row(
    datastream: int, swap: bool, result_time: bool, rows: list[list[Any]]
) -> None:
    components = ["result", "phenomenonTime"] if swap else ["phenomenonTime", "result"]
    if result_time:
        components.append("resultTime")
        rows = [[*row, row[-1] if row else None] for row in rows]
    elif swap:
        rows = [row[::-1] for row in rows]
    body = [{"Datastream": {"@iot.id": datastream}, "components": components, "dataArray": rows}]
    (block,) = parse(list[DataArrayIn], body)
    times, results, valid = _block_rows(block)
    slow_times, slow_results = _data_array_rows(block, 0)
    assert len(times) == len(results) == len(valid) == len(rows)
    # the column-at-once path and the row-by-row path agree on every row
    assert valid.tolist() == [t is not None for t in slow_times]
    assert times[valid].tolist() == [t for t in slow_times if t is not None]
    assert np.array_equal(results[valid], np.asarray(slow_results)[valid])
    assert np.isfinite(results[valid]).all()


topics = st.one_of(
    st.just("v1.1/Observations"),
    st.integers(0, 2**63 - 1).map(lambda i: f"v1.1/Datastreams({i})/Observations"),
    st.integers(-5, 2**64).map(lambda i: f"v1.1/Datastreams({i})/Observations"),
    st.text(alphabet="v1./()DatsremObvin0123456789+#", max_size=40),
)


@FUZZ
@given(
    topic=topics,
    payload=st.one_of(
        observations.map(lambda o: json.dumps(o).encode()),
        st.binary(max_size=60),
        deep_json,
    ),
)
@example(topic="v1.1/Observations", payload=b"[" * 20_000)  # RecursionError (fixed in sta_mqtt)
def test_sta_creates_over_mqtt_parse_or_say_why(topic: str, payload: bytes) -> None:
    created, error = _attempt(lambda: parse_create(topic, payload), Rejected)
    if error is not None:
        assert str(error)
        return
    assert created is not None
    datastream, observation = created
    assert 0 <= datastream < 2**63
    assert math.isfinite(observation.result)


class _Request:
    """What :func:`json_body` reads of a request: its raw body."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    async def body(self) -> bytes:
        return self.raw


@FUZZ
@given(
    raw=st.one_of(st.binary(max_size=60), deep_json, json_values.map(json.dumps).map(str.encode))
)
@example(raw=b"{" * 5 + b"[" * 20_000)  # RecursionError (fixed in sta_write.json_body)
def test_http_bodies_are_json_or_a_400(raw: bytes) -> None:
    value, error = _attempt(
        lambda: asyncio.run(json_body(_Request(raw), None)),  # type: ignore[arg-type]
        InvalidParameterError,
    )
    if error is not None:
        assert error.parameter == "body"
        assert "not valid JSON" in str(error)
        return
    assert json.dumps(value) == json.dumps(json.loads(raw))  # the same document (NaN too)


def test_a_good_message_still_lands() -> None:
    """The fixes refuse only what they must: a plain message parses to its exact values."""
    parsed = parse_message(
        json.dumps(
            {"thing": "d1", "phenomenonTime": "2026-01-01T09:00:00+09:00", "values": {"pm25": 7}}
        ).encode()
    )
    assert not isinstance(parsed, BadMessage)
    assert parsed.time_us == to_micros(datetime(2026, 1, 1, tzinfo=UTC))
    assert parsed.values == {"pm25": 7}
