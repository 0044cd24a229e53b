"""In-memory fake store: the contract's reference behaviour, for tests and experiments.

Simple rather than fast: fine for thousands of observations, not for a city's year.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar, Self, cast

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from citytwin.errors import IdentityConflictError
from citytwin.model.sensing import Datastream, Entity, ObservedProperty, Thing
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
    from_micros,
    to_micros,
)
from citytwin.store.entities import EntityRows


class MemoryStore(Store):
    """Everything in Python containers; lost on close."""

    scheme: ClassVar[str] = "memory"

    def __init__(self) -> None:
        self._entities: dict[type[Entity], dict[int, Entity]] = defaultdict(dict)
        self._frames: list[ObservationFrame] = []
        self._keys: set[tuple[int, int]] = set()
        self._quarantine: list[QuarantineRecord] = []
        self._quarantined_lines: set[tuple[str, str, int | None, str, str]] = set()
        self._features: dict[str, dict[str, tuple[dict[str, Any], bytes]]] = {}

    @classmethod
    def from_url(cls, url: str) -> Self:
        return cls()

    def register(self, entities: Sequence[Entity | EntityRows]) -> None:
        models = (
            e for item in entities
            for e in (item.entities() if isinstance(item, EntityRows) else [item])
        )  # fmt: skip
        for entity in models:
            if entity.id is None:
                raise ValueError(f"{type(entity).__name__} {entity.key!r} has no id")
            table = self._entities[type(entity)]
            old = table.get(entity.id)
            if old is not None and old.key != entity.key:
                raise IdentityConflictError(
                    f"{type(entity).__name__} id {entity.id}: keys {old.key!r} and {entity.key!r}"
                )
            table[entity.id] = entity

    def entities(self, kind: type[E], ids: Sequence[int] | None = None) -> list[E]:
        table = cast(dict[int, E], self._entities[kind])
        if ids is None:
            return list(table.values())
        return [table[i] for i in ids if i in table]

    def delete(self, kind: type[Entity], ids: Sequence[int]) -> int:
        table = self._entities[kind]
        return sum(table.pop(i, None) is not None for i in set(ids))

    def write_observations(self, frame: ObservationFrame) -> WriteResult:
        keep = np.zeros(len(frame), dtype=bool)
        for i, key in enumerate(
            zip(frame.datastream_id.tolist(), frame.phenomenon_time.tolist(), strict=False)
        ):
            if key not in self._keys:
                self._keys.add(key)
                keep[i] = True
        if keep.any():
            self._frames.append(frame.take(keep))
        inserted = int(keep.sum())
        return WriteResult(inserted, len(frame) - inserted)

    def existing(self, frame: ObservationFrame) -> NDArray[np.bool_]:
        pairs = zip(frame.datastream_id.tolist(), frame.phenomenon_time.tolist(), strict=True)
        return np.fromiter((pair in self._keys for pair in pairs), bool, len(frame))

    def _all(self) -> ObservationFrame:
        if len(self._frames) > 1:
            self._frames = [ObservationFrame.concat(self._frames).sorted()]
        return self._frames[0].sorted() if self._frames else ObservationFrame.empty()

    def observations(
        self,
        *,
        datastream_ids: Sequence[int] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ObservationFrame:
        frame = self._all()
        mask = np.ones(len(frame), dtype=bool)
        if datastream_ids is not None:
            mask &= np.isin(frame.datastream_id, np.asarray(datastream_ids, dtype=np.int64))
        if start is not None:
            mask &= frame.phenomenon_time >= to_micros(start)
        if end is not None:
            mask &= frame.phenomenon_time < to_micros(end)
        return frame.take(mask)

    def delete_observations(
        self,
        *,
        datastream_ids: Sequence[int] | None = None,
        identities: ObservationFrame | None = None,
    ) -> int:
        check_observation_selection(datastream_ids, identities)
        frame = self._all()
        doomed = np.zeros(len(frame), dtype=bool)
        if datastream_ids is not None:
            doomed |= np.isin(frame.datastream_id, np.asarray(datastream_ids, dtype=np.int64))
        if identities is not None:
            named = set(
                zip(
                    identities.datastream_id.tolist(),
                    identities.phenomenon_time.tolist(),
                    strict=True,
                )
            )
            pairs = zip(frame.datastream_id.tolist(), frame.phenomenon_time.tolist(), strict=True)
            doomed |= np.fromiter((pair in named for pair in pairs), bool, len(frame))
        gone = frame.take(doomed)
        self._keys -= set(
            zip(gone.datastream_id.tolist(), gone.phenomenon_time.tolist(), strict=True)
        )
        self._frames = [frame.take(~doomed)]
        return len(gone)

    def latest(self, datastream_ids: Sequence[int] | None = None) -> ObservationFrame:
        frame = self.observations(datastream_ids=datastream_ids)
        if not len(frame):
            return frame
        last = np.r_[frame.datastream_id[1:] != frame.datastream_id[:-1], True]
        return frame.take(last)

    def _describe_datastreams(self, thing_property: str | None) -> dict[int, tuple[str, str, Any]]:
        """datastream id -> (observed property key, feed, thing property value)."""
        props = cast(dict[int, ObservedProperty], self._entities[ObservedProperty])
        things = cast(dict[int, Thing], self._entities[Thing])
        out: dict[int, tuple[str, str, Any]] = {}
        for ds in cast(dict[int, Datastream], self._entities[Datastream]).values():
            prop = props.get(ds.observed_property_id)
            thing = things.get(ds.thing_id)
            value = thing.properties.get(thing_property) if thing and thing_property else None
            key = str(prop.key if prop else ds.observed_property_id)
            out[cast(int, ds.id)] = (key, str(ds.properties.get("feed", "")), value)
        return out

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
        frame = self.observations(start=start, end=end)
        info = self._describe_datastreams(thing_property)
        width = BUCKET_MICROS[bucket]
        groups: dict[tuple[str, str, int], list[float]] = defaultdict(list)
        for d, t, r, q in zip(
            frame.datastream_id.tolist(),
            frame.phenomenon_time.tolist(),
            frame.result.tolist(),
            frame.quality.tolist(),
            strict=True,
        ):
            prop, _, value = info.get(d, ("", "", None))
            if (observed_property and prop != observed_property) or q & exclude_flags:
                continue
            if by == "datastream":
                group = str(d)
            elif by == "observed_property":
                group = prop
            elif value is None:
                continue
            else:
                group = str(value)
            groups[(group, prop, t - t % width)].append(r)
        rows = sorted(groups.items())
        return pa.Table.from_pylist(
            [
                {
                    "group": g,
                    "observed_property": p,
                    "bucket": from_micros(b).replace(tzinfo=None),
                    "mean": float(np.mean(v)),
                    "min": min(v),
                    "max": max(v),
                    "count": len(v),
                }
                for (g, p, b), v in rows
            ],
            schema=AGGREGATE_SCHEMA,
        )

    def write_features(self, layer: str, batch: FeatureBatch) -> WriteResult:
        table = self._features.setdefault(check_layer_name(layer), {})
        existing = sum(1 for i in batch.ids if i in table)
        for key, props, wkb in zip(batch.ids, batch.properties, batch.wkb, strict=True):
            table[key] = (props, wkb)
        return WriteResult(len(batch) - existing, existing)

    def features(
        self, layer: str, *, bbox: tuple[float, float, float, float] | None = None
    ) -> FeatureBatch:
        table = self._features.get(check_layer_name(layer), {})
        keys = sorted(table)
        if bbox is not None and keys:
            import shapely

            shapes = shapely.from_wkb([table[k][1] for k in keys])
            hit = shapely.intersects(shapes, shapely.box(*bbox))
            keys = [k for k, h in zip(keys, hit, strict=True) if h]
        return FeatureBatch(keys, [table[k][0] for k in keys], [table[k][1] for k in keys])

    def layers(self) -> dict[str, int]:
        return {name: len(table) for name, table in sorted(self._features.items())}

    def write_quarantine(self, records: Sequence[QuarantineRecord]) -> None:
        stored = self._quarantined_lines  # as the SQL stores: against earlier writes only
        kept = [r for r in records if r.line is None or _place(r) not in stored]
        self._quarantine.extend(kept)
        stored.update(_place(r) for r in kept if r.line is not None)

    def quarantined(
        self, *, feed: str | None = None, limit: int | None = None
    ) -> list[QuarantineRecord]:
        rows = [r for r in self._quarantine if feed is None or r.feed == feed]
        return rows[:limit] if limit is not None else rows

    def stats(self) -> list[FeedStats]:
        frame = self._all()
        info = self._describe_datastreams(None)
        acc: dict[tuple[str, str], list[Any]] = {}
        for d, t, q in zip(
            frame.datastream_id.tolist(),
            frame.phenomenon_time.tolist(),
            frame.quality.tolist(),
            strict=True,
        ):
            prop, feed, _ = info.get(d, ("", "", None))
            row = acc.setdefault((feed, prop), [set(), 0, 0, t, t])
            row[0].add(d)
            row[1] += 1
            row[2] += bool(q)
            row[3], row[4] = min(row[3], t), max(row[4], t)
        return [
            FeedStats(feed, prop, len(r[0]), r[1], r[2], from_micros(r[3]), from_micros(r[4]))
            for (feed, prop), r in sorted(acc.items())
        ]

    def close(self) -> None:
        """Nothing to release."""


def _place(record: QuarantineRecord) -> tuple[str, str, int | None, str, str]:
    """What identifies a quarantined line of a file (see :meth:`Store.write_quarantine`)."""
    return record.feed, record.source, record.line, record.raw, record.reason
