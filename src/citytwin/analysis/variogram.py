"""Variograms: the sample (empirical) variogram, the four model kinds, and their fit.

Everything follows gstat (Pebesma 2004, *Computers & Geosciences* 30:683–691) so that its saved
test outputs are reproducible: the same lag bins, the same parameterisation of ``range`` and the
same weighted least-squares criterion (``fit.method = 7``). Kriging lives in :mod:`.interpolate`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special
from scipy.spatial import cKDTree

from citytwin.errors import UnknownBackendError, ValidationError

logger = logging.getLogger(__name__)

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Kind = Literal["spherical", "exponential", "gaussian", "matern"]
KINDS: tuple[Kind, ...] = ("spherical", "exponential", "gaussian", "matern")
#: gstat's ``fit.kappa`` search values for the Matérn smoothness.
MATERN_KAPPAS = (0.05, *np.round(np.arange(0.2, 2.01, 0.1), 1).tolist(), 2.5, 3.0, 5.0, 10.0)
#: κ that ``model="auto"`` tries: the smooth half-integer cases (Stein 1999), which have closed
#: forms and so krige as fast as the other kinds (κ = 1/2 is the exponential, tried anyway).
AUTO_KAPPAS = (1.5, 2.5)
#: Above this many samples, ``model="auto"`` cross-validates on a seeded subsample of this size.
AUTO_SAMPLE_LIMIT = 1500


def validate_samples(
    x: ArrayLike, y: ArrayLike, values: ArrayLike
) -> tuple[Floats, Floats, Floats]:
    """Check sample positions and values; return them as float64 arrays.

    Every problem is collected and raised once, naming the input and the first bad position.
    """
    arrays = {name: np.asarray(a, dtype=np.float64) for name, a in
              (("x", x), ("y", y), ("values", values))}  # fmt: skip
    problems = [f"{name} must be one-dimensional, got shape {a.shape}"
                for name, a in arrays.items() if a.ndim != 1]  # fmt: skip
    lengths = {name: a.size for name, a in arrays.items()}
    if not problems and len(set(lengths.values())) > 1:
        problems.append(f"x, y and values must have equal lengths, got {lengths}")
    if problems:
        raise ValidationError("samples: " + "; ".join(problems))
    for name, a in arrays.items():
        bad = np.flatnonzero(~np.isfinite(a))
        if bad.size:
            problems.append(f"{name}[{bad[0]}] is {a[bad[0]]}, expected a finite number "
                            f"({bad.size} such positions)")  # fmt: skip
    xs, ys, zs = arrays["x"], arrays["y"], arrays["values"]
    if not problems:
        problems += _duplicate_problems(xs, ys)
    if problems:
        raise ValidationError("samples: " + "; ".join(problems))
    return xs, ys, zs


def _duplicate_problems(x: Floats, y: Floats) -> list[str]:
    """Duplicate locations make the kriging system singular; fewer than 3 points fit nothing."""
    if x.size < 3:
        return [f"need at least 3 distinct locations, got {x.size}"]
    order = np.lexsort((y, x))
    same = (np.diff(x[order]) == 0) & (np.diff(y[order]) == 0)
    if not same.any():
        return []
    first = int(np.flatnonzero(same)[0])
    i, j = sorted((int(order[first]), int(order[first + 1])))
    return [f"locations {i} and {j} are both ({x[i]}, {y[i]}); expected distinct locations "
            f"(average or drop duplicates first; {int(same.sum())} duplicate pairs)"]  # fmt: skip


@dataclass(frozen=True)
class VariogramModel:
    """A nugget plus one structure, parameterised exactly as gstat's ``vgm()``.

    With ``r = h / range``: spherical ``1.5r − 0.5r³`` (``r < 1``, then 1); exponential
    ``1 − exp(−r)`` (practical range ≈ 3·range); gaussian ``1 − exp(−r²)`` (practical range
    ≈ √3·range); Matérn ``1 − 2^(1−κ)/Γ(κ) r^κ K_κ(r)`` (κ = 0.5 is the exponential). The
    semivariance is ``nugget + psill · structure(h)`` for ``h > 0`` and 0 at ``h = 0``.

    Examples
    --------
    >>> model = VariogramModel("exponential", nugget=0.0, psill=1.0, range=500.0)
    >>> model.semivariance(np.array([0.0, 500.0])).round(6).tolist()
    [0.0, 0.632121]
    >>> model.covariance(np.array([0.0, 500.0])).round(6).tolist()
    [1.0, 0.367879]
    """

    kind: Kind
    nugget: float
    psill: float
    range: float
    kappa: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UnknownBackendError("variogram model", str(self.kind), list(KINDS))
        checks = (("nugget", self.nugget, 0.0), ("psill", self.psill, 0.0))
        problems = [f"{n} must be a finite number ≥ {lo}, got {v}" for n, v, lo in checks
                    if not (math.isfinite(v) and v >= lo)]  # fmt: skip
        problems += [f"{n} must be a finite number > 0, got {v}" for n, v in
                     (("range", self.range), ("kappa", self.kappa))
                     if not (math.isfinite(v) and v > 0)]  # fmt: skip
        if problems:
            raise ValidationError(f"variogram model {self.kind}: " + "; ".join(problems))

    @property
    def sill(self) -> float:
        """``nugget + psill``: the variance, i.e. the covariance at distance 0."""
        return self.nugget + self.psill

    def correlation(self, h: ArrayLike) -> Floats:
        """The structure's correlation ``ρ(h)`` (1 at 0, falling to 0), without the nugget."""
        r = np.abs(np.asarray(h, dtype=np.float64)) / self.range
        if self.kind == "spherical":
            return np.where(r < 1.0, 1.0 - r * (1.5 - 0.5 * r * r), 0.0)
        if self.kind == "exponential":
            return np.exp(-r)
        if self.kind == "gaussian":
            return np.exp(-r * r)
        if self.kappa in (0.5, 1.5, 2.5):  # closed forms, ~20× faster than K_κ
            polynomial = {0.5: 1.0, 1.5: 1.0 + r, 2.5: 1.0 + r + r * r / 3.0}[self.kappa]
            return np.asarray(polynomial * np.exp(-r), dtype=np.float64)
        safe = np.where(r > 0, r, 1.0)  # K_κ(0) is infinite; ρ(0) = 1 is the limit
        scale = 2.0 ** (1.0 - self.kappa) / special.gamma(self.kappa)
        matern = scale * safe**self.kappa * special.kv(self.kappa, safe)
        return np.where(r > 0, matern, 1.0)

    def semivariance(self, h: ArrayLike) -> Floats:
        """``γ(h) = nugget + psill·(1 − ρ(h))`` for ``h > 0``; ``γ(0) = 0``."""
        h = np.asarray(h, dtype=np.float64)
        return np.where(h > 0, self.sill - self.psill * self.correlation(h), 0.0)

    def covariance(self, h: ArrayLike) -> Floats:
        """``C(h) = sill − γ(h)``: ``psill·ρ(h)`` for ``h > 0``, the full sill at ``h = 0``."""
        h = np.asarray(h, dtype=np.float64)
        return np.where(h > 0, self.psill * self.correlation(h), self.sill)


