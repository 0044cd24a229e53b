"""SUMO road networks (``.net.xml``) as a directed node/link graph in the city CRS.

Which junctions and edges are kept, and how SUMO's plane coordinates are placed on Earth, is
documented on the public entry point :func:`citytwin.space.roads.load_sumo_network`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import shapely
from numpy.typing import NDArray

from citytwin.errors import FeedError
from citytwin.space.crs import DEFAULT_CITY_CRS, WGS84, to_city, transformer
from citytwin.space.io.xml_elements import number_attribute, parse_xml, required_attribute
from citytwin.space.road_classes import (
    FALLBACK_CLASS,
    ROAD_CLASSES,
    LinkRows,
    NetworkFrames,
    build_link_frame,
    build_node_frame,
)

SUMO_SKIPPED_FUNCTIONS = frozenset({"internal", "crossing", "walkingarea"})


def read_sumo_network(path: str | Path, *, crs: str = DEFAULT_CITY_CRS) -> NetworkFrames:
    """Nodes, links and problems of a SUMO ``.net.xml`` file, in ``crs``.

    See :func:`citytwin.space.roads.load_sumo_network` for what is kept and how it is placed.
    """
    source = str(path)
    root = parse_xml(path)
    to_lonlat = _sumo_projection(root, source)
    junctions = {
        required_attribute(j, "id", source): (
            number_attribute(j, "x", source),
            number_attribute(j, "y", source),
        )
        for j in root.iter("junction")
        if j.get("type") != "internal"
    }
    rows, shapes, lengths = LinkRows(), [], []
    problems: list[tuple[str, str]] = []
    for edge in root.iter("edge"):
        if edge.get("function") in SUMO_SKIPPED_FUNCTIONS:
            continue
        link_id, lanes = required_attribute(edge, "id", source), edge.findall("lane")
        ends = (required_attribute(edge, "from", source), required_attribute(edge, "to", source))
        if not lanes or any(end not in junctions for end in ends):
            raise FeedError(source, f"edge {link_id!r}: expected lanes and known junctions")
        speed = max(number_attribute(lane, "speed", source) for lane in lanes) * 3.6
        lengths.append(float(np.mean([number_attribute(lane, "length", source) for lane in lanes])))
        road_class = _sumo_class(edge, problems)
        rows.add((link_id, *ends), len(lanes), speed, road_class, edge.get("name", ""))
        shape = edge.get("shape")
        shapes.append(_sumo_points(edge, shape, source) if shape else [junctions[e] for e in ends])
    geometry = _sumo_lines(shapes, to_lonlat, crs)
    links = build_link_frame(rows, np.asarray(lengths, float), geometry, crs)
    ids = list(junctions)
    x, y = np.asarray(list(junctions.values()), float).reshape(-1, 2).T
    nodes = build_node_frame(ids, *to_city(*to_lonlat(x, y), crs), crs)
    return nodes, links, problems


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
    projection = required_attribute(location, "projParameter", source)
    if projection.strip() == "!":
        raise FeedError(source, "<location projParameter='!'>: the network is not georeferenced")
    try:
        dx, dy = (float(v) for v in required_attribute(location, "netOffset", source).split(","))
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
