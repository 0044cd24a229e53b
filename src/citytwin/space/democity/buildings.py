"""Demo buildings: footprints on lots inside the street blocks, with heights by land use.

Every 200 m block between grid streets is split into a lot grid that depends on its land use,
and each lot can hold one footprint strictly inside it, so footprints never overlap each other or
touch a street. Lots in or within 15 m of the river are not used. Blocks in the core hold
3 × 3 office and commercial towers (20–60 floors); 아파트 단지 blocks 2 × 4 slabs 13–18 m deep
facing south (15–35 floors, as Korean apartments do); the industrial zone 2 × 2 sheds (1–4 floors)
and all other blocks 5 × 5 small lots (1–5 floors, with some retail, schools and offices).

Of ``count`` buildings about 8 % are in the core, 12 % in apartment blocks and 4 % industrial
(fewer if the zones have fewer lots); the rest are low-rise, so 80–90 % have at most five
floors, as in Seoul, where most buildings are small. Lots are drawn without replacement, with
weights falling off with the distance to the core (Efraimidis & Spirakis 2006: weighted
sampling by the largest keys ``log(u) / w``).
Heights are ``levels`` × 3.0 m storeys (``height_source`` = ``levels``), as
:func:`~citytwin.space.buildings.load_buildings` derives them from a floor count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import geopandas as gpd
import numpy as np
import shapely
from numpy.typing import NDArray

from citytwin.space.democity.layout import F64, PLAN_CRS, CityPlan
from citytwin.space.democity.roads import HALF_WIDTH, StreetGrid

STOREY_HEIGHT: Final = 3.0
SETBACK: Final = 3.0  # metres from the verge to the first lot
RIVER_CLEARANCE: Final = 15.0
CORE, APARTMENTS, INDUSTRIAL, LOW_RISE = range(4)
LOTS: Final = {CORE: (3, 3), APARTMENTS: (2, 4), INDUSTRIAL: (2, 2), LOW_RISE: (5, 5)}
SHARE: Final = {CORE: 0.08, APARTMENTS: 0.12, INDUSTRIAL: 0.04}
L_SHAPED: Final = np.array([0.2, 0.1, 0.15, 0.2])  # share of L-shaped footprints by zone
I64 = NDArray[np.int64]


@dataclass(frozen=True)
class Lots:
    """Candidate lots: centre, size, zone and the inner bounds of their block."""

    x: F64
    y: F64
    width: F64
    depth: F64
    zone: I64
    block: F64  # (n, 4): west, south, east, north

    def take(self, rows: I64) -> Lots:
        """The lots at ``rows``."""
        return Lots(self.x[rows], self.y[rows], self.width[rows], self.depth[rows],
                    self.zone[rows], self.block[rows])  # fmt: skip


@dataclass(frozen=True)
class DemoBuildings:
    """The buildings in BuildingLayer columns, and the lots they stand on (for sensors)."""

    frame: gpd.GeoDataFrame
    lots: Lots


def build_buildings(
    plan: CityPlan, grid: StreetGrid, rng: np.random.Generator, count: int
) -> DemoBuildings:
    """``count`` buildings (raises ValueError when the city has fewer free lots)."""
    lots = _lots(plan, grid)
    lots = lots.take(_select(plan, lots, rng, count))
    geometry = _footprints(lots, rng)
    use, levels = _uses_and_levels(lots.zone, rng)
    frame = gpd.GeoDataFrame(
        {
            "key": [f"demo:building/{n}" for n in range(1, count + 1)],
            "name": np.full(count, None, dtype=object),
            "use": use,
            "height": levels * STOREY_HEIGHT,
            "height_source": "levels",
            "levels": levels,
            "min_height": 0.0,
            "repaired": False,
        },
        geometry=geometry,
        crs=PLAN_CRS,
    )
    return DemoBuildings(frame, lots)


def _lots(plan: CityPlan, grid: StreetGrid) -> Lots:
    """Every lot of every block, minus those near the water."""
    hx = np.array([HALF_WIDTH[c] for c in grid.x_class]) + SETBACK
    hy = np.array([HALF_WIDTH[c] for c in grid.y_class]) + SETBACK
    bx0, by0 = np.meshgrid(grid.xs[:-1] + hx[:-1], grid.ys[:-1] + hy[:-1])
    bx1, by1 = np.meshgrid(grid.xs[1:] - hx[1:], grid.ys[1:] - hy[1:])
    block = np.c_[bx0.ravel(), by0.ravel(), bx1.ravel(), by1.ravel()]
    zone = _zones(plan, (block[:, 0] + block[:, 2]) / 2, (block[:, 1] + block[:, 3]) / 2)
    parts = [_split(block[zone == z], z) for z in LOTS]
    fields = Lots.__dataclass_fields__
    lots = Lots(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields))
    boxes = shapely.box(lots.x - lots.width / 2, lots.y - lots.depth / 2,
                        lots.x + lots.width / 2, lots.y + lots.depth / 2)  # fmt: skip
    water = shapely.buffer(plan.river_polygon(), RIVER_CLEARANCE)
    shapely.prepare(water)
    return lots.take(np.flatnonzero(~shapely.intersects(water, boxes)))


def _zones(plan: CityPlan, x: F64, y: F64) -> I64:
    zone = np.full(len(x), LOW_RISE, np.int64)
    zone[plan.industrial.contains(x, y)] = INDUSTRIAL
    for cluster in plan.apartments:
        zone[cluster.contains(x, y)] = APARTMENTS
    zone[plan.core.contains(x, y)] = CORE
    return zone


def _split(block: F64, zone: int) -> Lots:
    """The ``LOTS[zone]`` grid of lots of each block."""
    cols, rows = LOTS[zone]
    i, j = np.meshgrid(np.arange(cols), np.arange(rows))
    width = np.repeat((block[:, 2] - block[:, 0]) / cols, i.size)
    depth = np.repeat((block[:, 3] - block[:, 1]) / rows, i.size)
    x = np.repeat(block[:, 0], i.size) + (np.tile(i.ravel(), len(block)) + 0.5) * width
    y = np.repeat(block[:, 1], i.size) + (np.tile(j.ravel(), len(block)) + 0.5) * depth
    n = len(x)
    return Lots(x, y, width, depth, np.full(n, zone, np.int64), np.repeat(block, i.size, axis=0))


def _select(plan: CityPlan, lots: Lots, rng: np.random.Generator, count: int) -> I64:
    """Rows of ``count`` lots: each zone's share, weighted towards the core."""
    if count > len(lots.x):
        raise ValueError(f"buildings={count} but the demo city has only {len(lots.x)} free lots")
    weight = np.exp(-np.hypot(lots.x - plan.core.x, lots.y - plan.core.y) / 4_000.0)
    key = np.log(rng.random(len(weight))) / weight  # Efraimidis–Spirakis keys: larger wins
    chosen: list[I64] = []
    for zone, share in SHARE.items():
        rows = np.flatnonzero(lots.zone == zone)
        take = min(len(rows), round(share * count))
        chosen.append(rows[np.argsort(-key[rows], kind="stable")[:take]])
    rest = np.flatnonzero(lots.zone == LOW_RISE)
    missing = count - sum(len(c) for c in chosen)
    chosen.append(rest[np.argsort(-key[rest], kind="stable")[:missing]])
    return np.sort(np.concatenate(chosen))


