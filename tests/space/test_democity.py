"""The synthetic demo city: deterministic, consistent layers, readable by the real readers.

Targets checked here (documented in :mod:`citytwin.space.democity`): 6–9 gu and 48–80 dong that
tile the city; buildings exactly as many as asked, non-overlapping, dry and off the streets, with
a core median height above 60 m and at least 70 % of buildings at five floors or fewer (80–90 %
by design); one strongly connected street network; sensors on land, inside the districts,
denser in the core.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely

from citytwin.emulator.sites import Sites
from citytwin.ingest.sdot import load_registry
from citytwin.space.buildings import COLUMNS as BUILDING_COLUMNS
from citytwin.space.buildings import load_buildings
from citytwin.space.crs import in_korea, to_city, to_wgs84
from citytwin.space.democity import DemoCity, build_demo_city, write_demo_city
from citytwin.space.districts import load_districts
from citytwin.space.roads import ROAD_CLASSES, RoadNetwork

USES = {"commercial", "office", "apartments", "residential", "retail", "school", "industrial"}


@pytest.fixture(scope="module")
def city() -> DemoCity:
    return build_demo_city(seed=7, buildings=3_000, sensors=200)


@pytest.fixture(scope="module")
def full_city() -> DemoCity:
    return build_demo_city()


def _same(a: DemoCity, b: DemoCity) -> bool:
    frames = [
        (a.districts, b.districts),
        (a.buildings, b.buildings),
        (a.roads.links, b.roads.links),
    ]
    for x, y in frames:
        pd.testing.assert_frame_equal(x.drop(columns="geometry"), y.drop(columns="geometry"))
    geometries = [(x.geometry.to_numpy(), y.geometry.to_numpy()) for x, y in frames]
    return all(bool(shapely.equals_exact(g, h, tolerance=0).all()) for g, h in geometries) and (
        a.sensor_sites.serials == b.sensor_sites.serials
        and np.array_equal(a.sensor_sites.lon, b.sensor_sites.lon)
    )


def test_same_seed_same_city(city: DemoCity) -> None:
    assert _same(city, build_demo_city(seed=7, buildings=3_000, sensors=200))


def test_other_seed_other_city(city: DemoCity) -> None:
    other = build_demo_city(seed=8, buildings=3_000, sensors=200)
    assert not shapely.equals_exact(other.river, city.river, tolerance=1.0)
    assert not np.allclose(other.buildings.geometry.area, city.buildings.geometry.area)


@pytest.mark.parametrize(("buildings", "sensors"), [(3_000, 200), (20_000, 1_100)])
def test_counts_are_exact(
    city: DemoCity, full_city: DemoCity, buildings: int, sensors: int
) -> None:
    built = city if buildings == 3_000 else full_city
    assert (len(built.buildings), len(built.sensor_sites)) == (buildings, sensors)
    gu, dong = built.district_layer().level("gu"), built.district_layer().level("dong")
    assert 6 <= len(gu) <= 9
    assert 48 <= len(dong) <= 80


def test_district_codes_levels_and_parents(city: DemoCity) -> None:
    frame = city.districts
    assert list(frame.columns) == [
        "key", "code", "name", "name_eng", "level", "parent_code", "geometry",
    ]  # fmt: skip
    gu, dong = frame[frame["level"] == "gu"], frame[frame["level"] == "dong"]
    assert gu["code"].str.fullmatch(r"99\d{3}").all()
    assert dong["code"].str.fullmatch(r"99\d{5}").all()
    assert (dong["code"].str[:5] == dong["parent_code"]).all()
    assert set(dong["parent_code"]) == set(gu["code"])
    assert gu["parent_code"].isna().all()
    assert (gu.geometry.geom_type == "Polygon").all()  # each gu in one piece
    assert (frame["key"] == frame["level"] + ":" + frame["code"]).all()
    assert frame["key"].is_unique
    assert frame["name"].is_unique
    assert gu["name"].str.endswith("구").all()
    assert dong["name"].str.endswith("동").all()


def test_dong_tile_the_city_and_nest_in_gu(city: DemoCity) -> None:
    frame = city.districts
    dong = frame[frame["level"] == "dong"]
    geometry = dong.geometry.to_numpy()
    left, right = shapely.STRtree(geometry).query(geometry, predicate="intersects")
    pairs = left < right
    shared = shapely.area(shapely.intersection(geometry[left[pairs]], geometry[right[pairs]]))
    assert shared.sum() < 1e-6 * city.boundary.area
    assert shapely.union_all(geometry).area == pytest.approx(city.boundary.area, rel=1e-9)
    for _, gu in frame[frame["level"] == "gu"].iterrows():
        parts = dong[dong["parent_code"] == gu["code"]].geometry
        union = shapely.union_all(parts.to_numpy())
        assert union.area == pytest.approx(gu.geometry.area, rel=1e-6)
        assert shapely.symmetric_difference(union, gu.geometry).area < 1e-6 * gu.geometry.area


def test_buildings_are_valid_separate_and_dry(city: DemoCity) -> None:
    frame = city.buildings
    assert list(frame.columns) == list(BUILDING_COLUMNS)
    geometry = frame.geometry.to_numpy()
    assert shapely.is_valid(geometry).all()
    left, right = shapely.STRtree(geometry).query(geometry, predicate="intersects")
    assert (left == right).all()
    assert not shapely.intersects(city.river, geometry).any()
    on_street = shapely.STRtree(city.roads.links.geometry.to_numpy()).query(
        geometry, predicate="intersects"
    )
    assert on_street.shape[1] == 0
    assert frame["key"].is_unique
    assert frame["key"].str.fullmatch(r"demo:building/\d+").all()
    assert set(frame["use"]) == USES
    assert shapely.get_num_coordinates(geometry).max() == 7  # some L-shaped footprints


@pytest.mark.parametrize("size", ["small", "full"])
def test_building_heights(city: DemoCity, full_city: DemoCity, size: str) -> None:
    frame = (city if size == "small" else full_city).buildings
    core = (city if size == "small" else full_city).core
    assert (frame["height_source"] == "levels").all()
    np.testing.assert_array_equal(frame["height"], frame["levels"] * 3.0)
    in_core = shapely.within(frame.geometry.centroid.to_numpy(), core)
    assert np.median(frame.loc[in_core, "height"]) > 60.0
    assert (frame["levels"] <= 5).mean() > 0.7
    towers = frame[frame["use"].isin(["office", "commercial"]) & in_core]["levels"]
    assert towers.between(20, 60).mean() > 0.95
    flats = frame[frame["use"] == "apartments"]["levels"]
    assert flats.between(15, 35).all()


def test_road_network(city: DemoCity) -> None:
    links = city.roads.links
    RoadNetwork(city.roads.nodes, links, city.crs, "again")  # validation passes
    components = city.roads.strong_components()
    tail, head = city.roads.edge_index()
    assert ((components[tail] == 0) & (components[head] == 0)).mean() >= 0.95
    classes = links["road_class"]
    assert set(classes) == {"primary", "secondary", "residential"}
    assert links.loc[classes == "primary", "lanes"].between(3, 4).all()
    per_lane = classes.map({c: ROAD_CLASSES[c].capacity_per_lane for c in set(classes)})
    np.testing.assert_allclose(links["capacity_veh_h"], links["lanes"] * per_lane)
    speed = classes.map({c: ROAD_CLASSES[c].speed_kmh for c in set(classes)})
    np.testing.assert_allclose(links["free_speed_kmh"], speed)
    np.testing.assert_allclose(links["length_m"], links.geometry.length)
    assert (links["length_m"] > 0).all()


def test_only_bridges_cross_the_river(city: DemoCity) -> None:
    links = city.roads.links
    wet = links[shapely.intersects(city.river, links.geometry.to_numpy())]
    assert len(city.bridges) >= 20
    assert set(wet["link_id"]) == set(city.bridges["link_id"])
    assert city.bridges["name"].str.endswith("대교").all()
    assert (city.bridges["lanes"] == 4).all()


def test_sensor_sites(city: DemoCity) -> None:
    sites = city.sensor_sites
    assert isinstance(sites, Sites)
    assert all(re.fullmatch(r"DEMO\d{7}", s) for s in sites.serials)
    assert len(set(sites.serials)) == len(sites)
    assert in_korea(sites.lon, sites.lat).all()
    x, y = to_city(sites.lon, sites.lat, city.crs)
    dong = city.districts[city.districts["level"] == "dong"].geometry.to_numpy()
    assert shapely.contains_xy(shapely.union_all(dong), x, y).all()
    assert not shapely.contains_xy(city.river, x, y).any()
    core_share = shapely.contains_xy(city.core, x, y).mean()
    assert core_share > 3 * city.core.area / city.boundary.area


def test_written_files_read_back(city: DemoCity, tmp_path: Path) -> None:
    paths = write_demo_city(city, tmp_path / "demo")
    districts = load_districts(paths["districts"])
    assert districts.problems == []
    assert len(districts) == len(city.districts)
    assert list(districts.frame["key"]) == list(city.districts["key"])
    buildings = load_buildings(paths["buildings"])
    assert buildings.problems == []
    assert len(buildings.frame) == len(city.buildings)
    np.testing.assert_array_equal(buildings.frame["height"], city.buildings["height"])
    registry = load_registry(paths["sensors"])
    assert list(registry) == list(city.sensor_sites.serials)
    lon, lat = np.array(list(registry.values())).T
    np.testing.assert_allclose(lon, city.sensor_sites.lon, atol=1e-6)
    np.testing.assert_allclose(lat, city.sensor_sites.lat, atol=1e-6)
    assert write_demo_city(city, tmp_path / "demo") == paths  # rewriting replaces


def test_other_projected_crs() -> None:
    other = build_demo_city(seed=7, buildings=500, sensors=20, crs="EPSG:5179")
    assert other.buildings.crs == "EPSG:5179"
    assert other.roads.links.crs == "EPSG:5179"
    lon, lat = to_wgs84(other.river.centroid.x, other.river.centroid.y, "EPSG:5179")
    assert in_korea(lon, lat).all()


def test_bad_requests_are_refused() -> None:
    with pytest.raises(ValueError, match="geographic"):
        build_demo_city(buildings=10, sensors=1, crs="EPSG:4326")
    with pytest.raises(ValueError, match="free lots"):
        build_demo_city(buildings=10_000_000, sensors=1)
