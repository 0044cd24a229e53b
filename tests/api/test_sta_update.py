"""SensorThings API v1.1 update (PATCH, PUT) and delete (DELETE) on memory:// and duckdb://."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from citytwin.api import create_app
from citytwin.config import Settings
from citytwin.store import open_store

TOKEN = "t"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
UNIT = {"name": "degree Celsius", "symbol": "°C", "definition": "http://unitsofmeasure.org"}


def _station(name: str) -> dict[str, Any]:
    """A Thing with one Location and two Datastreams, each with its own Sensor and property."""
    return {
        "name": name,
        "description": f"{name} on a roof",
        "properties": {"district": "Jung-gu", "floor": 3},
        "Locations": [
            {"name": f"{name} roof", "location": {"type": "Point", "coordinates": [127.0, 37.5]}}
        ],
        "Datastreams": [
            {
                "name": f"{name} {quantity}",
                "unitOfMeasurement": UNIT,
                "Sensor": {"name": f"{name} {quantity} sensor"},
                "ObservedProperty": {
                    "name": quantity,
                    "definition": f"https://example.org/{quantity}",
                },
            }
            for quantity in ("temperature", "pm25")
        ],
    }


@pytest.fixture(params=["memory://", "duckdb://"])
def client(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    with open_store(request.param) as store:
        settings = Settings(store_url="memory://", api_tokens=(TOKEN,))
        with TestClient(create_app(settings, store=store)) as test_client:
            yield test_client


@pytest.fixture(scope="module", params=["memory://", "duckdb://"])
def city(request: pytest.FixtureRequest) -> Iterator[tuple[TestClient, dict[str, Any]]]:
    """A city shared by the tests whose requests must change nothing (404s and 400s)."""
    with open_store(request.param) as store:
        settings = Settings(store_url="memory://", api_tokens=(TOKEN,))
        with TestClient(create_app(settings, store=store)) as test_client:
            yield test_client, _city(test_client)


def _send(client: TestClient, method: str, url: str, body: Any = None, status: int = 200) -> Any:
    response = client.request(method, url, json=body, headers=AUTH)
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def _get(client: TestClient, url: str) -> dict[str, Any]:
    response = client.get(url)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _count(client: TestClient, url: str) -> int:
    count: int = _get(client, f"{url}?$count=true&$top=0")["@iot.count"]
    return count


def _city(client: TestClient) -> dict[str, Any]:
    """Two stations, three observations on each Datastream; their ids by role."""
    ids: dict[str, Any] = {}
    for name in ("a", "b"):
        thing = _send(client, "POST", "/v1.1/Things", _station(name), 201)["@iot.id"]
        streams = _get(client, f"/v1.1/Things({thing})/Datastreams")["value"]
        location = _get(client, f"/v1.1/Things({thing})/Locations")["value"][0]["@iot.id"]
        ids[name] = {
            "thing": thing,
            "location": location,
            # temperature first, pm25 second: listing order differs between stores
            "streams": [s["@iot.id"] for s in sorted(streams, key=lambda s: "pm25" in s["name"])],
        }
        blocks = [
            {
                "Datastream": {"@iot.id": stream},
                "components": ["phenomenonTime", "result"],
                "dataArray": [[f"2026-03-15T0{h}:00:00Z", 10.0 * h] for h in range(3)],
            }
            for stream in ids[name]["streams"]
        ]
        _send(client, "POST", "/v1.1/CreateObservations", blocks, 201)
    return ids


def test_patch_a_thing_merges_its_properties(client: TestClient) -> None:
    thing = _send(client, "POST", "/v1.1/Things", _station("a"), 201)
    patch = {"name": "renamed", "properties": {"floor": 4, "district": None, "roof": True}}
    body = _send(client, "PATCH", thing["@iot.selfLink"], patch)
    assert (body["@iot.id"], body["name"]) == (thing["@iot.id"], "renamed")
    stored = _get(client, thing["@iot.selfLink"])
    assert stored["name"] == "renamed"
    assert stored["description"] == "a on a roof"  # not named in the patch: unchanged
    assert stored["properties"] == {"floor": 4, "roof": True}  # merged; null removed a key
    assert _count(client, f"/v1.1/Things({thing['@iot.id']})/Datastreams") == 2  # links kept
    same_id = {"@iot.id": thing["@iot.id"], "description": None}
    assert _send(client, "PATCH", thing["@iot.selfLink"], same_id)["description"] == ""


def test_put_replaces_every_property(client: TestClient) -> None:
    thing = _send(client, "POST", "/v1.1/Things", _station("a"), 201)
    body = _send(client, "PUT", thing["@iot.selfLink"], {"name": "bare"})
    assert (body["name"], body["description"], body["properties"]) == ("bare", "", {})
    assert _count(client, f"/v1.1/Things({thing['@iot.id']})/Datastreams") == 2


def test_patch_relinks_a_datastream_to_another_thing(client: TestClient) -> None:
    ids = _city(client)
    moved = ids["a"]["streams"][0]
    sensor = _get(client, f"/v1.1/Datastreams({ids['b']['streams'][1]})/Sensor")["@iot.id"]
    patch = {"Thing": {"@iot.id": ids["b"]["thing"]}, "Sensor": {"@iot.id": sensor}}
    body = _send(client, "PATCH", f"/v1.1/Datastreams({moved})", patch)
    assert body["name"] == "a temperature"
    assert _get(client, f"/v1.1/Datastreams({moved})/Thing")["name"] == "b"
    assert _get(client, f"/v1.1/Datastreams({moved})/Sensor")["@iot.id"] == sensor
    assert _count(client, f"/v1.1/Things({ids['a']['thing']})/Datastreams") == 1
    assert _count(client, f"/v1.1/Things({ids['b']['thing']})/Datastreams") == 3
    assert _count(client, f"/v1.1/Datastreams({moved})/Observations") == 3


def test_patch_relinks_a_location_and_records_the_move(client: TestClient) -> None:
    ids = _city(client)
    location = ids["a"]["location"]
    _send(
        client,
        "PATCH",
        f"/v1.1/Locations({location})",
        {"Things": [{"@iot.id": ids["b"]["thing"]}]},
    )
    assert _get(client, f"/v1.1/Locations({location})/Things")["value"][0]["name"] == "b"
    assert _count(client, f"/v1.1/Things({ids['b']['thing']})/HistoricalLocations") == 2
    assert _count(client, "/v1.1/HistoricalLocations") == 3


def test_patch_an_observation_result_and_time(client: TestClient) -> None:
    ids = _city(client)
    stream = ids["a"]["streams"][0]
    url = f"/v1.1/Datastreams({stream})/Observations?$orderby=phenomenonTime"
    first = _get(client, url)["value"][0]
    body = _send(client, "PATCH", first["@iot.selfLink"], {"result": 21.5})
    assert (body["@iot.id"], body["result"]) == (first["@iot.id"], 21.5)  # same identity, same id
    assert _get(client, first["@iot.selfLink"])["result"] == 21.5

    later = {"phenomenonTime": "2026-03-15T05:00:00Z"}
    moved = _send(client, "PATCH", first["@iot.selfLink"], later)
    assert moved["@iot.id"] != first["@iot.id"]
    assert moved["result"] == 21.5
    assert client.get(first["@iot.selfLink"]).status_code == 404
    assert _get(client, moved["@iot.selfLink"])["phenomenonTime"].startswith("2026-03-15T05:00")
    assert [o["result"] for o in _get(client, url)["value"]] == [10.0, 20.0, 21.5]

    clash = {"phenomenonTime": "2026-03-15T01:00:00Z"}  # the second observation's instant
    response = client.patch(moved["@iot.selfLink"], json=clash, headers=AUTH)
    assert response.status_code == 409, response.text
    assert response.json()["parameter"] == "phenomenonTime"
    assert _count(client, f"/v1.1/Datastreams({stream})/Observations") == 3


def test_delete_a_thing_cascades_to_its_datastreams_and_history(client: TestClient) -> None:
    ids = _city(client)
    assert (_count(client, "/v1.1/Observations"), _count(client, "/v1.1/Datastreams")) == (12, 4)
    response = client.delete(f"/v1.1/Things({ids['a']['thing']})", headers=AUTH)
    assert (response.status_code, response.content) == (200, b"")
    assert client.get(f"/v1.1/Things({ids['a']['thing']})").status_code == 404
    assert [t["name"] for t in _get(client, "/v1.1/Things")["value"]] == ["b"]
    remaining = {d["@iot.id"] for d in _get(client, "/v1.1/Datastreams")["value"]}
    assert remaining == set(ids["b"]["streams"])
    assert _count(client, "/v1.1/Observations") == 6
    assert {o["result"] for o in _get(client, "/v1.1/Observations")["value"]} == {0.0, 10.0, 20.0}
    history = _get(client, "/v1.1/HistoricalLocations")["value"]
    assert [h["@iot.id"] for h in history] == [
        h["@iot.id"]
        for h in _get(client, f"/v1.1/Things({ids['b']['thing']})/HistoricalLocations")["value"]
    ]
    assert len(history) == 1
    # the Location outlives its Thing, unlinked; Sensors and ObservedProperties stay too
    assert _count(client, "/v1.1/Locations") == 2
    assert _count(client, f"/v1.1/Locations({ids['a']['location']})/Things") == 0
    assert (_count(client, "/v1.1/Sensors"), _count(client, "/v1.1/ObservedProperties")) == (4, 4)


def test_delete_cascades_of_the_other_entity_sets(client: TestClient) -> None:
    ids = _city(client)
    sensor = _get(client, f"/v1.1/Datastreams({ids['a']['streams'][0]})/Sensor")["@iot.id"]
    _send(client, "DELETE", f"/v1.1/Sensors({sensor})")
    assert client.get(f"/v1.1/Datastreams({ids['a']['streams'][0]})").status_code == 404
    assert (_count(client, "/v1.1/Datastreams"), _count(client, "/v1.1/Observations")) == (3, 9)

    stream = ids["a"]["streams"][1]
    prop = _get(client, f"/v1.1/Datastreams({stream})/ObservedProperty")["@iot.id"]
    _send(client, "DELETE", f"/v1.1/ObservedProperties({prop})")
    assert (_count(client, "/v1.1/Datastreams"), _count(client, "/v1.1/Observations")) == (2, 6)

    stream = ids["b"]["streams"][0]
    _send(client, "DELETE", f"/v1.1/Datastreams({stream})")
    assert (_count(client, "/v1.1/Datastreams"), _count(client, "/v1.1/Observations")) == (1, 3)

    observation = _get(client, "/v1.1/Observations")["value"][0]
    _send(client, "DELETE", observation["@iot.selfLink"])
    assert _count(client, "/v1.1/Observations") == 2
    assert client.get(observation["@iot.selfLink"]).status_code == 404

    _send(client, "DELETE", f"/v1.1/Locations({ids['b']['location']})")
    assert (_count(client, "/v1.1/Locations"), _count(client, "/v1.1/HistoricalLocations")) == (
        1,
        1,
    )
    history = _get(client, "/v1.1/HistoricalLocations")["value"][0]["@iot.selfLink"]
    _send(client, "DELETE", history)
    assert _count(client, "/v1.1/HistoricalLocations") == 0
    assert _count(client, "/v1.1/Things") == 2  # nothing above deletes a Thing


@pytest.mark.parametrize("method", ["PATCH", "PUT", "DELETE"])
def test_updates_and_deletes_need_the_token(client: TestClient, method: str) -> None:
    thing = _send(client, "POST", "/v1.1/Things", {"name": "kept"}, 201)
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = client.request(
            method, thing["@iot.selfLink"], json={"name": "x"}, headers=headers
        )
        assert response.status_code == 401, response.text
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert _get(client, thing["@iot.selfLink"])["name"] == "kept"


def test_updates_are_refused_without_configured_tokens() -> None:
    with (
        open_store("memory://") as store,
        TestClient(create_app(Settings(), store=store)) as client,
    ):
        response = client.delete("/v1.1/Things(1)", headers=AUTH)
        assert response.status_code == 403
        assert "CITYTWIN_API_TOKENS" in response.json()["message"]


@pytest.mark.parametrize("entity_set", ["Things", "Datastreams", "Observations", "Locations"])
@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
def test_an_unknown_id_is_404(
    city: tuple[TestClient, dict[str, Any]], entity_set: str, method: str
) -> None:
    client, _ = city
    for entity_id in (12345, 2**70):
        response = client.request(method, f"/v1.1/{entity_set}({entity_id})", json={}, headers=AUTH)
        assert response.status_code == 404, response.text
        assert response.json()["type"] == "NotFoundError"


@pytest.mark.parametrize(
    ("entity_set", "body", "field"),
    [
        ("Things", {"colour": "red"}, "colour"),
        ("Things", {"name": 5}, "name"),
        ("Things", {"name": None}, "name"),  # null removes; a name is required
        ("Things", {"@iot.id": 1}, "@iot.id"),
        ("Things", {"Datastreams": []}, "Datastreams"),  # no related entities inline
        ("Things", [{"name": "x"}], "body"),
        ("Datastreams", {"Thing": {"@iot.id": 12345}}, "Thing"),
        ("Datastreams", {"Sensor": {"name": "inline"}}, "Sensor.@iot.id"),
        ("Datastreams", {"unitOfMeasurement": {"name": "K"}}, "unitOfMeasurement.symbol"),
        ("Datastreams", {"phenomenonTime": "2026-03-15T00:00:00Z"}, "phenomenonTime"),
        (
            "Locations",
            {"location": {"type": "Point", "coordinates": [200, 0]}},
            "location.Point.coordinates",
        ),
        ("Observations", {"result": "high"}, "result"),
        ("Observations", {"result": None}, "result"),
        ("Observations", {"phenomenonTime": "yesterday"}, "phenomenonTime"),
        ("Observations", {"Datastream": {"@iot.id": 12345}}, "Datastream"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(
    city: tuple[TestClient, dict[str, Any]], entity_set: str, body: Any, field: str
) -> None:
    client, ids = city
    targets = {
        "Things": f"/v1.1/Things({ids['a']['thing']})",
        "Datastreams": f"/v1.1/Datastreams({ids['a']['streams'][0]})",
        "Locations": f"/v1.1/Locations({ids['a']['location']})",
        "Observations": _get(client, "/v1.1/Observations")["value"][0]["@iot.selfLink"],
    }
    before = _get(client, targets[entity_set])
    response = client.patch(targets[entity_set], json=body, headers=AUTH)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["parameter"] == field, error
    assert error["message"].startswith(field)
    assert _get(client, targets[entity_set]) == before
