"""SensorThings API v1.1 write side (create, deep insert, dataArray) on memory:// and duckdb://."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter

from citytwin.api import create_app
from citytwin.api.sta import StoreAccess
from citytwin.api.sta_batch import ObservationBatcher, Outcome
from citytwin.api.sta_write import PhenomenonStart
from citytwin.config import Settings
from citytwin.model.sensing import Datastream, UnitOfMeasurement
from citytwin.store import ObservationFrame, open_store
from citytwin.store.base import to_micros

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


def test_created_observations_reach_websocket_subscribers(client: TestClient) -> None:
    ds = _datastream_ids(client)["air temperature"]
    times = [(T0 + timedelta(minutes=m)).isoformat() for m in range(3)]
    with client.websocket_connect("/ws/observations") as socket:
        _post(
            client,
            f"/v1.1/Datastreams({ds})/Observations",
            {"phenomenonTime": times[0], "result": 1.5},
        )
        block = {
            "components": ["phenomenonTime", "result"],
            "dataArray": [[times[1], 2], [times[2], 3]],
        }
        _post(client, "/v1.1/CreateObservations", [{"Datastream": {"@iot.id": ds}, **block}])
        thing = json.loads(json.dumps(THING))
        thing["Datastreams"][1]["Observations"] = [{"phenomenonTime": times[0], "result": 7.0}]
        _post(client, "/v1.1/Things", thing)
        got = [socket.receive_json() for _ in range(4)]
    assert [(m["datastream"], m["result"]) for m in got[:3]] == [(ds, 1.5), (ds, 2.0), (ds, 3.0)]
    # an API client's own ObservedProperty is known to the stream by its name
    assert {m["observedProperty"] for m in got[:3]} == {"air_temperature"}
    assert [datetime.fromisoformat(m["phenomenonTime"]) for m in got[:3]] == [
        datetime.fromisoformat(t) for t in times
    ]
    assert got[3]["datastream"] != ds
    assert got[3]["result"] == 7.0  # deep insert: the new PM2.5 datastream's observation
    assert datetime.fromisoformat(got[3]["phenomenonTime"]) == T0


def test_concurrent_posts_of_one_instant_create_it_once(client: TestClient) -> None:
    ds = _datastream_ids(client)["air temperature"]
    bodies = [
        {"phenomenonTime": (T0 + timedelta(seconds=i % 15)).isoformat(), "result": i}
        for i in range(20)
    ]

    def post(body: dict[str, Any]) -> int:
        url = f"/v1.1/Datastreams({ds})/Observations"
        return client.post(url, json=body, headers=AUTH).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(post, bodies))
    assert sorted(statuses) == [201] * 15 + [409] * 5
    assert _get(client, f"/v1.1/Datastreams({ds})/Observations?$count=true")["@iot.count"] == 15
    unknown = client.post("/v1.1/Datastreams(12345)/Observations", json=bodies[0], headers=AUTH)
    assert unknown.status_code == 400, unknown.text
    assert unknown.json()["parameter"] == "Datastream"


def test_one_batch_keeps_the_first_of_each_identity(store_url: str) -> None:
    unit = UnitOfMeasurement(name="n", symbol="n", definition="d")
    stream = Datastream(
        key="k", name="d", unit_of_measurement=unit, thing_id=1, sensor_id=2, observed_property_id=3
    )
    ds, t0 = stream.id or 0, to_micros(T0)
    published: list[ObservationFrame] = []
    with open_store(store_url) as store:
        store.register([stream])
        store.write_observations(ObservationFrame.from_arrays([ds], [t0 - 1], [0.0]))
        batcher = ObservationBatcher(StoreAccess(lambda: store), published=published.append)
        rows = [
            (ds, t0, 1.0),
            (ds, t0, 2.0),
            (ds + 1, t0, 3.0),
            (ds, t0 + 1, 4.0),
            (ds, t0 - 1, 5.0),
        ]

        async def create_all() -> list[Outcome]:
            return await asyncio.gather(*(batcher.create(*row) for row in rows))

        outcomes = asyncio.run(create_all())
        stored = store.observations()
    assert outcomes == [
        Outcome.CREATED, Outcome.DUPLICATE, Outcome.NO_DATASTREAM, Outcome.CREATED,
        Outcome.DUPLICATE,
    ]  # fmt: skip
    assert len(published) == 1  # all five were queued before the writer ran: one write
    assert published[0].result.tolist() == [1.0, 4.0]
    assert stored.result.tolist() == [0.0, 1.0, 4.0]


def test_data_array_times_read_as_pydantic_reads_them(client: TestClient) -> None:
    ds = _datastream_ids(client)["air temperature"]
    times = [
        "2026-03-15T09:00:00+09:00",
        "2026-03-15 00:01:00Z",
        "2026-03-15T00:02:00.123456Z",
        "2026-03-15T00:03Z",
        "2026-03-15T09:04:00.5+0900",
        "2026-03-14T22:35:00.000001-01:30",
        "2026-03-15T00:06:00.1Z",
    ]
    interval = "2026-03-15T00:07:00Z/2026-03-15T00:08:00Z"  # the per-row path reads this block
    blocks = [
        {"Datastream": {"@iot.id": ds}, "components": ["phenomenonTime", "result", "resultTime"],
         "dataArray": [[t, i, None] for i, t in enumerate(times)]},
        {"Datastream": {"@iot.id": ds}, "components": ["result", "phenomenonTime"],
         "dataArray": [[7.5, interval], [8, times[0]]]},
    ]  # fmt: skip
    links = _post(client, "/v1.1/CreateObservations", blocks)
    assert links[-1] == "error"  # the same instant as the first block's first row
    assert "error" not in links[:-1]
    written = _get(client, f"/v1.1/Datastreams({ds})/Observations?$orderby=phenomenonTime")
    adapter = TypeAdapter(PhenomenonStart)
    expected = sorted(to_micros(adapter.validate_python(t)) for t in [*times, interval])
    got = [to_micros(adapter.validate_python(o["phenomenonTime"])) for o in written["value"]]
    assert got == expected
    assert sorted(o["result"] for o in written["value"]) == [0, 1, 2, 3, 4, 5, 6, 7.5]


def test_to_micros_is_exact() -> None:
    adapter = TypeAdapter(PhenomenonStart)
    # a float total_seconds() * 1e6 gives ...122999 and 253402300800000000 for these
    assert to_micros(adapter.validate_python("2026-03-15T00:00:00.123Z")) % 1_000_000 == 123_000
    last = adapter.validate_python("9999-12-31T23:59:59.999999Z")
    assert to_micros(last) == 253_402_300_799_999_999


def test_data_array_rows_a_python_datetime_cannot_hold_are_errors(client: TestClient) -> None:
    ds = _datastream_ids(client)["air temperature"]
    rows = [[T0.isoformat(), 1], ["0001-01-01T00:30:00+01:00", 2], ["0000-06-01T00:00:00Z", 3]]
    body = [
        {
            "Datastream": {"@iot.id": ds},
            "components": ["phenomenonTime", "result"],
            "dataArray": rows,
        }
    ]
    links = _post(client, "/v1.1/CreateObservations", body)
    assert links[0].startswith("http://testserver/v1.1/Observations(")
    assert links[1:] == ["error", "error"]
