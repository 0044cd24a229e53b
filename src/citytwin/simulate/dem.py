"""DEMs in: a GeoTIFF read onto a :class:`~citytwin.analysis.grid.Grid` and checked.

A DEM for the flood model must be north-up with square cells in a metric CRS (volumes are
``depth × cell²``) and have a height in every cell: a missing cell would be a hole water falls
into. :func:`read_dem` refuses anything else with an error that names the file, the first bad
position and what was expected, or fills the holes when asked to.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from citytwin.analysis.grid import Grid
from citytwin.errors import FeedError, ValidationError

logger = logging.getLogger(__name__)

F64 = NDArray[np.float64]

#: How :func:`read_dem` treats missing cells: refuse, take the nearest valid height, or a constant.
NodataFill = Literal["error", "nearest"] | float


def read_dem(path: str | Path, *, fill_nodata: NodataFill = "error") -> tuple[Grid, F64]:
    """Read band 1 of a GeoTIFF DEM: its grid and the heights (metres, ``grid.shape``).

    Parameters
    ----------
    path
        A north-up GeoTIFF with square cells in a projected, metric CRS (the city's EPSG:5186).
    fill_nodata
        ``"error"`` (default) refuses a DEM with nodata or non-finite cells; ``"nearest"`` gives
        each such cell the height of the nearest valid cell; a number fills them with it.

    Examples
    --------
    >>> import tempfile, rasterio
    >>> from rasterio.transform import Affine
    >>> path = tempfile.mkdtemp() + "/dem.tif"
    >>> profile = dict(driver="GTiff", width=3, height=2, count=1, dtype="float32",
    ...                crs="EPSG:5186", transform=Affine(5, 0, 2e5, 0, -5, 5.5e5), nodata=-9999)
    >>> with rasterio.open(path, "w", **profile) as tif:
    ...     tif.write(np.array([[10, 11, 12], [9, -9999, 8]], dtype="float32"), 1)
    >>> grid, z = read_dem(path, fill_nodata="nearest")
    >>> grid.cell, grid.shape, grid.crs, z[1].tolist()
    (5.0, (2, 3), 'EPSG:5186', [9.0, 9.0, 8.0])
    """
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(path) as dataset:
            grid = _grid_of(str(path), dataset)
            heights = dataset.read(1, masked=True).astype(np.float64)
    except RasterioIOError as error:
        raise FeedError(str(path), f"cannot read as a GeoTIFF DEM: {error}") from error
    values = np.ma.filled(heights, np.nan)
    return grid, validate_dem(grid, values, name=str(path), fill_nodata=fill_nodata)


def validate_dem(
    grid: Grid, heights: ArrayLike, *, name: str = "dem", fill_nodata: NodataFill = "error"
) -> F64:
    """``heights`` as float64 of ``grid.shape`` with a finite value in every cell.

    Missing cells (NaN, ±inf) raise a :class:`~citytwin.errors.ValidationError` that gives their
    count and the first one's row and column, unless ``fill_nodata`` says how to fill them.

    Examples
    --------
    >>> grid = Grid(west=0.0, north=20.0, cell=10.0, width=2, height=2)
    >>> validate_dem(grid, [[1, 2], [3, float("nan")]])
    Traceback (most recent call last):
    ...
    citytwin.errors.ValidationError: dem: 1 missing cell(s) (nodata or not finite), first at row 1, column 1; expected a height in every cell (or fill_nodata='nearest' or a number)
    """  # noqa: E501
    values = np.array(heights, dtype=np.float64)
    if values.shape != grid.shape:
        raise ValidationError(f"{name}: heights of shape {values.shape}; expected {grid.shape}")
    missing = ~np.isfinite(values)
    if not missing.any():
        return values
    if fill_nodata == "error":
        row, col = np.argwhere(missing)[0]
        raise ValidationError(
            f"{name}: {int(missing.sum())} missing cell(s) (nodata or not finite), first at row "
            f"{row}, column {col}; expected a height in every cell "
            "(or fill_nodata='nearest' or a number)"
        )
    if missing.all():
        raise ValidationError(f"{name}: every cell is missing; expected at least one height")
    logger.info("%s: filling %d missing cells (%s)", name, int(missing.sum()), fill_nodata)
    if fill_nodata == "nearest":
        nearest = ndimage.distance_transform_edt(
            missing, return_distances=False, return_indices=True
        )
        filled: F64 = values[tuple(nearest)]
        return filled
    values[missing] = float(fill_nodata)
    return values


def _grid_of(name: str, dataset: Any) -> Grid:
    """The grid of an open rasterio dataset, refusing rotated, non-square or non-metric rasters."""
    crs, transform = dataset.crs, dataset.transform
    if crs is None or not crs.is_projected:
        raise ValidationError(
            f"{name}: CRS {crs}; expected a projected, metric CRS such as EPSG:5186"
        )
    units = str(crs.linear_units or "").lower()
    if units not in ("metre", "meter", "metres", "meters", "m"):
        raise ValidationError(f"{name}: CRS units {units or 'unknown'!r}; expected metres")
    if transform.b != 0 or transform.d != 0 or transform.a <= 0 or transform.a != -transform.e:
        raise ValidationError(
            f"{name}: geotransform {tuple(transform)[:6]}; expected north-up square cells"
        )
    epsg = crs.to_epsg()
    return Grid(
        west=float(transform.c),
        north=float(transform.f),
        cell=float(transform.a),
        width=int(dataset.width),
        height=int(dataset.height),
        crs=f"EPSG:{epsg}" if epsg is not None else crs.to_wkt(),
    )
