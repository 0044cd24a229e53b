"""3D Tiles 1.1 export of the Jamsil (asanH.osm) buildings, checked against the official tools.

The tileset is validated with the OGC 3D Tiles 1.1 JSON Schema, every ``.glb`` with Khronos'
glTF-Validator (npm ``gltf-validator``, through ``scripts/validate-gltf.mjs``), and the placement
on the globe by recomputing each vertex's ECEF position from EPSG:5186 independently of the
exporter.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from jsonschema import Draft202012Validator
from numpy.typing import NDArray
from pyproj import Transformer
from referencing import Registry, Resource
from shapely.geometry import Polygon, box

from citytwin.space.buildings import load_buildings
from citytwin.space.io.tiles3d import TilesetReport, enu_to_ecef, write_3dtiles

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
JAMSIL_BUILDINGS = 1357  # building ways and multipolygons in asanH.osm (see test_buildings.py)


@dataclass(frozen=True)
class Glb:
    document: dict[str, Any]
    binary: bytes

    def accessor(self, index: int) -> NDArray[Any]:
        accessor = self.document["accessors"][index]
        view = self.document["bufferViews"][accessor["bufferView"]]
        dtype = {5126: np.float32, 5125: np.uint32}[accessor["componentType"]]
        width = {"SCALAR": 1, "VEC3": 3}[accessor["type"]]
        start = view["byteOffset"]
        values = np.frombuffer(self.binary, dtype, accessor["count"] * width, start)
        return values.reshape(-1, width) if width > 1 else values

    def view(self, index: int) -> bytes:
        view = self.document["bufferViews"][index]
        return self.binary[view["byteOffset"] : view["byteOffset"] + view["byteLength"]]

    def strings(self, column: dict[str, int]) -> list[str]:
        offsets = np.frombuffer(self.view(column["stringOffsets"]), np.uint32)
        data = self.view(column["values"])
        return [data[a:b].decode() for a, b in itertools.pairwise(offsets.tolist())]


def read_glb(path: Path) -> Glb:
    """JSON and BIN chunks of a GLB file, checking the container header."""
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", data)
    assert (magic, version, length) == (b"glTF", 2, len(data))
    json_length, json_type = struct.unpack_from("<I4s", data, 12)
    assert json_type == b"JSON"
    bin_length, bin_type = struct.unpack_from("<I4s", data, 20 + json_length)
    assert bin_type == b"BIN\0"
    binary = data[28 + json_length : 28 + json_length + bin_length]
    return Glb(json.loads(data[20 : 20 + json_length]), binary)


def leaves(tile: dict[str, Any], parent: NDArray[np.float64]) -> list[tuple[dict[str, Any], Any]]:
    """Content tiles with their full tile → ECEF transform (parents' transforms applied)."""
    own = np.asarray(tile.get("transform", np.eye(4).reshape(-1)), np.float64).reshape(4, 4).T
    matrix = parent @ own
    found = [(tile, matrix)] if "content" in tile else []
    for child in tile.get("children", []):
        found += leaves(child, matrix)
    return found


@pytest.fixture(scope="module")
def jamsil(shared_data: Path) -> Any:
    return load_buildings(shared_data / "osm" / "asanH.osm").frame


@pytest.fixture(scope="module")
def exported(jamsil: Any, tmp_path_factory: pytest.TempPathFactory) -> TilesetReport:
    return write_3dtiles(jamsil, tmp_path_factory.mktemp("tiles"), max_buildings_per_tile=128)


@pytest.fixture(scope="module")
def tileset(exported: TilesetReport) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(exported.tileset.read_text())
    return document


@pytest.fixture(scope="module")
def schema_registry(shared_data: Path) -> tuple[Registry[Any], Path]:
    """Every official 3D Tiles 1.1 schema, registered under its file URI (relative refs work)."""
    root = shared_data / "3dtiles-schema"
    resources = []
    for path in sorted(root.rglob("*.schema.json")):
        contents = json.loads(path.read_text())
        contents.pop("$id", None)  # ids are bare file names; the file URI is the real base
        resources.append((path.as_uri(), Resource.from_contents(contents)))
    return Registry().with_resources(resources), root


def validate_with(registry: tuple[Registry[Any], Path], schema: str, instance: Any) -> list[str]:
    """Messages of every schema violation of ``instance`` against ``schema`` (a relative path)."""
    found, root = registry
    validator = Draft202012Validator({"$ref": (root / schema).as_uri()}, registry=found)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]


