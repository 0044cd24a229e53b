"""TOPIS link speeds: generator → reader round trip, ingest preset, index, bottlenecks, pictures."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from PIL import Image
from pyproj import Transformer

from citytwin.analysis.topis_files import read_topis
from citytwin.analysis.traffic import congestion_index, recurring_bottlenecks
from citytwin.analysis.traffic_maps import (
    congestion_layer,
    hour_weekday_matrix,
    render_congestion_map,
    render_hour_weekday_heatmap,
)
from citytwin.emulator.topis import TopisMonth, write_topis_month
from citytwin.errors import FeedError, ValidationError
from citytwin.ingest import read_feed
from citytwin.space.democity import build_demo_city

CROSSWALK = "topis/seoul_standard_link_mapping_2020-03.xlsx"
YEAR, MONTH, DAYS = 2024, 3, 31  # March 2024: 21 weekdays, Friday the 1st


@dataclass(frozen=True)
class Month:
    """The demo links (renamed to real TOPIS ids), the written month and what the reader made."""

    links: gpd.GeoDataFrame
    month: TopisMonth
    long: pd.DataFrame
    service_links: pd.Series


@pytest.fixture(scope="module")
def crosswalk(shared_data: Path) -> pd.DataFrame:
    return pd.read_excel(shared_data / CROSSWALK, dtype=str)


@pytest.fixture(scope="module")
def generated(crosswalk: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Month:
    """Arterials in a 3 × 3 km window of the demo city, carrying real TOPIS service-link ids."""
    links = build_demo_city(buildings=0, sensors=0).roads.links
    middle = links.geometry.centroid
    x0, y0 = middle.x.median(), middle.y.median()
    window = (middle.x.between(x0 - 1500, x0 + 1500)) & (middle.y.between(y0 - 1500, y0 + 1500))
    chosen = links[window & (links["road_class"] == "primary")].reset_index(drop=True)
    service = crosswalk["서비스링크"].drop_duplicates()
    chosen["link_id"] = service.iloc[: len(chosen)].to_numpy()
    month = write_topis_month(
        tmp_path_factory.mktemp("topis"), chosen, year=YEAR, month=MONTH, seed=7,
        bottlenecks=5, incidents=12,
    )  # fmt: skip
    return Month(chosen, month, read_topis(month.path), service)


# --- reading --------------------------------------------------------------------------------------


def test_generated_ids_are_real_topis_service_links(
    crosswalk: pd.DataFrame, generated: Month
) -> None:
    """PROVENANCE: 10,555 standard links map to the TOPIS service links (서비스링크)."""
    assert len(crosswalk) == 10_555
    assert crosswalk["표준링크아이디"].is_unique
    long, links = generated.long, generated.links
    assert 100 < len(links) < len(generated.service_links)
    assert set(long["link_id"].astype(str)) == set(links["link_id"])
    assert set(long["link_id"].astype(str)) <= set(crosswalk["서비스링크"])
    assert long["link_id"].astype(str).str.fullmatch(r"1\d{9}").all()  # 10-digit TOPIS ids


def test_round_trip_keeps_every_cell(generated: Month) -> None:
    long, month = generated.long, generated.month
    assert len(long) == len(generated.links) * DAYS * 24
    assert long.attrs["rejects"] == []
    assert long["date"].nunique() == DAYS
    assert (long["date"].dt.day_of_week == long["weekday"]).all()
    order = {link: k for k, link in enumerate(month.link_ids)}
    row = long["link_id"].astype(str).map(order).to_numpy()
    day = (long["date"].dt.day - 1).to_numpy()
    expected = month.speeds[row, day, long["hour"].to_numpy()]
    np.testing.assert_array_equal(long["speed_kmh"].to_numpy(), expected)  # NaN where empty
    assert 0 < np.isnan(expected).sum() < 0.01 * expected.size
    first = long.iloc[0]
    assert (first["road"], first["distance_m"]) == (generated.links.at[0, "name"], 200.0)


def test_utf8_bom_and_32_column_layout_read_the_same(generated: Month, tmp_path: Path) -> None:
    month = write_topis_month(
        tmp_path / "utf8.csv", generated.links, year=YEAR, month=MONTH, seed=7,
        bottlenecks=5, incidents=12, encoding="utf-8-sig", classification=False,
    )  # fmt: skip
    raw = month.path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert raw.decode("utf-8-sig").splitlines()[0].count(",") == 8 + 24 - 1
    again, first = read_topis(month.path), generated.long
    assert list(again.columns) == list(first.columns)
    both = read_topis([generated.month.path, month.path])
    assert len(both) == 2 * len(first)
    assert both["link_id"].nunique() == len(generated.links)
    for column in again.columns:
        np.testing.assert_array_equal(again[column].to_numpy(), first[column].to_numpy())


def test_topis_preset_ingests_the_same_readings(generated: Month) -> None:
    """The ingest preset and read_topis agree cell by cell: 01시 of a day is 00:00–01:00 KST."""
    (batch,) = read_feed("generic", str(generated.month.path), mapping="topis")
    assert batch.rejects == []
    readings = batch.readings
    ids = np.asarray([t.properties["id"] for t in readings.things])[readings.thing_index]
    ingested = pd.DataFrame(
        {"link_id": ids, "time": readings.time, "speed": readings.values["link_speed"]}
    )
    long = generated.long.dropna(subset=["speed_kmh"])
    kst = long["date"] + pd.to_timedelta(long["hour"], unit="h") - pd.Timedelta(hours=9)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    ours = pd.DataFrame(
        {
            "link_id": long["link_id"].astype(str).to_numpy(),
            "time": (kst.dt.tz_localize(UTC) - epoch) // pd.Timedelta(microseconds=1),
            "speed": long["speed_kmh"].to_numpy(),
        }
    )
    key = ["link_id", "time"]
    left = ingested.sort_values(key).reset_index(drop=True)
    right = ours.sort_values(key).reset_index(drop=True)
    assert (
        len(left)
        == len(right)
        == generated.month.speeds.size - np.isnan(generated.month.speeds).sum()
    )
    pd.testing.assert_frame_equal(left, right, check_dtype=False)


def _damage(path: Path, target: Path) -> list[int]:
    """Break four data lines of a TOPIS file the way real exports break; return their numbers."""
    lines = path.read_bytes().decode("cp949").split("\r\n")
    cells = [line.split(",") for line in lines]
    cells[2][11 + 5] = "abc"  # a speed that is not a number
    cells[3][0] = "2024031x"  # an impossible date
    cells[4][3] = ""  # no link id
    cells[5] = cells[5][:20]  # a truncated line
    target.write_bytes("\r\n".join(",".join(c) for c in cells).encode("cp949"))
    return [3, 4, 5, 6]


def test_bad_rows_are_listed_and_good_rows_kept(generated: Month, tmp_path: Path) -> None:
    damaged = _damage(generated.month.path, tmp_path / "damaged.csv")
    long = read_topis(tmp_path / "damaged.csv")
    rejects = long.attrs["rejects"]
    assert [r.line for r in rejects] == damaged
    assert {r.source for r in rejects} == {str(tmp_path / "damaged.csv")}
    reasons = [r.reason for r in rejects]
    assert reasons[:3] == [
        "a speed cell is not a number",
        "일자 is not a date yyyymmdd",
        "link id (링크아이디) is empty",
    ]
    assert reasons[3] == "20 fields; expected 35 as in the header"
    assert len(long) == (len(generated.links) * DAYS - 4) * 24
    (batch,) = read_feed("generic", str(tmp_path / "damaged.csv"), mapping="topis")
    assert (
        sorted(r.line or 0 for r in batch.rejects) == damaged
    )  # the preset refuses the same lines


def test_a_missing_hour_column_is_a_feed_error(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    header = "일자,요일,도로명,링크아이디,시점명,종점명,거리,방향," + ",".join(
        f"{h:02d}시" for h in range(1, 24)
    )
    path.write_bytes((header + "\r\n").encode("cp949"))
    with pytest.raises(FeedError, match=r"short\.csv:1: column\(s\) 24시 of the TOPIS layout"):
        read_topis(path)


# --- index and bottlenecks ------------------------------------------------------------------------


def test_congestion_index_matches_an_independent_pandas_computation(generated: Month) -> None:
    long = generated.long.assign(link_id=generated.long["link_id"].astype(str))
    index = congestion_index(long)
    free = long.groupby("link_id")["speed_kmh"].quantile(0.9)
    cells = long.assign(ratio=long["speed_kmh"] / long["link_id"].map(free))
    cells["congested"] = 1 - cells["ratio"] >= 0.7
    expected = cells.groupby(["link_id", "weekday", "hour"]).agg(
        mean=("speed_kmh", "mean"), days=("speed_kmh", "count"), hit=("congested", "sum")
    )
    got = index.set_index(["link_id", "weekday", "hour"]).loc[expected.index]
    assert len(index) == len(generated.links) * 7 * 24
    np.testing.assert_allclose(got["mean_speed_kmh"], expected["mean"], rtol=1e-12)
    np.testing.assert_array_equal(got["days"], expected["days"])
    np.testing.assert_array_equal(got["congested_days"], expected["hit"])
    free_of_cell = expected.index.get_level_values("link_id").map(free.to_dict())
    np.testing.assert_allclose(
        got["congestion_index"], (1 - expected["mean"] / free_of_cell).clip(0, 1)
    )
    levels = pd.cut(
        expected["mean"], [0, 15, 30, np.inf], right=False, labels=["congested", "slow", "smooth"]
    )
    levels = levels.astype(str).where(
        expected["mean"] != 30, "slow"
    )  # TOPIS: 서행 is 15–30 inclusive
    assert (got["level"].to_numpy() == levels.to_numpy()).all()


def test_planted_bottlenecks_are_found_and_incidents_are_not(generated: Month) -> None:
    found = recurring_bottlenecks(generated.long)
    planted: dict[str, tuple[int, ...]] = dict(
        zip(
            generated.month.bottlenecks["link_id"],
            generated.month.bottlenecks["hours"],
            strict=True,
        )
    )
    incidents = set(generated.month.incidents["link_id"])
    hits = set(found["link_id"]) & set(planted)
    precision, recall = len(hits) / len(found), len(hits) / len(planted)
    assert (precision, recall) == (1.0, 1.0)
    assert not incidents & set(found["link_id"])
    for link, hours, weekdays, per_week in found[
        ["link_id", "hours", "weekdays", "hours_per_week"]
    ].itertuples(index=False):
        assert hours == planted[link]
        assert weekdays == ("Mon", "Tue", "Wed", "Thu", "Fri")
        assert per_week == 5 * len(planted[link])
    assert found["score"].is_monotonic_decreasing


def test_a_single_incident_is_congested_but_not_recurring(generated: Month) -> None:
    """The incident cells do cross the threshold on their day, yet on one week only."""
    index = congestion_index(generated.long)
    incident = generated.month.incidents.iloc[0]
    cell = index[
        (index["link_id"] == incident["link_id"])
        & (index["weekday"] == incident["date"].day_of_week)
        & (index["hour"] == incident["hours"][0])
    ].iloc[0]
    weeks = pd.date_range("2024-03-01", "2024-03-31").day_of_week == incident["date"].day_of_week
    assert cell["congested_days"] <= 1
    assert cell["days"] <= weeks.sum()
    assert cell["congested_share"] < 0.75


# --- pictures and layer ---------------------------------------------------------------------------


def test_heatmap_png_and_its_length_weighted_matrix(generated: Month, tmp_path: Path) -> None:
    index = congestion_index(generated.long)
    matrix = hour_weekday_matrix(index)
    weighted = index.assign(w=index["distance_m"] * index["congestion_index"])
    sums = weighted.groupby(["weekday", "hour"])[["w", "distance_m"]].sum()
    np.testing.assert_allclose(matrix.ravel(), (sums["w"] / sums["distance_m"]).to_numpy())
    assert matrix[0, 8] > matrix[0, 3]  # Monday rush hour over the night
    assert matrix[0, 8] > matrix[6, 8]  # and over Sunday morning
    path = render_hour_weekday_heatmap(tmp_path / "heat.png", index)
    with Image.open(path) as image:
        assert image.size == (1000, 400)
        pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50


def test_congestion_layer_is_geojson_with_one_feature_per_link(generated: Month) -> None:
    index = congestion_index(generated.long)
    bottleneck = generated.month.bottlenecks.iloc[0]
    hour = bottleneck["hours"][-1]
    layer = congestion_layer(index, generated.links, weekday="Tue", hour=hour)
    text = json.dumps(layer, allow_nan=False)
    assert json.loads(text)["type"] == "FeatureCollection"
    features = layer["features"]
    assert isinstance(features, list)
    assert len(features) == len(generated.links)
    by_id = {f["properties"]["link_id"]: f for f in features}
    assert by_id[bottleneck["link_id"]]["properties"]["level"] == "congested"
    first = generated.links.iloc[0]
    to_wgs84 = Transformer.from_crs("EPSG:5186", "EPSG:4326", always_xy=True)
    x, y = shapely.get_coordinates(first.geometry)[0]
    lon, lat = by_id[first["link_id"]]["geometry"]["coordinates"][0]
    assert (lon, lat) == pytest.approx(to_wgs84.transform(x, y), abs=1e-9)
    assert 126 < lon < 128
    assert 37 < lat < 38
    expected = index[
        (index["link_id"] == first["link_id"]) & (index["weekday"] == 1) & (index["hour"] == hour)
    ]
    assert by_id[first["link_id"]]["properties"]["mean_speed_kmh"] == pytest.approx(
        expected["mean_speed_kmh"].iloc[0]
    )


def test_congestion_map_png(generated: Month, tmp_path: Path) -> None:
    index = congestion_index(generated.long)
    path = render_congestion_map(tmp_path / "map.png", index, generated.links, weekday="월", hour=8)
    with Image.open(path) as image:
        assert image.size == (800, 800)
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    orange = (np.abs(pixels.astype(int) - [0xFD, 0xAE, 0x61]).sum(axis=1) < 10).sum()
    assert orange > 100  # Monday 08–09 is slow (서행) across the arterials


def test_layer_arguments_are_checked(generated: Month) -> None:
    index = congestion_index(generated.long)
    with pytest.raises(ValidationError, match="weekday='Mo'"):
        congestion_layer(index, generated.links, weekday="Mo", hour=8)
    with pytest.raises(ValidationError, match="hour=24"):
        congestion_layer(index, generated.links, weekday=0, hour=24)
    with pytest.raises(ValidationError, match="with a CRS"):
        congestion_layer(index, pd.DataFrame(generated.links), weekday=0, hour=8)
