"""Demo sensor sites: on the pavement in front of buildings, denser in the core.

Each site is drawn from a building (with replacement; core towers weigh 4, apartment blocks 1.5,
the rest 1) and placed on the edge of the building's block nearest to it, 2 m out from the lot
line (the pavement), moved up to 20 m along the street. Sites in or by the water are redrawn.
Serials are ``DEMO`` and seven digits, so they cannot be mistaken for S-DoT's ``V02Q…`` serials.
"""

from __future__ import annotations

import numpy as np
import shapely

from citytwin.emulator.sites import Sites
from citytwin.space.crs import to_wgs84
from citytwin.space.democity.buildings import APARTMENTS, CORE, DemoBuildings
from citytwin.space.democity.layout import F64, PLAN_CRS, CityPlan

PAVEMENT = 2.0  # metres from the block's lot line towards the street
WEIGHT = {CORE: 4.0, APARTMENTS: 1.5}


def place_sensors(
    plan: CityPlan, buildings: DemoBuildings, rng: np.random.Generator, count: int
) -> Sites:
    """``count`` sites as the emulator's :class:`~citytwin.emulator.sites.Sites` (WGS84)."""
    lots = buildings.lots
    weight = np.ones(len(lots.x))
    for zone, value in WEIGHT.items():
        weight[lots.zone == zone] = value
    x, y = np.empty(0), np.empty(0)
    while len(x) < count:
        rows = rng.choice(len(weight), 2 * count + 10, p=weight / weight.sum())
        px, py = _pavement_points(buildings, rows, rng)
        dry = ~plan.in_river(px, py, margin=10.0)
        x, y = np.concatenate([x, px[dry]]), np.concatenate([y, py[dry]])
    lon, lat = to_wgs84(x[:count], y[:count], PLAN_CRS)
    numbers = np.sort(rng.choice(10**7, count, replace=False))
    return Sites(tuple(f"DEMO{k:07d}" for k in numbers), lon, lat)


def _pavement_points(
    buildings: DemoBuildings, rows: np.ndarray, rng: np.random.Generator
) -> tuple[F64, F64]:
    """For each building at ``rows``: a point on the pavement of its nearest street."""
    centre = shapely.centroid(buildings.frame.geometry.to_numpy()[rows])
    bx, by = shapely.get_x(centre), shapely.get_y(centre)
    west, south, east, north = buildings.lots.block[rows].T
    gaps = np.c_[bx - west, east - bx, by - south, north - by]
    side = np.argmin(gaps, axis=1)
    shift = rng.uniform(-20, 20, len(rows))
    along_x, along_y = np.clip(bx + shift, west, east), np.clip(by + shift, south, north)
    x = np.select([side == 0, side == 1], [west - PAVEMENT, east + PAVEMENT], along_x)
    y = np.select([side == 2, side == 3], [south - PAVEMENT, north + PAVEMENT], along_y)
    return x, y
