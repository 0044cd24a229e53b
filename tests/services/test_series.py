"""Forecasts and noise indicators of one sensor's stored series."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from citytwin.analysis.forecast import forecast
from citytwin.errors import ValidationError
from citytwin.ingest import read_feed
from citytwin.ingest.pipeline import ingest
from citytwin.services.series import series_forecast
from citytwin.store import Store, open_store

SENSORS = ("V02Q1940790", "V02Q1940787")  # two registry serials in Jamsil
HOURS = 24 * 14


def _store(shared_data: Path, tmp_path: Path, hours: int) -> Store:
    """Hourly temperatures (S-DoT 2020 encoding (t + 100) × 10) with a daily cycle."""
    start = pd.Timestamp("2020-03-01 00:00")
    lines = ["시리얼,미세먼지2.5(초미세먼지),기온,측정시간"]  # the PM column marks the 2020 layout
    for n, serial in enumerate(SENSORS):
        for h in range(hours):
            celsius = 10 + n + 5 * math.cos(2 * math.pi * (h % 24) / 24) + 0.01 * h
            stamp = (start + pd.Timedelta(hours=h)).strftime("%Y%m%d%H%M")
            lines.append(f"{serial},12,{round((celsius + 100) * 10)},{stamp}")
    data = tmp_path / "sdot.csv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    store = open_store("memory://")
    registry = shared_data / "sdot" / "sensor_longitude_latitude.csv"
    ingest(read_feed("sdot", str(data), registry=str(registry)), store)
    return store


def test_forecast_of_one_sensor_is_the_forecaster_on_its_hourly_history(
    shared_data: Path, tmp_path: Path
) -> None:
    store = _store(shared_data, tmp_path, HOURS)
    result = series_forecast(store, "air_temperature", thing=f"sdot:{SENSORS[0]}", horizon=6)
    assert len(result.history) == HOURS
    assert result.history.index[0] == pd.Timestamp("2020-02-29 15:00", tz="UTC")  # 00:00 KST
    expected = forecast(result.history.rename(result.subject), horizon=6)
    pd.testing.assert_series_equal(result.forecast, expected)
    assert result.forecast.index[0] == result.history.index[-1] + pd.Timedelta(hours=1)
    cycle = [10 + 5 * math.cos(2 * math.pi * ((HOURS + k) % 24) / 24) + 0.01 * (HOURS + k)
             for k in range(6)]  # fmt: skip
    np.testing.assert_allclose(result.forecast.to_numpy(), cycle, atol=0.15)  # 0.1 °C steps


def test_forecast_errors_name_what_is_missing(shared_data: Path, tmp_path: Path) -> None:
    short = _store(shared_data, tmp_path, 48)
    with pytest.raises(ValidationError, match=r"48 hours .* at least 216 hours"):
        series_forecast(short, "air_temperature", thing=f"sdot:{SENSORS[0]}")
    with pytest.raises(ValidationError, match="'sdot:nobody'"):
        series_forecast(short, "air_temperature", thing="sdot:nobody")
    with pytest.raises(ValidationError, match="exactly one"):
        series_forecast(short, "air_temperature")
    with pytest.raises(ValidationError, match="citytwin bind"):
        series_forecast(short, "air_temperature", district="gu:11710")
