"""Rollups and hourly kriging over the observation lake, on Dask.

The embedded path answers these from the store (:meth:`Store.aggregate`, ``Twin.rollup``,
:func:`citytwin.services.analyses.distribution_map`); over a month of a city the same questions
run here, on a ``dask.distributed`` cluster: a :class:`~distributed.LocalCluster` in this process
when no scheduler is named (tests, one machine), else the scheduler at an address
(``tcp://host:8786``) whose workers see the lake at the same path (a shared volume).

Same numbers as the embedded path, by construction: :func:`rollup` reproduces the DuckDB store's
aggregate SQL (same grouping keys — ``thing.<name>`` read from the Thing's JSON with DuckDB's own
``json_extract_string`` —, same buckets, same NULL/NaN rules: ``min`` skips NaN, ``max`` and
``mean`` propagate it, ``count`` counts rows), and :func:`kriging_batch` runs the embedded
``distribution_map`` itself on each worker, over an in-memory store holding that hour.

How the rollup scales, in two rounds of tasks: *map* — a few lake files (a day of one property
each) a task, each file reduced to partial sums per (group, bucket) — rows of a file are ordered
by (datastream, time), so a datastream's hour is a contiguous run and ``numpy.ufunc.reduceat``
folds it without sorting —, the batch's partial cut into group ranges; *reduce* — one task per
group range merges its slices into the answer's rows, in order, as an Arrow batch. The client
only stacks the batches. Every step is numpy or Arrow code that releases the GIL, so a local
cluster's threads run side by side (measured in ``bench/rollup.py``).
"""

from __future__ import annotations

import itertools
import logging
import operator
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client, LocalCluster

from citytwin.errors import ConfigurationError, ValidationError
from citytwin.store.base import AGGREGATE_SCHEMA, BUCKET_MICROS, check_group_key, to_micros
from citytwin.store.lake import partitions, read_dimensions

logger = logging.getLogger(__name__)

Scheduler = str | Client | None
_PARTIAL = ("prop", "code", "bucket", "sum", "count", "min", "max")
_I64_MAX = np.iinfo(np.int64).max
Partial = dict[str, np.ndarray]  # prop, code, bucket, sum, count, min, max: one row a group
FileTask = tuple[str, int]  # a lake file and the index of its observed property


@contextmanager
def dask_client(scheduler: Scheduler = None, *, workers: int = 1) -> Iterator[Client]:
    """A Dask client: ``scheduler`` itself if it is one, a connection to its address, or an
    in-process :class:`~distributed.LocalCluster` (``workers`` × all cores in threads) when None.

    Threads, not processes, for the local cluster: the work is numpy/Arrow code that releases
    the GIL, and nothing needs pickling between processes.
    """
    if isinstance(scheduler, Client):
        yield scheduler
        return
    if scheduler is None:
        threads = max(1, (os.cpu_count() or 1) // workers)
        with (
            LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=workers,
                threads_per_worker=threads,
                processes=False,
                dashboard_address="127.0.0.1:0",  # a free port: never the 8787 of another cluster
            ) as cluster,
            Client(cluster) as client,  # type: ignore[no-untyped-call]
        ):
            yield client
        return
    with _connect(scheduler) as client:
        yield client


@contextmanager
def _connect(address: str) -> Iterator[Client]:
    try:
        client = Client(address, timeout="10s")  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigurationError(
            f"dask scheduler {address!r}: cannot connect ({exc}); "
            "expected the address of a running scheduler, e.g. tcp://10.0.0.5:8786"
        ) from None
    try:
        yield client
    finally:
        client.close()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class _Grouping:
    """How rows map to groups: ``code`` per datastream (``ids`` sorted), -1 for none."""

    by: str
    ids: np.ndarray
    codes: np.ndarray
    labels: list[str]

    @classmethod
    def of(cls, root: str | Path, by: str) -> _Grouping:
        """The grouping for ``by``; a ``thing.<name>`` key is read from the lake's datastreams
        with DuckDB's ``json_extract_string``, the function the store's SQL uses."""
        try:
            thing_property = check_group_key(by)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        if thing_property is None:
            empty = np.zeros(0, np.int64)
            return cls(by, empty, empty, [])
        connection = duckdb.connect()
        try:
            connection.register("dimensions", read_dimensions(root))
            pairs = connection.execute(
                "SELECT datastream_id, json_extract_string(thing_properties, ?) AS grp "
                "FROM dimensions ORDER BY datastream_id",
                [f"$.{thing_property}"],
            ).fetchnumpy()
        finally:
            connection.close()
        return cls._from_pairs(by, pairs)

    @classmethod
    def _from_pairs(cls, by: str, pairs: dict[str, Any]) -> _Grouping:
        values = pd.Series(pairs["grp"], dtype=object)
        labels = sorted(set(values.dropna()))
        codes = values.map({label: i for i, label in enumerate(labels)}).fillna(-1)
        return cls(
            by, np.asarray(pairs["datastream_id"], np.int64), codes.to_numpy(np.int64), labels
        )

    def edges(self, parts: int) -> np.ndarray:
        """Code boundaries cutting the groups into about ``parts`` ranges of equal count (one
        range when codes are datastream ids, which are not dense)."""
        if self.by == "datastream" or len(self.labels) < 2:
            return np.array([0, 1])  # the outer cuts are widened to every row
        return np.unique(np.linspace(0, len(self.labels), parts + 1).round().astype(np.int64))

    def codes_of(self, datastream_id: np.ndarray) -> np.ndarray:
        """Group code of each row (-1: the row belongs to no group)."""
        if self.by == "datastream":
            return datastream_id
        if self.by == "observed_property":
            return np.zeros(len(datastream_id), np.int64)
        if not len(self.ids):
            return np.full(len(datastream_id), -1, np.int64)
        at = np.searchsorted(self.ids, datastream_id).clip(0, len(self.ids) - 1)
        return np.where(self.ids[at] == datastream_id, self.codes[at], -1)


