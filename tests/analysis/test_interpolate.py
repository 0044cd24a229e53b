"""Kriging, IDW and cross-validation on the Meuse data, against gstat's formulas and gstools.

gstat_tests_krige0.Rout.save prints no numbers for the krige0 runs, only that ``krige()`` (the
Lagrange form) equals ``krige0()`` (the GLS form written in R). We check the same equality for
citytwin: its kriging against a line-by-line transcription of gstat's R ``krige0`` for the
same model (``vgm(1, "Exp", 500)``, beta = 500 for simple kriging), and against gstools.
"""

from __future__ import annotations

from pathlib import Path

import gstools
import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray
from scipy import linalg
from scipy.spatial import cKDTree

from citytwin.analysis import interpolate
from citytwin.analysis.grid import Grid
from citytwin.analysis.interpolate import cross_validate, idw, krige
from citytwin.analysis.variogram import VariogramModel, empirical_variogram, fit_variogram
from citytwin.errors import UnknownBackendError, ValidationError

Floats = NDArray[np.float64]
EXP_500 = VariogramModel("exponential", nugget=0.0, psill=1.0, range=500.0)  # vgm(1, "Exp", 500)
#: A smooth model (Matérn κ = 2.5, 20 % nugget) for log(zinc): kriged globally through a lattice.
MAT_400 = VariogramModel("matern", nugget=0.12, psill=0.5, range=400.0, kappa=2.5)


@pytest.fixture(scope="module")
def meuse(shared_data: Path) -> pd.DataFrame:
    return pd.read_csv(shared_data / "geostat" / "meuse.csv")


@pytest.fixture(scope="module")
def cells(shared_data: Path) -> Floats:
    grid = pd.read_csv(shared_data / "geostat" / "meuse_grid.csv")
    return grid[["x", "y"]].to_numpy(dtype=np.float64)


def _distances(a: Floats, b: Floats) -> Floats:
    return np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])


def krige0(
    s: Floats, y: Floats, s0: Floats, model: VariogramModel, beta: float | None
) -> tuple[Floats, Floats]:
    """gstat's R ``krige0`` (intercept-only formula), transcribed: CHsolve is a Cholesky solve."""
    V, v0 = model.covariance(_distances(s, s)), model.covariance(_distances(s, s0))
    c0 = model.sill
    chol = linalg.cho_factor(V)
    skwts = linalg.cho_solve(chol, v0)
    X, x0 = np.ones((len(s), 1)), np.ones((len(s0), 1))
    if beta is not None:
        mu = x0[:, 0] * beta + skwts.T @ (y - beta)
        return mu, c0 - np.sum(v0 * skwts, axis=0)
    ViX = linalg.cho_solve(chol, X)
    XtViX = X.T @ ViX
    b = np.linalg.solve(XtViX, ViX.T @ y)
    mu = x0 @ b + skwts.T @ (y - X @ b)
    Q = x0.T - ViX.T @ v0
    return mu, c0 - np.sum(v0 * skwts, axis=0) + np.sum(Q * np.linalg.solve(XtViX, Q), axis=0)


def test_rout_save_confirms_krige_equals_krige0(shared_data: Path) -> None:
    text = (shared_data / "geostat" / "gstat_tests_krige0.Rout.save").read_text()
    after = text.split("> # test sk:")[1].split("> # test uk:")[0]
    assert after.count("[1] TRUE") == 4  # sk and ok, predictions and variances


