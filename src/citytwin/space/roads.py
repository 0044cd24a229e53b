"""Road networks: one directed node/link model and readers for OSM XML, SUMO and TNTP.

A :class:`RoadNetwork` is two GeoDataFrames. ``nodes`` has ``node_id`` (str) and a Point;
``links`` has one row per direction of travel:

================  ==================================================================
link_id           str, unique (OSM ``<way>:<segment>f|b``, SUMO edge id, TNTP row 1…n)
from_node         ``node_id`` where the link starts; ``to_node`` where it ends
length_m          metres (OSM: from the geometry in the city CRS; SUMO: lane length)
lanes             lanes in this direction (0 = not given by the source, i.e. TNTP)
free_speed_kmh    free-flow speed, km/h
capacity_veh_h    lanes × per-lane capacity of the class (TNTP: as given)
road_class        OSM ``highway`` class (TNTP: ``type_<link_type>``); ``name`` street name
free_flow_time    minutes (TNTP: as given, in the file's own unit)
b, power          BPR volume-delay parameters, t = t0 (1 + b (v/c)^power); 0.15 and 4 unless given
toll, link_type   0 and the 1-based rank of the class in :data:`DRIVEABLE_CLASSES` unless given
================  ==================================================================

Every numeric column is filled for every link, so a traffic assignment can run on any source.
Defaults per class are in :data:`ROAD_CLASSES` and are planning values, not measurements: speeds
follow Korea's "safe speed 5030" rule (50 km/h on urban arterials, 30 km/h in residential streets,
since April 2021); per-lane capacities are HCM-style (Highway Capacity Manual 2010) round figures
for uninterrupted (motorway 2,000 veh/h/lane) down to signalised and local streets.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from numpy.typing import NDArray

from citytwin.errors import FeedError, ValidationError
from citytwin.space.crs import DEFAULT_CITY_CRS, WGS84, to_city, transformer

BPR_B = 0.15  # Bureau of Public Roads (1964) volume-delay defaults
BPR_POWER = 4.0


@dataclass(frozen=True)
class RoadClass:
    """Planning defaults for one OSM ``highway`` class.

    Attributes
    ----------
    speed_kmh
        Free-flow speed when no ``maxspeed`` is tagged.
    lanes
        Lanes per direction when no ``lanes`` is tagged.
    capacity_per_lane
        Vehicles per hour per lane.
    """

    speed_kmh: float
    lanes: int
    capacity_per_lane: float


ROAD_CLASSES: dict[str, RoadClass] = {
    "motorway": RoadClass(100, 2, 2000),
    "trunk": RoadClass(80, 2, 1800),
    "primary": RoadClass(50, 2, 1600),
    "secondary": RoadClass(50, 2, 1400),
    "tertiary": RoadClass(50, 1, 1000),
    "unclassified": RoadClass(30, 1, 800),
    "residential": RoadClass(30, 1, 600),
    "living_street": RoadClass(20, 1, 300),
    "service": RoadClass(20, 1, 300),
    "motorway_link": RoadClass(60, 1, 1600),
    "trunk_link": RoadClass(50, 1, 1400),
    "primary_link": RoadClass(40, 1, 1200),
    "secondary_link": RoadClass(40, 1, 1000),
    "tertiary_link": RoadClass(30, 1, 800),
}
#: OSM ``highway`` values a car may drive on; footways, cycleways, tracks, paths are left out.
DRIVEABLE_CLASSES: tuple[str, ...] = tuple(ROAD_CLASSES)
FALLBACK_CLASS = "unclassified"  # defaults for a SUMO type we do not know
IMPLIED_ONEWAY = frozenset({"motorway", "motorway_link"})  # oneway unless tagged otherwise
SUMO_SKIPPED_FUNCTIONS = frozenset({"internal", "crossing", "walkingarea"})

LINK_COLUMNS = (
    "link_id", "from_node", "to_node", "length_m", "lanes", "free_speed_kmh", "capacity_veh_h",
    "road_class", "name", "free_flow_time", "b", "power", "toll", "link_type",
)  # fmt: skip
_NUMERIC = ("length_m", "lanes", "free_speed_kmh", "capacity_veh_h", "free_flow_time", "b",
            "power", "toll", "link_type")  # fmt: skip


@dataclass
class RoadNetwork:
    """A directed road graph: ``nodes`` and ``links`` (columns in the module docstring).

    Attributes
    ----------
    crs
        CRS of both geometries; None when coordinates are not geographic (TNTP).
    source
        The file it was read from.
    problems
        ``(where, what)`` for everything the reader assumed or skipped.
    first_thru_node, zones
        TNTP ``<FIRST THRU NODE>`` and ``<NUMBER OF ZONES>``: nodes numbered below the first
        thru node are zone centroids that traffic must not pass through.
    """

    nodes: gpd.GeoDataFrame
    links: gpd.GeoDataFrame
    crs: str | None
    source: str
    problems: list[tuple[str, str]] = field(default_factory=list)
    first_thru_node: int | None = None
    zones: int | None = None

    def __post_init__(self) -> None:
        problems = _validate_network(self.nodes, self.links)
        if problems:
            raise ValidationError(f"road network from {self.source}: " + "; ".join(problems))

    def summary(self) -> dict[str, float | int | str | None]:
        """Counts and totals for logs and the CLI."""
        length_km = self.links["length_m"].to_numpy(float) / 1000
        return {
            "source": self.source,
            "crs": self.crs,
            "nodes": len(self.nodes),
            "links": len(self.links),
            "length_km": float(length_km.sum()),
            "lane_km": float((length_km * self.links["lanes"].to_numpy(float)).sum()),
            "problems": len(self.problems),
        }

    def edge_index(self) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Positions in ``nodes`` of every link's tail and head (for sparse graph algorithms)."""
        index = pd.Index(self.nodes["node_id"])
        tail = index.get_indexer(self.links["from_node"]).astype(np.int64)
        head = index.get_indexer(self.links["to_node"]).astype(np.int64)
        return tail, head

    def strong_components(self) -> NDArray[np.int64]:
        """Strongly connected component of each node, numbered by size (0 = largest).

        Kosaraju's algorithm (Sharir 1981), iterative so deep graphs do not hit recursion limits.
        """
        return _strong_components(len(self.nodes), *self.edge_index())


