"""``citytwin analyze …`` on a small demo store: maps, hotspots, anomalies, noise, backtest."""

from __future__ import annotations

import json
import math
from pathlib import Path

import duckdb
import numpy as np
import pytest
import rasterio
import shapely
from PIL import Image
from typer.testing import CliRunner

from citytwin.analysis.grid import Grid
from citytwin.cli import app
from citytwin.model.quality import Flag
from citytwin.space.crs import to_wgs84
from citytwin.store import open_store
from citytwin.twin.fields import district_outlines
from citytwin.twin.state import SUSPECT

runner = CliRunner()


@pytest.fixture
def demo(demo_store: str) -> str:
    return demo_store


def _window_means(store_url: str, minutes: int = 60) -> dict[str, float]:
    """Each S-DoT sensor's mean PM2.5 over the last hour, straight from the DuckDB file."""
    path = store_url.removeprefix("duckdb:///")
    with duckdb.connect(path, read_only=True) as con:
        rows = con.execute(
            """WITH pm AS (SELECT o.*, d.thing_id FROM observations o JOIN datastreams d
                           ON d.id = o.datastream_id WHERE d.observed_property = 'pm25'),
                    edge AS (SELECT date_trunc('minute', max(phenomenon_time))
                             + INTERVAL 1 MINUTE AS stop FROM pm)
               SELECT t.key, avg(result) FROM pm, edge JOIN things t ON t.id = pm.thing_id
               WHERE phenomenon_time >= stop - to_minutes(?) AND phenomenon_time < stop
                 AND (quality & ?) = 0 GROUP BY t.key""",
            [minutes, SUSPECT],
        ).fetchall()
    return {key: float(mean) for key, mean in rows}


def test_map_as_geotiff_png_and_contours(demo: str, tmp_path: Path) -> None:
    tif = tmp_path / "pm25.tif"
    result = runner.invoke(app, ["analyze", "map", "-p", "pm25", "--out", str(tif), "-s", demo])
    assert result.exit_code == 0, result.output
    with open_store(demo) as store:
        districts = district_outlines(store)
    assert districts is not None
    grid = Grid.covering(tuple(districts.total_bounds), cell=100.0)
    means = _window_means(demo)
    with rasterio.open(tif) as raster:
        assert raster.crs.to_epsg() == 5186
        assert tuple(raster.transform)[:6] == grid.transform
        assert raster.descriptions == ("mean", "variance")
        mean, variance = raster.read(1), raster.read(2)
    x, y = grid.centres()
    inside = shapely.contains_xy(shapely.union_all(districts.geometry.values), x, y)
    assert np.array_equal(np.isfinite(mean), inside)  # NaN exactly outside the city
    spread = max(means.values()) - min(means.values())
    assert min(means.values()) - 0.1 * spread <= np.nanmin(mean)
    assert np.nanmax(mean) <= max(means.values()) + 0.1 * spread
    assert np.nanmin(variance) >= 0
    assert f"from {len(means)} sensors" in " ".join(result.output.split())

    png = tmp_path / "pm25.png"
    assert (
        runner.invoke(app, ["analyze", "map", "-p", "pm25", "-o", str(png), "-s", demo]).exit_code
        == 0
    )
    with Image.open(png) as picture:
        assert picture.size == (1200, 1000)

    contours = tmp_path / "pm25.geojson"
    args = ["analyze", "map", "-p", "pm25", "-o", str(contours), "--method", "idw", "-s", demo]
    assert runner.invoke(app, args).exit_code == 0
    collection = json.loads(contours.read_text(encoding="utf-8"))
    assert collection["type"] == "FeatureCollection"
    west, south = to_wgs84(*grid.bounds[:2])
    east, north = to_wgs84(*grid.bounds[2:])
    for feature in collection["features"]:
        shape = shapely.geometry.shape(feature["geometry"])
        assert shape.is_valid
        minx, miny, maxx, maxy = shape.bounds
        assert west - 1e-3 <= minx <= maxx <= east + 1e-3
        assert south - 1e-3 <= miny <= maxy <= north + 1e-3


