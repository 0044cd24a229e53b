"""Spatial weights and local hot-spot statistics against PySAL (libpysal + esda) and real gu.

esda and libpysal are the reference implementations of Getis-Ord Gi* and Anselin's LISA; their
analytic values must agree with ours to 1e-8 on the same weights, and their conditional-permutation
pseudo p-values statistically (they draw other random numbers).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
from scipy import sparse, stats

from citytwin.analysis.grid import Grid
from citytwin.analysis.hotspots import getis_ord_gi_star, hotspots_geojson, local_morans_i
from citytwin.analysis.weights import (
    Contiguity,
    contiguity_weights,
    distance_band_weights,
    grid_weights,
    knn_weights,
    row_standardise,
)
from citytwin.errors import ValidationError

esda = pytest.importorskip("esda")
libpysal = pytest.importorskip("libpysal")

CENTRAL = ["종로구", "중구", "성북구", "서대문구", "동대문구"]


@pytest.fixture(scope="module")
def gu(shared_data: Path) -> gpd.GeoDataFrame:
    """The 25 Seoul gu (KOSTAT 2013, full-resolution outlines), WGS84."""
    path = shared_data / "seoul_boundaries/kostat/2013/json/seoul_municipalities_geo.json"
    frame = gpd.read_file(path)
    assert len(frame) == 25
    return frame


def _as_w(matrix: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return libpysal.weights.WSP(sparse.csr_matrix(matrix)).to_W(silence_warnings=True)


def _esda(kind: str, y: np.ndarray, matrix: Any, permutations: int = 0) -> Any:
    """esda's statistic on the same weights (its deprecation notice about p-values silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "gi":
            star = libpysal.weights.fill_diagonal(_as_w(matrix), 1.0)
            return esda.G_Local(
                y, star, transform="B", star=True, permutations=permutations, seed=7, n_jobs=1
            )
        return esda.Moran_Local(y, _as_w(matrix), permutations=permutations, seed=7, n_jobs=1)


def _gu_values(gu: gpd.GeoDataFrame) -> np.ndarray:
    rng = np.random.default_rng(42)
    return rng.gamma(2.0, 10.0, size=len(gu))


def _dense(matrix: Any) -> np.ndarray:
    return np.asarray(sparse.csr_array(matrix).toarray())


# --- weights ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["queen", "rook"])
def test_contiguity_matches_libpysal_on_seoul_gu(gu: gpd.GeoDataFrame, rule: Contiguity) -> None:
    builder = libpysal.weights.Queen if rule == "queen" else libpysal.weights.Rook
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = builder.from_dataframe(gu, use_index=False).sparse.toarray()
    ours = _dense(contiguity_weights(gu, rule=rule))
    np.testing.assert_array_equal(ours, reference)
    assert (ours == ours.T).all()


def test_known_seoul_neighbours(gu: gpd.GeoDataFrame) -> None:
    matrix = _dense(contiguity_weights(gu, rule="queen"))
    index = {name: i for i, name in enumerate(gu["name"])}
    assert matrix[index["종로구"], index["중구"]] == 1
    assert matrix[index["강서구"], index["강동구"]] == 0
    assert matrix[index["강서구"], index["양천구"]] == 1
    eastern = {gu["name"][j] for j in np.flatnonzero(matrix[index["강동구"]])}
    assert eastern == {
        "송파구",
        "광진구",
    }  # the rest of 강동구's border is Hanam/Guri, outside Seoul
    assert matrix.sum(axis=1).min() >= 1  # no island among the 25 gu


def test_grid_weights_match_libpysal_lattice() -> None:
    for rook in (True, False):
        reference = libpysal.weights.lat2W(4, 6, rook=rook).sparse.toarray()
        ours = _dense(grid_weights((4, 6), rule="rook" if rook else "queen"))
        np.testing.assert_array_equal(ours, reference)


