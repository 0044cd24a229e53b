"""The SensorThings API v1.1 entity sets, their properties and navigation links (OGC 18-088 §8.2).

One table the read side, ``$select``, ``$expand`` and ``$filter`` paths all consult, so that a
name valid in one place is valid in all of them.

>>> [nav.name for nav in NAVIGATION["Observations"]]
['Datastream']
>>> sorted(PROPERTIES["Things"])
['description', 'name', 'properties']
"""

from __future__ import annotations

from dataclasses import dataclass

from citytwin.model.sensing import (
    Datastream,
    Entity,
    FeatureOfInterest,
    HistoricalLocation,
    Location,
    Observation,
    ObservedProperty,
    Sensor,
    Thing,
)

__all__ = ["ENTITY_SETS", "NAVIGATION", "PROPERTIES", "Nav", "find_nav"]

ENTITY_SETS: dict[str, type[Entity] | None] = {
    "Things": Thing,
    "Locations": Location,
    "HistoricalLocations": HistoricalLocation,
    "Sensors": Sensor,
    "ObservedProperties": ObservedProperty,
    "Datastreams": Datastream,
    "FeaturesOfInterest": FeatureOfInterest,
    "Observations": None,  # rows of the store's observation frame, not registered entities
}


@dataclass(frozen=True)
class Nav:
    """A navigation property: ``source_set(id)/name``.

    ``key`` is the link field; ``on_source`` says whether it sits on the source entity (the
    source points at the target) or on the targets (they point back at the source).
    """

    name: str
    target: str
    key: str
    on_source: bool
    many: bool


NAVIGATION: dict[str, tuple[Nav, ...]] = {
    "Things": (
        Nav("Locations", "Locations", "thing_id", on_source=False, many=True),
        Nav("HistoricalLocations", "HistoricalLocations", "thing_id", on_source=False, many=True),
        Nav("Datastreams", "Datastreams", "thing_id", on_source=False, many=True),
    ),
    "Locations": (
        Nav("Things", "Things", "thing_id", on_source=True, many=True),
        Nav(
            "HistoricalLocations", "HistoricalLocations", "location_id", on_source=False, many=True
        ),
    ),
    "HistoricalLocations": (
        Nav("Thing", "Things", "thing_id", on_source=True, many=False),
        Nav("Locations", "Locations", "location_id", on_source=True, many=True),
    ),
    "Sensors": (Nav("Datastreams", "Datastreams", "sensor_id", on_source=False, many=True),),
    "ObservedProperties": (
        Nav("Datastreams", "Datastreams", "observed_property_id", on_source=False, many=True),
    ),
    "Datastreams": (
        Nav("Thing", "Things", "thing_id", on_source=True, many=False),
        Nav("Sensor", "Sensors", "sensor_id", on_source=True, many=False),
        Nav("ObservedProperty", "ObservedProperties", "observed_property_id", True, False),
        Nav("Observations", "Observations", "datastream_id", on_source=False, many=True),
    ),
    "FeaturesOfInterest": (),
    "Observations": (
        Nav("Datastream", "Datastreams", "datastream_id", on_source=True, many=False),
    ),
}


def _property_names(kind: type[Entity]) -> frozenset[str]:
    hidden = kind.link_fields() | {"id", "key"}
    return frozenset(
        field.alias or name for name, field in kind.model_fields.items() if name not in hidden
    )


PROPERTIES: dict[str, frozenset[str]] = {
    name: _property_names(kind or Observation) for name, kind in ENTITY_SETS.items()
}
"""The STA properties of each entity set (what ``$select`` may name besides ids and links)."""


def find_nav(entity_set: str, name: str) -> Nav | None:
    """The navigation property ``name`` of ``entity_set``, if it has one."""
    return next((nav for nav in NAVIGATION[entity_set] if nav.name == name), None)