def test_tileset_validates_against_official_schema(
    tileset: dict[str, Any], schema_registry: tuple[Registry[Any], Path]
) -> None:
    assert validate_with(schema_registry, "tileset.schema.json", tileset) == []
    assert tileset["asset"]["version"] == "1.1"
    assert tileset["root"]["refine"] == "ADD"


def test_hierarchy_splits_by_count_and_error_shrinks(
    tileset: dict[str, Any], exported: TilesetReport
) -> None:
    def walk(tile: dict[str, Any], parent_error: float) -> None:
        assert "region" in tile["boundingVolume"]
        assert tile["geometricError"] < parent_error or tile["geometricError"] == 0
        for child in tile.get("children", []):
            walk(child, tile["geometricError"])

    walk(tileset["root"], tileset["geometricError"])
    contents = leaves(tileset["root"], np.eye(4))
    assert len(contents) == exported.content_tiles > JAMSIL_BUILDINGS // 128
    assert exported.depth >= 2


def test_every_building_is_one_feature(
    tileset: dict[str, Any], exported: TilesetReport, jamsil: Any
) -> None:
    assert exported.buildings + len(exported.skipped) == JAMSIL_BUILDINGS
    ids: list[str] = []
    for tile, _ in leaves(tileset["root"], np.eye(4)):
        glb = read_glb(exported.tileset.parent / tile["content"]["uri"])
        metadata = glb.document["extensions"]["EXT_structural_metadata"]
        (feature_ids,) = glb.document["meshes"][0]["primitives"][0]["extensions"][
            "EXT_mesh_features"
        ]["featureIds"]
        (table,) = metadata["propertyTables"]
        assert table["count"] == feature_ids["featureCount"] <= 128
        features = glb.accessor(
            glb.document["meshes"][0]["primitives"][0]["attributes"]["_FEATURE_ID_0"]
        )
        assert set(np.unique(features).tolist()) == set(range(table["count"]))
        ids += glb.strings(table["properties"]["id"])
    assert len(ids) == len(set(ids)) == exported.buildings
    assert set(ids) == set(jamsil["key"]) - {key for key, _ in exported.skipped}


def test_property_table_holds_source_values(
    tileset: dict[str, Any], exported: TilesetReport, jamsil: Any
) -> None:
    tile, _ = leaves(tileset["root"], np.eye(4))[0]
    glb = read_glb(exported.tileset.parent / tile["content"]["uri"])
    (table,) = glb.document["extensions"]["EXT_structural_metadata"]["propertyTables"]
    ids = glb.strings(table["properties"]["id"])
    heights = np.frombuffer(glb.view(table["properties"]["height"]["values"]), np.float32)
    source = jamsil.set_index("key").loc[ids]
    np.testing.assert_allclose(heights, source["height"].to_numpy(float), rtol=1e-6)
    if "use" in table["properties"]:
        uses = glb.strings(table["properties"]["use"])
        assert uses == source["use"].fillna("").astype(str).tolist()