@dataclass(frozen=True)
class EmpiricalVariogram:
    """Lag bins of a sample variogram, as gstat's ``variogram()`` prints them.

    ``np`` is the number of point pairs per bin, ``dist`` their mean distance and ``gamma`` the
    semivariance ``Σ(z_i − z_j)² / (2·np)``. Empty bins are dropped. ``samples`` keeps the
    ``(x, y, values)`` it came from so that :func:`fit_variogram` can cross-validate.
    """

    np: Ints
    dist: Floats
    gamma: Floats
    cutoff: float
    width: float
    samples: tuple[Floats, Floats, Floats] | None = field(default=None, repr=False, compare=False)


def empirical_variogram(
    x: ArrayLike,
    y: ArrayLike,
    values: ArrayLike,
    *,
    cutoff: float | None = None,
    width: float | None = None,
) -> EmpiricalVariogram:
    """The isotropic sample variogram (Matheron's estimator) with gstat's default bins.

    ``cutoff`` defaults to a third of the bounding-box diagonal and ``width`` to ``cutoff / 15``;
    bin ``i`` holds the pairs with distance in ``(i·width, (i+1)·width]`` (gstat's ``get_index``).
    Pairs are found with a KD-tree, so memory grows with the pairs within ``cutoff`` only.

    Examples
    --------
    >>> v = empirical_variogram([0.0, 1.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0], [1.0, 2.0, 3.0, 5.0],
    ...                         cutoff=1.5, width=0.5)
    >>> v.np.tolist(), v.gamma.round(3).tolist()
    ([4, 2], [2.25, 4.25])
    """
    xs, ys, zs = validate_samples(x, y, values)
    if cutoff is None:
        cutoff = math.hypot(np.ptp(xs), np.ptp(ys)) / 3.0
    width = cutoff / 15.0 if width is None else width
    for name, value in (("cutoff", cutoff), ("width", width)):
        if not (math.isfinite(value) and value > 0):
            raise ValidationError(f"empirical_variogram {name} = {value}: expected a number > 0")
    pairs = cKDTree(np.column_stack([xs, ys])).query_pairs(cutoff, output_type="ndarray")
    i, j = pairs[:, 0], pairs[:, 1]
    h = np.hypot(xs[i] - xs[j], ys[i] - ys[j])
    keep = h <= cutoff
    h, sq = h[keep], (zs[i[keep]] - zs[j[keep]]) ** 2
    bins = math.ceil(cutoff / width - 1e-9)
    index = np.clip(np.ceil(h / width).astype(np.int64) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    filled = counts > 0
    n = counts[filled]
    dist = np.bincount(index, weights=h, minlength=bins)[filled] / n
    gamma = np.bincount(index, weights=sq, minlength=bins)[filled] / (2.0 * n)
    return EmpiricalVariogram(n.astype(np.int64), dist, gamma, cutoff, width, (xs, ys, zs))


def fit_variogram(
    empirical: EmpiricalVariogram, *, model: Kind | Literal["auto"] = "auto"
) -> VariogramModel:
    """Fit nugget, partial sill and range by gstat's weighted least squares (``fit.method = 7``).

    Minimises ``Σ_j w_j (γ̂_j − γ(h_j))²`` with ``w_j = N_j / h_j²`` (Cressie 1985 weights with
    gstat's simplification), nugget and partial sill ≥ 0. For a given range the problem is linear
    in (nugget, psill) and is solved exactly; the range is found by a log-spaced search refined
    with Brent's method, so no start values are needed. ``model="matern"`` chooses κ from
    gstat's ``fit.kappa`` values (plus 2.5).

    ``model="auto"`` fits every kind (Matérn with κ ∈ {1.5, 2.5}) and keeps the one with the
    lowest **leave-one-out cross-validation** RMSE of global ordinary kriging on the samples kept
    in ``empirical`` (closed form of Dubrule 1983; a seeded subsample of 1,500 if there are
    more). Without samples it keeps the lowest weighted SSE, as gstat's ``fit.variogram`` does
    with several models.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> x, y = rng.uniform(0, 100, 60), rng.uniform(0, 100, 60)
    >>> fitted = fit_variogram(empirical_variogram(x, y, np.sin(x / 20) + np.cos(y / 25)))
    >>> fitted.kind in KINDS and fitted.psill > 0
    True
    """
    if model != "auto" and model not in KINDS:
        raise UnknownBackendError("variogram model", str(model), [*KINDS, "auto"])
    if empirical.dist.size < 2:
        raise ValidationError(f"empirical variogram has {empirical.dist.size} bins; expected ≥ 2")
    if model != "auto":
        return _fit_kind(empirical, model)[0]
    fits = [_fit_kind(empirical, kind, AUTO_KAPPAS) for kind in KINDS]
    if empirical.samples is None:
        return min(fits, key=lambda fit: fit[1])[0]
    x, y, z = _subsample(*empirical.samples)
    scores = [loo_rmse_global(x, y, z, fitted) for fitted, _ in fits]
    logger.debug("auto variogram: LOO RMSE %s", dict(zip(KINDS, scores, strict=True)))
    return fits[int(np.argmin(scores))][0]


def _fit_kind(
    empirical: EmpiricalVariogram, kind: Kind, kappas: tuple[float, ...] = MATERN_KAPPAS
) -> tuple[VariogramModel, float]:
    """Best ``(model, weighted SSE)`` of one kind; Matérn tries each of ``kappas``."""
    kappas = kappas if kind == "matern" else (0.5,)
    fits = [_fit_range(empirical, kind, kappa) for kappa in kappas]
    return min(fits, key=lambda fit: fit[1])


def _fit_range(
    empirical: EmpiricalVariogram, kind: Kind, kappa: float
) -> tuple[VariogramModel, float]:
    """Profile the weighted SSE over the range (log grid, then bounded Brent refinement)."""
    h, gamma = empirical.dist, empirical.gamma
    weights = empirical.np / np.maximum(h, 1e-12 * h.max()) ** 2
    top = 10.0 * h.max()
    grid = np.geomspace(top * 1e-4, top, 121)
    sse = [_sills(kind, kappa, a, h, gamma, weights)[2] for a in grid]
    best = int(np.argmin(sse))
    lo, hi = np.log(grid[max(best - 1, 0)]), np.log(grid[min(best + 1, grid.size - 1)])
    found = optimize.minimize_scalar(
        lambda t: _sills(kind, kappa, math.exp(t), h, gamma, weights)[2],
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-10},
    )
    a = math.exp(found.x) if found.fun <= sse[best] else float(grid[best])
    if a >= 0.99 * top:  # common over one city (a regional gradient): a notice, not a fault
        logger.info(
            "%s variogram: range %.4g at the search bound (10 × the last lag); the variogram "
            "keeps rising, which suggests a trend to remove first",
            kind,
            a,
        )
    nugget, psill, error = _sills(kind, kappa, a, h, gamma, weights)
    return VariogramModel(kind, nugget=nugget, psill=psill, range=a, kappa=kappa), error


