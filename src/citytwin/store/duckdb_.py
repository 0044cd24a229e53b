"""Embedded default store on DuckDB (one file, no server), with the spatial extension.

Layout: one table per STA entity kind holding the entity as a JSON document plus the columns
queries need (links, keys); ``observations`` is narrow and append-mostly — (datastream_id,
phenomenon_time, result, quality) — kept in (datastream, time) order within each write so zone
maps prune time-range scans. Times are ``TIMESTAMP`` holding UTC (TIMESTAMPTZ costs ~40 % more on
bulk insert and the contract is UTC anyway).

Identity without an index: a PRIMARY KEY (ART index) on observations makes bulk inserts ~10× slower,
so duplicates are removed with an anti-join restricted to the batch's datastreams and time span,
which DuckDB answers from zone maps when the span is new (the common case). A span this store
found empty is remembered with the datastreams it has written there since (:class:`_Appended`):
the ingest's frames of other properties over the same span are then appended without a query.

A few ids (one Datastream of an API request) are written into the SQL as literals, not matched
against a registered id table: a constant filter is pushed into the scan, so the primary-key
index answers for entities (``id IN (…)``) and zone maps prune the observations (one
``datastream_id = <n>`` query per id, as rows are grouped by datastream): 0.4–0.8 ms instead of
2.5 ms for entities, and no full scan for ``observations`` and ``latest``. Writes and
:meth:`DuckDBStore.existing` likewise name a few datastreams and their time span in the SQL.

The spatial extension is loaded from the ``duckdb-extension-spatial`` wheel by path: ``INSTALL
spatial`` would try to download it, which fails offline. It is loaded on the first use of a city
feature layer, not at open: the 80 MB library takes ~0.3 s to load, which every ``citytwin
ingest``/``stats`` run and every ingest would otherwise pay for nothing (``GEOMETRY`` itself is a
core type, so a file with feature tables opens without it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Self
from urllib.parse import urlparse

import duckdb
import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from citytwin.errors import ConfigurationError, IdentityConflictError, StoreError
from citytwin.model.sensing import (
    Datastream,
    Entity,
)
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
    check_layer_name,
    check_observation_selection,
    first_of_identity,
    from_micros,
    to_micros,
)
from citytwin.store.entities import (
    ENTITY_TABLES,
    QUARANTINE_PLACE,
    ColumnKind,
    EntityRows,
    EntityTable,
    create_table,
    table_rows,
)

logger = logging.getLogger(__name__)
SCHEMA_VERSION = 1
FEW_IDS = 8  # up to this many ids go into the SQL as literals (see the module docstring)
FEW_DATASTREAMS = 64  # up to this many, a write or a lookup names its datastreams in its SQL
FEW_ROWS = 256  # up to this many rows, a write is one INSERT … VALUES statement
#: Rows per Arrow batch handed to DuckDB: it scans a registered Arrow table one batch per task,
#: so a 1.5M-row frame in one batch is inserted by one thread (its row group size; measured
#: 0.85 s instead of 1.47 s for 10.5M rows on 2 cores).
STAGE_ROWS = 122_880


def spatial_extension_path() -> Path:
    """Path of the spatial extension shipped in the ``duckdb-extension-spatial`` wheel."""
    import duckdb_extension_spatial

    root = Path(duckdb_extension_spatial.__file__).parent / "extensions"
    found = sorted(root.glob(f"v{duckdb.__version__}/spatial.duckdb_extension"))
    if not found:
        raise ConfigurationError(
            f"no spatial extension for DuckDB {duckdb.__version__} under {root}; "
            "install duckdb-extension-spatial with the same version as duckdb"
        )
    return found[0]


_TYPES: dict[ColumnKind, str] = {"bigint": "BIGINT", "text": "VARCHAR", "json": "JSON"}

_DDL = [
    *(create_table(t, _TYPES) for t in ENTITY_TABLES.values()),
    # phenomenon_time holds UTC; identity (datastream_id, phenomenon_time) is kept by anti-join
    """CREATE TABLE IF NOT EXISTS observations (
        datastream_id BIGINT NOT NULL, phenomenon_time TIMESTAMP NOT NULL,
        result DOUBLE, quality INTEGER NOT NULL DEFAULT 0)""",
    "CREATE SEQUENCE IF NOT EXISTS quarantine_seq",
    """CREATE TABLE IF NOT EXISTS quarantine (
        id BIGINT DEFAULT nextval('quarantine_seq'), feed VARCHAR, source VARCHAR, line BIGINT,
        raw VARCHAR, reason VARCHAR, recorded_at TIMESTAMPTZ)""",
    "CREATE TABLE IF NOT EXISTS citytwin_meta (name VARCHAR PRIMARY KEY, value VARCHAR)",
]


def _grouped_and_unique(frame: ObservationFrame) -> bool:
    """True when each datastream's rows are contiguous with strictly increasing times.

    Then the frame holds no repeated identity and needs no sort: O(n) instead of a 12M-row
    lexsort, and what the ingest pipeline produces.
    """
    ds, t = frame.datastream_id, frame.phenomenon_time
    change = ds[1:] != ds[:-1]
    if not np.all(change | (t[1:] > t[:-1])):
        return False
    heads = ds[np.r_[True, change]]
    return bool(np.unique(heads).size == heads.size)


def _dedupe(frame: ObservationFrame) -> ObservationFrame:
    """Drop repeated (datastream, time) rows of a sorted frame, keeping the first."""
    repeat = (frame.datastream_id[1:] == frame.datastream_id[:-1]) & (
        frame.phenomenon_time[1:] == frame.phenomenon_time[:-1]
    )
    return frame.take(np.r_[True, ~repeat]) if repeat.any() else frame


def _few(ids: Sequence[int]) -> list[int]:
    """The distinct ids, ascending, when there are at most :data:`FEW_IDS`; else none.

    They become SQL literals: ``int`` makes that safe (no text reaches the query).
    """
    distinct = sorted({int(i) for i in ids})
    return distinct if len(distinct) <= FEW_IDS else []


# Breaking the house rule "SQL is parameterised", knowingly: _scope and _values render numbers
# into SQL text. Only int64/float64 values of an ObservationFrame's typed numpy columns are
# rendered (int() / repr(float) of them cannot carry SQL), never text that came from a request;
# id lists cannot be list parameters (see _register_ids) and a VALUES list of bound parameters
# costs more than the insert for the API's small group-commit writes.
def _scope(frame: ObservationFrame) -> str:
    """SQL condition on observations that holds for every identity of ``frame``: its time span
    and, for a few datastreams, their ids (rows are grouped by datastream, so zone maps prune
    on both; a time span alone spans every row group of a table written datastream by
    datastream)."""
    lo, hi = _span(frame)
    span = f"phenomenon_time BETWEEN make_timestamp({lo}) AND make_timestamp({hi})"
    ids = _datastreams(frame)
    if len(ids) > FEW_DATASTREAMS:
        return span
    return f"datastream_id IN ({', '.join(str(int(i)) for i in ids)}) AND {span}"


def _span(frame: ObservationFrame) -> tuple[int, int]:
    """First and last phenomenon time of a non-empty frame (µs)."""
    return int(frame.phenomenon_time.min()), int(frame.phenomenon_time.max())


def _datastreams(frame: ObservationFrame) -> NDArray[np.int64]:
    """The frame's datastream ids, sorted (run heads first: O(n) on a grouped frame)."""
    ds = frame.datastream_id
    return np.unique(ds[np.r_[True, ds[1:] != ds[:-1]]])


