"""SensorThings JSON of entities and observations, and the ids observations get.

Observation ids
---------------
The store identifies an observation by (datastream id, phenomenon time start) and keeps no id of
its own, so the API derives one that fits JavaScript's 53-bit exact integers and can be resolved
without a lookup table::

    @iot.id = hour << 32 | mix64(datastream_id, phenomenon_time_us) >> 32

``hour`` is the whole hours since 1970-01-01 UTC of the phenomenon time (21 bits, until 2209) and
the low 32 bits are a SplitMix64 hash of the identity. ``Observations(id)`` decodes the hour, reads
that hour of observations and keeps the row whose hash matches: resolution touches one hour of
data, never the whole store. Two observations of the same hour share an id only if their 32-bit
hashes collide (probability ≈ n² / 2³³ for n observations in the hour); the id is deterministic,
so every store and every restart gives the same ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from citytwin.api.sta_schema import NAVIGATION
from citytwin.model.sensing import Entity, Observation
from citytwin.store.base import ObservationFrame, Store, from_micros

__all__ = [
    "HOUR_US",
    "find_observation",
    "observation_ids",
    "observation_rows",
    "render",
    "render_entity",
    "render_observations",
]

HOUR_US = 3_600_000_000
_HOUR_BITS = 21


def _mix64(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """SplitMix64 finaliser (Steele, Lea & Flood 2014); uint64 arithmetic wraps by design."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def observation_ids(frame: ObservationFrame) -> NDArray[np.int64]:
    """The 53-bit ``@iot.id`` of every row (scheme in the module docstring).

    >>> f = ObservationFrame.from_arrays([7, 7], [0, 3_600_000_000], [1.0, 2.0])
    >>> [int(i) >> 32 for i in observation_ids(f)]
    [0, 1]
    """
    ds = frame.datastream_id.view(np.uint64)
    t = frame.phenomenon_time.view(np.uint64)
    low = _mix64(ds ^ _mix64(t)) >> np.uint64(32)
    hour = (frame.phenomenon_time // HOUR_US) & ((1 << _HOUR_BITS) - 1)
    return (hour << 32) | low.astype(np.int64)


def find_observation(store: Store, observation_id: int) -> ObservationFrame:
    """The observation (zero or one row) an id names; reads one hour of the store."""
    if not 0 <= observation_id < 2**53:
        return ObservationFrame.empty()
    start = from_micros((observation_id >> 32) * HOUR_US)
    frame = store.observations(start=start, end=start + timedelta(hours=1))
    return frame.take(np.flatnonzero(observation_ids(frame) == observation_id)[:1])


def observation_rows(frame: ObservationFrame) -> tuple[list[Entity], list[int]]:
    """Rows as :class:`Observation` entities (they carry ``datastream_id``) and their ids."""
    observations: list[Entity] = list(frame.to_observations())
    return observations, observation_ids(frame).tolist()


def _links(base: str, entity_set: str, entity_id: int) -> dict[str, Any]:
    self_link = f"{base}/{entity_set}({entity_id})"
    links: dict[str, Any] = {"@iot.id": entity_id, "@iot.selfLink": self_link}
    for nav in NAVIGATION[entity_set]:
        links[f"{nav.name}@iot.navigationLink"] = f"{self_link}/{nav.name}"
    return links


def render(entity_set: str, entity: Entity, entity_id: int, base: str) -> dict[str, Any]:
    """The STA JSON of one entity: id, selfLink, navigation links, then its properties."""
    body = entity.to_sta()
    body.pop("@iot.id", None)
    rendered = {**_links(base, entity_set, entity_id), **body}
    if isinstance(entity, Observation):
        rendered.setdefault("resultTime", None)  # mandatory in STA, even when unknown
    return rendered


def render_entity(entity: Entity, base: str) -> dict[str, Any]:
    return render(entity.entity_set, entity, entity.id or 0, base)


def render_observations(frame: ObservationFrame, base: str) -> list[dict[str, Any]]:
    rows, ids = observation_rows(frame)
    return [render("Observations", row, i, base) for row, i in zip(rows, ids, strict=True)]


def render_rows(
    entity_set: str, entities: Sequence[Entity], ids: Sequence[int], base: str
) -> list[dict[str, Any]]:
    return [render(entity_set, e, i, base) for e, i in zip(entities, ids, strict=True)]
