"""SensorThings entities: standard field names, GeoJSON validation, stable identifiers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from citytwin.model import (
    Datastream,
    Location,
    Observation,
    Point,
    Thing,
    TimeInterval,
    get_property,
    stable_id,
)


def test_thing_dumps_sta_names() -> None:
    thing = Thing(key="sdot:V02Q1940612", name="S-DoT V02Q1940612", properties={"feed": "sdot"})
    payload = thing.to_sta()
    assert payload == {
        "@iot.id": stable_id("Thing", "sdot:V02Q1940612"),
        "name": "S-DoT V02Q1940612",
        "description": "",
        "properties": {"feed": "sdot"},
    }


def test_datastream_unit_and_links_are_separate() -> None:
    spec = get_property("pm25")
    stream = Datastream(
        key="k",
        name="n",
        unit_of_measurement=spec.unit.to_sta(),
        thing_id=1,
        sensor_id=2,
        observed_property_id=3,
    )
    payload = stream.to_sta()
    assert payload["unitOfMeasurement"] == {
        "name": "microgram per cubic metre",
        "symbol": "µg/m³",
        "definition": "http://www.opengis.net/def/uom/UCUM/0/ug%2Fm3",
    }
    assert payload["observationType"].endswith("OM_Measurement")
    assert "thing_id" not in payload


def test_location_is_geojson_and_rejects_swapped_coordinates() -> None:
    # Seoul City Hall: 126.9780 E, 37.5665 N
    location = Location(name="City Hall", location=Point(coordinates=[126.978, 37.5665]))
    assert location.to_sta()["location"] == {"type": "Point", "coordinates": [126.978, 37.5665]}
    assert location.to_sta()["encodingType"] == "application/geo+json"
    with pytest.raises(ValidationError, match=r"latitude 126\.978 is outside"):
        Point(coordinates=[37.5665, 126.978])


def test_observation_times_are_aware_utc() -> None:
    kst = timezone(timedelta(hours=9))
    observation = Observation(
        phenomenon_time=datetime(2020, 3, 15, 9, tzinfo=kst), result=23.4, datastream_id=1
    )
    assert observation.phenomenon_start == datetime(2020, 3, 15, 0, tzinfo=UTC)
    with pytest.raises(ValidationError, match="timezone-aware"):
        Observation(phenomenon_time=datetime(2020, 3, 15), result=1.0, datastream_id=1)
    with pytest.raises(ValidationError, match="ends"):
        TimeInterval(start=datetime(2020, 1, 2, tzinfo=UTC), end=datetime(2020, 1, 1, tzinfo=UTC))


def test_stable_ids_depend_on_kind_and_key() -> None:
    assert stable_id("Thing", "a") == stable_id("Thing", "a")
    assert stable_id("Thing", "a") != stable_id("Sensor", "a")
    assert Thing(key="a", name="x").id == stable_id("Thing", "a")
