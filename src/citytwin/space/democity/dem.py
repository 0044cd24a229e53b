"""The demo city's terrain: a DEM drawn from the same plan as its river, core and zones.

The shape follows a Korean river city like Seoul, simplified: the river runs west to east in a
channel 3–5 m below its banks and falls 6 m across the city, so it drains out of the east
edge; the plain rises gently (3 m per km) away from the water; hills climb to 60–110 m along
the north and south edges (like Bukhansan and Gwanaksan) but leave the river's gap open; broad
swells of a few metres give the plain a natural relief. Urban depressions are carved on top:
round low-lying blocks and elongated road underpasses, 1.5–4 m deep, the places a cloudburst
floods first. Heights are metres above sea level on a :class:`~citytwin.analysis.grid.Grid` in
EPSG:5186. The terrain draws from its own random stream (``SeedSequence([seed, TERRAIN])``),
so it never moves the other layers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from citytwin.analysis.grid import Grid
from citytwin.space.democity import PLAN
from citytwin.space.democity.layout import PLAN_CRS, CityPlan, plan_city

logger = logging.getLogger(__name__)

F64 = NDArray[np.float64]

TERRAIN: Final = 5  # random stream of the terrain, after the five layers of build_demo_city
RIVER_WEST, RIVER_FALL = 14.0, 6.0  # bank height (m) at the west edge, and its fall to the east
PLAIN_SLOPE = 0.003  # metres per metre away from the river
CHANNEL_DEPTH = (3.0, 5.0)  # below the bank: at the edge of the water, at the centre line


def build_demo_dem(*, seed: int = 0, cell: float = 20.0) -> tuple[Grid, NDArray[np.float32]]:
    """The demo city's DEM for ``seed`` (same seed, same terrain) on ``cell``-metre squares.

    Examples
    --------
    >>> grid, z = build_demo_dem(cell=200.0)
    >>> grid.shape, grid.crs, z.dtype.name
    ((60, 75), 'EPSG:5186', 'float32')
    >>> bool(z.min() < 10 < 60 < z.max())  # the river's outlet below, hills above
    True
    """
    plan = plan_city(np.random.default_rng([seed, PLAN]))
    rng = np.random.default_rng([seed, TERRAIN])
    grid = Grid.covering(plan.bounds, cell=cell, crs=PLAN_CRS)
    x, y = grid.centres()
    river_base, distance = _river_frame(plan, x, y)
    heights = river_base + PLAIN_SLOPE * distance + _swells(plan, rng, x, y)
    heights += _hills(plan, rng, x, y) * _open_towards_river(distance)
    heights += _depressions(plan, rng, x, y, distance)
    heights = np.where(distance > 0, heights, river_base - _channel_depth(plan, x, y))
    logger.debug("demo DEM: %s cells, %.1f–%.1f m", grid.shape, heights.min(), heights.max())
    return grid, heights.astype(np.float32)


def write_demo_dem(path: str | Path, *, seed: int = 0, cell: float = 20.0) -> Path:
    """Write :func:`build_demo_dem` as a float32 GeoTIFF (EPSG:5186, band "elevation").

    Examples
    --------
    >>> import tempfile, rasterio
    >>> out = write_demo_dem(tempfile.mkdtemp() + "/dem.tif", cell=500.0)
    >>> with rasterio.open(out) as tif:
    ...     tif.crs.to_epsg(), tif.shape, tif.descriptions
    (5186, (24, 30), ('elevation',))
    """
    import rasterio
    from rasterio.transform import Affine

    grid, heights = build_demo_dem(seed=seed, cell=cell)
    out = Path(path)
    profile = {
        "driver": "GTiff", "height": grid.height, "width": grid.width, "count": 1,
        "dtype": "float32", "crs": grid.crs, "transform": Affine(*grid.transform),
        "compress": "deflate", "predictor": 3,
    }  # fmt: skip
    with rasterio.open(out, "w", **profile) as dataset:
        dataset.write(heights, 1)
        dataset.set_band_description(1, "elevation")
    return out


def _river_frame(plan: CityPlan, x: F64, y: F64) -> tuple[F64, F64]:
    """Bank height falling eastwards, and each point's north-south distance from the water."""
    west, _, east, _ = plan.bounds
    river_base = RIVER_WEST - RIVER_FALL * (x - west) / (east - west)
    distance = np.abs(y - plan.river_centre(x)) - plan.river_width / 2
    return river_base, np.maximum(distance, 0.0)


