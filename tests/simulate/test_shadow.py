"""Building shadows on flat ground: the Minkowski-sum geometry, grid north and validation."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Transformer

from citytwin.errors import ValidationError
from citytwin.simulate.shadow import cast_shadows, shadow_polygons
from citytwin.simulate.sun import solar_position

CRS = "EPSG:5186"  # Korea 2000 / Central Belt 2010: central meridian 127°E
X0, Y0 = 200000.0, 550000.0  # about 37.56°N, 127.0°E: central Seoul


def layer(*rows: tuple[str, float, shapely.Geometry]) -> gpd.GeoDataFrame:
    """Buildings ``(key, height, footprint)``, footprints relative to (X0, Y0)."""
    geometry = [
        shapely.transform(shape, lambda xy: xy + np.array([X0, Y0])) for _, _, shape in rows
    ]
    frame = {"key": [key for key, _, _ in rows], "height": [h for _, h, _ in rows]}
    return gpd.GeoDataFrame(frame, geometry=geometry, crs=CRS)


def brute_force_shadow(footprint: shapely.Geometry, offset: np.ndarray) -> shapely.Geometry:
    """The Minkowski sum approximated by 801 translated copies (an independent construction)."""
    copies = [
        shapely.transform(footprint, lambda xy, t=t: xy + t * offset)
        for t in np.linspace(0, 1, 801)
    ]
    return shapely.union_all(copies)


# --- shadow geometry ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("azimuth", "expected"),
    [
        (180.0, (0, 0, 30, 60)),  # sun in the south: shadow to the north
        (90.0, (-30, 0, 30, 30)),  # sun in the east: shadow to the west
        (0.0, (0, -30, 30, 30)),
        (270.0, (0, 0, 60, 30)),
    ],
)
def test_a_30m_cube_at_45_degrees_casts_30m_away_from_the_sun(
    azimuth: float, expected: tuple[float, ...]
) -> None:
    cube = gpd.GeoDataFrame({"height": [30.0]}, geometry=[shapely.box(0, 0, 30, 30)], crs=CRS)
    shadow = cast_shadows(cube, azimuth=azimuth, elevation=45.0).iloc[0]
    assert shadow.symmetric_difference(shapely.box(*expected)).area == pytest.approx(0, abs=1e-6)


def test_a_diagonal_shadow_has_the_minkowski_area() -> None:
    # convex footprint: area + |d| × the footprint's width across d (30√2 for the diagonal)
    cube = gpd.GeoDataFrame({"height": [30.0]}, geometry=[shapely.box(0, 0, 30, 30)], crs=CRS)
    shadow = cast_shadows(cube, azimuth=225.0, elevation=45.0).iloc[0]
    assert shadow.area == pytest.approx(900 + 30 * 30 * math.sqrt(2), rel=1e-9)
    reach = 30 + 30 / math.sqrt(2)
    np.testing.assert_allclose(shadow.bounds, (0, 0, reach, reach), atol=1e-9)


def test_a_non_convex_footprint_matches_the_brute_force_minkowski_sum() -> None:
    ell = shapely.Polygon([(0, 0), (40, 0), (40, 10), (10, 10), (10, 40), (0, 40)])
    frame = gpd.GeoDataFrame({"height": [25.0]}, geometry=[ell], crs=CRS)
    elevation, azimuth = 30.0, 150.0
    length = 25.0 / math.tan(math.radians(elevation))
    offset = -length * np.array([math.sin(math.radians(azimuth)), math.cos(math.radians(azimuth))])
    shadow = cast_shadows(frame, azimuth=azimuth, elevation=elevation).iloc[0]
    reference = brute_force_shadow(ell, offset)
    assert shadow.symmetric_difference(reference).area < 1e-3 * reference.area
    assert shadow.contains(ell)


def test_a_courtyard_is_shaded_by_its_own_south_wing() -> None:
    # 60 m square, 20 m courtyard, 10 m high, sun south at 45°: the shadow reaches 10 m into
    # the courtyard and 10 m beyond the north wall; the rest of the courtyard stays lit.
    ring = shapely.box(0, 0, 60, 60).difference(shapely.box(20, 20, 40, 40))
    frame = gpd.GeoDataFrame({"height": [10.0]}, geometry=[ring], crs=CRS)
    shadow = cast_shadows(frame, azimuth=180.0, elevation=45.0).iloc[0]
    expected = shapely.box(0, 0, 60, 70).difference(shapely.box(20, 30, 40, 40))
    assert shadow.symmetric_difference(expected).area == pytest.approx(0, abs=1e-6)


def test_a_raised_block_throws_a_detached_shadow() -> None:
    # a bridge-like block from 10 m to 20 m: its shadow starts 10 m and ends 20 m north
    frame = gpd.GeoDataFrame(
        {"height": [20.0], "min_height": [10.0]}, geometry=[shapely.box(0, 0, 10, 10)], crs=CRS
    )
    shadow = cast_shadows(frame, azimuth=180.0, elevation=45.0).iloc[0]
    assert shadow.symmetric_difference(shapely.box(0, 10, 10, 30)).area == pytest.approx(
        0, abs=1e-6
    )


def test_shadow_polygons_use_the_sun_of_the_moment_and_grid_north() -> None:
    # Busan (35.1°N, 129.0°E) is 2° east of the belt's central meridian: grid north is turned
    # by the convergence ≈ Δλ·sin φ, so the true-north noon shadow leans west of grid north.
    lon, lat = 129.0, 35.1
    x, y = Transformer.from_crs("EPSG:4326", CRS, always_xy=True).transform(lon, lat)
    cube = gpd.GeoDataFrame({"height": [30.0]}, geometry=[shapely.box(x, y, x + 1, y + 1)], crs=CRS)
    noon = pd.date_range("2025-12-21 12:00", "2025-12-21 12:59", freq="1s", tz="Asia/Seoul")
    sun = solar_position(noon, lat, lon)
    top = int(np.argmax(sun["elevation"].to_numpy()))  # within a second of the transit
    moment, elevation = noon[top], float(sun["elevation"].iloc[top])
    assert sun["azimuth"].iloc[top] == pytest.approx(180.0, abs=0.01)
    shadow = shadow_polygons(cube, moment, lat=lat, lon=lon).iloc[0]
    tip = shapely.get_coordinates(shadow)[np.argmax(shapely.get_coordinates(shadow)[:, 1])]
    length = 30 / math.tan(math.radians(elevation))
    assert tip[1] - (y + 1) == pytest.approx(length * math.cos(math.radians(1.15)), abs=0.05)
    bearing = math.degrees(math.atan2(tip[0] - x, tip[1] - (y + 1)))
    convergence = (lon - 127.0) * math.sin(math.radians(lat))
    assert bearing == pytest.approx(-convergence, abs=0.02)


def test_there_are_no_shadows_at_night() -> None:
    cube = layer(("a", 30.0, shapely.box(0, 0, 30, 30)))
    midnight = pd.Timestamp("2025-12-21 23:00", tz="Asia/Seoul")
    assert shadow_polygons(cube, midnight).is_empty.all()


# --- validation -----------------------------------------------------------------------------------


def test_missing_or_non_positive_heights_name_the_building() -> None:
    frame = layer(
        ("ok", 10.0, shapely.box(0, 0, 10, 10)),
        ("flat", 0.0, shapely.box(20, 0, 30, 10)),
        ("unknown", float("nan"), shapely.box(40, 0, 50, 10)),
    )
    with pytest.raises(ValidationError, match=r"flat \(row 1\).*unknown \(row 2\)"):
        cast_shadows(frame, azimuth=180, elevation=30)
    with pytest.raises(ValidationError, match="no 'height_m' column"):
        cast_shadows(frame, azimuth=180, elevation=30, height_column="height_m")


def test_bad_inputs_are_refused() -> None:
    cube = layer(("a", 30.0, shapely.box(0, 0, 30, 30)))
    with pytest.raises(ValidationError, match="time zone"):
        shadow_polygons(cube, pd.Timestamp("2025-12-21 12:00"))
    with pytest.raises(ValidationError, match="projected CRS"):
        cast_shadows(cube.to_crs("EPSG:4326"), azimuth=180, elevation=30)
