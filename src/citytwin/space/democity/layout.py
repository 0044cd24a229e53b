"""The city plan every demo layer is drawn from: extent, river, core and land-use zones.

All coordinates are EPSG:5186 metres. The city is a 15 × 12 km rectangle centred on
127.0° E 37.55° N (x = 200,000, y = 550,000: EPSG:5186's central meridian, where Seoul's real
centre also lies), so Korean tools accept it, while its straight edges and invented names make it
plainly synthetic. A river crosses it from west to east south of the centre, like the Han.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import shapely
from numpy.typing import NDArray

F64 = NDArray[np.float64]

PLAN_CRS: Final = "EPSG:5186"  # the plan is drawn in it; other CRSs are reprojected at the end
CENTRE: Final = (200_000.0, 550_000.0)  # EPSG:5186 metres of 127.0° E 37.55° N (rounded)
WIDTH, HEIGHT = 15_000.0, 12_000.0
RIVER_STEP = 50.0  # metres between the vertices of each river bank


@dataclass(frozen=True)
class Zone:
    """A disc of one land use: centre and radius in metres."""

    x: float
    y: float
    radius: float

    def contains(self, x: F64, y: F64) -> NDArray[np.bool_]:
        """Which points lie inside the disc."""
        inside: NDArray[np.bool_] = np.hypot(x - self.x, y - self.y) <= self.radius
        return inside


@dataclass(frozen=True)
class CityPlan:
    """Where things go. The river is the band ``|y - centre_line(x)| < river_width / 2``.

    Measured north-south the band is ``river_width`` (700–950 m) wide; measured across it, where
    the banks slope, it is 600–950 m (about 800 m on average over seeds 0–11).
    """

    bounds: tuple[float, float, float, float]
    river_y: float
    meanders: tuple[tuple[float, float, float], ...]  # (amplitude m, wavelength m, phase rad)
    river_width: float
    core: Zone
    apartments: tuple[Zone, ...]
    industrial: Zone

    @property
    def boundary(self) -> shapely.Polygon:
        """The city limit."""
        return shapely.box(*self.bounds)

    def river_centre(self, x: F64) -> F64:
        """Northing of the river's centre line at eastings ``x``."""
        y = np.full(np.shape(x), self.river_y)
        for amplitude, wavelength, phase in self.meanders:
            y = y + amplitude * np.sin(2 * np.pi * (x - self.bounds[0]) / wavelength + phase)
        return y

    def river_polygon(self) -> shapely.Polygon:
        """The water area, from the west to the east edge of the city."""
        west, _, east, _ = self.bounds
        x = np.linspace(west, east, int((east - west) / RIVER_STEP) + 1)
        y = self.river_centre(x)
        half = self.river_width / 2
        ring = np.concatenate(
            [np.c_[x, y + half], np.c_[x[::-1], y[::-1] - half], [[x[0], y[0] + half]]]
        )
        return shapely.Polygon(ring)

    def in_river(self, x: F64, y: F64, *, margin: float = 0.0) -> NDArray[np.bool_]:
        """Which points lie in the water or within ``margin`` metres (north-south) of it."""
        inside: NDArray[np.bool_] = np.abs(y - self.river_centre(x)) < self.river_width / 2 + margin
        return inside


def plan_city(rng: np.random.Generator) -> CityPlan:
    """A random plan: meanders, river width, core and zones vary with the generator."""
    cx, cy = CENTRE
    bounds = (cx - WIDTH / 2, cy - HEIGHT / 2, cx + WIDTH / 2, cy + HEIGHT / 2)
    meanders = (
        _meander(rng, (500, 800), (9_000, 12_000)),
        _meander(rng, (80, 150), (3_500, 5_000)),
    )
    dx, dy, radius = (float(rng.uniform(*r)) for r in ((-800, 800), (1_600, 2_200), (1_200, 1_600)))
    core = Zone(cx + dx, cy + dy, radius)
    return CityPlan(
        bounds=bounds,
        river_y=cy - float(rng.uniform(2_000, 2_400)),
        meanders=meanders,
        river_width=float(rng.uniform(700, 950)),
        core=core,
        apartments=_apartment_zones(rng, bounds, core),
        industrial=Zone(
            bounds[0] + float(rng.uniform(1_500, 3_000)),
            cy - float(rng.uniform(4_000, 4_500)),
            1_100,
        ),
    )


def _meander(
    rng: np.random.Generator, amplitude: tuple[float, float], wavelength: tuple[float, float]
) -> tuple[float, float, float]:
    """(amplitude, wavelength, phase) of one sine component of the river's course."""
    return (
        float(rng.uniform(*amplitude)),
        float(rng.uniform(*wavelength)),
        float(rng.uniform(0, 6.3)),
    )


def _apartment_zones(
    rng: np.random.Generator, bounds: tuple[float, float, float, float], core: Zone
) -> tuple[Zone, ...]:
    """Four to six 아파트 단지 clusters, clear of the core."""
    zones: list[Zone] = []
    count = int(rng.integers(4, 7))
    while len(zones) < count:
        x = float(rng.uniform(bounds[0] + 1_000, bounds[2] - 1_000))
        y = float(rng.uniform(bounds[1] + 1_000, bounds[3] - 1_000))
        radius = float(rng.uniform(500, 800))
        if np.hypot(x - core.x, y - core.y) > core.radius + radius + 300:
            zones.append(Zone(x, y, radius))
    return tuple(zones)