def test_map_at_a_chosen_time_with_an_explicit_format(demo: str, tmp_path: Path) -> None:
    out = tmp_path / "noon.tif"
    args = ["analyze", "map", "--property", "pm25", "--at", "2020-03-15T12:00+09:00",
            "--window", "2", "--format", "tif", "--out", str(out), "-s", demo]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2020-03-15 01:00–03:00 UTC" in " ".join(result.output.split())  # 10–12 KST
    with rasterio.open(out) as raster:
        assert raster.driver == "GTiff"


def test_hotspots_by_district_as_geojson(demo: str, tmp_path: Path) -> None:
    out = tmp_path / "hot.geojson"
    args = ["analyze", "hotspots", "-p", "pm25", "--by", "dong", "-o", str(out), "-s", demo]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    features = json.loads(out.read_text(encoding="utf-8"))["features"]
    with open_store(demo) as store:
        dongs = district_outlines(store, level="dong")
    assert dongs is not None
    assert 0 < len(features) <= len(dongs)
    labels = {f["properties"]["label"] for f in features}
    allowed = {"not significant"} | {
        f"{kind} spot {level}%" for kind in ("hot", "cold") for level in (90, 95, 99)
    }
    assert labels <= allowed
    for feature in features:
        z, p = feature["properties"]["z"], feature["properties"]["p_analytic"]
        assert p == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), abs=1e-9)  # two-sided normal


def test_anomalies_label_every_range_flagged_reading_a_fault(demo: str, tmp_path: Path) -> None:
    out = tmp_path / "episodes.csv"
    result = runner.invoke(app, ["analyze", "anomalies", "-p", "pm25", "-o", str(out), "-s", demo])
    assert result.exit_code == 0, result.output
    from citytwin.services.analyses import sensor_anomalies

    with open_store(demo) as store:
        found, sensors = sensor_anomalies(store, "pm25")
        path = demo.removeprefix("duckdb:///")
    with duckdb.connect(path, read_only=True) as con:
        flagged = con.execute(
            """SELECT count(*) FROM observations o JOIN datastreams d ON d.id = o.datastream_id
               WHERE d.observed_property = 'pm25' AND (o.quality & ?) != 0""",
            [int(Flag.RANGE)],
        ).fetchone()
    assert flagged is not None
    assert found.counts()["fault"] >= flagged[0] > 0
    assert len(sensors) == found.labels.shape[0]
    assert out.read_text(encoding="utf-8").startswith("kind,start,end")
    picture = tmp_path / "anomalies.png"
    args = ["analyze", "anomalies", "-p", "pm25", "-o", str(picture), "-s", demo]
    assert runner.invoke(app, args).exit_code == 0
    with Image.open(picture) as image:
        assert image.size == (1200, 1000)


def test_bad_inputs_are_one_line_errors(demo: str, tmp_path: Path) -> None:
    wrong = runner.invoke(
        app, ["analyze", "map", "-p", "pm99", "-o", str(tmp_path / "x.png"), "-s", demo]
    )
    assert wrong.exit_code == 2
    assert "'pm99'" in wrong.output
    assert "pm25" in wrong.output
    naive = runner.invoke(
        app, ["analyze", "map", "-p", "pm25", "--at", "2020-03-15T14:00", "-s", demo]
    )
    assert naive.exit_code == 2
    assert "add a zone" in naive.output
    suffix = runner.invoke(
        app, ["analyze", "map", "-p", "pm25", "-o", str(tmp_path / "x.bmp"), "-s", demo]
    )
    assert suffix.exit_code == 2
    assert "expected .png, .tif or .geojson" in " ".join(suffix.output.split())


