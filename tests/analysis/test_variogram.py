"""Variograms against gstat's own saved outputs (``../shared/data/geostat/*.Rout.save``)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import special

from citytwin.analysis.interpolate import cross_validate
from citytwin.analysis.variogram import (
    KINDS,
    VariogramModel,
    empirical_variogram,
    fit_variogram,
)
from citytwin.errors import UnknownBackendError, ValidationError


def _printed_table(path: Path, command: str) -> list[list[str]]:
    """Rows (split on whitespace, header dropped) that R printed after the prompt ``command``."""
    lines = path.read_text().splitlines()
    start = lines.index(f"> {command}") + 2  # skip the prompt and the column header
    rows = []
    for line in lines[start:]:
        if line.startswith((">", "Warning")) or not line.strip():
            break
        rows.append(line.split())
    return rows


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def _at_printed_precision(ours: float, printed: str) -> bool:
    """True when ``ours`` rounds to what R printed (half a unit of its last digit)."""
    return abs(ours - float(printed)) <= 0.5 * 10.0 ** -_decimals(printed) * (1 + 1e-9)


@pytest.fixture(scope="module")
def meuse(shared_data: Path) -> pd.DataFrame:
    return pd.read_csv(shared_data / "geostat" / "meuse.csv")


@pytest.mark.parametrize(
    "command", ["variogram(log(zinc)~1, ~x+y, meuse)", "variogram(log(zinc)~1, meuse)"]
)
def test_meuse_log_zinc_variogram_matches_gstat(
    shared_data: Path, meuse: pd.DataFrame, command: str
) -> None:
    rows = _printed_table(shared_data / "geostat" / "gstat_tests_variogram.Rout.save", command)
    assert len(rows) == 15
    v = empirical_variogram(meuse["x"], meuse["y"], np.log(meuse["zinc"]))
    assert v.np.tolist() == [int(row[1]) for row in rows]
    for row, dist, gamma in zip(rows, v.dist, v.gamma, strict=True):
        assert _at_printed_precision(float(dist), row[2]), (dist, row)
        assert _at_printed_precision(float(gamma), row[3]), (gamma, row)
    # gstat's defaults: a third of the bounding-box diagonal, 15 bins.
    diagonal = math.hypot(np.ptp(meuse["x"]), np.ptp(meuse["y"]))
    assert v.cutoff == pytest.approx(diagonal / 3)
    assert v.width == pytest.approx(diagonal / 45)


def test_fit_matches_gstat_fit_variogram(shared_data: Path, meuse: pd.DataFrame) -> None:
    """gstat_tests_fit.R: made-up gamma (0.5, 1, 2, 3, 3) → nugget fixed at 0, Sph psill, range."""
    path = shared_data / "geostat" / "gstat_tests_fit.Rout.save"
    rows = _printed_table(path, 'fit.variogram(v, vgm(1, "Sph", 300, 0),warn.if.neg=FALSE)')
    printed = {row[1]: row[2:] for row in rows}
    v = empirical_variogram(meuse["x"], meuse["y"], np.log(meuse["zinc"]), cutoff=500, width=100)
    assert v.np.size == 5
    fitted = fit_variogram(dataclasses.replace(v, gamma=np.array([0.5, 1, 2, 3, 3.0])),
                           model="spherical")  # fmt: skip
    assert fitted.nugget == float(printed["Nug"][0]) == 0.0
    assert _at_printed_precision(fitted.range, printed["Sph"][1])
    # gstat's Gauss-Newton stops at its convergence tolerance (~1e-6 relative); ours is the
    # profiled optimum, 4e-7 away on the partial sill.
    assert fitted.psill == pytest.approx(float(printed["Sph"][0]), rel=1e-6)


def test_fit_is_the_weighted_least_squares_optimum(meuse: pd.DataFrame) -> None:
    """No perturbation of the fitted parameters lowers gstat's fit.method 7 criterion."""
    v = empirical_variogram(meuse["x"], meuse["y"], np.log(meuse["zinc"]))
    weights = v.np / v.dist**2

    def sse(model: VariogramModel) -> float:
        return float(np.sum(weights * (v.gamma - model.semivariance(v.dist)) ** 2))

    for kind in ("spherical", "exponential", "gaussian"):
        fitted = fit_variogram(v, model=kind)
        for name in ("nugget", "psill", "range"):
            for factor in (0.99, 1.01):
                value = getattr(fitted, name) * factor
                if value > 0:
                    assert sse(fitted) <= sse(dataclasses.replace(fitted, **{name: value}))


