"""The SQL side of the PostgreSQL store: schema, URLs, monthly partitions, binary COPY.

Kept apart from :mod:`citytwin.store.postgres` (the :class:`~citytwin.store.base.Store` methods)
because none of it needs a connection: it is text, numbers and bytes, testable without a server.

Binary COPY (PostgreSQL documentation, "COPY — File Formats — Binary Format") carries each row as a
16-bit field count then, per field, a 32-bit length and the value in network byte order; a
``timestamp`` is int64 microseconds since 2000-01-01. Observation rows have no NULLs, so every row
has the same width and a whole frame is one numpy structured array: encoding a million rows is a
``tobytes``, not a Python loop. Reads come back the same way, packed by the server into one
``bytea`` of fixed-width rows (:func:`packed_query`, :func:`decode_packed`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

import numpy as np
import psycopg
from numpy.typing import NDArray

from citytwin.config import redact
from citytwin.errors import ConfigurationError, StoreError, ValidationError
from citytwin.store.base import ObservationFrame, first_of_identity, to_micros
from citytwin.store.entities import ENTITY_TABLES, ColumnKind, create_table

SCHEMA_VERSION = 1
PG_EPOCH_MICROS = 946_684_800_000_000  # 2000-01-01T00:00:00Z in µs since the Unix epoch
FIRST_TIMESTAMP_MICROS = -210_866_803_200_000_000  # 4714-11-24 00:00 BC, µs since the Unix epoch
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_HEADER = _SIGNATURE + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"  # no OIDs, no extension
_TRAILER = b"\xff\xff"
_WIDTH: dict[str, tuple[str, int]] = {
    "int8": (">i8", 8),
    "int4": (">i4", 4),
    "float8": (">f8", 8),
    "timestamp": (">i8", 8),
}
OBSERVATION_KINDS = ("int8", "timestamp", "float8", "int4")
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def split_url(url: str) -> tuple[str, str | None]:
    """Split citytwin's own ``schema=`` query parameter off a libpq URL.

    >>> split_url("postgres://u@h/db?schema=city&sslmode=require")
    ('postgres://u@h/db?sslmode=require', 'city')
    """
    parsed = urlparse(url)
    query = parse_qsl(parsed.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    rest = urlencode([(key, value) for key, value in query if key != "schema"])
    schema = schemas[-1] if schemas else None
    if schema is not None and not _IDENTIFIER.fullmatch(schema):
        raise ConfigurationError(
            f"store URL {redact(url)}: schema={schema!r} is not a plain identifier; expected "
            "lower-case letters, digits and underscores (e.g. schema=citytwin)"
        )
    return urlunparse(parsed._replace(query=rest)), schema


# -- schema -----------------------------------------------------------------------------------
PG_TYPES: dict[ColumnKind, str] = {"bigint": "bigint", "text": "text", "json": "jsonb"}

# The documents are `json` (text kept as written: they are read back whole by pydantic);
# `properties` is `jsonb` because aggregate() groups by its keys.
DDL: list[str] = [
    *(create_table(t, PG_TYPES, doc_type="json") for t in ENTITY_TABLES.values()),
    # identity (datastream, time) is the primary key: ON CONFLICT DO NOTHING keeps writes
    # idempotent. Monthly partitions are created on demand (see partition_ddl); the DEFAULT
    # partition catches what no month holds. BRIN on time: rows arrive roughly in time order,
    # so a few kB of block ranges prune time scans of every datastream at once (aggregate, stats).
    """CREATE TABLE IF NOT EXISTS observations (
        datastream_id bigint NOT NULL, phenomenon_time timestamp NOT NULL,
        result double precision, quality integer NOT NULL DEFAULT 0,
        PRIMARY KEY (datastream_id, phenomenon_time)) PARTITION BY RANGE (phenomenon_time)""",
    "CREATE TABLE IF NOT EXISTS observations_default PARTITION OF observations DEFAULT",
    "CREATE INDEX IF NOT EXISTS observations_time_brin ON observations "
    "USING brin (phenomenon_time) WITH (pages_per_range = 32)",
    """CREATE TABLE IF NOT EXISTS quarantine (
        id bigserial PRIMARY KEY, feed text, source text, line bigint, raw text, reason text,
        recorded_at timestamptz)""",
    "CREATE TABLE IF NOT EXISTS citytwin_meta (name text PRIMARY KEY, value text)",
]
# per connection: rows staged by COPY, emptied by every commit
STAGING_DDL = """CREATE TEMP TABLE IF NOT EXISTS staged_observations (
    row bigint, datastream_id bigint, phenomenon_time timestamp, result double precision,
    quality integer) ON COMMIT DELETE ROWS"""
LOCK_KEY = 0xC17E  # pg_advisory_xact_lock(LOCK_KEY, hashtext(current_schema())) serialises DDL


def lock_ddl(con: psycopg.Connection[Any]) -> None:
    """Serialise DDL on the current schema with other processes until the transaction ends
    (two ``CREATE TABLE IF NOT EXISTS`` racing each other can both try to create)."""
    con.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", [LOCK_KEY])


# -- observations ---------------------------------------------------------------------------
NAIVE_EPOCH = datetime(1970, 1, 1)
OBSERVATION_COLUMNS = "datastream_id, phenomenon_time, result, quality"


def naive_utc(value: datetime) -> datetime:
    """An aware time as the naive UTC ``timestamp`` the table holds (exact to the µs)."""
    return NAIVE_EPOCH + timedelta(microseconds=to_micros(value))


def storage_order(frame: ObservationFrame) -> ObservationFrame:
    """The frame's first row of each identity, ordered by (datastream, time); no sort when each
    datastream's rows are already contiguous with increasing times (what ingest produces)."""
    ds, t = frame.datastream_id, frame.phenomenon_time
    change = ds[1:] != ds[:-1]
    if np.all(change | (t[1:] > t[:-1])):
        heads = ds[np.r_[True, change]]
        if np.unique(heads).size == heads.size:
            return frame
    return frame.take(first_of_identity(frame)).sorted()