def _validate_network(nodes: gpd.GeoDataFrame, links: gpd.GeoDataFrame) -> list[str]:
    """Every contract breach of a node/link pair, so one error can name them all."""
    missing = [c for c in LINK_COLUMNS if c not in links.columns]
    if "node_id" not in nodes.columns or missing:
        return [f"missing columns: nodes need node_id, links need {', '.join(missing) or '-'}"]
    problems = []
    for frame, key in ((nodes, "node_id"), (links, "link_id")):
        dupes = frame[key][frame[key].duplicated()].head(3).tolist()
        if dupes:
            problems.append(f"duplicate {key} {dupes}")
    known = links["from_node"].isin(nodes["node_id"]) & links["to_node"].isin(nodes["node_id"])
    if not known.all():
        bad = links.loc[~known, "link_id"].head(3).tolist()
        problems.append(f"{int((~known).sum())} links end at unknown nodes, e.g. {bad}")
    for column in _NUMERIC:
        values = pd.to_numeric(links[column], errors="coerce").to_numpy(float)
        if not (np.isfinite(values) & (values >= 0)).all():
            problems.append(f"{column} must be a finite number >= 0 on every link")
    return problems


def _strong_components(
    n: int, tail: NDArray[np.int64], head: NDArray[np.int64]
) -> NDArray[np.int64]:
    order = _finish_order(n, *_adjacency(n, tail, head))
    start, neighbours = _adjacency(n, head, tail)
    labels = [-1] * n
    count = 0
    for root in reversed(order):
        if labels[root] >= 0:
            continue
        labels[root], stack = count, [root]
        while stack:
            v = stack.pop()
            for w in neighbours[start[v] : start[v + 1]]:
                if labels[w] < 0:
                    labels[w] = count
                    stack.append(w)
        count += 1
    raw = np.asarray(labels, np.int64)
    by_size = np.argsort(-np.bincount(raw, minlength=count), kind="stable")
    rank = np.empty(count, np.int64)
    rank[by_size] = np.arange(count)
    result: NDArray[np.int64] = rank[raw]
    return result


def _adjacency(
    n: int, tail: NDArray[np.int64], head: NDArray[np.int64]
) -> tuple[list[int], list[int]]:
    """Compressed sparse rows as plain lists (fast to index one by one in a Python loop)."""
    order = np.argsort(tail, kind="stable")
    start = np.concatenate([[0], np.cumsum(np.bincount(tail, minlength=n))])
    return start.tolist(), head[order].tolist()


