"""The dashboard's map layers (``citytwin.api.layers``) against the demo city.

Expected figures are computed here independently: the grid from its definition (the districts'
extent in EPSG:5186 divided into 100 m cells), hourly means from the raw observations, the AEGL
levels of chlorine from the EPA's published values.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Iterator
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from fastapi.testclient import TestClient
from matplotlib.image import imread
from pyproj import Transformer

from citytwin.api import create_app
from citytwin.config import Settings

CITY_CRS = "EPSG:5186"
CELL = 100.0
#: EPA AEGL values for chlorine, 60 minutes (ppm): AEGL-1 0.50, AEGL-2 2.0, AEGL-3 20
CHLORINE_AEGL_PPM = {"AEGL-1": 0.5, "AEGL-2": 2.0, "AEGL-3": 20.0}


@pytest.fixture(scope="module")
def client(demo_store: str) -> Iterator[TestClient]:
    app = create_app(Settings(store_url=demo_store))
    with TestClient(app) as test_client:
        yield test_client


def districts_in_city_crs(client: TestClient) -> gpd.GeoDataFrame:
    body = client.get("/collections/districts/items", params={"limit": 10000}).json()
    frame = gpd.GeoDataFrame.from_features(body["features"], crs="EPSG:4326")
    return frame.to_crs(CITY_CRS)


def decode(data_url: str) -> np.ndarray:
    raw = base64.b64decode(data_url.removeprefix("data:image/png;base64,"))
    return np.round(imread(io.BytesIO(raw)) * 255).astype(int)


def test_the_distribution_image_is_pinned_to_the_corners_of_the_city_grid(
    client: TestClient,
) -> None:
    layer = client.get("/layers/distribution", params={"property": "pm25"}).json()

    outlines = districts_in_city_crs(client)
    # to the centimetre: the GeoJSON round trip through WGS84 moves coordinates by micrometres
    minx, miny, maxx, maxy = np.round(outlines.total_bounds, 2)
    width, height = math.ceil((maxx - minx) / CELL), math.ceil((maxy - miny) / CELL)
    north, south, east = miny + height * CELL, miny, minx + width * CELL
    to_wgs84 = Transformer.from_crs(CITY_CRS, "EPSG:4326", always_xy=True)
    lon, lat = to_wgs84.transform([minx, east, east, minx], [north, north, south, south])
    assert np.allclose(layer["coordinates"], np.column_stack([lon, lat]), atol=1e-7)
    pixels = decode(layer["image"])
    assert pixels.shape == (height, width, 4)
    # transparent exactly where a cell's centre lies outside every district
    xs = minx + (np.arange(width) + 0.5) * CELL
    ys = north - (np.arange(height) + 0.5) * CELL
    x, y = np.meshgrid(xs, ys)
    inside = shapely.contains_xy(outlines.union_all(), x, y)
    assert np.array_equal(pixels[..., 3] == 255, inside)
    assert layer["sensors"] == 149  # pm25 sensors with a usable value in the last hour
    assert layer["legend"]["unit"] == "µg/m³"


def test_the_png_format_carries_the_same_corners_in_a_header(client: TestClient) -> None:
    params = {"property": "pm25", "band": "sd"}
    described = client.get("/layers/distribution", params=params).json()
    picture = client.get("/layers/distribution", params={**params, "format": "png"})
    assert picture.headers["content-type"] == "image/png"
    assert json.loads(picture.headers["x-image-coordinates"]) == described["coordinates"]
    assert base64.b64decode(described["image"].split(",")[1]) == picture.content


@pytest.mark.parametrize("band", ["mean", "sd"])
def test_the_colours_run_from_the_legends_first_to_its_last_stop(
    client: TestClient, band: str
) -> None:
    layer = client.get("/layers/distribution", params={"property": "pm25", "band": band}).json()
    pixels = decode(layer["image"])[..., :3]
    ends = [layer["legend"]["colours"][i] for i in (0, -1)]
    ends_rgb = [[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in ends]
    flat = {tuple(p) for p in pixels.reshape(-1, 3)}
    assert all(tuple(rgb) in flat for rgb in ends_rgb)  # the range's ends are both painted
    assert layer["legend"]["min"] < layer["legend"]["max"]
    if band == "sd":  # a standard deviation in the property's unit, never negative
        assert layer["legend"]["min"] >= 0


def test_an_unknown_property_is_a_400_naming_it(client: TestClient) -> None:
    answer = client.get("/layers/distribution", params={"property": "pm99"})
    assert answer.status_code == 400
    assert "pm99" in answer.json()["message"]


def test_history_rows_are_the_hourly_means_of_the_raw_observations(client: TestClient) -> None:
    history = client.get("/layers/history", params={"property": "pm25"}).json()
    sensors = client.get("/twin/sensors", params={"property": "pm25"}).json()["features"]
    feature = sensors[0]
    stream = feature["properties"]["latest"]["pm25"]["datastream_id"]
    observations = client.get(
        f"/v1.1/Datastreams({stream})/Observations",
        params={"$top": 10000, "$select": "phenomenonTime,result,resultQuality"},
    ).json()["value"]
    frame = pd.DataFrame(observations)
    frame["hour"] = pd.to_datetime(frame["phenomenonTime"]).dt.floor("h")
    qualities = frame.get("resultQuality", pd.Series([None] * len(frame)))
    usable = frame[qualities.map(_not_suspect).to_numpy()]
    expected = usable.groupby("hour")["result"].mean()

    row = history["values"][history["things"].index(feature["properties"]["thing"])]
    got = pd.Series(row, index=pd.to_datetime(history["times"])).dropna()
    assert len(history["things"]) == len(sensors)
    assert list(got.index) == list(expected.index)
    assert np.allclose(got.to_numpy(), expected.to_numpy())


def _not_suspect(quality: Any) -> bool:
    """STA resultQuality lists the QC flag names (absent without flags); the rollups leave out
    range, spike, stuck, drift and future values (``citytwin.twin.state.SUSPECT``)."""
    names = quality if isinstance(quality, list) else []
    return not {"RANGE", "SPIKE", "STUCK", "DRIFT", "FUTURE"} & set(names)


def test_a_release_gives_nested_aegl_zones_downwind(client: TestClient) -> None:
    sensor = client.get("/twin/sensors", params={"property": "pm25"}).json()["features"][0]
    lon, lat = sensor["geometry"]["coordinates"]
    zones = client.get("/layers/release", params={"lon": lon, "lat": lat}).json()

    frame = gpd.GeoDataFrame.from_features(zones["features"], crs="EPSG:4326").to_crs(CITY_CRS)
    levels = dict(zip(frame["level"], frame["threshold_ppm"], strict=True))
    assert levels == CHLORINE_AEGL_PPM
    by_level = frame.set_index("level").geometry
    assert by_level["AEGL-1"].buffer(1.0).contains(by_level["AEGL-3"])
    # the plume goes where the wind blows to: opposite the direction it comes from
    source = gpd.GeoSeries(shapely.points([lon], [lat]), crs="EPSG:4326").to_crs(CITY_CRS)[0]
    centre = by_level["AEGL-1"].centroid
    bearing = math.degrees(math.atan2(centre.x - source.x, centre.y - source.y)) % 360
    downwind = (zones["windDirection"] + 180) % 360
    assert abs((bearing - downwind + 180) % 360 - 180) < 30
    assert zones["substance"] == "chlorine"
    # the buildings whose representative point lies in each zone, counted here from the layer
    items = client.get("/collections/buildings/items", params={"limit": 10000}).json()
    buildings = gpd.GeoDataFrame.from_features(items["features"], crs="EPSG:4326").to_crs(CITY_CRS)
    inside = {
        level: int(zone.contains(buildings.representative_point()).sum())
        for level, zone in by_level.items()
    }
    assert dict(zip(frame["level"], frame["buildings"], strict=True)) == inside
    assert zones["buildingsInAegl1"] == inside["AEGL-1"]


def stored_links(client: TestClient) -> pd.DataFrame:
    """Every stored road link's properties, page by page (OGC API Features ``next`` links)."""
    rows: list[dict[str, Any]] = []
    url: str | None = "/collections/road_links/items?limit=10000"
    while url:
        body = client.get(url).json()
        rows += [f["properties"] for f in body["features"]]
        url = next((link["href"] for link in body["links"] if link["rel"] == "next"), None)
    return pd.DataFrame(rows)