def test_gltf_metadata_matches_official_metadata_schema(
    tileset: dict[str, Any], exported: TilesetReport, schema_registry: tuple[Registry[Any], Path]
) -> None:
    """EXT_structural_metadata shares its schema and property-table shapes with 3D Tiles 1.1."""
    tile, _ = leaves(tileset["root"], np.eye(4))[0]
    glb = read_glb(exported.tileset.parent / tile["content"]["uri"])
    metadata = glb.document["extensions"]["EXT_structural_metadata"]
    assert validate_with(schema_registry, "Schema/schema.schema.json", metadata["schema"]) == []
    for table in metadata["propertyTables"]:
        problems = validate_with(schema_registry, "PropertyTable/propertyTable.schema.json", table)
        assert problems == []
    assert set(glb.document["extensionsUsed"]) == {"EXT_mesh_features", "EXT_structural_metadata"}
    for view in glb.document["bufferViews"]:
        assert view["byteOffset"] % 8 == 0


def test_vertices_land_on_their_ecef_position(
    tileset: dict[str, Any], exported: TilesetReport, jamsil: Any
) -> None:
    """Tile transform ∘ (glTF y-up → z-up) puts every roof corner within 5 cm of its ECEF point.

    The expected point is computed here with pyproj alone (EPSG:5186 → 4326, then 4979 → 4978
    with the roof height as ellipsoidal height), not with the exporter's code.
    """
    to_lonlat = Transformer.from_crs("EPSG:5186", "EPSG:4326", always_xy=True)
    to_ecef = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)
    frame = jamsil.set_index("key")
    checked = 0
    for tile, matrix in leaves(tileset["root"], np.eye(4)):
        glb = read_glb(exported.tileset.parent / tile["content"]["uri"])
        primitive = glb.document["meshes"][0]["primitives"][0]
        y_up = glb.accessor(primitive["attributes"]["POSITION"]).astype(np.float64)
        z_up = np.column_stack([y_up[:, 0], -y_up[:, 2], y_up[:, 1]])  # x-axis rotation by +90°
        ecef = (np.column_stack([z_up, np.ones(len(z_up))]) @ matrix.T)[:, :3]
        features = glb.accessor(primitive["attributes"]["_FEATURE_ID_0"]).astype(int)
        (table,) = glb.document["extensions"]["EXT_structural_metadata"]["propertyTables"]
        for feature, key in enumerate(glb.strings(table["properties"]["id"])):
            row = frame.loc[key]
            xy = shapely.get_coordinates(row.geometry)  # every ring of every part
            lon, lat = to_lonlat.transform(xy[:, 0], xy[:, 1])
            roof = float(row["min_height"]) + float(row["height"])
            expected = np.column_stack(to_ecef.transform(lon, lat, np.full(len(lon), roof)))
            mine = ecef[features == feature]
            gaps = np.linalg.norm(expected[:, None, :] - mine[None, :, :], axis=2).min(axis=1)
            assert gaps.max() < 0.05, key
            checked += 1
    assert checked == exported.buildings


def test_regions_contain_their_content(tileset: dict[str, Any], exported: TilesetReport) -> None:
    to_geodetic = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True)
    for tile, matrix in leaves(tileset["root"], np.eye(4)):
        glb = read_glb(exported.tileset.parent / tile["content"]["uri"])
        y_up = glb.accessor(glb.document["meshes"][0]["primitives"][0]["attributes"]["POSITION"])
        z_up = np.column_stack([y_up[:, 0], -y_up[:, 2], y_up[:, 1]]).astype(np.float64)
        ecef = (np.column_stack([z_up, np.ones(len(z_up))]) @ matrix.T)[:, :3]
        lon, lat, height = to_geodetic.transform(ecef[:, 0], ecef[:, 1], ecef[:, 2])
        west, south, east, north, low, high = tile["boundingVolume"]["region"]
        slack = 1e-8  # radians, ~6 cm
        assert west - slack <= np.radians(lon).min()
        assert np.radians(lon).max() <= east + slack
        assert south - slack <= np.radians(lat).min()
        assert np.radians(lat).max() <= north + slack
        assert low - 0.05 <= height.min()
        assert height.max() <= high + 0.05


