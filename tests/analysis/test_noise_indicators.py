"""Noise indicators against hand values and against the Seoul road-noise workbooks' own cells."""

from __future__ import annotations

import math
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook

from citytwin.analysis.noise import energetic_mean, noise_indicators, noise_indicators_overall
from citytwin.errors import UnknownBackendError, ValidationError
from citytwin.ingest.noise import read_noise


def _plain_mean(levels: list[float]) -> float:
    return 10 * math.log10(sum(10 ** (v / 10) for v in levels) / len(levels))


def _sheet_hours(path: Path, sheet: int) -> dict[date, list[float]]:
    """Date → its 24 hourly cells (hour labels 1…24) read straight from the sheet."""
    workbook = load_workbook(path, read_only=True, data_only=True)
    ws = workbook.worksheets[sheet]
    ws.reset_dimensions()
    rows = list(ws.iter_rows(values_only=True))
    workbook.close()
    header = next(i for i, r in enumerate(rows) if r and str(r[1]).startswith("측정일"))
    hour_col = {int(v): c for c, v in enumerate(rows[header]) if isinstance(v, int)}
    days: dict[date, list[float]] = {}
    for row in rows[header + 1 :]:
        if row and isinstance(row[1], datetime):
            days[row[1].date()] = [float(row[hour_col[h]]) for h in range(1, 25)]  # type: ignore[arg-type]
    return days


def test_energetic_mean_hand_values() -> None:
    assert energetic_mean([60.0, 70.0]) == pytest.approx(
        10 * math.log10((1e6 + 1e7) / 2), abs=1e-12
    )
    assert energetic_mean([60.0, 70.0]) == pytest.approx(67.40362689494244, abs=1e-9)
    assert energetic_mean([55.0, 55.0, np.nan]) == pytest.approx(55.0, abs=1e-12)
    assert math.isnan(energetic_mean([np.nan, np.nan]))
    by_row = energetic_mean(np.array([[60.0, 70.0], [np.nan, np.nan], [80.0, np.nan]]), axis=1)
    np.testing.assert_allclose(by_row, [67.40362689494244, np.nan, 80.0], atol=1e-12)
    # weights are durations: 3 h at 60 dB and 1 h at 70 dB
    assert energetic_mean([60.0, 70.0], weights=[3, 1]) == pytest.approx(
        10 * math.log10((3e6 + 1e7) / 4), abs=1e-12
    )
    assert energetic_mean([300.0, 310.0]) == pytest.approx(307.40362689494244, abs=1e-9)


def test_energetic_mean_rejects_negative_weights() -> None:
    with pytest.raises(ValidationError, match="weights"):
        energetic_mean([60.0, 70.0], weights=[-1, 1])


def _station_series(shared_data: Path, station: str) -> pd.Series[float]:
    """Hourly LEQ of one station as the ingest stores it: UTC interval starts."""
    path = shared_data / "seoul_noise" / "2025-01.xlsx"
    batch = next(b for b in read_noise(str(path)) if b.readings.things[0].name.endswith(station))
    stamps = pd.to_datetime(batch.readings.time, unit="us", utc=True)
    return pd.Series(batch.readings.values["noise"], index=stamps, name=station)


def test_eu_indicators_match_workbook_cells(shared_data: Path) -> None:
    cells = _sheet_hours(shared_data / "seoul_noise" / "2025-01.xlsx", 0)  # 시청
    table = noise_indicators(_station_series(shared_data, "시청"), periods="eu")
    d, nxt = cells[date(2025, 1, 2)], cells[date(2025, 1, 3)]
    # label h = (h−1):00–h:00 KST; day 07–19 = labels 8…19; evening labels 20…23;
    # night of the 2nd = label 24 of the 2nd and labels 1…7 of the 3rd
    lday = _plain_mean(d[7:19])
    levening = _plain_mean(d[19:23])
    lnight = _plain_mean(d[23:24] + nxt[0:7])
    lden = 10 * math.log10(
        (12 * 10 ** (lday / 10) + 4 * 10 ** ((levening + 5) / 10) + 8 * 10 ** ((lnight + 10) / 10))
        / 24
    )
    row = table.loc[date(2025, 1, 2)]
    assert row["Lday"] == pytest.approx(lday, abs=1e-9)
    assert row["Levening"] == pytest.approx(levening, abs=1e-9)
    assert row["Lnight"] == pytest.approx(lnight, abs=1e-9)
    assert row["Lden"] == pytest.approx(lden, abs=1e-9)
    assert (row["hours_day"], row["hours_evening"], row["hours_night"]) == (12, 4, 8)
    assert bool(row["complete"])
    # the first evaluation day (2024-12-31) only holds hours 00–07 of 1 January: incomplete
    first = table.iloc[0]
    assert table.index[0] == date(2024, 12, 31)
    assert not first["complete"]
    assert math.isnan(first["Lden"])
    assert first["hours_night"] == 7
    # the last night (31 Jan → 1 Feb) has just 1 of its 8 hours in the January workbook
    last = table.iloc[-1]
    assert table.index[-1] == date(2025, 1, 31)
    assert not last["complete"]
    assert last["hours_night"] == 1
    assert len(table) == 32


