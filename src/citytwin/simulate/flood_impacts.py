"""What a ponding map floods: buildings by the depth over their footprint, road links by length.

A building's depth is read from the cells whose centres fall inside its footprint (a footprint
smaller than a cell gets the cell under its representative point); a road link's flooded length
is the exact length of its line inside the union of cells at least ``threshold`` deep. The
default threshold of 0.1 m is a usual cut-off for "flooded" in surface-water screening: shallower
water is a nuisance, while by the depth-disruption function of Pregnolato et al. (2017), *The
impact of flooding on road transport*, Transportation Research Part D 55, 67–81, cars slow
to about half their speed at 0.1 m and stop at about 0.3 m.
"""

from __future__ import annotations

import logging

import geopandas as gpd
import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray

from citytwin.analysis.grid import Grid
from citytwin.errors import ValidationError

logger = logging.getLogger(__name__)

F64 = NDArray[np.float64]


def flooded_features(
    grid: Grid,
    depth: ArrayLike,
    buildings: gpd.GeoDataFrame,
    road_links: gpd.GeoDataFrame,
    *,
    threshold: float = 0.1,
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Buildings with the water depth over their footprint, links with their flooded length.

    Parameters
    ----------
    grid, depth
        A ponding map (metres, ``grid.shape``), e.g. from
        :func:`~citytwin.simulate.flood.simulate_ponding`.
    buildings
        Footprint polygons; any CRS (they are projected onto the grid's for the overlay).
    road_links
        Link lines; any CRS.
    threshold
        Depth (m) from which a cell counts as flooded.

    Returns
    -------
    buildings, road_links
        Copies with ``depth_max_m``, ``depth_mean_m`` and ``flooded`` (max ≥ threshold) for
        buildings, and ``flooded_length_m``, ``flooded_share`` and ``flooded`` (any length) for
        links; geometries and CRS unchanged.

    Examples
    --------
    A 10 m grid flooded 0.5 m deep in its west half; a house on the waterline, a 40 m road
    across it:

    >>> grid = Grid(west=0.0, north=40.0, cell=10.0, width=4, height=4)
    >>> depth = np.zeros(grid.shape)
    >>> depth[:, :2] = 0.5
    >>> house = gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 40, 10)], crs=grid.crs)
    >>> road = gpd.GeoDataFrame(geometry=[shapely.LineString([(0, 25), (40, 25)])], crs=grid.crs)
    >>> houses, roads = flooded_features(grid, depth, house, road)
    >>> houses[["depth_max_m", "depth_mean_m", "flooded"]].values.tolist()
    [[0.5, 0.25, True]]
    >>> roads[["flooded_length_m", "flooded_share"]].values.tolist()
    [[20.0, 0.5]]
    """
    values = _checked_depth(grid, depth, threshold)
    built = buildings.copy()
    built["depth_max_m"], built["depth_mean_m"] = _footprint_depths(grid, values, buildings)
    built["flooded"] = built["depth_max_m"].to_numpy() >= threshold
    links = road_links.copy()
    length = _flooded_lengths(grid, values >= threshold, road_links)
    total = shapely.length(_in_grid_crs(road_links, grid, "road_links"))
    links["flooded_length_m"] = length
    links["flooded_share"] = np.divide(length, total, out=np.zeros_like(length), where=total > 0)
    links["flooded"] = length > 0
    logger.info(
        "flooding: %d of %d buildings, %d of %d links (threshold %.2f m)",
        int(built["flooded"].sum()), len(built), int(links["flooded"].sum()), len(links), threshold,
    )  # fmt: skip
    return built, links


def _checked_depth(grid: Grid, depth: ArrayLike, threshold: float) -> F64:
    values = np.asarray(depth, dtype=np.float64)
    problems = []
    if values.shape != grid.shape:
        problems.append(f"depth of shape {values.shape}; expected {grid.shape}")
    elif not np.isfinite(values).all():
        row, col = np.argwhere(~np.isfinite(values))[0]
        problems.append(f"depth not finite at row {row}, column {col}; expected metres >= 0")
    if not (np.isfinite(threshold) and threshold > 0):
        problems.append(f"threshold={threshold!r}; expected a depth > 0 m")
    if problems:
        raise ValidationError("flooded features: " + "; ".join(problems))
    return values


def _in_grid_crs(frame: gpd.GeoDataFrame, grid: Grid, name: str) -> NDArray[np.object_]:
    """The frame's geometries in the grid's CRS, refusing frames without a CRS."""
    if frame.crs is None:
        raise ValidationError(f"{name}: no CRS; expected one (the grid is in {grid.crs})")
    series = frame.geometry if frame.crs == grid.crs else frame.geometry.to_crs(grid.crs)
    geometries: NDArray[np.object_] = np.asarray(series.values, dtype=object)
    return geometries


def _footprint_depths(grid: Grid, depth: F64, buildings: gpd.GeoDataFrame) -> tuple[F64, F64]:
    """Max and mean depth over the cells whose centres lie in each footprint."""
    from rasterio import features
    from rasterio.transform import Affine

    footprints = _in_grid_crs(buildings, grid, "buildings")
    count = len(footprints)
    if count == 0:
        return np.zeros(0), np.zeros(0)
    owner = features.rasterize(
        ((shape, index + 1) for index, shape in enumerate(footprints) if shape is not None),
        out_shape=grid.shape, transform=Affine(*grid.transform), fill=0, dtype="int32",
    ).ravel() - 1  # fmt: skip
    inside = owner >= 0
    cells = np.bincount(owner[inside], minlength=count)
    total = np.bincount(owner[inside], weights=depth.ravel()[inside], minlength=count)
    deepest = np.zeros(count)
    np.maximum.at(deepest, owner[inside], depth.ravel()[inside])
    small = np.flatnonzero(cells == 0)
    if len(small):  # smaller than a cell: the cell under the representative point
        at = _depth_at(grid, depth, shapely.point_on_surface(footprints[small]))
        deepest[small], total[small], cells[small] = at, at, 1
    return deepest, total / cells


def _depth_at(grid: Grid, depth: F64, points: NDArray[np.object_]) -> F64:
    """Depth of the cell under each point; 0 outside the grid or for empty geometries."""
    x, y = shapely.get_x(points), shapely.get_y(points)
    col = np.floor((x - grid.west) / grid.cell)
    row = np.floor((grid.north - y) / grid.cell)
    ok = np.isfinite(col) & (col >= 0) & (col < grid.width) & (row >= 0) & (row < grid.height)
    values = np.zeros(len(points))
    values[ok] = depth[row[ok].astype(np.int64), col[ok].astype(np.int64)]
    return values


def _flooded_lengths(grid: Grid, flooded: NDArray[np.bool_], road_links: gpd.GeoDataFrame) -> F64:
    """Length of each link inside the flooded cells (exact, through their polygon outlines)."""
    from rasterio import features
    from rasterio.transform import Affine

    lines = _in_grid_crs(road_links, grid, "road_links")
    lengths = np.zeros(len(lines))
    if not flooded.any() or len(lines) == 0:
        return lengths
    polygons = np.array(
        [
            shapely.geometry.shape(shape)
            for shape, _ in features.shapes(
                flooded.astype(np.uint8), mask=flooded, transform=Affine(*grid.transform)
            )
        ],
        dtype=object,
    )
    tree = shapely.STRtree(polygons)
    line_index, polygon_index = tree.query(lines, predicate="intersects")
    pieces = shapely.intersection(lines[line_index], polygons[polygon_index])
    np.add.at(lengths, line_index, shapely.length(pieces))
    return lengths
