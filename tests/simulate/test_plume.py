"""Gaussian plume and puff, stability classes, AEGL zones and exposed buildings.

Reference values come from the published formulas they implement (Turner 1970 / ISC3, Briggs
1973, CCPS 1999, the Pasquill–Gifford stability table), from independent integrals (mass
conservation, analytic zone areas) or from the real OpenStreetMap buildings of Jamsil, Seoul.
"""

from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from scipy import integrate, optimize
from shapely.geometry import box

from citytwin.analysis.grid import Grid
from citytwin.errors import ValidationError
from citytwin.simulate.dispersion import (
    briggs_sigmas,
    insolation_from_elevation,
    pasquill_gifford_sigmas,
    puff_sigmas,
    stability_class,
)
from citytwin.simulate.exposure import exposed_buildings, threshold_zones
from citytwin.simulate.plume import gaussian_plume, plume_grid, puff, puff_grid, wind_from_sensors
from citytwin.simulate.substances import SUBSTANCES, g_m3_to_ppm, get_substance, ppm_to_g_m3

# --- the textbook check --------------------------------------------------------------------


def test_textbook_ground_level_centreline() -> None:
    """Issue 6's textbook case: 10 g/s, u = 6 m/s, H = 50 m, class D, 500 m → 1.92e-5 g/m³.

    The printed value comes from the Pasquill–Gifford curves of Turner's *Workbook of
    Atmospheric Dispersion Estimates* (1970); their ISC3 fit (EPA-454/B-95-003b, Vol. II,
    eqs. 1-33/1-34, tables 1-1/1-2) gives σy = 36.1 m and σz = 18.3 m at 500 m, as read off the
    curves, and then C = Q/(π u σy σz)·exp(−H²/2σz²) = 1.92e-5 to the printed three figures.
    """
    sigma_y = 465.11628 * 0.5 * math.tan(0.017453293 * (8.3330 - 0.72382 * math.log(0.5)))
    sigma_z = 32.093 * 0.5**0.81066  # class D band 0.30–1.00 km
    assert pasquill_gifford_sigmas(500.0, "D") == pytest.approx((sigma_y, sigma_z), rel=1e-12)
    assert (round(sigma_y, 1), round(sigma_z, 1)) == (36.1, 18.3)
    c = gaussian_plume(
        10.0, 6.0, 50.0, 500.0, 0.0, stability="D", dispersion="pasquill-gifford", terrain="rural"
    )
    assert float(c) == pytest.approx(1.92e-5, abs=0.005e-5)


def test_briggs_formulas_rural_and_urban() -> None:
    """Briggs (1973) as in Hanna, Briggs & Hosker (1982), evaluated by hand at 1 km."""
    assert briggs_sigmas(1000.0, "D", terrain="rural") == pytest.approx(
        (80.0 / math.sqrt(1.1), 60.0 / math.sqrt(2.5))
    )
    assert briggs_sigmas(1000.0, "D", terrain="urban") == pytest.approx(
        (160.0 / math.sqrt(1.4), 140.0 / math.sqrt(1.3))
    )
    assert briggs_sigmas(1000.0, "F", terrain="rural")[1] == pytest.approx(16.0 / 1.3)
    assert briggs_sigmas(1000.0, "A", terrain="urban")[1] == pytest.approx(240.0 * math.sqrt(2.0))
    # Briggs' open-country set interpolates the Pasquill–Gifford curves: same order at 1 km
    # (except σz of A and B, where the curves themselves were extrapolated guesses).
    for letter in "ABCDEF":
        briggs, curves = (
            briggs_sigmas(1000.0, letter, terrain="rural"),
            pasquill_gifford_sigmas(1000.0, letter),
        )
        assert 0.8 < briggs[0] / curves[0] < 1.25, letter
        assert letter in "AB" or 0.6 < briggs[1] / curves[1] < 1.6, letter


def test_puff_sigmas_follow_ccps() -> None:
    assert puff_sigmas(1000.0, "D") == pytest.approx((0.06 * 1000**0.92, 0.15 * 1000**0.70))
    assert puff_sigmas(100.0, "F") == pytest.approx((0.02 * 100**0.89, 0.05 * 100**0.61))


# --- plume and puff physics ----------------------------------------------------------------


