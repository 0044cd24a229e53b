"""Fill-and-spill ponding: hand-computed troughs, priority-flood, inputs, the demo DEM, impacts."""

from __future__ import annotations

import heapq
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from numpy.typing import NDArray
from rasterio.transform import Affine

from citytwin.analysis.grid import Grid
from citytwin.errors import FeedError, ValidationError
from citytwin.simulate.dem import read_dem, validate_dem
from citytwin.simulate.flood import STAGES, simulate_ponding
from citytwin.simulate.flood_impacts import flooded_features
from citytwin.space.democity import PLAN
from citytwin.space.democity.dem import build_demo_dem, write_demo_dem
from citytwin.space.democity.layout import plan_city

CELL = 10.0  # m, so every cell is 100 m²
AREA = CELL * CELL


def trough() -> tuple[Grid, NDArray[np.float64]]:
    """5 × 7 cells: a wall of 9 around two pits (floor 2 west, floor 1 east) split by a saddle of
    3, with an outlet of 4 in the east wall.

    By D8 the west pit drains 15 cells (its 6 floor cells, the west wall and the wall cells next
    to it), the east pit the other 20 (the saddle column drains east: a drop of 2 beats 1).
    Capacities in cell-areas: west 6·(3−2) = 6 and east 6·(3−1) = 12 up to the saddle; the merged
    lake holds V(h) = 6(h−2) + 6(h−1) + 3(h−3) = 15h − 27 for h in [3, 4], 33 at the outlet.
    """
    z = np.full((5, 7), 9.0)
    z[1:4, 1:3], z[1:4, 3], z[1:4, 4:6] = 2.0, 3.0, 1.0
    z[2, 6] = 4.0
    return Grid(west=200_000.0, north=550_050.0, cell=CELL, width=7, height=5), z


# rain R (m) → (west level, east level, water lost at the outlet in cell-areas), all by hand:
# R = 0.30: west 15R = 4.5 < 6 → 2 + 4.5/6; east 20R = 6 < 12 → 1 + 6/6.
# R = 0.45: west 6.75 > 6 spills 0.75 east; east 9 + 0.75 = 9.75 < 12 → 1 + 9.75/6.
# R = 0.80: 35R = 28 ≥ 18 merges: 15h − 27 = 28 → h = 55/15.
# R = 1.20: 35R = 42 > 33 → full to the outlet at 4, 9 lost.
HAND = {
    0.30: (2.75, 2.0, 0.0),
    0.45: (3.0, 2.625, 0.0),
    0.80: (55 / 15, 55 / 15, 0.0),
    1.20: (4.0, 4.0, 9.0),
}


@pytest.mark.parametrize("rain_m", sorted(HAND))
def test_trough_fills_spills_and_merges_to_hand_computed_levels(rain_m: float) -> None:
    grid, z = trough()
    west, east, lost = HAND[rain_m]
    result = simulate_ponding(grid, z, intensity_mm_h=rain_m * 1000 / 5, duration_h=5)
    expected = np.zeros_like(z)
    expected[1:4, 1:3] = west - 2.0
    expected[1:4, 4:6] = east - 1.0
    expected[1:4, 3] = max(min(west, east) - 3.0, 0.0)
    np.testing.assert_allclose(result.depth, expected, rtol=0, atol=1e-12)
    assert result.rain_m3 == pytest.approx(35 * rain_m * AREA, rel=1e-12)
    assert result.outflow_m3 == pytest.approx(lost * AREA, abs=1e-9)
    assert result.ponded_m3 == pytest.approx(35 * rain_m * AREA - lost * AREA, rel=1e-12)
    assert abs(result.balance_error_m3) <= 1e-9 * result.rain_m3
    assert result.depressions == 2
    assert result.lakes == (1 if rain_m >= 0.8 else 2)


