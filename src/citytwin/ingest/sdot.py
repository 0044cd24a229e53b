"""S-DoT (Smart Seoul Data of Things): Seoul's ~1,100 street sensors, both file generations.

*2020 raw files* (``ALLDATA_yyyymmdd.csv``, one row per sensor every 2 minutes) store integers
with scalings given in the S-DoT column dictionary (``sensor_data_information.csv``): temperature
and black-globe temperature as (value + 100) × 10, wind, gust and UV × 10, vibration × 100; the
time is ``yyyymmddhi`` in KST. *Hourly exports* from the Seoul Open Data Plaza carry physical
values under headers such as ``초미세먼지 (㎍/㎥)``, ``소음 (dB)``, ``기온(℃)``, with vibration in g
and the gas sensors (NO2, CO, SO2, NH3, H2S, O3) of newer models.

Sensors become Things keyed ``sdot:<serial>``, placed from a registry file in the layout of
``sensor_longitude_latitude.csv`` (시리얼, 위도, 경도).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from citytwin.errors import FeedError
from citytwin.ingest.base import FeedBatch, Readings, SensorSpec, ThingSpec, reject_rows
from citytwin.ingest.source import (
    CHUNK_BYTES,
    DEFAULT_MAX_BYTES,
    Reject,
    Source,
    Table,
    load_source,
    normalize_name,
    read_header,
    read_tables,
)
from citytwin.ingest.timeparse import HOUR_US, kst_from_digits, kst_from_strings

FEED = "sdot"
SENSOR = SensorSpec(
    "sdot:sensor",
    "S-DoT urban data sensor",
    "Smart Seoul Data of Things multi-sensor (PM, climate, light, noise, vibration, gas)",
)


def _identity(raw: NDArray[np.float64]) -> NDArray[np.float64]:
    return raw


def _tenth(raw: NDArray[np.float64]) -> NDArray[np.float64]:
    return raw / 10.0


def _hundredth(raw: NDArray[np.float64]) -> NDArray[np.float64]:
    return raw / 100.0


def _offset_temperature(raw: NDArray[np.float64]) -> NDArray[np.float64]:
    return raw / 10.0 - 100.0  # stored as (value + 100) × 10


Scale = Callable[[NDArray[np.float64]], NDArray[np.float64]]

# 2020 raw files: header → (property key, scaling from the S-DoT column dictionary)
RAW_2020: dict[str, tuple[str, Scale]] = {
    "미세먼지2.5(초미세먼지)": ("pm25", _identity),
    "미세먼지10(미세먼지)": ("pm10", _identity),
    "기온": ("air_temperature", _offset_temperature),
    "상대습도": ("relative_humidity", _identity),
    "풍향": ("wind_direction", _tenth),
    "풍속": ("wind_speed", _tenth),
    "돌풍 풍향": ("gust_direction", _tenth),
    "돌풍 풍속": ("gust_speed", _tenth),
    "조도": ("illuminance", _identity),
    "자외선": ("uv_index", _tenth),
    "소음": ("noise", _identity),
    "진동(x)": ("vibration_x", _hundredth),
    "진동(y)": ("vibration_y", _hundredth),
    "진동(z)": ("vibration_z", _hundredth),
    "진동(x) 최대": ("vibration_x_max", _hundredth),
    "진동(y) 최대": ("vibration_y_max", _hundredth),
    "진동(z) 최대": ("vibration_z_max", _hundredth),
    "흑구 온도": ("black_globe_temperature", _offset_temperature),
    "pm25 보정": ("pm25_corrected", _identity),
    "pm10 보정": ("pm10_corrected", _identity),
}

# hourly exports: physical values; header names are matched without spaces and units
HOURLY: dict[str, str] = {
    "초미세먼지": "pm25",
    "미세먼지": "pm10",
    "기온": "air_temperature",
    "상대습도": "relative_humidity",
    "풍향": "wind_direction",
    "풍속": "wind_speed",
    "돌풍 풍향": "gust_direction",
    "돌풍 풍속": "gust_speed",
    "조도": "illuminance",
    "자외선": "uv_index",
    "소음": "noise",
    "진동(x)": "acceleration_x",
    "진동(y)": "acceleration_y",
    "진동(z)": "acceleration_z",
    "진동(x) 최대": "acceleration_x_max",
    "진동(y) 최대": "acceleration_y_max",
    "진동(z) 최대": "acceleration_z_max",
    "흑구 온도": "black_globe_temperature",
    "초미세먼지 보정": "pm25_corrected",
    "미세먼지 보정": "pm10_corrected",
    "이산화질소": "no2",
    "일산화탄소": "co",
    "아황산가스": "so2",
    "암모니아": "nh3",
    "황화수소": "h2s",
    "오존": "o3",
    "방문자수": "visitor_count",
}
SERIAL = ("시리얼", "serial", "시리얼번호")
TIME = ("측정시간", "전송시간", "측정일시", "datetime", "time")
DATE, HOUR = ("date", "측정일자", "일자"), ("hour", "시간", "측정시")
IGNORED = (
    "모델명",
    "등록 일시",
    "등록일시",
    "등록일자",
    "구분",
    "지역",
    "자치구",
    "행정동",
    "model",
)


_UNIT = re.compile(r"^([a-z0-9µu°%/.·²³-]+|명|개|회)$")


def _strip_unit(header: str) -> str:
    """``기온(℃)`` → ``기온``, ``진동(x) (g)`` → ``진동(x)``; keeps ``미세먼지2.5(초미세먼지)``.

    >>> _strip_unit("초미세먼지 (㎍/㎥)"), _strip_unit("진동(x) 최대 (g)")
    ('초미세먼지', '진동(x)최대')
    """
    text = normalize_name(header)
    while text.endswith(")") and "(" in text:
        inner = text[text.rindex("(") + 1 : -1]
        if inner in ("x", "y", "z") or not _UNIT.match(inner):
            break
        text = text[: text.rindex("(")]
    return text


@dataclass(frozen=True)
class _Layout:
    generation: str  # "2020" or "hourly"
    serial: str
    time: str | None
    date: str | None
    hour: str | None
    values: dict[str, tuple[str, Scale]]  # header -> (property, scale)
    ignored: list[str]


def detect_layout(names: list[str], source: str) -> _Layout:
    """Match a header to one of the two generations; the error says what is missing."""
    exact = {normalize_name(k): k for k in RAW_2020}
    by_name = {normalize_name(n): n for n in names}
    raw_hits = [n for n in names if normalize_name(n) in exact or _strip_unit(n) in exact]
    hourly = {normalize_name(k): v for k, v in HOURLY.items()}
    generation = (
        "2020"
        if any(normalize_name(n) == normalize_name("미세먼지2.5(초미세먼지)") for n in names)
        else "hourly"
    )

    def find(options: tuple[str, ...]) -> str | None:
        return next(
            (by_name[normalize_name(o)] for o in options if normalize_name(o) in by_name), None
        )

    serial = find(SERIAL)
    if serial is None:
        raise FeedError(
            source, f"no sensor serial column; expected one of {SERIAL}, found {names}", line=1
        )
    values: dict[str, tuple[str, Scale]] = {}
    for name in names:
        if generation == "2020" and name in raw_hits:
            key = exact.get(normalize_name(name)) or exact[_strip_unit(name)]
            values[name] = RAW_2020[key]
        elif generation == "hourly" and _strip_unit(name) in hourly:
            values[name] = (hourly[_strip_unit(name)], _identity)
    time, date, hour = find(TIME), find(DATE), find(HOUR)
    if time is None and not (date and hour):
        raise FeedError(
            source, f"no time column; expected one of {TIME} or {DATE[0]}+{HOUR[0]}", line=1
        )
    if not values:
        raise FeedError(
            source,
            "no known S-DoT value column in the header "
            f"(e.g. '초미세먼지 (㎍/㎥)', '기온'); found {names}",
            line=1,
        )
    used = {serial, time, date, hour, *values}
    ignored = [n for n in names if n not in used]
    return _Layout(generation, serial, time, date, hour, values, ignored)


@lru_cache(maxsize=8)
def _load_registry(path: str, mtime: float) -> dict[str, tuple[float, float]]:
    source = load_source(path)
    rows = list(csv.reader(io.StringIO(source.data.decode("utf-8"))))
    if not rows:
        raise FeedError(path, "registry is empty; expected 시리얼,위도,경도")
    header = [normalize_name(h) for h in rows[0]]

    def column(*options: str) -> int:
        for option in options:
            if normalize_name(option) in header:
                return header.index(normalize_name(option))
        raise FeedError(path, f"registry has no {options[0]} column; header is {rows[0]}", line=1)

    s, lat, lon = (
        column("시리얼", "serial"),
        column("위도", "lat", "latitude"),
        column("경도", "lon", "longitude"),
    )
    out: dict[str, tuple[float, float]] = {}
    for number, row in enumerate(rows[1:], start=2):
        try:
            out[row[s].strip()] = (float(row[lon]), float(row[lat]))
        except (ValueError, IndexError):
            raise FeedError(
                path, f"expected serial, latitude, longitude; got {row}", line=number
            ) from None
    return out


def load_registry(path: str | Path) -> dict[str, tuple[float, float]]:
    """Serial → (lon, lat) from a registry CSV (시리얼, 위도, 경도)."""
    return _load_registry(str(path), Path(path).stat().st_mtime)


def read_sdot(
    path: str,
    /,
    *,
    registry: str | Path | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[FeedBatch]:
    """Read one S-DoT CSV (either generation): one batch per ~``chunk_bytes`` of the file."""
    source = load_source(path, max_bytes=max_bytes)
    names, header_line = read_header(source)
    layout = detect_layout(names, path)
    registry_map = load_registry(registry) if registry else {}
    for number, table in enumerate(_tables(source, names, header_line, layout, chunk_bytes)):
        readings, rejects, missing = _readings(table, layout, source, registry_map)
        notes = []
        if number == 0 and layout.ignored:
            notes.append(f"ignored column(s): {', '.join(layout.ignored)}")
        if registry and missing:
            notes.append(
                f"{len(missing)} sensor(s) not in the registry, stored without location: "
                + ", ".join(missing[:5])
                + (" …" if len(missing) > 5 else "")
            )
        yield FeedBatch(FEED, path, SENSOR, readings, rejects, notes, table.size, source.line_text)


def _tables(
    source: Source, names: list[str], header_line: int, layout: _Layout, chunk_bytes: int
) -> Iterator[Table]:
    types: dict[str, pa.DataType] = {layout.serial: pa.string()}
    types.update(dict.fromkeys(layout.values, pa.float64()))
    if layout.time:
        types[layout.time] = pa.int64() if layout.generation == "2020" else pa.string()
    if layout.date and layout.hour and not layout.time:
        types[layout.date], types[layout.hour] = pa.string(), pa.float64()
    return read_tables(
        source, names=names, header_line=header_line, types=types, chunk_bytes=chunk_bytes
    )


def _readings(
    table: Table, layout: _Layout, source: Source, registry: dict[str, tuple[float, float]]
) -> tuple[Readings, list[Reject], list[str]]:
    """Readings of one parsed table, the rows rejected, and serials missing from the registry."""
    time, ok = _times(table, layout)
    serial_codes = table.columns[layout.serial]
    no_serial = serial_codes < 0
    rejects = list(table.rejects)
    rejects += reject_rows(
        ~ok & ~no_serial,
        table.line,
        source.line_text,
        "time is not a valid date/time (expected yyyymmddhhmi or a date)",
    )
    rejects += reject_rows(no_serial, table.line, source.line_text, "sensor serial is empty")
    good = ok & ~no_serial
    pick = slice(None) if good.all() else good  # a clean chunk: views, no copies
    serials: list[str] = table.labels[layout.serial]
    values = {
        prop: scale(table.columns[name][pick]) for name, (prop, scale) in layout.values.items()
    }
    present = np.zeros(len(serials), bool)
    present[serial_codes[pick]] = True
    seen = np.asarray(serials, object)[present]
    missing = sorted(set(seen) - set(registry)) if registry is not None else []
    readings = Readings(
        [_thing(s, registry) for s in serials],
        serial_codes[pick],
        time[pick],
        values,
        table.line[pick],
        "PT2M" if layout.generation == "2020" else "PT1H",
    )
    return readings, rejects, missing


def _thing(serial: str, registry: dict[str, tuple[float, float]]) -> ThingSpec:
    lon, lat = registry.get(serial, (None, None))
    return ThingSpec(
        f"{FEED}:{serial}",
        f"S-DoT {serial}",
        "Smart Seoul Data of Things sensor",
        lon,
        lat,
        {"feed": FEED, "serial": serial},
    )


def _times(table: Table, layout: _Layout) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    if layout.time and layout.time in table.labels:
        return _text_times(table, layout.time)
    if layout.time:
        return kst_from_digits(table.columns[layout.time])
    date_us, ok = _text_times(table, layout.date or "")
    hour = table.columns[layout.hour or ""]
    ok &= (hour >= 0) & (hour <= 24) & (hour == np.floor(hour))
    return date_us + np.where(ok, hour, 0).astype(np.int64) * HOUR_US, ok


def _text_times(table: Table, name: str) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Parse each distinct label once, then index: an hourly file has few distinct times."""
    labels = np.asarray(table.labels[name] + [""], dtype=object)
    micros, ok = kst_from_strings(labels)
    digits = np.char.isdigit(labels.astype(str))
    if digits.any():  # yyyymmddhi written as text
        as_int = np.where(digits, labels, "0").astype(np.int64)
        d_micros, d_ok = kst_from_digits(as_int)
        micros, ok = np.where(digits, d_micros, micros), np.where(digits, d_ok, ok)
    codes = table.columns[name]
    return micros[codes], ok[codes] & (codes >= 0)


__all__ = ["FEED", "HOURLY", "RAW_2020", "Reject", "detect_layout", "load_registry", "read_sdot"]