def timestamp_literal(micros: int, sign: str) -> str:
    """A ``timestamp`` literal of µs since the epoch, or ``{sign}infinity`` beyond the years
    1–9999 (enough for bounds that only prune).

    >>> timestamp_literal(1, ""), timestamp_literal(-62_200_000_000_000_000, "-")
    ('1970-01-01T00:00:00.000001', '-infinity')
    """
    try:
        return (NAIVE_EPOCH + timedelta(microseconds=micros)).isoformat()
    except OverflowError:
        return f"{sign}infinity"


def check_times(frame: ObservationFrame) -> None:
    """Refuse times before PostgreSQL's first ``timestamp`` (4714-11-24 BC), naming the row;
    later ones cannot occur (int64 µs end in 294247 AD, before PostgreSQL's last)."""
    early = np.flatnonzero(frame.phenomenon_time < FIRST_TIMESTAMP_MICROS)
    if early.size:
        row = int(early[0])
        raise ValidationError(
            f"observation row {row}: phenomenon time {int(frame.phenomenon_time[row])} µs since "
            f"the Unix epoch is before 4714 BC; expected a time PostgreSQL can store "
            f"({early.size} such rows)"
        )


def observation_columns(frame: ObservationFrame) -> list[tuple[str, NDArray[Any]]]:
    """The frame's columns tagged with their SQL types, for :func:`encode_copy`."""
    values = (frame.datastream_id, frame.phenomenon_time, frame.result, frame.quality)
    return list(zip(OBSERVATION_KINDS, values, strict=True))


def aggregate_query(by: str, given: set[str]) -> str:
    """SQL of :meth:`Store.aggregate` grouped by ``by`` (checked by ``check_group_key``), with
    the filters whose named parameters are ``given``; strings sort bytewise (``COLLATE "C"``),
    as in DuckDB, whatever the database's collation."""
    group = {"datastream": "o.datastream_id::text", "observed_property": "d.observed_property"}
    filters = ["(o.quality & %(flags)s) = 0"]
    filters += ["o.phenomenon_time >= %(start)s::timestamp"] if "start" in given else []
    filters += ["o.phenomenon_time < %(end)s::timestamp"] if "end" in given else []
    filters += ["d.observed_property = %(property)s"] if "property" in given else []
    filters += ["g.grp IS NOT NULL"] if by not in group else []
    return f"""
        SELECT * FROM (
            SELECT g.grp AS "group", d.observed_property,
                   date_trunc(%(bucket)s, o.phenomenon_time) AS bucket,
                   avg(o.result) AS mean, min(o.result) AS min, max(o.result) AS max,
                   count(*) AS count
            FROM observations o
            LEFT JOIN datastreams d ON d.id = o.datastream_id
            LEFT JOIN things t ON t.id = d.thing_id
            CROSS JOIN LATERAL (SELECT {group.get(by, "t.properties ->> %(key)s")} AS grp) g
            WHERE {" AND ".join(filters)}
            GROUP BY 1, 2, 3) a
        ORDER BY a."group" COLLATE "C", a.observed_property COLLATE "C", a.bucket"""