def test_korea_indicators_and_overall_match_workbook_cells(shared_data: Path) -> None:
    cells = _sheet_hours(shared_data / "seoul_noise" / "2025-01.xlsx", 1)  # 성수
    series = _station_series(shared_data, "성수")
    table = noise_indicators(series, periods="korea")
    d, nxt = cells[date(2025, 1, 10)], cells[date(2025, 1, 11)]
    lday = _plain_mean(d[6:22])  # 06–22 KST = labels 7…22
    lnight = _plain_mean(d[22:24] + nxt[0:6])  # 22–06 = labels 23, 24 and 1…6 of the next day
    ldn = 10 * math.log10((16 * 10 ** (lday / 10) + 8 * 10 ** ((lnight + 10) / 10)) / 24)
    row = table.loc[date(2025, 1, 10)]
    assert row["Lday"] == pytest.approx(lday, abs=1e-9)
    assert row["Lnight"] == pytest.approx(lnight, abs=1e-9)
    assert row["Ldn"] == pytest.approx(ldn, abs=1e-9)
    # whole month: every 주간 hour of January (labels 7…22 of all 31 days)
    every_day = [cells[date(2025, 1, k)] for k in range(1, 32)]
    overall = noise_indicators_overall(series, periods="korea")
    assert overall["Lday"] == pytest.approx(
        _plain_mean([v for c in every_day for v in c[6:22]]), abs=1e-9
    )
    assert overall["hours_day"] == 31 * 16


def test_missing_hours_make_a_day_incomplete() -> None:
    index = pd.date_range("2025-01-01 07:00", periods=24, freq="h", tz="Asia/Seoul")
    levels = pd.Series(60.0, index=index)
    levels.iloc[[0, 1, 2, 3]] = np.nan  # 8 of 12 day hours left: < 75 %
    row = noise_indicators(levels).iloc[0]
    assert row["hours_day"] == 8
    assert not row["complete"]
    assert math.isnan(row["Lday"])
    assert math.isnan(row["Lden"])
    assert row["Lnight"] == pytest.approx(60.0, abs=1e-12)
    # same data in UTC: the periods follow the Seoul clock, not the input's zone
    utc = levels.tz_convert("UTC")
    pd.testing.assert_frame_equal(noise_indicators(utc), noise_indicators(levels))


def test_bad_inputs_raise_citytwin_errors() -> None:
    naive = pd.Series([60.0], index=pd.DatetimeIndex(["2025-01-01 07:00"]))
    with pytest.raises(ValidationError, match="tz-aware"):
        noise_indicators(naive)
    stamps = pd.DatetimeIndex(["2025-01-01 07:00", "2025-01-01 07:00"], tz="Asia/Seoul")
    with pytest.raises(ValidationError, match=r"duplicate timestamp.*position 1"):
        noise_indicators(pd.Series([60.0, 61.0], index=stamps))
    with pytest.raises(UnknownBackendError, match="eu, korea"):
        noise_indicators(pd.Series([60.0], index=stamps[:1]), periods="us")  # type: ignore[arg-type]


def test_station_indicators_for_many_stations_match_the_workbook(shared_data: Path) -> None:
    """All stations at once: the month's period levels equal the energetic means of the sheet's
    cells of those hours, and a full month covers every period."""
    from citytwin.analysis.noise import station_indicators

    series = {name: _station_series(shared_data, name) for name in ("시청",)}
    readings = pd.concat(
        pd.DataFrame({"station": name, "time": s.index, "level": s.to_numpy()})
        for name, s in series.items()
    )
    row = station_indicators(readings, periods="korea").set_index("station").loc["시청"]
    cells = _sheet_hours(shared_data / "seoul_noise" / "2025-01.xlsx", 0)
    day = [v for hours in cells.values() for v in hours[6:22]]  # labels 7…22 = 06–22 KST
    night = [v for hours in cells.values() for v in hours[:6] + hours[22:]]
    assert row["Lday"] == pytest.approx(_plain_mean(day), abs=1e-9)
    assert row["Lnight"] == pytest.approx(_plain_mean(night), abs=1e-9)
    assert row["hours_day"] == len(day)
    assert row["coverage_day"] == pytest.approx(1.0)


def test_station_indicators_average_readings_into_hours_first() -> None:
    from citytwin.analysis.noise import station_indicators

    start = pd.Timestamp("2025-01-01 08:00", tz="Asia/Seoul")
    two_minute = pd.date_range(start, periods=30, freq="2min")  # one hour at 60 dB …
    readings = pd.DataFrame(
        {
            "station": ["s"] * 31,
            "time": [*two_minute, start + pd.Timedelta(hours=1)],  # … and one reading of 70 dB
            "level": [60.0] * 30 + [70.0],
        }
    )
    row = station_indicators(readings, min_coverage=0.0).iloc[0]
    assert row["Lday"] == pytest.approx(_plain_mean([60.0, 70.0]), abs=1e-12)  # hours weigh alike
    assert row["hours_day"] == 2
    assert row["coverage_day"] == pytest.approx(1.0)  # both hours of the span are present
    assert math.isnan(row["Lden"])  # no evening or night in the span
