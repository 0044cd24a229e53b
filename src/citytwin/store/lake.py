"""The observation lake: the store's history as Parquet files, for engines that scale out.

The embedded store answers the twin's questions about now and the last days; a month of a city's
sensors (S-DoT: 1,100 sensors × 17 values every 2 minutes, ≈ 400 M observations) is read by a
distributed engine instead. :func:`export_lake` copies observations out of any :class:`Store`
into a hive-partitioned Parquet directory that Dask (:mod:`citytwin.store.lake_dask`), DuckDB,
Spark or pandas read without citytwin::

    root/
      _datastreams.parquet                   one row per datastream: property, thing, its keys
      date=2020-03-15/
        property=pm25/part-0.parquet         (datastream_id, phenomenon_time, result, quality)
        property=noise/part-0.parquet
      date=2020-03-16/…

Why this layout: a rollup or a map reads one property over a span of days, so both partition
keys prune whole directories; within a file rows are ordered by (datastream, time) like the
store's, so a (datastream, hour) is one contiguous run. Times are ``timestamp[us]`` holding UTC
(the store's convention). The district and other Thing keys are not repeated on 400 M rows: they
sit once per datastream in ``_datastreams.parquet`` (a leading underscore, so Parquet readers
skip it when they scan the partitions).

Idempotent: a day is exported whole; re-exporting it replaces its files (each written beside the
old one and renamed over it) and removes properties the day no longer holds, so nothing is ever
duplicated. Property values are URI-encoded in directory names and a missing property is
``__HIVE_DEFAULT_PARTITION__``, as pyarrow's and Spark's hive readers expect.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from citytwin.errors import StoreError, ValidationError
from citytwin.model.sensing import Datastream, Thing
from citytwin.store.base import ObservationFrame, Store, to_micros

logger = logging.getLogger(__name__)

DIMENSIONS = "_datastreams.parquet"
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
PART = "part-0.parquet"
DAY = timedelta(days=1)
DIMENSION_SCHEMA = pa.schema(
    [
        ("datastream_id", pa.int64()),
        ("observed_property", pa.string()),
        ("feed", pa.string()),
        ("thing_id", pa.int64()),
        ("thing_properties", pa.string()),  # JSON, as the embedded store keeps it
    ]
)
Progress = Callable[[int, int], None]  # (days done, days in all)


@dataclass(frozen=True, slots=True)
class LakeReport:
    """What an export did: whole UTC days written, files written, stale files removed, rows."""

    root: Path
    days: int
    partitions: int
    removed: int
    rows: int
    datastreams: int


@dataclass(frozen=True, slots=True)
class Partition:
    """One ``date=…/property=…`` directory of the lake (``observed_property`` None: unknown)."""

    day: date
    observed_property: str | None
    files: tuple[Path, ...]


def export_lake(
    store: Store,
    root: str | Path,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    progress: Progress | None = None,
) -> LakeReport:
    """Copy the store's observations in ``[start, end)`` into the lake at ``root``.

    The span is widened to whole UTC days (a partition is a day; exporting part of one would
    replace the day with the part); without ``start``/``end`` it is the store's whole history.
    Each day is read and written on its own, so memory holds one day at a time.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    dimensions = _merge_dimensions(root, datastream_dimensions(store))
    days = _days(store, start, end)
    lookup = _PropertyLookup.of(dimensions)
    written = removed = rows = 0
    for done, day in enumerate(days, start=1):
        frame = store.observations(start=day, end=day + DAY)
        files, stale = _write_day(root, day.date(), frame, lookup)
        written, removed, rows = written + files, removed + stale, rows + len(frame)
        logger.info("lake %s: %s, %d observations in %d files", root, day.date(), len(frame), files)
        if progress is not None:
            progress(done, len(days))
    return LakeReport(root, len(days), written, removed, rows, dimensions.num_rows)