def test_plume_is_symmetric_and_zero_upwind() -> None:
    y = np.array([-80.0, -20.0, 20.0, 80.0])
    c = gaussian_plume(5.0, 3.0, 10.0, 700.0, y, stability="C")
    assert c[0] == pytest.approx(c[3], rel=1e-12)
    assert c[1] == pytest.approx(c[2], rel=1e-12)
    assert c[1] > c[0] > 0
    assert gaussian_plume(5.0, 3.0, 10.0, [-100.0, 0.0], 0.0, stability="C").tolist() == [0, 0]


def test_ground_reflection_doubles_a_ground_release_at_ground_level() -> None:
    x, y = np.array([200.0, 1000.0, 4000.0]), np.array([0.0, 30.0, -90.0])
    with_ground = gaussian_plume(2.0, 4.0, 0.0, x, y, stability="E", terrain="rural")
    free = gaussian_plume(2.0, 4.0, 0.0, x, y, stability="E", terrain="rural", reflection=False)
    np.testing.assert_allclose(with_ground, 2.0 * free, rtol=1e-12)
    # A receptor above ground takes the two-exponential path: check it against the formula.
    sy, sz = briggs_sigmas(1000.0, "E", terrain="rural")
    direct = (
        2.0
        / (2 * math.pi * 4.0 * sy * sz)
        * (
            math.exp(-((5.0 - 20.0) ** 2) / (2 * sz**2))
            + math.exp(-((5.0 + 20.0) ** 2) / (2 * sz**2))
        )
    )
    elevated = gaussian_plume(2.0, 4.0, 20.0, 1000.0, 0.0, 5.0, stability="E", terrain="rural")
    assert float(elevated) == pytest.approx(direct, rel=1e-12)


def test_plume_carries_the_whole_emission_downwind() -> None:
    """Mass flux through a crosswind plane, ∫∫ u·C dy dz over z ≥ 0, equals q (with reflection)."""
    q, u, h, x = 7.0, 3.0, 25.0, 800.0
    sy, sz = briggs_sigmas(x, "B", terrain="urban")
    y = np.linspace(-8 * sy, 8 * sy, 801)
    z = np.linspace(0.0, h + 8 * sz, 801)
    c = gaussian_plume(q, u, h, x, y[:, None], z[None, :], stability="B", terrain="urban")
    flux = u * integrate.trapezoid(integrate.trapezoid(c, z, axis=1), y)
    assert flux == pytest.approx(q, rel=1e-4)


def test_puff_conserves_mass_and_drifts_with_the_wind() -> None:
    q_total, u, h, t = 500.0, 2.0, 10.0, 300.0
    sxy, sz = puff_sigmas(u * t, "D")
    x = np.linspace(u * t - 8 * sxy, u * t + 8 * sxy, 241)
    y = np.linspace(-8 * sxy, 8 * sxy, 241)
    z = np.linspace(0.0, h + 8 * sz, 161)
    c = puff(q_total, u, h, x[:, None, None], y[None, :, None], z[None, None, :], t, stability="D")
    mass = integrate.trapezoid(integrate.trapezoid(integrate.trapezoid(c, z), y), x)
    assert mass == pytest.approx(q_total, rel=1e-4)
    ground = c[:, 120, 0]
    assert x[int(np.argmax(ground))] == pytest.approx(u * t)


def test_calm_puff_spreads_in_place() -> None:
    grid = Grid.covering((-400.0, -400.0, 400.0, 400.0), cell=10.0)
    c = puff_grid((0.0, 0.0), 100.0, 0.0, 90.0, grid, 60.0, stability="F")
    sxy, sz = puff_sigmas(60.0, "F")  # calm_speed 1 m/s × 60 s
    centre = 2.0 * 100.0 / ((2 * math.pi) ** 1.5 * sxy**2 * sz) * math.exp(-(5.0**2) / sxy**2)
    assert float(c.max()) == pytest.approx(centre, rel=1e-5)
    assert np.array_equal(c, c[::-1, ::-1])


def test_plume_grid_matches_the_plume_frame_formula() -> None:
    """A south-westerly wind (from 225°): rotate the cell centres by hand and compare."""
    grid = Grid.covering((199_000.0, 550_000.0, 203_000.0, 553_000.0), cell=25.0)
    source = (199_500.0, 550_400.0)
    c = plume_grid(source, 12.0, 4.0, 225.0, grid, height=15.0, stability="C", terrain="urban")
    x, y = grid.centres()
    towards = np.array([1.0, 1.0]) / math.sqrt(2.0)  # blowing to the north-east
    dx, dy = x - source[0], y - source[1]
    along = dx * towards[0] + dy * towards[1]
    across = -dx * towards[1] + dy * towards[0]
    expected = gaussian_plume(12.0, 4.0, 15.0, along, across, stability="C", terrain="urban")
    assert c.dtype == np.float32
    assert c.shape == grid.shape
    threaded = plume_grid(
        source, 12.0, 4.0, 225.0, grid, height=15.0, stability="C", terrain="urban", workers=3
    )
    assert np.array_equal(c, threaded)  # threads split rows, never the arithmetic
    np.testing.assert_allclose(c, expected, rtol=2e-5, atol=1e-12 * expected.max())
    assert float(c[along <= 0].max()) == 0.0
    assert (c[along > 0] >= 0).all()


