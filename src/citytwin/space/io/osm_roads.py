"""Driveable roads of an OpenStreetMap XML extract as a directed node/link graph.

The rules (splitting at shared nodes, ``oneway``, lanes, ``maxspeed``) are documented on the public
entry point :func:`citytwin.space.roads.load_osm_roads`. The whole file is parsed with ElementTree,
node ids stay strings and a bad attribute is reported with its element. Buildings are read by
:mod:`citytwin.space.io.osm` (streamed into integer arrays, XML or PBF); the two readers share no
code.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from numpy.typing import NDArray

from citytwin.space.crs import DEFAULT_CITY_CRS, to_city
from citytwin.space.io.xml_elements import number_attribute, parse_xml, required_attribute
from citytwin.space.road_classes import (
    IMPLIED_ONEWAY,
    ROAD_CLASSES,
    LinkRows,
    NetworkFrames,
    build_link_frame,
    build_node_frame,
)


@dataclass(frozen=True)
class _OsmWay:
    way_id: str
    refs: list[str]
    tags: dict[str, str]


def read_osm_roads(path: str | Path, *, crs: str = DEFAULT_CITY_CRS) -> NetworkFrames:
    """Nodes, links and problems of the driveable ways of an OSM XML file, in ``crs``.

    See :func:`citytwin.space.roads.load_osm_roads` for how ways become links.
    """
    source = str(path)
    coords, ways, problems = _read_osm(path, source)
    split = _split_points(ways)
    node_ids = sorted(split)
    rows, pieces = LinkRows(), []
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
    links = build_link_frame(rows, shapely.length(geometry), geometry, crs)
    lon, lat = np.asarray([coords[n] for n in node_ids], float).reshape(-1, 2).T
    nodes = build_node_frame(node_ids, *to_city(lon, lat, crs), crs)
    return nodes, links, problems


def _read_osm(
    path: str | Path, source: str
) -> tuple[dict[str, tuple[float, float]], list[_OsmWay], list[tuple[str, str]]]:
    """Node positions, driveable ways with all their nodes known, and what was skipped."""
    root = parse_xml(path)
    coords: dict[str, tuple[float, float]] = {}
    for element in root.iter("node"):
        coords[required_attribute(element, "id", source)] = _lonlat(element, source)
    ways, problems = [], []
    for element in root.iter("way"):
        tags = {t.get("k", ""): t.get("v", "") for t in element.iter("tag")}
        if tags.get("highway") not in ROAD_CLASSES or tags.get("area") == "yes":
            continue
        way_id, refs = required_attribute(element, "id", source), list[str]()
        for nd in element.iter("nd"):
            ref = required_attribute(nd, "ref", source)
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
    return number_attribute(element, "lon", source), number_attribute(element, "lat", source)


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
