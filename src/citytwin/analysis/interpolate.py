"""Distribution maps: ordinary (and simple) kriging, inverse distance weighting, cross-validation.

Kriging follows gstat (Pebesma 2004): the covariance is ``C(h) = sill − γ(h)`` of a
:class:`~citytwin.analysis.variogram.VariogramModel`, and a target that coincides with a sample
reproduces it exactly. Small data (≤ :data:`GLOBAL_LIMIT` samples, or
≤ :data:`SMOOTH_GLOBAL_LIMIT` with a smooth model) use the global neighbourhood, one factorisation
for all targets; more data use a moving neighbourhood of the :data:`DEFAULT_NEIGHBOURS` nearest
samples (gstat's ``nmax``). Targets that share the same neighbour set (adjacent grid cells mostly
do) share one kriging system, which is solved once for all of them in stacked LAPACK calls.

Why smooth models stay global longer: with a nugget the kriging weights do not die out after the
nearest samples (no screening effect), and a smooth field is estimated from far samples too. On
the kriging benchmark (1,100 samples, Matérn κ = 2.5, nugget 10 % of the sill) the 32 nearest
gave a leave-one-out RMSE 1.5 % above the global one. Global kriging of many targets costs
``targets × samples²``, so it is evaluated on a lattice and interpolated (:func:`_krige_lattice`),
checked against exact kriging on every call.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import linalg
from scipy.interpolate import RectBivariateSpline
from scipy.spatial import cKDTree

from citytwin.analysis.grid import Grid
from citytwin.analysis.variogram import (
    Kind,
    VariogramModel,
    empirical_variogram,
    fit_variogram,
    loo_global,
    validate_samples,
)
from citytwin.errors import UnknownBackendError, ValidationError

logger = logging.getLogger(__name__)

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
#: Up to this many samples, kriging uses all of them for every target.
GLOBAL_LIMIT = 400
#: Up to this many samples, smooth models (:func:`smooth_model`) use all of them as well.
SMOOTH_GLOBAL_LIMIT = 2000
#: Size of the moving neighbourhood above those limits.
DEFAULT_NEIGHBOURS = 32
#: Lattice spacings tried by :func:`_krige_lattice`, as fractions of the variogram's range.
LATTICE_FRACTIONS = (8.0, 12.0)
#: Largest difference from exact kriging the lattice may make at its check targets, as a
#: fraction of the standard deviation ``√sill`` (mean) and of the sill (variance).
LATTICE_TOLERANCE = 1e-4
#: Check targets of a lattice: this many nearest to samples plus as many seeded random ones.
LATTICE_CHECKS = 256
#: Targets per block: bounds memory to a few tens of MB whatever the grid size.
CHUNK = 8192
#: Right-hand sides solved per stacked system; bigger groups are split into several systems.
RIGHT_HAND_SIDES = 4
#: Up to this many samples the full sample covariance matrix is kept (≤ 72 MB) and reused.
TABLE_LIMIT = 3000
#: Threads that krige blocks of targets in parallel.
THREADS = min(4, os.cpu_count() or 1)


@dataclass(frozen=True)
class KrigingResult:
    """Kriging prediction ``mean`` and kriging ``variance``, shaped like the targets."""

    mean: Floats
    variance: Floats
    variogram: VariogramModel


@dataclass(frozen=True)
class CrossValidation:
    """Leave-one-out predictions at every sample, their residuals and summary scores.

    ``msse`` is the mean squared standardised error ``mean((z − ẑ)² / σ²)``: close to 1 when the
    kriging variance is honest (NaN for IDW, which has no variance).
    """

    predicted: Floats
    residual: Floats
    variance: Floats
    rmse: float
    mae: float
    mean_error: float
    msse: float


def krige(
    x: ArrayLike,
    y: ArrayLike,
    values: ArrayLike,
    targets: Grid | ArrayLike,
    *,
    model: Kind | Literal["auto"] = "auto",
    variogram: VariogramModel | None = None,
    neighbours: int | None = None,
    mean: float | None = None,
) -> KrigingResult:
    """Ordinary kriging (or simple kriging with a known ``mean``) at grid cells or points.

    Parameters
    ----------
    x, y, values
        Sample positions (metres) and values.
    targets
        A :class:`Grid` (results shaped ``(height, width)``) or an ``(n, 2)`` array of points
        (results shaped ``(n,)``).
    model
        Variogram kind fitted to the samples when ``variogram`` is not given; ``"auto"`` picks the
        kind with the best leave-one-out cross-validation (see :func:`fit_variogram`).
    variogram
        A ready model; skips fitting.
    neighbours
        Nearest samples used per target. ``None``: all samples up to :data:`GLOBAL_LIMIT`
        (:data:`SMOOTH_GLOBAL_LIMIT` for a :func:`smooth_model`), otherwise
        :data:`DEFAULT_NEIGHBOURS`.
    mean
        Known mean: simple kriging (gstat's ``beta``) instead of ordinary kriging.

    Examples
    --------
    >>> model = VariogramModel("exponential", nugget=0.0, psill=1.0, range=500.0)
    >>> result = krige([0.0, 400.0, 0.0], [0.0, 0.0, 400.0], [1.0, 2.0, 3.0],
    ...                [[0.0, 0.0], [200.0, 200.0]], variogram=model)
    >>> result.mean.round(4).tolist(), result.variance.round(4).tolist()
    ([1.0, 2.0831], [0.0, 0.4664])
    """
    xs, ys, zs = validate_samples(x, y, values)
    points, shape = _target_points(targets)
    if variogram is None:
        variogram = fit_variogram(empirical_variogram(xs, ys, zs), model=model)
    k = _neighbourhood(xs.size, neighbours, variogram)
    if mean is not None and not np.isfinite(mean):
        raise ValidationError(f"krige mean = {mean}: expected a finite number or None")
    logger.debug("kriging %d targets from %d samples, %d per target", len(points), xs.size, k)
    kriging = _Kriging.prepare(np.column_stack([xs, ys]), zs, variogram, mean)
    if k == xs.size:
        lattice = _krige_lattice(kriging, points)
        predicted, variance = lattice if lattice else _krige_global(kriging, points)
    else:
        predicted, variance = _krige_local(kriging, points, k)
    return KrigingResult(predicted.reshape(shape), variance.reshape(shape), variogram)


def idw(
    x: ArrayLike,
    y: ArrayLike,
    values: ArrayLike,
    targets: Grid | ArrayLike,
    *,
    power: float = 2.0,
    neighbours: int | None = None,
) -> Floats:
    """Inverse distance weighted interpolation: ``Σ z_i d_i^(−p) / Σ d_i^(−p)`` (Shepard 1968).

    gstat's ``idw0`` semantics (all samples, ``idp = 2``), or the ``neighbours`` nearest ones; a
    target on a sample takes its value.

    Examples
    --------
    >>> idw([0.0, 2.0, 0.0], [0.0, 0.0, 2.0], [1.0, 3.0, 5.0], [[1.0, 0.0], [0.0, 0.0]]).round(4)
    array([2.2727, 1.    ])
    """
    xs, ys, zs = validate_samples(x, y, values)
    points, shape = _target_points(targets)
    if not (np.isfinite(power) and power > 0):
        raise ValidationError(f"idw power = {power}: expected a number > 0")
    k = xs.size if neighbours is None else _neighbourhood(xs.size, neighbours)
    tree = cKDTree(np.column_stack([xs, ys]))
    out = np.empty(len(points))
    for start in range(0, len(points), CHUNK):
        block = points[start : start + CHUNK]
        dist, index = _nearest(tree, block, k)
        out[start : start + CHUNK] = _idw_block(dist, zs[index], power)
    return out.reshape(shape)


def _idw_block(dist: Floats, z: Floats, power: float) -> Floats:
    on_sample = dist[:, 0] == 0.0
    weights = 1.0 / np.where(on_sample[:, None], 1.0, dist) ** power
    estimate = np.sum(weights * z, axis=1) / np.sum(weights, axis=1)
    return np.where(on_sample, z[:, 0], estimate)


def cross_validate(
    x: ArrayLike,
    y: ArrayLike,
    values: ArrayLike,
    *,
    method: Literal["kriging", "idw"] = "kriging",
    model: Kind | Literal["auto"] = "auto",
    variogram: VariogramModel | None = None,
    neighbours: int | None = None,
    power: float = 2.0,
) -> CrossValidation:
    """Leave-one-out cross-validation: predict each sample from all the others.

    Kriging uses the same neighbourhood rule as :func:`krige`; with the global neighbourhood it
    uses Dubrule's (1983) closed form. The variogram is fitted once on all samples, as gstat's
    ``krige.cv`` does.

    Examples
    --------
    >>> x, y = np.meshgrid(np.arange(6.0), np.arange(6.0))
    >>> cv = cross_validate(x.ravel(), y.ravel(), (x + y).ravel(), method="idw")
    >>> round(cv.rmse, 3), abs(cv.mean_error) < 1e-12
    (1.1, True)
    """
    xs, ys, zs = validate_samples(x, y, values)
    if method not in ("kriging", "idw"):
        raise UnknownBackendError("cross-validation method", str(method), ["idw", "kriging"])
    if method == "idw":
        predicted, variance = _loo_idw(xs, ys, zs, power, neighbours), np.full(xs.size, np.nan)
    else:
        if variogram is None:
            variogram = fit_variogram(empirical_variogram(xs, ys, zs), model=model)
        predicted, variance = _loo_kriging(xs, ys, zs, variogram, neighbours)
    residual = zs - predicted
    msse = float(np.mean(residual**2 / variance)) if method == "kriging" else float("nan")
    return CrossValidation(
        predicted=predicted,
        residual=residual,
        variance=variance,
        rmse=float(np.sqrt(np.mean(residual**2))),
        mae=float(np.mean(np.abs(residual))),
        mean_error=float(np.mean(residual)),
        msse=msse,
    )


def _loo_idw(x: Floats, y: Floats, z: Floats, power: float, neighbours: int | None) -> Floats:
    k = x.size - 1 if neighbours is None else _neighbourhood(x.size - 1, neighbours)
    dist, index = _nearest(cKDTree(np.column_stack([x, y])), np.column_stack([x, y]), k + 1)
    return _idw_block(dist[:, 1:], z[index[:, 1:]], power)


def _loo_kriging(
    x: Floats, y: Floats, z: Floats, model: VariogramModel, neighbours: int | None
) -> tuple[Floats, Floats]:
    k = _neighbourhood(x.size, neighbours, model)
    if k >= x.size - 1:
        return loo_global(x, y, z, model)
    samples = np.column_stack([x, y])
    return _krige_local(_Kriging.prepare(samples, z, model, None), samples, k, leave_one_out=True)


def _target_points(targets: Grid | ArrayLike) -> tuple[Floats, tuple[int, ...]]:
    """``(n, 2)`` target points and the shape results take."""
    if isinstance(targets, Grid):
        return targets.points(), targets.shape
    points = np.asarray(targets, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise ValidationError(f"targets: expected a Grid or an (n, 2) array, got {points.shape}")
    bad = np.flatnonzero(~np.isfinite(points).all(axis=1))
    if bad.size:
        raise ValidationError(
            f"targets[{bad[0]}] = {points[bad[0]].tolist()}: expected finite x, y"
        )
    return points, (len(points),)


def smooth_model(model: VariogramModel) -> bool:
    """Gaussian, or Matérn with κ ≥ 2: the covariance is C³ or smoother at distance 0 (apart
    from the nugget), so kriging results are smooth functions of the target position."""
    return model.kind == "gaussian" or (model.kind == "matern" and model.kappa >= 2.0)


def default_neighbours(n: int, model: VariogramModel | None = None) -> int:
    """Samples per target when ``neighbours=None``: all ``n`` for small data (or a smooth model
    up to :data:`SMOOTH_GLOBAL_LIMIT`), else :data:`DEFAULT_NEIGHBOURS`.

    >>> default_neighbours(1_100, VariogramModel("matern", 0.1, 1.0, 500.0, kappa=2.5))
    1100
    >>> default_neighbours(1_100, VariogramModel("exponential", 0.1, 1.0, 500.0))
    32
    """
    smooth = model is not None and smooth_model(model)
    everything = n <= GLOBAL_LIMIT or (smooth and n <= SMOOTH_GLOBAL_LIMIT)
    return n if everything else DEFAULT_NEIGHBOURS


def _neighbourhood(n: int, neighbours: int | None, model: VariogramModel | None = None) -> int:
    """Neighbours per target: :func:`default_neighbours`, or ``neighbours`` checked."""
    if neighbours is None:
        return default_neighbours(n, model)
    if isinstance(neighbours, bool) or not isinstance(neighbours, (int, np.integer)):
        raise ValidationError(f"neighbours = {neighbours!r}: expected an integer ≥ 1 or None")
    if neighbours < 1:
        raise ValidationError(f"neighbours = {neighbours}: expected an integer ≥ 1 or None")
    return min(int(neighbours), n)


def _nearest(tree: cKDTree, points: Floats, k: int) -> tuple[Floats, Ints]:
    dist, index = tree.query(points, k=k)
    if k == 1:
        dist, index = dist[:, None], index[:, None]
    return np.asarray(dist, dtype=np.float64), np.asarray(index, dtype=np.int64)


def _bordered(cov: Floats) -> Floats:
    """Stacked ``(…, k, k)`` covariances → ordinary-kriging matrices with the row/column of 1s."""
    k = cov.shape[-1]
    system = np.ones((*cov.shape[:-2], k + 1, k + 1))
    system[..., :k, :k] = cov
    system[..., k, k] = 0.0
    return system


@dataclass(frozen=True)
class _Kriging:
    """Samples, model and kind of kriging, plus what every block of targets reuses.

    ``table`` is the full (bordered) sample covariance matrix when it is small enough to keep
    (≤ :data:`TABLE_LIMIT` samples): kriging systems are then gathered from it, not recomputed.
    """

    samples: Floats
    z: Floats
    model: VariogramModel
    mean: float | None
    table: Floats | None

    @classmethod
    def prepare(
        cls, samples: Floats, z: Floats, model: VariogramModel, mean: float | None
    ) -> _Kriging:
        table = None
        if len(samples) <= TABLE_LIMIT:
            x, y = samples[:, 0], samples[:, 1]
            table = model.covariance(np.hypot(x[:, None] - x, y[:, None] - y))
            table = table if mean is not None else _bordered(table)
        return cls(samples, z, model, mean, table)

    def systems(self, index: Ints) -> Floats:
        """Kriging matrices of the sample sets ``index`` ``(m, k)``: ``(m, k(+1), k(+1))``."""
        if self.table is not None:
            if self.mean is None:
                border = np.full((len(index), 1), len(self.samples), dtype=np.int64)
                index = np.concatenate([index, border], axis=1)
            flat = index[:, :, None] * len(self.table) + index[:, None, :]
            return np.take(self.table, flat)
        near = self.samples[index]
        dx = near[:, :, None, 0] - near[:, None, :, 0]
        dy = near[:, :, None, 1] - near[:, None, :, 1]
        cov = self.model.covariance(np.sqrt(dx * dx + dy * dy))
        return cov if self.mean is not None else _bordered(cov)

    def right_hand_sides(self, near: Floats, targets: Floats) -> Floats:
        """Sample-to-target covariances ``(m, k)``, with the unbiasedness 1 appended for OK."""
        dx, dy = near[..., 0] - targets[:, None, 0], near[..., 1] - targets[:, None, 1]
        cov = self.model.covariance(np.sqrt(dx * dx + dy * dy))
        return cov if self.mean is not None else np.concatenate([cov, np.ones((len(cov), 1))], 1)

    def estimate(self, weights: Floats, rhs: Floats, z: Floats) -> tuple[Floats, Floats]:
        """Prediction and variance ``C(0) − λ·c₀ (− μ for OK)`` from the solved weights."""
        variance = self.model.sill - np.sum(weights * rhs, axis=1)
        if self.mean is None:
            return np.sum(weights[:, : z.shape[1]] * z, axis=1), variance
        return self.mean + np.sum(weights * (z - self.mean), axis=1), variance

    def solve_sets(self, targets: Floats, index: Ints) -> tuple[Floats, Floats]:
        """Krige each target from its sorted neighbour set; identical sets share one system.

        A group of up to :data:`RIGHT_HAND_SIDES` targets with the same set is one stacked
        system with that many right-hand sides (a bigger group becomes several systems).
        """
        columns = RIGHT_HAND_SIDES
        group = _group_sets(index)
        order = np.argsort(group, kind="stable")
        sorted_group = group[order]
        starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
        rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        new_system = np.r_[True, (sorted_group[1:] != sorted_group[:-1])
                           | (rank[1:] % columns == 0)]  # fmt: skip
        system_of, column = np.empty_like(order), np.empty_like(order)
        system_of[order], column[order] = np.cumsum(new_system) - 1, rank % columns
        member = np.empty(system_of.max() + 1, dtype=np.int64)
        member[system_of] = np.arange(len(order))  # any member will do: they share the set
        rhs = self.right_hand_sides(self.samples[index], targets)
        stacked = np.zeros((len(member), rhs.shape[1], columns))
        stacked[system_of, :, column] = rhs
        solved = np.asarray(np.linalg.solve(self.systems(index[member]), stacked), np.float64)
        return self.estimate(solved[system_of, :, column], rhs, self.z[index])


def _krige_global(kriging: _Kriging, points: Floats) -> tuple[Floats, Floats]:
    """One LU factorisation of the full system, then blocks of targets as right-hand sides."""
    n = len(kriging.samples)
    factor = linalg.lu_factor(kriging.systems(np.arange(n)[None])[0])
    predicted, variance = np.empty(len(points)), np.empty(len(points))
    # ~2 MB of right-hand sides at a time: small enough to be reused from the heap, not fresh
    # pages from the OS (page faults cost more than the covariances on a VM)
    step = max(64, 262_144 // (n + 1))
    for start in range(0, len(points), step):
        block = points[start : start + step]
        rhs = kriging.right_hand_sides(kriging.samples[None], block)
        weights = linalg.lu_solve(factor, rhs.T).T
        part = slice(start, start + len(block))
        predicted[part], variance[part] = kriging.estimate(weights, rhs, kriging.z[None, :])
    return predicted, variance


def _krige_lattice(kriging: _Kriging, points: Floats) -> tuple[Floats, Floats] | None:
    """Global kriging of many targets through bicubic splines on a lattice, or ``None``.

    With a smooth model, kriging mean and variance are smooth functions of the target position
    everywhere except *at* a sample, where the nugget makes them jump. So exact global kriging
    on a lattice of spacing ``range / 8`` (then ``range / 12``) and splines through it give every
    target for ``nodes × samples²`` work instead of ``targets × samples²``. The splines are
    accepted only when, at the :data:`LATTICE_CHECKS` targets nearest to samples (where the
    covariance is least smooth) and as many random ones, they agree with exact kriging to
    :data:`LATTICE_TOLERANCE`; targets that coincide with a sample are kriged exactly.

    ``None`` (krige every target exactly) for a rough model, when the lattice would not be much
    smaller than the targets, or when neither spacing meets the tolerance.
    """
    model = kriging.model
    if not smooth_model(model):
        return None
    distance = np.asarray(cKDTree(kriging.samples).query(points)[0], np.float64)
    on_sample = distance <= 1e-9 * model.range
    apart = np.flatnonzero(~on_sample)
    low, high = points.min(axis=0), points.max(axis=0)
    rng = np.random.default_rng(5186)
    picked = min(LATTICE_CHECKS, len(apart))
    checks = np.unique(np.r_[
        apart[np.argsort(distance[apart], kind="stable")[:picked]],
        rng.choice(apart, picked, replace=False) if picked else apart[:0],
    ])  # fmt: skip
    exact: tuple[Floats, Floats] | None = None
    for fraction in LATTICE_FRACTIONS:
        step = model.range / fraction
        # nodes from two steps before the targets to two steps past them: the splines' end
        # conditions stay off the targets
        gx, gy = (lo - 2 * step + step * np.arange(int(np.ceil((hi - lo) / step)) + 5)
                  for lo, hi in zip(low, high, strict=True))  # fmt: skip
        if 4 * gx.size * gy.size > len(points):
            return None  # exact kriging of every target costs about as much
        exact = exact or _krige_global(kriging, points[checks])
        nodes = np.column_stack([np.repeat(gx, gy.size), np.tile(gy, gx.size)])
        splines = [
            RectBivariateSpline(gx, gy, node.reshape(gx.size, gy.size))
            for node in _krige_global(kriging, nodes)
        ]
        errors = [
            float(np.max(np.abs(spline.ev(points[checks, 0], points[checks, 1]) - want),
                         initial=0.0))
            for spline, want in zip(splines, exact, strict=True)
        ]  # fmt: skip
        allowed = (LATTICE_TOLERANCE * np.sqrt(model.sill), LATTICE_TOLERANCE * model.sill)
        if errors[0] <= allowed[0] and errors[1] <= allowed[1]:
            mean, variance = (spline.ev(points[:, 0], points[:, 1]) for spline in splines)
            if on_sample.any():
                mean[on_sample], variance[on_sample] = _krige_global(kriging, points[on_sample])
            logger.debug(
                "kriged %d targets through a %d × %d lattice of %.0f m; largest difference from "
                "exact kriging at %d checks: mean %.2g, variance %.2g",
                len(points), gx.size, gy.size, step, len(checks), *errors,
            )  # fmt: skip
            return np.asarray(mean, np.float64), np.asarray(variance, np.float64)
        logger.info(
            "kriging lattice of %.0f m misses the tolerance (mean %.2g > %.2g or variance %.2g "
            "> %.2g)", step, errors[0], allowed[0], errors[1], allowed[1],
        )  # fmt: skip
    return None


def _krige_local(
    kriging: _Kriging, points: Floats, k: int, *, leave_one_out: bool = False
) -> tuple[Floats, Floats]:
    """Moving neighbourhood: the ``k`` nearest samples of each target (KD-tree).

    Blocks of :data:`CHUNK` targets run on :data:`THREADS` threads (numpy and LAPACK release
    the GIL). With ``leave_one_out`` the targets are the samples and each one's nearest
    neighbour, itself, is left out.
    """
    tree = cKDTree(kriging.samples)
    predicted, variance = np.empty(len(points)), np.empty(len(points))
    skip = int(leave_one_out)

    def run(start: int) -> None:
        block = points[start : start + CHUNK]
        index = np.sort(_nearest(tree, block, k + skip)[1][:, skip:], axis=1)
        part = slice(start, start + len(block))
        predicted[part], variance[part] = kriging.solve_sets(block, index)

    starts = range(0, len(points), CHUNK)
    if THREADS == 1 or len(starts) == 1:
        for start in starts:
            run(start)
    else:
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            list(pool.map(run, starts))
    return predicted, variance


def _group_sets(index: Ints) -> Ints:
    """Group id per row of sorted neighbour indices (rows with the same set share an id)."""
    salt = np.random.default_rng(5186).integers(1, 2**62, size=index.shape[1], dtype=np.int64)
    key = (index * salt).sum(axis=1)  # wrapping hash; checked exactly below
    _, first, group = np.unique(key, return_index=True, return_inverse=True)
    if not np.array_equal(index[first][group], index):
        _, group = np.unique(index, axis=0, return_inverse=True)
    return np.asarray(group, dtype=np.int64).ravel()
