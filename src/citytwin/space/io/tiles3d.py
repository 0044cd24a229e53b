"""LoD1 buildings as OGC 3D Tiles 1.1: a quadtree of binary glTF tiles with per-building metadata.

The flow, vectorised over every building at once (only the per-tile writing loops):

1. :func:`~citytwin.space.lod1.extrude_footprints` gives the closed, outward LoD1 solids; its wall
   quads ``[a₀, b₀, b₁, a₁]`` become two triangles each, and roof and floor are the footprint
   triangulated by GEOS' constrained Delaunay triangulation (holes respected), counter-clockwise
   seen from above for the roof and reversed for the floor. Winding stays counter-clockwise seen
   from outside (glTF 2.0 §3.7.2.1) and every triangle gets its own three vertices so that its
   normal is the flat face normal.
2. Every triangle corner goes EPSG:5186 → WGS84 longitude/latitude → ECEF (EPSG:4979 → EPSG:4978),
   with the building height taken as height above the ellipsoid plus ``ground_height``.
3. Buildings are split into a quadtree by their centres until a tile holds at most
   ``max_buildings_per_tile``. Each leaf's content is expressed in the East-North-Up frame at the
   leaf centre; the leaf's ``transform`` is that frame's ENU → ECEF matrix (column-major). glTF is
   y-up and 3D Tiles z-up, and the runtime turns glTF into tile space by a +90° rotation about x
   (3D Tiles 1.1, "glTF transforms"), so positions are stored as ``(east, up, -north)``.
4. Each ``.glb`` carries POSITION/NORMAL/indices, one material, ``EXT_mesh_features`` (a
   ``_FEATURE_ID_0`` attribute: one feature per building) and ``EXT_structural_metadata`` (a
   property table of class ``building``: id, height, use, dong), as 3D Tiles 1.1 recommends for
   per-feature metadata in glTF content.

Refinement is ``ADD``: LoD1 is a single level of detail, so no parent content is ever replaced;
inner tiles are empty and only steer loading through ``geometricError`` (a tenth of the tile's
side, halving with every level; 0 at the leaves, whose content is the finest there is).
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import shapely
from numpy.typing import NDArray

from citytwin.space.crs import DEFAULT_CITY_CRS, WGS84, transformer
from citytwin.space.lod1 import extrude_footprints

logger = logging.getLogger(__name__)

GEOCENTRIC = "EPSG:4978"
GEOGRAPHIC_3D = "EPSG:4979"
MAX_DEPTH = 20  # a 10 km root halved 20 times is 1 cm: deeper splits cannot separate anything
REQUIRED_COLUMNS = ("key", "height", "geometry")
_ALIGN = 8  # EXT_structural_metadata wants property buffer views 8-byte aligned


@dataclass(frozen=True)
class TilesetReport:
    """What :func:`write_3dtiles` wrote.

    Attributes
    ----------
    tileset
        Path of ``tileset.json``.
    buildings
        Buildings exported (one glTF feature each).
    tiles
        Tiles in the hierarchy; ``content_tiles`` of them carry a ``.glb``.
    triangles
        Triangles over all contents.
    bytes
        Bytes written (``tileset.json`` and every ``.glb``).
    skipped
        ``(key, reason)`` of every building that was not exported.
    """

    tileset: Path
    buildings: int
    tiles: int
    content_tiles: int
    depth: int
    triangles: int
    bytes: int
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Mesh:
    """Triangles of every exported building, in the city CRS."""

    corners: NDArray[np.float64]  # T×3×3: three corners (x, y, z) per triangle
    owner: NDArray[np.intp]  # T: exported building of each triangle (0..B-1)
    rows: NDArray[np.intp]  # B: frame position of each exported building


@dataclass
class _Node:
    """One quadtree tile: its address, the buildings under it, and its children."""

    address: str
    members: NDArray[np.intp]
    side: float
    children: list[_Node] = field(default_factory=list)


def write_3dtiles(
    frame: Any,
    out_dir: str | Path,
    *,
    crs: str = DEFAULT_CITY_CRS,
    max_buildings_per_tile: int = 256,
    ground_height: float = 0.0,
) -> TilesetReport:
    """Write buildings as a 3D Tiles 1.1 tileset of LoD1 glTF tiles.

    Parameters
    ----------
    frame
        GeoDataFrame as from :func:`~citytwin.space.buildings.load_buildings`: ``key``,
        ``height`` (metres above ``min_height``), footprint ``geometry``; ``min_height``, ``use``
        and ``dong`` are used when present.
    out_dir
        Directory for ``tileset.json`` and ``tiles/*.glb`` (created if needed).
    crs
        Metric CRS of the footprints; must agree with ``frame.crs`` when the frame has one.
    max_buildings_per_tile
        A quadtree tile is split while it holds more buildings than this.
    ground_height
        Ellipsoidal height of the ground (metres) added to every building height.

    Returns
    -------
    TilesetReport

    Raises
    ------
    ValueError
        Missing columns, a CRS mismatch, a bad tile size, or no building could be extruded.
    """
    _validate_input(frame, crs, max_buildings_per_tile)
    mesh, problems = _build_mesh(frame)
    keys = frame["key"].astype(str).to_numpy()
    skipped = [(str(keys[row]), reason) for row, reason in sorted(problems.items())]
    if not len(mesh.rows):
        raise ValueError(f"none of the {len(frame)} buildings could be extruded: {skipped[:5]}")
    bounds = shapely.bounds(np.asarray(frame.geometry.values, dtype=object)[mesh.rows])
    centres = (bounds[:, :2] + bounds[:, 2:]) / 2
    root = _quadtree(centres, max_buildings_per_tile)
    out = Path(out_dir)
    (out / "tiles").mkdir(parents=True, exist_ok=True)
    writer = _TileWriter(mesh, _feature_table(frame, mesh.rows), crs, ground_height, out)
    root_json, _ = writer.tile(root)
    root_json["refine"] = "ADD"
    tileset = {
        "asset": {"version": "1.1", "generator": "citytwin"},
        "geometricError": 2 * float(root_json["geometricError"]) or 1.0,
        "root": root_json,
    }
    text = json.dumps(tileset, indent=1).encode()
    (out / "tileset.json").write_bytes(text)
    report = TilesetReport(
        tileset=out / "tileset.json",
        buildings=len(mesh.rows),
        tiles=writer.tiles,
        content_tiles=writer.contents,
        depth=writer.depth,
        triangles=len(mesh.owner),
        bytes=writer.bytes + len(text),
        skipped=skipped,
    )
    logger.info(
        "3D Tiles: %d buildings, %d tiles, %d skipped",
        report.buildings,
        report.tiles,
        len(skipped),
    )
    return report


def _validate_input(frame: Any, crs: str, max_buildings_per_tile: int) -> None:
    """Collect every problem with the arguments of :func:`write_3dtiles` and raise once."""
    problems = [
        f"column {name!r} is missing" for name in REQUIRED_COLUMNS if name not in frame.columns
    ]
    frame_crs = getattr(frame, "crs", None)
    if frame_crs is not None and not frame_crs.equals(crs):
        problems.append(f"frame CRS is {frame_crs.to_string()}, expected {crs}")
    if max_buildings_per_tile < 1:
        problems.append(f"max_buildings_per_tile is {max_buildings_per_tile}; expected ≥ 1")
    if problems:
        raise ValueError("cannot write 3D Tiles: " + "; ".join(problems))


def _numbers(frame: Any, column: str) -> NDArray[np.float64]:
    """A numeric column as float64 (NaN where missing; all NaN when the column is absent)."""
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    numbers: NDArray[np.float64] = pd.to_numeric(frame[column], errors="coerce").to_numpy(
        np.float64, na_value=np.nan
    )
    return numbers


def _build_mesh(frame: Any) -> tuple[_Mesh, dict[int, str]]:
    """Triangulated LoD1 blocks of every building that can be extruded, and why others cannot."""
    geoms = np.asarray(frame.geometry.values, dtype=object)
    height = _numbers(frame, "height")
    bottom = np.nan_to_num(_numbers(frame, "min_height"), nan=0.0)
    blocks = extrude_footprints(geoms, height, bottom)
    problems = {int(row): reason for row, reason in blocks.problems}
    walls, wall_owner = _wall_triangles(blocks.vertices, blocks.shells)
    caps, cap_owner, failed = _cap_triangles(
        geoms[blocks.rows], (bottom + height)[blocks.rows], bottom[blocks.rows]
    )
    for row in blocks.rows[failed].tolist():
        problems[row] = "footprint could not be triangulated"
    renumber = np.full(len(blocks.rows), -1, np.intp)
    kept = np.setdiff1d(np.arange(len(blocks.rows)), failed)
    renumber[kept] = np.arange(len(kept))
    corners = np.concatenate([walls, caps])
    owner = renumber[np.concatenate([wall_owner, cap_owner])]
    return _Mesh(corners[owner >= 0], owner[owner >= 0], blocks.rows[kept]), problems


def _wall_triangles(
    vertices: NDArray[np.float64], shells: list[list[list[list[list[int]]]]]
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Two triangles per wall quad ``[a₀, b₀, b₁, a₁]``, keeping its outward winding."""
    quads = [surface[0] for building in shells for shell in building for surface in shell[2:]]
    counts = [sum(len(shell) - 2 for shell in building) for building in shells]
    quad_array = np.asarray(quads, np.intp).reshape(-1, 4)
    split = quad_array[:, [0, 1, 2, 0, 2, 3]].reshape(-1, 3)
    owner = np.repeat(np.repeat(np.arange(len(shells)), counts), 2)
    return vertices[split], owner


def _cap_triangles(
    geoms: NDArray[Any], top: NDArray[np.float64], bottom: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.intp], NDArray[np.intp]]:
    """Roof (counter-clockwise from above) and floor (reversed) triangles of every footprint.

    Returns the T×3×3 corners, the building of each triangle, and the buildings one of whose
    polygons gave no triangle at all (their shell would be open).
    """
    parts, part_owner = shapely.get_parts(geoms, return_index=True)
    solid = shapely.area(parts) > 0
    parts, part_owner = parts[solid], part_owner[solid]
    triangles, triangle_part = shapely.get_parts(_triangulate(parts), return_index=True)
    xy = shapely.get_coordinates(triangles).reshape(-1, 4, 2)[:, :3]
    edge1, edge2 = xy[:, 1] - xy[:, 0], xy[:, 2] - xy[:, 0]
    twice_area = edge1[:, 0] * edge2[:, 1] - edge1[:, 1] * edge2[:, 0]
    xy = np.where((twice_area < 0)[:, None, None], xy[:, [0, 2, 1]], xy)
    usable = np.abs(twice_area) > 1e-9
    xy, owner = xy[usable], part_owner[triangle_part[usable]]
    empty = np.bincount(triangle_part[usable], minlength=len(parts)) == 0
    roof = np.concatenate([xy, np.repeat(top[owner], 3).reshape(-1, 3, 1)], axis=2)
    floor = np.concatenate([xy[:, ::-1], np.repeat(bottom[owner], 3).reshape(-1, 3, 1)], axis=2)
    return (
        np.concatenate([roof, floor]),
        np.concatenate([owner, owner]),
        np.unique(part_owner[empty]),
    )


def _triangulate(parts: NDArray[Any]) -> NDArray[Any]:
    """Constrained Delaunay triangles of each polygon; an empty collection where GEOS fails."""
    try:
        result: NDArray[Any] = shapely.constrained_delaunay_triangles(parts)
        return result
    except shapely.errors.GEOSException:
        logger.debug("batch triangulation failed; triangulating footprints one by one")
    one_by_one = []
    for part in parts:
        try:
            one_by_one.append(shapely.constrained_delaunay_triangles(part))
        except shapely.errors.GEOSException:
            one_by_one.append(shapely.GeometryCollection())
    return np.asarray(one_by_one, dtype=object)


# ----------------------------------------------------------------------------- metadata

BUILDING_CLASS: dict[str, Any] = {
    "name": "Building",
    "description": "An LoD1 building block",
    "properties": {
        "id": {"type": "STRING", "required": True, "description": "citytwin building key"},
        "height": {
            "type": "SCALAR",
            "componentType": "FLOAT32",
            "required": True,
            "description": "Block height above its base, metres",
        },
        "use": {"type": "STRING", "noData": "", "default": "", "description": "Building use"},
        "dong": {"type": "STRING", "noData": "", "default": "", "description": "Dong (동)"},
    },
}
SCHEMA: dict[str, Any] = {"id": "citytwin", "classes": {"building": BUILDING_CLASS}}


def _feature_table(frame: Any, rows: NDArray[np.intp]) -> dict[str, NDArray[Any]]:
    """The ``building`` property values of the exported rows, in export order."""

    def texts(column: str) -> NDArray[Any]:
        if column not in frame.columns:
            return np.full(len(rows), "", dtype=object)
        values = frame[column].iloc[rows]
        return np.asarray(values.where(values.notna(), "").astype(str), dtype=object)

    return {
        "id": np.asarray(frame["key"].iloc[rows].astype(str), dtype=object),
        "height": _numbers(frame, "height")[rows].astype(np.float32),
        "use": texts("use"),
        "dong": texts("dong"),
    }


# ----------------------------------------------------------------------------- hierarchy


def _quadtree(centres: NDArray[np.float64], max_count: int) -> _Node:
    """Square quadtree over building centres, split while a tile holds more than ``max_count``."""
    low = centres.min(axis=0)
    side = max(float(np.ptp(centres, axis=0).max()), 1.0) * (1 + 1e-9)
    root = _Node("r", np.arange(len(centres)), side)
    pending = [(root, low, 0)]
    while pending:
        node, corner, depth = pending.pop()
        if len(node.members) <= max_count or depth >= MAX_DEPTH:
            continue
        half = node.side / 2
        points = centres[node.members]
        quadrant = (points[:, 0] >= corner[0] + half) + 2 * (points[:, 1] >= corner[1] + half)
        for code in range(4):
            members = node.members[quadrant == code]
            if len(members):
                child = _Node(f"{node.address}{code}", members, half)
                node.children.append(child)
                offset = np.array([code % 2, code // 2]) * half
                pending.append((child, corner + offset, depth + 1))
    return root


def enu_to_ecef(lon: float, lat: float, height: float) -> NDArray[np.float64]:
    """4×4 matrix from the East-North-Up frame at (lon, lat°, ellipsoidal height) to ECEF.

    The origin comes from pyproj (EPSG:4979 → EPSG:4978); the axes are the local east, north and
    up unit vectors of the WGS84 ellipsoid (geodetic normal), as in Cesium's
    ``Transforms.eastNorthUpToFixedFrame``. 3D Tiles stores it column-major:
    ``matrix.T.reshape(-1)``.

    >>> matrix = enu_to_ecef(126.978, 37.5665, 0.0)  # Seoul City Hall
    >>> np.round(matrix[:3, 3] / 1000, 1).tolist()  # ECEF origin, km
    [-3044.8, 4043.8, 3867.4]
    >>> np.round(matrix[:3, 2], 3).tolist()  # local up: the ellipsoid normal
    [-0.477, 0.633, 0.61]
    """
    origin = transformer(GEOGRAPHIC_3D, GEOCENTRIC).transform(lon, lat, height)
    lam, phi = np.radians(lon), np.radians(lat)
    east = [-np.sin(lam), np.cos(lam), 0.0]
    north = [-np.sin(phi) * np.cos(lam), -np.sin(phi) * np.sin(lam), np.cos(phi)]
    up = [np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)]
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2], matrix[:3, 3] = east, north, up, origin
    return matrix


class _TileWriter:
    """Writes the ``.glb`` of every leaf and builds the tile JSON, bottom up."""

    def __init__(
        self,
        mesh: _Mesh,
        table: dict[str, NDArray[Any]],
        crs: str,
        ground_height: float,
        out: Path,
    ) -> None:
        order = np.argsort(mesh.owner, kind="stable")
        self.owner = mesh.owner[order]
        self.starts = np.searchsorted(self.owner, np.arange(len(mesh.rows) + 1))
        corners = mesh.corners[order].reshape(-1, 3)
        lon, lat = transformer(crs, WGS84).transform(corners[:, 0], corners[:, 1])
        height = corners[:, 2] + ground_height
        ecef = transformer(GEOGRAPHIC_3D, GEOCENTRIC).transform(lon, lat, height)
        self.lonlat = np.radians(np.column_stack([lon, lat]))
        self.height = height
        self.ecef = np.column_stack(ecef)
        self.table, self.ground, self.out = table, ground_height, out
        self.tiles = self.contents = self.depth = self.bytes = 0

    def tile(self, node: _Node, depth: int = 0) -> tuple[dict[str, Any], NDArray[np.float64]]:
        """Tile JSON of ``node`` and its region [west, south, east, north, min h, max h]."""
        self.tiles += 1
        self.depth = max(self.depth, depth)
        if not node.children:
            return self._leaf(node)
        tiles, regions = zip(*(self.tile(child, depth + 1) for child in node.children), strict=True)
        stacked = np.vstack(regions)
        region = np.r_[
            stacked[:, [0, 1]].min(0),
            stacked[:, [2, 3]].max(0),
            stacked[:, 4].min(),
            stacked[:, 5].max(),
        ]
        tile = {
            "boundingVolume": {"region": region.tolist()},
            "geometricError": node.side / 10,
            "children": list(tiles),
        }
        return tile, region

    def _leaf(self, node: _Node) -> tuple[dict[str, Any], NDArray[np.float64]]:
        members = np.sort(node.members)
        vertices = _ranges(3 * self.starts[members], 3 * self.starts[members + 1])
        lonlat, height = self.lonlat[vertices], self.height[vertices]
        region = np.r_[lonlat.min(0), lonlat.max(0), height.min(), height.max()]
        centre = np.degrees((region[:2] + region[2:4]) / 2)
        matrix = enu_to_ecef(float(centre[0]), float(centre[1]), self.ground)
        local = (self.ecef[vertices] - matrix[:3, 3]) @ matrix[:3, :3]
        feature = np.searchsorted(members, self.owner[vertices[::3] // 3])
        table = {name: values[members] for name, values in self.table.items()}
        content = _glb(local, np.repeat(feature, 3), table)
        uri = f"tiles/{node.address}.glb"
        (self.out / uri).write_bytes(content)
        self.contents += 1
        self.bytes += len(content)
        tile = {
            "boundingVolume": {"region": region.tolist()},
            "geometricError": 0.0,
            "transform": matrix.T.reshape(-1).tolist(),  # column-major
            "content": {"uri": uri},
        }
        return tile, region


def _ranges(starts: NDArray[np.intp], stops: NDArray[np.intp]) -> NDArray[np.intp]:
    """Concatenation of ``arange(start, stop)`` for every pair, without a Python loop."""
    lengths = stops - starts
    offsets = np.repeat(starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
    return offsets + np.arange(int(lengths.sum()))


# ----------------------------------------------------------------------------- glTF


def _glb(
    local: NDArray[np.float64], feature: NDArray[np.intp], table: dict[str, NDArray[Any]]
) -> bytes:
    """Binary glTF 2.0 of flat-shaded triangles (consecutive vertex triples) with metadata.

    ``local`` is z-up (east, north, up); glTF stores it y-up as (east, up, -north).
    """
    corners = local.reshape(-1, 3, 3)
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    y_up = [0, 2, 1]
    positions = (local[:, y_up] * [1, 1, -1]).astype(np.float32)
    normal_y_up = np.repeat(normals[:, y_up] * [1, 1, -1], 3, axis=0).astype(np.float32)
    count = len(positions)
    body = _Buffer()
    attributes = {
        "POSITION": body.accessor(positions, "VEC3", 34962, bounds=True),
        "NORMAL": body.accessor(normal_y_up, "VEC3", 34962),
        "_FEATURE_ID_0": body.accessor(feature.astype(np.float32), "SCALAR", 34962),
    }
    indices = body.accessor(np.arange(count, dtype=np.uint32), "SCALAR", 34963)
    features = len(table["id"])
    properties = {name: _column(body, values) for name, values in table.items()}
    document: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": "citytwin"},
        "extensionsUsed": ["EXT_mesh_features", "EXT_structural_metadata"],
        "extensions": {
            "EXT_structural_metadata": {
                "schema": SCHEMA,
                "propertyTables": [
                    {
                        "class": "building",
                        "count": features,
                        "properties": {k: v for k, v in properties.items() if v is not None},
                    }
                ],
            }
        },
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "materials": [
            {
                "name": "building",
                "pbrMetallicRoughness": {
                    "baseColorFactor": [0.85, 0.85, 0.82, 1.0],
                    "metallicFactor": 0.0,
                    "roughnessFactor": 0.9,
                },
            }
        ],
        "meshes": [
            {
                "primitives": [
                    {
                        "attributes": attributes,
                        "indices": indices,
                        "material": 0,
                        "mode": 4,
                        "extensions": {
                            "EXT_mesh_features": {
                                "featureIds": [
                                    {"featureCount": features, "attribute": 0, "propertyTable": 0}
                                ]
                            }
                        },
                    }
                ]
            }
        ],
        **body.document(),
    }
    return _pack_glb(document, body.data())


def _column(body: _Buffer, values: NDArray[Any]) -> dict[str, Any] | None:
    """One property-table column: numbers as they are, strings as UTF-8 bytes + uint32 offsets.

    A string column of only empty strings is left out (a buffer view cannot be empty); the class
    gives such properties the default ``""``.
    """
    if values.dtype != object:
        return {"values": body.view(values.tobytes())}
    encoded = [text.encode() for text in values.tolist()]
    offsets = np.r_[0, np.cumsum([len(text) for text in encoded])].astype(np.uint32)
    if offsets[-1] == 0:
        return None
    return {
        "values": body.view(b"".join(encoded)),
        "stringOffsets": body.view(offsets.tobytes()),
        "stringOffsetType": "UINT32",
    }


class _Buffer:
    """The GLB binary chunk being assembled, with its buffer views and accessors."""

    _COMPONENT: ClassVar[dict[np.dtype[Any], int]] = {
        np.dtype(np.float32): 5126,
        np.dtype(np.uint32): 5125,
    }

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.length = 0
        self.views: list[dict[str, Any]] = []
        self.accessors: list[dict[str, Any]] = []

    def view(self, data: bytes, target: int | None = None) -> int:
        """Append ``data`` (8-byte aligned) as a new buffer view; return its index."""
        padding = -self.length % _ALIGN
        self.chunks.append(b"\0" * padding + data)
        view: dict[str, Any] = {
            "buffer": 0,
            "byteOffset": self.length + padding,
            "byteLength": len(data),
        }
        if target is not None:
            view["target"] = target
        self.length += padding + len(data)
        self.views.append(view)
        return len(self.views) - 1

    def accessor(self, array: NDArray[Any], kind: str, target: int, *, bounds: bool = False) -> int:
        """Append ``array`` as a tightly packed buffer view with one accessor; return its index."""
        accessor: dict[str, Any] = {
            "bufferView": self.view(np.ascontiguousarray(array).tobytes(), target),
            "componentType": self._COMPONENT[array.dtype],
            "count": len(array),
            "type": kind,
        }
        if bounds:
            accessor["min"] = array.min(axis=0).astype(float).tolist()
            accessor["max"] = array.max(axis=0).astype(float).tolist()
        self.accessors.append(accessor)
        return len(self.accessors) - 1

    def data(self) -> bytes:
        return b"".join(self.chunks)

    def document(self) -> dict[str, Any]:
        return {
            "buffers": [{"byteLength": self.length}],
            "bufferViews": self.views,
            "accessors": self.accessors,
        }


def _pack_glb(document: dict[str, Any], binary: bytes) -> bytes:
    """GLB container (glTF 2.0 §4.4): header, JSON chunk padded with spaces, BIN chunk with 0s."""
    text = json.dumps(document, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    header = struct.pack("<4sII", b"glTF", 2, total)
    return (
        header
        + struct.pack("<I4s", len(text), b"JSON")
        + text
        + struct.pack("<I4s", len(binary), b"BIN\0")
        + binary
    )
