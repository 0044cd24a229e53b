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

How the rollup scales: one Dask partition per lake file (a day of one property), reduced on its
worker to partial sums per (group, bucket) — rows of a file are ordered by (datastream, time), so
a datastream's hour is a contiguous run and ``numpy.ufunc.reduceat`` folds it without sorting —;
the client only merges the partials (about the size of the answer).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import dask.dataframe as dd
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
_PARTIAL = {"prop": "int64", "code": "int64", "bucket": "int64", "sum": "float64"}
_PARTIAL |= {"count": "int64", "min": "float64", "max": "float64"}
_I64_MAX = np.iinfo(np.int64).max


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
    options = (grouping, BUCKET_MICROS[bucket], window, exclude_flags)
    frame = dd.from_map(  # type: ignore[no-untyped-call]
        _partial_of_file, tasks, args=(options,), meta=_meta(), label="lake-rollup"
    )
    with dask_client(scheduler) as client:
        partial = client.compute(frame, sync=True)  # type: ignore[no-untyped-call]
    return _finish(partial, grouping, names, BUCKET_MICROS[bucket])


def _meta() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=kind) for name, kind in _PARTIAL.items()})


def _partial_of_file(
    task: tuple[str, int], options: tuple[_Grouping, int, tuple[int, int], int]
) -> pd.DataFrame:
    """One lake file reduced to (group code, bucket) partials; runs on a worker."""
    path, prop = task
    grouping, width, (start, end), exclude_flags = options
    table = pq.read_table(path, columns=["datastream_id", "phenomenon_time", "result", "quality"])
    ds = _numpy(table, "datastream_id")
    time = _numpy(table, "phenomenon_time").view(np.int64)
    keep = (time >= start) & (time < end)
    if exclude_flags:
        keep &= (_numpy(table, "quality") & exclude_flags) == 0
    runs = _fold_runs(ds, np.floor_divide(time, width), _numpy(table, "result"), keep)
    runs["code"] = grouping.codes_of(runs.pop("datastream_id"))
    runs["prop"] = np.full(len(runs["code"]), prop, np.int64)
    partial = pd.DataFrame(runs, columns=list(_PARTIAL))
    return _merge(partial[(partial["count"] > 0) & (partial["code"] >= 0)])


def _numpy(table: pa.Table, name: str) -> np.ndarray:
    """A column as numpy, without a copy when it is one chunk."""
    column = table.column(name)
    chunk = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return np.asarray(chunk.to_numpy(zero_copy_only=False))


def _fold_runs(
    ds: np.ndarray, bucket: np.ndarray, value: np.ndarray, keep: np.ndarray
) -> dict[str, np.ndarray]:
    """Sum, count, min and max of the kept values of each run of equal (datastream, bucket).

    Rows left out are neutralised rather than removed (copying the kept rows costs more): 0 for
    the sum, NaN for ``fmin`` (which skips it), -inf for ``maximum``; a run with none kept has
    count 0.
    """
    starts = _run_starts(ds, bucket)
    if not len(starts):
        empty = value[:0]
        columns = {"datastream_id": ds[:0], "bucket": bucket[:0], "count": ds[:0]}
        return columns | {"sum": empty, "min": empty, "max": empty}
    everything = bool(keep.all())
    return {
        "datastream_id": ds[starts],
        "bucket": bucket[starts],
        "sum": np.add.reduceat(value if everything else np.where(keep, value, 0.0), starts),
        "count": np.add.reduceat(keep.astype(np.int64), starts),
        "min": np.fmin.reduceat(value if everything else np.where(keep, value, np.nan), starts),
        "max": np.maximum.reduceat(value if everything else np.where(keep, value, -np.inf), starts),
    }


def _run_starts(*keys: np.ndarray) -> np.ndarray:
    if not len(keys[0]):
        return np.zeros(0, np.intp)
    change = np.zeros(len(keys[0]) - 1, dtype=bool)
    for key in keys:
        change |= key[1:] != key[:-1]
    return np.flatnonzero(np.r_[True, change])


def _merge(partial: pd.DataFrame) -> pd.DataFrame:
    """Fold partials with equal (prop, code, bucket): sums and counts add, min/max combine
    (``fmin`` skips NaN, ``maximum`` keeps it: DuckDB's ordering puts NaN above every number)."""
    keys = [partial[k].to_numpy() for k in ("prop", "code", "bucket")]
    order = np.lexsort(keys[::-1])
    sorted_keys = [k[order] for k in keys]
    starts = _run_starts(*sorted_keys)
    if len(starts) == len(partial):
        return partial.iloc[order].reset_index(drop=True)
    column = {k: partial[k].to_numpy()[order] for k in ("sum", "count", "min", "max")}
    return pd.DataFrame(
        {
            "prop": sorted_keys[0][starts],
            "code": sorted_keys[1][starts],
            "bucket": sorted_keys[2][starts],
            "sum": np.add.reduceat(column["sum"], starts),
            "count": np.add.reduceat(column["count"], starts),
            "min": np.fmin.reduceat(column["min"], starts),
            "max": np.maximum.reduceat(column["max"], starts),
        }
    )


def _finish(
    partial: pd.DataFrame, grouping: _Grouping, names: list[str | None], width: int
) -> pa.Table:
    """The merged partials as :data:`AGGREGATE_SCHEMA`, ordered like the store's ORDER BY ALL."""
    merged = _merge(partial)
    code, prop = merged["code"].to_numpy(), merged["prop"].to_numpy()
    properties = pa.array(names, pa.string()).take(pa.array(prop))
    if grouping.by == "datastream":
        group = pa.array(code).cast(pa.string())
    elif grouping.by == "observed_property":
        group = properties
    else:
        group = pa.array(grouping.labels, pa.string()).take(pa.array(code))
    table = pa.table(
        {
            "group": group,
            "observed_property": properties,
            "bucket": pa.array(merged["bucket"].to_numpy() * width).cast(pa.timestamp("us")),
            "mean": merged["sum"].to_numpy() / merged["count"].to_numpy(),
            "min": merged["min"].to_numpy(),
            "max": merged["max"].to_numpy(),
            "count": merged["count"].to_numpy(),
        },
        schema=AGGREGATE_SCHEMA,
    )
    order = [(c, "ascending") for c in ("group", "observed_property", "bucket")]
    return table.sort_by(order)  # nulls last, as DuckDB orders them
