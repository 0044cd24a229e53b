"""Forecaster and rolling-origin backtest: a known-answer synthetic series and Seoul temperature."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from citytwin.analysis.backtest import BacktestResult, backtest, load_series_csv
from citytwin.analysis.forecast import fit_forecaster, forecast
from citytwin.errors import FeedError, ValidationError

WEATHER = "weather/seoul_hourly_weather_2017-12_2018-08.csv"


@pytest.fixture(scope="module")
def temperature(shared_data: Path) -> pd.Series[float]:
    return load_series_csv(
        str(shared_data / WEATHER), time="Date", value="Temperature(C)", date_format="%d/%m/%Y"
    )


@pytest.fixture(scope="module")
def temperature_backtest(temperature: pd.Series[float]) -> BacktestResult:
    # 30-day first window, one origin a day (23:00), refitted weekly to keep the test fast
    return backtest(temperature, horizon=24, initial=30 * 24, step=24, refit_every=7)


def test_load_weather_csv(temperature: pd.Series[float]) -> None:
    # 6,576 rows = 274 days × 24 h (PROVENANCE.md); first row 1/12/2017 hour 0, −5.2 °C
    assert len(temperature) == 6576
    assert str(temperature.index[0]) == "2017-12-01 00:00:00+09:00"
    assert str(temperature.index[-1]) == "2018-08-31 23:00:00+09:00"
    assert temperature.iloc[0] == -5.2
    assert temperature.iloc[3] == -6.2
    assert temperature.attrs["non_numeric"] == 0


def test_synthetic_sinusoid_plus_trend_known_answer() -> None:
    hours = np.arange(24 * 45)
    slope = 0.05  # per hour: the 24-h increment is 1.2
    values = 20 + slope * hours + 4 * np.sin(2 * np.pi * hours / 24 + 0.3)
    series = pd.Series(values, index=pd.date_range("2024-03-01", periods=hours.size, freq="h"))
    result = backtest(series, horizon=24, initial=24 * 30)
    table = result.table
    np.testing.assert_allclose(table["model_mae"], 0.0, atol=1e-4)  # ridge bias only
    # seasonal naive misses exactly the trend over 24 h; persistence misses trend and cycle
    np.testing.assert_allclose(table["seasonal_naive_mae"], 24 * slope, atol=1e-9)
    np.testing.assert_allclose(table["seasonal_naive_rmse"], 24 * slope, atol=1e-9)
    origin_phase = 2 * np.pi * 23 / 24 + 0.3  # every origin is at 23:00
    h = np.arange(1, 25)
    expected = np.abs(
        slope * h + 4 * (np.sin(origin_phase + 2 * np.pi * h / 24) - np.sin(origin_phase))
    )
    np.testing.assert_allclose(table["persistence_mae"], expected, atol=1e-9)
    assert len(result.origins) == 15
    assert result.skipped_missing_target == 0


def test_gaps_are_counted_not_dropped() -> None:
    hours = np.arange(24 * 40)
    values = 10 + np.cos(2 * np.pi * hours / 24)
    series = pd.Series(values, index=pd.date_range("2024-01-01", periods=hours.size, freq="h"))
    series = series.drop(series.index[24 * 33 + 5])  # a target hour of the origin 2024-02-02 23:00
    result = backtest(series, horizon=24, initial=24 * 30)
    assert result.skipped_missing_target == 1
    # the next origin's seasonal-naive needs that hour too: skipped as a history gap
    assert result.skipped_gap_in_history == 1
    assert len(result.origins) == 10 - 2
    summary = json.loads(json.dumps(result.to_dict()))
    assert summary["origins_skipped_missing_target"] == 1
    assert [row["horizon"] for row in summary["by_horizon"]] == list(range(1, 25))


def test_forecast_index_and_values_of_a_cycle() -> None:
    t = pd.date_range("2024-01-01", periods=24 * 21, freq="h", tz="Asia/Seoul")
    cycle = pd.Series(5 + 2 * np.cos(2 * np.pi * t.hour / 24), index=t)
    ahead = forecast(cycle, horizon=24)
    assert ahead.index[0] == t[-1] + pd.Timedelta(hours=1)
    assert len(ahead) == 24
    np.testing.assert_allclose(
        ahead.to_numpy(), 5 + 2 * np.cos(2 * np.pi * np.arange(24) / 24), atol=1e-4
    )


def test_temperature_backtest_beats_baselines(temperature_backtest: BacktestResult) -> None:
    result = temperature_backtest
    table = result.table
    assert len(result.origins) == 274 - 30  # one origin a day from day 30, none skipped
    # short horizons: far better than both baselines
    assert result.skill(1) >= 0.8
    assert result.skill(1, baseline="persistence") >= 0.4
    assert result.skill(6) >= 0.5
    assert result.skill(6, baseline="persistence") >= 0.4
    # averaged over horizons 1–24, at least 20 % below seasonal naive
    overall = result.overall
    assert overall["model_mae"] <= 0.8 * overall["seasonal_naive_mae"]
    # at h = 24 the model stays within 5 % of seasonal naive (= persistence there)
    last = table.to_dict("records")[-1]
    assert last["seasonal_naive_mae"] == last["persistence_mae"]
    assert last["model_mae"] <= 1.05 * last["seasonal_naive_mae"]


@pytest.mark.xfail(
    strict=True,
    reason="no model on information at the origin reaches it: univariate h=24 MAE 2.35 °C vs "
    "seasonal-naive 2.32 °C; best with covariates (dew-point depression and wind: origin "
    "anomalies and 3/12/24-h tendencies) 2.18 °C, skill +6 % (+3 % over all 24 origin hours); "
    "per-hour-of-day models, season/day-of-year terms, Huber loss and k-NN analogues did not "
    "do better. 20 % needs the next 24-h mean known to ~1.5 °C (sd of its change: 2.6 °C)",
)
def test_temperature_acceptance_criterion_h24(temperature_backtest: BacktestResult) -> None:
    assert temperature_backtest.skill(24) >= 0.2


def test_csv_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "obs.csv"
    path.write_text("일시,시,기온\n2024-01-01,1,3.5\n2024-01-01,2,x\n2024-01-01,24,4.0\n", "cp949")
    series = load_series_csv(str(path), time="일시", value="기온")  # 시 found by name
    assert [str(t) for t in series.index] == [
        "2024-01-01 01:00:00+09:00",
        "2024-01-01 02:00:00+09:00",
        "2024-01-02 00:00:00+09:00",
    ]
    assert series.attrs["non_numeric"] == 1
    assert np.isnan(series.iloc[1])
    with pytest.raises(FeedError, match=r"obs.csv:1: no column\(s\) 'temp'"):
        load_series_csv(str(path), time="일시", value="temp")
    path.write_text("time,v\n2024-01-01T00:00,1\n01/02/2024 x,2\n", "utf-8")
    with pytest.raises(FeedError, match=r"obs.csv:3: column 'time': '01/02/2024 x' is not a time"):
        load_series_csv(str(path), time="time", value="v")
    path.write_text("time,v\n2024-01-01T00:00,1\n2024-01-01T01:00,2\n2024-01-01T00:00,3\n", "utf-8")
    with pytest.raises(FeedError, match=r"obs.csv:2: .*lines 2 and 4"):
        load_series_csv(str(path), time="time", value="v")


def test_short_history_raises() -> None:
    t = pd.date_range("2024-01-01", periods=100, freq="h")
    with pytest.raises(ValidationError, match="100 hours"):
        fit_forecaster(pd.Series(np.ones(100), index=t))
