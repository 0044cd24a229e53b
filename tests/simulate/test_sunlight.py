"""Hours of direct sun on the ground and façades, and the what-if of a proposed building."""

from __future__ import annotations

import math
from datetime import date, time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Transformer

from citytwin.analysis.grid import Grid
from citytwin.errors import ValidationError
from citytwin.simulate.shadow import shadow_polygons
from citytwin.simulate.sun import solar_position
from citytwin.simulate.sunlight import FACADE_OFFSET, sunlight_hours, sunlight_loss
from citytwin.space.buildings import load_buildings

CRS = "EPSG:5186"  # Korea 2000 / Central Belt 2010: central meridian 127°E
X0, Y0 = 200000.0, 550000.0  # about 37.56°N, 127.0°E: central Seoul
SOLSTICE = date(2025, 12, 21)  # the winter solstice (동지) of 2025


def layer(*rows: tuple[str, float, shapely.Geometry]) -> gpd.GeoDataFrame:
    """Buildings ``(key, height, footprint)``, footprints relative to (X0, Y0)."""
    geometry = [
        shapely.transform(shape, lambda xy: xy + np.array([X0, Y0])) for _, _, shape in rows
    ]
    frame = {"key": [key for key, _, _ in rows], "height": [h for _, h, _ in rows]}
    return gpd.GeoDataFrame(frame, geometry=geometry, crs=CRS)


def local_grid(minx: float, miny: float, maxx: float, maxy: float, cell: float) -> Grid:
    return Grid.covering((X0 + minx, Y0 + miny, X0 + maxx, Y0 + maxy), cell=cell)


# --- hours of direct sun -------------------------------------------------------------------------


def test_open_ground_gets_every_hour_of_the_window() -> None:
    # Seoul sunrise on 21 Dec is 07:43 and sunset 17:17 (KASI), so 09–15 is all daylight
    block = layer(("a", 20.0, shapely.box(0, 0, 20, 20)))
    sun = sunlight_hours(block, local_grid(-100, -100, 120, 120, 20.0), SOLSTICE, step_minutes=15)
    assert sun.ground[-1, 0] == 6.0  # south-west corner, out of reach of the shadow
    assert np.isnan(sun.ground).sum() == 1  # the one cell under the footprint
    assert sun.buildings["best"].tolist() == [6.0]  # the south wall
    assert 0 < sun.buildings["hours"].to_numpy()[0] < 6  # the north wall gets none


def test_a_proposed_tower_north_of_a_house_steals_nothing_but_one_south_does() -> None:
    house = layer(("house", 10.0, shapely.box(0, 0, 20, 20)))
    grid = local_grid(-100, -200, 120, 220, 20.0)
    north = layer(("tower", 60.0, shapely.box(0, 60, 20, 80)))
    south = layer(("tower", 60.0, shapely.box(0, -60, 20, -40)))
    lost_north, _ = sunlight_loss(house, north, grid, SOLSTICE)
    lost_south, _ = sunlight_loss(house, south, grid, SOLSTICE)
    assert lost_north[["hours_lost", "max_hours_lost"]].to_numpy().tolist() == [[0.0, 0.0]]
    # noon: the tower's shadow is 60/tan(29°) ≈ 108 m long, across the 40 m gap
    noon = pd.Timestamp("2025-12-21 12:30", tz="Asia/Seoul")
    covered = shadow_polygons(south, noon).iloc[0].intersection(house.geometry.iloc[0]).area
    assert covered > 0.99 * 400  # the sun is 2° short of south at 12:30, so a sliver escapes
    assert not shadow_polygons(north, noon).iloc[0].intersects(house.geometry.iloc[0])
    south_row = lost_south.iloc[0]
    assert south_row["max_hours_lost"] >= 1.0
    assert south_row["hours_after"] < south_row["hours_before"]


def test_raising_a_courtyard_block_takes_all_the_courtyard_sun() -> None:
    # 3 m walls leave the courtyard centre lit at noon (shadow 3/tan 29° = 5.4 m < 10 m);
    # 20 m walls shade it all day: every wall is ≤ 14.1 m away and 20/tan(29°) = 36 m.
    ring = shapely.box(0, 0, 60, 60).difference(shapely.box(20, 20, 40, 40))
    low, high = layer(("block", 3.0, ring)), layer(("block", 20.0, ring))
    grid = local_grid(20, 20, 40, 40, 5.0)  # the courtyard: 4 × 4 cells
    before = sunlight_hours(low, grid, SOLSTICE).ground
    after = sunlight_hours(high, grid, SOLSTICE).ground
    per_building, lost = sunlight_loss(low, high, grid, SOLSTICE)
    assert after[1:3, 1:3].tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert (before[1:3, 1:3] > 1).all()
    np.testing.assert_allclose(lost, before - after)
    assert per_building["key"].tolist() == ["block"]


def test_losses_are_never_negative_and_nil_out_of_reach(shared_data: Path) -> None:
    frame = load_buildings(shared_data / "osm" / "asanH.osm").frame
    centre = frame.union_all().centroid
    nearby = frame[frame.distance(centre) < 400].reset_index(drop=True)
    tower_box = shapely.box(centre.x - 15, centre.y - 15, centre.x + 15, centre.y + 15)
    nearby = nearby[~nearby.intersects(tower_box)].reset_index(drop=True)
    tower = gpd.GeoDataFrame({"key": ["tower"], "height": [50.0]}, geometry=[tower_box], crs=CRS)
    grid = Grid.covering(tuple(nearby.total_bounds), cell=10.0)
    lost, ground = sunlight_loss(nearby, tower, grid, SOLSTICE, step_minutes=30)
    assert len(lost) == len(nearby) > 50
    assert (lost["hours_lost"] >= 0).all()
    assert (lost["max_hours_lost"] >= 0).all()
    assert np.nanmin(ground) >= 0
    # reach: the tower's longest shadow in the window (09:15 and 14:45, the lowest samples)
    lon, lat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(centre.x, centre.y)
    times = pd.date_range("2025-12-21 09:15", periods=12, freq="30min", tz="Asia/Seoul")
    lowest = solar_position(times, lat, lon)["elevation"].min()
    reach = 50 / math.tan(math.radians(lowest)) + FACADE_OFFSET
    far = nearby.distance(tower_box).to_numpy() > reach
    assert far.any()
    assert (lost["hours_lost"].to_numpy()[far] == 0).all()
    south = nearby.bounds["maxy"].to_numpy() < centre.y - 15  # the winter sun is always south
    assert south.any()
    assert (lost["max_hours_lost"].to_numpy()[south] == 0).all()
    assert (lost["hours_lost"] > 0).any()
    assert (lost["hours_after"] <= lost["hours_before"]).all()


def test_bad_inputs_are_refused() -> None:
    cube = layer(("a", 30.0, shapely.box(0, 0, 30, 30)))
    with pytest.raises(ValidationError, match="grid CRS"):
        sunlight_hours(
            cube, Grid(west=0, north=10, cell=1, width=10, height=10, crs="EPSG:32652"), SOLSTICE
        )
    with pytest.raises(ValidationError, match="window"):
        sunlight_hours(cube, local_grid(0, 0, 50, 50, 10), SOLSTICE, window=(time(15), time(9)))
