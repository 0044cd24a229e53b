"""OpenStreetMap XML and PBF: buildings streamed into flat arrays, footprints assembled from them.

Both formats are read into the same :class:`OsmExtract` (nodes as three flat arrays, 24 bytes per
node; the node ids of every way; the tags of building ways and building multipolygon relations)
and go through one assembler, so ``.osm`` and ``.osm.pbf`` give identical footprints and
identical problem reports. (libosmium's area assembler would drop a broken multipolygon without
telling Python why.) Coordinates that Overpass ``out geom`` writes on a way's ``<nd>`` stand in for
nodes not in the file.

:func:`way_footprints` builds the polygons of closed building ways in one vectorised pass;
:func:`relation_footprints` joins the member ways of each multipolygon relation end to end into
rings, ``inner`` rings becoming holes of the smallest ``outer`` ring that covers them. Whatever
cannot become a footprint is returned as a ``(key, reason)`` problem, never dropped silently.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import shapely
from numpy.typing import NDArray

from citytwin.errors import FeedError
from citytwin.space.crs import WGS84, transformer

# --- reading OpenStreetMap -----------------------------------------------------------------------


_Members = list[tuple[int, str]]  # (way id, role) of a relation's member ways
_Relation = tuple[int, dict[str, str], _Members]


@dataclass
class OsmExtract:
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


def read_osm_xml(path: Path) -> OsmExtract:
    """Stream an OSM XML file into an :class:`OsmExtract`, freeing each element as it ends."""
    extract = OsmExtract()
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


def _read_xml_node(element: ET.Element, extract: OsmExtract) -> None:
    extract.add_node(_xml_id(element), float(element.attrib["lon"]), float(element.attrib["lat"]))


def _read_xml_way(element: ET.Element, extract: OsmExtract) -> None:
    refs = []
    for nd in element.iter("nd"):
        refs.append(int(nd.attrib["ref"]))
        if "lat" in nd.attrib:  # Overpass "out geom" puts coordinates on the way itself
            extract.add_node(refs[-1], float(nd.attrib["lon"]), float(nd.attrib["lat"]))
    tags = _xml_tags(element) if element.find("tag") is not None else None
    extract.add_way(_xml_id(element), refs, tags)


def _read_xml_relation(element: ET.Element, extract: OsmExtract) -> None:
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


def read_osm_pbf(path: Path) -> OsmExtract:
    """Read an OSM PBF file with pyosmium into an :class:`OsmExtract`."""
    try:
        import osmium
    except ImportError as error:  # pragma: no cover - osmium is a dependency
        raise FeedError(str(path), "reading .osm.pbf needs the 'osmium' package") from error
    extract = OsmExtract()
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


class OsmNodes:
    """Node coordinates, looked up by id and projected to the city CRS on demand."""

    def __init__(self, extract: OsmExtract, crs: str) -> None:
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


def way_footprints(
    extract: OsmExtract, nodes: OsmNodes, problems: list[tuple[str, str]]
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


def relation_footprints(
    extract: OsmExtract, nodes: OsmNodes, problems: list[tuple[str, str]]
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

    def __init__(self, extract: OsmExtract) -> None:
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
    relation_id: int, members: _Members, ways: _MemberWays, nodes: OsmNodes
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


def _ring_geometry(ring: _Ring, nodes: OsmNodes, label: str, reasons: list[str]) -> Any:
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