def _sills(
    kind: Kind, kappa: float, a: float, h: Floats, gamma: Floats, w: Floats
) -> tuple[float, float, float]:
    """Non-negative weighted least squares for ``γ = nugget + psill·s(h)`` at a fixed range."""
    s = 1.0 - VariogramModel(kind, 0.0, 1.0, a, kappa).correlation(h)
    design = np.column_stack([np.ones_like(s), s])
    candidates = [(0.0, 0.0)]
    gram, rhs = design.T @ (w[:, None] * design), design.T @ (w * gamma)
    if abs(np.linalg.det(gram)) > 1e-12 * gram[0, 0] * gram[1, 1]:
        candidates.append(tuple(np.linalg.solve(gram, rhs)))
    candidates.append((0.0, rhs[1] / gram[1, 1]))
    candidates.append((rhs[0] / gram[0, 0], 0.0))
    feasible = [(float(n), float(p)) for n, p in candidates if n >= 0 and p >= 0]
    errors = [float(np.sum(w * (gamma - n - p * s) ** 2)) for n, p in feasible]
    best = int(np.argmin(errors))
    return feasible[best][0], feasible[best][1], errors[best]


def _subsample(x: Floats, y: Floats, z: Floats) -> tuple[Floats, Floats, Floats]:
    if x.size <= AUTO_SAMPLE_LIMIT:
        return x, y, z
    keep = np.sort(np.random.default_rng(0).choice(x.size, AUTO_SAMPLE_LIMIT, replace=False))
    return x[keep], y[keep], z[keep]


