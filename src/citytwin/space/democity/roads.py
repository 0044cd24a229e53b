"""Demo roads: a 200 m street grid with arterials every 1 km, collectors every 400 m and bridges.

Grid lines whose index is a multiple of 5 are arterials (OSM ``primary``, 3 lanes each way, 4 in
the core and on bridges: 6–8 lanes in all), other even lines collectors (``secondary``, 2 lanes),
the rest local streets (``residential``, 1 lane). Speeds and per-lane capacities are the
:data:`~citytwin.space.road_classes.ROAD_CLASSES` defaults. Every street is two-way. Streets stop
20 m short of the river; each north-south arterial crosses it on a bridge, the only links that
touch the water.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import shapely
from numpy.typing import NDArray

from citytwin.space.democity.districts import DONG_STEMS, GU_STEMS
from citytwin.space.democity.layout import F64, PLAN_CRS, CityPlan
from citytwin.space.road_classes import ROAD_CLASSES, LinkRows, build_link_frame, build_node_frame
from citytwin.space.roads import RoadNetwork

SPACING: Final = 200.0
ARTERIAL_EVERY, COLLECTOR_EVERY = 5, 2
RIVER_MARGIN: Final = 20.0
#: Half the width of each class's carriageway plus verge, metres: where building lots begin.
HALF_WIDTH: Final = {"primary": 16.0, "secondary": 9.0, "residential": 5.0}
SUFFIX: Final = {"primary": "대로", "secondary": "로"}


@dataclass(frozen=True)
class StreetGrid:
    """The grid lines: eastings of north-south lines, northings of east-west ones, classes."""

    xs: F64
    ys: F64
    x_class: NDArray[np.str_]
    y_class: NDArray[np.str_]


@dataclass(frozen=True)
class DemoRoads:
    """The network, its grid and the ids of the bridge links."""

    network: RoadNetwork
    grid: StreetGrid
    bridges: tuple[str, ...]


def build_roads(plan: CityPlan, rng: np.random.Generator, source: str) -> DemoRoads:
    """The directed road network of ``plan`` (in :data:`PLAN_CRS`)."""
    grid = _grid(plan)
    nx, ny = len(grid.xs), len(grid.ys)
    mesh_x, mesh_y = np.meshgrid(grid.xs, grid.ys)
    px, py = mesh_x.ravel(), mesh_y.ravel()
    x_name, y_name = _line_names(grid.x_class, rng), _line_names(grid.y_class, rng)
    node = np.arange(nx * ny).reshape(ny, nx)
    tail = np.concatenate([node[:, :-1].ravel(), node[:-1, :].ravel()])
    head = np.concatenate([node[:, 1:].ravel(), node[1:, :].ravel()])
    cls = np.concatenate([np.repeat(grid.y_class, nx - 1), np.tile(grid.x_class, ny - 1)])
    name = np.concatenate([np.repeat(y_name, nx - 1), np.tile(x_name, ny - 1)])
    wet = plan.in_river(px, py, margin=RIVER_MARGIN)
    lines = shapely.linestrings(np.stack([np.c_[px[tail], py[tail]], np.c_[px[head], py[head]]], 1))
    keep = ~wet[tail] & ~wet[head] & ~shapely.intersects(plan.river_polygon(), lines)
    b_tail, b_head, b_column = _bridges(grid, wet.reshape(ny, nx), node)
    tail = np.concatenate([tail[keep], b_tail])
    head = np.concatenate([head[keep], b_head])
    cls = np.concatenate([cls[keep], np.full(len(b_tail), "primary")])
    name = np.concatenate([name[keep], [x_name[i].replace("대로", "대교") for i in b_column]])
    lanes = _lanes(plan, grid, px, py, tail, head, cls)
    lanes[len(lanes) - len(b_tail) :] = 4
    network, link_ids = _network(px, py, tail, head, cls, name, lanes, source)
    bridges = link_ids[len(tail) - len(b_tail) :]
    return DemoRoads(network, grid, tuple(f"{e}{d}" for e in bridges for d in "fb"))


def _grid(plan: CityPlan) -> StreetGrid:
    west, south, east, north = plan.bounds
    xs = np.arange(west, east + SPACING / 2, SPACING)
    ys = np.arange(south, north + SPACING / 2, SPACING)
    return StreetGrid(xs, ys, _classes(len(xs)), _classes(len(ys)))


def _classes(count: int) -> NDArray[np.str_]:
    index = np.arange(count)
    classes: NDArray[np.str_] = np.where(
        index % ARTERIAL_EVERY == 0,
        "primary",
        np.where(index % COLLECTOR_EVERY == 0, "secondary", "residential"),
    )
    return classes


def _line_names(classes: NDArray[np.str_], rng: np.random.Generator) -> list[str]:
    """``가온대로``, ``나래로``; local streets are numbered off the line before (``나래로3길``)."""
    stems = [s for s, _ in DONG_STEMS + GU_STEMS]
    order = rng.permutation(len(stems))
    names: list[str] = []
    majors = 0
    for i, cls in enumerate(classes.tolist()):
        if cls in SUFFIX:
            names.append(stems[order[majors % len(stems)]] + SUFFIX[cls])
            majors += 1
        else:  # local lines have odd indices, so the line before is a major one
            names.append(f"{names[-1]}{i % 10}길")
    return names


def _bridges(
    grid: StreetGrid, wet: NDArray[np.bool_], node: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """One link per north-south arterial (edges of the city excepted) over the water."""
    columns = np.flatnonzero(grid.x_class == "primary")[1:-1]
    tails, heads, used = [], [], []
    for i in columns:
        rows = np.flatnonzero(wet[:, i])
        if len(rows) and rows[0] > 0 and rows[-1] < len(grid.ys) - 1:
            tails.append(node[rows[0] - 1, i])
            heads.append(node[rows[-1] + 1, i])
            used.append(i)
    return np.asarray(tails, np.int64), np.asarray(heads, np.int64), np.asarray(used, np.int64)


def _lanes(
    plan: CityPlan, grid: StreetGrid, px: F64, py: F64,
    tail: NDArray[np.int64], head: NDArray[np.int64], cls: NDArray[np.str_],
) -> NDArray[np.int64]:  # fmt: skip
    """Lanes per direction: 1, 2 or 3 by class; 4 on arterials through the core."""
    lanes = np.select([cls == "primary", cls == "secondary"], [3, 2], 1).astype(np.int64)
    mx, my = (px[tail] + px[head]) / 2, (py[tail] + py[head]) / 2
    lanes[(cls == "primary") & plan.core.contains(mx, my)] = 4
    return lanes


def _network(
    px: F64, py: F64, tail: NDArray[np.int64], head: NDArray[np.int64],
    cls: NDArray[np.str_], name: NDArray[np.str_], lanes: NDArray[np.int64], source: str,
) -> tuple[RoadNetwork, list[str]]:  # fmt: skip
    """Both directions of every street; only nodes that some street reaches."""
    used = np.unique(np.concatenate([tail, head]))
    node_ids = [f"n{k}" for k in used]
    edge_ids = [f"e{k}" for k in range(len(tail))]
    a, b = np.concatenate([tail, head]), np.concatenate([head, tail])
    rows = LinkRows(
        link_id=[f"{e}f" for e in edge_ids] + [f"{e}b" for e in edge_ids],
        from_node=[f"n{k}" for k in a],
        to_node=[f"n{k}" for k in b],
        lanes=np.concatenate([lanes, lanes]).tolist(),
        free_speed_kmh=[float(ROAD_CLASSES[c].speed_kmh) for c in np.concatenate([cls, cls])],
        road_class=np.concatenate([cls, cls]).tolist(),
        name=np.concatenate([name, name]).tolist(),
    )
    geometry = shapely.linestrings(np.stack([np.c_[px[a], py[a]], np.c_[px[b], py[b]]], 1))
    length = shapely.length(geometry)
    links = build_link_frame(rows, length, geometry, PLAN_CRS)
    nodes = build_node_frame(node_ids, px[used], py[used], PLAN_CRS)
    return RoadNetwork(nodes, links, PLAN_CRS, source), edge_ids