def test_runoff_coefficient_scales_the_rain_that_ponds() -> None:
    grid, z = trough()
    half = simulate_ponding(grid, z, intensity_mm_h=180, duration_h=5, runoff_coefficient=0.5)
    assert half.depth[2, 1] == pytest.approx(1.0)
    assert half.depth[2, 4] == pytest.approx(1.625)
    assert half.infiltrated_m3 == pytest.approx(35 * 0.45 * AREA)
    assert abs(half.balance_error_m3) <= 1e-9 * half.rain_m3


def test_flat_plane_with_open_edges_ponds_nothing() -> None:
    grid = Grid(west=0.0, north=200.0, cell=CELL, width=20, height=20)
    result = simulate_ponding(grid, np.full(grid.shape, 12.0), intensity_mm_h=50, duration_h=2)
    assert result.ponded_m3 == 0.0
    assert not result.depth.any()
    assert result.outflow_m3 == pytest.approx(0.1 * AREA * 400, rel=1e-12)


def priority_flood(z: NDArray[np.float64]) -> NDArray[np.float64]:
    """Barnes, Lehman & Mulla (2014), Algorithm 1: the DEM with every depression filled."""
    rows, cols = z.shape
    filled, done = z.copy(), np.zeros(z.shape, dtype=bool)
    heap = [(z[r, c], r, c) for r in range(rows) for c in range(cols)
            if r in (0, rows - 1) or c in (0, cols - 1)]  # fmt: skip
    heapq.heapify(heap)
    for _, r, c in heap:
        done[r, c] = True
    while heap:
        level, r, c = heapq.heappop(heap)
        for nr in range(max(r - 1, 0), min(r + 2, rows)):
            for nc in range(max(c - 1, 0), min(c + 2, cols)):
                if not done[nr, nc]:
                    done[nr, nc] = True
                    filled[nr, nc] = max(z[nr, nc], level)
                    heapq.heappush(heap, (filled[nr, nc], nr, nc))
    return filled


@pytest.mark.parametrize("seed", range(6))
def test_enough_rain_fills_every_depression_to_the_priority_flood_surface(seed: int) -> None:
    rng = np.random.default_rng(seed)
    z = np.round(rng.uniform(0, 10, size=(24, 30)), 1)
    grid = Grid(west=0.0, north=240.0, cell=CELL, width=30, height=24)
    result = simulate_ponding(grid, z, intensity_mm_h=100_000, duration_h=1)
    np.testing.assert_allclose(result.depth, priority_flood(z) - z, rtol=0, atol=1e-9)
    assert abs(result.balance_error_m3) <= 1e-9 * result.rain_m3


@pytest.mark.parametrize("seed", range(4))
def test_water_balance_closes_and_more_rain_never_lowers_the_water(seed: int) -> None:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(40, 40)).cumsum(axis=0) + rng.normal(size=(40, 40))
    grid = Grid(west=0.0, north=400.0, cell=CELL, width=40, height=40)
    previous = np.zeros(grid.shape)
    for rain_mm in (5, 20, 80, 320):
        result = simulate_ponding(grid, z, intensity_mm_h=rain_mm, duration_h=1)
        assert abs(result.balance_error_m3) <= 1e-9 * result.rain_m3
        assert (result.depth >= previous - 1e-9).all()
        previous = result.depth


def test_progress_is_reported_for_every_stage() -> None:
    grid, z = trough()
    calls: list[tuple[int, int]] = []
    simulate_ponding(
        grid, z, intensity_mm_h=10, duration_h=1, on_progress=lambda *c: calls.append(c)
    )
    assert calls == [(stage, STAGES) for stage in range(1, STAGES + 1)]