def _footprints(lots: Lots, rng: np.random.Generator) -> NDArray[np.object_]:
    """A rectangle or L inside each lot, its long side along the nearest street.

    Apartment slabs run east-west (south-facing) whatever the street.
    """
    n = len(lots.x)
    low, high = np.array([0.55, 0.6, 0.5, 0.45]), np.array([0.85, 0.85, 0.85, 0.8])
    a = lots.width * rng.uniform(low[lots.zone], high[lots.zone])
    b = lots.depth * rng.uniform(low[lots.zone], high[lots.zone])
    slab = lots.zone == APARTMENTS
    b[slab] = np.minimum(rng.uniform(13, 18, int(slab.sum())), 0.8 * lots.depth[slab])
    to_x = np.minimum(lots.x - lots.block[:, 0], lots.block[:, 2] - lots.x)
    to_y = np.minimum(lots.y - lots.block[:, 1], lots.block[:, 3] - lots.y)
    along_y = (to_x < to_y) & ~slab  # nearest street runs north-south: long side north-south
    long, short = np.maximum(a, b), np.minimum(a, b)
    width = np.where(slab, a, np.where(along_y, np.minimum(short, lots.width), long))
    depth = np.where(slab, b, np.where(along_y, np.minimum(long, lots.depth), short))
    width, depth = np.minimum(width, 0.9 * lots.width), np.minimum(depth, 0.9 * lots.depth)
    cx = lots.x + rng.uniform(-0.8, 0.8, n) * (lots.width - width) / 2
    cy = lots.y + rng.uniform(-0.8, 0.8, n) * (lots.depth - depth) / 2
    corner = rng.uniform(0.35, 0.6, (n, 2)) * np.c_[width, depth]
    l_shaped = rng.random(n) < L_SHAPED[lots.zone]
    sign = rng.choice([-1.0, 1.0], (n, 2))
    return _polygons(np.c_[cx, cy], np.c_[width, depth] / 2, corner, sign, l_shaped)