def _channel_depth(plan: CityPlan, x: F64, y: F64) -> F64:
    """Depth of the river bed below its banks: a parabola, deepest on the centre line."""
    across = np.clip(np.abs(y - plan.river_centre(x)) / (plan.river_width / 2), 0.0, 1.0)
    shallow, deep = CHANNEL_DEPTH
    depth: F64 = deep - (deep - shallow) * across**2
    return depth


def _hills(plan: CityPlan, rng: np.random.Generator, x: F64, y: F64) -> F64:
    """Ridges along the north and south edges plus a few random peaks near the city limit."""
    west, south, east, north = plan.bounds
    ridge = rng.uniform(60, 90) * np.exp(-(north - y) / 1_300)
    ridge += rng.uniform(35, 55) * np.exp(-(y - south) / 1_000)
    for _ in range(int(rng.integers(6, 10))):
        px, edge = rng.uniform(west, east), rng.integers(2)
        py = north - rng.uniform(200, 1_500) if edge else south + rng.uniform(200, 1_200)
        ridge += _bump(x, y, px, py, rng.uniform(15, 35), rng.uniform(500, 1_100))
    return ridge


def _open_towards_river(distance: F64) -> F64:
    """0 at the water, 1 far from it: hills fade out so the river keeps its way out."""
    fade: F64 = 1.0 - np.exp(-((distance / 1_200) ** 2))
    return fade


def _swells(plan: CityPlan, rng: np.random.Generator, x: F64, y: F64) -> F64:
    """Broad rises and hollows of a few metres over the plain."""
    west, south, east, north = plan.bounds
    relief = np.zeros(x.shape)
    for _ in range(30):
        px, py = rng.uniform(west, east), rng.uniform(south, north)
        relief += _bump(x, y, px, py, rng.uniform(-2.0, 3.0), rng.uniform(400, 1_000))
    return relief


def _depressions(plan: CityPlan, rng: np.random.Generator, x: F64, y: F64, distance: F64) -> F64:
    """Low blocks (round) and underpasses (long, narrow, east-west or north-south), away from
    the river and the city limit: negative heights to add."""
    west, south, east, north = plan.bounds
    carved = np.zeros(x.shape)
    placed = 0
    while placed < 12:
        px, py = rng.uniform(west + 1_500, east - 1_500), rng.uniform(south + 1_500, north - 1_500)
        if abs(py - float(plan.river_centre(np.array([px]))[0])) < plan.river_width / 2 + 400:
            continue
        depth = rng.uniform(1.5, 4.0)
        if placed % 2:  # an underpass: 120–250 m long, 25 m wide
            half_length, half_width = rng.uniform(60, 125), 12.5
            along_x = bool(rng.integers(2))
            dx, dy = (half_length, half_width) if along_x else (half_width, half_length)
        else:  # a low block: 60–150 m across
            dx = dy = rng.uniform(30, 75)
        r2 = ((x - px) / dx) ** 2 + ((y - py) / dy) ** 2
        carved -= depth * np.clip(1.0 - r2, 0.0, None) ** 0.5
        placed += 1
    return carved * (distance > 0)


def _bump(x: F64, y: F64, px: float, py: float, height: float, radius: float) -> F64:
    bump: F64 = height * np.exp(-((x - px) ** 2 + (y - py) ** 2) / (2 * radius**2))
    return bump
