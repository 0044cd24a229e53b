"""NGSI-LD view (ETSI GS CIM 009) over a store fed with a small S-DoT file and the real registry."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from citytwin.api import create_app, ngsi_ld
from citytwin.config import Settings
from citytwin.ingest import read_feed
from citytwin.ingest.pipeline import ingest
from citytwin.store import open_store

BASE = "/ngsi-ld/v1"
A, B = "V02Q1940612", "V02Q1940790"
AQ_A = f"urn:ngsi-ld:AirQualityObserved:sdot:{A}"
NOISE_A = f"urn:ngsi-ld:NoiseLevelObserved:sdot:{A}"
# serial, KST time, pm25, pm10, noise (dB), temperature stored raw as (°C + 100) × 10
READINGS = [
    (A, "202003150000", 50, 70, 55, 1152), (A, "202003150002", 60, 80, 58, 1160),
    (B, "202003150000", 10, 20, 40, 1100), (B, "202003150002", 20, 30, 45, 1110),
]  # fmt: skip


@pytest.fixture(scope="module")
def registry(shared_data: Path) -> Path:
    return shared_data / "sdot" / "sensor_longitude_latitude.csv"


@pytest.fixture(scope="module")
def client(registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("sdot") / "sdot.csv"
    header = "시리얼,측정시간,미세먼지2.5(초미세먼지),미세먼지10(미세먼지),소음,기온"
    rows = "\n".join(",".join(str(v) for v in row) for row in READINGS)
    data.write_text(f"{header}\n{rows}\n", encoding="utf-8")
    with open_store("memory://") as store:
        ingest(read_feed("sdot", str(data), registry=str(registry)), store)
        app = create_app(Settings(store_url="memory://"), store=store)
        app.include_router(ngsi_ld.create_router())
        with TestClient(app) as test_client:
            yield test_client


def _get(client: TestClient, url: str, status: int = 200, **headers: str) -> Any:
    response = client.get(url, headers=headers)
    assert response.status_code == status, response.text
    return response


def _problem(client: TestClient, url: str, status: int, kind: str) -> dict[str, Any]:
    response = _get(client, url, status)
    body: dict[str, Any] = response.json()
    assert body["type"] == f"https://uri.etsi.org/ngsi-ld/errors/{kind}"
    assert body["title"]
    assert body["detail"]
    return body


def _position(registry: Path, serial: str) -> list[float]:
    with registry.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["시리얼"] == serial:
                return [float(row["경도"]), float(row["위도"])]
    raise AssertionError(serial)


def test_entity_ids_and_types(client: TestClient) -> None:
    response = _get(client, f"{BASE}/entities?type=AirQualityObserved,NoiseLevelObserved")
    assert response.headers["content-type"].startswith("application/ld+json")
    ids = [(e["id"], e["type"]) for e in response.json()]
    assert ids == [
        (AQ_A, "AirQualityObserved"),
        (f"urn:ngsi-ld:AirQualityObserved:sdot:{B}", "AirQualityObserved"),
        (NOISE_A, "NoiseLevelObserved"),
        (f"urn:ngsi-ld:NoiseLevelObserved:sdot:{B}", "NoiseLevelObserved"),
    ]
    weather = _get(client, f"{BASE}/entities?type=WeatherObserved").json()
    assert {e["id"] for e in weather} == {
        f"urn:ngsi-ld:WeatherObserved:sdot:{A}",
        f"urn:ngsi-ld:WeatherObserved:sdot:{B}",
    }
    assert _get(client, f"{BASE}/entities?type=TrafficFlowObserved").json() == []


def test_latest_values_units_and_location(client: TestClient, registry: Path) -> None:
    entity = _get(client, f"{BASE}/entities/{AQ_A}").json()
    assert entity["@context"] == [ngsi_ld.SDM_CONTEXT, ngsi_ld.CORE_CONTEXT]
    assert entity["id"] == AQ_A
    assert entity["type"] == "AirQualityObserved"
    stamp = "2020-03-14T15:02:00Z"  # 2020-03-15 00:02 KST
    assert entity["pm25"] == {"type": "Property", "value": 60.0, "observedAt": stamp,
                              "unitCode": "GQ"}  # fmt: skip
    assert entity["pm10"]["value"] == 80.0
    assert entity["temperature"]["value"] == pytest.approx(16.0)
    assert entity["temperature"]["unitCode"] == "CEL"
    assert entity["temperature"]["observedAt"] == stamp
    assert "LAeq" not in entity
    assert entity["dateObserved"]["value"] == {"@type": "DateTime", "@value": stamp}
    location = entity["location"]
    assert location["type"] == "GeoProperty"
    assert location["value"]["type"] == "Point"
    assert location["value"]["coordinates"] == pytest.approx(_position(registry, A))
    noise = _get(client, f"{BASE}/entities/{NOISE_A}").json()
    assert noise["LAeq"] == {"type": "Property", "value": 58.0, "observedAt": stamp,
                             "unitCode": "2N"}  # fmt: skip
    assert set(noise) == {"@context", "id", "type", "name", "location", "dateObserved", "LAeq"}


def test_plain_json_moves_context_to_link(client: TestClient) -> None:
    response = _get(client, f"{BASE}/entities/{AQ_A}", accept="application/json")
    assert response.headers["content-type"].startswith("application/json")
    assert "@context" not in response.json()
    assert ngsi_ld.SDM_CONTEXT in response.headers["link"]
    assert 'rel="http://www.w3.org/ns/json-ld#context"' in response.headers["link"]
    refused = _get(client, f"{BASE}/entities/{AQ_A}", 406, accept="text/html").json()
    assert refused["type"].endswith("/NotAcceptable")


def test_attrs_and_key_values(client: TestClient) -> None:
    body = _get(client, f"{BASE}/entities?type=AirQualityObserved&attrs=pm25").json()
    assert all(set(e) == {"@context", "id", "type", "pm25"} for e in body)
    simple = _get(client, f"{BASE}/entities/{AQ_A}?options=keyValues&attrs=pm25,location").json()
    assert simple["pm25"] == 60.0
    assert simple["location"]["type"] == "Point"
    assert _get(client, f"{BASE}/entities?attrs=LAeq").json()[0]["type"] == "NoiseLevelObserved"


def test_q_filters(client: TestClient) -> None:
    def ids(query: str) -> list[str]:
        return [e["id"] for e in _get(client, f"{BASE}/entities?{query}").json()]

    assert ids("type=AirQualityObserved&q=pm25>35") == [AQ_A]
    assert ids("type=AirQualityObserved&q=pm25>=20;pm10<80") == [
        f"urn:ngsi-ld:AirQualityObserved:sdot:{B}"
    ]
    assert ids("type=AirQualityObserved&q=pm25==60") == [AQ_A]
    assert len(ids("type=AirQualityObserved&q=pm25!=60")) == 1
    assert ids("q=LAeq<50") == [f"urn:ngsi-ld:NoiseLevelObserved:sdot:{B}"]
    assert ids(f"id={AQ_A},{NOISE_A}") == [AQ_A, NOISE_A]


def test_georel_near(client: TestClient, registry: Path) -> None:
    lon, lat = _position(registry, A)
    url = (
        f"{BASE}/entities?type=AirQualityObserved&georel=near;maxDistance==2000"
        f"&geometry=Point&coordinates=[{lon},{lat}]"
    )
    assert [e["id"] for e in _get(client, url).json()] == [AQ_A]


def test_limit_offset_count_and_next_link(client: TestClient) -> None:
    url = f"{BASE}/entities?type=AirQualityObserved,NoiseLevelObserved,WeatherObserved"
    everything = [e["id"] for e in _get(client, url).json()]
    assert len(everything) == 6
    first = _get(client, f"{url}&limit=4&count=true")
    assert first.headers["NGSILD-Results-Count"] == "6"
    assert 'rel="next"' in first.headers["link"]
    second = _get(client, f"{url}&limit=4&offset=4")
    assert "link" not in second.headers
    assert [e["id"] for e in first.json() + second.json()] == everything
    counted = _get(client, f"{url}&limit=0&count=true")
    assert counted.json() == []
    assert counted.headers["NGSILD-Results-Count"] == "6"


def test_temporal_between(client: TestClient) -> None:
    window = "timerel=between&timeAt=2020-03-14T15:00:00Z&endTimeAt=2020-03-14T16:00:00Z"
    body = _get(client, f"{BASE}/temporal/entities/{AQ_A}?{window}").json()
    assert body["id"] == AQ_A
    assert [(i["value"], i["observedAt"]) for i in body["pm25"]] == [
        (50.0, "2020-03-14T15:00:00Z"),
        (60.0, "2020-03-14T15:02:00Z"),
    ]
    assert all(i["type"] == "Property" and i["unitCode"] == "GQ" for i in body["pm25"])
    late = "timerel=between&timeAt=2020-03-14T15:01:00Z&endTimeAt=2020-03-14T16:00:00Z"
    cut = _get(client, f"{BASE}/temporal/entities/{AQ_A}?{late}&attrs=pm10").json()
    assert [i["value"] for i in cut["pm10"]] == [80.0]
    assert "pm25" not in cut
    last = _get(client, f"{BASE}/temporal/entities/{NOISE_A}?lastN=1").json()
    assert [i["value"] for i in last["LAeq"]] == [58.0]
    many = _get(client, f"{BASE}/temporal/entities?type=NoiseLevelObserved&{window}").json()
    assert [[i["value"] for i in e["LAeq"]] for e in many] == [[55.0, 58.0], [40.0, 45.0]]


def test_temporal_cap(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ngsi_ld, "MAX_INSTANCES", 1)
    response = _get(client, f"{BASE}/temporal/entities/{AQ_A}?attrs=pm25", 206)
    assert [i["value"] for i in response.json()["pm25"]] == [50.0]
    assert response.headers["content-range"].startswith("date-time 2020-03-14T15:00:00Z")


def test_errors_are_problem_details(client: TestClient) -> None:
    missing = _problem(client, f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:sdot:X", 404,
                       "ResourceNotFound")  # fmt: skip
    assert "sdot:X" in missing["detail"]
    _problem(client, f"{BASE}/temporal/entities/urn:ngsi-ld:Foo:bar", 404, "ResourceNotFound")
    bad = "BadRequestData"
    assert "idPattern" in _problem(client, f"{BASE}/entities?idPattern=.*", 400, bad)["detail"]
    _problem(client, f"{BASE}/entities", 400, bad)
    _problem(client, f"{BASE}/entities?type=AirQualityObserved&q=pm25~=3", 400, bad)
    _problem(client, f"{BASE}/entities?type=AirQualityObserved&q=pm25>high", 400, bad)
    _problem(client, f"{BASE}/entities?type=AirQualityObserved&limit=5000", 400, bad)
    _problem(client, f"{BASE}/entities?type=AirQualityObserved&georel=within", 400, bad)
    _problem(client, f"{BASE}/entities/not-a-uri", 400, bad)
    _problem(client, f"{BASE}/temporal/entities/{AQ_A}?timerel=between&timeAt=x", 400, bad)
    _problem(client, f"{BASE}/temporal/entities/{AQ_A}?timerel=between"
             "&timeAt=2020-03-15T00:00:00Z", 400, bad)  # fmt: skip
    _problem(client, f"{BASE}/temporal/entities?type=AirQualityObserved&q=pm25>1", 400, bad)
