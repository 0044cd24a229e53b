"""Production store on PostgreSQL 15+ with PostGIS: ``postgresql://user@host:5432/citytwin``.

Layout as in :mod:`citytwin.store.duckdb_` (one table per STA entity kind, a narrow
``observations`` table), with what a server adds (see docs/postgres.md):

- ``observations`` is range-partitioned by phenomenon time, one partition per month, created
  before the write that needs it, plus a DEFAULT partition as the safety net; its primary key
  (datastream, time) is the observation's identity and a BRIN index on time prunes time scans;
- writes COPY the frame in binary (:mod:`citytwin.store.postgres_sql`) into a per-connection
  temporary table, then ``INSERT … SELECT … ON CONFLICT DO NOTHING``: a second write of the same
  frame inserts nothing and counts every row as a duplicate;
- city features are PostGIS geometries with a GiST index, bbox queries use it;
- ``?schema=name`` in the URL keeps citytwin's tables in their own schema (created if missing).

One connection per store object, in autocommit; statements that must land together run in one
transaction. A connection is used by one thread at a time (psycopg serialises them anyway).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Concatenate, ParamSpec, Self, TypeVar

import numpy as np
import psycopg
import pyarrow as pa
from numpy.typing import NDArray
from psycopg import sql

from citytwin.config import redact
from citytwin.errors import (
    ConfigurationError,
    IdentityConflictError,
    StoreUnavailableError,
)
from citytwin.model.sensing import Entity
from citytwin.store.base import (
    AGGREGATE_SCHEMA,
    BUCKET_MICROS,
    Bucket,
    E,
    FeatureBatch,
    FeedStats,
    ObservationFrame,
    QuarantineRecord,
    Store,
    WriteResult,
    check_group_key,
    check_observation_selection,
)
from citytwin.store.entities import (
    ENTITY_TABLES,
    QUARANTINE_PLACE,
    EntityRows,
    EntityTable,
    table_rows,
)
from citytwin.store.postgres_features import layer_sizes, read_features, write_features
from citytwin.store.postgres_observations import ObservationTable
from citytwin.store.postgres_sql import (
    DDL,
    SCHEMA_VERSION,
    STAGING_DDL,
    aggregate_query,
    lock_ddl,
    naive_utc,
    split_url,
)

logger = logging.getLogger(__name__)


P = ParamSpec("P")
R = TypeVar("R")


class SessionLostError(StoreUnavailableError):
    """The server ended the session or cannot be reached right now (restart, failover, idle
    timeout); the next call reconnects."""


def _guarded(
    method: Callable[Concatenate[PostgresStore, P], R],
) -> Callable[Concatenate[PostgresStore, P], R]:
    """Reconnect first when the connection broke; report a lost server as a
    :class:`SessionLostError`.

    A long-running service outlives server restarts and failovers: the call that meets the
    broken connection fails (its transaction is gone), the next one reconnects — and fails the
    same way while the server is still down.
    """

    @functools.wraps(method)
    def guarded(store: PostgresStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            if store._lost or store._con.broken:
                logger.warning("reconnecting to the PostgreSQL store %s", store.url)
                store._connect()
            return method(store, *args, **kwargs)
        except psycopg.OperationalError as exc:
            raise SessionLostError(
                f"PostgreSQL store {store.url}: {' '.join(str(exc).split())}; the server ended the "
                "session or went away (restart, failover, timeout); the next call reconnects, "
                "and retrying a write is safe (writes are idempotent)"
            ) from exc

    return guarded


class PostgresStore(Store):
    """``postgresql://user:password@host:port/dbname[?schema=name]`` (``postgres://`` too)."""

    scheme: ClassVar[str] = "postgresql"
    persistent: ClassVar[bool] = True
    spatial: ClassVar[bool] = True
    _con: psycopg.Connection[Any]

    def __init__(self, url: str) -> None:
        self._conninfo, self._schema = split_url(url)
        self.url = redact(url)
        try:
            self._connect()
        except psycopg.Error as exc:
            raise ConfigurationError(
                f"cannot connect to the PostgreSQL store {self.url}: {str(exc).strip()}; "
                "check that the server is running and accepts connections there, and the user, "
                "password and database name (scripts/postgres.sh start DIR runs a test server)"
            ) from None

    def _connect(self) -> None:
        """Open the connection and prepare its session; until that succeeded, ``_lost`` stays
        set, so that the next guarded call tries again (a half-prepared session would write
        into the wrong schema)."""
        self._lost = True
        if hasattr(self, "_con"):
            self._con.close()  # the broken one: free its socket
        self._con = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10)
        try:
            self._con.execute("SET client_min_messages = warning")
            self._con.execute("SET TIME ZONE 'UTC'")
            self._create_schema(self._schema)
        except BaseException:
            self._con.close()
            raise
        self._observations = ObservationTable(self._con)
        self._lost = False

    @classmethod
    def from_url(cls, url: str) -> Self:
        """Any libpq URL; citytwin's own ``?schema=name`` picks the schema of its tables."""
        return cls(url)

    @property
    def connection(self) -> psycopg.Connection[Any]:
        """The psycopg connection, for callers that need SQL the contract does not offer."""
        return self._con

    def _create_schema(self, schema: str | None) -> None:
        """Put the schema first on the search path and create the tables when they are missing
        (checked first: a role without CREATE privilege can still open a prepared database)."""
        with self._con.transaction():
            if schema is not None:
                self._use_schema(schema)
            if not self._has_table("citytwin_meta"):  # the DDL's last table
                lock_ddl(self._con)
                for statement in DDL:
                    self._con.execute(statement)
                self._con.execute(
                    "INSERT INTO citytwin_meta VALUES ('schema_version', %s) "
                    "ON CONFLICT DO NOTHING",
                    [str(SCHEMA_VERSION)],
                )
        self._con.execute(STAGING_DDL)

    def _use_schema(self, schema: str) -> None:
        found = self._con.execute("SELECT to_regnamespace(%s) IS NOT NULL", [schema]).fetchone()
        if not (found and found[0]):
            self._con.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
            )
        self._con.execute(
            "SELECT set_config('search_path', %s || ', ' || current_setting('search_path'), false)",
            [sql.Identifier(schema).as_string(self._con)],
        )

    def _has_table(self, name: str) -> bool:
        found = self._con.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_tables "
            "WHERE schemaname = current_schema() AND tablename = %s)",
            [name],
        ).fetchone()
        return bool(found and found[0])

    # -- entities -------------------------------------------------------------------------
    @_guarded
    def register(self, entities: Sequence[Entity | EntityRows]) -> None:
        for table, data in table_rows(entities):
            self._upsert(table, data)

    def _upsert(self, table: EntityTable, data: dict[str, Sequence[Any]]) -> None:
        columns = list(data)
        name = sql.Identifier(table.name)
        names = sql.SQL(", ").join(map(sql.Identifier, columns))
        with self._con.transaction():
            self._con.execute(
                sql.SQL("CREATE TEMP TABLE staged_entities (LIKE {}) ON COMMIT DROP").format(name)
            )
            with self._con.cursor().copy(
                sql.SQL("COPY staged_entities ({}) FROM STDIN").format(names)
            ) as copy:
                for row in zip(*data.values(), strict=True):
                    copy.write_row(row)
            clash = self._con.execute(
                sql.SQL(
                    "SELECT t.id, t.key, s.key FROM {} t JOIN staged_entities s USING (id) "
                    "WHERE t.key IS DISTINCT FROM s.key LIMIT 1"
                ).format(name)
            ).fetchone()
            if clash:
                raise IdentityConflictError(
                    f"{table.name} id {clash[0]}: keys {clash[1]!r}, {clash[2]!r}"
                )
            updates = sql.SQL(", ").join(
                sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in columns[1:]
            )
            self._con.execute(
                sql.SQL(
                    "INSERT INTO {} ({}) SELECT {} FROM staged_entities "
                    "ON CONFLICT (id) DO UPDATE SET {}"
                ).format(name, names, names, updates)
            )

    @_guarded
    def entities(self, kind: type[E], ids: Sequence[int] | None = None) -> list[E]:
        table = sql.Identifier(ENTITY_TABLES[kind].name)
        if ids is None:
            every = sql.SQL("SELECT doc::text FROM {} ORDER BY id").format(table)
            rows = self._con.execute(every).fetchall()
        else:
            some = sql.SQL("SELECT doc::text FROM {} WHERE id = ANY(%s::bigint[]) ORDER BY id")
            rows = self._con.execute(some.format(table), [[int(i) for i in ids]]).fetchall()
        return [kind.model_validate_json(doc) for (doc,) in rows]

    @_guarded
    def delete(self, kind: type[Entity], ids: Sequence[int]) -> int:
        query = sql.SQL("DELETE FROM {} WHERE id = ANY(%s::bigint[])")
        table = sql.Identifier(ENTITY_TABLES[kind].name)
        return self._con.execute(query.format(table), [[int(i) for i in ids]]).rowcount

    # -- observations ---------------------------------------------------------------------
    @_guarded
    def write_observations(self, frame: ObservationFrame) -> WriteResult:
        return self._observations.write(frame)

    @_guarded
    def write_new_observations(self, frame: ObservationFrame) -> NDArray[np.bool_]:
        return self._observations.write_new(frame)

    @_guarded
    def existing(self, frame: ObservationFrame) -> NDArray[np.bool_]:
        return self._observations.existing(frame)

    @_guarded
    def delete_observations(
        self,
        *,
        datastream_ids: Sequence[int] | None = None,
        identities: ObservationFrame | None = None,
    ) -> int:
        check_observation_selection(datastream_ids, identities)
        return self._observations.delete(datastream_ids=datastream_ids, identities=identities)

    @_guarded
    def observations(
        self,
        *,
        datastream_ids: Sequence[int] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ObservationFrame:
        return self._observations.read(datastream_ids=datastream_ids, start=start, end=end)

    @_guarded
    def latest(self, datastream_ids: Sequence[int] | None = None) -> ObservationFrame:
        return self._observations.latest(datastream_ids)

    @_guarded
    def aggregate(
        self,
        *,
        bucket: Bucket = "hour",
        by: str = "datastream",
        start: datetime | None = None,
        end: datetime | None = None,
        observed_property: str | None = None,
        exclude_flags: int = 0,
    ) -> pa.Table:
        thing_property = check_group_key(by)
        if bucket not in BUCKET_MICROS:
            raise ValueError(f"bucket {bucket!r}: expected one of {sorted(BUCKET_MICROS)}")
        params: dict[str, Any] = {
            "bucket": bucket,
            "flags": int(exclude_flags),
            "key": thing_property,
            "start": None if start is None else naive_utc(start),
            "end": None if end is None else naive_utc(end),
            "property": observed_property,
        }
        query = aggregate_query(by, {name for name, value in params.items() if value is not None})
        rows = self._con.execute(query, params).fetchall()
        names = AGGREGATE_SCHEMA.names
        return pa.Table.from_pylist(
            [dict(zip(names, row, strict=True)) for row in rows], schema=AGGREGATE_SCHEMA
        )

    # -- city features ----------------------------------------------------------------------
    @_guarded
    def write_features(self, layer: str, batch: FeatureBatch) -> WriteResult:
        return write_features(self._con, layer, batch, url=self.url)

    @_guarded
    def features(
        self, layer: str, *, bbox: tuple[float, float, float, float] | None = None
    ) -> FeatureBatch:
        return read_features(self._con, layer, bbox=bbox)

    @_guarded
    def layers(self) -> dict[str, int]:
        return layer_sizes(self._con)

    # -- quarantine and housekeeping -------------------------------------------------------
    @_guarded
    def write_quarantine(self, records: Sequence[QuarantineRecord]) -> None:
        if not records:
            return
        columns = "feed, source, line, raw, reason, recorded_at"
        with self._con.transaction():
            self._con.execute(
                "CREATE TEMP TABLE staged_quarantine (ord bigint, feed text, source text, "
                "line bigint, raw text, reason text, recorded_at timestamptz) ON COMMIT DROP"
            )
            with self._con.cursor().copy(
                f"COPY staged_quarantine (ord, {columns}) FROM STDIN"
            ) as copy:
                for n, r in enumerate(records):
                    copy.write_row([n, r.feed, r.source, r.line, r.raw, r.reason, r.recorded_at])
            self._con.execute(
                f"INSERT INTO quarantine ({columns}) SELECT {columns} FROM staged_quarantine b "
                "WHERE b.line IS NULL OR NOT EXISTS (SELECT 1 FROM quarantine q WHERE "
                f"{QUARANTINE_PLACE}) ORDER BY b.ord"
            )

    @_guarded
    def quarantined(
        self, *, feed: str | None = None, limit: int | None = None
    ) -> list[QuarantineRecord]:
        rows = self._con.execute(
            "SELECT feed, source, line, raw, reason, recorded_at FROM quarantine "
            "WHERE %(feed)s::text IS NULL OR feed = %(feed)s ORDER BY id LIMIT %(limit)s",
            {"feed": feed, "limit": limit},
        ).fetchall()
        return [
            QuarantineRecord(f, s, line, raw, reason, at.astimezone(UTC))
            for f, s, line, raw, reason, at in rows
        ]

    @_guarded
    def stats(self) -> list[FeedStats]:
        rows = self._con.execute(
            """SELECT * FROM (
                   SELECT coalesce(d.feed, '') AS feed,
                          coalesce(d.observed_property, '') AS observed_property,
                          count(DISTINCT o.datastream_id), count(*),
                          count(*) FILTER (WHERE o.quality <> 0),
                          min(o.phenomenon_time), max(o.phenomenon_time)
                   FROM observations o LEFT JOIN datastreams d ON d.id = o.datastream_id
                   GROUP BY 1, 2) s
               ORDER BY s.feed COLLATE "C", s.observed_property COLLATE "C" """
        ).fetchall()
        return [
            FeedStats(f, p, n, c, q, lo.replace(tzinfo=UTC), hi.replace(tzinfo=UTC))
            for f, p, n, c, q, lo, hi in rows
        ]

    def close(self) -> None:
        if not self._con.closed:
            self._con.close()