def test_every_glb_passes_khronos_gltf_validator(exported: TilesetReport) -> None:
    if not (REPO / "node_modules" / "gltf-validator").is_dir() or shutil.which("node") is None:
        if IN_CI:
            pytest.fail("gltf-validator is not installed: run scripts/node-deps.sh")
        pytest.skip("gltf-validator not installed (run scripts/node-deps.sh)")
    files = sorted((exported.tileset.parent / "tiles").glob("*.glb"))
    script = REPO / "scripts" / "validate-gltf.mjs"
    result = subprocess.run(
        ["node", str(script), *map(str, files)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    reports = json.loads(result.stdout)
    assert len(reports) == len(files) == exported.content_tiles
    assert [r["file"] for r in reports if r["numErrors"] or r["numWarnings"]] == []
    assert {r["validatorVersion"] for r in reports} == {"2.0.0-dev.3.10"}


def test_box_becomes_closed_flat_shaded_block(tmp_path: Path) -> None:
    """A box and a courtyard block: triangle counts, enclosed volumes, unit normals.

    A ring of n vertices with h holes triangulates into n + 2h - 2 triangles (8 for the
    courtyard's roof and floor each), plus two per wall.
    """
    import geopandas as gpd

    courtyard = Polygon(
        [(0, 0), (30, 0), (30, 30), (0, 30)], [[(10, 10), (10, 20), (20, 20), (20, 10)]]
    )
    frame = gpd.GeoDataFrame(
        {"key": ["a", "b"], "height": [12.0, 6.0], "use": ["office", None]},
        geometry=[
            box(198000, 551000, 198010, 551020),
            shapely.affinity.translate(courtyard, 198100, 551000),
        ],
        crs="EPSG:5186",
    )
    report = write_3dtiles(frame, tmp_path)
    assert (report.buildings, report.tiles, report.triangles) == (2, 1, 12 + 16 + 2 * 8)
    glb = read_glb(tmp_path / "tiles" / "r.glb")
    primitive = glb.document["meshes"][0]["primitives"][0]
    positions = glb.accessor(primitive["attributes"]["POSITION"]).astype(np.float64)
    normals = glb.accessor(primitive["attributes"]["NORMAL"]).astype(np.float64)
    features = glb.accessor(primitive["attributes"]["_FEATURE_ID_0"])
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
    for feature, volume in ((0, 10 * 20 * 12.0), (1, (900 - 100) * 6.0)):
        corners = positions[features == feature].reshape(-1, 3, 3)
        signed = np.einsum("ij,ij->i", corners[:, 0], np.cross(corners[:, 1], corners[:, 2]))
        assert signed.sum() / 6 == pytest.approx(volume, rel=1e-5)


def test_enu_frame_is_orthonormal_and_on_the_ellipsoid() -> None:
    matrix = enu_to_ecef(126.978, 37.5665, 0.0)
    axes = matrix[:3, :3]
    np.testing.assert_allclose(axes.T @ axes, np.eye(3), atol=1e-12)
    assert np.linalg.det(axes) == pytest.approx(1.0)
    assert np.linalg.norm(matrix[:3, 3]) == pytest.approx(6_370_000, abs=10_000)
    assert matrix[2, 3] > 0  # northern hemisphere
    assert matrix[0, 3] < 0  # east of 90° E


def test_bad_input_lists_every_problem(jamsil: Any, tmp_path: Path) -> None:
    frame = jamsil.drop(columns=["height"]).to_crs("EPSG:4326")
    with pytest.raises(ValueError, match=r"'height' is missing.*EPSG:4326.*max_buildings"):
        write_3dtiles(frame, tmp_path, max_buildings_per_tile=0)


def test_unextrudable_buildings_are_reported(jamsil: Any, tmp_path: Path) -> None:
    frame = jamsil.head(3).copy()
    frame.loc[frame.index[0], "height"] = -1.0
    report = write_3dtiles(frame, tmp_path)
    assert report.buildings == 2
    assert report.skipped == [(frame["key"].iloc[0], "height is not positive")]
