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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring  # json.dumps of one str, without its setup
from typing import Any, Literal, cast

import numpy as np

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

    def rows(self, items: Sequence[Entity]) -> dict[str, Sequence[Any]]:
        """The columns of ``items`` (the last entity of each id wins), ready to load.

        Raises ValueError when an entity has no id (neither given nor derived from its key).
        """
        if any(e.id is None for e in items):
            raise ValueError(f"{self.name}: every entity needs an id or a key")
        unique = list({e.id: e for e in items}.values())
        data: dict[str, Sequence[Any]] = {
            "id": [e.id for e in unique],
            "key": [e.key for e in unique],
            "doc": [e.model_dump_json() for e in unique],
        }
        for column, (_, getter) in self.columns.items():
            data[column] = [getter(e) for e in unique]
        return data


@dataclass(frozen=True)
class EntityRows:
    """Many entities of one kind, already as their table's columns (see :class:`EntityTable`).

    What a bulk registration hands a store instead of one pydantic model per entity: the ~19,000
    Datastreams of a first S-DoT file differ only in their thing, and building, validating and
    dumping a model for each held the GIL for a third of a second while the ingest's checks
    waited for it (:meth:`from_template` builds them in ~2 µs each). A store writes the columns
    as they are; the memory store, which keeps models, builds them (:meth:`entities`).
    """

    kind: type[Entity]
    columns: dict[str, Sequence[Any]]

    def __len__(self) -> int:
        return len(self.columns["id"])

    def entities(self) -> list[Entity]:
        """The entities as models (parsed back from their documents)."""
        return [self.kind.model_validate_json(doc) for doc in self.columns["doc"]]

    @classmethod
    def from_template(cls, template: Entity, **varying: Sequence[int | str]) -> EntityRows:
        """Entities equal to ``template`` except in the ``varying`` fields (one sequence of
        ``int`` or ``str`` values per field, all as long; ``id`` and ``key`` among them, as
        no model derives the id from the key here: give ``stable_id`` of each key).

        The documents are the template's own JSON (pydantic's) with each row's values in place
        of the varying fields. A table column that derives from a varying field in any other
        way than copying it cannot be built so: ValueError.
        """
        if "id" not in varying or "key" not in varying:
            raise ValueError("EntityRows.from_template needs the id and key of every row")
        kind, table = type(template), ENTITY_TABLES[type(template)]
        marks = {name: f"\x00{name}\x00" for name in varying}
        marked = template.model_copy(update=marks)  # no validation: marks stand in any field
        parts = [marked.model_dump_json(warnings=False)]  # split at each mark, in order
        for name, mark in marks.items():
            head, found, tail = parts[-1].partition(json.dumps(mark))
            if not found or json.dumps(mark) in tail:
                raise ValueError(f"{kind.__name__}.{name} is not one plain field of the document")
            parts[-1:] = [head, tail]
        columns: dict[str, Sequence[Any]] = {"id": varying["id"], "key": varying["key"]}
        layout = "%s".join(part.replace("%", "%%") for part in parts)
        rendered = [_rendered(values) for values in varying.values()]
        columns["doc"] = [layout % values for values in zip(*rendered, strict=True)]
        count = len(columns["doc"])
        for column, (_, getter) in table.columns.items():
            try:
                value = getter(marked)
            except (AttributeError, TypeError) as exc:  # reads into a varying field
                raise ValueError(f"{table.name}.{column} derives from a varying field") from exc
            source = next((n for n, m in marks.items() if value == m), None)
            if source is not None:
                columns[column] = varying[source]
            elif any(m in json.dumps(value, default=str) for m in marks.values()):
                raise ValueError(f"{table.name}.{column} derives from a varying field")
            else:
                columns[column] = [getter(template)] * count
        return cls(kind, columns)


def _rendered(values: Sequence[int | str]) -> list[str]:
    """One field's values (all str or all int) as JSON, as pydantic writes them (strings: only
    what JSON must escape)."""
    if values and isinstance(values[0], str):
        return list(map(encode_basestring, cast(Sequence[str], values)))
    return list(map(str, map(int, values)))


def table_rows(
    entities: Iterable[Entity | EntityRows],
) -> list[tuple[EntityTable, dict[str, Sequence[Any]]]]:
    """The columns to write per table, kinds in the order they first appear (a store without
    one transaction for all writes them so: things before the datastreams that name them): the
    models and :class:`EntityRows` of each kind together, the last entity of each id winning."""
    models: dict[type[Entity], list[Entity]] = {}
    bulk: dict[type[Entity], list[dict[str, Sequence[Any]]]] = {}
    for item in entities:
        if isinstance(item, EntityRows):
            models.setdefault(item.kind, [])
            bulk.setdefault(item.kind, []).append(item.columns)
        else:
            models.setdefault(type(item), []).append(item)
    out = []
    for kind, items in models.items():
        parts = [*bulk.get(kind, []), *([ENTITY_TABLES[kind].rows(items)] if items else [])]
        out.append((ENTITY_TABLES[kind], _last_of_each_id(parts)))
    return out


def _last_of_each_id(parts: list[dict[str, Sequence[Any]]]) -> dict[str, Sequence[Any]]:
    """Columns of several parts as one, keeping the last row of each id."""
    columns: dict[str, Sequence[Any]] = parts[0]
    if len(parts) > 1:
        columns = {name: [v for part in parts for v in part[name]] for name in parts[0]}
    ids = np.asarray(columns["id"], np.int64)
    if len(np.unique(ids)) == len(ids):
        return columns
    last = sorted({int(i): n for n, i in enumerate(ids.tolist())}.values())
    return {name: [values[n] for n in last] for name, values in columns.items()}


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
