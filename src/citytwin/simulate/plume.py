"""Hazardous-chemical release: continuous Gaussian plume and instantaneous Gaussian puff.

A steady release of ``q`` g/s at effective height ``h`` m into a wind of ``u`` m/s gives, at a
receptor ``x`` m downwind, ``y`` m crosswind and ``z`` m above ground (Turner 1970, eq. 3.1;
Seinfeld & Pandis, *Atmospheric Chemistry and Physics*, §18.6)::

    C = q / (2π u σy σz) · exp(−y²/2σy²) · [exp(−(z−h)²/2σz²) + exp(−(z+h)²/2σz²)]

in g/m³; the second vertical term is the image source that reflects the plume off the ground.
σy, σz come from :mod:`citytwin.simulate.dispersion`. :func:`puff` is the instantaneous
counterpart for a mass ``q_total`` g released at once (also the model for calm air).

:func:`plume_grid` and :func:`puff_grid` evaluate the models on a
:class:`~citytwin.analysis.grid.Grid` in the city CRS (EPSG:5186) for a wind given in
meteorological degrees (where it comes *from*, clockwise from north). :func:`wind_from_sensors`
takes that wind from the nearest live sensors when the caller has none. Threshold zones and
exposed buildings are in :mod:`citytwin.simulate.exposure`.

Assumptions: a passive (neutrally buoyant) gas, no plume rise (``h`` is the effective height),
flat terrain, no deposition or decay, no mixing-height cap. Dense gases such as chlorine slump
near the source; there a dense-gas model (SLAB, DEGADIS) is the right tool and this one is a
screening estimate.

Speed: the grid kernel works in float32 on blocks of ~16k cells that fit in cache, skips upwind
cells, can run the blocks on threads, and folds the lateral and reflected vertical terms of a
ground-level receptor into one ``exp`` (see ``bench/plume.py``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from citytwin.analysis.grid import Grid
from citytwin.errors import ValidationError
from citytwin.simulate.dispersion import (
    Dispersion,
    Terrain,
    check_stability,
    plume_sigmas,
    puff_sigmas,
)

logger = logging.getLogger(__name__)

Floats = NDArray[np.float64]
#: Cells per block of the grid kernels: each float32 temporary is 64 KB, so the temporaries stay
#: in L2 cache and below glibc's 128 KB mmap threshold (larger blocks measured 2–4× slower).
_BLOCK_CELLS: Final = 16_384
#: Upper bound on the grid kernels' threads.
_MAX_WORKERS: Final = 8


def gaussian_plume(
    q: float,
    u: float,
    h: float,
    x: ArrayLike,
    y: ArrayLike,
    z: ArrayLike = 0.0,
    *,
    stability: str,
    dispersion: Dispersion = "briggs",
    terrain: Terrain = "urban",
    reflection: bool = True,
) -> Floats:
    """Steady-state concentration (g/m³) of a continuous point release, in the plume frame.

    ``x`` is downwind, ``y`` crosswind, ``z`` above ground (m); they broadcast together.
    Receptors at or upwind of the source (``x ≤ 0``) get 0.

    Examples
    --------
    The textbook case (Turner's Pasquill–Gifford curves, class D, 500 m downwind):

    >>> c = gaussian_plume(10.0, 6.0, 50.0, 500.0, 0.0, stability="D",
    ...                    dispersion="pasquill-gifford", terrain="rural")
    >>> f"{float(c):.3g}"
    '1.92e-05'
    """
    _check_release(q, u, h)
    stability = check_stability(stability)
    xs, ys, zs = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (x, y, z)))
    downwind = xs > 0
    sy, sz = plume_sigmas(
        np.where(downwind, xs, 1.0), stability, dispersion=dispersion, terrain=terrain
    )
    values = _plume_core(ys, zs, sy, sz, q=q, u=u, h=h, reflection=reflection)
    return np.where(downwind, values, 0.0)


def puff(
    q_total: float,
    u: float,
    h: float,
    x: ArrayLike,
    y: ArrayLike,
    z: ArrayLike,
    t: float,
    *,
    stability: str,
    reflection: bool = True,
    calm_speed: float = 1.0,
) -> Floats:
    """Concentration (g/m³) ``t`` seconds after an instantaneous release of ``q_total`` grams.

    The puff centre drifts ``u·t`` downwind; its spread uses the CCPS (1999) puff coefficients
    (σx = σy) at the distance travelled. In calm air (``u < calm_speed``) the spread is taken at
    ``calm_speed·t`` — an assumption: the correlations are in distance and turbulence keeps
    mixing a puff that does not move. With reflection the mass above ground is ``q_total``.

    Examples
    --------
    >>> c = puff(1000.0, 2.0, 0.0, 600.0, 0.0, 0.0, 300.0, stability="D")
    >>> f"{float(c):.3g}"
    '0.0206'
    """
    _check_amount(q_total, "q_total", "g")
    _check_height(h)
    if not (math.isfinite(u) and u >= 0):
        raise ValidationError(f"wind_speed {u}: expected a non-negative speed in m/s")
    if not (math.isfinite(t) and t > 0):
        raise ValidationError(f"t {t}: expected a positive time in seconds since the release")
    xs, ys, zs = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (x, y, z)))
    sxy, sz = puff_sigmas(max(u, calm_speed) * t, check_stability(stability))
    return _puff_core(xs - u * t, ys, zs, float(sxy), float(sz), q_total, h, reflection)


def plume_grid(
    source_xy: tuple[float, float],
    q: float,
    wind_speed: float,
    wind_direction: float,
    grid: Grid,
    *,
    height: float = 0.0,
    stability: str,
    dispersion: Dispersion = "briggs",
    terrain: Terrain = "urban",
    receptor_height: float = 0.0,
    reflection: bool = True,
    workers: int = 1,
) -> NDArray[np.float32]:
    """Steady plume concentration (g/m³, float32) at every cell centre of ``grid``.

    ``source_xy`` is in the grid's CRS; ``wind_direction`` is where the wind comes from, in
    degrees clockwise from north. Cells upwind of the source are 0. ``workers`` > 1 spreads the
    blocks of rows over that many threads (numpy releases the GIL); on a busy machine one
    thread measured faster, hence the default.

    Examples
    --------
    A westerly wind carries the plume east of the source:

    >>> grid = Grid.covering((-500.0, -500.0, 1500.0, 500.0), cell=100.0)
    >>> c = plume_grid((0.0, 0.0), 10.0, 5.0, 270.0, grid, stability="D")
    >>> row, col = np.unravel_index(int(np.argmax(c)), c.shape)
    >>> float(grid.north - (row + 0.5) * grid.cell), bool(c[:, :5].max() == 0)
    (50.0, True)
    """
    _check_release(q, wind_speed, height)
    stability = check_stability(stability)
    out = np.zeros(grid.shape, dtype=np.float32)

    def fill(rows: slice, along: NDArray[np.float32], across: NDArray[np.float32]) -> None:
        downwind = along > 0
        sy, sz = plume_sigmas(along[downwind], stability, dispersion=dispersion, terrain=terrain)
        out[rows][downwind] = _plume_core(
            across[downwind], receptor_height, sy, sz,
            q=q, u=wind_speed, h=height, reflection=reflection,
        )  # fmt: skip

    _for_each_block(fill, source_xy, wind_direction, grid, workers)
    return out


def puff_grid(
    source_xy: tuple[float, float],
    q_total: float,
    wind_speed: float,
    wind_direction: float,
    grid: Grid,
    t: float,
    *,
    height: float = 0.0,
    stability: str,
    receptor_height: float = 0.0,
    reflection: bool = True,
    calm_speed: float = 1.0,
    workers: int = 1,
) -> NDArray[np.float32]:
    """Puff concentration (g/m³, float32) on ``grid`` ``t`` seconds after the release.

    Same frame conventions as :func:`plume_grid`; model and calm handling as :func:`puff`.

    Examples
    --------
    >>> grid = Grid.covering((-1000.0, -1000.0, 1000.0, 1000.0), cell=20.0)
    >>> c = puff_grid((0.0, 0.0), 1000.0, 0.0, 0.0, grid, 120.0, stability="D")
    >>> float(c[49, 49]) == float(c[50, 50]) == float(c.max()) > 0
    True
    """
    puff(q_total, wind_speed, height, 0.0, 0.0, 0.0, t, stability=stability)  # validates
    sxy, sz = puff_sigmas(max(wind_speed, calm_speed) * t, check_stability(stability))
    out = np.empty(grid.shape, dtype=np.float32)

    def fill(rows: slice, along: NDArray[np.float32], across: NDArray[np.float32]) -> None:
        out[rows] = _puff_core(
            along - np.float32(wind_speed * t), across, receptor_height,
            float(sxy), float(sz), q_total, height, reflection,
        )  # fmt: skip

    _for_each_block(fill, source_xy, wind_direction, grid, workers)
    return out


def wind_from_sensors(
    source_xy: tuple[float, float],
    sensor_xy: ArrayLike,
    speed: ArrayLike,
    direction: ArrayLike,
    *,
    neighbours: int = 3,
) -> tuple[float, float]:
    """Wind ``(speed m/s, direction °)`` at the source from the nearest sensors' readings.

    Inverse-distance-squared weights over the ``neighbours`` nearest sensors with a reading:
    speed is the weighted mean speed, direction the direction of the weighted mean of unit
    vectors (averaging degrees would put the mean of 350° and 10° at 180°). Directions are
    meteorological (where the wind comes from).

    Examples
    --------
    >>> wind_from_sensors((0.0, 0.0), [[100.0, 0.0], [0.0, 100.0], [5000.0, 0.0]],
    ...                   [2.0, 4.0, 9.0], [350.0, 10.0, 180.0], neighbours=2)
    (3.0, 0.0)
    """
    points = np.asarray(sensor_xy, dtype=np.float64).reshape(-1, 2)
    speeds, degrees = (np.asarray(v, dtype=np.float64).ravel() for v in (speed, direction))
    if not (len(points) == len(speeds) == len(degrees)):
        raise ValidationError(
            f"sensors: {len(points)} positions, {len(speeds)} speeds and {len(degrees)} "
            "directions; expected one of each per sensor"
        )
    usable = np.isfinite(points).all(axis=1) & np.isfinite(speeds) & np.isfinite(degrees)
    if not usable.any():
        raise ValidationError("sensors: no sensor has a finite wind speed and direction")
    distance = np.hypot(*(points[usable] - np.asarray(source_xy, dtype=np.float64)).T)
    nearest = np.argsort(distance)[: max(1, neighbours)]
    weights = 1.0 / np.maximum(distance[nearest], 1.0) ** 2
    radians = np.deg2rad(degrees[usable][nearest])
    east, north = weights @ np.sin(radians), weights @ np.cos(radians)
    mean_speed = float(weights @ speeds[usable][nearest] / weights.sum())
    mean_direction = float(np.rad2deg(np.arctan2(east, north)) % 360.0)
    return round(mean_speed, 6), round(mean_direction, 6) % 360.0


def _plume_core(
    y: NDArray[np.floating],
    z: ArrayLike,
    sy: NDArray[np.floating],
    sz: NDArray[np.floating],
    *,
    q: float,
    u: float,
    h: float,
    reflection: bool,
) -> NDArray[np.floating]:
    """The Gaussian plume formula; one ``exp`` for ground-level receptors with reflection."""
    lateral = (y * y) / (2.0 * sy * sy)
    two_sz2 = 2.0 * sz * sz
    if reflection and np.ndim(z) == 0 and float(z) == 0.0:  # type: ignore[arg-type]
        return (q / (math.pi * u)) / (sy * sz) * np.exp(-(lateral + (h * h) / two_sz2))
    zz = np.asarray(z, dtype=y.dtype)
    vertical = np.exp(-((zz - h) ** 2) / two_sz2)
    if reflection:
        vertical = vertical + np.exp(-((zz + h) ** 2) / two_sz2)
    return (q / (2.0 * math.pi * u)) / (sy * sz) * np.exp(-lateral) * vertical


def _puff_core(
    dx: NDArray[np.floating],
    y: NDArray[np.floating],
    z: ArrayLike,
    sxy: float,
    sz: float,
    q_total: float,
    h: float,
    reflection: bool,
) -> Floats:
    """The Gaussian puff formula about a centre ``dx`` behind each receptor."""
    zz = np.asarray(z, dtype=y.dtype)
    vertical = np.exp(-((zz - h) ** 2) / (2.0 * sz * sz))
    if reflection:
        vertical = vertical + np.exp(-((zz + h) ** 2) / (2.0 * sz * sz))
    scale = q_total / ((2.0 * math.pi) ** 1.5 * sxy * sxy * sz)
    return scale * np.exp(-(dx * dx + y * y) / (2.0 * sxy * sxy)) * vertical  # type: ignore[no-any-return]


def _for_each_block(
    fill: Callable[[slice, NDArray[np.float32], NDArray[np.float32]], None],
    source_xy: tuple[float, float],
    wind_direction: float,
    grid: Grid,
    workers: int,
) -> None:
    """Call ``fill(rows, along, across)`` for blocks of grid rows, in the plume frame (float32).

    Downwind (``along``) and crosswind (``across``) coordinates are sums of a per-column and a
    per-row term, so each block costs two broadcast adds. Offsets from the source are taken in
    float64 before the cast: city coordinates (~10⁵ m) would lose centimetres in float32.
    """
    if not math.isfinite(wind_direction):
        raise ValidationError(f"wind_direction {wind_direction}: expected degrees from north")
    towards = math.radians(wind_direction + 180.0)
    ex, ey = math.sin(towards), math.cos(towards)
    dx = grid.west + (np.arange(grid.width) + 0.5) * grid.cell - float(source_xy[0])
    dy = grid.north - (np.arange(grid.height) + 0.5) * grid.cell - float(source_xy[1])
    col_along, col_across = (dx * ex).astype(np.float32), (-dx * ey).astype(np.float32)
    row_along, row_across = (
        (dy * ey)[:, None].astype(np.float32),
        (dy * ex)[:, None].astype(np.float32),
    )
    step = max(1, _BLOCK_CELLS // grid.width)

    starts = range(0, grid.height, step)
    threads = min(max(1, workers), _MAX_WORKERS, len(starts))

    def run(share: range) -> None:  # interleaved shares: upwind-only blocks spread evenly
        for start in share:
            rows = slice(start, start + step)
            fill(rows, col_along + row_along[rows], col_across + row_across[rows])

    if threads <= 1:
        run(starts)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(run, [starts[k::threads] for k in range(threads)]))


def _check_release(q: float, wind_speed: float, height: float) -> None:
    _check_amount(q, "q (emission rate)", "g/s")
    if not (math.isfinite(wind_speed) and wind_speed > 0):
        raise ValidationError(
            f"wind_speed {wind_speed}: a Gaussian plume needs wind (> 0 m/s); "
            "use the puff model for calm"
        )
    _check_height(height)


def _check_amount(value: float, name: str, unit: str) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValidationError(f"{name} {value}: expected a non-negative amount in {unit}")


def _check_height(height: float) -> None:
    if not (math.isfinite(height) and height >= 0):
        raise ValidationError(f"height {height}: expected a release height ≥ 0 m above ground")
