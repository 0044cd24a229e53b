"""Hourly distribution maps over a period, from the observation lake, on Dask workers.

One task per hour. A task reads that hour of the property's datastreams from the lake, puts it in
an in-memory store beside the catalogue (Things, Locations, Datastreams) and the district
outlines, and calls :func:`citytwin.services.analyses.distribution_map` — the very function the
embedded path (``citytwin analyze map --at …``) calls on the store. Same inputs in the same order,
same code: the grids are the embedded path's grids for that hour.

The catalogue and outlines are read from the store once, on the client, and sent to the workers
once (``Client.scatter``); only observations come from the lake.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from distributed import as_completed

from citytwin.errors import ValidationError
from citytwin.model.sensing import Datastream, Entity, Location, ObservedProperty, Thing
from citytwin.services.analyses import DistributionMap, Method, distribution_map, save_map
from citytwin.space.crs import DEFAULT_CITY_CRS
from citytwin.store.base import FeatureBatch, Store
from citytwin.store.lake import Partition, partitions, read_dimensions, read_partitions
from citytwin.store.lake_dask import Scheduler, dask_client
from citytwin.store.memory import MemoryStore
from citytwin.twin.fields import DISTRICTS
from citytwin.twin.state import Twin

logger = logging.getLogger(__name__)
HOUR = timedelta(hours=1)
Progress = Callable[[int, int], None]  # (hours done, hours in all)


@dataclass(frozen=True)
class MapOptions:
    """How each hour is mapped: :func:`~citytwin.services.analyses.distribution_map`'s options."""

    method: Method = "kriging"
    cell: float = 100.0
    model: str = "auto"
    neighbours: int | None = None
    crs: str = DEFAULT_CITY_CRS


