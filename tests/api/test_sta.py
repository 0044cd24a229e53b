"""SensorThings API v1.1 read side over the memory fake and DuckDB, fed by a real S-DoT ingest."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from citytwin.api import create_app
from citytwin.api.errors import STATUS_CODES, NotFoundError, status_code_for
from citytwin.api.sta import ENTITY_SETS, MAX_TOP, observation_ids
from citytwin.config import Settings
from citytwin.errors import StoreError, ValidationError
from citytwin.ingest import read_feed
from citytwin.ingest.pipeline import ingest
from citytwin.model.sensing import stable_id
from citytwin.store import open_store
from citytwin.store.base import ObservationFrame

HEADER = "시리얼,미세먼지2.5(초미세먼지),기온,측정시간"
# (serial, pm2.5 µg/m³, raw temperature = (°C + 100) × 10, KST yyyymmddhhmi)
ROWS = [
    ("V02Q1940612", 12, 1234, "202003150000"),
    ("V02Q1940612", 15, 1240, "202003150100"),
    ("V02Q1940612", 9, 1251, "202003150200"),
    ("V02Q1940613", 30, 1100, "202003150000"),
    ("V02Q1940613", 31, 1105, "202003150100"),
]
SERIALS = sorted({row[0] for row in ROWS})


@pytest.fixture(params=["memory://", "duckdb://"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    csv = tmp_path / "sdot.csv"
    csv.write_text("\n".join([HEADER, *(",".join(map(str, r)) for r in ROWS)]) + "\n", "utf-8")
    with open_store(request.param) as store:
        registry = tmp_path / "registry.csv"
        registry.write_text("시리얼,위도,경도\nV02Q1940612,37.5665,126.978\n", "utf-8")
        report = ingest(read_feed("sdot", str(csv), registry=str(registry)), store)
        assert report.feeds["sdot"].stored == 2 * len(ROWS)
        with TestClient(create_app(Settings(store_url="memory://"), store=store)) as test_client:
            yield test_client


def _get(client: TestClient, url: str, status: int = 200) -> dict[str, Any]:
    response = client.get(url)
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def _temperature_datastream(serial: str) -> int:
    return stable_id("Datastream", f"sdot:{serial}/air_temperature")


def test_service_root_lists_the_eight_entity_sets(client: TestClient) -> None:
    body = _get(client, "/v1.1")
    assert [entry["name"] for entry in body["value"]] == list(ENTITY_SETS)
    assert len(body["value"]) == 8
    assert body["value"][0]["url"] == "http://testserver/v1.1/Things"
    conformance = body["serverSettings"]["conformance"]
    assert "http://www.opengis.net/spec/iot_sensing/1.1/req/datamodel" in conformance


def test_things_count_equals_sensors_written(client: TestClient) -> None:
    body = _get(client, "/v1.1/Things?$count=true")
    assert body["@iot.count"] == len(SERIALS)
    assert sorted(t["name"] for t in body["value"]) == [f"S-DoT {s}" for s in SERIALS]
    thing = body["value"][0]
    assert thing["@iot.selfLink"] == f"http://testserver/v1.1/Things({thing['@iot.id']})"
    assert thing["Datastreams@iot.navigationLink"].endswith(
        f"Things({thing['@iot.id']})/Datastreams"
    )
    assert "@iot.nextLink" not in body


def test_datastream_observations_in_time_order_with_utc_times(client: TestClient) -> None:
    ds = _temperature_datastream("V02Q1940612")
    body = _get(client, f"/v1.1/Datastreams({ds})/Observations")
    assert [o["result"] for o in body["value"]] == pytest.approx([23.4, 24.0, 25.1])
    # 2020-03-15 00:00 KST is 2020-03-14 15:00 UTC
    times = ["2020-03-14T15:00:00Z", "2020-03-14T16:00:00Z", "2020-03-14T17:00:00Z"]
    assert [o["phenomenonTime"] for o in body["value"]] == times
    newest = _get(client, f"/v1.1/Datastreams({ds})/Observations?$orderby=phenomenonTime desc")
    assert [o["phenomenonTime"] for o in newest["value"]] == times[::-1]


def test_datastream_navigation_links_resolve(client: TestClient) -> None:
    ds = _temperature_datastream("V02Q1940613")
    datastream = _get(client, f"/v1.1/Datastreams({ds})")
    assert datastream["unitOfMeasurement"]["symbol"] == "°C"
    for name in ("Thing", "Sensor", "ObservedProperty", "Observations"):
        assert datastream[f"{name}@iot.navigationLink"].endswith(f"Datastreams({ds})/{name}")
    thing = _get(client, f"/v1.1/Datastreams({ds})/Thing")
    assert thing["@iot.id"] == stable_id("Thing", "sdot:V02Q1940613")
    assert _get(client, f"/v1.1/Datastreams({ds})/Sensor")["name"] == "S-DoT urban data sensor"
    assert _get(client, f"/v1.1/Datastreams({ds})/ObservedProperty")["name"] == "Air temperature"
    streams = _get(client, f"/v1.1/Things({thing['@iot.id']})/Datastreams")
    assert ds in {d["@iot.id"] for d in streams["value"]}
    assert len(streams["value"]) == 2  # PM2.5 and temperature


def test_observation_by_id_round_trips(client: TestClient) -> None:
    listed = _get(client, "/v1.1/Observations?$count=true")
    assert listed["@iot.count"] == 2 * len(ROWS)
    for observation in listed["value"]:
        single = _get(client, observation["@iot.selfLink"])
        assert single == observation
        assert 0 < single["@iot.id"] < 2**53
    first = listed["value"][0]
    datastream = _get(client, f"/v1.1/Observations({first['@iot.id']})/Datastream")
    assert first["@iot.id"] in {
        o["@iot.id"] for o in _get(client, datastream["Observations@iot.navigationLink"])["value"]
    }


def test_paging_follows_next_link_to_the_end(client: TestClient) -> None:
    url: str | None = "/v1.1/Observations?$top=1&$count=true"
    seen: list[int] = []
    while url is not None:
        body = _get(client, url)
        assert body["@iot.count"] == 2 * len(ROWS)
        assert len(body["value"]) == 1
        seen.extend(o["@iot.id"] for o in body["value"])
        url = body.get("@iot.nextLink")
    assert len(seen) == len(set(seen)) == 2 * len(ROWS)


def test_skip_and_top(client: TestClient) -> None:
    body = _get(client, "/v1.1/Datastreams?$skip=3&$top=10")
    assert len(body["value"]) == 1  # 2 sensors × 2 properties = 4 datastreams
    assert _get(client, "/v1.1/Datastreams?$top=0&$count=true") == {"@iot.count": 4, "value": []}


def test_unknown_id_is_404_naming_it(client: TestClient) -> None:
    body = _get(client, "/v1.1/Things(12345)", 404)
    assert body["code"] == 404
    assert body["type"] == "NotFoundError"
    assert "Things(12345)" in body["message"]
    assert body["parameter"] == "id"
    assert "12345" in _get(client, "/v1.1/Observations(12345)", 404)["message"]
    _get(client, f"/v1.1/Observations({2**63 - 1})", 404)  # beyond 53 bits: no such id


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("$filter=result gt", "$filter"),
        ("$expand=Sensor", "$expand"),
        ("$select=nope", "$select"),
        ("$resultFormat=dataArray", "$resultFormat"),
        (f"$top={MAX_TOP + 1}", "$top"),
        ("$top=-1", "$top"),
        ("$skip=x", "$skip"),
        ("$orderby=nope", "$orderby"),
    ],
)
def test_bad_or_unsupported_options_are_400_naming_the_parameter(
    client: TestClient, query: str, parameter: str
) -> None:
    body = _get(client, f"/v1.1/Things?{query}", 400)
    assert body["code"] == 400
    assert body["parameter"] == parameter
    assert parameter in body["message"]
    if parameter == "$resultFormat":
        assert "not supported" in body["message"]


def test_openapi_lists_the_paths(client: TestClient) -> None:
    spec = _get(client, "/openapi.json")
    assert spec["info"]["title"] == "citytwin SensorThings API"
    assert spec["info"]["version"]
    for path in (
        "/v1.1",
        "/v1.1/Things",
        "/v1.1/Things({id})",
        "/v1.1/Things({id})/Datastreams",
        "/v1.1/Things({id})/Locations",
        "/v1.1/Datastreams({id})/Observations",
        "/v1.1/Datastreams({id})/Thing",
        "/v1.1/Observations",
        "/v1.1/Observations({id})",
    ):
        assert path in spec["paths"], path


def test_configured_store_opens_lazily_and_closes_on_shutdown() -> None:
    app = create_app(Settings(store_url="memory://"))
    assert app.state.store_access._store is None  # nothing connects before a request
    with TestClient(app) as client:
        assert _get(client, "/v1.1/Things?$count=true")["@iot.count"] == 0
        assert app.state.store_access._store is not None
    assert app.state.store_access._store is None


def test_observation_ids_are_stable_and_hour_prefixed() -> None:
    t = int(datetime(2020, 3, 14, 15, tzinfo=UTC).timestamp() * 1_000_000)
    frame = ObservationFrame.from_arrays([7, 8, 7], [t, t, t + 1], [1.0, 1.0, 1.0])
    ids = observation_ids(frame).tolist()
    assert ids == observation_ids(frame).tolist()
    assert len(set(ids)) == 3
    assert {i >> 32 for i in ids} == {t // 3_600_000_000}
    assert all(0 < i < 2**53 for i in ids)


def test_error_table_maps_domain_errors() -> None:
    assert status_code_for(NotFoundError("Things", 1)) == 404
    assert status_code_for(ValidationError("bad")) == 400
    assert status_code_for(ValueError("bad")) == 400
    assert status_code_for(StoreError("down")) == 503
    assert status_code_for(RuntimeError("bug")) == 500
    assert all(issubclass(cls, Exception) for cls in STATUS_CODES)


def test_thing_locations_navigate_both_ways(client: TestClient) -> None:
    placed = stable_id("Thing", "sdot:V02Q1940612")
    locations = _get(client, f"/v1.1/Things({placed})/Locations")["value"]
    assert [loc["location"]["coordinates"] for loc in locations] == [[126.978, 37.5665]]
    assert locations[0]["encodingType"] == "application/geo+json"
    things = _get(client, locations[0]["Things@iot.navigationLink"])["value"]
    assert [t["@iot.id"] for t in things] == [placed]
    history = _get(client, f"/v1.1/Things({placed})/HistoricalLocations")["value"]
    assert history[0]["time"] == "2020-03-14T15:00:00Z"
    assert _get(client, history[0]["Thing@iot.navigationLink"])["@iot.id"] == placed
    unplaced = stable_id("Thing", "sdot:V02Q1940613")
    assert _get(client, f"/v1.1/Things({unplaced})/Locations")["value"] == []


def test_filter_selects_what_it_says(client: TestClient) -> None:
    ds = _temperature_datastream("V02Q1940612")
    warm = _get(client, f"/v1.1/Datastreams({ds})/Observations?$filter=result gt 23.5")
    assert [o["result"] for o in warm["value"]] == pytest.approx([24.0, 25.1])
    later = "phenomenonTime ge 2020-03-14T16:00:00Z and result lt 25"
    assert [
        o["result"]
        for o in _get(client, f"/v1.1/Datastreams({ds})/Observations?$filter={later}")["value"]
    ] == [24.0]
    named = _get(client, "/v1.1/Things?$filter=endswith(name, '0613')&$count=true")
    assert named["@iot.count"] == 1
    assert named["value"][0]["name"] == "S-DoT V02Q1940613"
    # the one placed sensor stands at Seoul City Hall
    near = (
        "st_within(location, geography'POLYGON((126.97 37.56, 126.99 37.56, 126.99 37.57, "
        "126.97 37.57, 126.97 37.56))')"
    )
    assert len(_get(client, f"/v1.1/Locations?$filter={near}")["value"]) == 1


def test_invalid_filter_is_400_with_its_position(client: TestClient) -> None:
    body = _get(client, "/v1.1/Things?$filter=(result gt 1", 400)
    assert body["parameter"] == "$filter"
    assert "position" in body["message"]
