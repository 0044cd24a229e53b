"""Interoperability: the FROST Python client (frost-sta-client) creates, reads back, updates
and deletes over real HTTP."""

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


def test_frost_client_creates_and_reads_back(base_url: str) -> None:
    service = _service(base_url)
    thing = frost.Thing(name="frost thing", description="made by frost-sta-client")
    service.create(thing)
    assert thing.id is not None
    datastream = frost.Datastream(
        name="frost temperature",
        description="d",
        observation_type="http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
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
    things = service.things().query().filter("name eq 'frost thing'").list()
    assert [(t.id, t.name) for t in things] == [(thing.id, "frost thing")]
    assert [d.name for d in thing.get_datastreams().query().list()] == ["frost temperature"]
    values = {f"2026-03-15T{h:02d}:00:00Z": 10.0 + h for h in range(6)}
    for when, value in values.items():
        service.create(frost.Observation(phenomenon_time=when, result=value, datastream=datastream))
    found = (
        datastream.get_observations()
        .query()
        .filter("result ge 12")
        .orderby("phenomenonTime", "desc")
        .list()
    )
    got = [(o.result, o.phenomenon_time) for o in found]
    assert [r for r, _ in got] == [15.0, 14.0, 13.0, 12.0]
    assert [t for _, t in got] == [f"2026-03-15T{h:02d}:00:00Z" for h in (5, 4, 3, 2)]
    _read_back_with_expand_and_paging(service, thing, datastream, values)


def _read_back_with_expand_and_paging(
    service: Any, thing: Any, datastream: Any, values: dict[str, float]
) -> None:
    """$expand, $select, $orderby and nextLink paging, each through the client's own API."""
    written = list(values.items())
    expanded = (
        service.things()
        .query()
        .expand(
            "Datastreams($select=id,name;$expand=Observations($orderby=phenomenonTime asc;$top=4))"
        )
        .filter("name eq 'frost thing'")
        .list()
    )
    assert [(t.id, t.name) for t in expanded] == [(thing.id, "frost thing")]
    (stream,) = expanded.get(0).datastreams.entities
    assert (stream.id, stream.name) == (datastream.id, "frost temperature")
    first_page = stream.observations
    assert [o.result for o in first_page.entities] == [10.0, 11.0, 12.0, 13.0]
    assert first_page.next_link is not None  # the client follows it when iterating
    assert [(o.phenomenon_time, o.result) for o in first_page] == written
    by_path = (
        service.things().query().expand("Datastreams/Observations").filter(f"id eq {thing.id}")
    ).list()
    nested = by_path.get(0).datastreams.get(0).observations
    assert sorted(o.result for o in nested.entities) == sorted(values.values())
    paged = (
        service.observations()
        .query()
        .filter(f"Datastream/@iot.id eq {datastream.id} and phenomenonTime ge 2026-03-15T01:00:00Z")
        .orderby("phenomenonTime", "desc")
        .top(2)
        .count()
        .list()
    )
    assert paged.count == 5
    assert len(paged.entities) == 2
    newest_first = written[:0:-1]  # all but the 00:00 one
    assert [(o.phenomenon_time, o.result) for o in paged] == newest_first
    selected = (
        service.datastreams().query().select("name").filter("Thing/name eq 'frost thing'")
    ).list()
    assert [d.name for d in selected] == ["frost temperature"]


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
