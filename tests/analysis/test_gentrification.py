"""Gentrification panel → index → stage: planted-stage recovery, mappings, a hand-computed toy
table, and the map and GeoJSON outputs (on the demo city and on Seoul's 423 KOSTAT dong)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from matplotlib import colors
from matplotlib.image import imread
from numpy.typing import NDArray
from scipy.stats import spearmanr

from citytwin.analysis.gentrification import (
    DEFAULT_WEIGHTS,
    THRESHOLDS,
    gentrification_index,
    indicator_panel,
)
from citytwin.analysis.gentrification_mapping import GentrificationMapping, load_mapping
from citytwin.analysis.gentrification_maps import (
    STAGE_COLOURS,
    gentrification_geojson,
    render_gentrification_map,
)
from citytwin.emulator.gentrification import COLUMNS, generate_panel
from citytwin.errors import MappingError, ValidationError
from citytwin.space.democity import build_demo_city

KOSTAT_DONG = "seoul_boundaries/kostat/2013/json/seoul_submunicipalities_geo_simple.json"


@pytest.fixture(scope="module")
def districts() -> gpd.GeoDataFrame:
    return build_demo_city(seed=0, buildings=0, sensors=0).districts


@pytest.fixture(scope="module")
def demo(districts: gpd.GeoDataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    table, truth = generate_panel(districts, seed=0)
    return table, truth, gentrification_index(indicator_panel(table, load_mapping("demo")))


@pytest.mark.parametrize("seed", range(5))
def test_planted_stages_are_recovered(districts: gpd.GeoDataFrame, seed: int) -> None:
    table, truth = generate_panel(districts, seed=seed)
    result = gentrification_index(indicator_panel(table, load_mapping("demo")))
    planted = truth.loc[result.index]
    staged = result["stage"].to_numpy(dtype=int)
    stage = planted["stage"].to_numpy()
    assert len(result) == (districts["level"] == "dong").sum()
    assert spearmanr(result["index"], planted["intensity"]).statistic >= 0.9
    assert (staged == stage).mean() >= 0.9
    assert np.all(staged[stage == 3] >= 2)
    assert (staged[stage == 3] == 3).mean() >= 0.85
    assert np.all(staged[stage == 0] == 0)  # stable and declining dong raise no alarm
    assert np.abs(staged - stage).max() <= 1
    declining = planted["trajectory"].to_numpy() == "declining"
    assert result["index"].to_numpy()[declining].max() < 0  # decline is the opposite direction


def test_contributions_sum_to_the_index(demo: tuple[pd.DataFrame, ...]) -> None:
    result = demo[2]
    parts = result[[f"{name}_contribution" for name in DEFAULT_WEIGHTS]].sum(axis=1)
    np.testing.assert_allclose(parts, result["index"], atol=1e-12)
    assert sum(DEFAULT_WEIGHTS.values()) == pytest.approx(1.0)
    assert set(result["stage_ko"]) == {"안정", "초기", "진행", "심화"}


def test_a_renamed_table_through_its_own_mapping_gives_the_same_result(
    demo: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    table, _, expected = demo
    english = {korean: key for key, korean in COLUMNS.items()}
    renamed = table.rename(columns=english).sample(frac=1.0, random_state=3)  # order is irrelevant
    keys = [k for k in COLUMNS if k not in ("dong", "name", "year")]
    lines = ["name: english", "dong: dong", "dong_name: name", "period: year", "indicators:"]
    (tmp_path / "english.yaml").write_text("\n".join(lines + [f"  {k}: {k}" for k in keys]))
    result = gentrification_index(indicator_panel(renamed, load_mapping(tmp_path / "english.yaml")))
    pd.testing.assert_frame_equal(result.loc[expected.index], expected)


def test_an_unknown_column_is_named_with_the_valid_ones(demo: tuple[pd.DataFrame, ...]) -> None:
    indicators = {"rent_per_m2": "임대료", "land_price": "공시지가_원_m2"}
    mapping = GentrificationMapping(
        dong="행정동_코드", period="기준_년_코드", indicators=indicators
    )
    with pytest.raises(
        MappingError, match=r"rent_per_m2 → '임대료'.*table columns: .*임대료_천원_m2"
    ):
        indicator_panel(demo[0], mapping)


def test_unknown_keys_and_presets_list_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match=r"unknown key 'rents'; expected one of: .*rent_per_m2"):
        GentrificationMapping(dong="d", period="y", indicators={"rents": "r"})
    with pytest.raises(MappingError, match="no price column"):
        GentrificationMapping(dong="d", period="y", indicators={"business_count": "n"})
    with pytest.raises(MappingError, match="unknown preset; expected one of: demo"):
        load_mapping("seoul")
    (tmp_path / "bad.yaml").write_text("dong: d\nperiod: y\nindicator: {rent_per_m2: r}\n")
    with pytest.raises(
        MappingError, match=r"unknown keys \['indicator'\], missing \['indicators'\]"
    ):
        load_mapping(tmp_path / "bad.yaml")


TOY = pd.DataFrame(
    {
        "dong": ["A", "A", "B", "B", "C", "C"],
        "year": [2020, 2022] * 3,
        "rent": [40.0, 40.0, 50.0, 55.0, 30.0, 45.0],
        "shops": [100, 100, 200, 190, 80, 100],
        "opened": [10, 12, 20, 25, 10, 30],
        "closed": [10, 8, 30, 25, 5, 10],
        "chains": [10, 10, 20, 19, 8, 20],
    }
)
TOY_MAPPING = GentrificationMapping(
    dong="dong",
    period="year",
    indicators={"rent_per_m2": "rent", "business_count": "shops", "business_openings": "opened",
                "business_closures": "closed", "franchise_count": "chains"},
)  # fmt: skip


def _robust_z(x: NDArray[np.float64]) -> NDArray[np.float64]:
    deviation = np.abs(x - np.median(x))
    scale = 1.4826 * np.median(deviation) or 1.2533 * np.mean(deviation)
    z: NDArray[np.float64] = np.clip((x - np.median(x)) / scale, -3, 3)
    return z


def test_a_hand_computed_three_dong_index() -> None:
    f = {c: TOY[c].to_numpy()[::2] * 1.0 for c in TOY.columns[2:]}  # 2020 rows of A, B, C
    l_ = {c: TOY[c].to_numpy()[1::2] * 1.0 for c in TOY.columns[2:]}  # 2022 rows
    expected = {  # two years apart: per-year compound growth, pp per year, mean yearly rate
        "rent_growth": 100 * (np.sqrt(l_["rent"] / f["rent"]) - 1),
        "business_growth": 100 * (np.sqrt(l_["shops"] / f["shops"]) - 1),
        "business_turnover": 50 * ((f["opened"] + f["closed"]) / f["shops"]
                                   + (l_["opened"] + l_["closed"]) / l_["shops"]),
        "franchise_share_change": 50 * (l_["chains"] / l_["shops"] - f["chains"] / f["shops"]),
    }  # fmt: skip
    panel = indicator_panel(TOY, TOY_MAPPING)
    for name, values in expected.items():
        np.testing.assert_allclose(panel[name].to_numpy(), values, rtol=1e-12, atol=1e-12)
    assert panel["coverage"].tolist() == [0.5, 0.5, 0.5]  # 4 of the 8 scored indicators
    weights = np.array([DEFAULT_WEIGHTS[name] for name in expected])
    scores = np.column_stack([_robust_z(values) for values in expected.values()])
    index = scores @ weights / weights.sum()
    result = gentrification_index(panel)
    np.testing.assert_allclose(result["index"].to_numpy(), index, rtol=1e-12)
    assert result["stage"].tolist() == np.searchsorted(THRESHOLDS, index, side="right").tolist()
    assert result["weight_coverage"].tolist() == pytest.approx([5 / 9] * 3)
    assert scores[2, 1] == 3.0  # C's business growth (11.8 %/yr) is winsorised at +3
    franchise = expected["franchise_share_change"]  # 0, 0, +5 pp/yr: MAD 0, MeanAD fallback
    assert np.median(np.abs(franchise - np.median(franchise))) == 0
    assert scores[2, 3] == pytest.approx(5 / (1.2533 * 5 / 3))


def test_missing_inputs_give_nan_and_lower_coverage() -> None:
    table = TOY.assign(rent=TOY["rent"].where(TOY.index != 5))  # C has one rent only
    panel = indicator_panel(table, TOY_MAPPING)
    assert panel["rent_growth"].isna().tolist() == [False, False, True]
    assert panel["coverage"].tolist() == [0.5, 0.5, 3 / 8]
    # two rent growths cannot be standardised: rent drops out of every dong's index, leaving
    # 3/9 of the weight, below the default min_coverage of 0.5
    result = gentrification_index(panel)
    assert result["weight_coverage"].tolist() == pytest.approx([3 / 9] * 3)
    assert result["stage"].isna().all()
    assert result["index"].isna().all()
    lenient = gentrification_index(panel, min_coverage=0.3)
    assert lenient["stage"].notna().all()
    assert lenient["rent_growth_contribution"].tolist() == [0.0, 0.0, 0.0]


def test_bad_tables_and_weights_are_reported_with_their_position() -> None:
    table = TOY.astype({"rent": object})
    table.loc[3, "rent"] = "n/a"
    with pytest.raises(
        ValidationError, match=r"rent_per_m2 \('rent'\) row 3 \('n/a'\): expected a number"
    ):
        indicator_panel(table, TOY_MAPPING)
    with pytest.raises(ValidationError, match=r"row 1: dong 'A' repeats a period"):
        indicator_panel(TOY.assign(year=[2020, 2020, 2020, 2022, 2020, 2022]), TOY_MAPPING)
    with pytest.raises(ValidationError, match=r"unknown indicator 'rents'"):
        gentrification_index(indicator_panel(TOY, TOY_MAPPING), weights={"rents": 1.0})


def test_the_map_is_a_choropleth_of_all_four_stages(
    districts: gpd.GeoDataFrame, demo: tuple[pd.DataFrame, ...], tmp_path: Path
) -> None:
    path = render_gentrification_map(tmp_path / "stages.png", districts, demo[2])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(path)[..., :3]
    counts = {c: int(np.all(np.abs(pixels - colors.to_rgb(c)) < 2 / 255, axis=-1).sum())
              for c in STAGE_COLOURS}  # fmt: skip
    stage_counts = demo[2]["stage"].value_counts()
    assert all(counts[STAGE_COLOURS[s]] > 500 for s in stage_counts.index)
    assert counts[STAGE_COLOURS[0]] > counts[STAGE_COLOURS[3]]  # most dong are stable


def test_geojson_is_rfc7946_and_matches_geopandas(
    districts: gpd.GeoDataFrame, demo: tuple[pd.DataFrame, ...]
) -> None:
    collection = gentrification_geojson(districts, demo[2])
    json.dumps(collection, allow_nan=False)
    features = _features(collection)
    assert collection["type"] == "FeatureCollection"
    assert len(features) == len(demo[2])
    reference = districts[districts["level"] == "dong"].to_crs("EPSG:4326").set_index("code")
    for feature in features:
        shape = shapely.geometry.shape(feature["geometry"])
        code = feature["properties"]["code"]
        assert shape.normalize().equals_exact(reference.geometry[code].normalize(), 1e-9)
        assert feature["properties"]["stage"] == demo[2].loc[code, "stage"]
        assert feature["properties"]["stage_name"] == demo[2].loc[code, "stage_name"]


def _features(collection: dict[str, object]) -> list[dict[str, Any]]:
    """The features, after checking RFC 7946 shells: valid, counter-clockwise, holes clockwise."""
    features = cast(list[dict[str, Any]], collection["features"])
    for feature in features:
        shape = shapely.geometry.shape(feature["geometry"])
        assert shape.is_valid, feature["properties"]
        for polygon in shapely.get_parts(shape):
            assert polygon.exterior.is_ccw
            assert not any(ring.is_ccw for ring in polygon.interiors)
    return features


def test_seoul_dong_from_kostat(shared_data: Path, tmp_path: Path) -> None:
    seoul = gpd.read_file(shared_data / KOSTAT_DONG).to_crs("EPSG:5186")
    table, truth = generate_panel(seoul, seed=2)
    result = gentrification_index(indicator_panel(table, load_mapping("demo")))
    assert len(result) == 423
    assert result["stage"].notna().all()
    assert spearmanr(result["index"], truth.loc[result.index, "intensity"]).statistic >= 0.9
    features = _features(gentrification_geojson(seoul, result))
    assert len(features) == 423
    lon, lat = shapely.get_coordinates([shapely.geometry.shape(f["geometry"]) for f in features]).T
    assert lon.min() > 126.76
    assert lon.max() < 127.19
    assert lat.min() > 37.42
    assert lat.max() < 37.70
    assert render_gentrification_map(tmp_path / "seoul.png", seoul, result).stat().st_size > 10_000


def test_dates_are_periods_in_decimal_years() -> None:
    dates = pd.to_datetime(["2020-07-01", "2022-07-01"] * 3)  # day 183 of a leap year, 182 of not
    panel = indicator_panel(TOY.assign(year=dates), TOY_MAPPING)
    span = 2 + (181 - 182) / 365.25
    rent = TOY["rent"].to_numpy()
    expected = 100 * ((rent[1::2] / rent[::2]) ** (1 / span) - 1)
    np.testing.assert_allclose(panel["rent_growth"].to_numpy(), expected, rtol=1e-12)
