"""CityJSON export (LoD1 block models, CityJSON 2.0) and import (Building footprints and heights).

``to_cityjson`` / ``write_cityjson`` extrude a building frame with :mod:`citytwin.space.lod1` and
write a CityJSON 2.0 document (https://www.cityjson.org/specs/2.0.1/): integer vertices with a
1 mm ``transform``, one ``Building`` per row whose geometry is a ``Solid`` with Ground/Roof/Wall
semantics (a MultiPolygon footprint gives one ``BuildingPart`` child with a ``Solid`` per
polygon), and the row's columns as attributes (``measuredHeight`` is the block height).
Footprints are snapped to the 1 mm grid *before* extrusion, so quantising the vertices cannot
create repeated vertices or open seams.

``read_cityjson`` goes the other way for CityJSON 1.1 and 2.0 files: one row per ``Building``,
its ``BuildingPart`` children merged in, from the highest LoD1/LoD2 geometry of each object
(Solid, MultiSolid, CompositeSolid, MultiSurface, CompositeSurface). The footprint is the union of
the downward-facing surfaces projected to 2D (the ground surface of a well-formed model); when a
model has none, the union of every non-vertical surface; failing that, the convex hull.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from numpy.typing import NDArray
from pyproj import CRS
from pyproj.exceptions import CRSError

from citytwin.errors import FeedError
from citytwin.space.crs import DEFAULT_CITY_CRS
from citytwin.space.lod1 import Shell, extrude_footprints

logger = logging.getLogger(__name__)

VERSION: Final = "2.0"
READABLE_VERSIONS: Final = ("1.1", "2.0")
SCALE: Final = 0.001  # metres: 1 mm, the resolution CityJSON files customarily use
LOD1_VALUES: Final = ("1", "1.0", "1.1", "1.2", "1.3")
REQUIRED_COLUMNS: Final = ("key", "height", "geometry")
SEMANTICS: Final = [{"type": "GroundSurface"}, {"type": "RoofSurface"}, {"type": "WallSurface"}]
PART_SEPARATOR: Final = "-part"  # BuildingPart ids: <key>-part1, <key>-part2, …
SURFACE_GEOMETRIES: Final = ("MultiSurface", "CompositeSurface")
SOLID_GEOMETRIES: Final = ("Solid",)
MULTI_SOLID_GEOMETRIES: Final = ("MultiSolid", "CompositeSolid")
# |n_z| of a unit normal: above it a surface faces down (ground) or up (roof); below, it is a wall
FACING: Final = 0.5


def to_cityjson(
    frame: gpd.GeoDataFrame,
    *,
    crs: str = DEFAULT_CITY_CRS,
    lod: str = "1",
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A CityJSON 2.0 document of LoD1 blocks, one ``Building`` per extrudable row of ``frame``.

    Parameters
    ----------
    frame
        Columns ``key`` (unique; becomes the CityObject id), ``height`` (metres) and ``geometry``
        (Polygon/MultiPolygon footprints); ``min_height`` is the block bottom when present.
        Every other column becomes an attribute (missing values are left out).
    crs
        Projected CRS with an EPSG code; ``frame`` is transformed to it if it is in another.
    lod
        The LoD written on each geometry: one of ``LOD1_VALUES``.
    metadata
        Extra metadata members (``title``, ``identifier``, ``referenceDate``, …).

    Footprints that cannot be extruded are left out and logged (``write_cityjson`` returns them).

    >>> from shapely.geometry import box
    >>> blocks = gpd.GeoDataFrame({"key": ["a"], "height": [10.0]}, geometry=[box(0, 0, 4, 5)],
    ...                           crs="EPSG:5186")
    >>> document = to_cityjson(blocks)
    >>> document["metadata"]["geographicalExtent"], len(document["vertices"])
    ([0.0, 0.0, 0.0, 4.0, 5.0, 10.0], 8)
    """
    return _build_document(frame, crs=crs, lod=lod, metadata=metadata)[0]


def write_cityjson(
    frame: gpd.GeoDataFrame,
    path: str | Path,
    *,
    crs: str = DEFAULT_CITY_CRS,
    lod: str = "1",
    metadata: Mapping[str, Any] | None = None,
) -> list[tuple[str, str]]:
    """Write :func:`to_cityjson` to ``path``; return ``(key, reason)`` for buildings left out."""
    document, problems = _build_document(frame, crs=crs, lod=lod, metadata=metadata)
    Path(path).write_text(json.dumps(document, separators=(",", ":")), encoding="utf-8")
    logger.info("%s: %d buildings", path, len(document["CityObjects"]))
    return problems