@dataclass(frozen=True)
class _Appended:
    """What one store object knows of a time span without asking the table: it found no
    observations in ``[lo, hi]`` and has since written there only datastreams ``ids`` (sorted).

    Deletes and rolled-back writes only remove rows, so this stays true until another writer
    adds rows — and every write of this object adds its datastreams (:meth:`DuckDBStore._wrote`);
    a DuckDB file has one writing process, which opens one store on it.
    """

    lo: int
    hi: int
    ids: NDArray[np.int64]

    def excludes(self, lo: int, hi: int, ids: NDArray[np.int64]) -> bool:
        """True when nothing stored can share an identity with rows of ``ids`` in ``[lo, hi]``."""
        if not (self.lo <= lo and hi <= self.hi):
            return False
        at = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        return not bool(np.any(self.ids[at] == ids)) if len(self.ids) else True

    def overlaps(self, lo: int, hi: int) -> bool:
        return lo <= self.hi and self.lo <= hi


def _staged(frame: ObservationFrame) -> pa.Table:
    """``frame`` as Arrow in batches of :data:`STAGE_ROWS`, so DuckDB scans it in parallel."""
    return pa.Table.from_batches(frame.to_arrow().to_batches(max_chunksize=STAGE_ROWS))


def _int_columns(result: duckdb.DuckDBPyConnection) -> dict[str, NDArray[np.int64]]:
    """The integer columns of a query's result, by name."""
    return {name: np.asarray(v, dtype=np.int64) for name, v in result.fetchnumpy().items()}


