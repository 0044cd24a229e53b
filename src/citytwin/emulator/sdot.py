"""S-DoT writers: the 2020 raw layout and the hourly export of the Seoul Open Data Plaza.

Also what every writer shares: :class:`WrittenFeed` (what was written, with its labels) and the
Arrow CSV helpers (:func:`write_header`, :func:`write_rows`, :func:`string_column`,
:func:`value_column`), which the KMA writer reuses. They live here rather than in a module of
their own because :func:`value_column` encodes the 2020 integer layout (:func:`encode_sdot_2020`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from citytwin.emulator.faults import DEFAULT_FAULTS, FaultLabels, FaultPlan
from citytwin.emulator.processes import F64, I64, digit_times, text_times
from citytwin.emulator.scenario import Chunk, Scenario, draw_scenario, simulate_chunks
from citytwin.emulator.sites import Sites


@dataclass(frozen=True, eq=False)
class WrittenFeed:
    """What a writer wrote: the file, its data rows, its values (non-empty value cells a reader
    turns into observations) and the injected faults."""

    path: Path
    rows: int
    values: int
    labels: FaultLabels


# 2020 raw files: header, property, integer scale, offset (S-DoT column dictionary)
SDOT_2020_COLUMNS: Final = (
    ("미세먼지2.5(초미세먼지)", "pm25", 1.0, 0.0), ("미세먼지10(미세먼지)", "pm10", 1.0, 0.0),
    ("기온", "air_temperature", 10.0, 1000.0), ("상대습도", "relative_humidity", 1.0, 0.0),
    ("풍향", "wind_direction", 10.0, 0.0), ("풍속", "wind_speed", 10.0, 0.0),
    ("돌풍 풍향", "gust_direction", 10.0, 0.0), ("돌풍 풍속", "gust_speed", 10.0, 0.0),
    ("조도", "illuminance", 1.0, 0.0), ("자외선", "uv_index", 10.0, 0.0),
    ("소음", "noise", 1.0, 0.0),
    ("진동(x)", "vibration_x", 100.0, 0.0), ("진동(y)", "vibration_y", 100.0, 0.0),
    ("진동(z)", "vibration_z", 100.0, 0.0), ("진동(x) 최대", "vibration_x_max", 100.0, 0.0),
    ("진동(y) 최대", "vibration_y_max", 100.0, 0.0),
    ("진동(z) 최대", "vibration_z_max", 100.0, 0.0),
    ("흑구 온도", "black_globe_temperature", 10.0, 1000.0),
    ("pm25 보정", "pm25_corrected", 1.0, 0.0), ("pm10 보정", "pm10_corrected", 1.0, 0.0),
)  # fmt: skip

# hourly exports: header (with unit), property, quantum
SDOT_HOURLY_COLUMNS: Final = (
    ("초미세먼지 (㎍/㎥)", "pm25", 1.0), ("미세먼지 (㎍/㎥)", "pm10", 1.0),
    ("기온(℃)", "air_temperature", 0.1), ("상대습도(%)", "relative_humidity", 1.0),
    ("풍향(°)", "wind_direction", 1.0), ("풍속(m/s)", "wind_speed", 0.1),
    ("돌풍 풍향(°)", "gust_direction", 1.0), ("돌풍 풍속(m/s)", "gust_speed", 0.1),
    ("조도(lux)", "illuminance", 1.0), ("자외선(UVI)", "uv_index", 0.1),
    ("소음 (dB)", "noise", 0.1),
    ("진동(x) (g)", "acceleration_x", 1e-4), ("진동(y) (g)", "acceleration_y", 1e-4),
    ("진동(z) (g)", "acceleration_z", 1e-4), ("진동(x) 최대 (g)", "acceleration_x_max", 1e-4),
    ("진동(y) 최대 (g)", "acceleration_y_max", 1e-4),
    ("진동(z) 최대 (g)", "acceleration_z_max", 1e-4),
    ("흑구 온도(℃)", "black_globe_temperature", 0.1),
    ("초미세먼지 보정 (㎍/㎥)", "pm25_corrected", 1.0),
    ("미세먼지 보정 (㎍/㎥)", "pm10_corrected", 1.0),
    ("이산화질소 (ppm)", "no2", 1e-4), ("일산화탄소 (ppm)", "co", 1e-4),
    ("아황산가스 (ppm)", "so2", 1e-4), ("암모니아 (ppm)", "nh3", 1e-4),
    ("황화수소 (ppm)", "h2s", 1e-4), ("오존 (ppm)", "o3", 1e-4),
    ("방문자수 (명)", "visitor_count", 1.0),
)  # fmt: skip

_WRITE: Final = pacsv.WriteOptions(include_header=False, quoting_style="none")


def string_column(labels: Sequence[str], index: I64) -> pa.Array:
    """A string column from a small set of labels."""
    return pa.array(list(labels), pa.string()).take(pa.array(index))


def write_rows(handle: io.BufferedIOBase, columns: dict[str, pa.Array], encoding: str) -> None:
    """Append rows; the body is re-encoded only when it holds text outside ASCII."""
    if encoding.replace("-", "").lower() in ("utf8", "utf8sig"):
        pacsv.write_csv(pa.table(columns), handle, _WRITE)
        return
    buffer = io.BytesIO()
    pacsv.write_csv(pa.table(columns), buffer, _WRITE)
    data = buffer.getvalue()
    handle.write(data if data.isascii() else data.decode("utf-8").encode(encoding))


def write_header(handle: io.BufferedIOBase, names: Sequence[str], encoding: str) -> None:
    """Write the header line unquoted, as the portals do."""
    handle.write((",".join(names) + "\n").encode(encoding))


_ENCODING_2020: Final = {prop: (scale, offset) for _, prop, scale, offset in SDOT_2020_COLUMNS}


def encode_sdot_2020(prop: str, values: F64) -> I64:
    """Physical values → the integers of a 2020 raw file (S-DoT column dictionary).

    >>> encode_sdot_2020("air_temperature", np.array([23.4, -100.0])).tolist()
    [1234, 0]
    >>> encode_sdot_2020("vibration_z", np.array([0.05])).tolist()
    [5]
    """
    scale, offset = _ENCODING_2020[prop]
    raw: I64 = np.rint(np.asarray(values, np.float64) * scale + offset).astype(np.int64)
    return raw


def value_column(x: F64, prop: str | None = None) -> tuple[pa.Array, int]:
    """An Arrow column of present values (null for NaN), encoded for the 2020 layout when
    ``prop`` is given, and its value count."""
    missing = np.isnan(x)
    count = int(missing.size - missing.sum())
    if prop is not None:
        return pa.array(encode_sdot_2020(prop, np.where(missing, 0.0, x)), mask=missing), count
    return pa.array(x, mask=missing), count


def write_sdot_2020(
    path: str | Path,
    sites: Sites,
    start: datetime,
    hours: int,
    *,
    interval_minutes: int = 2,
    faults: FaultPlan = DEFAULT_FAULTS,
    seed: int = 0,
    encoding: str = "utf-8",
) -> WrittenFeed:
    """An S-DoT raw file in the 2020 layout (``ALLDATA_yyyymmdd.csv``).

    Integers with the column dictionary's scalings: temperature and black globe (v + 100) × 10,
    wind, gust, direction and UV × 10, vibration × 100; ``측정시간`` is ``yyyymmddhhmi`` (KST) and
    ``등록 일시`` the upload time a minute or two later. Rows are in time order, sensors within.

    Parameters
    ----------
    path
        Output file (overwritten).
    sites
        The sensors (see :func:`load_sites`).
    start
        First measurement time; a naive datetime is KST.
    hours
        Length of the file.
    interval_minutes
        Sampling period (2 in the real files).
    faults
        Fault rates; :data:`NO_FAULTS` for clean data.
    seed
        Everything is reproducible from it.
    encoding
        ``utf-8``, ``utf-8-sig`` or ``cp949`` (only the header is non-ASCII).

    Returns
    -------
    WrittenFeed
    """
    quantum = {prop: 1.0 / scale for _, prop, scale, _ in SDOT_2020_COLUMNS}
    sc = draw_scenario(sites, start, hours, interval_minutes, faults, seed, quantum, False)
    names = ["모델명", "시리얼", *(c[0] for c in SDOT_2020_COLUMNS), "측정시간", "등록 일시"]
    out, rows, count, labels = Path(path), 0, 0, []
    with out.open("wb") as handle:
        write_header(handle, names, encoding)
        for chunk in simulate_chunks(sc):
            columns, values = _sdot_2020_columns(sc, chunk)
            write_rows(handle, columns, encoding)
            rows += int(chunk.present.sum())
            count += values
            labels.append(chunk.labels)
    return WrittenFeed(out, rows, count, FaultLabels.concat(labels))


def _row_index(chunk: Chunk) -> tuple[I64, I64]:
    """(step within chunk, sensor) of each present row, time-major."""
    step, sensor = np.nonzero(chunk.present)
    return step.astype(np.int64), sensor.astype(np.int64)


def _sdot_2020_columns(sc: Scenario, chunk: Chunk) -> tuple[dict[str, pa.Array], int]:
    """One chunk's rows in the 2020 layout, and their value count."""
    step, sensor = _row_index(chunk)
    lag = (step * 7 + sensor * 13) % 150 + 20  # upload delay, 20–169 s
    first = int(chunk.minutes[0])
    span = int(chunk.minutes[-1]) - first + 4
    upload = text_times(first + np.arange(span, dtype=np.int64))
    registered = [f"{t[:-2]}{s:02d}" for t in upload for s in range(60)]
    seconds = (chunk.minutes[step] - first) * 60 + lag
    columns: dict[str, pa.Array] = {
        "모델명": string_column(["SDOT-2"], np.zeros(len(step), np.int64)),
        "시리얼": string_column(sc.sites.serials, sensor),
    }
    count = 0
    for name, prop, _, _ in SDOT_2020_COLUMNS:
        columns[name], values = value_column(chunk.values[prop][step, sensor], prop)
        count += values
    columns["측정시간"] = pa.array(digit_times(chunk.minutes)[step])
    columns["등록 일시"] = string_column(registered, seconds)
    return columns, count