def rollup(
    root: str | Path,
    *,
    by: str = "thing.dong_code",
    bucket: str = "hour",
    observed_property: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    exclude_flags: int = 0,
    scheduler: Scheduler = None,
) -> pa.Table:
    """Mean/min/max/count per (group, observed property, time bucket) over the lake, on Dask:
    the same table, :data:`AGGREGATE_SCHEMA`, as :meth:`Store.aggregate` with these arguments
    over the same observations.

    ``by`` is ``"datastream"``, ``"observed_property"`` or ``"thing.<name>"`` (e.g.
    ``"thing.dong_code"``, the district rollup); ``bucket`` ``"hour"`` or ``"day"``.
    """
    if bucket not in BUCKET_MICROS:
        raise ValidationError(f"bucket {bucket!r}: expected one of {', '.join(BUCKET_MICROS)}")
    grouping = _Grouping.of(root, by)
    wanted = None if observed_property is None else [observed_property]
    chosen = partitions(root, start=start, end=end, observed_properties=wanted)
    names = sorted({p.observed_property for p in chosen}, key=lambda n: (n is None, n or ""))
    window = (
        -_I64_MAX if start is None else to_micros(start),
        _I64_MAX if end is None else to_micros(end),
    )
    tasks = [(str(f), names.index(p.observed_property)) for p in chosen for f in p.files]
    if not tasks:
        return AGGREGATE_SCHEMA.empty_table()
    with dask_client(scheduler) as client:
        # Plain futures rather than a dask DataFrame: the DataFrame layer (meta checks, a pandas
        # concat on the client) cost more than the reduction. Map: a few files a task (a task
        # per 20-ms file spent more in the scheduler than in the work), each batch reduced to a
        # partial sorted by group and cut at ``edges``. Reduce: one task per group range merges
        # its slice of every partial into the answer's rows, in order, as an Arrow batch — so
        # the merge runs in parallel too and the client only stacks the batches.
        [options] = client.scatter(  # type: ignore[no-untyped-call]
            [(grouping, BUCKET_MICROS[bucket], window, exclude_flags)], broadcast=True
        )
        threads = sum(client.nthreads().values())  # type: ignore[no-untyped-call]
        edges = grouping.edges(2 * threads)
        batches = _batches(tasks, threads)
        mapped = client.map(_partial_of_files, batches, options=options, edges=edges)
        # Each range's slice of a partial is its own task, run where the partial is: on a
        # cluster a reducer then fetches its slices, not every partial whole.
        ranges = range(len(edges) - 1)
        slices = [[client.submit(operator.getitem, m, index) for m in mapped] for index in ranges]
        reduced = [client.submit(_rows_of_range, parts, options, names) for parts in slices]
        rows = client.gather(reduced)  # type: ignore[no-untyped-call]
    table = pa.Table.from_batches(rows, schema=AGGREGATE_SCHEMA)
    if grouping.by != "datastream":
        return table
    order = [(c, "ascending") for c in ("group", "observed_property", "bucket")]
    return table.sort_by(order)  # datastream ids as text do not sort like their numbers