def _matches(
    frame: ObservationFrame, datastream_ids: NDArray[Any], times: NDArray[Any]
) -> NDArray[np.bool_]:
    """Which rows of ``frame`` have their identity among the pairs (datastream_ids, times)."""
    found = np.zeros(len(frame), dtype=bool)
    for datastream in np.unique(datastream_ids).tolist():
        rows = frame.datastream_id == datastream
        found[rows] = np.isin(frame.phenomenon_time[rows], times[datastream_ids == datastream])
    return found


def _values(frame: ObservationFrame) -> str:
    """``VALUES`` rows of a small frame; results pass as text (``repr`` round-trips a float
    exactly, a decimal literal is not parsed exactly as a DOUBLE)."""
    return "VALUES " + ", ".join(
        f"({d}::BIGINT, make_timestamp({t}), '{r!r}'::DOUBLE, {q}::INTEGER)"
        for d, t, r, q in zip(
            frame.datastream_id.tolist(),
            frame.phenomenon_time.tolist(),
            frame.result.tolist(),
            frame.quality.tolist(),
            strict=True,
        )
    )


class DuckDBStore(Store):
    """``duckdb:///path/city.duckdb`` (a file) or ``duckdb://`` (in memory)."""

    scheme: ClassVar[str] = "duckdb"
    persistent: ClassVar[bool] = True
    spatial: ClassVar[bool] = True

    def __init__(self, path: str | Path | None = None, *, threads: int | None = None) -> None:
        self.path = str(path) if path else ":memory:"
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(self.path)
        except duckdb.Error as exc:
            raise StoreError(f"cannot open DuckDB store {self.path}: {exc}") from exc
        if threads:
            self._con.execute(f"SET threads = {int(threads)}")
        self._spatial_loaded = False
        for statement in _DDL:
            self._con.execute(statement)
        self._con.execute(
            "INSERT OR IGNORE INTO citytwin_meta VALUES ('schema_version', ?)", [SCHEMA_VERSION]
        )
        # datastream id → an upper bound of the phenomenon times stored for it, for datastreams
        # known to exist: a row later than the bound is new without asking the table (the API's
        # single creates, which arrive in time order). Filled by write_new_observations, raised
        # by every write of this store object, dropped when a datastream is deleted. A DuckDB
        # file has one writing process; a second store object on the same file in the same
        # process would not be seen (citytwin opens one per process).
        self._horizon: dict[int, int] = {}
        self._appended: _Appended | None = None

    @classmethod
    def from_url(cls, url: str) -> Self:
        """``duckdb:///city.duckdb`` is relative to the working directory, ``duckdb:////srv/city.duckdb``
        absolute (as in SQLAlchemy); ``duckdb://`` or ``duckdb:///:memory:`` is in memory."""
        parsed = urlparse(url)
        path = parsed.netloc + parsed.path[1:] if parsed.path.startswith("/") else parsed.path
        return cls(None if path in ("", ":memory:") else path)

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection, for callers that need SQL the contract does not offer."""
        return self._con

    @contextmanager
    def _arrow(self, name: str, table: pa.Table) -> Iterator[None]:
        """``table`` visible to SQL as ``name`` inside the block."""
        self._con.register(name, table)
        try:
            yield
        finally:
            self._con.unregister(name)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction: committed at the end of the block, rolled back on any error."""
        self._con.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        self._con.execute("COMMIT")

    # -- entities -------------------------------------------------------------------------
    def register(self, entities: Sequence[Entity | EntityRows]) -> None:
        with self._transaction():  # all or nothing, and one commit (one WAL sync), not one a kind
            for table, data in table_rows(entities):
                self._upsert(table, data)

    def _upsert(self, table: EntityTable, data: dict[str, Sequence[Any]]) -> None:
        """Insert the new entities and update the changed ones (in the caller's transaction).

        Two statements, not ``INSERT … ON CONFLICT DO UPDATE``: that probes the primary key
        row by row and costs twice as much for the ~19,000 datastreams of a first S-DoT ingest.
        When none of the ids is stored yet (a first ingest), one plain ``INSERT``: the update
        and the anti-join of the general case were a third of that registration.
        """
        with self._arrow("batch", pa.table(data)):
            # one stored row of the batch's ids, a key clash first; none: all are new
            stored = self._con.execute(
                f"SELECT t.id, t.key, b.key, t.key IS DISTINCT FROM b.key AS clash "
                f"FROM {table.name} t JOIN batch b USING (id) ORDER BY clash DESC LIMIT 1"
            ).fetchone()
            if stored and stored[3]:
                raise IdentityConflictError(
                    f"{table.name} id {stored[0]}: keys {stored[1]!r}, {stored[2]!r}"
                )
            names = ", ".join(data)
            if stored is None:
                self._con.execute(f"INSERT INTO {table.name} ({names}) SELECT {names} FROM batch")
                return
            updates = ", ".join(f"{c} = b.{c}" for c in data if c != "id")
            self._con.execute(
                f"UPDATE {table.name} t SET {updates} FROM batch b "
                "WHERE t.id = b.id AND t.doc::VARCHAR IS DISTINCT FROM b.doc"
            )
            self._con.execute(
                f"INSERT INTO {table.name} ({names}) SELECT {names} FROM batch "
                f"ANTI JOIN {table.name} USING (id)"
            )

    def entities(self, kind: type[E], ids: Sequence[int] | None = None) -> list[E]:
        table = ENTITY_TABLES[kind].name
        if ids is None:
            sql = f"SELECT doc FROM {table} ORDER BY id"
        elif len(few := _few(ids)) == 1:
            sql = f"SELECT doc FROM {table} WHERE id = {few[0]}"
        elif few:
            sql = f"SELECT doc FROM {table} WHERE id IN ({', '.join(map(str, few))}) ORDER BY id"
        else:
            self._register_ids(ids)
            sql = f"SELECT doc FROM {table} WHERE id IN (SELECT id FROM id_filter) ORDER BY id"
        rows = self._con.execute(sql).fetchall()
        return [kind.model_validate_json(doc) for (doc,) in rows]

    def delete(self, kind: type[Entity], ids: Sequence[int]) -> int:
        if kind is Datastream:
            for gone in ids:
                self._horizon.pop(int(gone), None)
        self._register_ids(ids)
        return self._count(
            f"DELETE FROM {ENTITY_TABLES[kind].name} WHERE id IN (SELECT id FROM id_filter)"
        )

    def _count(self, sql: str) -> int:
        """Run a DELETE (or INSERT) and return the number of rows it touched."""
        row = self._con.execute(sql).fetchone()
        return int(row[0]) if row else 0

    # -- observations ---------------------------------------------------------------------
    def write_observations(self, frame: ObservationFrame) -> WriteResult:
        """Append the rows whose identity is new: an ``ANTI JOIN`` against the stored rows in
        the frame's scope (:func:`_scope`), or a plain append when that scope holds no rows.

        The scope is known to hold none of the frame's identities without a query when this
        store found the frame's time span empty and has written only other datastreams there
        since (:class:`_Appended`): the ingest writes a batch as one frame per group of
        properties, all over the batch's span, so each frame after the first is a plain append.
        """
        if not len(frame):
            return WriteResult(0, 0)
        unique = frame if _grouped_and_unique(frame) else _dedupe(frame.sorted())
        lo, hi = _span(unique)
        ids = _datastreams(unique)
        known_new = self._appended is not None and self._appended.excludes(lo, hi, ids)
        self._wrote(unique)  # before the write: an upper bound whether or not it lands
        scope = _scope(unique)
        if len(unique) <= FEW_ROWS:  # one statement (atomic), no Arrow scan to set up
            count = self._count(
                f"INSERT INTO observations SELECT s.* FROM ({_values(unique)}) "
                f"s(datastream_id, phenomenon_time, result, quality) ANTI JOIN ("
                f"  SELECT datastream_id, phenomenon_time FROM observations WHERE {scope}) o"
                "  USING (datastream_id, phenomenon_time)"
            )
            return WriteResult(count, len(frame) - count)
        with self._arrow("staged", _staged(unique)), self._transaction():
            overlap = not known_new and bool(
                self._con.execute(f"SELECT count(*) > 0 FROM observations WHERE {scope}").fetchone()
                == (True,)
            )
            if overlap:
                self._con.execute(
                    "INSERT INTO observations SELECT s.* FROM staged s ANTI JOIN ("
                    f"  SELECT datastream_id, phenomenon_time FROM observations WHERE {scope}) o"
                    "  USING (datastream_id, phenomenon_time)"
                )
            else:
                self._con.execute("INSERT INTO observations SELECT * FROM staged")
            inserted = self._con.fetchone()
            if not overlap and not known_new and len(ids) > FEW_DATASTREAMS:
                self._appended = _Appended(lo, hi, ids)  # the scope was the whole span: empty
        count = int(inserted[0]) if inserted else 0
        return WriteResult(count, len(frame) - count)

    def _wrote(self, frame: ObservationFrame) -> None:
        """Keep what this object knows of stored times true after ``frame`` is (or may have
        been) written: the per-datastream horizon and the appended span (:class:`_Appended`)."""
        self._raise_horizon(frame)
        appended = self._appended
        if appended is not None and len(frame) and appended.overlaps(*_span(frame)):
            ids = np.union1d(appended.ids, _datastreams(frame))
            self._appended = _Appended(appended.lo, appended.hi, ids)

    def write_new_observations(self, frame: ObservationFrame) -> NDArray[np.bool_]:
        """Few rows (an API's single creates): one query for the datastreams and the stored
        identities, one INSERT of the new rows. Many rows (a dataArray): one INSERT … SEMI JOIN
        datastreams ANTI JOIN (stored identities) RETURNING the identities written.

        As few statements as that: each hands the GIL back and forth, which costs up to a switch
        interval (5 ms) each time when another thread (an event loop) is busy. No other writer
        can come in between the two: a connection is used by one thread at a time (see
        :class:`~citytwin.store.base.Store`) and a DuckDB file by one process.
        """
        first = first_of_identity(frame)
        if not first.any():
            return first
        ids = np.unique(frame.datastream_id)
        if first.sum() > FEW_ROWS or len(ids) > FEW_DATASTREAMS:
            written = self._write_new_joined(frame, first)
            self._wrote(frame.take(written))
            return written
        if self._beyond_horizon(frame.take(first)):  # known datastreams, later than stored
            self._con.execute(f"INSERT INTO observations {_values(frame.take(first).sorted())}")
            self._wrote(frame.take(first))
            return first
        id_list = ", ".join(str(int(i)) for i in ids)
        found = _int_columns(
            self._con.execute(
                f"SELECT 0 AS kind, id AS datastream_id, 0 AS phenomenon_time FROM datastreams "
                f"WHERE id IN ({id_list}) UNION ALL "
                "SELECT 1, datastream_id, epoch_us(phenomenon_time) FROM observations "
                f"WHERE {_scope(frame)} UNION ALL "
                "SELECT 2, datastream_id, epoch_us(max(phenomenon_time)) FROM observations "
                f"WHERE datastream_id IN ({id_list}) GROUP BY datastream_id"
            )
        )
        kind = found["kind"]
        known = found["datastream_id"][kind == 0]
        new = first & np.isin(frame.datastream_id, known)
        new[new] = ~_matches(
            frame.take(new), found["datastream_id"][kind == 1], found["phenomenon_time"][kind == 1]
        )
        if new.any():
            self._con.execute(f"INSERT INTO observations {_values(frame.take(new).sorted())}")
        stored_max = kind == 2
        latest = dict(
            zip(
                found["datastream_id"][stored_max].tolist(),
                found["phenomenon_time"][stored_max].tolist(),
                strict=True,
            )
        )
        for datastream in known.tolist():
            self._horizon[datastream] = int(latest.get(datastream, np.iinfo(np.int64).min))
        self._wrote(frame.take(new))
        return new

    def _beyond_horizon(self, frame: ObservationFrame) -> bool:
        """True when every row's datastream is known to exist and its time is later than
        anything stored for it (so none of them can be stored already)."""
        horizon = self._horizon
        return all(
            datastream in horizon and time > horizon[datastream]
            for datastream, time in zip(
                frame.datastream_id.tolist(), frame.phenomenon_time.tolist(), strict=True
            )
        )

    def _raise_horizon(self, frame: ObservationFrame) -> None:
        """Keep the horizon an upper bound after ``frame`` is (or may have been) written."""
        if not self._horizon or not len(frame):
            return
        order = np.argsort(frame.datastream_id, kind="stable")
        ds = frame.datastream_id[order]
        starts = np.flatnonzero(np.r_[True, ds[1:] != ds[:-1]])
        latest = np.maximum.reduceat(frame.phenomenon_time[order], starts)
        for datastream, time in zip(ds[starts].tolist(), latest.tolist(), strict=True):
            if datastream in self._horizon:
                self._horizon[datastream] = max(self._horizon[datastream], time)

    def _write_new_joined(
        self, frame: ObservationFrame, first: NDArray[np.bool_]
    ) -> NDArray[np.bool_]:
        """:meth:`write_new_observations` of many rows: one statement, the rows from Arrow."""
        rows = frame.take(first).sorted()
        scope = _scope(rows)
        with self._arrow("staged", _staged(rows)):
            inserted = _int_columns(
                self._con.execute(
                    "INSERT INTO observations SELECT s.* FROM staged s "
                    "SEMI JOIN datastreams d ON d.id = s.datastream_id ANTI JOIN ("
                    f"  SELECT datastream_id, phenomenon_time FROM observations WHERE {scope}"
                    ") o USING (datastream_id, phenomenon_time) "
                    "RETURNING datastream_id, epoch_us(phenomenon_time) AS phenomenon_time"
                )
            )
        written = first.copy()
        written[first] = _matches(
            frame.take(first), inserted["datastream_id"], inserted["phenomenon_time"]
        )
        return written

    def existing(self, frame: ObservationFrame) -> NDArray[np.bool_]:
        if not len(frame):
            return np.zeros(0, dtype=bool)
        if len(np.unique(frame.datastream_id)) > FEW_DATASTREAMS:
            return self._existing_joined(frame)
        stored = _int_columns(
            self._con.execute(
                "SELECT datastream_id, epoch_us(phenomenon_time) AS phenomenon_time "
                f"FROM observations WHERE {_scope(frame)}"
            )
        )
        return _matches(frame, stored["datastream_id"], stored["phenomenon_time"])

    def _existing_joined(self, frame: ObservationFrame) -> NDArray[np.bool_]:
        """:meth:`existing` for many datastreams: a semi-join returns only the rows found."""
        asked = frame.to_arrow().append_column("row", pa.array(np.arange(len(frame))))
        with self._arrow("asked", asked):
            rows = self._con.execute(
                "SELECT a.row FROM asked a SEMI JOIN ("
                f"  SELECT datastream_id, phenomenon_time FROM observations WHERE {_scope(frame)}"
                ") o USING (datastream_id, phenomenon_time)"
            ).fetchnumpy()["row"]
        found = np.zeros(len(frame), dtype=bool)
        found[np.asarray(rows, dtype=np.intp)] = True
        return found

    def delete_observations(
        self,
        *,
        datastream_ids: Sequence[int] | None = None,
        identities: ObservationFrame | None = None,
    ) -> int:
        check_observation_selection(datastream_ids, identities)
        statements = []
        if datastream_ids is not None:
            self._register_ids(datastream_ids)
            statements.append(
                "DELETE FROM observations WHERE datastream_id IN (SELECT id FROM id_filter)"
            )
        statements.append(
            "DELETE FROM observations o USING doomed d WHERE o.datastream_id = d.datastream_id "
            "AND o.phenomenon_time = d.phenomenon_time"
        )
        doomed = (identities or ObservationFrame.empty()).to_arrow()
        with self._arrow("doomed", doomed), self._transaction():
            return sum(self._count(sql) for sql in statements)

    def _register_ids(self, ids: Sequence[int]) -> None:
        """Expose ids to SQL as the view ``id_filter``.

        An Arrow table, not a list parameter: for each list element DuckDB tries to import
        pandas, which costs a failed filesystem search per id when pandas is not installed.
        """
        self._con.register("id_filter", pa.table({"id": pa.array(ids, pa.int64())}))

    def _select_for_ids(self, select: str, ids: Sequence[int] | None) -> tuple[str, int]:
        """``select`` (holding ``{ids}`` in its WHERE) for the given datastream ids, and how many
        times its parameters repeat: a UNION ALL of one query per id for a few ids."""
        if ids is None:
            return select.format(ids="TRUE"), 1
        few = _few(ids)
        if not few:
            self._register_ids(ids)
            return select.format(ids="datastream_id IN (SELECT id FROM id_filter)"), 1
        members = [select.format(ids=f"datastream_id = {i}") for i in few]
        return " UNION ALL ".join(f"({m})" for m in members), len(members)

    def _time_clauses(self, start: datetime | None, end: datetime | None) -> tuple[str, list[Any]]:
        clauses: list[str] = ["TRUE"]
        params: list[Any] = []
        if start is not None:
            clauses.append("phenomenon_time >= make_timestamp(?)")
            params.append(to_micros(start))
        if end is not None:
            clauses.append("phenomenon_time < make_timestamp(?)")
            params.append(to_micros(end))
        return " AND ".join(clauses), params

    def observations(
        self,
        *,
        datastream_ids: Sequence[int] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ObservationFrame:
        times, params = self._time_clauses(start, end)
        select = f"SELECT * FROM observations WHERE {{ids}} AND {times}"
        sql, copies = self._select_for_ids(select, datastream_ids)
        table = self._con.execute(
            f"SELECT * FROM ({sql}) ORDER BY datastream_id, phenomenon_time", params * copies
        ).to_arrow_table()
        return ObservationFrame.from_arrow(table)

    def latest(self, datastream_ids: Sequence[int] | None = None) -> ObservationFrame:
        select = (
            "SELECT datastream_id, max(phenomenon_time) AS phenomenon_time,"
            " arg_max(result, phenomenon_time) AS result,"
            " arg_max(quality, phenomenon_time) AS quality"
            " FROM observations WHERE {ids} GROUP BY datastream_id"
        )
        sql, _ = self._select_for_ids(select, datastream_ids)
        table = self._con.execute(f"SELECT * FROM ({sql}) ORDER BY datastream_id").to_arrow_table()
        return ObservationFrame.from_arrow(table)

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
        where, params = self._time_clauses(start, end)
        group_sql = {
            "datastream": "CAST(o.datastream_id AS VARCHAR)",
            "observed_property": "d.observed_property",
        }.get(by, "json_extract_string(t.properties, ?)")
        group_params: list[Any] = [] if thing_property is None else [f"$.{thing_property}"]
        filters = [
            where.replace("datastream_id", "o.datastream_id").replace(
                "phenomenon_time", "o.phenomenon_time"
            ),
            "(o.quality & ?) = 0",
        ]
        filter_params: list[Any] = [*params, exclude_flags]
        if observed_property is not None:
            filters.append("d.observed_property = ?")
            filter_params.append(observed_property)
        if thing_property is not None:
            filters.append("grp IS NOT NULL")
        sql = f"""
            SELECT grp AS "group", d.observed_property,
                   time_bucket(to_microseconds(?), o.phenomenon_time) AS bucket,
                   avg(o.result) AS mean, min(o.result) AS min, max(o.result) AS max,
                   count(*) AS count
            FROM observations o
            LEFT JOIN datastreams d ON d.id = o.datastream_id
            LEFT JOIN things t ON t.id = d.thing_id,
            LATERAL (SELECT {group_sql} AS grp)
            WHERE {" AND ".join(filters)}
            GROUP BY ALL ORDER BY ALL"""
        table = self._con.execute(
            sql, [BUCKET_MICROS[bucket], *group_params, *filter_params]
        ).to_arrow_table()
        return table.cast(AGGREGATE_SCHEMA)

    # -- city features ----------------------------------------------------------------------
    def _feature_table(self, layer: str) -> str:
        table = f"feature_{check_layer_name(layer)}"
        if not self._spatial_loaded:
            self._con.execute(f"LOAD '{spatial_extension_path()}'")
            self._spatial_loaded = True
        self._con.execute(
            f"CREATE TABLE IF NOT EXISTS {table} "
            "(id VARCHAR PRIMARY KEY, properties JSON, geom GEOMETRY)"
        )
        return table

    def write_features(self, layer: str, batch: FeatureBatch) -> WriteResult:
        table = self._feature_table(layer)
        if not len(batch):
            return WriteResult(0, 0)
        rows = pa.table(
            {
                "id": pa.array(batch.ids, pa.string()),
                "properties": pa.array(
                    [json.dumps(p, ensure_ascii=False) for p in batch.properties]
                ),
                "wkb": pa.array(batch.wkb, pa.binary()),
            }
        )
        with self._arrow("batch", rows):
            existing = self._con.execute(
                f"SELECT count(*) FROM {table} JOIN batch USING (id)"
            ).fetchone()
            self._con.execute(
                f"INSERT INTO {table} SELECT id, properties, ST_GeomFromWKB(wkb) FROM batch "
                "ON CONFLICT (id) DO UPDATE SET properties = excluded.properties, "
                "geom = excluded.geom"
            )
        old = int(existing[0]) if existing else 0
        return WriteResult(len(batch) - old, old)

    def features(
        self, layer: str, *, bbox: tuple[float, float, float, float] | None = None
    ) -> FeatureBatch:
        table = self._feature_table(layer)
        where, params = "TRUE", []
        if bbox is not None:
            where = "ST_Intersects(geom, ST_MakeEnvelope(?, ?, ?, ?))"
            params = [float(v) for v in bbox]
        rows = self._con.execute(
            f"SELECT id, properties, ST_AsWKB(geom) FROM {table} WHERE {where} ORDER BY id", params
        ).fetchall()
        return FeatureBatch(
            [r[0] for r in rows], [json.loads(r[1]) for r in rows], [bytes(r[2]) for r in rows]
        )

    def layers(self) -> dict[str, int]:
        names = self._con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_name LIKE 'feature\\_%' ESCAPE '\\' ORDER BY table_name"
        ).fetchall()
        out: dict[str, int] = {}
        for (name,) in names:
            count = self._con.execute(f"SELECT count(*) FROM {name}").fetchone()
            out[name.removeprefix("feature_")] = int(count[0]) if count else 0
        return out

    # -- quarantine and housekeeping -------------------------------------------------------
    def write_quarantine(self, records: Sequence[QuarantineRecord]) -> None:
        if not records:
            return
        batch = pa.table(
            {
                "feed": [r.feed for r in records],
                "source": [r.source for r in records],
                "line": pa.array([r.line for r in records], pa.int64()),
                "raw": [r.raw for r in records],
                "reason": [r.reason for r in records],
                "recorded_at": [r.recorded_at for r in records],
            }
        )
        with self._arrow("batch", batch):
            self._con.execute(
                "INSERT INTO quarantine (feed, source, line, raw, reason, recorded_at) "
                "SELECT * FROM batch b WHERE b.line IS NULL OR NOT EXISTS (SELECT 1 FROM "
                f"quarantine q WHERE {QUARANTINE_PLACE})"
            )

    def quarantined(
        self, *, feed: str | None = None, limit: int | None = None
    ) -> list[QuarantineRecord]:
        rows = self._con.execute(
            "SELECT feed, source, line, raw, reason, epoch_us(recorded_at) FROM quarantine "
            "WHERE ?::VARCHAR IS NULL OR feed = ? ORDER BY id LIMIT ?",
            [feed, feed, limit if limit is not None else 2**62],
        ).fetchall()
        return [
            QuarantineRecord(f, s, line, raw, reason, from_micros(at))
            for f, s, line, raw, reason, at in rows
        ]

    def stats(self) -> list[FeedStats]:
        rows = self._con.execute(
            """SELECT coalesce(d.feed, ''), coalesce(d.observed_property, ''),
                      count(DISTINCT o.datastream_id), count(*), count(*) FILTER (o.quality <> 0),
                      min(o.phenomenon_time), max(o.phenomenon_time)
               FROM observations o LEFT JOIN datastreams d ON d.id = o.datastream_id
               GROUP BY ALL ORDER BY ALL"""
        ).fetchall()
        from datetime import UTC

        return [
            FeedStats(f, p, n, c, q, lo.replace(tzinfo=UTC), hi.replace(tzinfo=UTC))
            for f, p, n, c, q, lo, hi in rows
        ]

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None  # type: ignore[assignment]
