"""Road networks: one directed node/link model and its loaders for OSM XML, SUMO and TNTP.

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

The class table lives in :mod:`citytwin.space.road_classes` and the file formats are parsed in
:mod:`citytwin.space.io` (``osm_roads``, ``sumo``, ``tntp``); both are re-exported or wrapped here,
so ``from citytwin.space.roads import …`` is the one import callers need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from citytwin.errors import ValidationError
from citytwin.space.crs import DEFAULT_CITY_CRS
from citytwin.space.io.osm_roads import read_osm_roads
from citytwin.space.io.sumo import SUMO_SKIPPED_FUNCTIONS, read_sumo_network
from citytwin.space.io.tntp import read_tntp_network
from citytwin.space.road_classes import (
    BPR_B,
    BPR_POWER,
    DRIVEABLE_CLASSES,
    FALLBACK_CLASS,
    IMPLIED_ONEWAY,
    ROAD_CLASSES,
    RoadClass,
)

__all__ = [
    "BPR_B",
    "BPR_POWER",
    "DRIVEABLE_CLASSES",
    "FALLBACK_CLASS",
    "IMPLIED_ONEWAY",
    "LINK_COLUMNS",
    "ROAD_CLASSES",
    "SUMO_SKIPPED_FUNCTIONS",
    "RoadClass",
    "RoadNetwork",
    "load_osm_roads",
    "load_sumo_network",
    "load_tntp_network",
]

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


# --- loaders (the parsing is in citytwin.space.io) ----------------------------------------------


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
    nodes, links, problems = read_osm_roads(path, crs=crs)
    return RoadNetwork(nodes, links, crs, str(path), problems)


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
    nodes, links, problems = read_sumo_network(path, crs=crs)
    return RoadNetwork(nodes, links, crs, str(path), problems)


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
    nodes, links, problems, first_thru_node, zones = read_tntp_network(
        path, node_path=node_path, crs=crs, length_to_m=length_to_m, speed_to_kmh=speed_to_kmh
    )
    return RoadNetwork(nodes, links, crs, str(path), problems, first_thru_node, zones)