_GU: Final = {  # approximate centres of Seoul's 25 districts (for the 자치구 column)
    "종로구": (126.979, 37.594), "중구": (126.996, 37.560), "용산구": (126.980, 37.531),
    "성동구": (127.041, 37.551), "광진구": (127.086, 37.546), "동대문구": (127.055, 37.582),
    "중랑구": (127.093, 37.598), "성북구": (127.018, 37.606), "강북구": (127.011, 37.643),
    "도봉구": (127.032, 37.669), "노원구": (127.075, 37.652), "은평구": (126.927, 37.619),
    "서대문구": (126.937, 37.578), "마포구": (126.902, 37.559), "양천구": (126.855, 37.525),
    "강서구": (126.822, 37.561), "구로구": (126.856, 37.494), "금천구": (126.900, 37.460),
    "영등포구": (126.910, 37.522), "동작구": (126.952, 37.499), "관악구": (126.945, 37.467),
    "서초구": (127.031, 37.473), "강남구": (127.063, 37.497), "송파구": (127.115, 37.505),
    "강동구": (127.147, 37.550),
}  # fmt: skip


def _districts(sites: Sites) -> list[str]:
    """The district (자치구) of each site: the nearest district centre."""
    names = list(_GU)
    centres = np.array(list(_GU.values()))
    d = (sites.lon[:, None] - centres[:, 0]) ** 2 + (sites.lat[:, None] - centres[:, 1]) ** 2
    return [names[i] for i in np.argmin(d, axis=1)]