# --- stability ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wind", "day", "sun", "cloud", "expected"),
    [
        (1.5, True, "strong", None, "A"),
        (1.5, True, "moderate", None, "B"),  # A–B, resolved to the more stable
        (2.5, True, "moderate", None, "B"),
        (4.0, True, "slight", None, "C"),
        (5.5, True, "strong", None, "C"),
        (5.5, True, "moderate", None, "D"),  # C–D
        (7.0, True, "moderate", None, "D"),
        (7.0, True, "strong", None, "C"),
        (4.0, True, "strong", 8, "D"),  # overcast
        (2.5, False, None, 5, "E"),
        (2.5, False, None, 2, "F"),
        (4.0, False, None, 5, "D"),
        (4.0, False, None, 3, "E"),
        (5.5, False, None, 0, "D"),
    ],
)
def test_pasquill_turner_table(
    wind: float, day: bool, sun: str | None, cloud: float | None, expected: str
) -> None:
    got = stability_class(wind, daytime=day, insolation=sun, cloud_cover=cloud)  # type: ignore[arg-type]
    assert got == expected


def test_stability_intermediate_and_insolation() -> None:
    assert stability_class(3.5, daytime=True, insolation="moderate", intermediate="unstable") == "B"
    assert stability_class(3.5, daytime=True, insolation="moderate") == "C"
    assert [insolation_from_elevation(e) for e in (70.0, 60.0, 36.0, 20.0)] == [
        "strong", "moderate", "moderate", "slight",
    ]  # fmt: skip
    with pytest.raises(ValidationError, match="sun is down"):
        insolation_from_elevation(-3.0)
    with pytest.raises(ValidationError, match="cloud_cover"):
        stability_class(3.0, daytime=False)
    with pytest.raises(ValidationError, match="insolation"):
        stability_class(3.0, daytime=True)


# --- validation -----------------------------------------------------------------------------


def test_bad_inputs_raise_named_errors() -> None:
    with pytest.raises(
        ValidationError, match=r"wind_speed 0\.0: a Gaussian plume needs wind.*puff"
    ):
        gaussian_plume(1.0, 0.0, 0.0, 100.0, 0.0, stability="D")
    with pytest.raises(ValidationError, match=r"q \(emission rate\) -1\.0"):
        gaussian_plume(-1.0, 2.0, 0.0, 100.0, 0.0, stability="D")
    with pytest.raises(
        ValidationError, match="stability class 'G': expected one of A, B, C, D, E, F"
    ):
        gaussian_plume(1.0, 2.0, 0.0, 100.0, 0.0, stability="G")
    with pytest.raises(ValidationError, match="open country"):
        gaussian_plume(1.0, 2.0, 0.0, 100.0, 0.0, stability="D", dispersion="pasquill-gifford")
    with pytest.raises(ValidationError, match="height -5"):
        plume_grid(
            (0.0, 0.0), 1.0, 2.0, 0.0, Grid(0.0, 10.0, 1.0, 10, 10), height=-5.0, stability="D"
        )
    with pytest.raises(ValidationError, match="positive time"):
        puff(1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, stability="D")
    with pytest.raises(
        ValidationError, match="unknown substance 'phosgene'; expected one of: ammonia"
    ):
        get_substance("phosgene")


# --- substances -----------------------------------------------------------------------------


def test_substance_table_and_unit_conversion() -> None:
    chlorine = get_substance("chlorine")
    assert chlorine is get_substance("7782-50-5") is get_substance("CL2")
    # US EPA factsheet conversion for chlorine: 1 ppm = 2.9 mg/m³.
    assert ppm_to_g_m3(1.0, chlorine.molecular_weight) * 1000 == pytest.approx(2.9, abs=0.01)
    assert g_m3_to_ppm(ppm_to_g_m3(27.0, 34.08), 34.08) == pytest.approx(27.0)
    # Hydrogen sulfide 60-min AEGLs, NRC (2010) as reproduced in PMC5777517 table 3.
    assert get_substance("H2S").thresholds_ppm("60min") == (0.51, 27.0, 50.0)
    for substance in SUBSTANCES.values():
        for exposure in ("10min", "30min", "60min", "4h", "8h"):  # AEGL exposure periods
            one, two, three = substance.thresholds_ppm(exposure)
            assert 0 < one < two < three, (substance.name, exposure)
        assert substance.source.startswith("NRC")