def test_bad_inputs_are_named() -> None:
    grid, z = trough()
    with pytest.raises(ValidationError, match=r"intensity_mm_h=-1.*duration_h=nan"):
        simulate_ponding(grid, z, intensity_mm_h=-1, duration_h=float("nan"))
    with pytest.raises(ValidationError, match=r"runoff_coefficient 1.5 at row 0, column 0"):
        simulate_ponding(grid, z, intensity_mm_h=1, duration_h=1, runoff_coefficient=1.5)
    with pytest.raises(ValidationError, match=r"runoff_coefficient of shape \(3,\)"):
        simulate_ponding(grid, z, intensity_mm_h=1, duration_h=1, runoff_coefficient=[1, 1, 1])
    with pytest.raises(ValidationError, match=r"shape \(5, 6\); expected \(5, 7\)"):
        simulate_ponding(grid, z[:, :6], intensity_mm_h=1, duration_h=1)
    holed = z.copy()
    holed[3, 2] = np.nan
    with pytest.raises(ValidationError, match=r"1 missing cell.*row 3, column 2"):
        simulate_ponding(grid, holed, intensity_mm_h=1, duration_h=1)


def write_tif(path: Path, values: NDArray[np.float64], crs: str, nodata: float | None) -> Path:
    profile = {"driver": "GTiff", "width": values.shape[1], "height": values.shape[0], "count": 1,
                   "dtype": "float32", "crs": crs, "transform": Affine(5, 0, 2e5, 0, -5, 5.5e5),
                   "nodata": nodata}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(values.astype(np.float32), 1)
    return path


def test_nodata_cells_raise_with_their_count_and_first_position(tmp_path: Path) -> None:
    values = np.arange(20.0).reshape(4, 5)
    values[2, 3] = values[3, 0] = -9999.0
    path = write_tif(tmp_path / "holes.tif", values, "EPSG:5186", -9999.0)
    with pytest.raises(ValidationError, match=r"holes.tif: 2 missing cell\(s\).*row 2, column 3"):
        read_dem(path)
    grid, filled = read_dem(path, fill_nodata="nearest")
    assert (grid.west, grid.north, grid.cell, grid.shape) == (2e5, 5.5e5, 5.0, (4, 5))
    assert filled[2, 3] in (values[2, 2], values[2, 4], values[1, 3])
    assert read_dem(path, fill_nodata=0.0)[1][3, 0] == 0.0


def test_a_dem_in_degrees_is_refused(tmp_path: Path) -> None:
    path = write_tif(tmp_path / "wgs84.tif", np.ones((3, 3)), "EPSG:4326", None)
    with pytest.raises(ValidationError, match=r"wgs84\.tif: CRS EPSG:4326; expected a projected"):
        read_dem(path)
    with pytest.raises(ValidationError, match="every cell is missing"):
        validate_dem(Grid(0.0, 10.0, 5.0, 2, 2), np.full((2, 2), np.nan), fill_nodata="nearest")


def test_demo_dem_is_plausible_and_round_trips_as_geotiff(tmp_path: Path) -> None:
    grid, z = build_demo_dem(seed=3, cell=50.0)
    plan = plan_city(np.random.default_rng([3, PLAN]))
    x, y = grid.centres()
    river = plan.in_river(x, y)
    banks = plan.in_river(x, y, margin=500.0) & ~river
    assert z[river].max() < z[banks].mean()
    assert z[banks].mean() < z[~river].mean()
    assert river.ravel()[np.argmin(z)]  # the lowest point is the river, where it leaves the city
    west_bed, east_bed = z[river & (x < grid.west + 500)], z[river & (x > grid.bounds[2] - 500)]
    assert east_bed.min() < west_bed.min()  # the river falls eastwards
    assert z[0].mean() > z[banks].mean() + 40  # hills along the north edge
    back_grid, back = read_dem(write_demo_dem(tmp_path / "demo.tif", seed=3, cell=50.0))
    assert back_grid == grid
    assert back_grid.crs == "EPSG:5186"
    np.testing.assert_array_equal(back, z)
    result = simulate_ponding(grid, z, intensity_mm_h=80, duration_h=1)
    assert result.lakes >= 6
    assert result.depth[river].max() == 0.0
    assert abs(result.balance_error_m3) <= 1e-9 * result.rain_m3


