"""The standard model: SensorThings v1.1 entities, the observed-property vocabulary, QC flags.

Pure: imports nothing else of citytwin but the leaf module errors.
"""

from citytwin.model.geojson import Geometry, Point, Polygon
from citytwin.model.quality import Flag, flag_names
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
    TimeInterval,
    UnitOfMeasurement,
    stable_id,
)
from citytwin.model.vocabulary import PROPERTIES, PropertySpec, Unit, get_property, property_keys

__all__ = [
    "PROPERTIES",
    "Datastream",
    "Entity",
    "FeatureOfInterest",
    "Flag",
    "Geometry",
    "HistoricalLocation",
    "Location",
    "Observation",
    "ObservedProperty",
    "Point",
    "Polygon",
    "PropertySpec",
    "Sensor",
    "Thing",
    "TimeInterval",
    "Unit",
    "UnitOfMeasurement",
    "flag_names",
    "get_property",
    "property_keys",
    "stable_id",
]
