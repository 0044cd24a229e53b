"""``citytwin simulate …``: assignment on the TNTP references, a chemical release and the
sunlight what-if on the demo city."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import rasterio
import shapely
from typer.testing import CliRunner

from citytwin.cli import app
from citytwin.space.io.tntp import read_tntp_flows

runner = CliRunner()
BEST_KNOWN_SIOUX_FALLS = 4_231_335.287  # the TNTP README's best-known objective


def _figure(output: str, name: str) -> float:
    match = re.search(rf"{name} ([\d,.e+-]+)", " ".join(output.split()))
    assert match, output
    return float(match.group(1).replace(",", "").rstrip(";"))


def test_assignment_reaches_the_best_known_objective(shared_data: Path, tmp_path: Path) -> None:
    sioux = shared_data / "tntp" / "SiouxFalls"
    out = tmp_path / "flows.csv"
    result = runner.invoke(
        app, ["simulate", "assignment", "--network", str(sioux), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    objective = _figure(result.output, "Beckmann objective")
    assert objective == pytest.approx(BEST_KNOWN_SIOUX_FALLS, rel=1e-5)
    assert _figure(result.output, "relative gap") <= 1e-5
    flows = pd.read_csv(out)
    assert list(flows.columns) == ["from", "to", "volume", "cost"]
    best = read_tntp_flows(sioux / "SiouxFalls_flow.tntp")
    assert len(flows) == len(best)
    assert flows["volume"].sum() == pytest.approx(best["volume"].sum(), rel=1e-3)

    closed = runner.invoke(
        app, ["simulate", "assignment", "--network", str(sioux), "--out", str(tmp_path / "c.csv"),
              "--close", "10-16", "--close", "16-10"],
    )  # fmt: skip
    assert closed.exit_code == 0, closed.output
    assert _figure(closed.output, "total system travel time") > _figure(
        result.output, "total system travel time"
    )
    assert len(pd.read_csv(tmp_path / "c.csv")) == len(best) - 2
    bad = runner.invoke(
        app, ["simulate", "assignment", "--network", str(sioux), "--close", "10x16"]
    )
    assert bad.exit_code == 2
    assert "--close #1 '10x16'" in bad.output


def test_chemical_release_zones_and_exposure(demo_store: str, tmp_path: Path) -> None:
    out = tmp_path / "release"
    args = ["simulate", "release", "--substance", "chlorine", "--rate", "200", "--at",
            "127.0,37.53", "--wind-speed", "3", "--wind-direction", "270", "--stability", "D",
            "--extent", "3000", "--cell", "20", "-o", str(out), "-s", demo_store]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    with rasterio.open(out / "concentration.tif") as raster:
        assert raster.crs.to_epsg() == 5186
        assert raster.res == (20.0, 20.0)
        peak = float(raster.read(1).max())
    assert peak > 0
    zones = json.loads((out / "zones.geojson").read_text(encoding="utf-8"))["features"]
    shapes = {f["properties"]["level"]: shapely.geometry.shape(f["geometry"]) for f in zones}
    assert shapes["AEGL-2"].difference(shapes["AEGL-1"]).area < 1e-12  # nested zones
    centroid = shapes["AEGL-1"].centroid
    assert centroid.x > 127.0  # a westerly wind carries the plume east of the source
    exposure = pd.read_csv(out / "exposure.csv")
    buildings = dict(zip(exposure["level"], exposure["buildings"], strict=True))
    assert buildings["AEGL-1"] >= buildings["AEGL-2"] >= buildings["AEGL-3"]
    assert (out / "plume.png").stat().st_size > 10_000
    calm = runner.invoke(app, [*args[:9], "--wind-speed", "0", *args[11:]])
    assert calm.exit_code == 2
    assert "wind" in calm.output


def test_sunlight_loss_of_a_proposed_tower(demo_store: str, tmp_path: Path) -> None:
    """A 90 m tower 60 m south of a stored building takes some of its winter sun."""
    from citytwin.space.crs import to_wgs84
    from citytwin.space.layers import to_frame
    from citytwin.store import open_store

    with open_store(demo_store) as store:
        buildings = to_frame(store.features("buildings"), crs="EPSG:5186")
    target = buildings.iloc[0]
    south_edge = target.geometry.bounds[1]
    lon, lat = to_wgs84(target.geometry.centroid.x, south_edge - 60.0)  # 30 × 30 m, 60 m south
    out = tmp_path / "sun"
    args = ["simulate", "sunlight", "--at", f"{float(lon)},{float(lat)}", "--height", "90",
            "--radius", "250",
            "--day", "2024-12-21", "-o", str(out), "-s", demo_store]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "sunlight_loss.csv")
    assert (table["hours_lost"] >= -1e-9).all()  # adding a building never adds sun
    assert (table["hours_lost"] <= 6.0 + 1e-9).all()  # 09–15 is six hours
    assert (out / "sunlight_loss.png").exists()
    lost = dict(zip(table["key"], table["hours_lost"], strict=True))
    assert lost[target["key"]] > 0


def test_rainfall_flood_on_the_demo_dem(demo_store: str, tmp_path: Path) -> None:
    dem = Path(demo_store.removeprefix("duckdb:///")).parent / "city" / "dem.tif"
    out = tmp_path / "flood"
    args = ["simulate", "flood", "--dem", str(dem), "--intensity", "100", "--duration", "2",
            "-o", str(out), "-s", demo_store]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    with rasterio.open(out / "depth.tif") as raster:
        depth = raster.read(1)
        cell = raster.res[0]
        assert raster.crs.to_epsg() == 5186
    ponded = _figure(result.output, "ponded")
    assert float(depth.sum()) * cell**2 == pytest.approx(ponded, rel=1e-3, abs=1.0)
    rain = _figure(result.output, "rain")
    with rasterio.open(dem) as terrain:
        area = terrain.width * terrain.height * terrain.res[0] * terrain.res[1]
    assert rain == pytest.approx(0.2 * area, rel=1e-6)  # 100 mm/h × 2 h on every cell
    flooded = json.loads((out / "flooded_buildings.geojson").read_text(encoding="utf-8"))
    assert all(f["properties"]["depth_max_m"] >= 0.1 for f in flooded["features"])


def test_release_takes_the_wind_from_the_nearest_sensors(demo_store: str, tmp_path: Path) -> None:
    args = ["simulate", "release", "--substance", "ammonia", "--rate", "50", "--at",
            "127.0,37.53", "--when", "2020-03-15T14:00+09:00", "--extent", "2000",
            "-o", str(tmp_path / "r"), "-s", demo_store]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "(nearest sensors)" in result.output
    assert 0 < _figure(result.output, "wind") < 30  # m/s, from the demo's S-DoT anemometers


def test_city_traffic_flows_and_a_closure(demo_store: str, tmp_path: Path) -> None:
    args = ["simulate", "city-traffic", "--store", demo_store, "--out", str(tmp_path)]
    base = runner.invoke(app, args)
    assert base.exit_code == 0, base.output
    flows = json.loads((tmp_path / "flows.geojson").read_text())["features"]
    volumes = pd.DataFrame([f["properties"] for f in flows])
    busiest = volumes.iloc[int(volumes["volume"].to_numpy().argmax())]
    assert busiest["link_id"] in base.output  # the busiest-links table
    assert {"primary", "secondary"} == set(volumes["road_class"])  # the demo's arterials

    closed = runner.invoke(app, [*args, "--close", str(busiest["link_id"])])

    assert closed.exit_code == 0, closed.output
    changes = json.loads((tmp_path / "closure.geojson").read_text())["features"]
    table = pd.DataFrame([f["properties"] for f in changes])
    shut = table[table["closed"]]
    assert len(shut) == 2  # both directions
    assert (shut["volume_after"] == 0).all()
    assert (
        table.loc[~table["closed"], "volume_change"].clip(lower=0).sum() >= 0.99 * busiest["volume"]
    )
    assert re.search(r"closed \S+: [+-][\d,.]+ vehicle-hours", closed.output)
    assert (tmp_path / "closure.png").read_bytes()[:4] == b"\x89PNG"

    bad = runner.invoke(app, [*args, "--close", "no-such-street"])
    assert bad.exit_code == 2  # a domain error: one line, exit 2
    assert "no-such-street" in bad.output
    assert "Traceback" not in bad.output