def write_sdot_hourly(
    path: str | Path,
    sites: Sites,
    start: datetime,
    hours: int,
    *,
    faults: FaultPlan = DEFAULT_FAULTS,
    seed: int = 0,
    encoding: str = "utf-8",
) -> WrittenFeed:
    """An S-DoT hourly export of the Seoul Open Data Plaza (newer sensor generation).

    Physical values under headers with units (``초미세먼지 (㎍/㎥)``, ``기온(℃)``, vibration in g),
    the gas sensors (NO2, CO, SO2, NH3, H2S, O3 in ppm) and the visitor counter (``방문자수``);
    ``측정시간`` is ``yyyy-mm-dd hh:mm:ss`` (KST) and 지역/자치구 name the district.

    Parameters
    ----------
    path, sites, start, hours, faults, seed
        As for :func:`write_sdot_2020` (one reading per sensor and hour).
    encoding
        ``utf-8``, ``utf-8-sig`` or ``cp949`` (the portal's two choices).

    Returns
    -------
    WrittenFeed
    """
    quantum = {prop: q for _, prop, q in SDOT_HOURLY_COLUMNS}
    sc = draw_scenario(sites, start, hours, 60, faults, seed, quantum, True)
    names = ["모델명", "시리얼", "측정시간", "지역", "자치구", *(c[0] for c in SDOT_HOURLY_COLUMNS)]
    districts = _districts(sites)
    out, rows, count, labels = Path(path), 0, 0, []
    with out.open("wb") as handle:
        write_header(handle, names, encoding)
        for chunk in simulate_chunks(sc):
            step, sensor = _row_index(chunk)
            columns: dict[str, pa.Array] = {
                "모델명": string_column(["SDOT-3"], np.zeros(len(step), np.int64)),
                "시리얼": string_column(sites.serials, sensor),
                "측정시간": string_column(text_times(chunk.minutes), step),
                "지역": string_column(["서울"], np.zeros(len(step), np.int64)),
                "자치구": string_column(districts, sensor),
            }
            for name, prop, _ in SDOT_HOURLY_COLUMNS:
                columns[name], values = value_column(chunk.values[prop][step, sensor])
                count += values
            write_rows(handle, columns, encoding)
            rows += len(step)
            labels.append(chunk.labels)
    return WrittenFeed(out, rows, count, FaultLabels.concat(labels))
