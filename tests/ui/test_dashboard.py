"""The operator dashboard in headless Chromium against a running demo server.

``scripts/dashboard-check.mjs`` drives Debian's ``/usr/bin/chromium`` (software WebGL) with
playwright-core; nothing may be fetched beyond the server, and every console error, page error,
failed request or HTTP error fails the test. The screenshot of the map is checked against figures
computed here from the API's own data: the violet roofs must cover at least most of the building
footprints in view, and the sensor discs match the number of sensors in view.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from matplotlib.image import imread
from numpy.typing import NDArray

from citytwin.api import create_app, ui
from citytwin.config import Settings
from citytwin.control.audit import AuditLog
from citytwin.control.config import parse_control
from citytwin.control.dispatcher import Controller
from citytwin.control.emulated import attach_city, detach_city
from citytwin.emulator.live import LiveCity, LiveSensor
from citytwin.ui import STATIC_DIR

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM = Path("/usr/bin/chromium")
SCRIPT = REPO / "scripts" / "dashboard-check.mjs"
CITY_CRS = "EPSG:5186"
OPERATOR = "ops-4"
DONG = "1111051"
CONTROL = {
    "actuators": [{"match": "spray-truck:*", "url": "emulated://ui-test"}],
    "rules": [{
        "name": "dong-pm25", "department": "environment",
        "when": {"property": "pm25", "scope": "dong", "window": "10min", "on": {"above": 75}},
        "actions": [{"task": {"actuator": "spray-truck:{dong}", "command": "spray",
                              "parameters": {"minutes": 30}}}],
    }],
}  # fmt: skip
Serve = Callable[[Any], AbstractContextManager[str]]


def _require_tools() -> None:
    """Skip locally when Chromium, node, playwright-core or the bundle is missing; fail in CI."""
    missing = [
        what
        for what, present in [
            (f"{CHROMIUM} (Debian package chromium)", CHROMIUM.is_file()),
            ("node", shutil.which("node") is not None),
            ("node_modules/playwright-core", (REPO / "node_modules" / "playwright-core").is_dir()),
            (f"the bundle {STATIC_DIR / 'app.js'}", (STATIC_DIR / "app.js").is_file()),
        ]
        if not present
    ]
    if missing:
        build = f"scripts/system-deps.sh chromium, {ui.BUILD_COMMAND}"
        message = f"missing {', '.join(missing)}: run {build}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def check_dashboard(url: str, png: Path, *extra: str) -> dict[str, Any]:
    """Run the browser check; its JSON report."""
    args = ["node", str(SCRIPT), url, str(png), "--width", "1200", "--height", "800", *extra]
    result = subprocess.run(
        args, capture_output=True, text=True, cwd=REPO, timeout=150, check=False
    )
    assert result.returncode in (0, 1), f"dashboard-check.mjs failed to run:\n{result.stderr}"
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def rgb_of(png: Path) -> NDArray[np.int16]:
    pixels = imread(png)  # float RGB(A) in 0..1
    return np.round(pixels[..., :3] * 255).astype(np.int16)


def building_pixels(rgb: NDArray[np.int16]) -> int:
    """Violet roofs (#7b61ff, lit): blue well above green, red above green. The choropleth's
    steel blues have red below green; the sensors' greens to reds have little blue."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return int(np.count_nonzero((b - g > 100) & (r > g)))


def sensor_pixels(rgb: NDArray[np.int16]) -> int:
    """Sensor fills (green → yellow → red ramp): red or green well above blue."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    top = np.maximum(r, g)
    return int(np.count_nonzero((top - b > 60) & (top > 120)))


def in_view(frame: gpd.GeoDataFrame, bounds: list[list[float]]) -> gpd.GeoDataFrame:
    (west, south), (east, north) = bounds
    clipped: gpd.GeoDataFrame = gpd.clip(frame, shapely.box(west, south, east, north))
    return clipped


def metres_per_pixel(bounds: list[list[float]], width_px: int) -> float:
    """Ground metres per screen pixel across the middle of a north-up, unpitched view."""
    (west, south), (east, north) = bounds
    middle = (south + north) / 2
    edge = gpd.GeoSeries(shapely.points([west, east], [middle, middle]), crs="EPSG:4326")
    ends = edge.to_crs(CITY_CRS)
    return float(ends.iloc[0].distance(ends.iloc[1])) / width_px


def test_map_shows_buildings_and_sensors_without_errors(
    demo_store: str, serve: Serve, tmp_path: Path
) -> None:
    _require_tools()
    app = create_app(Settings(store_url=demo_store))
    with serve(app) as root:
        collection = get_json(f"{root}/collections/buildings/items?limit=10000")
        sensors = get_json(f"{root}/twin/sensors?property=pm25")
        buildings = gpd.GeoDataFrame.from_features(collection["features"], crs="EPSG:4326")
        middle = buildings.to_crs(CITY_CRS).centroid.union_all().centroid
        lon, lat = gpd.GeoSeries([middle], crs=CITY_CRS).to_crs("EPSG:4326").iloc[0].coords[0]
        # north-up and unpitched, so that roofs cover at least their footprints on screen
        report = check_dashboard(f"{root}/ui/#15/{lat:.6f}/{lon:.6f}/0/0", tmp_path / "map.png")

    assert report["errors"] == []
    assert report["ok"] is True
    state = report["dashboard"]
    assert state["buildings"] == collection["numberMatched"] == len(buildings)
    located = [f for f in sensors["features"] if f["geometry"] is not None]
    assert state["sensorsDrawn"] == len(located)
    assert "제어 기능이 설정되지 않았습니다" in report["panel"]  # Korean by default, control off

    rgb = rgb_of(tmp_path / "map.png")
    scale = metres_per_pixel(state["bounds"], rgb.shape[1])
    radius = state["sensorRadiusPx"]
    points = in_view(gpd.GeoDataFrame.from_features(located, crs="EPSG:4326"), state["bounds"])
    roofs = in_view(buildings, state["bounds"]).to_crs(CITY_CRS)
    roof_pixels = roofs.area.sum() / scale**2
    # a sensor disc drawn over a roof hides at most its own area of it
    discs = points.to_crs(CITY_CRS).buffer(radius * scale)
    hidden = int(discs.intersects(roofs.union_all()).sum()) * math.pi * radius**2
    # roofs nearer the camera look a little larger, and walls show towards the edges (upper
    # bound); anti-aliased edges lose a few pixels (lower bound)
    assert 0.8 * roof_pixels - hidden <= building_pixels(rgb) <= 1.3 * roof_pixels
    assert roof_pixels > 1000
    # the dark 1 px rim takes about the outer pixel ring; sensors close together overlap
    assert 0.5 * len(points) * math.pi * (radius - 1) ** 2 <= sensor_pixels(rgb)
    assert sensor_pixels(rgb) <= len(points) * math.pi * radius**2
    assert len(points) >= 5


def observe_high_pm25(controller: Controller) -> str:
    """Two readings above 75 µg/m³ in one dong: the rule asks for a spray truck, with approval."""
    times = pd.date_range("2026-06-01 09:00", periods=2, freq="10min", tz="UTC")
    readings = {"property": "pm25", "sensor": "s1", "dong": DONG, "gu": "11110", "time": times}
    controller.observe(pd.DataFrame({**readings, "value": [90.0, 91.0]}))
    (task,) = controller.tasks()
    return task.id


def test_an_operator_approves_a_task_from_the_panel(
    demo_store: str, serve: Serve, tmp_path: Path
) -> None:
    _require_tools()
    audit = AuditLog(tmp_path / "audit.jsonl")
    controller = Controller(parse_control(CONTROL), audit=audit, sinks=())
    task_id = observe_high_pm25(controller)
    settings = Settings(store_url=demo_store, api_tokens=(f"{OPERATOR}=operator@op-kim",))
    app = create_app(settings, audit=audit, control=controller)
    reason = "CCTV shows dust on the road"
    city = LiveCity([LiveSensor("ui-s1", 127.0, 37.5, "11110", DONG, "ui-dong")], seed=3)
    untouched = copy.deepcopy(city)
    attach_city("ui-test", city)  # the emulated truck of this dong acts on this city
    with serve(app) as root:
        waiting = get_json(f"{root}/control/tasks?state=awaiting_approval")
        assert [t["id"] for t in waiting] == [task_id]
        report = check_dashboard(
            f"{root}/ui/", tmp_path / "map.png",
            "--approve", task_id, "--token", OPERATOR, "--reason", reason,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while (task := get_json(f"{root}/control/tasks/{task_id}"))["state"] != "done":
            assert time.monotonic() < deadline, f"the task did not reach the city: {task}"
            time.sleep(0.05)
    detach_city("ui-test")
    now = datetime.now(UTC)
    sprayed, unsprayed = (c.step(now)[0]["values"]["pm25"] for c in (city, untouched))

    assert report["errors"] == []
    assert report["ok"] is True
    assert report["approval"] == {"taskId": task_id, "tokenKept": OPERATOR}
    assert "대기 중인 작업이 없습니다" in report["panel"]  # the queue is empty afterwards
    assert "sprayed" in task["detail"]  # the emulated truck acted and reported done
    assert sprayed < 0.85 * unsprayed  # and the city's PM2.5 there is lower than untouched
    approved = next(step for step in task["history"] if step["to"] == "approved")
    assert (approved["actor"], approved["reason"]) == ("op-kim", reason)
    assert audit.verify().ok
