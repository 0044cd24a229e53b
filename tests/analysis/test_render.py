"""GeoTIFF, contour GeoJSON and PNG outputs, read back with rasterio/PIL and checked on geometry.

The contour test uses a cone (value = distance from a centre point), whose band ``(a, b]`` is an
annulus of area π(b² − a²): an analytic reference independent of the contouring code.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from PIL import Image
from rasterio.transform import Affine

from citytwin.analysis.grid import Grid
from citytwin.analysis.hotspots import getis_ord_gi_star
from citytwin.analysis.render import (
    CLASS_COLOURS,
    contour_geojson,
    render_choropleth,
    render_heatmap,
    render_map,
    write_geotiff,
)
from citytwin.analysis.weights import contiguity_weights
from citytwin.errors import ValidationError

# around Seoul City Hall in EPSG:5186 (x = easting, y = northing)
SEOUL_GRID = Grid(west=196000.0, north=553000.0, cell=20.0, width=100, height=100)


@pytest.fixture(scope="module")
def gu(shared_data: Path) -> gpd.GeoDataFrame:
    return gpd.read_file(
        shared_data / "seoul_boundaries/kostat/2013/json/seoul_municipalities_geo.json"
    )


def _cone(grid: Grid) -> np.ndarray:
    x, y = grid.centres()
    cx, cy = (grid.bounds[0] + grid.bounds[2]) / 2, (grid.bounds[1] + grid.bounds[3]) / 2
    return np.hypot(x - cx, y - cy)


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"), dtype=np.float64)


# --- GeoTIFF ----------------------------------------------------------------------------------


def test_geotiff_round_trip(tmp_path: Path) -> None:
    grid = Grid(west=196000.0, north=553000.0, cell=100.0, width=7, height=5)
    mean = np.arange(35.0).reshape(grid.shape)
    variance = np.linspace(0.5, 2.0, 35).reshape(grid.shape)
    mean[2, 3] = np.nan
    out = write_geotiff(tmp_path / "pm25.tif", grid, {"mean": mean, "variance": variance})
    with rasterio.open(out) as tif:
        assert tif.crs.to_epsg() == 5186
        assert tif.transform == Affine(*grid.transform)
        assert tif.descriptions == ("mean", "variance")
        assert tif.dtypes == ("float32", "float32")
        assert math.isnan(tif.nodata)
        assert tif.profile["compress"] == "deflate"
        back = tif.read()
    np.testing.assert_array_equal(back[0], mean.astype(np.float32))  # NaN == NaN here
    np.testing.assert_allclose(back[1], variance, rtol=1e-7)
    # the cell at row 2, col 3 is where the transform says it is
    with rasterio.open(out) as tif:
        assert tif.index(196000.0 + 350.0, 553000.0 - 250.0) == (2, 3)


def test_geotiff_numeric_nodata_and_tiles(tmp_path: Path) -> None:
    grid = Grid(west=180000.0, north=566000.0, cell=50.0, width=600, height=520)
    values = np.ones(grid.shape)
    values[:10, :10] = np.nan
    out = write_geotiff(tmp_path / "big.tif", grid, {"noise": values}, nodata=-9999.0)
    with rasterio.open(out) as tif:
        assert tif.nodata == -9999.0
        assert tif.profile["tiled"]
        assert tif.block_shapes == [(256, 256)]
        band = tif.read(1, masked=True)
    assert band.mask.sum() == 100
    assert band.data[0, 0] == -9999.0


def test_geotiff_rejects_wrong_shape(tmp_path: Path) -> None:
    grid = Grid(west=0.0, north=10.0, cell=1.0, width=10, height=10)
    with pytest.raises(ValidationError, match=r"mean \(9, 10\); expected arrays of \(10, 10\)"):
        write_geotiff(tmp_path / "x.tif", grid, {"mean": np.zeros((9, 10))})


# --- contours ---------------------------------------------------------------------------------


def test_contour_bands_of_a_cone_are_annuli(tmp_path: Path) -> None:
    levels = [0, 200, 400, 600, 800, 1500]
    collection = contour_geojson(
        SEOUL_GRID, _cone(SEOUL_GRID), levels=levels, unit="m", to_crs=None
    )
    bands = {
        (f["properties"]["lower"], f["properties"]["upper"]): f for f in collection["features"]
    }
    assert all(f["properties"]["unit"] == "m" for f in bands.values())
    for lower, upper in itertools.pairwise(levels[:-1]):  # the bands inside the grid
        geometry = shapely.geometry.shape(bands[(lower, upper)]["geometry"])
        assert geometry.is_valid
        assert geometry.area == pytest.approx(math.pi * (upper**2 - lower**2), rel=0.02)
        if lower > 0:
            assert len(geometry.interiors if geometry.geom_type == "Polygon" else []) == 1
    outer = shapely.geometry.shape(bands[(800.0, 1500.0)]["geometry"])
    assert outer.is_valid
    # the last band reaches past the corners (r = 990·√2 < 1500), clipped by the data extent
    # (cell centres): the square minus the r ≤ 800 disc
    square = (SEOUL_GRID.width - 1) * SEOUL_GRID.cell
    assert outer.area == pytest.approx(square**2 - math.pi * 800**2, rel=0.02)


def test_contours_in_wgs84_lon_lat(tmp_path: Path) -> None:
    collection = contour_geojson(SEOUL_GRID, _cone(SEOUL_GRID), levels=4)
    assert len(collection["features"]) >= 3
    for feature in collection["features"]:
        geometry = shapely.geometry.shape(feature["geometry"])
        assert geometry.is_valid
        lon_min, lat_min, lon_max, lat_max = geometry.bounds
        assert 126.9 < lon_min < lon_max < 127.1  # x first (always_xy), City Hall ≈ 126.98 E
        assert 37.5 < lat_min < lat_max < 37.6
    first = shapely.geometry.shape(collection["features"][0]["geometry"])
    metric = gpd.GeoSeries([first], crs="EPSG:4326").to_crs("EPSG:5186").area.iloc[0]
    lower, upper = (collection["features"][0]["properties"][k] for k in ("lower", "upper"))
    assert metric == pytest.approx(math.pi * (upper**2 - lower**2), rel=0.02)


def test_contours_skip_nan_cells() -> None:
    values = _cone(SEOUL_GRID)
    values[:, :50] = np.nan
    collection = contour_geojson(SEOUL_GRID, values, levels=[0, 400], to_crs=None)
    segment = shapely.geometry.shape(collection["features"][0]["geometry"])
    # data start at the centres of column 50, d = 10 m east of the cone's centre: the disc
    # segment x ≥ d has area r²·acos(d/r) − d·√(r² − d²)
    first_centre = SEOUL_GRID.west + 50.5 * SEOUL_GRID.cell
    assert segment.bounds[0] == pytest.approx(first_centre)
    radius, offset = 400.0, 10.0
    area = radius**2 * math.acos(offset / radius) - offset * math.sqrt(radius**2 - offset**2)
    assert segment.area == pytest.approx(area, rel=0.01)


# --- pictures ---------------------------------------------------------------------------------


def test_render_map_with_districts_and_points(tmp_path: Path, gu: gpd.GeoDataFrame) -> None:
    grid = Grid.covering(tuple(gu.to_crs("EPSG:5186").total_bounds), cell=250.0)
    x, y = grid.centres()
    values = 30 + 10 * np.exp(-((x - x.mean()) ** 2 + (y - y.mean()) ** 2) / 8000.0**2)
    sites = np.column_stack([x.ravel()[::97], y.ravel()[::97]])
    plain = _png(render_map(tmp_path / "plain.png", grid, values, title="PM2.5", unit="µg/m³"))
    full = _png(
        render_map(
            tmp_path / "full.png", grid, values, title="PM2.5", unit="µg/m³", districts=gu,
            points=sites, cmap="YlOrRd", caption="kriged from S-DoT sites",
        )
    )  # fmt: skip
    assert plain.shape == full.shape == (1000, 1200, 3)
    assert full.std() > 20  # not a blank picture
    dark = (full.sum(axis=2) < 150).sum() - (plain.sum(axis=2) < 150).sum()
    assert dark > 5000  # 25 gu outlines and the site dots are drawn


def test_render_choropleth_of_hot_spots(tmp_path: Path, gu: gpd.GeoDataFrame) -> None:
    values = np.ones(len(gu))
    values[gu["name"].isin(["종로구", "중구", "성북구", "서대문구", "동대문구"]).to_numpy()] = 10.0
    frame = gu.assign(label=getis_ord_gi_star(values, contiguity_weights(gu)).label)
    pixels = _png(
        render_choropleth(tmp_path / "gi.png", frame, "label", title="Gi*", categorical=True)
    )
    assert pixels.shape == (1000, 1200, 3)
    red = np.array([int(CLASS_COLOURS["hot spot 99%"][i : i + 2], 16) for i in (1, 3, 5)])
    assert (np.abs(pixels - red).sum(axis=2) < 10).sum() > 2000  # hot-spot gu filled in red
    continuous = render_choropleth(tmp_path / "v.png", gu.assign(v=values), "v", title="v")
    assert _png(continuous).std() > 20


def test_render_heatmap(tmp_path: Path) -> None:
    hours, days = [f"{h:02d}" for h in range(24)], ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    table = 40 - 20 * np.exp(-((np.arange(24)[:, None] - 8) ** 2) / 4.0) * np.ones((1, 7))
    pixels = _png(
        render_heatmap(tmp_path / "speed.png", table, rows=hours, columns=days,
                       title="Mean link speed", unit="km/h", cmap="RdYlGn")
    )  # fmt: skip
    assert pixels.shape == (1000, 1200, 3)
    assert pixels.std() > 20
    with pytest.raises(ValidationError, match=r"expected \(24, 6\)"):
        render_heatmap(tmp_path / "x.png", table, rows=hours, columns=days[:6], title="", unit="")