@pytest.mark.parametrize("beta", [500.0, None], ids=["simple", "ordinary"])
def test_krige_matches_gstat_krige0_on_meuse_grid(
    meuse: pd.DataFrame, cells: Floats, beta: float | None
) -> None:
    s, zinc = meuse[["x", "y"]].to_numpy(np.float64), meuse["zinc"].to_numpy(np.float64)
    expected_mean, expected_var = krige0(s, zinc, cells, EXP_500, beta)
    result = krige(meuse["x"], meuse["y"], zinc, cells, variogram=EXP_500, mean=beta)
    assert result.mean.shape == (3103,)
    assert result.variogram is EXP_500
    np.testing.assert_allclose(result.mean, expected_mean, rtol=1e-9)
    np.testing.assert_allclose(result.variance, expected_var, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("model", [
    EXP_500,
    VariogramModel("spherical", nugget=0.05, psill=0.59, range=897.0),
    VariogramModel("gaussian", nugget=0.1, psill=0.5, range=400.0),
])  # fmt: skip
def test_ordinary_kriging_matches_gstools(
    meuse: pd.DataFrame, cells: Floats, model: VariogramModel
) -> None:
    z = np.log(meuse["zinc"].to_numpy(np.float64))
    built = {"exponential": gstools.Exponential, "spherical": gstools.Spherical}.get(model.kind)
    rescale = {} if built else {"rescale": 1.0}
    gs_model = (built or gstools.Gaussian)(
        dim=2, var=model.psill, len_scale=model.range, nugget=model.nugget, **rescale
    )
    ours = krige(meuse["x"], meuse["y"], z, cells, variogram=model)
    kriged = gstools.krige.Ordinary(
        gs_model, [meuse["x"], meuse["y"]], z, exact=True, pseudo_inv=False
    )
    mean, variance = kriged((cells[:, 0], cells[:, 1]), return_var=True, store=False)
    np.testing.assert_allclose(ours.mean, mean, rtol=1e-8)
    np.testing.assert_allclose(ours.variance, variance, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize(("k", "beta"), [(20, None), (60, None), (20, 500.0)])
def test_moving_neighbourhood_equals_solving_each_target(
    meuse: pd.DataFrame, cells: Floats, k: int, beta: float | None
) -> None:
    s, z = meuse[["x", "y"]].to_numpy(np.float64), meuse["zinc"].to_numpy(np.float64)
    result = krige(s[:, 0], s[:, 1], z, cells, variogram=EXP_500, neighbours=k, mean=beta)
    _, index = cKDTree(s).query(cells, k=k)
    for t in range(0, len(cells), 97):
        mean, var = krige0(s[index[t]], z[index[t]], cells[t : t + 1], EXP_500, beta)
        assert result.mean[t] == pytest.approx(mean[0], rel=1e-9)
        assert result.variance[t] == pytest.approx(var[0], rel=1e-9, abs=1e-12)


def test_grid_targets_and_exact_interpolation(meuse: pd.DataFrame) -> None:
    x, y, z = meuse["x"], meuse["y"], np.log(meuse["zinc"])
    grid = Grid.covering((178_600.0, 329_700.0, 181_400.0, 333_700.0), cell=200.0)
    on_grid = krige(x, y, z, grid, variogram=EXP_500)
    on_points = krige(x, y, z, grid.points(), variogram=EXP_500)
    assert on_grid.mean.shape == grid.shape == (20, 14)
    np.testing.assert_array_equal(on_grid.mean.ravel(), on_points.mean)
    # Kriging is an exact interpolator: at a sample it returns the sample, variance 0.
    at_samples = krige(x, y, z, np.column_stack([x, y])[:5], variogram=EXP_500)
    np.testing.assert_allclose(at_samples.mean, z[:5], rtol=1e-10)
    np.testing.assert_allclose(at_samples.variance, 0.0, atol=1e-10)


def test_idw_is_gstat_idw0(meuse: pd.DataFrame, cells: Floats) -> None:
    """idw0 in gstat's R: ``D = 1/spDists(s0, s)^idp; D %*% y / rowSums(D)`` with idp = 2."""
    s, zinc = meuse[["x", "y"]].to_numpy(np.float64), meuse["zinc"].to_numpy(np.float64)
    weights = 1.0 / _distances(cells, s) ** 2.0
    np.testing.assert_allclose(
        idw(s[:, 0], s[:, 1], zinc, cells), weights @ zinc / weights.sum(axis=1), rtol=1e-12
    )
    near = idw(s[:, 0], s[:, 1], zinc, cells[:50], power=1.0, neighbours=8)
    dist, index = cKDTree(s).query(cells[:50], k=8)
    np.testing.assert_allclose(near, np.sum(zinc[index] / dist, 1) / np.sum(1 / dist, 1))
    assert idw(s[:, 0], s[:, 1], zinc, s[:3]).tolist() == zinc[:3].tolist()


@pytest.mark.parametrize("neighbours", [None, 30])
def test_cross_validation_equals_refitting_without_each_sample(
    meuse: pd.DataFrame, neighbours: int | None
) -> None:
    s, z = meuse[["x", "y"]].to_numpy(np.float64), np.log(meuse["zinc"].to_numpy(np.float64))
    model = VariogramModel("spherical", nugget=0.05, psill=0.59, range=897.0)
    cv = cross_validate(s[:, 0], s[:, 1], z, variogram=model, neighbours=neighbours)
    predicted, variance = np.empty(len(z)), np.empty(len(z))
    for i in range(len(z)):
        rest = np.arange(len(z)) != i
        one = krige(s[rest, 0], s[rest, 1], z[rest], s[i : i + 1], variogram=model,
                    neighbours=neighbours)  # fmt: skip
        predicted[i], variance[i] = one.mean[0], one.variance[0]
    np.testing.assert_allclose(cv.predicted, predicted, rtol=1e-9)
    np.testing.assert_allclose(cv.variance, variance, rtol=1e-8)
    residual = z - predicted
    assert cv.rmse == pytest.approx(np.sqrt(np.mean(residual**2)))
    assert cv.mae == pytest.approx(np.mean(np.abs(residual)))
    assert cv.mean_error == pytest.approx(np.mean(residual))
    assert cv.msse == pytest.approx(np.mean(residual**2 / variance))


def test_idw_cross_validation(meuse: pd.DataFrame) -> None:
    s, z = meuse[["x", "y"]].to_numpy(np.float64), np.log(meuse["zinc"].to_numpy(np.float64))
    cv = cross_validate(s[:, 0], s[:, 1], z, method="idw")
    distances = _distances(s, s)
    np.fill_diagonal(distances, np.inf)  # leave each sample out: weight 0
    weights = 1.0 / distances**2
    np.testing.assert_allclose(cv.predicted, weights @ z / weights.sum(axis=1), rtol=1e-12)
    assert np.isnan(cv.msse)
    # On Meuse log(zinc), kriging with a fitted variogram beats IDW (Pebesma 2004's example).
    assert cross_validate(s[:, 0], s[:, 1], z).rmse < cv.rmse


def test_bad_input_names_input_and_position(meuse: pd.DataFrame) -> None:
    x, y, z = meuse["x"].to_numpy(), meuse["y"].to_numpy(), meuse["zinc"].to_numpy()
    with pytest.raises(ValidationError, match=r"targets\[1\] = \[1.0, nan\]"):
        krige(x, y, z, [[0.0, 0.0], [1.0, np.nan]], variogram=EXP_500)
    with pytest.raises(ValidationError, match=r"targets: expected a Grid or an \(n, 2\) array"):
        idw(x, y, z, [1.0, 2.0, 3.0])
    with pytest.raises(ValidationError, match="neighbours = 0"):
        krige(x, y, z, [[0.0, 0.0]], variogram=EXP_500, neighbours=0)
    with pytest.raises(ValidationError, match=r"x\[4\] is inf"):
        idw(np.r_[x[:4], np.inf], y[:5], z[:5], [[0.0, 0.0]])
    with pytest.raises(UnknownBackendError, match="idw, kriging"):
        cross_validate(x, y, z, method="nearest")  # type: ignore[arg-type]


def test_defaults_fit_the_variogram_and_pick_the_neighbourhood(meuse: pd.DataFrame) -> None:
    x, y, z = meuse["x"], meuse["y"], np.log(meuse["zinc"])
    fitted = krige(x, y, z, [[180_000.0, 331_000.0]]).variogram
    assert fitted == fit_variogram(empirical_variogram(x, y, z))
    # Above 400 samples the default is the 32 nearest (gstat's nmax), below it all samples.
    rng = np.random.default_rng(7)
    px, py = rng.uniform(0, 10_000, 401), rng.uniform(0, 10_000, 401)
    pz = np.sin(px / 2_000) + rng.normal(0, 0.1, 401)
    cells = rng.uniform(0, 10_000, (200, 2))
    default = krige(px, py, pz, cells, variogram=EXP_500)
    nearest = krige(px, py, pz, cells, variogram=EXP_500, neighbours=32)
    np.testing.assert_array_equal(default.mean, nearest.mean)
    everything = krige(px[:400], py[:400], pz[:400], cells, variogram=EXP_500)
    manual = krige(px[:400], py[:400], pz[:400], cells, variogram=EXP_500, neighbours=400)
    np.testing.assert_array_equal(everything.mean, manual.mean)


@pytest.mark.parametrize("beta", [None, 6.0], ids=["ordinary", "simple"])
def test_lattice_kriging_of_a_fine_grid_matches_gstat_krige0(
    meuse: pd.DataFrame, beta: float | None, caplog: pytest.LogCaptureFixture
) -> None:
    """A 10 m grid (111,000 cells) with a smooth model goes through the lattice; at 600 seeded
    cells and at cells that hold samples it agrees with gstat's krige0 (exact, global)."""
    s = meuse[["x", "y"]].to_numpy(np.float64)
    z = np.log(meuse["zinc"].to_numpy(np.float64))
    grid = Grid.covering((178_600.0, 329_700.0, 181_400.0, 333_660.0), cell=10.0)
    points = grid.points()
    south_west = np.array([grid.west, grid.north - grid.height * grid.cell])
    on_cell = south_west + np.floor((s - south_west) / 10.0) * 10.0 + 5.0  # centres near samples
    points[:3] = on_cell[:3]  # the cells that hold the first three samples, checked below
    with caplog.at_level("DEBUG", logger="citytwin.analysis.interpolate"):
        result = krige(s[:, 0], s[:, 1], z, points, variogram=MAT_400, mean=beta)
    assert "through a 61 × 84 lattice of 50 m" in caplog.text  # range/8, two nodes past the cells
    picked = np.r_[:3, np.random.default_rng(1).choice(np.arange(3, len(points)), 600, False)]
    mean, variance = krige0(s, z, points[picked], MAT_400, beta)
    tolerance = interpolate.LATTICE_TOLERANCE
    assert np.max(np.abs(result.mean[picked] - mean)) <= tolerance * np.sqrt(MAT_400.sill)
    assert np.max(np.abs(result.variance[picked] - variance)) <= tolerance * MAT_400.sill
    # a target on a sample is exact: the sample's value, variance 0
    at_sample = krige(s[:, 0], s[:, 1], z, np.r_[s[:2], points[3:20_000]], variogram=MAT_400)
    np.testing.assert_allclose(at_sample.mean[:2], z[:2], rtol=1e-10)
    np.testing.assert_allclose(at_sample.variance[:2], 0.0, atol=1e-10)


def test_lattice_missing_the_tolerance_falls_back_to_exact_kriging(
    meuse: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    s = meuse[["x", "y"]].to_numpy(np.float64)
    z = np.log(meuse["zinc"].to_numpy(np.float64))
    points = Grid.covering((178_600.0, 329_700.0, 181_400.0, 333_660.0), cell=10.0).points()
    monkeypatch.setattr(interpolate, "LATTICE_TOLERANCE", 0.0)
    with caplog.at_level("INFO", logger="citytwin.analysis.interpolate"):
        result = krige(s[:, 0], s[:, 1], z, points, variogram=MAT_400)
    assert caplog.text.count("misses the tolerance") == len(interpolate.LATTICE_FRACTIONS)
    picked = np.random.default_rng(2).choice(len(points), 300, replace=False)
    mean, variance = krige0(s, z, points[picked], MAT_400, None)
    np.testing.assert_allclose(result.mean[picked], mean, rtol=1e-9)
    np.testing.assert_allclose(result.variance[picked], variance, rtol=1e-9)


def test_smooth_models_stay_global_up_to_their_limit() -> None:
    """Above 400 samples a smooth model still uses all of them (no screening with a nugget);
    leave-one-out then uses Dubrule's closed form, which equals refitting without each."""
    rng = np.random.default_rng(7)
    px, py = rng.uniform(0, 10_000, 401), rng.uniform(0, 10_000, 401)
    pz = np.sin(px / 2_000) + rng.normal(0, 0.1, 401)
    cells = rng.uniform(0, 10_000, (200, 2))
    smooth = VariogramModel("matern", nugget=0.01, psill=0.5, range=1_500.0, kappa=2.5)
    default = krige(px, py, pz, cells, variogram=smooth)
    everything = krige(px, py, pz, cells, variogram=smooth, neighbours=401)
    np.testing.assert_array_equal(default.mean, everything.mean)
    assert not np.array_equal(default.mean, krige(px, py, pz, cells, variogram=smooth,
                                                  neighbours=32).mean)  # fmt: skip
    cv = cross_validate(px, py, pz, variogram=smooth)
    for i in (0, 200):
        keep = np.arange(401) != i
        alone = krige(px[keep], py[keep], pz[keep], [[px[i], py[i]]], variogram=smooth,
                      neighbours=400)  # fmt: skip
        assert cv.predicted[i] == pytest.approx(alone.mean[0], rel=1e-9)
    big = interpolate.SMOOTH_GLOBAL_LIMIT + 1
    assert interpolate._neighbourhood(big, None, smooth) == interpolate.DEFAULT_NEIGHBOURS
    assert interpolate._neighbourhood(big - 1, None, smooth) == big - 1
    assert interpolate._neighbourhood(401, None, EXP_500) == interpolate.DEFAULT_NEIGHBOURS
