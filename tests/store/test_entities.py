"""Entity tables: the bulk rows the ingest builds equal what the models would give."""

from __future__ import annotations

import pytest

from citytwin.model import Datastream, Location, Thing, get_property
from citytwin.model.geojson import Point
from citytwin.store.entities import ENTITY_TABLES, EntityRows, table_rows

NAMES = ["plain", 'a "quoted" name', "back\\slash", "100% 잠실", "tab\there", "line\nbreak"]


def _streams() -> list[Datastream]:
    prop = get_property("air_temperature")
    return [
        Datastream(
            key=f"sdot:{n}/air_temperature",
            name=f"{name} {prop.name}",
            description=f"{prop.name} measured by {name}",
            unit_of_measurement=prop.unit.to_sta(),
            properties={"feed": "sdot", "observedProperty": "air_temperature", "period": "PT2M"},
            thing_id=1000 + n,
            sensor_id=7,
            observed_property_id=prop.to_sta().id or 0,
        )
        for n, name in enumerate(NAMES)
    ]


def test_rows_from_a_template_are_the_models_rows() -> None:
    """Same documents (byte for byte: pydantic's JSON) and the same columns as
    EntityTable.rows of the models, for names that need JSON escapes and hold '%'."""
    models = _streams()
    varying = ("id", "key", "name", "description", "thing_id")
    rows = EntityRows.from_template(
        models[0], **{field: [getattr(m, field) for m in models] for field in varying}
    )
    assert rows.columns == ENTITY_TABLES[Datastream].rows(models)
    assert rows.entities() == models
    assert len(rows) == len(NAMES)


def test_table_rows_merge_models_and_rows_last_wins() -> None:
    models = _streams()
    rows = EntityRows.from_template(
        models[0], id=[m.id or 0 for m in models[:2]], key=[m.key or "" for m in models[:2]]
    )
    renamed = models[1].model_copy(update={"name": "renamed"})
    thing = Thing(key="sdot:0", name="plain")
    [(first, _), (table, columns)] = table_rows([thing, rows, renamed])
    assert (first, table) == (ENTITY_TABLES[Thing], ENTITY_TABLES[Datastream])  # as they came
    assert list(columns["id"]) == [models[0].id, models[1].id]
    assert '"name":"renamed"' in columns["doc"][1]


def test_a_field_that_is_not_copied_into_a_column_is_refused() -> None:
    thing = Thing(key="t", name="t")
    location = Location(key="l", name="l", location=Point(coordinates=[127.0, 37.5]))
    with pytest.raises(ValueError, match="needs the id and key"):
        EntityRows.from_template(thing, name=["a"])
    with pytest.raises(ValueError, match="location"):
        EntityRows.from_template(location, id=[1], key=["l"], location=["x"])
