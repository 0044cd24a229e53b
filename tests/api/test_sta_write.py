"""SensorThings API v1.1 write side (create, deep insert, dataArray) on memory:// and duckdb://."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from citytwin.api import create_app
from citytwin.config import Settings
from citytwin.store import open_store

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = datetime(2026, 3, 15, tzinfo=UTC)

THING: dict[str, Any] = {
    "name": "Weather station 1",
    "description": "roof of city hall",
    "properties": {"district": "Jung-gu"},
    "Locations": [
        {
            "name": "City hall roof",
            "encodingType": "application/geo+json",
            "location": {"type": "Point", "coordinates": [126.978, 37.5665]},
        }
    ],
    "Datastreams": [
        {
            "name": "air temperature",
            "unitOfMeasurement": {
                "name": "degree Celsius",
                "symbol": "°C",
                "definition": "http://unitsofmeasure.org/ucum.html#para-30",
            },
            "Sensor": {"name": "SHT31", "metadata": "https://example.org/sht31.pdf"},
            "ObservedProperty": {
                "name": "air_temperature",
                "definition": "http://vocab.nerc.ac.uk/standard_name/air_temperature/",
            },
        },
        {
            "name": "PM2.5",
            "unitOfMeasurement": {
                "name": "microgram per cubic metre",
                "symbol": "µg/m³",
                "definition": "http://unitsofmeasure.org/ucum.html#para-30",
            },
            "Sensor": {"name": "PMS7003"},
            "ObservedProperty": {"name": "pm25", "definition": "https://example.org/pm25"},
        },
    ],
}


@pytest.fixture(params=["memory://", "duckdb://"])
def store_url(request: pytest.FixtureRequest) -> str:
    url: str = request.param
    return url


@pytest.fixture
def client(store_url: str) -> Iterator[TestClient]:
    with open_store(store_url) as store:
        settings = Settings(store_url="memory://", api_tokens=(TOKEN,))
        with TestClient(create_app(settings, store=store)) as test_client:
            yield test_client


def _post(client: TestClient, url: str, body: Any, status: int = 201) -> Any:
    response = client.post(url, json=body, headers=AUTH)
    assert response.status_code == status, response.text
    return response.json()


def _get(client: TestClient, url: str) -> dict[str, Any]:
    response = client.get(url)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _datastream_ids(client: TestClient) -> dict[str, int]:
    thing = _post(client, "/v1.1/Things", THING)
    found = _get(client, f"/v1.1/Things({thing['@iot.id']})/Datastreams")["value"]
    return {d["name"]: d["@iot.id"] for d in found}


def test_writes_are_refused_without_configured_tokens(store_url: str) -> None:
    with open_store(store_url) as store, TestClient(create_app(Settings(), store=store)) as client:
        response = client.post("/v1.1/Things", json={"name": "x"}, headers=AUTH)
        assert response.status_code == 403
        assert "CITYTWIN_API_TOKENS" in response.json()["message"]
        assert _get(client, "/v1.1/Things?$count=true")["@iot.count"] == 0


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}]
)
def test_a_missing_or_wrong_token_is_401(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post("/v1.1/Things", json={"name": "x"}, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert _get(client, "/v1.1/Things?$count=true")["@iot.count"] == 0


def test_tokens_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYTWIN_API_TOKENS", " a, b ,,")
    settings = Settings.from_env()
    assert settings.api_tokens == ("a", "b")
    assert "api_tokens" not in repr(settings)


def test_deep_insert_thing_reads_back(client: TestClient) -> None:
    response = client.post("/v1.1/Things", json=THING, headers=AUTH)
    assert response.status_code == 201, response.text
    thing = response.json()
    assert response.headers["Location"] == thing["@iot.selfLink"]
    assert thing["@iot.selfLink"] == f"http://testserver/v1.1/Things({thing['@iot.id']})"
    assert thing["name"] == "Weather station 1"
    assert _get(client, thing["@iot.selfLink"])["properties"] == {"district": "Jung-gu"}

    streams = _get(client, f"/v1.1/Things({thing['@iot.id']})/Datastreams?$count=true")
    assert streams["@iot.count"] == 2
    assert sorted(d["name"] for d in streams["value"]) == ["PM2.5", "air temperature"]
    locations = _get(client, f"/v1.1/Things({thing['@iot.id']})/Locations?$count=true")
    assert locations["@iot.count"] == 1
    assert locations["value"][0]["location"]["coordinates"] == [126.978, 37.5665]
    for stream in streams["value"]:
        sensor = _get(client, f"/v1.1/Datastreams({stream['@iot.id']})/Sensor")
        prop = _get(client, f"/v1.1/Datastreams({stream['@iot.id']})/ObservedProperty")
        assert (sensor["name"], prop["name"]) in {
            ("SHT31", "air_temperature"),
            ("PMS7003", "pm25"),
        }
    assert _get(client, "/v1.1/Sensors?$count=true")["@iot.count"] == 2
    assert _get(client, "/v1.1/HistoricalLocations?$count=true")["@iot.count"] == 1


def test_datastream_links_existing_entities(client: TestClient) -> None:
    thing = _post(client, "/v1.1/Things", {"name": "bare"})
    sensor = _post(client, "/v1.1/Sensors", {"name": "S1"})
    prop = _post(client, "/v1.1/ObservedProperties", {"name": "p", "definition": "d"})
    stream = _post(
        client,
        "/v1.1/Datastreams",
        {
            "name": "linked",
            "unitOfMeasurement": {"name": "n", "symbol": "s", "definition": "d"},
            "Thing": {"@iot.id": thing["@iot.id"]},
            "Sensor": {"@iot.id": sensor["@iot.id"]},
            "ObservedProperty": {"@iot.id": prop["@iot.id"]},
        },
    )
    assert _get(client, f"/v1.1/Datastreams({stream['@iot.id']})/Sensor")["name"] == "S1"
    assert _get(client, f"/v1.1/Things({thing['@iot.id']})/Datastreams")["value"][0]["name"] == (
        "linked"
    )
    location = _post(
        client,
        "/v1.1/Locations",
        {
            "name": "L",
            "location": {"type": "Point", "coordinates": [1.0, 2.0]},
            "Things": [{"@iot.id": thing["@iot.id"]}],
        },
    )
    assert _get(client, f"/v1.1/Locations({location['@iot.id']})/Things")["value"][0]["name"] == (
        "bare"
    )
    feature = _post(
        client,
        "/v1.1/FeaturesOfInterest",
        {"name": "F", "feature": {"type": "Point", "coordinates": [1.0, 2.0]}},
    )
    assert _get(client, f"/v1.1/FeaturesOfInterest({feature['@iot.id']})")["name"] == "F"


def test_single_observations_read_back(client: TestClient) -> None:
    ds = _datastream_ids(client)["air temperature"]
    first = client.post(
        "/v1.1/Observations",
        json={
            "phenomenonTime": "2026-03-15T00:00:00Z",
            "result": 21.5,
            "Datastream": {"@iot.id": ds},
        },
        headers=AUTH,
    )
    assert first.status_code == 201, first.text
    assert first.headers["Location"] == first.json()["@iot.selfLink"]
    second = _post(
        client,
        f"/v1.1/Datastreams({ds})/Observations",
        {"phenomenonTime": "2026-03-15T10:00:00+09:00/2026-03-15T11:00:00+09:00", "result": 3},
    )
    assert _get(client, first.json()["@iot.selfLink"])["result"] == 21.5
    assert _get(client, second["@iot.selfLink"])["phenomenonTime"].startswith("2026-03-15T01:00")
    body = _get(client, f"/v1.1/Datastreams({ds})/Observations?$count=true&$orderby=phenomenonTime")
    assert body["@iot.count"] == 2
    assert [o["result"] for o in body["value"]] == [21.5, 3.0]
    assert {o["@iot.id"] for o in body["value"]} == {first.json()["@iot.id"], second["@iot.id"]}
    again = client.post(
        f"/v1.1/Datastreams({ds})/Observations",
        json={"phenomenonTime": "2026-03-15T00:00:00Z", "result": 99},
        headers=AUTH,
    )
    assert again.status_code == 409, again.text


def test_data_array_of_a_thousand_rows(client: TestClient) -> None:
    streams = _datastream_ids(client)
    ds, pm = streams["air temperature"], streams["PM2.5"]
    rows: list[tuple[str, float]] = [
        ((T0 + timedelta(minutes=i)).isoformat(), i * 0.25 - 40) for i in range(1000)
    ]
    body = [
        {
            "Datastream": {"@iot.id": ds},
            "components": ["phenomenonTime", "result"],
            "dataArray": [list(r) for r in rows],
        },
        {
            "Datastream": {"@iot.id": pm},
            "components": ["result", "phenomenonTime", "resultTime"],
            "dataArray": [
                [5, "2026-03-15T00:00:00Z", None],
                ["not a number", "2026-03-15T00:01:00Z", None],
                [6, "2026-03-15T00:02:00", None],  # naive time: refused
                [7, "2026-03-15T00:03:00Z", "2026-03-15T00:04:00Z"],
                [8, "2026-03-15T00:03:00Z", None],  # same instant again
            ],
        },
    ]
    links = _post(client, "/v1.1/CreateObservations", body)
    assert len(links) == 1005
    assert all(link.startswith("http://testserver/v1.1/Observations(") for link in links[:1000])
    assert links[1000:] == [links[1000], "error", "error", links[1003], "error"]
    assert links[1003] != "error"

    written = _get(client, f"/v1.1/Datastreams({ds})/Observations?$count=true&$top=1000")
    assert written["@iot.count"] == 1000
    got = [(o["phenomenonTime"], o["result"]) for o in written["value"]]
    want = [(datetime.fromisoformat(t).isoformat(), v) for t, v in rows]
    assert [(datetime.fromisoformat(t).isoformat(), v) for t, v in got] == want
    assert [o["@iot.selfLink"] for o in written["value"]] == links[:1000]
    pm_obs = _get(client, f"/v1.1/Datastreams({pm})/Observations?$count=true")
    assert pm_obs["@iot.count"] == 2
    assert [o["result"] for o in pm_obs["value"]] == [5.0, 7.0]

    replay = _post(client, "/v1.1/CreateObservations", body[:1])
    assert replay == ["error"] * 1000  # every instant is stored already
    assert _get(client, f"/v1.1/Datastreams({ds})/Observations?$count=true")["@iot.count"] == 1000


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/v1.1/Things", {"description": "no name"}, "name"),
        ("/v1.1/Things", {"name": "t", "colour": "red"}, "colour"),
        (
            "/v1.1/Things",
            {"name": "t", "Datastreams": [{**THING["Datastreams"][0], "Sensor": {"x": 1}}]},
            "Datastreams[0].Sensor.name",
        ),
        (
            "/v1.1/Things",
            {"name": "t", "Locations": [{"@iot.id": 1, "name": "x"}]},
            "Locations[0]",
        ),
        ("/v1.1/Things", {"name": "t", "Locations": [{"@iot.id": 12345}]}, "Locations[0]"),
        ("/v1.1/Observations", {"phenomenonTime": "2026-03-15T00:00:00Z"}, "result"),
        (
            "/v1.1/Observations",
            {"phenomenonTime": "yesterday", "result": 1, "Datastream": {"@iot.id": 1}},
            "phenomenonTime",
        ),
        (
            "/v1.1/Observations",
            {"phenomenonTime": "2026-03-15T00:00:00Z", "result": 1},
            "Datastream",
        ),
        ("/v1.1/CreateObservations", [{"components": [], "dataArray": []}], "[0].Datastream"),
        (
            "/v1.1/CreateObservations",
            [{"Datastream": {"@iot.id": 1}, "components": ["result"], "dataArray": []}],
            "[0].components",
        ),
    ],
)
def test_bad_bodies_are_400_naming_the_field(
    client: TestClient, url: str, body: Any, field: str
) -> None:
    response = client.post(url, json=body, headers=AUTH)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["parameter"] == field, error
    assert error["message"].startswith(field)


def test_invalid_json_is_400_after_authorisation(client: TestClient) -> None:
    headers = {**AUTH, "Content-Type": "application/json"}
    response = client.post("/v1.1/Things", content=b"{not json", headers=headers)
    assert response.status_code == 400
    assert response.json()["parameter"] == "body"
    unauthorised = client.post("/v1.1/Things", content=b"{not json")
    assert unauthorised.status_code == 401