# -- binary COPY ------------------------------------------------------------------------------
def _row_dtype(kinds: Sequence[str]) -> np.dtype[Any]:
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for i, kind in enumerate(kinds):
        fields += [(f"length{i}", ">i4"), (f"value{i}", _WIDTH[kind][0])]
    return np.dtype(fields)


def encode_copy(columns: Sequence[tuple[str, NDArray[Any]]]) -> bytes:
    """Binary COPY payload of equal-length numpy columns, each tagged with its SQL type.

    >>> payload = encode_copy([("int8", np.array([1, 2])), ("int4", np.array([0, 0]))])
    >>> len(payload)  # 19-byte header, 2 rows of 2 + (4 + 8) + (4 + 4) bytes, 2-byte trailer
    65
    """
    kinds = [kind for kind, _ in columns]
    rows = np.empty(len(columns[0][1]), dtype=_row_dtype(kinds))
    rows["count"] = len(columns)
    for i, (kind, values) in enumerate(columns):
        rows[f"length{i}"] = _WIDTH[kind][1]
        rows[f"value{i}"] = values - PG_EPOCH_MICROS if kind == "timestamp" else values
    return _HEADER + rows.tobytes() + _TRAILER


_SEND = {
    "int8": "int8send",
    "int4": "int4send",
    "float8": "float8send",
    "timestamp": "timestamp_send",
}


def packed_query(query: str, kinds: Sequence[str]) -> str:
    """``query`` (whose columns have the SQL types ``kinds``, in order) as one row: its row
    count and its rows packed into one ``bytea`` in binary send format.

    Why not ``COPY … TO STDOUT``: the server sends COPY output one message per row and the
    client reads them one Python call each (~5 µs a row); one ``bytea`` is one message, decoded
    by :func:`decode_packed` without a Python object per value. The price: one result is at most
    1 GB (38 M observations), and ``string_agg`` ignores NULL rows (the count catches them).

    >>> packed_query("SELECT 1::int4", ["int4"])
    "SELECT count(*), string_agg(int4send(c0), ''::bytea) FROM (SELECT 1::int4) q(c0)"
    """
    names = [f"c{i}" for i in range(len(kinds))]
    packed = " || ".join(f"{_SEND[kind]}({name})" for kind, name in zip(kinds, names, strict=True))
    return f"SELECT count(*), string_agg({packed}, ''::bytea) FROM ({query}) q({', '.join(names)})"


def decode_packed(count: int, payload: bytes | None, kinds: Sequence[str]) -> list[NDArray[Any]]:
    """Columns (native byte order, timestamps as µs since the Unix epoch) of a
    :func:`packed_query` result.

    >>> decode_packed(2, bytes.fromhex("0000000000000007" "0000002a" "0000000000000008" "00000000"),
    ...               ["int8", "int4"])
    [array([7, 8]), array([42,  0], dtype=int32)]
    """
    dtype = np.dtype([(f"value{i}", _WIDTH[kind][0]) for i, kind in enumerate(kinds)])
    payload = payload or b""
    if len(payload) != count * dtype.itemsize:
        raise StoreError(
            f"PostgreSQL returned {len(payload)} bytes for {count} rows of {list(kinds)}; "
            f"expected {count * dtype.itemsize} (a NULL in a column that should have none)"
        )
    rows = np.frombuffer(payload, dtype=dtype)
    out: list[NDArray[Any]] = []
    for i, kind in enumerate(kinds):
        values = rows[f"value{i}"].astype(_WIDTH[kind][0].replace(">", "="))
        out.append(values + PG_EPOCH_MICROS if kind == "timestamp" else values)
    return out
