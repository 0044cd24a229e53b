"""Spatial weights: who is whose neighbour, as a sparse ``n × n`` matrix.

Local statistics (:mod:`.hotspots`) compare a site with its neighbours; this module says who they
are. Every builder returns a binary ``scipy.sparse.csr_array`` with a zero diagonal (row ``i``
lists the neighbours of site ``i``); :func:`row_standardise` turns it into the averaging weights
a spatial lag needs. The definitions follow Anselin & Rey (2014), *Modern Spatial Econometrics in
Practice*, ch. 3–4, and match PySAL libpysal's ``Queen``, ``Rook``, ``KNN`` and ``DistanceBand``.

- polygons (district rollups): :func:`contiguity_weights` — queen (a shared point) or rook
  (a shared edge), found with a shapely STRtree so only nearby pairs are tested;
- raster cells (a :class:`~citytwin.analysis.grid.Grid` of values): :func:`grid_weights`;
- points (sensor sites): :func:`knn_weights` and :func:`distance_band_weights`.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from scipy import sparse
from scipy.spatial import cKDTree

from citytwin.errors import ValidationError

logger = logging.getLogger(__name__)

Contiguity = Literal["queen", "rook"]


def _from_pairs(rows: NDArray[np.intp], cols: NDArray[np.intp], n: int) -> Any:
    """A binary, symmetric-as-given CSR matrix with ones at ``(rows, cols)``, diagonal dropped."""
    keep = rows != cols
    data = np.ones(int(keep.sum()))
    matrix = sparse.csr_array((data, (rows[keep], cols[keep])), shape=(n, n))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def _as_points(points: ArrayLike, name: str) -> NDArray[np.float64]:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValidationError(
            f"{name}: expected an (n, 2) array of (x, y), got shape {array.shape}"
        )
    bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if bad.size:
        raise ValidationError(f"{name}: row {int(bad[0])} is not finite; expected numbers")
    return array


def contiguity_weights(polygons: Any, *, rule: Contiguity = "queen", tolerance: float = 0.0) -> Any:
    """Neighbours of polygons that share a boundary point (queen) or a boundary edge (rook).

    ``polygons`` is a GeoSeries, a GeoDataFrame or a sequence of shapely geometries, in any
    CRS; ``tolerance`` (in CRS units) bridges slivers between digitised outlines that should
    touch. Order of rows is the order of ``polygons``.

    Examples
    --------
    >>> from shapely import box
    >>> cells = [box(0, 0, 1, 1), box(1, 0, 2, 1), box(1, 1, 2, 2), box(5, 5, 6, 6)]
    >>> contiguity_weights(cells, rule="queen").toarray().astype(int).tolist()
    [[0, 1, 1, 0], [1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]]
    >>> int(contiguity_weights(cells, rule="rook")[0, 2])
    0
    """
    if rule not in ("queen", "rook"):
        raise ValidationError(f"contiguity rule {rule!r}: expected 'queen' or 'rook'")
    geoms = np.asarray(getattr(polygons, "geometry", polygons), dtype=object)
    if geoms.ndim != 1 or not all(isinstance(g, shapely.Geometry) for g in geoms):
        raise ValidationError("polygons: expected a GeoSeries or a sequence of shapely geometries")
    tree = shapely.STRtree(geoms)
    if tolerance > 0:
        left, right = tree.query(geoms, predicate="dwithin", distance=tolerance)
    else:
        left, right = tree.query(geoms, predicate="intersects")
    if rule == "rook":
        edges = shapely.boundary(geoms)
        other = shapely.buffer(edges[right], tolerance) if tolerance > 0 else edges[right]
        shared = shapely.length(shapely.intersection(edges[left], other))
        keep = shared > 2 * tolerance
        left, right = left[keep], right[keep]
    matrix = _from_pairs(left, right, len(geoms))
    _log_islands(matrix, "polygons")
    return matrix


def grid_weights(shape: tuple[int, int], *, rule: Contiguity = "queen") -> Any:
    """Queen (8) or rook (4) neighbours of the cells of a ``(height, width)`` raster.

    Cells are numbered row by row from the north-west, like ``values.ravel()`` of a
    :class:`~citytwin.analysis.grid.Grid` array.

    Examples
    --------
    >>> w = grid_weights((3, 3), rule="queen")
    >>> w.sum(axis=1).astype(int).tolist()
    [3, 5, 3, 5, 8, 5, 3, 5, 3]
    >>> int(grid_weights((3, 3), rule="rook").sum())
    24
    """
    if rule not in ("queen", "rook"):
        raise ValidationError(f"contiguity rule {rule!r}: expected 'queen' or 'rook'")
    height, width = shape
    if height < 1 or width < 1:
        raise ValidationError(f"grid shape {shape}: expected positive (height, width)")
    steps = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    if rule == "queen":
        steps += [(1, 1), (1, -1), (-1, 1), (-1, -1)]
    row, col = np.divmod(np.arange(height * width), width)
    rows, cols = [], []
    for d_row, d_col in steps:
        r, c = row + d_row, col + d_col
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        rows.append((row * width + col)[inside])
        cols.append((r * width + c)[inside])
    return _from_pairs(np.concatenate(rows), np.concatenate(cols), height * width)


def knn_weights(points: ArrayLike, *, k: int) -> Any:
    """The ``k`` nearest other points of each point (not symmetric in general).

    Examples
    --------
    >>> w = knn_weights([[0, 0], [1, 0], [3, 0], [10, 0]], k=1)
    >>> w.toarray().astype(int).tolist()
    [[0, 1, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]
    """
    xy = _as_points(points, "points")
    if not 0 < k < len(xy):
        raise ValidationError(f"knn k={k}: expected 1 <= k < number of points ({len(xy)})")
    _, index = cKDTree(xy).query(xy, k=k + 1)
    own = np.arange(len(xy))[:, None]
    # a duplicate location can come before the point itself: drop self wherever it sits
    not_self = index != own
    first_k = np.cumsum(not_self, axis=1) <= k
    keep = not_self & first_k
    rows = np.broadcast_to(own, index.shape)[keep]
    return _from_pairs(rows, index[keep], len(xy))


def distance_band_weights(points: ArrayLike, *, threshold: float) -> Any:
    """Binary weights: every other point within ``threshold`` (CRS units, inclusive).

    Examples
    --------
    >>> w = distance_band_weights([[0, 0], [1, 0], [3, 0]], threshold=2.0)
    >>> w.toarray().astype(int).tolist()
    [[0, 1, 0], [1, 0, 1], [0, 1, 0]]
    """
    xy = _as_points(points, "points")
    if not threshold > 0:
        raise ValidationError(f"distance band threshold {threshold}: expected a positive distance")
    pairs = cKDTree(xy).query_pairs(threshold, output_type="ndarray")
    rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
    cols = np.concatenate([pairs[:, 1], pairs[:, 0]])
    matrix = _from_pairs(rows, cols, len(xy))
    _log_islands(matrix, "points")
    return matrix


def row_standardise(weights: Any) -> Any:
    """Divide each row by its sum so a spatial lag is a weighted mean (islands stay zero).

    Examples
    --------
    >>> row_standardise(grid_weights((1, 3), rule="rook")).toarray().tolist()
    [[0.0, 1.0, 0.0], [0.5, 0.0, 0.5], [0.0, 1.0, 0.0]]
    """
    matrix = sparse.csr_array(weights, dtype=np.float64)
    sums = np.asarray(matrix.sum(axis=1)).ravel()
    scale = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums != 0)
    return sparse.csr_array(sparse.diags_array(scale) @ matrix)


def _log_islands(matrix: Any, what: str) -> None:
    islands = np.flatnonzero(np.diff(matrix.indptr) == 0)
    if islands.size:
        logger.warning(
            "%d %s have no neighbours (first at position %d)", islands.size, what, islands[0]
        )