def _build_document(
    frame: gpd.GeoDataFrame, *, crs: str, lod: str, metadata: Mapping[str, Any] | None
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    target = _validate_export(frame, crs, lod)
    if frame.crs is not None and not CRS.from_user_input(frame.crs).equals(target):
        frame = frame.to_crs(target)
    footprints = shapely.set_precision(np.asarray(frame.geometry.to_numpy(), object), SCALE)
    height = np.round(frame["height"].to_numpy(np.float64, na_value=np.nan), 3)
    bottom = (
        np.round(frame["min_height"].to_numpy(np.float64, na_value=np.nan), 3)
        if "min_height" in frame
        else None
    )
    blocks = extrude_footprints(footprints, height, bottom)
    keys = frame["key"].astype(str).tolist()
    problems = [(keys[position], reason) for position, reason in blocks.problems]
    for key, reason in problems:
        logger.warning("building %s left out of the CityJSON: %s", key, reason)
    vertices, translate, remap = _quantise(blocks.vertices)
    attributes = _attributes(frame, blocks.rows, height)
    objects: dict[str, Any] = {}
    for i, (row, shells) in enumerate(zip(blocks.rows.tolist(), blocks.shells, strict=True)):
        solids = [_solid([_renumber(shell, remap)], lod) for shell in shells]
        objects.update(_building(keys[row], attributes[i], solids))
    document: dict[str, Any] = {
        "type": "CityJSON",
        "version": VERSION,
        "transform": {"scale": [SCALE] * 3, "translate": translate.tolist()},
        "metadata": _metadata(target, vertices, translate, metadata),
        "CityObjects": objects,
        "vertices": vertices.tolist(),
    }
    return document, problems


def _validate_export(frame: gpd.GeoDataFrame, crs: str, lod: str) -> CRS:
    """The target CRS, after checking every export argument; all problems are raised at once."""
    problems = [f"missing column {name!r}" for name in REQUIRED_COLUMNS if name not in frame]
    if "key" in frame:
        keys = frame["key"]
        if keys.isna().any():
            problems.append(f"key is missing in rows {np.flatnonzero(keys.isna())[:5].tolist()}")
        duplicated = keys[keys.duplicated()].astype(str).unique()[:5].tolist()
        if duplicated:
            problems.append(f"key values are not unique: {duplicated}")
    if lod not in LOD1_VALUES:
        problems.append(f"lod {lod!r} is not one of {', '.join(LOD1_VALUES)}")
    target = CRS.from_user_input(crs)
    if not target.is_projected or target.to_epsg() is None:
        problems.append(f"crs {crs!r} must be a projected CRS with an EPSG code (metres)")
    if problems:
        raise ValueError("cannot export buildings to CityJSON: " + "; ".join(problems))
    return target


def _quantise(
    vertices: NDArray[np.float64],
) -> tuple[NDArray[np.int64], NDArray[np.float64], list[int]]:
    """Integer vertices at 1 mm, their translate (the minimum corner) and old → new indices.

    Identical integer vertices (adjacent buildings' shared corners) are stored once.
    """
    if not len(vertices):
        return np.zeros((0, 3), np.int64), np.zeros(3), []
    translate = np.round(vertices.min(axis=0), 3)
    integers = np.rint((vertices - translate) / SCALE).astype(np.int64)
    unique, inverse = np.unique(integers, axis=0, return_inverse=True)
    return unique, translate, inverse.reshape(-1).tolist()


def _renumber(shell: Shell, remap: list[int]) -> Shell:
    return [[[remap[i] for i in ring] for ring in surface] for surface in shell]


def _solid(shells: list[Shell], lod: str) -> dict[str, Any]:
    """A Solid geometry (exterior shell first) with Ground/Roof/Wall semantics."""
    values = [[0, 1, *([2] * (len(shell) - 2))] for shell in shells]
    return {
        "type": "Solid",
        "lod": lod,
        "boundaries": shells,
        "semantics": {"surfaces": SEMANTICS, "values": values},
    }


def _building(key: str, attributes: dict[str, Any], solids: list[dict[str, Any]]) -> dict[str, Any]:
    """CityObjects of one building: a Building, and a BuildingPart per polygon if there are several.

    A Building's geometry may not be a MultiSolid in CityJSON 2.0, and disjoint blocks are no
    CompositeSolid, so a MultiPolygon footprint becomes parts.
    """
    if len(solids) == 1:
        return {key: {"type": "Building", "attributes": attributes, "geometry": solids}}
    parts = [f"{key}{PART_SEPARATOR}{number}" for number in range(1, len(solids) + 1)]
    objects: dict[str, Any] = {
        key: {"type": "Building", "attributes": attributes, "geometry": [], "children": parts}
    }
    for part, solid in zip(parts, solids, strict=True):
        objects[part] = {"type": "BuildingPart", "parents": [key], "geometry": [solid]}
    return objects


def _attributes(
    frame: gpd.GeoDataFrame, rows: NDArray[np.intp], height: NDArray[np.float64]
) -> list[dict[str, Any]]:
    """JSON-safe attributes of the extruded rows; missing values are left out."""
    columns = [c for c in frame.columns if c not in ("key", frame.geometry.name)]
    records: list[dict[str, Any]] = [
        {"measuredHeight": float(height[row])} for row in rows.tolist()
    ]
    for column in columns:
        values = frame[column].to_numpy(object)[rows].tolist()
        for record, value in zip(records, values, strict=True):
            plain = _json_value(value)
            if plain is not None:
                record.setdefault(str(column), plain)
    return records


def _json_value(value: Any) -> Any:
    """A JSON-serialisable scalar, or None for a missing value."""
    if value is None or (not isinstance(value, list | dict) and pd.isna(value)):
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value if isinstance(value, str | list | dict) else str(value)


def _metadata(
    target: CRS,
    vertices: NDArray[np.int64],
    translate: NDArray[np.float64],
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "referenceSystem": f"https://www.opengis.net/def/crs/EPSG/0/{target.to_epsg()}"
    }
    if len(vertices):
        real = vertices * SCALE + translate
        metadata["geographicalExtent"] = np.round(
            np.r_[real.min(axis=0), real.max(axis=0)], 3
        ).tolist()
    return {**metadata, **(extra or {})}


def read_cityjson(path: str | Path, *, crs: str | None = None) -> gpd.GeoDataFrame:
    """Buildings of a CityJSON 1.1/2.0 file: footprints, heights and attributes.

    Parameters
    ----------
    path
        A CityJSON file.
    crs
        CRS of the file's coordinates; by default its ``metadata.referenceSystem`` (the
        horizontal part of a compound CRS), or none when the file does not say.

    Returns
    -------
    geopandas.GeoDataFrame
        One row per ``Building`` that has LoD1/LoD2 geometry itself or in its ``BuildingPart``
        children: ``key`` (CityObject id), ``lod`` (highest used), ``height`` (``measuredHeight``
        when given, else top − bottom of the geometry), ``z_min``, ``z_max``, ``parts``, each
        attribute of the Building as a column, and the 2D footprint ``geometry``.

    Raises
    ------
    FeedError
        The file is missing, not JSON, not CityJSON or of an unsupported version.
    """
    source = str(path)
    document = _load_document(Path(path))
    vertices = _real_vertices(document, source)
    objects: dict[str, Any] = document.get("CityObjects", {})
    rows: list[dict[str, Any]] = []
    surfaces: list[tuple[int, list[list[int]]]] = []
    for key, city_object in objects.items():
        if city_object.get("type") != "Building":
            continue
        row, found = _building_surfaces(key, objects, len(rows))
        if not found:
            logger.warning("%s: Building %s has no LoD1/LoD2 geometry; left out", source, key)
            continue
        rows.append(row)
        surfaces.extend(found)
    try:
        footprints, z_range = _footprints(vertices, surfaces, len(rows))
    except ValueError as error:
        raise FeedError(source, str(error)) from error
    return _building_frame(rows, footprints, z_range, crs or _document_crs(document))


def _load_document(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FeedError(str(path), "file not found")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FeedError(str(path), f"not a JSON file ({error})") from error
    if not isinstance(document, dict) or document.get("type") != "CityJSON":
        raise FeedError(str(path), 'not a CityJSON document (expected "type": "CityJSON")')
    if str(document.get("version")) not in READABLE_VERSIONS:
        raise FeedError(
            str(path),
            f"CityJSON version {document.get('version')!r} is not supported; "
            f"expected one of {', '.join(READABLE_VERSIONS)}",
        )
    return document


def _real_vertices(document: dict[str, Any], source: str) -> NDArray[np.float64]:
    """Vertices in CRS units: integers × scale + translate (the transform is optional in 1.1)."""
    vertices = np.asarray(document.get("vertices", []), np.float64).reshape(-1, 3)
    transform = document.get("transform")
    if transform is not None:
        try:
            scale = np.asarray(transform["scale"], np.float64).reshape(3)
            translate = np.asarray(transform["translate"], np.float64).reshape(3)
        except (KeyError, ValueError) as error:
            message = f"transform needs 3 scale and 3 translate values: {error}"
            raise FeedError(source, message) from error
        vertices = vertices * scale + translate
    return vertices


def _building_surfaces(
    key: str, objects: dict[str, Any], row_number: int
) -> tuple[dict[str, Any], list[tuple[int, list[list[int]]]]]:
    """The Building's row (id, attributes, lod) and its surfaces, parts included."""
    building = objects[key]
    members = [key, *_descendant_parts(key, objects)]
    lods: list[float] = []
    found: list[tuple[int, list[list[int]]]] = []
    for member in members:
        geometry = _best_geometry(objects[member].get("geometry", []))
        if geometry is not None:
            lods.append(_lod_number(geometry["lod"]))
            found.extend((row_number, surface) for surface in _surfaces(geometry))
    row = {
        **building.get("attributes", {}),
        "key": key,
        "lod": f"{max(lods):g}" if lods else None,
        "parts": len(members) - 1,
    }
    return row, found


def _descendant_parts(key: str, objects: dict[str, Any]) -> Iterator[str]:
    for child in objects[key].get("children", []):
        if child in objects and objects[child].get("type") == "BuildingPart":
            yield child
            yield from _descendant_parts(child, objects)


def _lod_number(lod: Any) -> float:
    try:
        return float(lod)
    except (TypeError, ValueError):
        return math.nan


def _best_geometry(geometries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The highest-LoD geometry of LoD 1 or 2 and a supported type, if any."""
    usable = [
        geometry
        for geometry in geometries
        if geometry.get("type") in (*SURFACE_GEOMETRIES, *SOLID_GEOMETRIES, *MULTI_SOLID_GEOMETRIES)
        and 1 <= _lod_number(geometry.get("lod")) < 3
    ]
    return max(usable, key=lambda geometry: _lod_number(geometry["lod"]), default=None)


def _surfaces(geometry: dict[str, Any]) -> list[list[list[int]]]:
    """Every surface (list of rings of vertex indices) of a geometry, shells flattened."""
    boundaries = geometry.get("boundaries", [])
    kind = geometry["type"]
    if kind in SURFACE_GEOMETRIES:
        return list(boundaries)
    if kind in SOLID_GEOMETRIES:
        return [surface for shell in boundaries for surface in shell]
    return [surface for solid in boundaries for shell in solid for surface in shell]


def _footprints(
    vertices: NDArray[np.float64], surfaces: list[tuple[int, list[list[int]]]], count: int
) -> tuple[list[Any], NDArray[np.float64]]:
    """2D footprint and (z_min, z_max) of each building from its surfaces."""
    owner, rings, ring_surface = _flatten_rings(surfaces)
    if not rings:
        return [None] * count, np.full((count, 2), np.nan)
    sizes = np.array([len(ring) for ring in rings])
    flat = np.concatenate([np.asarray(ring, np.intp) for ring in rings])
    if flat.min() < 0 or flat.max() >= len(vertices):
        raise ValueError(f"a surface refers to a vertex outside 0..{len(vertices) - 1}")
    ring_of = np.repeat(np.arange(len(rings)), sizes)
    vertex_owner = owner[ring_surface[ring_of]]
    facing = _facing(vertices, flat, ring_of, sizes)[
        np.r_[0, np.flatnonzero(np.diff(ring_surface)) + 1]
    ]
    polygons = shapely.polygons(
        shapely.linearrings(vertices[flat, :2], indices=ring_of), indices=ring_surface
    )
    footprints = []
    for building in range(count):
        mine = owner == building
        chosen = polygons[mine & (facing < -FACING)]
        if not len(chosen):
            chosen = polygons[mine & (np.abs(facing) > FACING)]
        footprint = _polygonal(shapely.union_all(shapely.make_valid(chosen)))
        if footprint is None:
            points = shapely.multipoints(vertices[flat[vertex_owner == building], :2])
            footprint = _polygonal(shapely.convex_hull(points))
        footprints.append(footprint)
    return footprints, _z_range(vertices[flat, 2], vertex_owner, count)


def _flatten_rings(
    surfaces: list[tuple[int, list[list[int]]]],
) -> tuple[NDArray[np.intp], list[list[int]], NDArray[np.intp]]:
    """Owner of each usable surface, all their rings, and the surface of each ring.

    A ring needs 3 distinct vertices; a surface whose exterior ring has fewer is left out.
    """
    owners: list[int] = []
    rings: list[list[int]] = []
    ring_surface: list[int] = []
    for owner, surface in surfaces:
        if not surface or len(set(surface[0])) < 3:
            continue
        kept = [ring for ring in surface if len(set(ring)) >= 3]
        rings.extend(kept)
        ring_surface.extend([len(owners)] * len(kept))
        owners.append(owner)
    return np.asarray(owners, np.intp), rings, np.asarray(ring_surface, np.intp)


def _facing(
    vertices: NDArray[np.float64],
    flat: NDArray[np.intp],
    ring_of: NDArray[np.intp],
    sizes: NDArray[np.int_],
) -> NDArray[np.float64]:
    """z of each ring's unit normal (Newell's method): −1 faces down, 0 is a wall, 1 faces up."""
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    following = starts + (np.arange(len(flat)) - starts + 1) % np.repeat(sizes, sizes)
    points = vertices[flat] - vertices[flat[starts]]  # local origin: precision at 1e5 m
    cross = np.cross(points, points[following])
    normal = np.column_stack(
        [np.bincount(ring_of, cross[:, axis], minlength=len(sizes)) for axis in range(3)]
    )
    length = np.linalg.norm(normal, axis=1)
    facing: NDArray[np.float64] = np.divide(
        normal[:, 2], length, out=np.zeros(len(length)), where=length > 0
    )
    return facing


def _z_range(z: NDArray[np.float64], owner: NDArray[np.intp], count: int) -> NDArray[np.float64]:
    """(min z, max z) of each building's vertices."""
    z_range = np.full((count, 2), np.nan)
    low, high = np.full(count, np.inf), np.full(count, -np.inf)
    np.minimum.at(low, owner, z)
    np.maximum.at(high, owner, z)
    found = np.isfinite(low)
    z_range[found] = np.column_stack([low, high])[found]
    return z_range


def _polygonal(geometry: Any) -> Any:
    """The Polygon/MultiPolygon part of a geometry, or None when it has no area."""
    parts = shapely.get_parts(geometry)
    polygons = parts[np.isin(shapely.get_type_id(parts), (3, 6))]
    polygons = polygons[shapely.area(polygons) > 0]
    if not len(polygons):
        return None
    return polygons[0] if len(polygons) == 1 else shapely.union_all(polygons)


def _building_frame(
    rows: list[dict[str, Any]], footprints: list[Any], z_range: NDArray[np.float64], crs: Any
) -> gpd.GeoDataFrame:
    table = pd.DataFrame(rows, columns=None if rows else ["key", "lod", "parts"])
    measured = pd.to_numeric(
        table.get("measuredHeight", pd.Series(np.nan, index=table.index)), errors="coerce"
    ).to_numpy(np.float64, na_value=np.nan)
    derived = {
        "height": np.where(np.isfinite(measured), measured, z_range[:, 1] - z_range[:, 0]),
        "z_min": z_range[:, 0],
        "z_max": z_range[:, 1],
    }
    table = table.drop(columns=[c for c in derived if c in table])
    for position, (name, values) in enumerate(derived.items(), start=2):
        table.insert(position, name, values)
    leading = ["key", "lod", "height", "z_min", "z_max", "parts"]
    table = table[leading + [c for c in table.columns if c not in leading]]
    return gpd.GeoDataFrame(table, geometry=footprints, crs=crs)


def _document_crs(document: dict[str, Any]) -> CRS | None:
    """The horizontal CRS named by ``metadata.referenceSystem`` (OGC URL or URN), if any."""
    reference = str(document.get("metadata", {}).get("referenceSystem", ""))
    match = re.search(r"EPSG(?:/\d+/|::?)(\d+)\s*$", reference)
    if not match:
        return None
    try:
        crs = CRS.from_epsg(int(match.group(1)))
    except CRSError:
        logger.warning("unknown referenceSystem %s; the frame has no CRS", reference)
        return None
    return crs.sub_crs_list[0] if crs.is_compound else crs