def datastream_dimensions(store: Store) -> pa.Table:
    """One row per datastream: its observed property, feed, Thing and the Thing's properties
    (JSON), i.e. what :meth:`Store.aggregate` joins to group by ``thing.<name>``."""
    things = {t.id: t for t in store.entities(Thing)}
    streams = store.entities(Datastream)
    properties = [
        json.dumps(things[s.thing_id].properties) if s.thing_id in things else None for s in streams
    ]
    return pa.table(
        {
            "datastream_id": [s.id for s in streams],
            "observed_property": [s.properties.get("observedProperty") for s in streams],
            "feed": [s.properties.get("feed") for s in streams],
            "thing_id": [s.thing_id for s in streams],
            "thing_properties": properties,
        },
        schema=DIMENSION_SCHEMA,
    )


def read_dimensions(root: str | Path) -> pa.Table:
    """The lake's datastream table (empty when the lake holds none yet)."""
    path = check_lake(root) / DIMENSIONS
    if not path.exists():
        return DIMENSION_SCHEMA.empty_table()
    return pq.read_table(path).cast(DIMENSION_SCHEMA)


def check_lake(root: str | Path) -> Path:
    """``root`` as a Path, or a :class:`StoreError` naming it when it is not a directory."""
    path = Path(root)
    if not path.is_dir():
        raise StoreError(
            f"lake {path}: no such directory; expected a lake written by `citytwin lake export`"
        )
    return path


def partitions(
    root: str | Path,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    observed_properties: Sequence[str | None] | None = None,
) -> list[Partition]:
    """The lake's partitions whose day meets ``[start, end)`` and whose property is asked for,
    ordered by (day, property); found by listing directories, no file is opened."""
    found = []
    first = None if start is None else _utc(start, "start").date()
    last = None if end is None else (_utc(end, "end") - timedelta(microseconds=1)).date()
    for day_dir in sorted(check_lake(root).glob("date=*")):
        day = _parse_day(day_dir)
        if (first is not None and day < first) or (last is not None and day > last):
            continue
        for property_dir in sorted(day_dir.glob("property=*")):
            value = unquote(property_dir.name.removeprefix("property="))
            name = None if value == NULL_PARTITION else value
            files = tuple(sorted(property_dir.glob("part-*.parquet")))
            if files and (observed_properties is None or name in observed_properties):
                found.append(Partition(day, name, files))
    return found


def read_lake(
    root: str | Path,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    observed_property: str | None = None,
    datastream_ids: Sequence[int] | None = None,
) -> ObservationFrame:
    """Observations of the lake in ``[start, end)``, ordered by (datastream, time) like
    :meth:`Store.observations`; optionally of one property or some datastreams."""
    wanted = None if observed_property is None else [observed_property]
    chosen = partitions(root, start=start, end=end, observed_properties=wanted)
    return read_partitions(chosen, start=start, end=end, datastream_ids=datastream_ids)


def read_partitions(
    chosen: Sequence[Partition],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    datastream_ids: Sequence[int] | None = None,
) -> ObservationFrame:
    """The observations of some partitions in ``[start, end)``, ordered by (datastream, time)."""
    files = [str(f) for p in chosen for f in p.files]
    if not files:
        return ObservationFrame.empty()
    table = pq.read_table(files, schema=ObservationFrame.ARROW_SCHEMA, partitioning=None)
    time = table["phenomenon_time"]
    masks = []
    if start is not None:
        masks.append(pc.greater_equal(time, _naive(start)))
    if end is not None:
        masks.append(pc.less(time, _naive(end)))
    if datastream_ids is not None:
        ids = pa.array(datastream_ids, pa.int64())
        masks.append(pc.is_in(table["datastream_id"], value_set=ids))
    keep = masks[0] if masks else None
    for mask in masks[1:]:
        keep = pc.and_(keep, mask)
    if keep is not None:
        table = table.filter(keep)
    return ObservationFrame.from_arrow(table).sorted()


