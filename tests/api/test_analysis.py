"""``/analysis`` on the demo store: the same services as ``citytwin analyze``."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator

import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient
from PIL import Image

from citytwin.api.app import create_app
from citytwin.config import Settings
from citytwin.services.analyses import distribution_map
from citytwin.store import open_store


@pytest.fixture(scope="module")
def client(demo_store: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(store_url=demo_store))) as opened:
        yield opened


def test_map_png_and_geotiff_equal_the_service_result(client: TestClient, demo_store: str) -> None:
    png = client.get("/analysis/map", params={"property": "pm25"})
    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(png.content)) as picture:
        assert picture.size == (1200, 1000)
    params: dict[str, str | int] = {
        "property": "pm25",
        "format": "tif",
        "method": "idw",
        "cell": 250,
    }
    tif = client.get("/analysis/map", params=params)
    assert tif.headers["content-type"] == "image/tiff"
    with rasterio.MemoryFile(tif.content) as memory, memory.open() as raster:
        served = raster.read(1)
        assert raster.count == 1  # IDW has no variance band
        assert raster.res == (250.0, 250.0)
    with open_store(demo_store) as store:
        expected = distribution_map(store, "pm25", method="idw", cell=250)
    np.testing.assert_allclose(served, expected.mean.astype(np.float32), equal_nan=True)


def test_hotspots_geojson(client: TestClient) -> None:
    answer = client.get("/analysis/hotspots", params={"property": "pm25", "by": "gu"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/geo+json"
    features = json.loads(answer.content)["features"]
    assert features
    for feature in features:
        lon, lat = feature["geometry"]["coordinates"][0][0][:2]  # WGS84, lon first
        assert 126 < lon < 128
        assert 37 < lat < 38


def test_anomalies_and_noise_as_json(client: TestClient) -> None:
    anomalies = client.get("/analysis/anomalies", params={"property": "pm25"})
    assert anomalies.status_code == 200
    body = anomalies.json()
    assert set(body["readings"]) == {"normal", "fault", "event"}
    assert body["numberReturned"] == len(body["episodes"])
    for episode in body["episodes"]:
        assert episode["kind"] in ("fault", "event")
        assert (episode["thing"] is None) == (episode["kind"] == "event")
    noise = client.get("/analysis/noise", params={"periods": "korea"})
    assert noise.status_code == 200
    stations = noise.json()["stations"]
    assert stations
    assert all({"Lday", "Lnight", "Ldn"} <= set(s) for s in stations)
    levels = [s["Lday"] for s in stations if s["Lday"] is not None]
    assert all(30 < level < 90 for level in levels)
    assert not any(isinstance(v, float) and math.isnan(v) for s in stations for v in s.values())


def test_bad_parameters_are_400_naming_them(client: TestClient) -> None:
    unknown = client.get("/analysis/map", params={"property": "pm99"})
    assert unknown.status_code == 400
    assert "pm99" in unknown.text
    tiny = client.get("/analysis/map", params={"property": "pm25", "cell": 1})
    assert tiny.status_code == 400
    assert "cell" in tiny.text


def test_forecast_needs_enough_history(client: TestClient) -> None:
    """The demo holds one day; a forecast needs nine: a 400 that says so, not a poor answer."""
    anomalies = client.get("/analysis/anomalies", params={"property": "pm25"}).json()
    thing = next(e["thing"] for e in anomalies["episodes"] if e["thing"])
    answer = client.get("/analysis/forecast", params={"property": "pm25", "thing": thing})
    assert answer.status_code == 400
    assert "at least 216 hours" in answer.text
    both = client.get("/analysis/forecast", params={"property": "pm25"})
    assert both.status_code == 400
    assert "exactly one" in both.text
