"""Twin GeoJSON endpoints and OGC API – Features over a store fed with real reference data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import shapely
from fastapi.testclient import TestClient
from shapely.geometry import shape

from citytwin.api import create_app
from citytwin.api import twin as twin_api
from citytwin.api.errors import InvalidParameterError
from citytwin.api.features import city_bbox, parse_bbox
from citytwin.config import Settings
from citytwin.ingest import read_feed
from citytwin.ingest.pipeline import ingest
from citytwin.space.city import bind_sensors, import_buildings, import_districts
from citytwin.store import open_store

KOSTAT = Path("seoul_boundaries") / "kostat" / "2013"
# two sensors in Jamsil (송파구, gu 11240), one in 마포구 (11440); the 9999 is out of range (QC)
READINGS = [
    ("V02Q1940790", "202003150000", 10), ("V02Q1940790", "202003150002", 20),
    ("V02Q1940787", "202003150000", 30), ("V02Q1940787", "202003150002", 9999),
    ("V02Q1940612", "202003150000", 50), ("V02Q1940612", "202003150002", 60),
]  # fmt: skip
JAMSIL = "127.05,37.49,127.15,37.55"


@pytest.fixture(scope="module", params=["memory://", "duckdb://"])
def client(
    request: pytest.FixtureRequest, shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("sdot") / "sdot.csv"
    rows = "\n".join(f"{s},{v},{t}" for s, t, v in READINGS)
    data.write_text(f"시리얼,미세먼지2.5(초미세먼지),측정시간\n{rows}\n", encoding="utf-8")
    with open_store(request.param) as store:
        import_districts(store, shared_data / KOSTAT / "json/seoul_municipalities_geo.json")
        import_buildings(store, shared_data / "osm" / "asanH.osm")
        registry = shared_data / "sdot" / "sensor_longitude_latitude.csv"
        ingest(read_feed("sdot", str(data), registry=str(registry)), store)
        bind_sensors(store)
        with TestClient(create_app(Settings(store_url="memory://"), store=store)) as test_client:
            yield test_client


def _get(client: TestClient, url: str, status: int = 200) -> dict[str, Any]:
    response = client.get(url)
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def _in_seoul(coordinates: list[float]) -> bool:
    lon, lat = coordinates[:2]
    return 126.7 < lon < 127.3 and 37.4 < lat < 37.8


# -- /twin --------------------------------------------------------------------------------------
def test_sensors_carry_latest_values(client: TestClient) -> None:
    response = client.get("/twin/sensors?property=pm25")
    assert response.headers["content-type"].startswith("application/geo+json")
    body = response.json()
    assert body["type"] == "FeatureCollection"
    by_key = {f["id"]: f for f in body["features"]}
    assert set(by_key) == {"sdot:V02Q1940612", "sdot:V02Q1940787", "sdot:V02Q1940790"}
    latest = {k: f["properties"]["latest"]["pm25"]["value"] for k, f in by_key.items()}
    assert latest == {"sdot:V02Q1940612": 60.0, "sdot:V02Q1940787": 9999.0,
                      "sdot:V02Q1940790": 20.0}  # fmt: skip
    flagged = by_key["sdot:V02Q1940787"]["properties"]["latest"]["pm25"]
    assert flagged["flags"] == ["RANGE"]
    assert flagged["time"] == "2020-03-14T15:02:00+00:00"
    assert flagged["unit"]
    for feature in body["features"]:
        assert feature["geometry"]["type"] == "Point"
        assert _in_seoul(feature["geometry"]["coordinates"])
    assert by_key["sdot:V02Q1940790"]["properties"]["gu_code"] == "11240"


def test_sensors_bbox_and_property_filters(client: TestClient) -> None:
    jamsil = _get(client, f"/twin/sensors?bbox={JAMSIL}")
    assert {f["id"] for f in jamsil["features"]} == {"sdot:V02Q1940790", "sdot:V02Q1940787"}
    assert _get(client, "/twin/sensors?property=no_such_thing")["features"] == []


def test_district_choropleth_has_every_gu(client: TestClient) -> None:
    body = _get(client, "/twin/districts?level=gu&property=pm25")
    features = {f["id"]: f for f in body["features"]}
    assert len(features) == 25
    assert all(key.startswith("gu:") for key in features)
    songpa = features["gu:11240"]["properties"]
    assert (songpa["mean"], songpa["max"], songpa["count"]) == (20.0, 20.0, 1)  # 9999 left out
    assert features["gu:11140"]["properties"]["mean"] == 60.0
    jongno = features["gu:11010"]["properties"]
    assert (jongno["mean"], jongno["max"], jongno["count"]) == (None, None, 0)
    polygon = shape(features["gu:11240"]["geometry"])
    assert polygon.geom_type in ("Polygon", "MultiPolygon")
    assert polygon.contains(shapely.Point(127.1, 37.51))  # Jamsil is in Songpa


def test_district_choropleth_hourly(client: TestClient) -> None:
    body = _get(
        client,
        "/twin/districts?level=gu&property=pm25&bucket=hour"
        "&start=2020-03-14T00:00:00Z&end=2020-03-15T00:00:00Z",
    )
    songpa = next(f for f in body["features"] if f["id"] == "gu:11240")["properties"]
    assert songpa["mean"] == pytest.approx(20.0)
    assert songpa["count"] == 3
    assert songpa["buckets"] == [
        {"bucket": "2020-03-14T15:00:00+00:00", "mean": 20.0, "max": 30.0, "count": 3}
    ]
    assert len(body["features"]) == 25
    assert _get(client, "/twin/districts?level=dong&property=pm25")["features"] == []


def test_city_object_district_with_sensors_and_history(client: TestClient) -> None:
    body = _get(client, "/twin/objects/gu:11240?history=true")
    assert body["type"] == "Feature"
    assert body["id"] == "gu:11240"
    assert body["properties"]["name"] == "송파구"
    assert body["properties"]["layer"] == "districts"
    sensors = {s["id"] for s in body["properties"]["sensors"]}
    assert sensors == {"sdot:V02Q1940790", "sdot:V02Q1940787"}
    history = body["properties"]["history"]
    assert history["numberMatched"] == history["numberReturned"] == 4
    assert history["capped"] is False
    values = sorted(o["value"] for o in history["observations"])
    assert values == [10.0, 20.0, 30.0, 9999.0]
    assert "history" not in _get(client, "/twin/objects/gu:11240")["properties"]


def test_city_object_history_is_capped(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(twin_api, "MAX_HISTORY", 3)
    history = _get(client, "/twin/objects/gu:11240?history=true")["properties"]["history"]
    assert (history["numberMatched"], history["numberReturned"]) == (4, 3)
    assert history["capped"] is True
    assert "capped at 3" in history["note"]


def test_city_object_building_by_encoded_key(client: TestClient) -> None:
    songpa = _get(client, "/twin/objects/gu:11240")["properties"]["sensors"]
    building = songpa[0]["properties"]["building"]
    assert building.startswith("osm:")
    body = _get(client, f"/twin/objects/{quote(building, safe='')}")
    assert body["id"] == building
    assert body["properties"]["layer"] == "buildings"
    assert songpa[0]["id"] in {s["id"] for s in body["properties"]["sensors"]}
    assert shape(body["geometry"]).is_valid


def test_twin_errors(client: TestClient) -> None:
    missing = _get(client, "/twin/objects/gu:99999", 404)
    assert missing["parameter"] == "key"
    assert "gu:99999" in missing["message"]
    assert _get(client, "/twin/objects/osm:way%2F1", 404)["parameter"] == "key"
    assert _get(client, "/twin/sensors?bbox=1,2,3", 400)["parameter"] == "bbox"
    assert _get(client, "/twin/sensors?bbox=a,b,c,d", 400)["parameter"] == "bbox"
    assert _get(client, "/twin/sensors?bbox=127,38,126,37", 400)["parameter"] == "bbox"
    assert _get(client, "/twin/districts?level=city&property=pm25", 400)["parameter"] == "level"
    assert _get(client, "/twin/districts?level=gu", 400)["parameter"] == "property"
    bad_bucket = "/twin/districts?level=gu&property=pm25&bucket=week"
    assert _get(client, bad_bucket, 400)["parameter"] == "bucket"
    no_bucket = "/twin/districts?level=gu&property=pm25&start=2020-03-14T00:00:00Z"
    assert _get(client, no_bucket, 400)["parameter"] == "start"
    backwards = "/twin/objects/gu:11240?history=true&start=2020-03-15&end=2020-03-14"
    assert _get(client, backwards, 400)["parameter"] == "end"


# -- OGC API – Features -------------------------------------------------------------------------
def test_collections_list_present_layers_with_extents(client: TestClient) -> None:
    body = _get(client, "/collections")
    ids = [c["id"] for c in body["collections"]]
    assert ids == ["districts", "buildings"]
    districts = body["collections"][0]
    west, south, east, north = districts["extent"]["spatial"]["bbox"][0]
    assert 126.7 < west < 126.8
    assert 37.4 < south < 37.5
    assert 127.1 < east < 127.2
    assert 37.6 < north < 37.8
    one = _get(client, "/collections/buildings")
    assert one["id"] == "buildings"
    assert any(link["rel"] == "items" for link in one["links"])


def test_items_page_through_every_feature_once(client: TestClient) -> None:
    url: str | None = "/collections/buildings/items?limit=500"
    seen: list[str] = []
    matched = None
    while url is not None:
        body = _get(client, url)
        assert body["numberReturned"] == len(body["features"]) <= 500
        matched = body["numberMatched"]
        seen.extend(f["id"] for f in body["features"])
        url = next((link["href"] for link in body["links"] if link["rel"] == "next"), None)
    assert matched is not None
    assert matched > 1000
    assert len(seen) == len(set(seen)) == matched
    default = _get(client, "/collections/districts/items")
    assert default["numberReturned"] == 25  # default limit 100
    assert not [link for link in default["links"] if link["rel"] == "next"]


def test_item_round_trips_with_its_key(client: TestClient) -> None:
    first = _get(client, "/collections/buildings/items?limit=1&offset=10")["features"][0]
    key = first["id"]
    assert "/" in key  # osm:way/…: the path must take it, encoded or not
    encoded = _get(client, f"/collections/buildings/items/{quote(key, safe='')}")
    plain_path = _get(client, f"/collections/buildings/items/{key}")
    for body in (encoded, plain_path):
        assert body["id"] == key
        assert body["properties"] == first["properties"]
        assert body["geometry"] == first["geometry"]
    assert all(_in_seoul(xy) for xy in shape(first["geometry"]).exterior.coords)


def test_items_bbox_returns_only_intersecting_features(client: TestClient) -> None:
    everything = _get(client, "/collections/districts/items")["features"]
    box = shapely.box(*parse_bbox(JAMSIL) or (0, 0, 0, 0))
    expected = {f["id"] for f in everything if shape(f["geometry"]).intersects(box)}
    body = _get(client, f"/collections/districts/items?bbox={JAMSIL}")
    got = {f["id"] for f in body["features"]}
    assert "gu:11240" in got
    assert expected <= got  # the city-CRS envelope holds the WGS84 box
    assert len(got) < 25
    for feature in body["features"]:  # and nothing far away
        assert shape(feature["geometry"]).distance(box) < 0.01


def test_city_bbox_envelope_contains_the_corners() -> None:
    west, south, east, north = city_bbox((126.9, 37.5, 127.1, 37.6), "EPSG:5186")
    assert 180_000 < west < east < 220_000
    assert 540_000 < south < north < 560_000
    with pytest.raises(InvalidParameterError):
        parse_bbox("126.9,37.5,127.1")


def test_features_errors(client: TestClient) -> None:
    unknown = _get(client, "/collections/rivers", 404)
    assert unknown["parameter"] == "collectionId"
    assert "rivers" in unknown["message"]
    assert _get(client, "/collections/road_links/items", 404)["parameter"] == "collectionId"
    missing = _get(client, "/collections/districts/items/gu:1", 404)
    assert missing["parameter"] == "featureId"
    assert "gu:1" in missing["message"]
    assert _get(client, "/collections/districts/items?limit=0", 400)["parameter"] == "limit"
    assert _get(client, "/collections/districts/items?limit=10001", 400)["parameter"] == "limit"
    assert _get(client, "/collections/districts/items?offset=-1", 400)["parameter"] == "offset"
    assert _get(client, "/collections/districts/items?bbox=x", 400)["parameter"] == "bbox"
