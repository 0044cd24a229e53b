"""Buildings: footprints with heights (the input of LoD1 block models) in the city CRS.

``load_buildings`` reads OpenStreetMap XML (``.osm``), OpenStreetMap PBF (``.osm.pbf``) or a
footprint file GDAL can open (GeoJSON, GeoPackage, Shapefile, …) and returns a
:class:`BuildingLayer`: one row per building, footprints in metres, and a list of problems.

OpenStreetMap semantics
    * A closed way tagged ``building`` (any value but ``no``) is a footprint; so is a relation
      ``type=multipolygon`` tagged ``building``, whose member ways are joined end to end into
      rings. Members with role ``inner`` make holes (in the outer ring that covers them); every
      other role, including the empty one, is read as ``outer``.
    * Both formats are read into the same node/way/relation arrays and go through one ring
      assembler, so ``.osm`` and ``.osm.pbf`` give identical footprints and identical problem
      reports. (libosmium's area assembler would drop a broken multipolygon without telling
      Python why.) Nodes are held as three flat arrays, 24 bytes per node. Coordinates
      that Overpass ``out geom`` writes on a way's ``<nd>`` stand in for nodes not in the file.
    * ``use`` is the ``building`` value; for ``building=yes`` it is ``building:use``, else
      ``amenity``, else missing.

Heights (``height_source`` records which rule applied)
    ``height`` — a length: ``12``, ``12 m``, ``12.5m``, feet ``40'`` or ``40'6"``;
    ``levels`` — ``building:levels`` × ``storey_height``. ``roof:levels`` are not counted: an LoD1
    block stands for the walls, and OSM's ``building:levels`` already excludes the roof;
    ``default`` — ``default_height``. A tag that is present but unreadable is reported and the
    next rule is used; a height or floor count of 0 (how Korean registries write "unknown") is
    passed over quietly. ``min_height`` comes from ``min_height`` or ``building:min_level`` ×
    ``storey_height`` and is 0 (the ground) when neither is given.

Geometry
    Invalid footprints are repaired with ``shapely.make_valid(method="structure")`` when that
    leaves a polygon with area (``repaired=True``); otherwise the feature goes to ``problems``
    with the reason, as do footprints under ``MIN_WIDTH`` wide on average (collinear nodes),
    unclosed ways, rings with under 3 distinct nodes and ways whose nodes are missing from the
    extract. ``problems`` also notes kept features whose tags could not be read in full (an
    unreadable ``height``, say). Nothing is dropped without a problem.

Footprint files are checked for a wrong CRS: lon/lat degrees labelled with a metric CRS raise
:class:`~citytwin.errors.FeedError`; footprints that land outside Korea (or outside a non-Korean
city CRS's area of use) after transformation are reported and left out.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from numpy.typing import NDArray
from pyproj import CRS

from citytwin.errors import FeedError
from citytwin.space.crs import (
    DEFAULT_CITY_CRS,
    KOREA_LONLAT,
    WGS84,
    looks_like_lonlat,
    to_wgs84,
    transformer,
)

logger = logging.getLogger(__name__)

COLUMNS: Final = (
    "key", "name", "use", "height", "height_source", "levels", "min_height", "repaired", "geometry",
)  # fmt: skip
FOOTPRINT_SUFFIXES: Final = (".geojson", ".json", ".gpkg", ".shp", ".fgb", ".zip")
# Footprint-file columns, matched case-insensitively, first match wins.
HEIGHT_COLUMNS: Final = ("height", "높이")
LEVELS_COLUMNS: Final = ("levels", "building:levels", "floors", "grnd_flr", "지상층수")
MIN_HEIGHT_COLUMNS: Final = ("min_height",)
NAME_COLUMNS: Final = ("name", "bld_nm", "buld_nm", "건물명")
USE_COLUMNS: Final = ("use", "building", "usage", "주용도")
ID_COLUMNS: Final = ("key", "id", "ufid", "bd_mgt_sn")

MIN_WIDTH: Final = 0.01  # metres: a footprint narrower on average (2 × area / perimeter) is a line
_FOOT, _INCH = 0.3048, 0.0254
_LENGTH = re.compile(
    r"^\s*(?P<number>\d+(?:[.,]\d+)?|[.,]\d+)\s*"
    r"(?:(?P<metres>m|metres?|meters?)|(?P<feet>'|ft|feet)\s*(?:(?P<inches>\d+(?:\.\d+)?)\s*(?:\"|in))?)?"
    r"\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class BuildingLayer:
    """Building footprints with heights, in the city CRS.

    Attributes
    ----------
    frame
        One row per building: ``key`` (``osm:way/123``, ``osm:relation/456`` or
        ``<file name>/<id or row>``), ``name``, ``use``, ``height`` and ``min_height`` (metres),
        ``height_source`` (``height``, ``levels`` or ``default``), ``levels``, ``repaired``,
        ``geometry`` (Polygon or MultiPolygon).
    problems
        ``(feature key, reason)`` for each dropped feature and each tag that could not be read.
    source
        The file the layer was read from.
    """

    frame: gpd.GeoDataFrame
    problems: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""


def load_buildings(
    path: str | Path,
    *,
    crs: str = DEFAULT_CITY_CRS,
    storey_height: float = 3.0,
    default_height: float = 9.0,
) -> BuildingLayer:
    """Read building footprints and heights from OSM XML/PBF or a footprint file.

    Parameters
    ----------
    path
        ``.osm``, ``.osm.pbf`` or a footprint file (GeoJSON, GeoPackage, Shapefile, FlatGeobuf).
    crs
        The city CRS (metric) the footprints are returned in.
    storey_height
        Metres per storey, to turn a floor count into a height.
    default_height
        Metres given to a building with neither a height nor a floor count.

    Raises
    ------
    FeedError
        The file is missing, of an unknown kind, unreadable, or its CRS is evidently wrong.
    """
    path = Path(path)
    if storey_height <= 0 or default_height <= 0:
        raise ValueError(
            f"storey_height and default_height must be positive metres, "
            f"got {storey_height} and {default_height}"
        )
    if not path.is_file():
        raise FeedError(str(path), "file not found")
    name = path.name.lower()
    rules = _Rules(crs, storey_height, default_height)
    if name.endswith(".osm"):
        layer = _osm_layer(_read_osm_xml(path), str(path), rules)
    elif name.endswith(".pbf"):
        layer = _osm_layer(_read_osm_pbf(path), str(path), rules)
    elif name.endswith(FOOTPRINT_SUFFIXES):
        layer = _footprint_layer(path, rules)
    else:
        expected = ", ".join((".osm", ".osm.pbf", *FOOTPRINT_SUFFIXES))
        raise FeedError(str(path), f"unknown building file type; expected one of {expected}")
    logger.info("%s: %d buildings, %d problems", path, len(layer.frame), len(layer.problems))
    return layer


def parse_lengths(values: pd.Series) -> NDArray[np.float64]:
    """Lengths as OSM writes them → metres (NaN where missing or not a length).

    >>> parse_lengths(pd.Series(["12", "12.5 m", "40'", "3'6\\"", "tall", None])).round(3).tolist()
    [12.0, 12.5, 12.192, 1.067, nan, nan]
    """
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    parts = values.astype("string").str.extract(_LENGTH)
    number = _numbers(parts["number"].str.replace(",", ".", regex=False))
    inches = np.nan_to_num(_numbers(parts["inches"]))
    feet = parts["feet"].notna().to_numpy(dtype=np.bool_)
    metres: NDArray[np.float64] = np.where(feet, number * _FOOT + inches * _INCH, number)
    return metres


def _numbers(text: pd.Series) -> NDArray[np.float64]:
    return pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _parse_counts(values: pd.Series) -> NDArray[np.float64]:
    """Floor counts → numbers (NaN where missing or not a number)."""
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    return _numbers(values.astype("string").str.strip().str.replace(",", ".", regex=False))


# --- reading OpenStreetMap -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Rules:
    """Where footprints go and how heights are derived (the options of :func:`load_buildings`)."""

    crs: str
    storey_height: float
    default_height: float


_Members = list[tuple[int, str]]  # (way id, role) of a relation's member ways
_Relation = tuple[int, dict[str, str], _Members]


@dataclass
class _OsmExtract:
    """Nodes, ways and building relations of an OSM file as flat arrays (format-neutral)."""

    node_ids: array[int] = field(default_factory=lambda: array("q"))
    lons: array[float] = field(default_factory=lambda: array("d"))
    lats: array[float] = field(default_factory=lambda: array("d"))
    way_ids: array[int] = field(default_factory=lambda: array("q"))
    way_offsets: array[int] = field(default_factory=lambda: array("q", [0]))
    refs: array[int] = field(default_factory=lambda: array("q"))
    buildings: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # (way row, tags)
    relations: list[_Relation] = field(default_factory=list)

    def add_node(self, node_id: int, lon: float, lat: float) -> None:
        self.node_ids.append(node_id)
        self.lons.append(lon)
        self.lats.append(lat)

    def add_way(self, way_id: int, refs: Sequence[int], tags: dict[str, str] | None) -> None:
        if tags is not None and _is_building(tags):
            self.buildings.append((len(self.way_ids), tags))
        self.way_ids.append(way_id)
        self.refs.extend(refs)
        self.way_offsets.append(len(self.refs))

    def add_relation(self, relation_id: int, tags: dict[str, str], members: _Members) -> None:
        if tags.get("type") == "multipolygon" and _is_building(tags):
            self.relations.append((relation_id, tags, members))


def _is_building(tags: dict[str, str]) -> bool:
    return tags.get("building", "no") != "no"


def _read_osm_xml(path: Path) -> _OsmExtract:
    """Stream an OSM XML file into an :class:`_OsmExtract`, freeing each element as it ends."""
    extract = _OsmExtract()
    try:
        events = ET.iterparse(path, events=("start", "end"))
        _, root = next(events)
        for event, element in events:
            if event == "end" and element.tag in ("node", "way", "relation"):
                _XML_READERS[element.tag](element, extract)
                root.clear()  # the element is done: keep memory flat on large files
    except ET.ParseError as error:
        raise FeedError(
            str(path), f"not well-formed OSM XML: {error}", line=error.position[0]
        ) from error
    except (KeyError, ValueError) as error:
        raise FeedError(
            str(path), f"an OSM element has a missing or bad attribute: {error}"
        ) from error
    return extract


def _read_xml_node(element: ET.Element, extract: _OsmExtract) -> None:
    extract.add_node(_xml_id(element), float(element.attrib["lon"]), float(element.attrib["lat"]))


def _read_xml_way(element: ET.Element, extract: _OsmExtract) -> None:
    refs = []
    for nd in element.iter("nd"):
        refs.append(int(nd.attrib["ref"]))
        if "lat" in nd.attrib:  # Overpass "out geom" puts coordinates on the way itself
            extract.add_node(refs[-1], float(nd.attrib["lon"]), float(nd.attrib["lat"]))
    tags = _xml_tags(element) if element.find("tag") is not None else None
    extract.add_way(_xml_id(element), refs, tags)


def _read_xml_relation(element: ET.Element, extract: _OsmExtract) -> None:
    members = [
        (int(member.attrib["ref"]), member.get("role", ""))
        for member in element.iter("member")
        if member.get("type") == "way"
    ]
    extract.add_relation(_xml_id(element), _xml_tags(element), members)


_XML_READERS: Final = {
    "node": _read_xml_node,
    "way": _read_xml_way,
    "relation": _read_xml_relation,
}


def _xml_id(element: ET.Element) -> int:
    return int(element.attrib["id"])


def _xml_tags(element: ET.Element) -> dict[str, str]:
    return {tag.attrib["k"]: tag.attrib["v"] for tag in element.iter("tag")}


def _read_osm_pbf(path: Path) -> _OsmExtract:
    """Read an OSM PBF file with pyosmium into an :class:`_OsmExtract`."""
    try:
        import osmium
    except ImportError as error:  # pragma: no cover - osmium is a dependency
        raise FeedError(str(path), "reading .osm.pbf needs the 'osmium' package") from error
    extract = _OsmExtract()
    try:
        for entity in osmium.FileProcessor(str(path)):
            if isinstance(entity, osmium.osm.Node):
                if entity.location.valid():
                    extract.add_node(entity.id, entity.location.lon, entity.location.lat)
            elif isinstance(entity, osmium.osm.Way):
                tags = dict(entity.tags) if "building" in entity.tags else None
                extract.add_way(entity.id, [node.ref for node in entity.nodes], tags)
            elif isinstance(entity, osmium.osm.Relation) and "building" in entity.tags:
                members = [(m.ref, m.role) for m in entity.members if m.type == "w"]
                extract.add_relation(entity.id, dict(entity.tags), members)
    except RuntimeError as error:
        raise FeedError(str(path), f"not a readable OSM PBF file: {error}") from error
    return extract


# --- assembling OpenStreetMap footprints ---------------------------------------------------------


class _Index:
    """Sorted lookup of OSM ids → rows of the arrays they were read into."""

    def __init__(self, ids: array[int]) -> None:
        values = np.asarray(ids, dtype=np.int64)
        self._order = np.argsort(values, kind="stable")
        self._sorted = values[self._order]

    def rows(self, ids: NDArray[np.int64]) -> tuple[NDArray[np.intp], NDArray[np.bool_]]:
        """Rows of ``ids`` (-1 for an id not in the file) and which of them exist."""
        if len(self._sorted) == 0:
            return np.full(len(ids), -1, np.intp), np.zeros(len(ids), np.bool_)
        at = np.minimum(np.searchsorted(self._sorted, ids), len(self._sorted) - 1)
        found: NDArray[np.bool_] = self._sorted[at] == ids
        return np.where(found, self._order[at], -1), found


class _Nodes:
    """Node coordinates, looked up by id and projected to the city CRS on demand."""

    def __init__(self, extract: _OsmExtract, crs: str) -> None:
        self._index = _Index(extract.node_ids)
        # a NaN sentinel at the end: row -1 (a missing node) reads as NaN
        self._lon = np.append(np.asarray(extract.lons, dtype=np.float64), np.nan)
        self._lat = np.append(np.asarray(extract.lats, dtype=np.float64), np.nan)
        self._project = transformer(WGS84, crs)

    def xy(self, ids: NDArray[np.int64]) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """City-CRS coordinates (n, 2) of node ``ids`` (NaN where missing) and which exist."""
        rows, found = self._index.rows(ids)
        x, y = self._project.transform(self._lon[rows], self._lat[rows])
        return np.column_stack([x, y]).astype(np.float64), found


@dataclass
class _Features:
    """Footprints and raw attributes before repair and height rules (one entry per feature)."""

    keys: list[str]
    labels: list[str]  # how a problem names the feature: "way 123", "row 4"
    geometry: NDArray[np.object_]
    name: list[str | None]
    use: list[str | None]
    height: pd.Series
    levels: pd.Series
    min_height: pd.Series
    min_level: pd.Series


def _osm_layer(extract: _OsmExtract, source: str, rules: _Rules) -> BuildingLayer:
    """Footprints of building ways and multipolygon relations, with their tags."""
    nodes = _Nodes(extract, rules.crs)
    problems: list[tuple[str, str]] = []
    way_keys, way_tags, way_geometry = _way_footprints(extract, nodes, problems)
    relation_keys, relation_tags, relation_geometry = _relation_footprints(extract, nodes, problems)
    keys, tags = way_keys + relation_keys, way_tags + relation_tags
    features = _Features(
        keys=keys,
        labels=[key.removeprefix("osm:").replace("/", " ") for key in keys],
        geometry=np.concatenate([way_geometry, relation_geometry]),
        name=[tag.get("name") for tag in tags],
        use=[_osm_use(tag) for tag in tags],
        height=_tag_values(tags, "height"),
        levels=_tag_values(tags, "building:levels"),
        min_height=_tag_values(tags, "min_height"),
        min_level=_tag_values(tags, "building:min_level"),
    )
    return _finish(features, problems, source, rules)


def _osm_use(tags: dict[str, str]) -> str | None:
    if tags["building"] != "yes":
        return tags["building"]
    return tags.get("building:use") or tags.get("amenity")


def _tag_values(tags: list[dict[str, str]], key: str) -> pd.Series:
    return pd.Series([tag.get(key) for tag in tags], dtype=object)


def _way_footprints(
    extract: _OsmExtract, nodes: _Nodes, problems: list[tuple[str, str]]
) -> tuple[list[str], list[dict[str, str]], NDArray[np.object_]]:
    """Polygons of the closed building ways, built in one vectorised pass; the rest → problems."""
    rows = np.array([row for row, _ in extract.buildings], dtype=np.intp)
    offsets = np.asarray(extract.way_offsets, dtype=np.int64)
    starts, lengths = offsets[rows], offsets[rows + 1] - offsets[rows]
    before = np.cumsum(lengths) - lengths  # where each way starts in the flat arrays below
    owner = np.repeat(np.arange(len(rows)), lengths)
    flat = np.arange(int(lengths.sum())) + np.repeat(starts - before, lengths)
    refs = np.asarray(extract.refs, dtype=np.int64)[flat]
    xy, found = nodes.xy(refs)
    missing = np.bincount(owner, weights=~found, minlength=len(rows))
    padded = np.append(refs, -1)  # ways without nodes index one past the end
    closed = (lengths > 0) & (padded[before] == padded[before + np.maximum(lengths, 1) - 1])
    distinct = _distinct_counts(owner, refs, len(rows))
    ok = (missing == 0) & closed & (distinct >= 3)
    way_ids = np.asarray(extract.way_ids, dtype=np.int64)[rows]
    for i in np.flatnonzero(~ok):
        span = slice(before[i], before[i] + lengths[i])
        reason = _way_problem(int(way_ids[i]), refs[span], found[span], int(distinct[i]))
        problems.append((f"osm:way/{way_ids[i]}", reason))
    geometry = np.empty(int(ok.sum()), dtype=object)
    if len(geometry):
        keep = ok[owner]
        rings = shapely.linearrings(xy[keep], indices=(np.cumsum(ok) - 1)[owner[keep]])
        geometry[:] = shapely.polygons(rings)
    keys = [f"osm:way/{way_id}" for way_id in way_ids[ok]]
    return keys, [extract.buildings[i][1] for i in np.flatnonzero(ok)], geometry


def _distinct_counts(
    groups: NDArray[np.int64], values: NDArray[np.int64], n: int
) -> NDArray[np.int64]:
    """How many distinct ``values`` each of ``n`` groups holds."""
    order = np.lexsort((values, groups))
    group, value = groups[order], values[order]
    first = np.ones(len(group), dtype=np.bool_)
    first[1:] = (group[1:] != group[:-1]) | (value[1:] != value[:-1])
    return np.bincount(group[first], minlength=n).astype(np.int64)


def _way_problem(
    way_id: int, refs: NDArray[np.int64], found: NDArray[np.bool_], distinct: int
) -> str:
    if len(refs) == 0:
        return f"way {way_id}: has no nodes"
    if not found.all():
        absent = np.unique(refs[~found])
        return (
            f"way {way_id}: {len(absent)} of {len(np.unique(refs))} nodes missing from the "
            f"extract (first: node {refs[~found][0]})"
        )
    if refs[0] != refs[-1]:
        return f"way {way_id}: not closed (starts at node {refs[0]}, ends at node {refs[-1]})"
    return f"way {way_id}: ring has {distinct} distinct nodes; a footprint needs at least 3"


def _relation_footprints(
    extract: _OsmExtract, nodes: _Nodes, problems: list[tuple[str, str]]
) -> tuple[list[str], list[dict[str, str]], NDArray[np.object_]]:
    """(Multi)polygons of the building multipolygon relations; broken ones → problems."""
    member_ways = _MemberWays(extract)
    keys: list[str] = []
    tags: list[dict[str, str]] = []
    polygons: list[Any] = []
    for relation_id, relation_tags, members in extract.relations:
        key = f"osm:relation/{relation_id}"
        polygon, reasons = _relation_polygon(relation_id, members, member_ways, nodes)
        problems.extend((key, reason) for reason in reasons)
        if polygon is not None:
            keys.append(key)
            tags.append(relation_tags)
            polygons.append(polygon)
    geometry = np.empty(len(polygons), dtype=object)
    geometry[:] = polygons
    return keys, tags, geometry


class _MemberWays:
    """Node ids of any way in the extract, by way id."""

    def __init__(self, extract: _OsmExtract) -> None:
        self._index = _Index(extract.way_ids)
        self._offsets = np.asarray(extract.way_offsets, dtype=np.int64)
        self._refs = np.asarray(extract.refs, dtype=np.int64)

    def nodes(self, way_ids: list[int]) -> tuple[list[NDArray[np.int64]], list[int]]:
        """Node ids of each way, and the ways missing from the extract."""
        rows, found = self._index.rows(np.array(way_ids, dtype=np.int64))
        spans = [self._refs[self._offsets[row] : self._offsets[row + 1]] for row in rows]
        return spans, [way_id for way_id, ok in zip(way_ids, found, strict=True) if not ok]


_Ring = tuple[list[int], NDArray[np.int64]]  # the ways it was joined from, its node ids


def _relation_polygon(
    relation_id: int, members: _Members, ways: _MemberWays, nodes: _Nodes
) -> tuple[Any | None, list[str]]:
    """Join a relation's member ways into rings; outer rings are shells, inner rings holes."""
    label = f"relation {relation_id}"
    if not members:
        return None, [f"{label}: has no member ways"]
    spans, absent = ways.nodes([way_id for way_id, _ in members])
    if absent:
        return None, [f"{label}: member way(s) {_join(absent)} missing from the extract"]
    paths: dict[bool, list[tuple[int, NDArray[np.int64]]]] = {True: [], False: []}
    for (way_id, role), span in zip(members, spans, strict=True):
        paths[role == "inner"].append((way_id, span))
    outers, reasons = _join_rings(paths[False], f"{label}: outer")
    inners, inner_reasons = _join_rings(paths[True], f"{label}: inner")
    rings = [_ring_geometry(ring, nodes, label, reasons) for ring in outers + inners]
    reasons += inner_reasons
    if reasons or not outers:
        return None, reasons or [f"{label}: has no outer ring"]
    shells = list(shapely.polygons(rings[: len(outers)]))
    holes: list[list[Any]] = [[] for _ in shells]
    for (way_ids, _), ring in zip(inners, rings[len(outers) :], strict=True):
        covering = [i for i, shell in enumerate(shells) if shapely.covers(shell, ring)]
        if covering:
            holes[min(covering, key=lambda i: shells[i].area)].append(ring)
        else:
            reasons.append(f"{label}: inner ring of way(s) {_join(way_ids)} is in no outer ring")
    polygons = [
        shapely.Polygon(shell.exterior, hole) for shell, hole in zip(shells, holes, strict=True)
    ]
    return (polygons[0] if len(polygons) == 1 else shapely.MultiPolygon(polygons)), reasons


def _join(ids: list[int]) -> str:
    return ", ".join(map(str, ids))


def _join_rings(
    paths: list[tuple[int, NDArray[np.int64]]], label: str
) -> tuple[list[_Ring], list[str]]:
    """Join ways end to end (reversing where needed) until each ring closes."""
    pending = [(way_id, span.tolist()) for way_id, span in paths if len(span)]
    reasons = [f"{label} way {way_id} has no nodes" for way_id, span in paths if not len(span)]
    rings: list[_Ring] = []
    while pending:
        way_id, ring = pending.pop(0)
        way_ids = [way_id]
        while ring[0] != ring[-1]:
            step = next((i for i, (_, s) in enumerate(pending) if ring[-1] in (s[0], s[-1])), None)
            if step is None:
                reasons.append(
                    f"{label} ring of way(s) {_join(way_ids)} is open: no member continues it "
                    f"at node {ring[-1]}"
                )
                break
            way_id, span = pending.pop(step)
            ring += span[1:] if span[0] == ring[-1] else span[-2::-1]
            way_ids.append(way_id)
        else:
            rings.append((way_ids, np.asarray(ring, dtype=np.int64)))
    return rings, reasons


def _ring_geometry(ring: _Ring, nodes: _Nodes, label: str, reasons: list[str]) -> Any:
    """A linear ring in the city CRS, or None with the reason appended."""
    way_ids, node_ids = ring
    xy, found = nodes.xy(node_ids)
    if not found.all():
        reasons.append(
            f"{label}: ring of way(s) {_join(way_ids)} has nodes missing from the extract "
            f"(first: node {node_ids[~found][0]})"
        )
        return None
    if len(np.unique(node_ids)) < 3:
        reasons.append(
            f"{label}: ring of way(s) {_join(way_ids)} has {len(np.unique(node_ids))} distinct "
            "nodes; a footprint needs at least 3"
        )
        return None
    return shapely.linearrings(xy)


# --- reading footprint files ---------------------------------------------------------------------


def _footprint_layer(path: Path, rules: _Rules) -> BuildingLayer:
    """Footprints and height/floor columns of a GDAL-readable file."""
    frame = _read_frame(path)
    file_crs = _file_crs(path, frame)
    problems: list[tuple[str, str]] = []
    id_column = _column(frame, ID_COLUMNS)
    ids = frame[id_column].to_numpy() if id_column else np.arange(len(frame))
    keys = [f"{path.name}/{value}" for value in ids]
    labels = [f"{path.name} row {row}" for row in range(len(frame))]
    geometry = shapely.force_2d(frame.geometry.to_numpy())
    usable = _check_kinds(geometry, keys, labels, problems)
    geometry = gpd.GeoSeries(geometry, crs=file_crs).to_crs(rules.crs).to_numpy()
    usable &= _check_extent(geometry, usable, rules.crs, file_crs, keys, labels, problems)
    rows = np.flatnonzero(usable)
    features = _Features(
        keys=[keys[row] for row in rows],
        labels=[labels[row] for row in rows],
        geometry=geometry[rows],
        name=_texts(frame, NAME_COLUMNS, rows),
        use=_texts(frame, USE_COLUMNS, rows),
        height=_values(frame, HEIGHT_COLUMNS, rows),
        levels=_values(frame, LEVELS_COLUMNS, rows),
        min_height=_values(frame, MIN_HEIGHT_COLUMNS, rows),
        min_level=_values(frame, (), rows),
    )
    return _finish(features, problems, str(path), rules)


def _read_frame(path: Path) -> gpd.GeoDataFrame:
    try:
        return gpd.read_file(path, engine="pyogrio")
    except (RuntimeError, ValueError) as error:  # pyogrio's errors derive from RuntimeError
        raise FeedError(str(path), f"cannot be read as a footprint file: {error}") from error


def _file_crs(path: Path, frame: gpd.GeoDataFrame) -> CRS:
    """The file's CRS, refusing the classic mislabel: lon/lat degrees declared as metres."""
    bounds = frame.total_bounds
    declared: CRS | None = frame.crs
    if declared is None:
        if len(frame) == 0 or looks_like_lonlat(bounds):
            logger.warning("%s declares no CRS; its coordinates look like lon/lat", path)
            return CRS.from_user_input(WGS84)
        raise FeedError(
            str(path), f"declares no CRS and its bounds {bounds.round(1).tolist()} are not lon/lat"
        )
    if declared.is_projected and looks_like_lonlat(bounds):
        raise FeedError(
            str(path),
            f"coordinates {bounds.round(4).tolist()} look like lon/lat degrees but the file "
            f"declares {declared.to_string()} (metres); expected metres in that CRS, "
            "or the file labelled EPSG:4326",
        )
    return declared


def _column(frame: gpd.GeoDataFrame, candidates: Sequence[str]) -> str | None:
    """The first column named like one of ``candidates`` (case-insensitive)."""
    by_name = {str(column).lower(): str(column) for column in frame.columns}
    return next((by_name[name] for name in candidates if name in by_name), None)


def _texts(
    frame: gpd.GeoDataFrame, candidates: Sequence[str], rows: NDArray[np.intp]
) -> list[str | None]:
    column = _column(frame, candidates)
    if column is None:
        return [None] * len(rows)
    return [None if pd.isna(value) else str(value) for value in frame[column].to_numpy()[rows]]


def _values(
    frame: gpd.GeoDataFrame, candidates: Sequence[str], rows: NDArray[np.intp]
) -> pd.Series:
    column = _column(frame, candidates)
    if column is None:
        return pd.Series([None] * len(rows), dtype=object)
    values: pd.Series = frame[column].iloc[rows].reset_index(drop=True)
    return values


def _check_kinds(
    geometry: NDArray[np.object_],
    keys: list[str],
    labels: list[str],
    problems: list[tuple[str, str]],
) -> NDArray[np.bool_]:
    """Which features are (multi)polygons; the others → problems."""
    kind = shapely.get_type_id(geometry)
    empty = shapely.is_missing(geometry) | shapely.is_empty(geometry)
    polygonal = ~empty & np.isin(kind, (3, 6))
    for row in np.flatnonzero(~polygonal):
        what = "has no geometry" if empty[row] else f"is a {geometry[row].geom_type}, not a polygon"
        problems.append((keys[row], f"{labels[row]}: {what}"))
    usable: NDArray[np.bool_] = polygonal
    return usable


def _check_extent(
    geometry: NDArray[np.object_],
    usable: NDArray[np.bool_],
    crs: str,
    file_crs: CRS,
    keys: list[str],
    labels: list[str],
    problems: list[tuple[str, str]],
) -> NDArray[np.bool_]:
    """Which footprints land where the city CRS is meant for; the others → problems."""
    (west, south, east, north), where = _plausible_extent(crs)
    bounds = shapely.bounds(geometry)  # (a centroid is undefined for a bow-tie: no net area)
    lon, lat = to_wgs84((bounds[:, 0] + bounds[:, 2]) / 2, (bounds[:, 1] + bounds[:, 3]) / 2, crs)
    inside = (lon >= west) & (lon <= east) & (lat >= south) & (lat <= north)
    for row in np.flatnonzero(usable & ~inside):
        problems.append((
            keys[row],
            f"{labels[row]}: lies at {lon[row]:.3f}°E {lat[row]:.3f}°N when read as "
            f"{file_crs.to_string()}, outside {where}; is the file's CRS right?",
        ))  # fmt: skip
    result: NDArray[np.bool_] = inside
    return result


def _plausible_extent(crs: str) -> tuple[tuple[float, float, float, float], str]:
    """Korea for a Korean city CRS, else the CRS's area of use (lon/lat bounds)."""
    area = CRS.from_user_input(crs).area_of_use
    if area is None:
        return (-180.0, -90.0, 180.0, 90.0), "the world"
    west, south, east, north = area.bounds
    korea_west, korea_south, korea_east, korea_north = KOREA_LONLAT
    if west < korea_east and east > korea_west and south < korea_north and north > korea_south:
        return KOREA_LONLAT, "Korea"
    return area.bounds, f"the area of use of {crs} ({area.name})"


# --- repair, heights and the frame --------------------------------------------------------------


def _finish(
    features: _Features, problems: list[tuple[str, str]], source: str, rules: _Rules
) -> BuildingLayer:
    """Repair footprints, apply the height rules and build the frame in the city CRS."""
    geometry, repaired = _repair(features, problems)
    rows = np.flatnonzero(~shapely.is_missing(geometry))
    heights = _heights(features, rows, problems, rules)
    columns = {
        "key": pd.Series([features.keys[row] for row in rows], dtype="str"),
        "name": pd.Series([features.name[row] for row in rows], dtype="str"),
        "use": pd.Series([features.use[row] for row in rows], dtype="str"),
        **heights,
        "repaired": repaired[rows],
    }
    frame = gpd.GeoDataFrame(columns, geometry=geometry[rows], crs=rules.crs)
    return BuildingLayer(frame=frame[list(COLUMNS)], problems=problems, source=source)


def _repair(
    features: _Features, problems: list[tuple[str, str]]
) -> tuple[NDArray[np.object_], NDArray[np.bool_]]:
    """Make invalid footprints valid where a polygon with area survives; None where not."""
    geometry = features.geometry.copy()
    invalid = ~shapely.is_valid(geometry)
    reasons = dict(
        zip(np.flatnonzero(invalid), shapely.is_valid_reason(geometry[invalid]), strict=True)
    )
    geometry[invalid] = shapely.make_valid(
        geometry[invalid], method="structure", keep_collapsed=False
    )
    # nodes "on a line" in lon/lat are a sliver once projected: judge area by the mean width
    width = 2 * shapely.area(geometry) / np.maximum(shapely.length(geometry), 1e-300)
    keep = np.isin(shapely.get_type_id(geometry), (3, 6)) & (width >= MIN_WIDTH)
    for row in np.flatnonzero(~keep):
        why = (
            f"invalid ({reasons[row]}) and make_valid leaves no area"
            if row in reasons
            else f"has no area (under {MIN_WIDTH * 100:g} cm wide: its nodes lie on a line)"
        )
        problems.append((features.keys[row], f"{features.labels[row]}: footprint {why}"))
    geometry[~keep] = None
    repaired: NDArray[np.bool_] = invalid & keep
    return geometry, repaired


_TAG_NAMES: Final = {
    "height": "height",
    "levels": "building:levels",
    "min_height": "min_height",
    "min_level": "building:min_level",
}


def _heights(
    features: _Features,
    rows: NDArray[np.intp],
    problems: list[tuple[str, str]],
    rules: _Rules,
) -> dict[str, Any]:
    """Height rule per building: a height, else floors × storey height, else the default."""
    texts = {
        name: getattr(features, name).iloc[rows].reset_index(drop=True)
        for name in ("height", "levels", "min_height", "min_level")
    }
    height, min_height = parse_lengths(texts["height"]), parse_lengths(texts["min_height"])
    levels, min_level = _parse_counts(texts["levels"]), _parse_counts(texts["min_level"])
    by_height = height > 0
    by_levels = ~by_height & (levels > 0)
    result = np.select(
        [by_height, by_levels], [height, levels * rules.storey_height], rules.default_height
    )
    bottom = np.where(min_level >= 0, min_level * rules.storey_height, 0.0)
    bottom = np.where(min_height >= 0, min_height, bottom)
    keys = [features.keys[row] for row in rows]
    labels = [features.labels[row] for row in rows]
    parsed = {"height": height, "levels": levels, "min_height": min_height, "min_level": min_level}
    for name, values in parsed.items():
        for i in np.flatnonzero(texts[name].notna().to_numpy() & ~(values >= 0)):
            what = f"{_TAG_NAMES[name]} {texts[name][i]!r}"
            problems.append((keys[i], f"{labels[i]}: {what} is not understood; ignored"))
    for i in np.flatnonzero(bottom >= result):
        what = f"min_height {bottom[i]:g} m is not below the height {result[i]:g} m"
        problems.append((keys[i], f"{labels[i]}: {what}"))
    return {
        "height": result,
        "height_source": pd.Series(
            np.select([by_height, by_levels], ["height", "levels"], "default"), dtype="str"
        ),
        "levels": np.where(levels >= 0, levels, np.nan),
        "min_height": bottom,
    }
