"""A regular raster grid in the city's metric CRS: the one shape every map of the analysis uses.

Cells are squares of side ``cell`` metres; row 0 is the northern row and column 0 the western one
(GeoTIFF order), so a ``(height, width)`` array of values maps onto the grid without flipping.
Values are computed at cell centres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from citytwin.errors import ValidationError

#: Korea 2000 / Central Belt 2010 (metres, northing first — always use ``always_xy=True``).
CITY_CRS = "EPSG:5186"


@dataclass(frozen=True)
class Grid:
    """A ``height × width`` raster of square cells whose north-west corner is ``(west, north)``.

    Examples
    --------
    >>> grid = Grid.covering((0.0, 0.0, 1000.0, 450.0), cell=100.0)
    >>> grid.width, grid.height, grid.size
    (10, 5, 50)
    >>> x, y = grid.centres()
    >>> float(x[0, 0]), float(y[0, 0]), float(y[-1, 0])
    (50.0, 450.0, 50.0)
    """

    west: float
    north: float
    cell: float
    width: int
    height: int
    crs: str = CITY_CRS

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be positive, got {value}"
            for name, value in (("cell", self.cell), ("width", self.width), ("height", self.height))
            if not value > 0
        ]
        if problems:
            raise ValidationError("grid: " + "; ".join(problems))

    @classmethod
    def covering(
        cls, bounds: tuple[float, float, float, float], *, cell: float, crs: str = CITY_CRS
    ) -> Grid:
        """The smallest grid of ``cell``-metre squares that covers ``(minx, miny, maxx, maxy)``."""
        minx, miny, maxx, maxy = bounds
        if not (maxx > minx and maxy > miny):
            raise ValidationError(f"grid bounds {bounds}: expected minx < maxx and miny < maxy")
        if not cell > 0:
            raise ValidationError(f"grid cell size {cell}: expected a positive number of metres")
        width = max(1, math.ceil((maxx - minx) / cell - 1e-9))
        height = max(1, math.ceil((maxy - miny) / cell - 1e-9))
        north = miny + height * cell
        return cls(west=minx, north=north, cell=cell, width=width, height=height, crs=crs)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``: the shape of an array of values on this grid."""
        return self.height, self.width

    @property
    def size(self) -> int:
        """Number of cells."""
        return self.width * self.height

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(minx, miny, maxx, maxy)`` of the grid's outer edges."""
        return (
            self.west,
            self.north - self.height * self.cell,
            self.west + self.width * self.cell,
            self.north,
        )

    @property
    def transform(self) -> tuple[float, float, float, float, float, float]:
        """The affine ``(a, b, c, d, e, f)`` of GDAL/rasterio.

        ``x = a·col + b·row + c`` and ``y = d·col + e·row + f`` at a cell's north-west corner.
        """
        return (self.cell, 0.0, self.west, 0.0, -self.cell, self.north)

    def centres(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Cell-centre coordinates ``(x, y)``, each of shape ``(height, width)``."""
        xs = self.west + (np.arange(self.width) + 0.5) * self.cell
        ys = self.north - (np.arange(self.height) + 0.5) * self.cell
        x, y = np.meshgrid(xs, ys)
        return x, y

    def points(self) -> NDArray[np.float64]:
        """Cell centres as an ``(size, 2)`` array of ``(x, y)``, row by row from the north-west."""
        x, y = self.centres()
        return np.column_stack([x.ravel(), y.ravel()])
