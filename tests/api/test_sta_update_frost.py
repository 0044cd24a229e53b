"""Interoperability: frost-sta-client updates (PUT) and deletes entities over real HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

from citytwin.api import create_app
from citytwin.config import Settings
from citytwin.store import open_store

frost = pytest.importorskip("frost_sta_client")
TOKEN = "frost-token"
MEASUREMENT = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"
# the client calls a deprecated furl API; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:furl.pathstr is deprecated:DeprecationWarning")


@pytest.fixture(params=["memory://", "duckdb://"])
def base_url(
    request: pytest.FixtureRequest, serve: Callable[[Any], AbstractContextManager[str]]
) -> Iterator[str]:
    with open_store(request.param) as store:
        app = create_app(Settings(store_url="memory://", api_tokens=(TOKEN,)), store=store)
        with serve(app) as root:
            yield f"{root}/v1.1"


def _bearer(request: Any) -> Any:
    request.headers["Authorization"] = f"Bearer {TOKEN}"
    return request


def _service(base_url: str) -> Any:
    handler = frost.service.auth_handler.AuthHandler()
    handler.add_auth_header = lambda: _bearer
    return frost.SensorThingsService(base_url, auth_handler=handler)


def _station(service: Any, name: str) -> tuple[Any, Any]:
    thing = frost.Thing(name=name, description="made by frost-sta-client")
    service.create(thing)
    datastream = frost.Datastream(
        name=f"{name} temperature",
        description="d",
        observation_type=MEASUREMENT,
        unit_of_measurement=frost.UnitOfMeasurement(
            name="degree Celsius", symbol="°C", definition="http://unitsofmeasure.org"
        ),
        thing=thing,
        sensor=frost.Sensor(
            name="s", description="d", encoding_type="application/pdf", metadata="m"
        ),
        observed_property=frost.ObservedProperty(name="t", definition="http://x", description="d"),
    )
    service.create(datastream)
    for hour in range(4):
        when = f"2026-03-15T{hour:02d}:00:00Z"
        service.create(frost.Observation(phenomenon_time=when, result=hour, datastream=datastream))
    return thing, datastream


def test_frost_client_updates_and_deletes(base_url: str) -> None:
    service = _service(base_url)
    thing, datastream = _station(service, "kept")
    doomed, _ = _station(service, "doomed")

    thing.name = "renamed"
    thing.properties = {"district": "Jung-gu"}
    service.update(thing)  # the client's update is a PUT of the whole entity
    found = service.things().find(thing.id)
    assert (found.name, found.properties) == ("renamed", {"district": "Jung-gu"})
    assert [d.name for d in found.get_datastreams().query().list()] == ["kept temperature"]

    service.delete(doomed)
    names = [t.name for t in service.things().query().list()]
    assert names == ["renamed"]
    assert [d.id for d in service.datastreams().query().list()] == [datastream.id]
    results = [o.result for o in service.observations().query().list()]
    assert sorted(results) == [0.0, 1.0, 2.0, 3.0]  # the doomed station's four went with it