# --- zones and exposure ---------------------------------------------------------------------


def _zone_area_analytic(q: float, u: float, threshold: float) -> float:
    """Area where a ground-level release (Briggs rural D) reaches ``threshold`` at ground level.

    On the centreline C(x) = q/(π u σy σz); the zone's half-width is σy·√(2 ln(C(x)/C*)).
    """

    def centreline(x: float) -> float:
        sy, sz = briggs_sigmas(x, "D", terrain="rural")
        return float(q / (math.pi * u * sy * sz))

    reach = optimize.brentq(lambda x: centreline(x) - threshold, 1.0, 1e6)

    def width(x: float) -> float:
        sy = float(briggs_sigmas(x, "D", terrain="rural")[0])
        return 2.0 * sy * math.sqrt(2.0 * max(math.log(centreline(x) / threshold), 0.0))

    return float(integrate.quad(width, 0.0, reach, limit=200)[0])


@pytest.mark.parametrize("wind_direction", [270.0, 250.0])
def test_zones_are_nested_and_match_the_analytic_area(wind_direction: float) -> None:
    grid = Grid.covering((-200.0, -1000.0, 6200.0, 3000.0), cell=10.0)
    q, u = 500.0, 3.0
    c = plume_grid((0.0, 0.0), q, u, wind_direction, grid, stability="D", terrain="rural")
    zones = threshold_zones(grid, c, "chlorine")
    assert zones.crs == "EPSG:5186"
    assert zones.geometry.is_valid.all()
    one, two, three = zones.geometry
    assert three.difference(two).area == 0.0
    assert two.difference(one).area == 0.0
    assert one.area > two.area > three.area > 0
    for geometry, threshold in zip(zones.geometry, zones["threshold_g_m3"], strict=True):
        assert geometry.area == pytest.approx(_zone_area_analytic(q, u, threshold), rel=0.03)


def test_zone_input_is_checked() -> None:
    grid = Grid(0.0, 20.0, 10.0, 2, 2)
    with pytest.raises(ValidationError, match=r"shape \(3,\), expected .* \(2, 2\)"):
        threshold_zones(grid, np.zeros(3), "ammonia")
    with pytest.raises(ValidationError, match="row 1, column 0: nan"):
        threshold_zones(grid, [[0.0, 0.0], [np.nan, 0.0]], "ammonia")
    with pytest.raises(ValidationError, match="duration '2h'"):
        threshold_zones(grid, np.zeros((2, 2)), "ammonia", duration="2h")  # type: ignore[arg-type]


def test_exposed_buildings_synthetic() -> None:
    zones = gpd.GeoDataFrame(
        {"level": ["AEGL-1", "AEGL-2", "AEGL-3"]},
        geometry=[box(0, 0, 300, 300), box(0, 0, 200, 200), box(0, 0, 100, 100)],
        crs="EPSG:5186",
    )
    blocks = gpd.GeoDataFrame(
        {
            "height": [30.0, 10.0, 4.0, 12.0, 50.0],
            "min_height": [0.0, 1.0, 0.0, 3.0, 0.0],
            "use": ["apartments", "office", "residential", "apartments", "apartments"],
        },
        geometry=[
            box(10, 10, 30, 30),  # AEGL-3: 400 m², 10 floors
            box(150, 150, 160, 170),  # AEGL-2: 200 m², 3 floors
            box(250, 250, 260, 260),  # AEGL-1: 100 m², 1 floor (4 m / 3 m rounds to 1)
            box(90, 120, 110, 130),  # centre (100, 125) → AEGL-2: 200 m², 3 floors
            box(400, 0, 420, 20),  # outside
        ],
        crs="EPSG:5186",
    )
    summary = exposed_buildings(zones, blocks, floor_area_per_person=25.0)
    assert summary["buildings"].tolist() == [4.0, 3.0, 1.0]
    assert summary["floor_area_m2"].tolist() == [4000 + 600 + 100 + 600, 4000 + 600 + 600, 4000]
    assert summary.loc["AEGL-3", "residents"] == pytest.approx(4000 / 25)
    homes = exposed_buildings(zones, blocks, residential_uses={"apartments", "residential"})
    assert homes.loc["AEGL-1", "residents"] == pytest.approx((4000 + 100 + 600) / 30)
    with pytest.raises(ValidationError, match=r"rows \[0\]"):
        exposed_buildings(zones, blocks.assign(height=[0.0, 10.0, 4.0, 12.0, 50.0]))