def test_traffic_flows_cover_the_arterials_and_conserve_nothing_but_capacity(
    client: TestClient,
) -> None:
    links = stored_links(client)
    arterials = links[links["road_class"].isin(["primary", "secondary"])]

    body = client.get("/layers/traffic").json()

    flows = pd.DataFrame([f["properties"] for f in body["features"]])
    assert sorted(flows["link_id"]) == sorted(arterials["link_id"].astype(str))
    assert body["zones"] == len(districts_in_city_crs(client).query("level == 'dong'"))
    assert body["trips"] > 0
    assert body["relativeGap"] <= 1e-4
    capacity = arterials.set_index(arterials["link_id"].astype(str))["capacity_veh_h"]
    np.testing.assert_allclose(
        flows["vc"], flows["volume"] / flows["link_id"].map(capacity), atol=0.01
    )
    assert {f["geometry"]["type"] for f in body["features"]} == {"LineString"}


def test_closing_a_street_closes_both_directions_and_moves_its_traffic(
    client: TestClient,
) -> None:
    flows = pd.DataFrame(
        [f["properties"] for f in client.get("/layers/traffic").json()["features"]]
    )
    busiest = flows.iloc[int(flows["volume"].to_numpy().argmax())]

    body = client.get("/layers/closure", params={"link": busiest["link_id"]}).json()

    changed = pd.DataFrame([f["properties"] for f in body["features"]])
    closed = changed[changed["closed"]]
    assert body["closed"] == [busiest["link_id"]]
    assert body["closedLinks"] == len(closed) == 2  # the demo's streets are two-way
    assert busiest["link_id"] in set(closed["link_id"])
    assert (closed["volume_after"] == 0).all()
    assert closed["volume"].max() == pytest.approx(busiest["volume"], abs=0.01)
    # only changes that matter are sent: 10 veh/h and 5 % of the closed street's volume
    assert body["minimumChangeShown"] == pytest.approx(max(10.0, 0.05 * busiest["volume"]), abs=0.1)
    moved = changed.loc[~changed["closed"], "volume_change"]
    assert (moved.abs() >= body["minimumChangeShown"] - 0.01).all()
    assert moved.max() > 0.5 * busiest["volume"]  # the main detour takes most of it
    assert body["vehicleHoursChange"] == pytest.approx(
        body["vehicleHours"] - body["vehicleHoursBase"], abs=0.11
    )


def test_closing_an_unknown_street_is_a_400_naming_it(client: TestClient) -> None:
    response = client.get("/layers/closure", params={"link": "no-such-link"})
    assert response.status_code == 400
    assert "no-such-link" in response.json()["message"]
