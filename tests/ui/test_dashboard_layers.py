"""The dashboard's second increment in headless Chromium against the demo city: the linkage page,
the kriging layer and its uncertainty, sensor detail, the time slider and the scenario runner.

Each run goes through ``scripts/dashboard-check.mjs`` (no console, page, request or HTTP
errors allowed) and is checked against figures computed here from the API's own data: the
catalog file's services, the pixels the distribution image and the AEGL zones must cover, the
number of observations of the clicked sensor in its last 24 hours.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import shapely
import yaml
from numpy.typing import NDArray

from citytwin.api import create_app
from citytwin.config import Settings

# the browser helpers of the first increment's test (import mode "importlib" puts no test folder
# on sys.path, so the module is loaded from its file)
_spec = importlib.util.spec_from_file_location(
    "dashboard_browser", Path(__file__).with_name("test_dashboard.py")
)
assert _spec is not None
assert _spec.loader is not None
browser = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(browser)
CITY_CRS: str = browser.CITY_CRS
Serve = Callable[[Any], AbstractContextManager[str]]
_require_tools = browser._require_tools
check_dashboard = browser.check_dashboard
get_json = browser.get_json
in_view = browser.in_view
metres_per_pixel = browser.metres_per_pixel
rgb_of = browser.rgb_of

CATALOG = Path(__file__).resolve().parents[2] / "src/citytwin/services/presets/catalog.yaml"
STATUSES = {"ok", "no_data", "unchecked", "missing", "gap"}


def serve_demo(serve: Serve, demo_store: str) -> AbstractContextManager[str]:
    app = create_app(Settings(store_url=demo_store))
    return serve(app)


def changed_pixels(before: Path, after: Path) -> int:
    """Pixels whose colour moved by more than anti-aliasing noise between two screenshots."""
    difference = np.abs(rgb_of(before) - rgb_of(after)).max(axis=2)
    return int(np.count_nonzero(difference > 8))


def area_px(shape: shapely.Geometry, bounds: list[list[float]], width_px: int) -> float:
    """Screen pixels a WGS84 polygon covers in a north-up, unpitched view."""
    frame = in_view(gpd.GeoDataFrame(geometry=[shape], crs="EPSG:4326"), bounds)
    metres = float(frame.to_crs(CITY_CRS).area.sum())
    return metres / float(metres_per_pixel(bounds, width_px)) ** 2


def sensor_points(root: str) -> gpd.GeoDataFrame:
    features = get_json(f"{root}/twin/sensors?property=pm25")["features"]
    located = [f for f in features if f["geometry"] is not None]
    return gpd.GeoDataFrame.from_features(located, crs="EPSG:4326")


def disc_pixels(points: gpd.GeoDataFrame, shape: shapely.Geometry, radius: float) -> float:
    """At most the screen area the sensor discs inside ``shape`` can hide."""
    return int(points.within(shape).sum()) * math.pi * radius**2


def test_the_linkage_page_lists_every_service_of_the_catalog(
    demo_store: str, serve: Serve, tmp_path: Path
) -> None:
    _require_tools()
    expected = [service["id"] for service in yaml.safe_load(CATALOG.read_text())["services"]]
    with serve_demo(serve, demo_store) as root:
        report = check_dashboard(f"{root}/ui/", tmp_path / "map.png", "--linkage")

    assert report["errors"] == []
    linkage = report["steps"]["linkage"]
    assert linkage["services"] == expected
    assert len(linkage["statuses"]) == 7 * len(expected)  # the seven CPS functions
    assert {name.removeprefix("status-") for name in linkage["statuses"]} <= STATUSES
    assert linkage["hash"] == "#linkage"


@pytest.mark.parametrize("band", ["mean", "sd"])
def test_the_distribution_layer_covers_its_grid_on_screen(
    demo_store: str, serve: Serve, tmp_path: Path, band: str
) -> None:
    _require_tools()
    with serve_demo(serve, demo_store) as root:
        layer = get_json(f"{root}/layers/distribution?property=pm25&band={band}")
        quad = shapely.Polygon(layer["coordinates"])
        lon, lat = quad.centroid.coords[0]
        # north-up and unpitched, the whole grid in view
        url = f"{root}/ui/#11.5/{lat:.6f}/{lon:.6f}/0/0"
        report = check_dashboard(url, tmp_path / "map.png", "--distribution", band)
        points = sensor_points(root)

    assert report["errors"] == []
    state, step = report["dashboard"], report["steps"]["distribution"]
    assert step["coordinates"] == layer["coordinates"]
    width = rgb_of(tmp_path / "map.png").shape[1]
    grid_px = area_px(quad, state["bounds"], width)
    hidden = disc_pixels(points, quad, state["sensorRadiusPx"])
    changed = changed_pixels(tmp_path / "map.png", tmp_path / "map-distribution.png")
    # roofs above the layer hide a little more; edges anti-alias (lower bound)
    assert 0.9 * grid_px - hidden <= changed <= 1.02 * grid_px
    assert grid_px > 20_000


def test_sensor_detail_replay_and_a_release_scenario(
    demo_store: str, serve: Serve, tmp_path: Path
) -> None:
    _require_tools()
    with serve_demo(serve, demo_store) as root:
        points = sensor_points(root)
        history = get_json(f"{root}/layers/history?property=pm25")
        sensor = points.iloc[loneliest(points)]
        latest = sensor["latest"]["pm25"]
        observed = count_last_day(root, latest["datastream_id"], latest["time"])
        release = quiet_point(points, sensor.geometry)
        lon, lat = sensor.geometry.x, sensor.geometry.y  # the view centres on the sensor
        report = check_dashboard(
            f"{root}/ui/#13/{lat:.6f}/{lon:.6f}/0/0", tmp_path / "map.png",
            "--replay", "2", "--sensor", sensor["thing"],
            "--release", f"{release.x:.6f},{release.y:.6f}",
        )  # fmt: skip
        zones = get_json(f"{root}/layers/release?lon={release.x:.6f}&lat={release.y:.6f}")

    assert report["errors"] == []
    steps = report["steps"]
    assert steps["replay"]["time"] == history["times"][2]
    assert steps["sensor"]["thing"] == sensor["thing"]
    assert steps["sensor"]["points"] == steps["sensor"]["vertices"] == observed
    assert steps["release"]["zones"] == ["AEGL-1", "AEGL-2", "AEGL-3"]
    # the zones are filled on top of everything: they change about the outer zone's area
    state = report["dashboard"]
    outer = shapely.geometry.shape(zones["features"][0]["geometry"])
    expected = area_px(outer, state["bounds"], rgb_of(tmp_path / "map.png").shape[1])
    changed = changed_pixels(tmp_path / "map-replay.png", tmp_path / "map-release.png")
    assert 0.8 * expected <= changed <= 1.3 * expected + 2000  # + outline and panel-free slack
    assert expected > 500


def count_last_day(root: str, datastream_id: int, latest: str) -> int:
    """Observations of a datastream in the 24 hours up to its latest (STA $count)."""
    since = (np.datetime64(latest.replace("+00:00", "")) - np.timedelta64(24, "h")).astype(str)
    query = f"$filter=phenomenonTime%20gt%20{since}Z&$count=true&$top=1"
    body = get_json(f"{root}/v1.1/Datastreams({datastream_id})/Observations?{query}")
    return int(body["@iot.count"])


def loneliest(points: gpd.GeoDataFrame) -> int:
    """The sensor farthest from its nearest neighbour: its disc overlaps no other."""
    metric = points.to_crs(CITY_CRS).geometry
    nearest = [metric.drop(index=i).distance(point).min() for i, point in metric.items()]
    return int(np.argmax(nearest))


def quiet_point(points: gpd.GeoDataFrame, near: shapely.Point) -> shapely.Point:
    """A release point 300–1500 m from ``near`` and at least 150 m from every sensor, so that
    the click neither lands on a sensor nor leaves a tooltip over the map."""
    metric = points.to_crs(CITY_CRS)
    centre = gpd.GeoSeries([near], crs="EPSG:4326").to_crs(CITY_CRS)[0]
    offsets: NDArray[np.float64] = np.arange(-1500.0, 1501.0, 100.0)
    x, y = np.meshgrid(centre.x + offsets, centre.y + offsets)
    candidates = gpd.GeoSeries(shapely.points(x.ravel(), y.ravel()), crs=CITY_CRS)
    nearest_sensor = candidates.apply(lambda p: metric.distance(p).min())
    quiet = candidates[(nearest_sensor >= 150) & (candidates.distance(centre) >= 300)]
    chosen = quiet.iloc[int(np.argmin(quiet.distance(centre)))]
    point: shapely.Point = gpd.GeoSeries([chosen], crs=CITY_CRS).to_crs("EPSG:4326").iloc[0]
    return point


def test_traffic_flows_and_a_road_closure_from_the_map(
    demo_store: str, serve: Serve, tmp_path: Path
) -> None:
    _require_tools()
    with serve_demo(serve, demo_store) as root:
        flows = get_json(f"{root}/layers/traffic")
        busiest = max(flows["features"], key=lambda f: f["properties"]["volume"])
        link = busiest["properties"]["link_id"]
        line = busiest["geometry"]["coordinates"]
        lon, lat = np.mean([line[0], line[-1]], axis=0)  # the view centres on the street
        report = check_dashboard(
            f"{root}/ui/#15/{lat:.6f}/{lon:.6f}/0/0", tmp_path / "map.png",
            "--traffic", "--close", link,
        )  # fmt: skip
        clicked = report["steps"]["closure"]["closed"]
        closure = get_json(f"{root}/layers/closure?link={clicked[0]}")

    assert report["errors"] == []
    assert report["steps"]["traffic"]["links"] == len(flows["features"])
    closed = {f["properties"]["link_id"] for f in closure["features"] if f["properties"]["closed"]}
    assert link in closed  # the click hit the street: this direction or its twin
    assert set(clicked) <= closed
    step = report["steps"]["closure"]
    assert step["changed"] == len(closure["features"]) - len(closed)
    assert step["vehicleHoursChange"] == closure["vehicleHoursChange"]
    # the closed street is drawn dashed black across the middle of the view
    centre = rgb_of(tmp_path / "map-closure.png")
    h, w = centre.shape[0] // 2, centre.shape[1] // 2
    window = centre[h - 10 : h + 11, w - 10 : w + 11].max(axis=2)
    before = rgb_of(tmp_path / "map-traffic.png")[h - 10 : h + 11, w - 10 : w + 11].max(axis=2)
    assert np.count_nonzero(window < 12) > 20
    assert np.count_nonzero(before < 12) == 0