def test_auto_picks_the_best_cross_validated_kind(meuse: pd.DataFrame) -> None:
    x, y, z = meuse["x"].to_numpy(), meuse["y"].to_numpy(), np.log(meuse["zinc"].to_numpy())
    v = empirical_variogram(x, y, z)
    scores = {
        kind: cross_validate(x, y, z, variogram=fit_variogram(v, model=kind)).rmse for kind in KINDS
    }
    assert fit_variogram(v).kind == min(scores, key=scores.__getitem__)
    # Without samples, "auto" falls back to gstat's rule: the lowest weighted SSE.
    bare = dataclasses.replace(v, samples=None)
    assert fit_variogram(bare).kind in KINDS


def test_model_formulas_follow_gstat() -> None:
    h = np.array([0.0, 100.0, 500.0, 1000.0, 2000.0])
    exp = VariogramModel("exponential", nugget=0.1, psill=1.0, range=500.0)
    assert exp.semivariance(h)[0] == 0.0
    assert exp.covariance(h)[0] == pytest.approx(1.1)
    assert exp.semivariance(h)[2] == pytest.approx(0.1 + 1 - math.exp(-1))
    sph = VariogramModel("spherical", nugget=0.0, psill=2.0, range=1000.0)
    assert sph.semivariance(h)[3:].tolist() == [2.0, 2.0]
    assert sph.semivariance(h)[2] == pytest.approx(2.0 * (0.75 - 0.0625))
    gau = VariogramModel("gaussian", nugget=0.0, psill=1.0, range=500.0)
    assert gau.semivariance(h)[2] == pytest.approx(1 - math.exp(-1))
    # Matérn with κ = 1/2 is the exponential; the closed forms used for κ = 3/2 and 5/2 equal
    # the general Bessel-function definition 2^(1−κ)/Γ(κ) r^κ K_κ(r) (Stein 1999, eq. 2.7.14).
    mat = VariogramModel("matern", nugget=0.1, psill=1.0, range=500.0, kappa=0.5)
    np.testing.assert_allclose(mat.semivariance(h), exp.semivariance(h), rtol=1e-12)
    r = h[1:] / 300.0
    for kappa in (1.5, 2.5):
        bessel = 2 ** (1 - kappa) / special.gamma(kappa) * r**kappa * special.kv(kappa, r)
        closed = VariogramModel("matern", nugget=0.0, psill=1.0, range=300.0, kappa=kappa)
        np.testing.assert_allclose(closed.correlation(h[1:]), bessel, rtol=1e-12)
        assert closed.correlation(0.0) == 1.0
    general = VariogramModel("matern", nugget=0.0, psill=1.0, range=300.0, kappa=1.2)
    assert general.correlation(np.array([0.0, 1e-9]))[0] == 1.0
    assert general.correlation(np.array([1e-9]))[0] == pytest.approx(1.0)


def test_bad_input_names_input_and_position() -> None:
    with pytest.raises(ValidationError, match="equal lengths"):
        empirical_variogram([0.0, 1.0, 2.0], [0.0, 1.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValidationError, match=r"values\[2\] is nan"):
        empirical_variogram([0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0], [1.0, 2.0, np.nan, 4.0])
    with pytest.raises(ValidationError, match="locations 1 and 3 are both"):
        empirical_variogram([0.0, 1.0, 2.0, 1.0], [0.0, 5.0, 2.0, 5.0], [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValidationError, match="at least 3 distinct"):
        empirical_variogram([0.0, 1.0], [0.0, 1.0], [1.0, 2.0])
    with pytest.raises(ValidationError, match="cutoff = -1"):
        empirical_variogram([0.0, 1.0, 2.0], [0.0, 1.0, 0.0], [1.0, 2.0, 3.0], cutoff=-1)
    with pytest.raises(UnknownBackendError, match="exponential, gaussian, matern, spherical"):
        VariogramModel("circular", nugget=0.0, psill=1.0, range=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="range must be a finite number > 0, got 0"):
        VariogramModel("spherical", nugget=0.0, psill=1.0, range=0.0)