def loo_global(
    x: Floats, y: Floats, values: Floats, model: VariogramModel, *, mean: float | None = None
) -> tuple[Floats, Floats]:
    """Leave-one-out kriging ``(predictions, variances)`` of all samples at once.

    Uses the closed form of Dubrule (1983, *Math. Geol.* 15:687–699): with ``B = A⁻¹`` of the full
    (ordinary or simple) kriging matrix and ``w = B·[z, 0]``, the residual at sample ``i`` is
    ``w_i / B_ii`` and its kriging variance ``1 / B_ii`` — one inversion instead of ``n``.
    """
    n = x.size
    cov = model.covariance(np.hypot(x[:, None] - x, y[:, None] - y))
    if mean is None:
        system = np.ones((n + 1, n + 1))
        system[:n, :n], system[n, n] = cov, 0.0
        rhs = np.append(values, 0.0)
    else:
        system, rhs = cov, values - mean
    inverse = np.linalg.inv(system)
    diagonal = np.diag(inverse)[:n]
    residual = (inverse @ rhs)[:n] / diagonal
    return values - residual, 1.0 / diagonal


def loo_rmse_global(x: Floats, y: Floats, values: Floats, model: VariogramModel) -> float:
    """RMSE of :func:`loo_global` ordinary kriging."""
    predicted, _ = loo_global(x, y, values, model)
    return float(np.sqrt(np.mean((values - predicted) ** 2)))
