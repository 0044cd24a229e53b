"""parse → QC → store, the same for every feed.

:func:`ingest` takes a reader's batches and, for each: orders readings by (thing, time), settles
duplicate rows inside the batch, registers the SensorThings entities it needs (Thing, Location,
HistoricalLocation, Sensor, ObservedProperty, Datastream), runs QC, writes observations (the store
skips those it already has) and quarantines every rejected record with its reason.
"""

from __future__ import annotations

import logging
import time as _time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

from citytwin.bus.base import Bus, observations_topic
from citytwin.ingest.base import FeedBatch, Readings, SensorSpec, ThingSpec
from citytwin.ingest.qc import check_quality, sort_readings
from citytwin.ingest.source import Reject
from citytwin.model.geojson import Point
from citytwin.model.quality import Flag
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

logger = logging.getLogger(__name__)


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

    With a ``bus``, each batch that stored at least one new observation is announced on
    ``observations/<feed>`` as the frame written. The store reports counts, not which rows were
    new, so a batch that mixes new and already-stored rows re-announces the old ones too; their
    identity (datastream, time) is unchanged, so consumers treat messages as idempotent upserts.
    A batch of duplicates only is not announced.
    """

    def __init__(
        self, store: Store, *, now: Callable[[], datetime] | None = None, bus: Bus | None = None
    ) -> None:
        self.store = store
        self.bus = bus
        self._now = now or (lambda: datetime.now(UTC))
        self._registered: set[tuple[str, int]] = set()

    def write(self, batch: FeedBatch) -> FeedSummary:
        """Store one batch; return what happened to it."""
        summary = FeedSummary(batch.feed, rows=len(batch.readings) + len(batch.rejects))
        readings = sort_readings(batch.readings)
        readings, duplicate_values, conflicts = _settle_duplicates(readings, batch.line_text)
        rejects = [*batch.rejects, *conflicts]
        summary.read = readings.value_count + duplicate_values
        ids = self._register(batch, readings)
        flags = check_quality(readings, now_us=int(_time.time() * 1e6))
        frame = _to_frame(readings, flags, ids)
        result = self.store.write_observations(frame)
        self.store.write_quarantine(
            [QuarantineRecord(batch.feed, batch.source, r.line, r.raw, r.reason) for r in rejects]
        )
        if self.bus is not None and result.inserted:
            self.bus.publish(observations_topic(batch.feed), frame)
        summary.stored = result.inserted
        summary.duplicates = result.duplicates + duplicate_values
        summary.flagged = int(np.count_nonzero(frame.quality))
        summary.quarantined = len(rejects)
        summary.notes = [f"{batch.source}: {note}" for note in batch.notes]
        return summary

    def _register(self, batch: FeedBatch, readings: Readings) -> dict[str, NDArray[np.int64]]:
        """Register what the batch needs; return datastream ids per property, indexed by thing."""
        entities: list[Entity] = []
        sensor = _sensor(batch.sensor)
        present = np.zeros(len(readings.things), bool)
        present[np.unique(readings.thing_index)] = True
        first_seen = _first_times(readings)
        entities.append(sensor)
        ids: dict[str, NDArray[np.int64]] = {}
        for number, spec in enumerate(readings.things):
            if not present[number]:
                continue
            thing = Thing(
                key=spec.key,
                name=spec.name,
                description=spec.description,
                properties=spec.properties,
            )
            entities.append(thing)
            entities.extend(_location(spec, thing, first_seen[number]))
        for key, values in readings.values.items():
            prop = get_property(key)
            observed, unit = prop.to_sta(), prop.unit.to_sta()
            entities.append(observed)
            has_value = np.zeros(len(readings.things), bool)
            has_value[readings.thing_index[~np.isnan(values)]] = True
            ids[key] = np.array(
                [stable_id("Datastream", datastream_key(t.key, key)) for t in readings.things],
                np.int64,
            )
            for index in np.flatnonzero(has_value):
                thing_spec = readings.things[int(index)]
                entities.append(
                    Datastream(
                        key=datastream_key(thing_spec.key, key),
                        name=f"{thing_spec.name} {prop.name}",
                        description=f"{prop.name} measured by {thing_spec.name}",
                        unit_of_measurement=unit,
                        properties={
                            "feed": batch.feed,
                            "observedProperty": key,
                            "period": readings.period,
                        },
                        thing_id=stable_id("Thing", thing_spec.key),
                        sensor_id=sensor.id or 0,
                        observed_property_id=observed.id or 0,
                    )
                )
        fresh = [e for e in entities if (type(e).__name__, e.id or 0) not in self._registered]
        self.store.register(self._merge_things(fresh))
        self._registered.update((type(e).__name__, e.id or 0) for e in fresh)
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


def _settle_duplicates(
    readings: Readings, line_text: Callable[[int], str] | None
) -> tuple[Readings, int, list[Reject]]:
    """Same (thing, time) twice in one batch: identical rows are duplicates; differing rows
    are quarantined (the first one stays, flagged DUPLICATE)."""
    same = np.r_[
        False,
        (readings.thing_index[1:] == readings.thing_index[:-1])
        & (readings.time[1:] == readings.time[:-1]),
    ]
    if not same.any():
        return readings, 0, []
    group_first = np.maximum.accumulate(np.where(~same, np.arange(len(same)), 0))
    differs = np.zeros(len(same), bool)
    for values in readings.values.values():
        a, b = values, values[group_first]
        differs |= ~((a == b) | (np.isnan(a) & np.isnan(b)))
    identical = same & ~differs
    conflict = same & differs
    duplicate_values = sum(
        int(np.count_nonzero(~np.isnan(v[identical]))) for v in readings.values.values()
    )
    rejects = [
        Reject(
            int(readings.line[i]),
            line_text(int(readings.line[i])) if line_text else "",
            f"same sensor and time as line {int(readings.line[group_first[i]])} "
            "but different values; the first is kept",
        )
        for i in np.flatnonzero(conflict)
    ]
    flagged_first = np.zeros(len(same), bool)
    flagged_first[group_first[conflict]] = True
    kept = readings.take(~same)
    if flagged_first.any():
        kept.source_flags = dict(kept.source_flags)
        kept.source_flags["__duplicate__"] = flagged_first[~same]
    return kept, duplicate_values, rejects


def _to_frame(
    readings: Readings, flags: dict[str, NDArray[np.int32]], ids: dict[str, NDArray[np.int64]]
) -> ObservationFrame:
    """Unpivot wide readings into one long frame, property by property (each part stays
    grouped by datastream and ordered by time, which lets the store skip a sort)."""
    duplicate = readings.source_flags.get("__duplicate__")
    present = {key: ~np.isnan(values) for key, values in readings.values.items()}
    total = sum(int(np.count_nonzero(mask)) for mask in present.values())
    out = ObservationFrame(
        np.empty(total, np.int64),
        np.empty(total, np.int64),
        np.empty(total, np.float64),
        np.empty(total, np.int32),
    )
    start = 0
    for key, values in readings.values.items():
        mask = present[key]
        end = start + int(np.count_nonzero(mask))
        everything = end - start == len(mask)
        pick = slice(None) if everything else mask
        np.take(ids[key], readings.thing_index[pick], out=out.datastream_id[start:end])
        out.phenomenon_time[start:end] = readings.time[pick]
        out.result[start:end] = values[pick]
        bits = (
            flags[key]
            if duplicate is None
            else flags[key] | np.where(duplicate, np.int32(Flag.DUPLICATE), np.int32(0))
        )
        out.quality[start:end] = bits[pick]
        start = end
    return out


def ingest(
    batches: Iterable[FeedBatch],
    store: Store,
    *,
    ingestor: Ingestor | None = None,
    on_batch: Callable[[FeedBatch, FeedSummary], None] | None = None,
) -> IngestReport:
    """Write every batch; return the per-feed report."""
    ingestor = ingestor or Ingestor(store)
    report = IngestReport()
    seen: set[str] = set()
    for batch in batches:
        summary = ingestor.write(batch)
        summary.files = int(batch.source not in seen)
        seen.add(batch.source)
        report.add(summary)
        if on_batch is not None:
            on_batch(batch, summary)
    return report


def sources_in(paths: Sequence[str]) -> list[str]:
    """Expand directories into the files below them (sorted), keep files as given."""
    from pathlib import Path

    out: list[str] = []
    for path in paths:
        p = Path(path)
        out.extend(sorted(str(f) for f in p.rglob("*") if f.is_file()) if p.is_dir() else [path])
    return out