def _polygons(
    centre: F64, half: F64, corner: F64, sign: F64, l_shaped: NDArray[np.bool_]
) -> NDArray[np.object_]:
    """Rectangles, or Ls with the ``corner``-sized notch cut at the corner ``sign`` points to."""
    hx, hy, cx, cy = half[:, 0], half[:, 1], corner[:, 0], corner[:, 1]
    rect = np.stack([np.c_[-hx, -hy], np.c_[hx, -hy], np.c_[hx, hy], np.c_[-hx, hy]], 1)
    notch = np.stack(
        [np.c_[-hx, -hy], np.c_[hx, -hy], np.c_[hx, hy - cy], np.c_[hx - cx, hy - cy],
         np.c_[hx - cx, hy], np.c_[-hx, hy]], 1,
    )  # fmt: skip
    out = np.empty(len(centre), dtype=object)
    out[~l_shaped] = shapely.polygons(rect[~l_shaped] + centre[~l_shaped, None, :])
    shape = notch[l_shaped] * sign[l_shaped, None, :] + centre[l_shaped, None, :]
    out[l_shaped] = shapely.polygons(shape)
    return out


def _uses_and_levels(zone: I64, rng: np.random.Generator) -> tuple[NDArray[np.object_], F64]:
    """Use and floor count by zone (the ranges in the module docstring)."""
    n = len(zone)
    u, beta = rng.random(n), rng.beta(1.3, 2.2, n)
    small = rng.integers(1, 6, n).astype(float)
    tower, flats = 20 + np.floor(41 * beta), 15 + np.floor(21 * rng.beta(2.0, 2.5, n))
    choices = [
        (zone == CORE) & (u < 0.55), (zone == CORE) & (u < 0.9), zone == CORE,
        (zone == APARTMENTS) & (u < 0.93), (zone == APARTMENTS) & (u < 0.96), zone == APARTMENTS,
        (zone == INDUSTRIAL) & (u < 0.85), zone == INDUSTRIAL,
        u < 0.75, u < 0.9, u < 0.96,
    ]  # fmt: skip
    uses = ["office", "commercial", "retail", "apartments", "school", "retail", "industrial",
            "office", "residential", "retail", "commercial"]  # fmt: skip
    floors = [tower, tower, np.minimum(small + 1, 5), flats, 4 + (small > 3), np.minimum(small, 3),
              np.minimum(small, 4), small + 3, _house_floors(rng, n), np.minimum(small, 3),
              small + 2]  # fmt: skip
    use = np.select(choices, uses, "school").astype(object)
    levels = np.select(choices, floors, 3 + (small > 3)).astype(float)
    return use, levels


def _house_floors(rng: np.random.Generator, n: int) -> F64:
    """1–5 floors, most often 2–3 (다가구·다세대 houses)."""
    floors: F64 = rng.choice([1.0, 2.0, 3.0, 4.0, 5.0], n, p=[0.15, 0.3, 0.25, 0.2, 0.1])
    return floors
