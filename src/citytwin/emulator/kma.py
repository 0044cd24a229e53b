"""KMA hourly observations (ASOS/AWS) in the layout of the KMA data portal.

Station values come from the same city weather as the S-DoT sensors (same seed, same weather),
shifted for each station's height and latitude; AWS stations leave the synoptic columns empty.
KMA's own QC marks (QC플래그) are simulated too, and values it marks as errors are labelled
``source``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from citytwin.emulator.faults import FaultLabels
from citytwin.emulator.processes import (
    F64,
    I64,
    Mask,
    kst_minute,
    random_stream,
    text_times,
    utc_micros,
)
from citytwin.emulator.sdot import (
    WrittenFeed,
    string_column,
    value_column,
    write_header,
    write_rows,
)
from citytwin.emulator.sensors import MAGNUS_A, MAGNUS_B, as_column
from citytwin.emulator.sites import SEOUL_STATIONS, Station
from citytwin.emulator.weather import city_state, simulate_weather

KMA_HEADER: Final = (
    "지점", "지점명", "일시", "기온(°C)", "기온 QC플래그", "강수량(mm)", "강수량 QC플래그",
    "풍속(m/s)", "풍속 QC플래그", "풍향(16방위)", "풍향 QC플래그", "습도(%)", "습도 QC플래그",
    "증기압(hPa)", "이슬점온도(°C)", "현지기압(hPa)", "현지기압 QC플래그", "해면기압(hPa)",
    "해면기압 QC플래그", "일조(hr)", "일조 QC플래그", "일사(MJ/m2)", "일사 QC플래그", "적설(cm)",
    "3시간신적설(cm)", "전운량(10분위)", "중하층운량(10분위)", "운형(운형약어)", "최저운고(100m )",
    "시정(10m)", "지면상태(지면상태코드)", "현상번호(국내식)", "지면온도(°C)", "지면온도 QC플래그",
    "5cm 지중온도(°C)", "10cm 지중온도(°C)", "20cm 지중온도(°C)", "30cm 지중온도(°C)",
)  # fmt: skip
# value columns with a vocabulary property: header → (property, decimals)
KMA_VALUES: Final = {
    "기온(°C)": ("air_temperature", 1), "강수량(mm)": ("precipitation", 1),
    "풍속(m/s)": ("wind_speed", 1), "풍향(16방위)": ("wind_direction", 0),
    "습도(%)": ("relative_humidity", 0), "증기압(hPa)": ("vapour_pressure", 1),
    "이슬점온도(°C)": ("dew_point_temperature", 1), "현지기압(hPa)": ("air_pressure", 1),
    "해면기압(hPa)": ("sea_level_pressure", 1), "일조(hr)": ("sunshine_duration", 1),
    "일사(MJ/m2)": ("solar_radiation", 2), "적설(cm)": ("snow_depth", 1),
    "전운량(10분위)": ("cloud_cover", 0), "시정(10m)": ("visibility", 0),
    "지면온도(°C)": ("ground_temperature", 1),
}  # fmt: skip
_SUSPECT: Final = {  # values KMA's QC may mark as errors, and how wrong they are
    "기온(°C)": 8.0,
    "풍속(m/s)": 6.0,
    "습도(%)": 30.0,
    "현지기압(hPa)": 12.0,
    "해면기압(hPa)": 12.0,
    "지면온도(°C)": 10.0,
}


def _compass(direction: F64, speed: F64) -> F64:
    """16-point direction as KMA writes it: 22.5° steps rounded half-up to 10°, north 360,
    calm (< 0.3 m/s) 0."""
    point = np.mod(np.rint(direction / 22.5), 16) * 22.5
    tens = np.floor(point / 10 + 0.5) * 10
    out: F64 = np.where(speed < 0.3, 0.0, np.where(tens == 0, 360.0, tens))
    return out


def _kma_fields(stations: Sequence[Station], minutes: I64, seed: int) -> dict[str, F64]:
    """Hourly station values (hours, stations) from the same city weather as the sensors."""
    weather = simulate_weather(int(minutes[0]), len(minutes), seed)
    city = city_state(weather, minutes)
    before = city_state(weather, minutes - 30)  # mid-point of the hour just ended
    rng = random_stream(seed, 5)
    n = len(stations)
    height = np.array([s.height for s in stations])
    lat = np.array([s.lat for s in stations])
    temp = (
        as_column(city.temperature)
        - 0.0065 * (height - 40)
        + 0.45 * (lat.mean() - lat) / 0.135
        + rng.normal(0, 0.4, n)
        + rng.normal(0, 0.2, (len(minutes), n))
    )
    dew = np.minimum(as_column(city.dew_point) + rng.normal(0, 0.3, n), temp - 0.5)
    speed = np.maximum(
        as_column(city.wind)
        * rng.uniform(0.6, 1.3, n)
        * np.exp(rng.normal(0, 0.2, (len(minutes), n))),
        0.0,
    )
    sea = as_column(city.pressure) + rng.normal(0, 0.3, n)
    rain = as_column(np.interp(minutes - 60, weather.knots, weather.rain)) * np.exp(
        rng.normal(0, 0.4, (len(minutes), n))
    )
    sun_up = as_column(before.sin_sun) > 0.0
    return {
        "temp": temp,
        "dew": dew,
        "speed": speed,
        "rain": np.where(rain >= 0.05, rain, np.nan),
        "direction": _compass(
            np.mod(as_column(city.direction) + rng.normal(0, 15, (len(minutes), n)), 360), speed
        ),
        "rh": 100 * np.exp(MAGNUS_A * dew / (MAGNUS_B + dew) - MAGNUS_A * temp / (MAGNUS_B + temp)),
        "vapour": 6.112 * np.exp(MAGNUS_A * dew / (MAGNUS_B + dew)),
        "sea": sea,
        "local": sea * np.exp(-height / (29.27 * (temp + 273.15))),
        "sunshine": np.where(
            sun_up,
            as_column((1 - before.cloud) ** 1.5 * np.clip(before.sin_sun * 10, 0, 1)),
            np.nan,
        ),
        "solar": np.where(sun_up, as_column(before.ghi * 0.0036), np.nan),
        "cloud": np.broadcast_to(as_column(np.rint(city.cloud * 10)), temp.shape),
        "visibility": np.broadcast_to(
            as_column(np.rint((20000 * np.exp(-city.pm25 / 60) + 500) / 10)), temp.shape
        ),
        "ground": temp + as_column(0.012 * city.ghi) - 1.5 * as_column(city.night),
    }


def write_kma_hourly(
    path: str | Path,
    stations: Sequence[Station] | None,
    start: datetime,
    hours: int,
    *,
    seed: int = 0,
    suspect_rate: float = 0.002,
    missing_rate: float = 0.002,
    encoding: str = "cp949",
) -> WrittenFeed:
    """KMA hourly observations in the data portal's layout (``OBS_ASOS_TIM_*``).

    One row per station and hour (station-major), values from the same city weather as the S-DoT
    writers with the same seed. AWS stations (number ≥ 300) leave the synoptic columns (cloud,
    visibility, sunshine, radiation, soil temperatures) empty; precipitation and snow are empty
    when there is none, radiation and sunshine at night, as in real portal files. QC플래그 is empty
    for a normal value, 9 for a missing one (empty value) and 1 for an error; error values are
    labelled ``source``.

    Parameters
    ----------
    path
        Output file (overwritten).
    stations
        From :func:`load_stations`; None for :data:`SEOUL_STATIONS`.
    start
        First hour (naive: KST).
    hours
        Number of hours.
    seed
        Shared with the S-DoT writers for consistent weather.
    suspect_rate, missing_rate
        Share of flagged values that KMA's QC marks as error (1) or missing (9).
    encoding
        ``cp949`` like the portal, or ``utf-8``/``utf-8-sig``.

    Returns
    -------
    WrittenFeed
    """
    stations = list(SEOUL_STATIONS if stations is None else stations)
    minutes = kst_minute(start) // 60 * 60 + 60 * np.arange(hours, dtype=np.int64)
    fields = _kma_fields(stations, minutes, seed)
    asos = np.array([s.asos for s in stations])
    cells = _kma_cells(fields, asos)
    rng = random_stream(seed, 6)
    flags, labels = _kma_flags(rng, cells, suspect_rate, missing_rate, utc_micros(minutes))
    table = _kma_table(stations, minutes, cells, flags)
    out = Path(path)
    with out.open("wb") as handle:
        write_header(handle, KMA_HEADER, encoding)
        write_rows(handle, table, encoding)
    values = sum(int(np.count_nonzero(~np.isnan(cells[h]))) for h in KMA_VALUES)
    return WrittenFeed(out, len(stations) * hours, values, labels)


def _kma_cells(f: dict[str, F64], asos: Mask) -> dict[str, F64]:
    """Value columns (hours, stations), rounded as KMA writes them; NaN = empty."""

    def synoptic(x: F64) -> F64:
        out: F64 = np.where(asos, x, np.nan)
        return out

    soil = f["temp"].mean(axis=0, keepdims=True)
    cells = {
        "기온(°C)": f["temp"],
        "강수량(mm)": f["rain"],
        "풍속(m/s)": f["speed"],
        "풍향(16방위)": f["direction"],
        "습도(%)": np.clip(f["rh"], 1, 100),
        "증기압(hPa)": f["vapour"],
        "이슬점온도(°C)": f["dew"],
        "현지기압(hPa)": f["local"],
        "해면기압(hPa)": f["sea"],
        "일조(hr)": synoptic(f["sunshine"]),
        "일사(MJ/m2)": synoptic(f["solar"]),
        "적설(cm)": np.full(f["temp"].shape, np.nan),
        "전운량(10분위)": synoptic(f["cloud"]),
        "시정(10m)": synoptic(f["visibility"]),
        "지면온도(°C)": synoptic(f["ground"]),
        "중하층운량(10분위)": synoptic(np.rint(f["cloud"] * 0.7)),
        "최저운고(100m )": synoptic(np.where(f["cloud"] >= 3, 8 + f["cloud"], np.nan)),
        **{
            f"{d}cm 지중온도(°C)": synoptic(soil + (f["ground"] - soil) * math.exp(-d / 8))
            for d in (5, 10, 20, 30)
        },
    }
    decimals = {h: d for h, (_, d) in KMA_VALUES.items()}
    return {h: np.round(x, decimals.get(h, 1)) for h, x in cells.items()}


def _kma_flags(
    rng: np.random.Generator, cells: dict[str, F64], suspect: float, missing: float, time: I64
) -> tuple[dict[str, NDArray[np.int64]], FaultLabels]:
    """QC marks per flagged column (0 none, 1 error, 9 missing), applied to ``cells`` in place."""
    flags: dict[str, NDArray[np.int64]] = {}
    parts = []
    for header in KMA_HEADER:
        if not header.endswith(" QC플래그"):
            continue
        value = next(h for h in KMA_VALUES if h.startswith(header[: -len(" QC플래그")]))
        x = cells[value]
        draw = rng.random(x.shape)
        gone = (draw < missing) & ~np.isnan(x)
        bad = (draw >= missing) & (draw < missing + suspect) & ~np.isnan(x) & (value in _SUSPECT)
        x[gone] = np.nan
        sign = 1.0 if value == "풍속(m/s)" else rng.choice([-1.0, 1.0], int(bad.sum()))
        x[bad] += _SUSPECT.get(value, 0.0) * sign  # a wind error is a false gust
        if value == "습도(%)":
            x[bad] = np.clip(x[bad], 1, 100)
        flags[header] = np.where(gone, 9, np.where(bad, 1, 0))
        hour, station = np.nonzero(bad)
        parts.append(
            FaultLabels(
                station.astype(np.int64),
                time[hour],
                np.full(len(hour), KMA_VALUES[value][0]),
                np.full(len(hour), "source"),
                np.ones(len(hour), bool),
            )
        )
    return flags, FaultLabels.concat(parts)


def _kma_table(
    stations: Sequence[Station],
    minutes: I64,
    cells: dict[str, F64],
    flags: dict[str, NDArray[np.int64]],
) -> dict[str, pa.Array]:
    """Station-major rows of the portal layout."""
    hours, n = len(minutes), len(stations)
    station = np.repeat(np.arange(n), hours)
    hour = np.tile(np.arange(hours), n)
    integer = {h for h, (_, d) in KMA_VALUES.items() if d == 0} | {
        "중하층운량(10분위)",
        "최저운고(100m )",
    }
    cloudy = cells["중하층운량(10분위)"][hour, station]
    table: dict[str, pa.Array] = {}
    for header in KMA_HEADER:
        if header == "지점":
            table[header] = pa.array(np.array([s.stn_id for s in stations])[station])
        elif header == "지점명":
            table[header] = string_column([s.name for s in stations], station)
        elif header == "일시":
            table[header] = string_column(text_times(minutes, seconds=False), hour)
        elif header in flags:
            mark = flags[header][hour, station]
            table[header] = pa.array(mark, mask=mark == 0)
        elif header == "운형(운형약어)":
            kinds = np.select([cloudy >= 5, cloudy >= 1], [1, 2], 0)
            table[header] = string_column(["", "StNs", "Sc"], kinds)
        elif header in integer:
            cell = cells[header][hour, station]
            table[header] = pa.array(np.nan_to_num(cell).astype(np.int64), mask=np.isnan(cell))
        elif header in cells:
            table[header] = value_column(cells[header][hour, station])[0]
        else:
            table[header] = pa.nulls(hours * n, pa.string())
    return table