@dataclass(frozen=True)
class KrigingBatch:
    """The maps of a period: ``maps`` by hour start (UTC) when kept in memory, ``written`` when
    saved to files, and the hours without a map with the reason (no usable readings …)."""

    observed_property: str
    hours: list[datetime]
    maps: dict[datetime, DistributionMap] = field(default_factory=dict)
    written: dict[datetime, Path] = field(default_factory=dict)
    skipped: dict[datetime, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Context:
    """What every hour shares: the catalogue of one property and the district outlines."""

    root: str
    observed_property: str
    entities: list[Entity]
    datastream_ids: list[int]
    partitions: list[str | None]
    districts: FeatureBatch | None
    options: MapOptions
    out: str | None


def kriging_batch(
    root: str | Path,
    store: Store,
    *,
    observed_property: str,
    start: datetime,
    end: datetime,
    options: MapOptions | None = None,
    out: str | Path | None = None,
    scheduler: Scheduler = None,
    progress: Progress | None = None,
) -> KrigingBatch:
    """One distribution map per UTC hour meeting ``[start, end)``, each the
    mean of that hour's readings interpolated over the city, computed on Dask workers.

    ``store`` supplies the catalogue and the district outlines (small); the observations come
    from the lake at ``root``. With ``out`` each map is saved there as a GeoTIFF
    (``<property>-YYYYmmddTHH.tif``) and not kept in memory: a month is 720 grids.
    """
    hours = _hours(start, end)
    context = _context(root, store, observed_property, options or MapOptions(), out)
    batch = KrigingBatch(observed_property, hours)
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
    with dask_client(scheduler) as client:
        shared = client.scatter(context, broadcast=True)  # type: ignore[no-untyped-call]
        futures = client.map(_map_hour, hours, context=shared, pure=False)
        for done, future in enumerate(as_completed(futures), start=1):  # type: ignore[no-untyped-call]
            _record(batch, *future.result())
            if progress is not None:
                progress(done, len(hours))
    return batch


def _record(
    batch: KrigingBatch, hour: datetime, result: DistributionMap | Path | None, reason: str
) -> None:
    if isinstance(result, DistributionMap):
        batch.maps[hour] = result
    elif isinstance(result, Path):
        batch.written[hour] = result
    else:
        batch.skipped[hour] = reason
        logger.info("no %s map for %s: %s", batch.observed_property, hour, reason)


def _map_hour(
    hour: datetime, *, context: _Context
) -> tuple[datetime, DistributionMap | Path | None, str]:
    """One hour's map on a worker (``None`` and the reason when the hour cannot be mapped)."""
    store = _hour_store(hour, context)
    options = context.options
    try:
        result = distribution_map(
            store,
            context.observed_property,
            at=hour + HOUR,
            window=HOUR,
            method=options.method,
            cell=options.cell,
            model=options.model,
            neighbours=options.neighbours,
            crs=options.crs,
        )
    except ValidationError as exc:
        return hour, None, str(exc)
    if context.out is None:
        return hour, result, ""
    name = f"{context.observed_property}-{hour:%Y%m%dT%H}.tif"
    return hour, save_map(result, Path(context.out) / name, format="tif"), ""


def _hour_store(hour: datetime, context: _Context) -> MemoryStore:
    """An in-memory store holding the catalogue, the outlines and the hour's observations."""
    store = MemoryStore()
    store.register(context.entities)
    if context.districts is not None:
        store.write_features(DISTRICTS, context.districts)
    chosen = _partitions_of(context, hour)
    frame = read_partitions(
        chosen, start=hour, end=hour + HOUR, datastream_ids=context.datastream_ids
    )
    store.write_observations(frame)
    return store


def _partitions_of(context: _Context, hour: datetime) -> list[Partition]:
    return partitions(
        context.root, start=hour, end=hour + HOUR, observed_properties=context.partitions
    )


def _context(
    root: str | Path, store: Store, observed_property: str, options: MapOptions, out: object
) -> _Context:
    """The property's catalogue (entities in the store's order), where its rows sit in the
    lake, and the outlines — read once on the client."""
    catalogue = Twin(store).catalogue()
    ids = catalogue.loc[catalogue["observed_property"] == observed_property, "datastream_id"]
    wanted = {int(i) for i in ids}
    if not wanted:
        present = sorted(set(catalogue["observed_property"].dropna()))
        raise ValidationError(
            f"observed property {observed_property!r}: no datastream in the store; "
            f"present: {', '.join(present) or 'none'}"
        )
    streams = [d for d in store.entities(Datastream) if d.id in wanted]
    things = {d.thing_id for d in streams}
    entities: list[Entity] = [
        *store.entities(ObservedProperty),
        *(t for t in store.entities(Thing) if t.id in things),
        *(loc for loc in store.entities(Location) if loc.thing_id in things),
        *streams,
    ]
    has_districts = bool(store.layers().get(DISTRICTS))
    districts = store.features(DISTRICTS) if has_districts else None
    return _Context(
        str(root),
        observed_property,
        entities,
        sorted(wanted),
        _lake_properties(root, wanted),
        districts,
        options,
        None if out is None else str(out),
    )


def _lake_properties(root: str | Path, ids: set[int]) -> list[str | None]:
    """The property partitions the datastreams' rows were exported to."""
    dimensions = read_dimensions(root).to_pydict()
    pairs = zip(dimensions["datastream_id"], dimensions["observed_property"], strict=True)
    return sorted({p for d, p in pairs if d in ids}, key=lambda p: (p is None, p or ""))


def _hours(start: datetime, end: datetime) -> list[datetime]:
    for name, moment in (("start", start), ("end", end)):
        if moment.tzinfo is None:
            raise ValidationError(f"{name} {moment.isoformat()}: expected a timezone-aware time")
    first = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    last = end.astimezone(UTC)
    if last <= first:
        raise ValidationError(f"period {start.isoformat()} … {end.isoformat()}: end before start")
    return [first + i * HOUR for i in range(-(-(last - first) // HOUR))]


def hours_between(start: datetime, end: datetime) -> Sequence[datetime]:
    """The hour starts (UTC) a batch over ``[start, end)`` maps.

    >>> [h.hour for h in hours_between(datetime(2020, 3, 15, 0, 30, tzinfo=UTC),
    ...                               datetime(2020, 3, 15, 3, tzinfo=UTC))]
    [0, 1, 2]
    """
    return _hours(start, end)
