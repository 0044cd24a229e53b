"""The observations table of the PostgreSQL store: bulk writes through binary COPY, bulk reads.

Writes COPY a frame (encoded by :func:`~citytwin.store.postgres_sql.encode_copy`) either straight
into ``observations`` — when nothing is stored for its datastreams within its time span, the
common case of new readings — or into the per-connection ``staged_observations`` table, then
``INSERT … SELECT`` the rows not stored yet, ``ON CONFLICT DO NOTHING``. Either way a write is
idempotent and one transaction. Reads come back as one ``bytea`` of fixed-width binary rows
(:func:`~citytwin.store.postgres_sql.packed_query`), decoded by numpy.

Times cross the boundary as int64 µs in binary COPY (exact); time bounds in SQL are timestamp
literals widened to ±infinity beyond what a Python datetime holds, so they only prune.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray
from psycopg import sql

from citytwin.store.base import ObservationFrame, WriteResult, first_of_identity
from citytwin.store.postgres_partitions import MonthlyPartitions
from citytwin.store.postgres_sql import (
    OBSERVATION_COLUMNS,
    OBSERVATION_KINDS,
    check_times,
    decode_packed,
    encode_copy,
    naive_utc,
    observation_columns,
    packed_query,
    storage_order,
    timestamp_literal,
)

logger = logging.getLogger(__name__)
ANALYZE_ROWS = 10_000  # above this many staged rows, give the planner real statistics


class ObservationTable:
    """``observations`` (monthly partitions, primary key (datastream, time)) on one connection."""

    def __init__(self, con: psycopg.Connection[Any]) -> None:
        self._con = con
        self.partitions = MonthlyPartitions(con)

    # -- observations: writing ------------------------------------------------------------
    def _stage(self, frame: ObservationFrame, *, rows: NDArray[np.int64] | None = None) -> None:
        """COPY a frame (and row numbers) into ``staged_observations``, inside a transaction."""
        self._copy("staged_observations", frame, rows=rows)
        if len(frame) > ANALYZE_ROWS:
            self._con.execute("ANALYZE staged_observations")

    def _copy(
        self, table: str, frame: ObservationFrame, *, rows: NDArray[np.int64] | None = None
    ) -> None:
        """Binary COPY of a frame (and row numbers) into ``table``."""
        columns = observation_columns(frame)
        names = OBSERVATION_COLUMNS
        if rows is not None:
            columns, names = [("int8", rows), *columns], "row, " + names
        payload = encode_copy(columns)
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(table), sql.SQL(names)
        )
        with self._con.cursor().copy(statement) as copy:
            step = 8 << 20
            for start in range(0, len(payload), step):
                copy.write(payload[start : start + step])

    def write(self, frame: ObservationFrame) -> WriteResult:
        """When nothing is stored yet for the frame's datastreams within its time span (new
        readings, the common case), COPY it straight into the table (no staging, no conflict
        checks: ~2x faster); else, or when a concurrent writer got there first, stage it and
        ``INSERT … ON CONFLICT DO NOTHING``."""
        if not len(frame):
            return WriteResult(0, 0)
        check_times(frame)
        unique = storage_order(frame)
        self.partitions.ensure(unique.phenomenon_time)
        with self._con.transaction():
            if not self._overlaps(unique):
                try:
                    with self._con.transaction():  # a savepoint: a unique violation undoes it
                        self._copy("observations", unique)
                    return WriteResult(len(unique), len(frame) - len(unique))
                except psycopg.errors.UniqueViolation:
                    logger.debug(
                        "rows appeared meanwhile; writing %d rows with ON CONFLICT", len(unique)
                    )
            self._stage(unique)
            # the anti-join skips stored rows in bulk (a hash join for big frames: ~1.7x faster
            # than a conflict check per row); ON CONFLICT still covers concurrent writers
            inserted = self._con.execute(
                f"INSERT INTO observations SELECT {OBSERVATION_COLUMNS} FROM staged_observations s "
                "WHERE NOT EXISTS (SELECT 1 FROM observations o "
                " WHERE o.datastream_id = s.datastream_id AND o.phenomenon_time = s.phenomenon_time"
                " AND o.phenomenon_time BETWEEN %s::timestamp AND %s::timestamp) "
                "ON CONFLICT DO NOTHING",
                self._span(unique),
            ).rowcount
        return WriteResult(inserted, len(frame) - inserted)

    def _overlaps(self, frame: ObservationFrame) -> bool:
        """Whether anything is stored for the frame's datastreams within its time span (an
        index probe per datastream and partition)."""
        ds = frame.datastream_id
        heads = np.unique(ds[np.r_[True, ds[1:] != ds[:-1]]])
        found = self._con.execute(
            "SELECT EXISTS (SELECT 1 FROM observations WHERE datastream_id = ANY(%s::bigint[]) "
            "AND phenomenon_time BETWEEN %s::timestamp AND %s::timestamp)",
            [heads.tolist(), *self._span(frame)],
        ).fetchone()
        return bool(found and found[0])

    def write_new(self, frame: ObservationFrame) -> NDArray[np.bool_]:
        """One statement: insert the staged rows whose Datastream exists, skipping stored
        identities, and return the row numbers of those written."""
        first = first_of_identity(frame)
        if not first.any():
            return first
        check_times(frame)
        rows = np.flatnonzero(first).astype(np.int64)
        self.partitions.ensure(frame.phenomenon_time[first])
        with self._con.transaction():
            self._stage(frame.take(first), rows=rows)
            written = self._con.execute(
                "WITH ins AS (INSERT INTO observations"
                f" SELECT {OBSERVATION_COLUMNS} FROM staged_observations s"
                " WHERE EXISTS (SELECT 1 FROM datastreams d WHERE d.id = s.datastream_id)"
                " ORDER BY datastream_id, phenomenon_time"
                " ON CONFLICT DO NOTHING RETURNING datastream_id, phenomenon_time) "
                "SELECT s.row FROM staged_observations s"
                " JOIN ins USING (datastream_id, phenomenon_time)"
            ).fetchall()
        new = np.zeros(len(frame), dtype=bool)
        new[np.fromiter((r for (r,) in written), np.int64, len(written))] = True
        return new

    def existing(self, frame: ObservationFrame) -> NDArray[np.bool_]:
        found = np.zeros(len(frame), dtype=bool)
        if not len(frame):
            return found
        with self._con.transaction():
            self._stage(frame, rows=np.arange(len(frame), dtype=np.int64))
            (rows,) = self._read(
                "SELECT s.row FROM staged_observations s WHERE EXISTS (SELECT 1 FROM observations o"
                " WHERE o.datastream_id = s.datastream_id AND o.phenomenon_time = s.phenomenon_time"
                " AND o.phenomenon_time BETWEEN %s::timestamp AND %s::timestamp)",
                self._span(frame),
                ("int8",),
            )
        found[rows] = True
        return found

    def _span(self, frame: ObservationFrame) -> list[str]:
        """The frame's first and last time, so that partitions are pruned: timestamp literals,
        widened to ∓infinity beyond what a Python datetime holds (years 1–9999)."""
        times = frame.phenomenon_time
        return [timestamp_literal(int(times.min()), "-"), timestamp_literal(int(times.max()), "")]

    def delete(
        self,
        *,
        datastream_ids: Sequence[int] | None = None,
        identities: ObservationFrame | None = None,
    ) -> int:
        removed = 0
        with self._con.transaction():
            if datastream_ids is not None:
                removed += self._con.execute(
                    "DELETE FROM observations WHERE datastream_id = ANY(%s::bigint[])",
                    [[int(i) for i in datastream_ids]],
                ).rowcount
            if identities is not None and len(identities):
                self._stage(identities)
                removed += self._con.execute(
                    "DELETE FROM observations o USING staged_observations s "
                    "WHERE o.datastream_id = s.datastream_id "
                    "AND o.phenomenon_time = s.phenomenon_time "
                    "AND o.phenomenon_time BETWEEN %s::timestamp AND %s::timestamp",
                    self._span(identities),
                ).rowcount
        return removed

    # -- observations: reading ------------------------------------------------------------
    def _read(self, query: str, params: Sequence[Any], kinds: Sequence[str]) -> list[NDArray[Any]]:
        """Columns of a query's result, packed by the server (see :func:`packed_query`)."""
        cursor = self._con.cursor(binary=True)
        row = cursor.execute(packed_query(query, kinds), params).fetchone()
        count, payload = row if row else (0, None)
        return decode_packed(int(count), payload, kinds)

    def _read_frame(self, query: str, params: Sequence[Any]) -> ObservationFrame:
        """Observations a query selects, ordered by (datastream, time): the query's ORDER BY
        survives the packing aggregate in practice, which SQL does not promise, so the order is
        checked (O(n)) and restored if need be."""
        frame = ObservationFrame.from_arrays(*self._read(query, params, OBSERVATION_KINDS))
        ds, t = frame.datastream_id, frame.phenomenon_time
        in_order = np.all((ds[1:] > ds[:-1]) | ((ds[1:] == ds[:-1]) & (t[1:] > t[:-1])))
        return frame if in_order else frame.sorted()

    def read(
        self,
        *,
        datastream_ids: Sequence[int] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ObservationFrame:
        clauses, params = ["TRUE"], list[Any]()
        if datastream_ids is not None:
            clauses.append("datastream_id = ANY(%s::bigint[])")
            params.append([int(i) for i in datastream_ids])
        if start is not None:
            clauses.append("phenomenon_time >= %s::timestamp")
            params.append(naive_utc(start))
        if end is not None:
            clauses.append("phenomenon_time < %s::timestamp")
            params.append(naive_utc(end))
        return self._read_frame(
            "SELECT datastream_id, phenomenon_time, coalesce(result, 'NaN'), quality "
            f"FROM observations WHERE {' AND '.join(clauses)} "
            "ORDER BY datastream_id, phenomenon_time",
            params,
        )

    def latest(self, datastream_ids: Sequence[int] | None = None) -> ObservationFrame:
        """One index probe per datastream (the newest partition first), not a full scan; the
        datastreams present are found by a skip scan of the primary key."""
        if datastream_ids is None:
            ids = (
                "WITH RECURSIVE ids(id) AS ("
                " SELECT min(datastream_id) FROM observations UNION ALL"
                " SELECT (SELECT min(datastream_id) FROM observations WHERE datastream_id > ids.id)"
                " FROM ids WHERE ids.id IS NOT NULL) SELECT id FROM ids WHERE id IS NOT NULL"
            )
            params: list[Any] = []
        else:
            ids = "SELECT DISTINCT unnest(%s::bigint[]) AS id"
            params = [[int(i) for i in datastream_ids]]
        return self._read_frame(
            f"SELECT o.* FROM ({ids}) ids CROSS JOIN LATERAL ("
            " SELECT datastream_id, phenomenon_time, coalesce(result, 'NaN'), quality"
            " FROM observations WHERE datastream_id = ids.id"
            " ORDER BY phenomenon_time DESC LIMIT 1) o ORDER BY o.datastream_id",
            params,
        )