@dataclass(frozen=True)
class _PropertyLookup:
    """Datastream id → the property partition its rows go to (index into ``names``)."""

    ids: np.ndarray
    index: np.ndarray
    names: list[str | None]

    @classmethod
    def of(cls, dimensions: pa.Table) -> _PropertyLookup:
        ids = dimensions["datastream_id"].to_numpy()
        props = dimensions["observed_property"].to_pylist()
        names: list[str | None] = [None, *sorted({p for p in props if p is not None})]
        position = {name: i for i, name in enumerate(names)}
        order = np.argsort(ids, kind="stable")
        index = np.asarray([position[p] for p in props], dtype=np.int64)
        return cls(ids[order], index[order], names)

    def rows(self, datastream_id: np.ndarray) -> np.ndarray:
        """Partition index of each row (0, the unknown property, for unknown datastreams)."""
        at = np.searchsorted(self.ids, datastream_id).clip(0, max(len(self.ids) - 1, 0))
        if not len(self.ids):
            return np.zeros(len(datastream_id), dtype=np.int64)
        known = self.ids[at] == datastream_id
        return np.where(known, self.index[at], 0)


def _write_day(
    root: Path, day: date, frame: ObservationFrame, lookup: _PropertyLookup
) -> tuple[int, int]:
    """Replace one day's partitions with ``frame``'s rows; return (files written, removed)."""
    day_dir = root / f"date={day.isoformat()}"
    which = lookup.rows(frame.datastream_id)
    kept: set[Path] = set()
    for index in np.unique(which).tolist():
        name = lookup.names[index]
        directory = day_dir / f"property={quote(name or NULL_PARTITION, safe='')}"
        _replace_file(directory / PART, frame.take(which == index).sorted().to_arrow())
        kept.add(directory)
    stale = [d for d in day_dir.glob("property=*") if d not in kept] if day_dir.exists() else []
    for directory in stale:
        shutil.rmtree(directory)
    for directory in kept:  # parts an earlier layout split the day into
        for extra in directory.glob("part-*.parquet"):
            if extra.name != PART:
                extra.unlink()
    if day_dir.exists() and not kept:
        shutil.rmtree(day_dir)
    return len(kept), len(stale)


def _replace_file(path: Path, table: pa.Table) -> None:
    """Write beside the target, then rename over it: a reader sees the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, staging)
    os.replace(staging, path)


def _merge_dimensions(root: Path, fresh: pa.Table) -> pa.Table:
    """Datastreams already in the lake plus the store's, the store's winning; written back."""
    old = read_dimensions(root)
    keep = pc.invert(pc.is_in(old["datastream_id"], value_set=fresh["datastream_id"]))
    merged = pa.concat_tables([old.filter(keep), fresh]).sort_by("datastream_id")
    _replace_file(root / DIMENSIONS, merged)
    return merged


def _days(store: Store, start: datetime | None, end: datetime | None) -> list[datetime]:
    """UTC midnights of the whole days covering ``[start, end)`` (store span where None)."""
    if start is None or end is None:
        spans = [(s.first, s.last) for s in store.stats() if s.first and s.last]
        if not spans:
            return []
        start = start or min(first for first, _ in spans)
        end = end or max(last for _, last in spans) + timedelta(microseconds=1)
    first = _midnight(_utc(start, "start"))
    last = _midnight(_utc(end, "end") - timedelta(microseconds=1))
    if last < first:
        return []
    if first != _utc(start, "start") or last + DAY != _utc(end, "end"):
        logger.info("lake export widened to whole UTC days %s … %s", first.date(), last.date())
    return [first + i * DAY for i in range((last - first) // DAY + 1)]


def _midnight(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None:
        raise ValidationError(f"{name} {moment.isoformat()}: expected a timezone-aware time")
    return moment.astimezone(UTC)


def _naive(moment: datetime) -> pa.Scalar:
    """A UTC time as the lake's ``timestamp[us]`` (no zone) scalar."""
    return pa.scalar(to_micros(_utc(moment, "time")), pa.int64()).cast(pa.timestamp("us"))


def _parse_day(directory: Path) -> date:
    text = directory.name.removeprefix("date=")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise StoreError(
            f"lake {directory.parent}: directory {directory.name!r} is not a partition; "
            "expected date=YYYY-MM-DD"
        ) from None
