"""parse → QC → store, the same for every feed.

:func:`ingest` takes a reader's batches and, for each: orders readings by (thing, time), settles
duplicate rows inside the batch, registers the SensorThings entities it needs (Thing, Location,
HistoricalLocation, Sensor, ObservedProperty, Datastream), runs QC, writes observations (the store
skips those it already has) and quarantines every rejected record with its reason.

Two threads share the work: the caller's reads, orders, checks and unpivots; one writer thread
does everything that touches the store, in order, so that a store write overlaps the next
computation (see :func:`ingest`).
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time as _time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from citytwin.bus.base import Bus, observations_topic
from citytwin.ingest.base import FeedBatch, Readings, SensorSpec, ThingSpec
from citytwin.ingest.frames import settle_duplicates, to_frame
from citytwin.ingest.qc import quality_by_property, sort_readings
from citytwin.ingest.retry import RetryPolicy, call_with_retry
from citytwin.ingest.source import Reject
from citytwin.model.geojson import Point
from citytwin.model.sensing import (
    Datastream,
    Entity,
    HistoricalLocation,
    Location,
    Sensor,
    Thing,
    stable_id,
)
from citytwin.model.vocabulary import get_property
from citytwin.store.base import ObservationFrame, QuarantineRecord, Store, from_micros
from citytwin.store.entities import EntityRows

logger = logging.getLogger(__name__)

FRAME_VALUES = 1_500_000  # readings per frame written: writing one overlaps checking the next
WRITE_QUEUE_DEPTH = 2  # store jobs waiting for the writer thread: bounds the memory in flight
R = TypeVar("R")


@dataclass
class FeedSummary:
    """Counts for one feed: rows and observations read, stored, duplicate, flagged, quarantined."""

    feed: str
    files: int = 0
    rows: int = 0
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    flagged: int = 0
    quarantined: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, other: FeedSummary) -> None:
        for name in ("files", "rows", "read", "stored", "duplicates", "flagged", "quarantined"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.notes.extend(other.notes)


@dataclass
class IngestReport:
    """Summaries per feed, plus files that could not be read at all."""

    feeds: dict[str, FeedSummary] = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)

    def add(self, summary: FeedSummary) -> None:
        self.feeds.setdefault(summary.feed, FeedSummary(summary.feed)).add(summary)

    @property
    def nothing_read(self) -> bool:
        """True when no row of any input could be read (the CLI's failure condition)."""
        return all(s.rows == 0 for s in self.feeds.values())


def datastream_key(thing_key: str, property_key: str) -> str:
    """Natural key of the datastream of one property on one thing."""
    return f"{thing_key}/{property_key}"


class Ingestor:
    """Writes feed batches into a store; remembers which entities it has registered.

    A batch goes through :meth:`prepare` (sort, settle duplicates; then
    :meth:`PreparedBatch.frames` runs QC and builds the long frames — computation only, no
    store) and the store's work: :meth:`register` its entities, :meth:`store_frame` each frame,
    :meth:`commit` (quarantine, final counts). :meth:`write` does it all in the caller's thread;
    :func:`ingest` hands the store's work to a writer thread, so that the store writes while
    the caller checks and builds what comes next.

    A large batch is written as several frames, one per group of properties (each at most about
    :data:`FRAME_VALUES` readings), each built as soon as QC has checked its properties, so that
    writing one overlaps checking the next; each frame is grouped by datastream and ordered by
    time, and no two share a datastream, so no two share an identity (the DuckDB store then
    appends each frame after the first without looking for stored duplicates).

    With a ``bus``, each frame that stored at least one new observation is announced on
    ``observations/<feed>`` as written. The store reports counts, not which rows were new, so a
    frame that mixes new and already-stored rows re-announces the old ones too; their identity
    (datastream, time) is unchanged, so consumers treat messages as idempotent upserts. A frame
    of duplicates only is not announced.

    Every store call goes through :meth:`retrying`: when the store's server went away for a
    moment (:class:`~citytwin.errors.StoreUnavailableError`), the same idempotent call is made
    again with backoff, as ``retry`` says (:mod:`citytwin.ingest.retry`).
    """

    def __init__(
        self,
        store: Store,
        *,
        now: Callable[[], datetime] | None = None,
        bus: Bus | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.retry = retry or RetryPolicy()
        self._now = now or (lambda: datetime.now(UTC))
        self._registered: set[tuple[str, int]] = set()
        self._stream_ids: dict[tuple[str, str], int] = {}  # (thing key, property) -> id
        # what this ingestor registered of each thing: an unchanged thing is not registered
        # again (no new model, no store lookup, no new HistoricalLocation) — a live feed sends
        # the same devices in every small batch
        self._things: dict[str, ThingSpec] = {}

    def write(self, batch: FeedBatch) -> FeedSummary:
        """Store one batch; return what happened to it."""
        self.register(batch)
        work = self.prepare(batch)
        for frame in work.frames():
            self.store_frame(work, frame)
        return self.commit(work)

    def prepare(self, batch: FeedBatch) -> PreparedBatch:
        """Order the batch and settle its duplicates; QC and frames follow lazily
        (:meth:`PreparedBatch.frames`), so that writing one frame can overlap building the next."""
        summary = FeedSummary(batch.feed, rows=len(batch.readings) + len(batch.rejects))
        readings = sort_readings(batch.readings)
        readings, duplicate_values, conflicts = settle_duplicates(readings, batch.line_text)
        summary.read = readings.value_count + duplicate_values
        summary.duplicates = duplicate_values
        summary.notes = [f"{batch.source}: {note}" for note in batch.notes]
        return PreparedBatch(batch, readings, [*batch.rejects, *conflicts], summary, self)

    def retrying(self, call: Callable[[], R], *, what: str) -> R:
        """``call()`` (store work), made again after a transient store error (see the class)."""
        return call_with_retry(call, store=self.store, what=what, policy=self.retry)

    def register(self, batch: FeedBatch) -> None:
        """Register the entities the batch needs (before any of its observations).

        It needs only which things have readings of which properties and each thing's first
        time, none of which depends on the order of the readings, so it can run on the batch as
        read while :meth:`prepare` orders it. (A reading dropped by :meth:`prepare` as a
        conflicting duplicate can leave a datastream registered with no observation from this
        batch: a Datastream without Observations is valid SensorThings.)
        """
        self.retrying(
            lambda: self._register(batch, batch.readings),
            what=f"registering the entities of {_describe(batch)}",
        )

    def store_frame(self, work: PreparedBatch, frame: ObservationFrame) -> None:
        """Write one of the batch's frames; count what the store did with it."""
        result = self.retrying(
            lambda: self.store.write_observations(frame),
            what=f"writing {_describe_frame(frame)} of {_describe(work.batch)}",
        )
        if self.bus is not None and result.inserted:
            self.bus.publish(observations_topic(work.batch.feed), frame)
        work.summary.stored += result.inserted
        work.summary.duplicates += result.duplicates
        work.summary.flagged += int(np.count_nonzero(frame.quality))

    def commit(self, work: PreparedBatch) -> FeedSummary:
        """Quarantine the batch's rejects once all its frames are written; its final summary."""
        batch = work.batch
        records = [QuarantineRecord(batch.feed, batch.source, r.line, r.raw, r.reason)
                   for r in work.rejects]  # fmt: skip
        self.retrying(
            lambda: self.store.write_quarantine(records),
            what=f"quarantining {len(records)} records of {_describe(batch)}",
        )
        work.summary.quarantined = len(work.rejects)
        return work.summary

    def datastream_ids(self, readings: Readings) -> dict[str, NDArray[np.int64]]:
        """Datastream id per property, indexed by thing (ids derive from natural keys)."""
        cache = self._stream_ids
        ids: dict[str, NDArray[np.int64]] = {}
        for key in readings.values:
            row = []
            for thing in readings.things:
                found = cache.get((thing.key, key))
                if found is None:
                    found = cache[(thing.key, key)] = stable_id(
                        "Datastream", datastream_key(thing.key, key)
                    )
                row.append(found)
            ids[key] = np.array(row, np.int64)
        return ids

    def _register(self, batch: FeedBatch, readings: Readings) -> dict[str, NDArray[np.int64]]:
        """Register what the batch needs; return datastream ids per property, indexed by thing."""
        entities: list[Entity] = []
        sensor = _sensor(batch.sensor)
        present = np.zeros(len(readings.things), bool)
        present[readings.thing_index] = True
        first_seen = _first_times(readings)
        entities.append(sensor)
        for number, spec in enumerate(readings.things):
            if not present[number] or self._things.get(spec.key) == spec:
                continue
            thing = Thing(
                key=spec.key,
                name=spec.name,
                description=spec.description,
                properties=spec.properties,
            )
            entities.append(thing)
            entities.extend(_location(spec, thing, first_seen[number]))
        ids = self.datastream_ids(readings)
        thing_ids: dict[int, int] = {}
        streams: list[EntityRows] = []  # checked against what is registered as they are built
        for key, values in readings.values.items():
            prop = get_property(key)
            observed = prop.to_sta()
            entities.append(observed)
            has_value = np.zeros(len(readings.things), bool)
            has_value[readings.thing_index[~np.isnan(values)]] = True
            # a registered datastream is unchanged: its fields derive from thing, feed, property
            stream_ids = ids[key].tolist()
            new = [
                index for index in np.flatnonzero(has_value).tolist()
                if ("Datastream", stream_ids[index]) not in self._registered
            ]  # fmt: skip
            if not new:
                continue
            things = [readings.things[index] for index in new]
            for index, spec in zip(new, things, strict=True):
                if index not in thing_ids:
                    thing_ids[index] = stable_id("Thing", spec.key)
            template = Datastream(
                key=datastream_key("", key),  # each row's own key, name and ids replace these
                name=prop.name,
                unit_of_measurement=prop.unit.to_sta(),
                properties={"feed": batch.feed, "observedProperty": key, "period": readings.period},
                thing_id=0,
                sensor_id=sensor.id or 0,
                observed_property_id=observed.id or 0,
            )
            streams.append(
                EntityRows.from_template(
                    template,
                    id=[stream_ids[index] for index in new],  # = stable_id of each key
                    key=[datastream_key(spec.key, key) for spec in things],
                    name=[f"{spec.name} {prop.name}" for spec in things],
                    description=[f"{prop.name} measured by {spec.name}" for spec in things],
                    thing_id=[thing_ids[index] for index in new],
                )
            )
        fresh = [e for e in entities if (type(e).__name__, e.id or 0) not in self._registered]
        self.store.register([*self._merge_things(fresh), *streams])
        self._registered.update((type(e).__name__, e.id or 0) for e in fresh)
        self._registered.update(("Datastream", i) for rows in streams for i in rows.columns["id"])
        self._things.update(
            (readings.things[i].key, readings.things[i]) for i in np.flatnonzero(present).tolist()
        )
        return ids

    def _merge_things(self, entities: list[Entity]) -> list[Entity]:
        """Keep what the store knows of a Thing: a feed file without the registry must not erase
        the elevation or zone an earlier registry ingest recorded in its properties."""
        things = {e.id: e for e in entities if isinstance(e, Thing)}
        if not things:
            return entities
        known = {t.id: t for t in self.store.entities(Thing, [i for i in things if i is not None])}
        merged: dict[int | None, Entity] = {
            i: t.model_copy(update={"properties": {**known[i].properties, **t.properties}})
            for i, t in things.items()
            if i in known
        }
        return [merged.get(e.id, e) if isinstance(e, Thing) else e for e in entities]


@dataclass
class PreparedBatch:
    """A batch ordered, settled and ready to store; ``summary`` fills in as it is written."""

    batch: FeedBatch
    readings: Readings
    rejects: list[Reject]
    summary: FeedSummary
    ingestor: Ingestor

    def frames(self) -> Iterator[ObservationFrame]:
        """The long frames to write, one per group of properties of at most about
        :data:`FRAME_VALUES` readings, each as soon as QC has checked its properties."""
        readings = self.readings
        ids = self.ingestor.datastream_ids(readings)
        flags: dict[str, NDArray[np.int32]] = {}
        for key, bits in quality_by_property(readings, now_us=int(_time.time() * 1e6)):
            if flags and len(readings) * (len(flags) + 1) > FRAME_VALUES:
                yield to_frame(readings, flags, ids, list(flags))
                flags = {}
            flags[key] = bits
        if flags or not readings.values:
            yield to_frame(readings, flags, ids, list(flags))


def _describe(batch: FeedBatch) -> str:
    """The batch in a log line or an error: feed, source and size."""
    return f"the {batch.feed} batch of {len(batch.readings):,} rows from {batch.source}"


def _describe_frame(frame: ObservationFrame) -> str:
    """The frame in a log line or an error: size and time span (UTC, to the minute)."""
    if not len(frame):
        return "0 observations"
    times = frame.phenomenon_time
    lo, hi = (np.datetime64(int(t), "us") for t in (times.min(), times.max()))
    span = np.datetime_as_string(np.array([lo, hi]), unit="m")
    return f"{len(frame):,} observations ({span[0]}Z to {span[1]}Z)"


def _sensor(spec: SensorSpec) -> Sensor:
    return Sensor(
        key=spec.key, name=spec.name, description=spec.description, metadata=spec.metadata
    )


def _location(spec: ThingSpec, thing: Thing, first_us: int) -> list[Entity]:
    if spec.lon is None or spec.lat is None:
        return []
    location = Location(
        key=f"{spec.key}/location",
        name=f"{spec.name} location",
        location=Point(coordinates=[spec.lon, spec.lat]),
        thing_id=thing.id,
    )
    history = HistoricalLocation(
        key=f"{spec.key}/location@{first_us}",
        time=from_micros(first_us),
        thing_id=thing.id or 0,
        location_id=location.id or 0,
    )
    return [location, history]


def _first_times(readings: Readings) -> NDArray[np.int64]:
    first = np.full(len(readings.things), np.iinfo(np.int64).max, np.int64)
    np.minimum.at(first, readings.thing_index, readings.time)
    return first


class _Writer:
    """One thread that runs store work in submission order, behind a bounded queue.

    The store is then used by this thread alone while the caller prepares the next batch. The
    first error stops the work (later jobs are dropped) and is raised in the caller, by the next
    :meth:`submit` or by :meth:`close`.
    """

    def __init__(self, depth: int) -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="citytwin-writer", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        """Queue ``job`` (blocks while the queue is full); raise the writer's error if any."""
        self._raise()
        self._jobs.put(job)

    def close(self) -> None:
        """Wait for every queued job; raise the writer's error if any."""
        self.stop()
        self._raise()

    def stop(self) -> None:
        """Wait for the queued jobs (after an error in the caller, which takes precedence)."""
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            if self._error is None:
                try:
                    job()
                except BaseException as exc:  # handed to the caller's thread, never lost
                    self._error = exc


def ingest(
    batches: Iterable[FeedBatch],
    store: Store,
    *,
    ingestor: Ingestor | None = None,
    on_batch: Callable[[FeedBatch, FeedSummary], None] | None = None,
) -> IngestReport:
    """Write every batch; return the per-feed report.

    The caller's thread reads, orders and checks the batches; one writer thread registers
    entities and writes observations and quarantine, batch after batch in order, while the next
    is being prepared (DuckDB and most large numpy operations release the GIL, so the two share
    two cores). The store is used by the writer alone until this returns. ``on_batch`` is called
    on the writer thread once a batch is fully written, in batch order (so it may use the
    store). An error in either thread stops the ingest and is raised here, after the writes
    already queued have finished.
    """
    ingestor = ingestor or Ingestor(store)
    report = IngestReport()
    seen: set[str] = set()
    writer = _Writer(WRITE_QUEUE_DEPTH)

    def finish(work: PreparedBatch, first_of_file: bool) -> None:
        summary = ingestor.commit(work)
        summary.files = int(first_of_file)
        report.add(summary)
        if on_batch is not None:
            on_batch(work.batch, summary)

    try:
        for batch in batches:
            writer.submit(functools.partial(ingestor.register, batch))  # overlaps the ordering
            work = ingestor.prepare(batch)
            for frame in work.frames():
                writer.submit(functools.partial(ingestor.store_frame, work, frame))
            writer.submit(functools.partial(finish, work, batch.source not in seen))
            seen.add(batch.source)
    except BaseException:
        writer.stop()
        raise
    writer.close()
    return report


def sources_in(paths: Sequence[str]) -> list[str]:
    """Expand directories into the files below them (sorted), keep files as given."""
    from pathlib import Path

    out: list[str] = []
    for path in paths:
        p = Path(path)
        out.extend(sorted(str(f) for f in p.rglob("*") if f.is_file()) if p.is_dir() else [path])
    return out