def test_noise_indicators_equal_energetic_means_of_the_stored_hours(
    demo: str, tmp_path: Path
) -> None:
    picture = tmp_path / "noise.png"
    args = ["analyze", "noise", "--periods", "korea", "-o", str(picture), "-s", demo]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    with Image.open(picture) as image:
        assert image.size == (1200, 1000)
    from citytwin.services.series import noise_report

    with open_store(demo) as store:
        report = noise_report(store, periods="korea").set_index("thing")
    thing = str(report.index[0])
    with duckdb.connect(demo.removeprefix("duckdb:///"), read_only=True) as con:
        hours = con.execute(
            """SELECT hour(date_trunc('hour', o.phenomenon_time) + INTERVAL 9 HOUR) AS kst,
                      avg(pow(10, o.result / 10)) AS energy
               FROM observations o JOIN datastreams d ON d.id = o.datastream_id
               JOIN things t ON t.id = d.thing_id
               WHERE t.key = ? AND d.observed_property = 'noise' AND (o.quality & ?) = 0
               GROUP BY date_trunc('hour', o.phenomenon_time)""",
            [thing, SUSPECT],
        ).fetchall()
    day = [energy for kst, energy in hours if 6 <= kst < 22]
    night = [energy for kst, energy in hours if not 6 <= kst < 22]
    assert report.loc[thing, "Lday"] == pytest.approx(10 * math.log10(sum(day) / len(day)))
    assert report.loc[thing, "Lnight"] == pytest.approx(10 * math.log10(sum(night) / len(night)))
    assert report.loc[thing, "hours_day"] == len(day)


def test_backtest_prints_json_per_horizon(shared_data: Path, tmp_path: Path) -> None:
    weather = shared_data / "weather" / "seoul_hourly_weather_2017-12_2018-08.csv"
    args = ["analyze", "backtest", str(weather), "--time", "Date", "--value", "Temperature(C)",
            "--date-format", "%d/%m/%Y", "--horizon", "24", "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    rows = summary["by_horizon"]
    assert [row["horizon"] for row in rows] == list(range(1, 25))
    model = sum(row["model_mae"] for row in rows) / 24
    seasonal = sum(row["seasonal_naive_mae"] for row in rows) / 24
    assert model <= 0.8 * seasonal  # the day-ahead forecast beats seasonal-naive by ≥ 20 %
    assert rows[0]["model_mae"] < rows[0]["persistence_mae"]
    unknown = runner.invoke(app, ["analyze", "backtest", str(weather), "--time", "When",
                                  "--value", "Temperature(C)"])  # fmt: skip
    assert unknown.exit_code == 2
    assert "When" in unknown.output
    plot = tmp_path / "backtest.png"
    args = ["analyze", "backtest", str(weather), "--time", "Date", "--value", "Temperature(C)",
            "--date-format", "%d/%m/%Y", "--plot", str(plot)]  # fmt: skip
    assert runner.invoke(app, args).exit_code == 0
    with Image.open(plot) as image:
        assert image.size == (1200, 600)


def test_traffic_and_gentrification_reports(demo: str, tmp_path: Path) -> None:
    """The demo's own TOPIS month and dong panel (written beside its store) analysed again."""
    import pandas as pd

    folder = Path(demo.removeprefix("duckdb:///")).parent
    month = next(folder.glob("*차량통행속도.csv"))
    result = runner.invoke(
        app, ["analyze", "traffic", str(month), "-o", str(tmp_path / "t"), "-s", demo]
    )
    assert result.exit_code == 0, result.output
    index = pd.read_csv(tmp_path / "t" / "congestion_index.csv.gz", dtype={"link_id": str})
    raw = pd.read_csv(month, encoding="cp949", dtype={"링크아이디": str})
    assert index["link_id"].nunique() == raw["링크아이디"].nunique()
    layer = json.loads((tmp_path / "t" / "congestion_Mon_08h.geojson").read_text(encoding="utf-8"))
    assert len(layer["features"]) == raw["링크아이디"].nunique()  # every link drawn from the store

    panel = folder / "dong_panel.csv"
    out = tmp_path / "g"
    result = runner.invoke(
        app, ["analyze", "gentrification", str(panel), "-o", str(out), "-s", demo]
    )
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out / "gentrification_index.csv")
    dongs = pd.read_csv(panel, encoding="utf-8-sig").iloc[:, 0].nunique()
    assert len(scores) == dongs
    assert set(scores["stage_name"].dropna()) <= {"stable", "early", "progressing", "advanced"}
    stages = json.loads((out / "gentrification.geojson").read_text(encoding="utf-8"))
    assert len(stages["features"]) == dongs