def _finish_order(n: int, start: list[int], neighbours: list[int]) -> list[int]:
    visited = [False] * n
    order: list[int] = []
    for source in range(n):
        if visited[source]:
            continue
        visited[source] = True
        stack = [(source, start[source])]
        while stack:
            v, i = stack[-1]
            if i == start[v + 1]:
                stack.pop()
                order.append(v)
                continue
            stack[-1] = (v, i + 1)
            w = neighbours[i]
            if not visited[w]:
                visited[w] = True
                stack.append((w, start[w]))
    return order


# --- shared link assembly -----------------------------------------------------------------------


@dataclass
class _LinkRows:
    """Per-link values collected by a reader before they become a frame."""

    link_id: list[str] = field(default_factory=list)
    from_node: list[str] = field(default_factory=list)
    to_node: list[str] = field(default_factory=list)
    lanes: list[int] = field(default_factory=list)
    free_speed_kmh: list[float] = field(default_factory=list)
    road_class: list[str] = field(default_factory=list)
    name: list[str] = field(default_factory=list)

    def add(self, ids: tuple[str, str, str], lanes: int, speed: float, cls: str, name: str) -> None:
        self.link_id.append(ids[0])
        self.from_node.append(ids[1])
        self.to_node.append(ids[2])
        self.lanes.append(lanes)
        self.free_speed_kmh.append(speed)
        self.road_class.append(cls)
        self.name.append(name)


def _link_frame(
    rows: _LinkRows, length_m: NDArray[np.float64], geometry: NDArray[np.object_], crs: str
) -> gpd.GeoDataFrame:
    """Links with capacity, free-flow time (minutes) and BPR defaults derived from the class."""
    defaults = [ROAD_CLASSES.get(c, ROAD_CLASSES[FALLBACK_CLASS]) for c in rows.road_class]
    lanes = np.asarray(rows.lanes, np.int64)
    speed = np.asarray(rows.free_speed_kmh, float)
    rank = {c: i + 1 for i, c in enumerate(DRIVEABLE_CLASSES)}
    frame = pd.DataFrame(
        {
            "link_id": rows.link_id,
            "from_node": rows.from_node,
            "to_node": rows.to_node,
            "length_m": length_m,
            "lanes": lanes,
            "free_speed_kmh": speed,
            "capacity_veh_h": lanes * np.asarray([d.capacity_per_lane for d in defaults], float),
            "road_class": rows.road_class,
            "name": rows.name,
            "free_flow_time": length_m / 1000 / speed * 60,
            "b": BPR_B,
            "power": BPR_POWER,
            "toll": 0.0,
            "link_type": np.asarray([rank.get(c, 0) for c in rows.road_class], np.int64),
        }
    )
    return gpd.GeoDataFrame(frame, geometry=geometry, crs=crs)


def _node_frame(
    ids: list[str], x: NDArray[np.float64], y: NDArray[np.float64], crs: str | None
) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"node_id": ids}, geometry=shapely.points(x, y), crs=crs)