def test_flooded_buildings_and_links_on_a_tiny_map() -> None:
    grid = Grid(west=0.0, north=50.0, cell=CELL, width=5, height=5)
    depth = np.zeros(grid.shape)
    depth[1:4, 1:4] = [[0.2, 0.3, 0.05], [0.4, 0.6, 0.2], [0.1, 0.0, 0.0]]
    buildings = gpd.GeoDataFrame(
        {"name": ["block", "dry", "kiosk"]},
        geometry=[shapely.box(10, 20, 30, 40), shapely.box(40, 40, 50, 50),
                  shapely.box(21, 21, 24, 24)],
        crs=grid.crs,
    )  # fmt: skip
    links = gpd.GeoDataFrame(
        {"link_id": ["across", "dry", "diagonal"]},
        geometry=[shapely.LineString([(0, 25), (50, 25)]), shapely.LineString([(0, 5), (50, 5)]),
                  shapely.LineString([(10, 40), (40, 10)])],
        crs=grid.crs,
    )  # fmt: skip
    built, roads = flooded_features(grid, depth, buildings, links, threshold=0.1)
    # the block covers cells (1,1), (1,2), (2,1), (2,2): 0.2, 0.3, 0.4, 0.6
    assert built["depth_max_m"].tolist() == pytest.approx([0.6, 0.0, 0.6])
    assert built["depth_mean_m"].tolist() == pytest.approx([0.375, 0.0, 0.6])
    assert built["flooded"].tolist() == [True, False, True]
    # row 2 is flooded (>= 0.1) in columns 1–3: 30 m of the 50 m line; the diagonal crosses
    # cells (1,1) and (2,2), flooded, then (3,3), dry: two of its three 10√2 m pieces
    assert roads["flooded_length_m"].tolist() == pytest.approx([30.0, 0.0, 20 * np.sqrt(2)])
    assert roads["flooded_share"].iloc[0] == pytest.approx(0.6)
    assert roads["flooded"].tolist() == [True, False, True]
    assert list(roads.columns[:2]) == ["link_id", "geometry"]


def test_dems_without_an_interior_drain_everything_and_a_single_pit_holds_its_volume() -> None:
    line = Grid(west=0.0, north=10.0, cell=CELL, width=5, height=1)
    drained = simulate_ponding(line, np.arange(5.0)[None, :], intensity_mm_h=100, duration_h=1)
    assert drained.outflow_m3 == pytest.approx(0.1 * AREA * 5)
    bowl = Grid(west=0.0, north=30.0, cell=CELL, width=3, height=3)
    z = np.zeros((3, 3))
    z[1, 1] = -0.5  # holds 0.5 m × 100 m²; 9 cells × 0.1 m × 100 m² = 90 m³ fall, 50 stay
    result = simulate_ponding(bowl, z, intensity_mm_h=100, duration_h=1)
    assert result.depth[1, 1] == pytest.approx(0.5)
    assert result.outflow_m3 == pytest.approx(40.0)


def test_unreadable_files_and_frames_without_crs_are_named(tmp_path: Path) -> None:
    (tmp_path / "broken.tif").write_text("not a tiff")
    with pytest.raises(FeedError, match=r"broken\.tif: cannot read"):
        read_dem(tmp_path / "broken.tif")
    grid = Grid(west=0.0, north=20.0, cell=CELL, width=2, height=2)
    no_crs = gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 5, 5)])
    with pytest.raises(ValidationError, match="buildings: no CRS"):
        flooded_features(grid, np.zeros((2, 2)), no_crs, no_crs.set_crs(grid.crs))
    with pytest.raises(ValidationError, match=r"depth of shape \(3, 3\).*threshold=0"):
        flooded_features(grid, np.zeros((3, 3)), no_crs, no_crs, threshold=0)
