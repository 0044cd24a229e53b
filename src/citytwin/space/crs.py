"""Coordinate reference systems: one metric CRS per city, WGS84 (lon, lat) at the edges.

Korea's default is EPSG:5186 (Korea 2000 / Central Belt 2010, metres). EPSG:5186 and EPSG:5179
declare northing first; every transformer here is built with ``always_xy=True`` so that
coordinates are always (x=easting|lon, y=northing|lat) — the classic bug of forgetting it puts
Seoul at 130.8°E 34.3°N.

>>> x, y = to_city(126.9780, 37.5665)  # Seoul City Hall
>>> round(float(x), 1), round(float(y), 1)
(198056.4, 551885.0)
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pyproj import CRS, Transformer

WGS84 = "EPSG:4326"
DEFAULT_CITY_CRS = "EPSG:5186"
# Korea's extent in lon/lat, with a margin: a frame outside it is not Korean data
KOREA_LONLAT = (123.5, 32.5, 132.5, 39.5)


@lru_cache(maxsize=32)
def transformer(source: str, target: str) -> Transformer:
    """A cached transformer that always takes and returns (x, y) = (easting, northing)."""
    return Transformer.from_crs(
        CRS.from_user_input(source), CRS.from_user_input(target), always_xy=True
    )


def to_city(
    lon: ArrayLike, lat: ArrayLike, crs: str = DEFAULT_CITY_CRS
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """WGS84 longitude/latitude → city CRS easting/northing (metres)."""
    x, y = transformer(WGS84, crs).transform(np.asarray(lon, float), np.asarray(lat, float))
    return np.asarray(x, np.float64), np.asarray(y, np.float64)


def to_wgs84(
    x: ArrayLike, y: ArrayLike, crs: str = DEFAULT_CITY_CRS
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """City CRS easting/northing → WGS84 longitude/latitude."""
    lon, lat = transformer(crs, WGS84).transform(np.asarray(x, float), np.asarray(y, float))
    return np.asarray(lon, np.float64), np.asarray(lat, np.float64)


def looks_like_lonlat(bounds: Any) -> bool:
    """Whether (minx, miny, maxx, maxy) can only be degrees of longitude and latitude."""
    minx, miny, maxx, maxy = (float(v) for v in bounds)
    return -180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90


def in_korea(lon: ArrayLike, lat: ArrayLike) -> NDArray[np.bool_]:
    """Which (lon, lat) fall inside Korea's extent (a check for swapped or wrong-CRS data)."""
    lon_a, lat_a = np.asarray(lon, float), np.asarray(lat, float)
    west, south, east, north = KOREA_LONLAT
    inside: NDArray[np.bool_] = (
        (lon_a >= west) & (lon_a <= east) & (lat_a >= south) & (lat_a <= north)
    )
    return inside