def _batches(tasks: list[FileTask], threads: int) -> list[list[FileTask]]:
    """``tasks`` in batches of at most :data:`_BATCH` files, and at least four batches a thread
    when there are enough files (so a slow file does not leave the other threads idle)."""
    size = max(1, min(_BATCH, len(tasks) // (4 * max(threads, 1))))
    return [tasks[i : i + size] for i in range(0, len(tasks), size)]


_BATCH = 16  # files a task: a day of S-DoT's 17 properties is ~0.3 s of work
Options = tuple[_Grouping, int, tuple[int, int], int]  # grouping, bucket width, window, flags


def _partial_of_files(batch: list[FileTask], options: Options, edges: np.ndarray) -> list[Partial]:
    """A batch of lake files reduced to one partial, cut into group ranges; runs on a worker."""
    merged = _merge([_partial_of_file(task, options) for task in batch])
    cuts = np.searchsorted(merged["code"], edges)
    cuts[0], cuts[-1] = 0, len(merged["code"])  # the outer ranges take every code beyond them
    return [{k: v[i:j] for k, v in merged.items()} for i, j in itertools.pairwise(cuts)]


def _rows_of_range(
    parts: list[Partial], options: Options, names: list[str | None]
) -> pa.RecordBatch:
    """One group range's slices of every partial merged into the answer's rows; runs on a
    worker.

    Codes follow the labels' order and ``names`` are sorted (None last), so the merge order is
    already the store's ORDER BY ALL (but for datastream ids, sorted by the caller).
    """
    grouping, width, _, _ = options
    merged = _merge(parts)
    code, prop = merged["code"], merged["prop"]
    properties = pa.array(names, pa.string()).take(pa.array(prop))
    if grouping.by == "datastream":
        group = pa.array(code).cast(pa.string())
    elif grouping.by == "observed_property":
        group = properties
    else:
        group = pa.array(grouping.labels, pa.string()).take(pa.array(code))
    columns = {
        "group": group,
        "observed_property": properties,
        "bucket": pa.array(merged["bucket"] * width).cast(pa.timestamp("us")),
        "mean": merged["sum"] / merged["count"],
        "min": merged["min"],
        "max": merged["max"],
        "count": merged["count"],
    }
    return pa.RecordBatch.from_pydict(columns, schema=AGGREGATE_SCHEMA)


def _partial_of_file(task: FileTask, options: Options) -> Partial:
    """One lake file reduced to (group code, bucket) partials, ordered; runs on a worker."""
    path, prop = task
    grouping, width, (start, end), exclude_flags = options
    parquet = pq.ParquetFile(path)
    # One thread per file: the cluster already runs a file per core.
    table = parquet.read(_COLUMNS, use_threads=False)
    ds = _numpy(table, "datastream_id")
    time = _numpy(table, "phenomenon_time").view(np.int64)
    keep = None
    if not _within(parquet.metadata, table.schema, start, end):
        keep = (time >= start) & (time < end)
    if exclude_flags:
        clean = (_numpy(table, "quality") & exclude_flags) == 0
        keep = clean if keep is None else keep & clean
    runs = _fold_runs(ds, np.floor_divide(time, width), _numpy(table, "result"), keep)
    code = grouping.codes_of(runs.pop("datastream_id"))
    chosen = (runs["count"] > 0) & (code >= 0)
    partial = {name: column[chosen] for name, column in runs.items()}
    partial["code"] = code[chosen]
    partial["prop"] = np.full(len(partial["code"]), prop, np.int64)
    return _merge([partial])


_COLUMNS = ["datastream_id", "phenomenon_time", "result", "quality"]


def _within(metadata: pq.FileMetaData, schema: pa.Schema, start: int, end: int) -> bool:
    """True when the file's time statistics put every row in ``[start, end)``: the window test
    is then skipped (a day's file inside a month's window)."""
    if start <= -_I64_MAX and end >= _I64_MAX:
        return True
    if schema.field("phenomenon_time").type != pa.timestamp("us"):
        return False  # raw statistics are in the file's own unit
    position = metadata.schema.names.index("phenomenon_time")
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(position).statistics
        if stats is None or not stats.has_min_max:
            return False
        if stats.min_raw < start or stats.max_raw >= end:
            return False
    return True


def _numpy(table: pa.Table, name: str) -> np.ndarray:
    """A column as numpy, without a copy when it is one chunk."""
    column = table.column(name)
    chunk = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return np.asarray(chunk.to_numpy(zero_copy_only=False))


def _fold_runs(
    ds: np.ndarray, bucket: np.ndarray, value: np.ndarray, keep: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Sum, count, min and max of the kept values of each run of equal (datastream, bucket);
    ``keep`` None keeps every row.

    Every run is folded over all its rows first; the runs holding a left-out row (a flagged
    value is rare: 1 % of rows touches about a quarter of the half-hourly runs) are then folded
    again over just their rows, with the left-out rows neutralised rather than removed: 0 for
    the sum, NaN for ``fmin`` (which skips it), -inf for ``maximum``; a run with none kept has
    count 0. That is exact (no subtraction of a spike from a sum) and reads the file's values
    about half as often as neutralising every row.
    """
    starts = _run_starts(ds, bucket)
    lengths = np.diff(np.append(starts, len(value)))
    dropped = np.zeros(0, np.intp) if keep is None else np.flatnonzero(~keep)
    rows: slice | np.ndarray
    if keep is not None and len(dropped) > len(value) // 8:  # dense: neutralise every row
        hit, rows, at = np.arange(len(starts)), slice(None), starts
    else:
        touched = np.zeros(len(starts), bool)
        touched[np.searchsorted(starts, dropped, side="right") - 1] = True
        hit = np.flatnonzero(touched)
        rows = _rows_of(starts[hit], lengths[hit])
        at = np.cumsum(lengths[hit]) - lengths[hit]
    runs = {"datastream_id": ds[starts], "bucket": bucket[starts], "count": lengths}
    if len(hit) < len(starts) or not len(starts):  # some runs keep every row (or no runs)
        runs["sum"] = np.add.reduceat(value, starts)
        runs["min"] = np.fmin.reduceat(value, starts)
        runs["max"] = np.maximum.reduceat(value, starts)
    if not len(hit):
        return runs
    assert keep is not None  # only a left-out row puts a run in ``hit``
    kept, values = keep[rows], value[rows]
    refolded = {
        "sum": np.add.reduceat(np.where(kept, values, 0.0), at),
        "count": np.add.reduceat(kept.view(np.int8), at, dtype=np.int64),
        "min": np.fmin.reduceat(np.where(kept, values, np.nan), at),
        "max": np.maximum.reduceat(np.where(kept, values, -np.inf), at),
    }
    if len(hit) == len(starts):
        return runs | refolded
    for name, column in refolded.items():
        runs[name][hit] = column
    return runs


def _rows_of(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Indices of the rows of the runs starting at ``starts`` with ``lengths``, concatenated."""
    shift: np.ndarray = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    rows: np.ndarray = np.arange(len(shift)) + shift
    return rows


def _run_starts(*keys: np.ndarray) -> np.ndarray:
    """Where each run of equal keys starts (keys as parallel arrays)."""
    if not len(keys[0]):
        return np.zeros(0, np.intp)
    change = keys[0][1:] != keys[0][:-1]
    for key in keys[1:]:
        change |= key[1:] != key[:-1]
    return np.flatnonzero(np.r_[True, change])


def _order(code: np.ndarray, prop: np.ndarray, bucket: np.ndarray) -> np.ndarray:
    """The permutation sorting rows by (code, prop, bucket).

    One int64 key when the three ranges fit in 63 bits (a district rollup: 425 codes × 17
    properties × a month of hours), sorted in one pass — a radix sort when it fits 16 bits, as
    a day's file does —; ``lexsort`` of the three otherwise.
    """
    if not len(code):
        return np.zeros(0, np.intp)
    spans = [int(k.max()) - int(k.min()) + 1 for k in (code, prop, bucket)]
    if spans[0] * spans[1] * spans[2] < 2**62:
        key = (code - code.min()) * spans[1] + (prop - prop.min())
        key = key * spans[2] + (bucket - bucket.min())
        if spans[0] * spans[1] * spans[2] <= 2**16:  # a file's keys: numpy radix-sorts these
            key = key.astype(np.uint16)
        return np.argsort(key, kind="stable")
    return np.lexsort((bucket, prop, code))


def _merge(partials: list[Partial]) -> Partial:
    """Partials folded into one, ordered by (code, prop, bucket), rows with equal keys combined:
    sums and counts add, min/max combine (``fmin`` skips NaN, ``maximum`` keeps it: DuckDB's
    ordering puts NaN above every number)."""
    joined = {name: np.concatenate([p[name] for p in partials]) for name in _PARTIAL}
    order = _order(joined["code"], joined["prop"], joined["bucket"])
    ordered = {name: column[order] for name, column in joined.items()}
    starts = _run_starts(ordered["code"], ordered["prop"], ordered["bucket"])
    if len(starts) == len(order):
        return ordered
    folds = {"sum": np.add, "count": np.add, "min": np.fmin, "max": np.maximum}
    merged = {name: ordered[name][starts] for name in ("prop", "code", "bucket")}
    return merged | {name: fold.reduceat(ordered[name], starts) for name, fold in folds.items()}