def _parse_xml(path: str | Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as error:
        raise FeedError(
            str(path), f"not well-formed XML: {error}", line=error.position[0]
        ) from None


def _attr(element: ET.Element, name: str, source: str) -> str:
    value = element.get(name)
    if value is None:
        where = element.get("id") or element.get("ref") or "?"
        raise FeedError(source, f"<{element.tag} {where}> has no {name!r} attribute")
    return value


def _number(element: ET.Element, name: str, source: str) -> float:
    try:
        return float(_attr(element, name, source))
    except ValueError:
        where = element.get("id") or element.get("ref") or "?"
        raise FeedError(source, f"<{element.tag} {where}> {name!r} is not a number") from None


# --- OpenStreetMap XML --------------------------------------------------------------------------


@dataclass(frozen=True)
class _OsmWay:
    way_id: str
    refs: list[str]
    tags: dict[str, str]


def load_osm_roads(path: str | Path, *, crs: str = DEFAULT_CITY_CRS) -> RoadNetwork:
    """Driveable roads of an OSM XML extract as a routable directed graph.

    Ways whose ``highway`` is in :data:`DRIVEABLE_CLASSES` (and are not ``area=yes``) are split
    at every node another driveable way shares, at their ends and where a way meets itself, so
    links meet only at intersections. Each piece becomes one link per allowed direction:
    ``oneway=yes|1|true`` forward, ``-1|reverse`` backward, ``no|0|false`` both; untagged
    roundabouts and motorways (and their links) are one-way, everything else two-way
    (``reversible``/``alternating`` count as two-way). Lanes per direction come from
    ``lanes:forward``/``lanes:backward``, else half of ``lanes`` rounded up (all of it when
    one-way), else :data:`ROAD_CLASSES`; speed from ``maxspeed[:forward|:backward]`` ("50",
    "50 km/h", "30 mph"), else the class default. Length is measured in ``crs``.

    Parameters
    ----------
    path
        ``.osm`` file (OSM API 0.6 XML; ``<nd>`` may carry ``lat``/``lon`` as Overpass writes).
    crs
        Metric city CRS of the result.
    """
    source = str(path)
    coords, ways, problems = _read_osm(path, source)
    split = _split_points(ways)
    node_ids = sorted(split)
    rows, pieces = _LinkRows(), []
    reverse: list[bool] = []
    for way in ways:
        forward, backward = _osm_directions(way, problems)
        segments = _segments(way.refs, split)
        for direction, allowed in (("f", forward), ("b", backward)):
            if not allowed:
                continue
            lanes = _osm_lanes(way, direction, forward and backward)
            speed = _osm_speed(way, direction, problems)
            name = way.tags.get("name") or way.tags.get("ref") or ""
            for k, refs in enumerate(segments):
                ends = (refs[0], refs[-1]) if direction == "f" else (refs[-1], refs[0])
                rows.add(
                    (f"{way.way_id}:{k}{direction}", *ends), lanes, speed, way.tags["highway"], name
                )
                pieces.append(refs)
                reverse.append(direction == "b")
    geometry = _osm_lines(pieces, reverse, coords, crs)
    links = _link_frame(rows, shapely.length(geometry), geometry, crs)
    lon, lat = np.asarray([coords[n] for n in node_ids], float).reshape(-1, 2).T
    nodes = _node_frame(node_ids, *to_city(lon, lat, crs), crs)
    return RoadNetwork(nodes, links, crs, source, problems)


def _read_osm(
    path: str | Path, source: str
) -> tuple[dict[str, tuple[float, float]], list[_OsmWay], list[tuple[str, str]]]:
    """Node positions, driveable ways with all their nodes known, and what was skipped."""
    root = _parse_xml(path)
    coords: dict[str, tuple[float, float]] = {}
    for element in root.iter("node"):
        coords[_attr(element, "id", source)] = _lonlat(element, source)
    ways, problems = [], []
    for element in root.iter("way"):
        tags = {t.get("k", ""): t.get("v", "") for t in element.iter("tag")}
        if tags.get("highway") not in ROAD_CLASSES or tags.get("area") == "yes":
            continue
        way_id, refs = _attr(element, "id", source), list[str]()
        for nd in element.iter("nd"):
            ref = _attr(nd, "ref", source)
            if nd.get("lat") is not None:
                coords.setdefault(ref, _lonlat(nd, source))
            if not refs or refs[-1] != ref:  # a node repeated in a row is a zero-length step
                refs.append(ref)
        unknown = [r for r in refs if r not in coords]
        if unknown or len(refs) < 2:
            what = f"nodes {unknown[:3]} not in the file" if unknown else "fewer than 2 nodes"
            problems.append((f"way {way_id}", f"skipped: {what}"))
            continue
        ways.append(_OsmWay(way_id, refs, tags))
    return coords, ways, problems


def _lonlat(element: ET.Element, source: str) -> tuple[float, float]:
    return _number(element, "lon", source), _number(element, "lat", source)


def _split_points(ways: list[_OsmWay]) -> set[str]:
    """Way ends, nodes shared by two ways and nodes a way passes twice (loops)."""
    shared = Counter(ref for way in ways for ref in set(way.refs))
    split = {ref for ref, n in shared.items() if n > 1}
    for way in ways:
        split.update((way.refs[0], way.refs[-1]))
        split.update(ref for ref, n in Counter(way.refs).items() if n > 1)
    return split


def _segments(refs: list[str], split: set[str]) -> list[list[str]]:
    pieces, current = [], [refs[0]]
    for ref in refs[1:]:
        current.append(ref)
        if ref in split:
            pieces.append(current)
            current = [ref]
    return pieces


def _osm_directions(way: _OsmWay, problems: list[tuple[str, str]]) -> tuple[bool, bool]:
    oneway = way.tags.get("oneway", "").strip().lower()
    if oneway in ("yes", "1", "true"):
        return True, False
    if oneway in ("-1", "reverse"):
        return False, True
    if oneway in ("no", "0", "false", "reversible", "alternating"):
        return True, True
    if oneway:
        problems.append((f"way {way.way_id}", f"oneway={oneway!r} not understood; using two-way"))
    implied = way.tags.get("junction") in ("roundabout", "circular")
    return True, not (implied or way.tags["highway"] in IMPLIED_ONEWAY)


def _osm_lanes(way: _OsmWay, direction: str, two_way: bool) -> int:
    tags = way.tags
    total = _parse_count(tags.get("lanes"))
    this = _parse_count(tags.get("lanes:forward" if direction == "f" else "lanes:backward"))
    other = _parse_count(tags.get("lanes:backward" if direction == "f" else "lanes:forward"))
    if this is not None:
        return this
    if total is not None and not two_way:
        return total
    if total is not None and other is not None and total > other:
        return total - other
    if total is not None:
        return max(1, math.ceil(total / 2))
    return ROAD_CLASSES[tags["highway"]].lanes


def _parse_count(value: str | None) -> int | None:
    """``"4"`` → 4, ``"2;3"`` → 2, ``"1.5"`` → 2; None for absent or nonsense."""
    if value is None:
        return None
    match = re.match(r"\s*(\d+(?:\.\d+)?)", value)
    return max(1, math.ceil(float(match.group(1)))) if match else None


def _osm_speed(way: _OsmWay, direction: str, problems: list[tuple[str, str]]) -> float:
    key = "maxspeed:forward" if direction == "f" else "maxspeed:backward"
    tagged = way.tags.get(key) or way.tags.get("maxspeed")
    default = ROAD_CLASSES[way.tags["highway"]].speed_kmh
    if tagged is None:
        return default
    speed = _parse_speed_kmh(tagged)
    if speed is None:
        what = f"maxspeed {tagged!r} not understood; using {default:g} km/h"
        problems.append((f"way {way.way_id}", what))
        return default
    return speed


def _parse_speed_kmh(value: str) -> float | None:
    """An OSM ``maxspeed`` in km/h; None when it is not a positive number with a known unit.

    >>> _parse_speed_kmh("50"), _parse_speed_kmh("50 km/h"), round(_parse_speed_kmh("30 mph"), 2)
    (50.0, 50.0, 48.28)
    >>> _parse_speed_kmh("KR:urban") is None
    True
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(km/h|kmh|kph|mph|knots)?\s*", value.split(";")[0])
    if match is None or float(match.group(1)) <= 0:
        return None
    factor = {"mph": 1.609344, "knots": 1.852}.get(match.group(2) or "", 1.0)
    return float(match.group(1)) * factor


def _osm_lines(
    pieces: list[list[str]],
    reverse: list[bool],
    coords: dict[str, tuple[float, float]],
    crs: str,
) -> NDArray[np.object_]:
    """One LineString per link in ``crs``, all points projected in a single call."""
    refs = [ref for piece in pieces for ref in piece]
    lon, lat = np.asarray([coords[r] for r in refs], float).reshape(-1, 2).T
    x, y = to_city(lon, lat, crs)
    parts = np.repeat(np.arange(len(pieces)), [len(p) for p in pieces])
    lines = shapely.linestrings(x, y, indices=parts)
    flip = np.asarray(reverse, bool)
    lines[flip] = shapely.reverse(lines[flip])
    result: NDArray[np.object_] = lines
    return result


# --- SUMO .net.xml ------------------------------------------------------------------------------


def load_sumo_network(path: str | Path, *, crs: str = DEFAULT_CITY_CRS) -> RoadNetwork:
    """A SUMO network (``.net.xml``) as a directed graph in the city CRS.

    Nodes are the ``<junction>`` elements except ``type="internal"``; links are the ``<edge>``
    elements except ``function`` internal, crossing and walkingarea (movements inside a junction
    and pedestrian-only areas, which no vehicle is routed over). An edge's geometry is its
    ``shape``; SUMO omits it when the edge runs straight from junction to junction, so then it is
    that straight line (lane shapes are offset sideways and cut back at junctions, so they are
    not used). Lanes are the ``<lane>`` children, speed the fastest lane (m/s → km/h), length the
    mean lane length. The class is the edge ``type`` without its ``highway.`` prefix.
    Coordinates are SUMO's plane: minus ``netOffset`` they are in ``projParameter`` (UTM for
    OSM imports), which is taken to WGS84 and then to ``crs``.
    """
    source = str(path)
    root = _parse_xml(path)
    to_lonlat = _sumo_projection(root, source)
    junctions = {
        _attr(j, "id", source): (_number(j, "x", source), _number(j, "y", source))
        for j in root.iter("junction")
        if j.get("type") != "internal"
    }
    rows, shapes, lengths = _LinkRows(), [], []
    problems: list[tuple[str, str]] = []
    for edge in root.iter("edge"):
        if edge.get("function") in SUMO_SKIPPED_FUNCTIONS:
            continue
        link_id, lanes = _attr(edge, "id", source), edge.findall("lane")
        ends = (_attr(edge, "from", source), _attr(edge, "to", source))
        if not lanes or any(end not in junctions for end in ends):
            raise FeedError(source, f"edge {link_id!r}: expected lanes and known junctions")
        speed = max(_number(lane, "speed", source) for lane in lanes) * 3.6
        lengths.append(float(np.mean([_number(lane, "length", source) for lane in lanes])))
        road_class = _sumo_class(edge, problems)
        rows.add((link_id, *ends), len(lanes), speed, road_class, edge.get("name", ""))
        shape = edge.get("shape")
        shapes.append(_sumo_points(edge, shape, source) if shape else [junctions[e] for e in ends])
    geometry = _sumo_lines(shapes, to_lonlat, crs)
    links = _link_frame(rows, np.asarray(lengths, float), geometry, crs)
    ids = list(junctions)
    x, y = np.asarray(list(junctions.values()), float).reshape(-1, 2).T
    nodes = _node_frame(ids, *to_city(*to_lonlat(x, y), crs), crs)
    return RoadNetwork(nodes, links, crs, source, problems)


class _SumoToLonLat:
    """SUMO plane (x, y) → WGS84 (lon, lat): remove ``netOffset``, invert ``projParameter``."""

    def __init__(self, offset: tuple[float, float], projection: str) -> None:
        self.offset, self.projection = offset, projection

    def __call__(
        self, x: NDArray[np.float64], y: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        step = transformer(self.projection, WGS84)
        lon, lat = step.transform(x - self.offset[0], y - self.offset[1])
        return np.asarray(lon, np.float64), np.asarray(lat, np.float64)


def _sumo_projection(root: ET.Element, source: str) -> _SumoToLonLat:
    location = root.find("location")
    if location is None:
        raise FeedError(source, "no <location> element; cannot place the network on Earth")
    projection = _attr(location, "projParameter", source)
    if projection.strip() == "!":
        raise FeedError(source, "<location projParameter='!'>: the network is not georeferenced")
    try:
        dx, dy = (float(v) for v in _attr(location, "netOffset", source).split(","))
    except ValueError:
        raise FeedError(source, "<location netOffset> must be 'x,y'") from None
    return _SumoToLonLat((dx, dy), projection)


def _sumo_class(edge: ET.Element, problems: list[tuple[str, str]]) -> str:
    kind = edge.get("type", "").split("|")[0]
    road_class = kind.removeprefix("highway.")
    if road_class not in ROAD_CLASSES:
        where = f"edge {edge.get('id')}"
        problems.append((where, f"type {kind!r} unknown; {FALLBACK_CLASS} defaults"))
    return road_class or "unknown"


def _sumo_points(edge: ET.Element, shape: str, source: str) -> list[tuple[float, float]]:
    """``"x,y x,y[,z] …"`` → [(x, y), …]."""
    try:
        return [(float(p.split(",")[0]), float(p.split(",")[1])) for p in shape.split()]
    except (ValueError, IndexError):
        raise FeedError(source, f"edge {edge.get('id')!r}: shape is not 'x,y x,y …'") from None


def _sumo_lines(
    shapes: list[list[tuple[float, float]]], to_lonlat: _SumoToLonLat, crs: str
) -> NDArray[np.object_]:
    x, y = np.asarray([p for shape in shapes for p in shape], float).reshape(-1, 2).T
    parts = np.repeat(np.arange(len(shapes)), [len(s) for s in shapes])
    cx, cy = to_city(*to_lonlat(x, y), crs)
    lines: NDArray[np.object_] = shapely.linestrings(cx, cy, indices=parts)
    return lines


# --- TNTP (Transportation Networks for Research) --------------------------------------------------

_TNTP_FIELDS = ("init_node", "term_node", "capacity", "length", "free_flow_time", "b", "power",
                "speed", "toll", "link_type")  # fmt: skip
_TNTP_REQUIRED = ("NUMBER OF NODES", "NUMBER OF LINKS", "FIRST THRU NODE")


def load_tntp_network(
    path: str | Path,
    *,
    node_path: str | Path | None = None,
    crs: str | None = None,
    length_to_m: float = 1.0,
    speed_to_kmh: float = 1.0,
) -> RoadNetwork:
    """A TNTP ``_net.tntp`` network (github.com/bstabler/TransportationNetworks).

    The metadata header gives the counts and ``<FIRST THRU NODE>`` (kept on the result: nodes
    below it are zones traffic may not pass through); the table has one ``;``-terminated row per
    directed link. TNTP carries no units: capacity, free-flow time, b, power, toll and link type
    are kept exactly as given (the assignment needs them so); length and speed are multiplied by
    ``length_to_m`` and ``speed_to_kmh`` (Anaheim is in feet and ft/min: 0.3048 and 0.018288).
    Nodes are numbered 1…``<NUMBER OF NODES>``. Lanes are not in TNTP and are 0.

    Parameters
    ----------
    path
        The ``_net.tntp`` file.
    node_path
        Node coordinates (``node  x  y  ;``); by default the sibling ``_node.tntp`` if there is
        one. Nodes without coordinates, and their links, get no geometry.
    crs
        The CRS the node coordinates are in, if known. They are not reprojected, and None (the
        default) keeps them as plain plane coordinates: SiouxFalls' were drawn artificially to
        reproduce a diagram, they are not a survey.

    Raises
    ------
    FeedError
        Naming file and line, for a missing metadata item, a malformed or unterminated row, a
        node outside 1…n, or a link count that differs from ``<NUMBER OF LINKS>``.
    """
    source = str(path)
    lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    meta, first_row = _tntp_metadata(lines, source)
    table = _tntp_links(lines, first_row, source, meta)
    n_nodes = meta["NUMBER OF NODES"]
    node_path = node_path or _sibling_node_file(Path(path))
    xy = _tntp_nodes(Path(node_path), n_nodes) if node_path else {}
    node_ids = [str(i) for i in range(1, n_nodes + 1)]
    points = np.array([shapely.Point(xy[i]) if i in xy else None for i in range(1, n_nodes + 1)])
    nodes = gpd.GeoDataFrame({"node_id": node_ids}, geometry=points, crs=crs)
    links = _tntp_link_frame(table, xy, length_to_m, speed_to_kmh, crs)
    problems = [] if xy else [(source, "no node coordinates; geometry is empty")]
    return RoadNetwork(
        nodes, links, crs, source, problems, meta["FIRST THRU NODE"], meta.get("NUMBER OF ZONES")
    )


def _tntp_metadata(lines: list[str], source: str) -> tuple[dict[str, int], int]:
    """``<KEY> value`` items up to ``<END OF METADATA>``; returns them and the next line index."""
    meta: dict[str, int] = {}
    for i, line in enumerate(lines):
        match = re.match(r"\s*<([^>]+)>\s*(.*)", line)
        if match is None:
            continue
        key, value = match.group(1).strip().upper(), match.group(2).strip()
        if key == "END OF METADATA":
            absent = [k for k in _TNTP_REQUIRED if k not in meta]
            if absent:
                raise FeedError(source, f"metadata lacks <{'>, <'.join(absent)}>", line=i + 1)
            return meta, i + 1
        if key.startswith("NUMBER OF") or key == "FIRST THRU NODE":
            try:
                meta[key] = int(float(value.split()[0]))
            except (ValueError, IndexError):
                raise FeedError(
                    source, f"<{key}> needs a number, got {value!r}", line=i + 1
                ) from None
    raise FeedError(
        source, "no <END OF METADATA> line; expected a TNTP metadata header", line=len(lines)
    )


def _tntp_links(
    lines: list[str], first: int, source: str, meta: dict[str, int]
) -> NDArray[np.float64]:
    """The link table as an (n, 10) float array in file order, checked row by row."""
    rows = [
        _tntp_row(line.strip(), number, source, meta["NUMBER OF NODES"])
        for number, line in enumerate(lines[first:], start=first + 1)
        if line.strip() and not line.strip().startswith("~")
    ]
    if len(rows) != meta["NUMBER OF LINKS"]:
        raise FeedError(
            source,
            f"<NUMBER OF LINKS> is {meta['NUMBER OF LINKS']} but the table has {len(rows)} rows "
            "(truncated file?)",
            line=len(lines),
        )
    return np.asarray(rows, float).reshape(-1, len(_TNTP_FIELDS))


def _tntp_row(text: str, number: int, source: str, n_nodes: int) -> list[float]:
    expected = f"{len(_TNTP_FIELDS)} numbers ({', '.join(_TNTP_FIELDS)}) and ';'"
    if not text.endswith(";"):
        raise FeedError(source, f"row not terminated by ';' (truncated?): {text!r}", line=number)
    fields = text[:-1].split()
    try:
        values = [float(v) for v in fields]
    except ValueError:
        raise FeedError(source, f"expected {expected}, got {fields}", line=number) from None
    if len(values) != len(_TNTP_FIELDS):
        raise FeedError(source, f"expected {expected}, got {len(values)} fields", line=number)
    if not all(v.is_integer() and 1 <= v <= n_nodes for v in values[:2]):
        raise FeedError(source, f"link ends {fields[:2]} must be nodes 1…{n_nodes}", line=number)
    return values


def _sibling_node_file(path: Path) -> Path | None:
    candidate = path.with_name(path.name.replace("_net.tntp", "_node.tntp"))
    return candidate if candidate != path and candidate.is_file() else None


def _tntp_nodes(path: Path, n_nodes: int) -> dict[int, tuple[float, float]]:
    """``node  x  y  ;`` rows (a header line and ``~`` comments are skipped)."""
    xy: dict[int, tuple[float, float]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        fields = line.replace(";", " ").split()
        if not fields or fields[0].startswith("~") or not fields[0].lstrip("-").isdigit():
            continue
        try:
            node, x, y = int(fields[0]), float(fields[1]), float(fields[2])
        except (ValueError, IndexError):
            raise FeedError(
                str(path), f"expected 'node x y', got {line.strip()!r}", line=number
            ) from None
        if not 1 <= node <= n_nodes:
            raise FeedError(str(path), f"node {node} outside 1…{n_nodes}", line=number)
        xy[node] = (x, y)
    return xy


def _tntp_link_frame(
    table: NDArray[np.float64],
    xy: dict[int, tuple[float, float]],
    length_to_m: float,
    speed_to_kmh: float,
    crs: str | None,
) -> gpd.GeoDataFrame:
    column = dict(zip(_TNTP_FIELDS, table.T, strict=True))
    tail, head = column["init_node"].astype(np.int64), column["term_node"].astype(np.int64)
    link_type = column["link_type"].astype(np.int64)
    frame = pd.DataFrame(
        {
            "link_id": [str(i) for i in range(1, len(table) + 1)],
            "from_node": tail.astype(str),
            "to_node": head.astype(str),
            "length_m": column["length"] * length_to_m,
            "lanes": np.zeros(len(table), np.int64),
            "free_speed_kmh": column["speed"] * speed_to_kmh,
            "capacity_veh_h": column["capacity"],
            "road_class": [f"type_{t}" for t in link_type],
            "name": "",
            "free_flow_time": column["free_flow_time"],
            "b": column["b"],
            "power": column["power"],
            "toll": column["toll"],
            "link_type": link_type,
        }
    )
    return gpd.GeoDataFrame(frame, geometry=_tntp_lines(tail.tolist(), head.tolist(), xy), crs=crs)


def _tntp_lines(
    tail: list[int], head: list[int], xy: dict[int, tuple[float, float]]
) -> NDArray[np.object_]:
    lines = [
        shapely.LineString([xy[a], xy[b]]) if a in xy and b in xy else None
        for a, b in zip(tail, head, strict=True)
    ]
    return np.asarray(lines, dtype=object)
