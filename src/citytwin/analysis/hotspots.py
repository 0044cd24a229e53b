"""Hot spots: where do high (or low) values cluster more than chance would allow?

Two local statistics over a set of sites (districts, grid cells, sensor points) and a spatial
weights matrix from :mod:`.weights`:

- :func:`getis_ord_gi_star` — Getis & Ord (1992) local G with the site itself included
  (Gi*), z-scores by the general formula of Ord & Getis (1995), eq. 7–8, valid for any weights;
- :func:`local_morans_i` — Anselin (1995) local Moran's I (LISA), with his moments under
  randomisation and the Moran-scatterplot quadrant (HH, LH, LL, HL) of each site.

Both report an analytic (normal) two-sided p and a conditional-permutation pseudo p
(Anselin 1995, §4.1): each site keeps its value while the others are reshuffled over its
neighbours. The pseudo p is two-sided, ``min(1, 2·min(p_greater, p_lesser))`` with
``p = (count + 1) / (permutations + 1)`` — twice the "directed" value older GeoDa/esda print.
NaN sites are left out (for a grid: cells with no estimate) and come back as NaN / "no data".
The numbers match PySAL esda's ``G_Local(star=True, transform="B")`` and ``Moran_Local``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import sparse, stats

from citytwin.analysis.grid import CITY_CRS, Grid
from citytwin.errors import ValidationError

logger = logging.getLogger(__name__)

Inference = Literal["auto", "analytic", "permutation"]
_LEVELS = ((0.10, "90%"), (0.05, "95%"), (0.01, "99%"))
_CHUNK = 2_000_000  # simulated values held at once by the permutation loop


@dataclass(frozen=True)
class HotspotResult:
    """Per-site statistics, each an array shaped like the input values (NaN where no data).

    ``label`` is the class drawn on maps: ``"hot spot 99%"`` … ``"cold spot 90%"`` for Gi*,
    the quadrant (``"HH"``, ``"LH"``, ``"LL"``, ``"HL"``) of a significant site for Local
    Moran, otherwise ``"not significant"`` (or ``"no data"``).
    """

    method: str
    values: NDArray[np.float64]
    statistic: NDArray[np.float64]
    expected: NDArray[np.float64]
    variance: NDArray[np.float64]
    z: NDArray[np.float64]
    p_analytic: NDArray[np.float64]
    p_permutation: NDArray[np.float64]
    label: NDArray[np.str_]
    quadrant: NDArray[np.str_]
    permutations: int

    def to_frame(self) -> pd.DataFrame:
        """The statistics as columns, one row per site in input (``ravel``) order."""
        names = ("values", "statistic", "expected", "variance", "z", "p_analytic")
        columns: dict[str, Any] = {name: getattr(self, name).ravel() for name in names}
        columns["p_permutation"] = self.p_permutation.ravel()
        columns["label"] = self.label.ravel()
        columns["quadrant"] = self.quadrant.ravel()
        return pd.DataFrame(columns).rename(columns={"values": "value"})


def getis_ord_gi_star(
    values: ArrayLike,
    weights: Any,
    *,
    permutations: int = 999,
    seed: int | None = 0,
    self_weight: float | None = None,
    inference: Inference = "analytic",
) -> HotspotResult:
    """Getis-Ord Gi*: is the weighted sum around each site (itself included) unusually high?

    ``weights`` is an ``n × n`` sparse or dense matrix (binary from :mod:`.weights`, or any
    non-negative weights). The diagonal is set to ``self_weight`` — by default each row's
    largest weight, i.e. 1 for binary weights, the usual Gi* star. z-scores use Ord & Getis
    (1995) eq. 8: ``(Σ w x − x̄ W_i) / (S √((n Σ w² − W_i²)/(n−1)))``, so scaling a row
    (row-standardising) does not change them. Classes: hot/cold spot at 90/95/99 % confidence
    by the two-sided p of ``inference``. The default is the analytic p, as in Ord & Getis and
    ArcGIS: the conditional permutation keeps ``x_i`` fixed, so it tests the neighbours only
    and is reported alongside (``"permutation"`` classifies by it instead).

    Examples
    --------
    >>> from citytwin.analysis.weights import grid_weights
    >>> values = np.ones((5, 5)); values[:2, :2] = 10.0
    >>> result = getis_ord_gi_star(values, grid_weights((5, 5)), permutations=0)
    >>> str(result.label[0, 0]), str(result.label[4, 4])
    ('hot spot 99%', 'not significant')
    >>> round(float(result.z[0, 0]), 3)  # (4·10 − 2.44·4) / (3.2995 · √((25·4 − 4²)/24))
    4.899
    """
    _check_inference(inference, permutations)
    y, matrix, valid, shape = _prepare(values, weights, "Gi*")
    offdiag = _without_diagonal(matrix)
    rows_max = offdiag.max(axis=1).toarray().ravel() if offdiag.nnz else np.zeros(len(y))
    own = np.full(len(y), self_weight) if self_weight is not None else rows_max
    own = np.where(own > 0, own, 1.0)
    star = sparse.csr_array(offdiag + sparse.diags_array(own))
    n, total = len(y), y.sum()
    w_sum = np.asarray(star.sum(axis=1)).ravel()
    w_squares = np.asarray(star.multiply(star).sum(axis=1)).ravel()
    lag = star @ y
    spread = np.sqrt(np.mean(y**2) - y.mean() ** 2)
    scale = spread * np.sqrt((n * w_squares - w_sum**2) / (n - 1))
    with np.errstate(divide="ignore", invalid="ignore"):  # a star covering every site: no z
        z = (lag - y.mean() * w_sum) / scale
        statistic, expected, variance = lag / total, w_sum / n, (scale / total) ** 2
    p_perm = _permutation_p(
        y, offdiag, lag, lambda rows, sims: sims + (own * y)[rows, None], permutations, seed
    )
    p = _choose_p(z, p_perm, inference, permutations)
    label = np.where(np.isfinite(z), _classify_gi(z, p), "not significant")
    columns = (statistic, expected, variance, z, _two_sided(z), p_perm, label, np.full(n, ""))
    return _assemble("getis_ord_gi_star", valid, shape, y, columns, permutations)


def local_morans_i(
    values: ArrayLike,
    weights: Any,
    *,
    permutations: int = 999,
    seed: int | None = 0,
    alpha: float = 0.05,
    inference: Inference = "auto",
) -> HotspotResult:
    """Anselin's Local Moran's I (LISA): is each site like or unlike its neighbours?

    Weights are row-standardised. With ``z`` the values standardised by their (population)
    standard deviation, ``I_i = (n−1) z_i Σ_j w_ij z_j / Σ_k z_k²`` (PySAL's scaling), and the
    expected value and variance are Anselin's (1995) eq. 13–14 under randomisation. A site
    significant at ``alpha`` (two-sided p of ``inference``; ``"auto"``: the permutation p when
    ``permutations > 0``, as Anselin advises because ``I_i`` is far from normal) is labelled
    with its quadrant: HH/LL a cluster of high/low values, HL/LH a high (low) outlier among low
    (high) ones; ``quadrant`` holds every site's quadrant, significant or not.

    Examples
    --------
    >>> from citytwin.analysis.weights import grid_weights
    >>> values = np.ones((5, 5)); values[:2, :2] = 10.0
    >>> result = local_morans_i(values, grid_weights((5, 5)), permutations=0)
    >>> str(result.label[0, 0]), str(result.quadrant[4, 4])
    ('HH', 'LL')
    """
    _check_inference(inference, permutations)
    y, matrix, valid, shape = _prepare(values, weights, "Local Moran's I")
    offdiag = _without_diagonal(matrix)
    standard = sparse.csr_array(offdiag.multiply(1.0 / _row_sums(offdiag)[:, None]))
    n = len(y)
    z = (y - y.mean()) / y.std()
    lag = standard @ z
    statistic = (n - 1) * z * lag / (z @ z)
    expected, variance = _moran_moments(standard, z)
    with np.errstate(divide="ignore", invalid="ignore"):
        z_score = (statistic - expected) / np.sqrt(variance)
    factor = (n - 1) / (z @ z)
    p_perm = _permutation_p(
        z, standard, statistic, lambda rows, sims: factor * z[rows, None] * sims, permutations, seed
    )
    p = _choose_p(z_score, p_perm, inference, permutations)
    quadrant = np.select(
        [(z > 0) & (lag > 0), (z <= 0) & (lag > 0), (z <= 0) & (lag <= 0)], ["HH", "LH", "LL"], "HL"
    )
    significant = np.isfinite(p) & (p <= alpha)
    label = np.where(significant, quadrant, "not significant")
    columns = (statistic, expected, variance, z_score, _two_sided(z_score), p_perm, label, quadrant)
    return _assemble("local_morans_i", valid, shape, y, columns, permutations)


def hotspots_geojson(sites: Any, result: HotspotResult, *, crs: str = CITY_CRS) -> dict[str, Any]:
    """The result as a GeoJSON FeatureCollection in WGS84 (lon, lat), one feature per site.

    ``sites`` is what the values were computed on: a GeoDataFrame/GeoSeries (its own CRS; its
    other columns are kept), a :class:`~citytwin.analysis.grid.Grid` (cells as squares), or an
    ``(n, 2)`` array of points in ``crs``. Sites without data are left out.

    Examples
    --------
    >>> from citytwin.analysis.weights import grid_weights
    >>> grid = Grid(west=200000.0, north=550000.0, cell=100.0, width=5, height=5)
    >>> values = np.ones((5, 5)); values[:2, :2] = 10.0
    >>> result = getis_ord_gi_star(values, grid_weights(grid.shape), permutations=0)
    >>> collection = hotspots_geojson(grid, result)
    >>> len(collection["features"]), collection["features"][0]["properties"]["label"]
    (25, 'hot spot 99%')
    """
    import geopandas as gpd
    import shapely

    table = result.to_frame()
    if isinstance(sites, Grid):
        x, y = sites.centres()
        half = sites.cell / 2
        cells = shapely.box(x.ravel() - half, y.ravel() - half, x.ravel() + half, y.ravel() + half)
        frame = gpd.GeoDataFrame(table, geometry=cells, crs=sites.crs)
    elif isinstance(sites, gpd.GeoDataFrame | gpd.GeoSeries):
        base = sites.to_frame("geometry") if isinstance(sites, gpd.GeoSeries) else sites
        base = base.reset_index(drop=True)
        extra = base.drop(columns=[c for c in base.columns if c in table.columns])
        frame = gpd.GeoDataFrame(pd.concat([extra, table], axis=1), geometry=base.geometry.name)
    else:
        xy = np.asarray(sites, dtype=np.float64).reshape(-1, 2)
        frame = gpd.GeoDataFrame(table, geometry=gpd.points_from_xy(xy[:, 0], xy[:, 1]), crs=crs)
    if len(frame) != len(table):
        raise ValidationError(f"hotspot sites: {len(frame)} sites but {len(table)} results")
    if frame.crs is None:
        raise ValidationError("hotspot sites: the frame has no CRS; expected one to reproject")
    frame = frame[table["label"].to_numpy() != "no data"].to_crs("EPSG:4326")
    collection: dict[str, Any] = json.loads(frame.to_json(na="null", drop_id=True))
    return collection


def _prepare(
    values: ArrayLike, weights: Any, what: str
) -> tuple[NDArray[np.float64], Any, NDArray[np.bool_], tuple[int, ...]]:
    """Valid values and the weights among them, with every input problem reported at once."""
    array = np.asarray(values, dtype=np.float64)
    flat = array.ravel()
    matrix = sparse.csr_array(weights, dtype=np.float64)
    valid = np.isfinite(flat)
    problems = []
    if matrix.shape != (flat.size, flat.size):
        problems.append(f"weights shape {matrix.shape}, expected ({flat.size}, {flat.size})")
    elif matrix.nnz and matrix.data.min() < 0:
        problems.append("weights: negative entries, expected non-negative weights")
    if valid.sum() < 3:
        problems.append(f"values: {int(valid.sum())} finite values, expected at least 3")
    elif np.ptp(flat[valid]) == 0:
        problems.append(f"values: all equal to {flat[valid][0]}, expected some variation")
    if problems:
        raise ValidationError(f"{what}: " + "; ".join(problems))
    if not valid.all():
        logger.info("%s: %d of %d sites have no value", what, int((~valid).sum()), flat.size)
    return flat[valid], matrix[valid][:, valid], valid, array.shape


def _without_diagonal(matrix: Any) -> Any:
    offdiag = sparse.csr_array(matrix - sparse.diags_array(matrix.diagonal()))
    offdiag.eliminate_zeros()
    return offdiag


def _row_sums(matrix: Any) -> NDArray[np.float64]:
    sums = np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()
    return np.where(sums > 0, sums, 1.0)


def _moran_moments(
    standard: Any, z: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """E[I_i] and Var[I_i] under randomisation, Anselin (1995) eq. 13–14."""
    n = len(z)
    w_sum = np.asarray(standard.sum(axis=1)).ravel()
    w_squares = np.asarray(standard.multiply(standard).sum(axis=1)).ravel()
    m2 = (z @ z) / n
    b2 = np.mean(z**4) / m2**2
    expected = -w_sum / (n - 1)
    variance = w_squares * (n - b2) / (n - 1)
    variance += (w_sum**2 - w_squares) * (2 * b2 - n) / ((n - 1) * (n - 2))
    return expected, variance - expected**2


def _permutation_p(
    y: NDArray[np.float64],
    offdiag: Any,
    observed: NDArray[np.float64],
    to_statistic: Callable[[NDArray[np.intp], NDArray[np.float64]], NDArray[np.float64]],
    permutations: int,
    seed: int | None,
) -> NDArray[np.float64]:
    """Two-sided conditional-permutation pseudo p (Anselin 1995, §4.1).

    Site ``i`` keeps its value; ``k_i`` of the other ``n−1`` values, drawn without replacement,
    take its neighbours' places. As in PySAL, one draw per permutation is shared by all sites
    (shifted past ``i``), which keeps the work at ``n × permutations × max k``.
    """
    n = len(y)
    if permutations <= 0:
        return np.full(n, np.nan)
    counts = np.diff(offdiag.indptr)
    k = max(int(counts.max()), 1)
    padded = np.zeros((n, k))
    slot = np.arange(offdiag.nnz) - np.repeat(offdiag.indptr[:-1], counts)
    padded[np.repeat(np.arange(n), counts), slot] = offdiag.data
    rng = np.random.default_rng(seed)
    draws = np.stack(
        [rng.choice(n - 1, size=min(k, n - 1), replace=False) for _ in range(permutations)]
    )
    padded = padded[:, : draws.shape[1]]
    greater, lesser = np.zeros(n), np.zeros(n)
    step = max(1, _CHUNK // (permutations * k))
    for start in range(0, n, step):
        rows = np.arange(start, min(n, start + step))
        others = draws[None] + (draws[None] >= rows[:, None, None])
        sims = to_statistic(rows, np.einsum("cpk,ck->cp", y[others], padded[rows]))
        slack = 1e-10 * (np.abs(observed[rows]) + 1.0)
        greater[rows] = (sims >= (observed[rows] - slack)[:, None]).sum(axis=1)
        lesser[rows] = (sims <= (observed[rows] + slack)[:, None]).sum(axis=1)
    one_sided = (np.minimum(greater, lesser) + 1) / (permutations + 1)
    return np.minimum(1.0, 2 * one_sided)


def _two_sided(z: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(2 * stats.norm.sf(np.abs(z)), dtype=np.float64)


def _check_inference(inference: Inference, permutations: int) -> None:
    if inference not in ("auto", "analytic", "permutation"):
        raise ValidationError(f"inference {inference!r}: expected auto, analytic or permutation")
    if inference == "permutation" and permutations <= 0:
        raise ValidationError("inference 'permutation' needs permutations > 0")


def _choose_p(
    z: NDArray[np.float64], p_perm: NDArray[np.float64], inference: Inference, permutations: int
) -> NDArray[np.float64]:
    use_permutation = inference == "permutation" or (inference == "auto" and permutations > 0)
    return p_perm if use_permutation else _two_sided(z)


def _classify_gi(z: NDArray[np.float64], p: NDArray[np.float64]) -> NDArray[np.str_]:
    label = np.full(z.shape, "not significant", dtype=object)
    for level, name in _LEVELS:
        chosen = p <= level
        label[chosen & (z > 0)] = f"hot spot {name}"
        label[chosen & (z < 0)] = f"cold spot {name}"
    return label.astype(str)


def _assemble(
    method: str,
    valid: NDArray[np.bool_],
    shape: tuple[int, ...],
    y: NDArray[np.float64],
    columns: tuple[NDArray[Any], ...],
    permutations: int,
) -> HotspotResult:
    """Scatter the per-valid-site columns back to the input shape (NaN / "no data" elsewhere)."""
    filled: list[NDArray[Any]] = []
    for column in (y, *columns):
        text = column.dtype.kind in "USO"
        full = np.full(valid.size, "no data" if text else np.nan, dtype=object if text else float)
        full[valid] = column
        filled.append(full.astype(str).reshape(shape) if text else full.reshape(shape))
    values, statistic, expected, variance, z, p_analytic, p_permutation, label, quadrant = filled
    quadrant = np.where(quadrant == "no data", "", quadrant)
    return HotspotResult(
        method, values, statistic, expected, variance, z, p_analytic, p_permutation, label,
        quadrant, permutations,
    )  # fmt: skip