def test_point_weights_match_libpysal() -> None:
    points = np.random.default_rng(3).uniform(0, 1000, size=(60, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        knn = libpysal.weights.KNN.from_array(points, k=4).sparse.toarray()
        band = libpysal.weights.DistanceBand.from_array(points, threshold=180.0).sparse.toarray()
    np.testing.assert_array_equal(_dense(knn_weights(points, k=4)), knn)
    np.testing.assert_array_equal(_dense(distance_band_weights(points, threshold=180.0)), band)
    standard = _dense(row_standardise(knn_weights(points, k=4)))
    np.testing.assert_allclose(standard.sum(axis=1), 1.0)


def test_weights_reject_bad_input() -> None:
    with pytest.raises(ValidationError, match="row 1"):
        knn_weights([[0.0, 0.0], [np.nan, 1.0], [2.0, 2.0]], k=1)
    with pytest.raises(ValidationError, match="expected 1 <= k"):
        knn_weights([[0.0, 0.0], [1.0, 1.0]], k=2)
    with pytest.raises(ValidationError, match="'queen' or 'rook'"):
        grid_weights((3, 3), rule="bishop")  # type: ignore[arg-type]


# --- Getis-Ord Gi* ---------------------------------------------------------------------------


def test_gi_star_matches_esda(gu: gpd.GeoDataFrame) -> None:
    y = _gu_values(gu)
    weights = contiguity_weights(gu)
    ours = getis_ord_gi_star(y, weights, permutations=0)
    reference = _esda("gi", y, weights)
    np.testing.assert_allclose(ours.z, reference.Zs, rtol=0, atol=1e-8)
    np.testing.assert_allclose(ours.statistic, reference.Gs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours.expected, reference.EGs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours.variance, reference.VGs, rtol=1e-8)
    # esda's p_norm is one-sided; ours is two-sided
    np.testing.assert_allclose(ours.p_analytic, 2 * reference.p_norm, rtol=0, atol=1e-8)
    # Ord & Getis' z does not change when the rows are scaled (row-standardised input)
    scaled = getis_ord_gi_star(y, row_standardise(weights), permutations=0)
    np.testing.assert_allclose(scaled.z, reference.Zs, rtol=0, atol=1e-8)


def test_gi_star_permutation_p_agrees_with_esda(gu: gpd.GeoDataFrame) -> None:
    y = _gu_values(gu)
    weights = contiguity_weights(gu)
    ours = getis_ord_gi_star(y, weights, permutations=9999, seed=1)
    reference = np.minimum(1.0, 2 * _esda("gi", y, weights, permutations=9999).p_sim)
    difference = np.abs(ours.p_permutation - reference)
    # independent Monte Carlo runs: sd of a difference of two-sided p ≈ 0.012 at p = 0.5
    assert difference.mean() < 0.02
    assert difference.max() < 0.07


def _conditional_normal_p(values: np.ndarray, binary: Any) -> np.ndarray:
    """Two-sided normal p of each site's neighbour sum when site i keeps its value.

    Drawing k_i of the other N = n−1 values without replacement, the sum has mean k_i·μ_(−i)
    and variance σ²_(−i)·k_i·(N − k_i)/(N − 1) (σ² with divisor N) — the distribution the
    conditional permutation samples, derived by hand here, independent of the code under test.
    """
    y = values.ravel()
    n = y.size
    others_mean = (y.sum() - y) / (n - 1)
    others_var = ((y**2).sum() - y**2) / (n - 1) - others_mean**2
    k = np.asarray(binary.sum(axis=1)).ravel()
    observed = binary @ y
    z = (observed - k * others_mean) / np.sqrt(others_var * k * (n - 1 - k) / (n - 2))
    return np.asarray(2 * stats.norm.sf(np.abs(z)))


def test_permutation_p_follows_the_conditional_distribution_on_a_large_grid() -> None:
    values = np.random.default_rng(5).normal(50.0, 10.0, size=(30, 30))
    weights = grid_weights((30, 30))
    expected = _conditional_normal_p(values, weights)
    for statistic in (getis_ord_gi_star, local_morans_i):
        result = statistic(values, weights, permutations=9999, seed=3)
        difference = np.abs(result.p_permutation.ravel() - expected)
        # 9999 draws: sd of a two-sided pseudo p is at most 2·√(0.25·0.75/10⁴) ≈ 0.009, and one
        # draw is shared by all sites (as in PySAL), so the mean error does not average out
        assert difference.mean() < 0.012, statistic.__name__
        assert stats.pearsonr(result.p_permutation.ravel(), expected)[0] > 0.99


def test_planted_hot_cluster_of_gu_is_found(gu: gpd.GeoDataFrame) -> None:
    values = 20.0 + np.random.default_rng(8).normal(0.0, 1.0, size=len(gu))
    planted = gu["name"].isin(CENTRAL).to_numpy()
    values[planted] += 15.0
    result = getis_ord_gi_star(values, contiguity_weights(gu), permutations=999, seed=2)
    labels = dict(zip(gu["name"], result.label, strict=True))
    assert labels["종로구"] in ("hot spot 99%", "hot spot 95%")
    assert labels["중구"] in ("hot spot 99%", "hot spot 95%")
    assert not any(labels[name].startswith("cold") for name in CENTRAL)
    for far in ("강동구", "강서구", "송파구", "노원구"):
        assert not labels[far].startswith("hot"), far
    lisa = local_morans_i(values, contiguity_weights(gu), permutations=999, seed=2)
    assert dict(zip(gu["name"], lisa.label, strict=True))["종로구"] == "HH"


# --- Local Moran's I ------------------------------------------------------------------------


def test_local_morans_i_matches_esda(gu: gpd.GeoDataFrame) -> None:
    y = _gu_values(gu)
    weights = contiguity_weights(gu)
    ours = local_morans_i(y, weights, permutations=0)
    reference = _esda("moran", y, weights)
    reference_z = (reference.Is - reference.EI) / np.sqrt(reference.VI)
    np.testing.assert_allclose(ours.statistic, reference.Is, rtol=0, atol=1e-8)
    np.testing.assert_allclose(ours.expected, reference.EI, rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours.variance, reference.VI, rtol=1e-8)
    np.testing.assert_allclose(ours.z, reference_z, rtol=0, atol=1e-8)
    np.testing.assert_allclose(ours.p_analytic, 2 * stats.norm.sf(np.abs(reference_z)), atol=1e-8)
    quadrants = np.array(["HH", "LH", "LL", "HL"])[reference.q - 1]
    np.testing.assert_array_equal(ours.quadrant, quadrants)


def test_local_morans_i_permutation_p_agrees_with_esda(gu: gpd.GeoDataFrame) -> None:
    y = _gu_values(gu)
    weights = contiguity_weights(gu)
    ours = local_morans_i(y, weights, permutations=9999, seed=4)
    reference = np.minimum(1.0, 2 * _esda("moran", y, weights, permutations=9999).p_sim)
    difference = np.abs(ours.p_permutation - reference)
    assert difference.mean() < 0.02
    assert difference.max() < 0.07


# --- grids with gaps, GeoJSON, errors ---------------------------------------------------------


def test_nan_cells_are_left_out_of_a_grid() -> None:
    grid = Grid(west=195000.0, north=555000.0, cell=500.0, width=8, height=6)
    values = np.random.default_rng(9).gamma(3.0, 5.0, size=grid.shape)
    values[0, :3] = np.nan
    weights = grid_weights(grid.shape)
    result = getis_ord_gi_star(values, weights, permutations=0)
    valid = np.isfinite(values.ravel())
    subset = sparse.csr_array(weights)[valid][:, valid]
    reference = _esda("gi", values.ravel()[valid], subset)
    np.testing.assert_allclose(result.z.ravel()[valid], reference.Zs, atol=1e-8)
    assert np.isnan(result.z[0, :3]).all()
    assert (result.label[0, :3] == "no data").all()
    collection = hotspots_geojson(grid, result)
    assert len(collection["features"]) == grid.size - 3
    lon, lat = np.array(collection["features"][0]["geometry"]["coordinates"][0]).T
    assert 126.7 < lon.min() < lon.max() < 127.3
    assert 37.4 < lat.min() < lat.max() < 37.75


def test_hotspots_geojson_for_districts_keeps_names(gu: gpd.GeoDataFrame) -> None:
    result = local_morans_i(_gu_values(gu), contiguity_weights(gu), permutations=99)
    collection = hotspots_geojson(gu, result)
    assert len(collection["features"]) == 25
    first = collection["features"][0]["properties"]
    assert first["name"] == gu["name"].iloc[0]
    assert first["z"] == pytest.approx(float(result.z[0]))
    assert {"statistic", "p_analytic", "p_permutation", "label", "quadrant"} <= set(first)


def test_bad_input_is_named() -> None:
    weights = grid_weights((3, 3))
    with pytest.raises(ValidationError, match=r"weights shape \(9, 9\), expected \(8, 8\)"):
        getis_ord_gi_star(np.arange(8.0), weights)
    with pytest.raises(ValidationError, match=r"all equal to 2\.0"):
        local_morans_i(np.full(9, 2.0), weights)
    with pytest.raises(ValidationError, match="needs permutations > 0"):
        getis_ord_gi_star(np.arange(9.0), weights, permutations=0, inference="permutation")
