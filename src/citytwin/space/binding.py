"""Binding sensors to the city: each position → its dong and gu, in bulk, with a spatial index.

A point on the border of two dongs belongs to the one with the lower code (a fixed rule, so
the answer does not depend on file order). A point inside no district is reported as outside,
never assigned to the nearest one.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray

from citytwin.space.crs import DEFAULT_CITY_CRS, to_city


@dataclass
class DistrictBinding:
    """Per point: dong and gu code and name (None when outside every district)."""

    dong_code: NDArray[np.object_]
    dong_name: NDArray[np.object_]
    gu_code: NDArray[np.object_]
    gu_name: NDArray[np.object_]

    @property
    def outside(self) -> NDArray[np.bool_]:
        """Points in no dong: reported, not guessed (their gu may still be known)."""
        result: NDArray[np.bool_] = self.dong_code == None  # noqa: E711
        return result


def bind_to_districts(
    lon: ArrayLike, lat: ArrayLike, districts: gpd.GeoDataFrame, *, crs: str = DEFAULT_CITY_CRS
) -> DistrictBinding:
    """The dong and gu of each WGS84 point, from districts in the city CRS.

    >>> import geopandas as gpd, shapely
    >>> d = gpd.GeoDataFrame({"code": ["1114055", "11140"], "name": ["명동", "중구"],
    ...                       "level": ["dong", "gu"], "parent_code": ["11140", None]},
    ...                      geometry=[shapely.box(197000, 551000, 199000, 553000)] * 2,
    ...                      crs="EPSG:5186")
    >>> b = bind_to_districts([126.978, 127.5], [37.5665, 37.5], d)
    >>> b.dong_name.tolist(), b.gu_code.tolist(), b.outside.tolist()
    (['명동', None], ['11140', None], [False, True])
    """
    x, y = to_city(lon, lat, crs)
    points = shapely.points(x, y)
    dong = _lookup(points, districts[districts["level"] == "dong"])
    gu = _lookup(points, districts[districts["level"] == "gu"])
    gu_code, gu_name = gu
    if "parent_code" in districts:  # a dong file alone still tells the gu code
        parent = _lookup(points, districts[districts["level"] == "dong"], column="parent_code")[0]
        missing = gu_code == None  # noqa: E711
        gu_code = np.where(missing, parent, gu_code)
    return DistrictBinding(dong[0], dong[1], gu_code, gu_name)


def _lookup(
    points: NDArray[np.object_], polygons: gpd.GeoDataFrame, column: str = "code"
) -> tuple[NDArray[np.object_], NDArray[np.object_]]:
    """(code-or-column value, name) of the polygon containing each point; lowest code wins."""
    codes = np.full(len(points), None, dtype=object)
    names = np.full(len(points), None, dtype=object)
    if not len(polygons) or not len(points):
        return codes, names
    point_index, polygon_index = polygons.sindex.query(points, predicate="intersects")
    order = np.lexsort((polygons["code"].to_numpy()[polygon_index].astype(str), point_index))
    point_index, polygon_index = point_index[order], polygon_index[order]
    first = np.r_[True, point_index[1:] != point_index[:-1]] if len(point_index) else []
    chosen_points, chosen = point_index[first], polygon_index[first]
    codes[chosen_points] = polygons[column].to_numpy()[chosen]
    names[chosen_points] = polygons["name"].to_numpy()[chosen]
    return codes, names


def nearest_features(
    lon: ArrayLike,
    lat: ArrayLike,
    features: gpd.GeoDataFrame,
    *,
    crs: str = DEFAULT_CITY_CRS,
    key: str = "key",
) -> tuple[NDArray[np.object_], NDArray[np.float64]]:
    """The nearest feature's key and its distance (metres) for each WGS84 point.

    >>> import geopandas as gpd, shapely
    >>> f = gpd.GeoDataFrame({"key": ["a", "b"]}, crs="EPSG:5186",
    ...                      geometry=[shapely.box(198000, 551800, 198010, 551810),
    ...                                shapely.Point(300000, 600000)])
    >>> keys, metres = nearest_features([126.978], [37.5665], f)
    >>> keys.tolist(), bool(metres[0] < 100)
    (['a'], True)
    """
    x, y = to_city(lon, lat, crs)
    points = shapely.points(x, y)
    keys = np.full(len(points), None, dtype=object)
    distances = np.full(len(points), np.nan)
    if not len(features) or not len(points):
        return keys, distances
    (point_index, feature_index), found = features.sindex.nearest(
        points, return_distance=True, return_all=False
    )
    keys[point_index] = features[key].to_numpy()[feature_index]
    distances[point_index] = found
    return keys, distances


def dong_of_features(
    features: gpd.GeoDataFrame, districts: gpd.GeoDataFrame
) -> NDArray[np.object_]:
    """The dong name of each feature (by a point inside it), both frames in the city CRS.

    A feature in no dong gets None; a feature across a border counts where its inside point is.
    """
    points = shapely.point_on_surface(features.geometry.to_numpy())
    return _lookup(points, districts[districts["level"] == "dong"])[1]
