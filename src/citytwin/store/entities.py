"""Where each STA entity kind lives in a SQL store: one table per kind, shared by the backends.

Every table holds ``id`` (the identity hash), ``key`` (the natural key) and ``doc`` (the entity as
JSON, read back whole by pydantic), plus the columns queries filter or group by. Column kinds are
logical (``bigint``, ``text``, ``json``); each backend maps them to its own SQL types
(:func:`create_table`), so DuckDB and PostgreSQL cannot drift apart on what they store.

>>> create_table(ENTITY_TABLES[Sensor], {"bigint": "BIGINT", "text": "VARCHAR", "json": "JSON"})
'CREATE TABLE IF NOT EXISTS sensors (id BIGINT PRIMARY KEY, key VARCHAR, doc JSON NOT NULL)'
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from citytwin.model.sensing import (
    Datastream,
    Entity,
    FeatureOfInterest,
    HistoricalLocation,
    Location,
    ObservedProperty,
    Sensor,
    Thing,
)

ColumnKind = Literal["bigint", "text", "json"]

#: SQL condition: quarantine row ``b`` is a line of a file already kept as ``q`` (both backends;
#: see :meth:`citytwin.store.base.Store.write_quarantine`).
QUARANTINE_PLACE = (
    "q.line = b.line AND q.source = b.source AND q.feed = b.feed AND q.raw = b.raw "
    "AND q.reason = b.reason"
)


@dataclass(frozen=True)
class EntityTable:
    """One entity kind's table: its name and its extra columns (name -> kind, getter)."""

    name: str
    columns: dict[str, tuple[ColumnKind, Callable[[Any], Any]]]

    def rows(self, items: Sequence[Entity]) -> dict[str, list[Any]]:
        """The columns of ``items`` (the last entity of each id wins), ready to load.

        Raises ValueError when an entity has no id (neither given nor derived from its key).
        """
        if any(e.id is None for e in items):
            raise ValueError(f"{self.name}: every entity needs an id or a key")
        unique = list({e.id: e for e in items}.values())
        data: dict[str, list[Any]] = {
            "id": [e.id for e in unique],
            "key": [e.key for e in unique],
            "doc": [e.model_dump_json() for e in unique],
        }
        for column, (_, getter) in self.columns.items():
            data[column] = [getter(e) for e in unique]
        return data


def create_table(
    table: EntityTable, types: Mapping[ColumnKind, str], *, doc_type: str | None = None
) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for ``table`` with the backend's ``types`` (``doc_type``
    for the document when it differs from the JSON columns, e.g. PostgreSQL's text-kept
    ``json`` beside indexed ``jsonb``)."""
    extra = "".join(f", {name} {types[kind]}" for name, (kind, _) in table.columns.items())
    return (
        f"CREATE TABLE IF NOT EXISTS {table.name} (id {types['bigint']} PRIMARY KEY, "
        f"key {types['text']}, doc {doc_type or types['json']} NOT NULL{extra})"
    )


def _prop(name: str) -> Callable[[Any], Any]:
    return lambda e: e.properties.get(name)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


ENTITY_TABLES: dict[type[Entity], EntityTable] = {
    Thing: EntityTable(
        "things",
        {"feed": ("text", _prop("feed")), "properties": ("json", lambda e: _json(e.properties))},
    ),
    Location: EntityTable(
        "locations",
        {
            "thing_id": ("bigint", lambda e: e.thing_id),
            "geojson": ("json", lambda e: e.location.model_dump_json()),
        },
    ),
    HistoricalLocation: EntityTable(
        "historical_locations",
        {
            "thing_id": ("bigint", lambda e: e.thing_id),
            "location_id": ("bigint", lambda e: e.location_id),
        },
    ),
    Sensor: EntityTable("sensors", {}),
    ObservedProperty: EntityTable("observed_properties", {}),
    Datastream: EntityTable(
        "datastreams",
        {
            "thing_id": ("bigint", lambda e: e.thing_id),
            "sensor_id": ("bigint", lambda e: e.sensor_id),
            "observed_property_id": ("bigint", lambda e: e.observed_property_id),
            "feed": ("text", _prop("feed")),
            "observed_property": ("text", _prop("observedProperty")),
        },
    ),
    FeatureOfInterest: EntityTable("features_of_interest", {}),
}