def test_release_in_jamsil_over_real_buildings(shared_data: Path) -> None:
    """Ammonia from a ground-level leak in Jamsil, over the OSM buildings of Songpa."""
    from citytwin.space.buildings import load_buildings

    buildings = load_buildings(shared_data / "osm" / "asanH.osm").frame
    minx, miny, maxx, maxy = buildings.total_bounds
    grid = Grid.covering((minx, miny, maxx, maxy), cell=10.0)
    source = (minx + 300.0, (miny + maxy) / 2)
    c = plume_grid(source, 2000.0, 2.0, 260.0, grid, stability="E", terrain="urban")
    zones = threshold_zones(grid, c, "ammonia")
    summary = exposed_buildings(zones, buildings)
    points = buildings.geometry.representative_point()
    for level, zone in zip(zones["level"], zones.geometry, strict=True):
        inside = points.within(zone).to_numpy()
        assert summary.loc[level, "buildings"] == inside.sum()
        floors = np.maximum(1.0, np.round((buildings["height"] - buildings["min_height"]) / 3.0))
        floor_area = float((buildings.geometry.area * floors)[inside].sum())
        assert summary.loc[level, "residents"] == pytest.approx(floor_area / 30.0)
    assert summary["buildings"].is_monotonic_decreasing
    assert 0 < summary["buildings"].iloc[1] < len(buildings)


def test_wind_from_nearest_sensors() -> None:
    sensors = [[0.0, 200.0], [300.0, 0.0], [0.0, -600.0], [9000.0, 9000.0]]
    speed, direction = wind_from_sensors(
        (0.0, 0.0), sensors, [3.0, 6.0, 1.0, np.nan], [90.0, 180.0, 0.0, 45.0], neighbours=2
    )
    w = np.array([1 / 200**2, 1 / 300**2])
    assert speed == pytest.approx(float(w @ [3.0, 6.0] / w.sum()))
    expected = math.degrees(math.atan2(w[0], -w[1])) % 360
    assert direction == pytest.approx(expected)
    with pytest.raises(ValidationError, match="no sensor has a finite wind"):
        wind_from_sensors((0.0, 0.0), [[1.0, 1.0]], [np.nan], [0.0])


def test_zones_polygons_are_whole_cells() -> None:
    grid = Grid.covering((0.0, 0.0, 40.0, 30.0), cell=10.0)
    c = np.zeros(grid.shape)
    c[0, 0] = c[1, 1] = 1.0  # touching corners only: two squares, still a valid MultiPolygon
    zones = threshold_zones(grid, c, "sulfur dioxide")
    assert zones.geometry.is_valid.all()
    assert shapely.get_num_geometries(zones.geometry.iloc[2]) == 2
    assert zones["area_m2"].tolist() == [200.0, 200.0, 200.0]


def test_grid_kernels_at_breathing_height_and_for_a_drifting_puff() -> None:
    """Receptors 1.5 m up and a puff blown north by a southerly: grid == plume-frame formula."""
    grid = Grid.covering((-300.0, -200.0, 300.0, 1800.0), cell=20.0)
    x, y = grid.centres()
    plume = plume_grid((0.0, 0.0), 3.0, 2.5, 180.0, grid, height=5.0, stability="E",
                       receptor_height=1.5)  # fmt: skip
    expected = gaussian_plume(3.0, 2.5, 5.0, y, -x, 1.5, stability="E")
    np.testing.assert_allclose(plume, expected, rtol=2e-5, atol=1e-9 * expected.max())
    cloud = puff_grid((0.0, 0.0), 50.0, 2.5, 180.0, grid, 400.0, height=5.0, stability="E",
                      receptor_height=1.5)  # fmt: skip
    expected = puff(50.0, 2.5, 5.0, y, -x, 1.5, 400.0, stability="E")
    np.testing.assert_allclose(cloud, expected, rtol=2e-5, atol=1e-9 * expected.max())
    assert y.ravel()[int(np.argmax(cloud))] == pytest.approx(1000.0, abs=10.0)
