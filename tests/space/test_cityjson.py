"""LoD1 extrusion and CityJSON export/import, checked against the official 2.0 schema and cjio."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from shapely.geometry import MultiPolygon, Polygon, box

from citytwin.space.buildings import load_buildings
from citytwin.space.cityjson import read_cityjson, to_cityjson, write_cityjson
from citytwin.space.lod1 import Solid, extrude_footprints, is_closed_and_outward

SAMPLES = (
    "cjio_cube.json",
    "cjio_minimal.json",
    "cjio_delft.json",
    "cjio_rotterdam_subset.json",
    "cjio_DH_01_subs.city.json",
    "cjio_multi_lod.json",
)
COURTYARD = Polygon(
    [(0, 0), (40, 0), (40, 30), (0, 30)], [[(10, 10), (10, 20), (30, 20), (30, 10)]]
)
L_SHAPE = Polygon([(0, 0), (20, 0), (20, 8), (8, 8), (8, 25), (0, 25)])


def _synthetic_frame(origin: tuple[float, float]) -> gpd.GeoDataFrame:
    """Footprints OSM rarely has: a courtyard, an L, two towers under one key, a raised block."""
    shapes = [
        COURTYARD,
        L_SHAPE,
        MultiPolygon([box(0, 0, 12, 12), box(20, 0, 32, 12)]),
        box(0, 0, 15.0004, 9.9996),  # sub-millimetre corners: snapped on export
    ]
    moved = [shapely.affinity.translate(s, *origin) for s in shapes]
    moved = [shapely.affinity.translate(s, 60.0 * i, -150.0) for i, s in enumerate(moved)]
    return gpd.GeoDataFrame(
        {
            "key": ["test:courtyard", "test:l-shape", "test:twin-towers", "test:bridge-block"],
            "name": ["중정 건물", "L", None, "상부 블록"],
            "use": ["apartments", "office", "office", None],
            "height": [21.0, 12.5, 45.25, 6.0],
            "min_height": [0.0, 0.0, 0.0, 4.0],
            "levels": [7.0, np.nan, 15.0, 2.0],
            "dong": ["아산동"] * 4,
        },
        geometry=moved,
        crs="EPSG:5186",
    )


@pytest.fixture(scope="module")
def buildings(shared_data: Path) -> gpd.GeoDataFrame:
    """~50 real OSM footprints (the holed and multipolygon ones included) plus synthetic ones."""
    frame = load_buildings(shared_data / "osm" / "asanH.osm").frame
    parts = shapely.get_parts(frame.geometry.to_numpy())
    special = frame.geom_type.eq("MultiPolygon").to_numpy() | (
        shapely.get_num_interior_rings(frame.geometry.to_numpy()) > 0
    )
    assert special.sum() >= 2, "expected a courtyard and a multipolygon in asanH.osm"
    assert len(parts) > len(frame)
    chosen = pd.concat([frame[special], frame[~special].head(48)])
    origin = tuple(chosen.total_bounds[:2])
    frame = pd.concat([chosen, _synthetic_frame((origin[0], origin[1]))], ignore_index=True)
    return gpd.GeoDataFrame(frame, geometry="geometry", crs="EPSG:5186")


@pytest.fixture(scope="module")
def exported(
    buildings: gpd.GeoDataFrame, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[tuple[str, str]]]:
    path = tmp_path_factory.mktemp("cityjson") / "asan.city.json"
    problems = write_cityjson(buildings, path, metadata={"title": "Asan LoD1"})
    return path, problems


def _document(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def _solids(document: dict[str, Any]) -> list[tuple[str, Solid]]:
    """Every exterior shell of every CityObject, with real (de-quantised) vertices."""
    transform = document["transform"]
    vertices = np.asarray(document["vertices"], np.float64) * transform["scale"]
    vertices += transform["translate"]
    found = []
    for key, city_object in document["CityObjects"].items():
        for geometry in city_object["geometry"]:
            assert geometry["type"] == "Solid"
            found.append((key, Solid(vertices, geometry["boundaries"][0])))
    return found


def test_export_matches_the_official_cityjson_2_schema(
    shared_data: Path, exported: tuple[Path, list[tuple[str, str]]]
) -> None:
    folder = shared_data / "cityjson-schema-2.0"
    schemas = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]
    registry: Registry[Any] = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in schemas
    )
    main = json.loads((folder / "cityjson.schema.json").read_text(encoding="utf-8"))
    errors = list(Draft7Validator(main, registry=registry).iter_errors(_document(exported[0])))
    assert [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]] == []


def test_export_header_and_attributes(
    buildings: gpd.GeoDataFrame, exported: tuple[Path, list[tuple[str, str]]]
) -> None:
    document = _document(exported[0])
    assert (document["type"], document["version"]) == ("CityJSON", "2.0")
    assert document["transform"]["scale"] == [0.001] * 3
    assert document["metadata"]["referenceSystem"].endswith("/EPSG/0/5186")
    assert document["metadata"]["title"] == "Asan LoD1"
    vertices = np.asarray(document["vertices"])
    assert vertices.dtype.kind == "i"
    assert vertices.min(axis=0).tolist() == [0, 0, 0]  # translate is the minimum corner
    extent = document["metadata"]["geographicalExtent"]
    assert extent[:2] == pytest.approx(buildings.total_bounds[:2].tolist(), abs=0.001)
    assert exported[1] == []
    types = [o["type"] for o in document["CityObjects"].values()]
    assert types.count("Building") == len(buildings)
    assert types.count("BuildingPart") == 2 + 2  # the OSM multipolygon and the twin towers
    courtyard = document["CityObjects"]["test:courtyard"]
    assert courtyard["type"] == "Building"
    assert courtyard["attributes"] == {
        "measuredHeight": 21.0,
        "name": "중정 건물",
        "use": "apartments",
        "height": 21.0,
        "min_height": 0.0,
        "levels": 7.0,
        "dong": "아산동",
    }
    assert "levels" not in document["CityObjects"]["test:l-shape"]["attributes"]  # NaN left out
    towers = document["CityObjects"]["test:twin-towers"]
    assert (towers["geometry"], towers["children"]) == (
        [],
        ["test:twin-towers-part1", "test:twin-towers-part2"],
    )
    part = document["CityObjects"]["test:twin-towers-part2"]
    assert (part["type"], part["parents"], part["geometry"][0]["type"]) == (
        "BuildingPart",
        ["test:twin-towers"],
        "Solid",
    )
    solid = courtyard["geometry"][0]
    assert (solid["type"], solid["lod"]) == ("Solid", "1")
    bottom, top, *walls = solid["boundaries"][0]
    assert (len(bottom), len(top), len(walls)) == (2, 2, 8)  # a hole in both caps, 4 inner walls


def test_every_exported_solid_is_closed_and_outward(
    buildings: gpd.GeoDataFrame, exported: tuple[Path, list[tuple[str, str]]]
) -> None:
    solids = _solids(_document(exported[0]))
    expected = len(shapely.get_parts(buildings.geometry.to_numpy()))
    assert len(solids) == expected
    failures = [
        (key, reason)
        for key, solid in solids
        for ok, reason in [is_closed_and_outward(solid)]
        if not ok
    ]
    assert failures == []


@pytest.fixture
def json_encoder_guard() -> Iterator[None]:
    """cjio replaces ``json.encoder``'s float handling when imported (6-decimal floats, no C
    encoder) for the whole process; put it back so later tests see the standard library."""
    namespace = vars(json.encoder)  # typeshed does not declare c_make_encoder
    saved = namespace["c_make_encoder"]
    yield
    namespace["c_make_encoder"] = saved
    namespace.pop("float", None)  # cjio shadows the builtin float in that module


@pytest.mark.usefixtures("json_encoder_guard")
def test_export_loads_in_cjio(
    buildings: gpd.GeoDataFrame, exported: tuple[Path, list[tuple[str, str]]]
) -> None:
    from cjio import cityjson  # type: ignore[import-untyped]  # cjio ships no type hints

    with exported[0].open(encoding="utf-8") as file:
        model = cityjson.reader(file)
    assert model.get_version() == "2.0"
    assert model.get_epsg() == 5186
    assert model.is_transform()
    assert model.number_city_objects_level1() == len(buildings)
    assert model.remove_duplicate_vertices() == 0  # shared corners are already stored once
    assert model.get_bbox() == pytest.approx(
        _document(exported[0])["metadata"]["geographicalExtent"], abs=0.001
    )


def test_round_trip_keeps_buildings_heights_and_areas(
    buildings: gpd.GeoDataFrame, exported: tuple[Path, list[tuple[str, str]]]
) -> None:
    back = read_cityjson(exported[0]).set_index("key").loc[buildings["key"]]
    assert len(back) == len(buildings)
    assert back.crs.to_epsg() == 5186
    np.testing.assert_allclose(back["height"], buildings["height"], atol=0.001)
    np.testing.assert_allclose(back["z_max"] - back["z_min"], buildings["height"], atol=0.001)
    np.testing.assert_allclose(back.area, buildings.area.to_numpy(), rtol=0.001)
    assert (back["lod"] == "1").all()
    assert back.loc["test:courtyard", "name"] == "중정 건물"
    assert back.loc["test:bridge-block", "z_min"] == pytest.approx(4.0)


def test_unextrudable_footprints_are_reported_not_fatal() -> None:
    frame = gpd.GeoDataFrame(
        {"key": list("abcde"), "height": [10.0, 10.0, 0.0, np.nan, 10.0]},
        geometry=[box(0, 0, 5, 5), Polygon(), box(0, 0, 1, 1), box(0, 0, 1, 1), None],
        crs="EPSG:5186",
    )
    document = to_cityjson(frame)
    assert list(document["CityObjects"]) == ["a"]
    blocks = extrude_footprints(frame.geometry.to_numpy(), frame["height"])
    assert blocks.problems == [
        (1, "footprint is empty"),
        (2, "height is not positive"),
        (3, "height is not a number"),
        (4, "footprint is missing"),
    ]


def test_extrusion_removes_repeated_vertices_and_rejects_pinched_rings() -> None:
    repeated = Polygon([(0, 0), (10, 0), (10, 0), (10, 10), (0, 10), (0, 0)])
    pinched = Polygon([(0, 0), (30, 0), (30, 30), (0, 30)], [[(0, 0), (10, 20), (20, 10)]])
    blocks = extrude_footprints([repeated, pinched], [3.0, 3.0])
    assert blocks.rows.tolist() == [0]
    assert len(blocks.shells[0][0]) == 2 + 4  # caps + 4 walls: the repeated corner is gone
    assert is_closed_and_outward(blocks.solid(0)) == (True, "closed, outward, volume 300.000 m³")
    assert blocks.problems[0][0] == 1
    assert "touch" in blocks.problems[0][1]


def test_inward_or_open_shells_fail_the_check() -> None:
    blocks = extrude_footprints([L_SHAPE], [10.0])
    shell = blocks.shells[0][0]
    inverted = [[ring[::-1] for ring in surface] for surface in shell]
    ok, reason = is_closed_and_outward(Solid(blocks.vertices, inverted))
    assert not ok
    assert "not positive" in reason
    ok, reason = is_closed_and_outward(Solid(blocks.vertices, shell[:-1]))
    assert not ok
    assert "open" in reason


def test_export_rejects_a_frame_without_the_needed_columns() -> None:
    frame = gpd.GeoDataFrame({"key": ["a", "a"]}, geometry=[box(0, 0, 1, 1)] * 2, crs=5186)
    with pytest.raises(ValueError, match=r"missing column 'height'.*not unique: \['a'\]"):
        to_cityjson(frame)


@pytest.mark.parametrize("name", SAMPLES)
def test_import_cityjson_samples(shared_data: Path, name: str) -> None:
    path = shared_data / "cityjson" / name
    document = _document(path)
    expected = sum(o["type"] == "Building" for o in document["CityObjects"].values())
    frame = read_cityjson(path)
    assert len(frame) == expected
    assert frame["key"].tolist() == [
        key for key, o in document["CityObjects"].items() if o["type"] == "Building"
    ]
    assert (frame["height"] > 0).all()
    assert frame.is_valid.all()
    assert (frame.area > 0).all()


def test_import_uses_measured_height_and_crs(shared_data: Path) -> None:
    path = shared_data / "cityjson" / "cjio_delft.json"
    buildings = {
        key: o for key, o in _document(path)["CityObjects"].items() if o["type"] == "Building"
    }
    frame = read_cityjson(path).set_index("key")
    measured = [o["attributes"]["measuredHeight"] for o in buildings.values()]
    np.testing.assert_allclose(frame.loc[list(buildings), "height"], measured)
    assert frame.crs.to_epsg() == 28992  # the horizontal part of EPSG:7415 (RD New + NAP)


def test_import_picks_the_highest_lod_and_merges_parts(shared_data: Path) -> None:
    multi_lod = read_cityjson(shared_data / "cityjson" / "cjio_multi_lod.json")
    assert set(multi_lod["lod"]) == {"2.2"}
    path = shared_data / "cityjson" / "cjio_DH_01_subs.city.json"
    parts = sum(o["type"] == "BuildingPart" for o in _document(path)["CityObjects"].values())
    frame = read_cityjson(path)
    assert frame["parts"].sum() == parts
    cube = read_cityjson(shared_data / "cityjson" / "cjio_cube.json")
    assert cube.loc[0, "height"] == pytest.approx(1.0)
    assert cube.area.iloc[0] == pytest.approx(1.0)
