"""KMA (Korea Meteorological Administration) ASOS/AWS hourly observations and station registry.

*Observations* come as the CSVs of the KMA open data portal (기상자료개방포털, ``OBS_ASOS_TIM_*``,
usually CP949): one row per station and hour with ``지점``, ``지점명``, ``일시`` (KST,
``yyyy-mm-dd hh:mm``) and value columns whose headers carry units, e.g. ``기온(°C)``,
``풍향(16방위)``, ``시정(10m)``. A value may be followed by a ``… QC플래그`` column: KMA writes 1
(error) or 9 (missing) there, 0 or nothing for a normal value; a mark becomes
:attr:`~citytwin.ingest.base.Readings.source_flags` and so ``Flag.SOURCE`` on the observation.
Columns without a vocabulary property (운형, 최저운고, 지중온도 …) are named in the batch notes.

*Stations* come from a registry in the layout of KMA's station table
(``STN_ID,STN_KO,STN_SP,LON,LAT,HT,FCT_ID,WRN_ID,WRN_KO,SFC_STN_ID``). It is optional for
:func:`read_kma` (it only adds positions and elevation); :func:`read_kma_stations` registers the
registry itself. Things are keyed ``kma:<지점>``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from citytwin.errors import FeedError
from citytwin.ingest.base import FeedBatch, Readings, SensorSpec, ThingSpec
from citytwin.ingest.source import (
    DEFAULT_MAX_BYTES,
    Reject,
    Source,
    Table,
    load_source,
    normalize_name,
    read_header,
    read_table,
)
from citytwin.ingest.timeparse import HOUR_US, MINUTE_US, parse_local

FEED = "kma"
SENSOR = SensorSpec(
    "kma:asos-aws",
    "KMA ASOS/AWS surface weather station",
    "Automated Synoptic Observing System / Automatic Weather System of the Korea Meteorological "
    "Administration",
)

# value header without its unit → observed property
VALUES: dict[str, str] = {
    "기온": "air_temperature", "강수량": "precipitation", "풍속": "wind_speed",
    "풍향": "wind_direction", "습도": "relative_humidity", "증기압": "vapour_pressure",
    "이슬점온도": "dew_point_temperature", "현지기압": "air_pressure",
    "해면기압": "sea_level_pressure", "일조": "sunshine_duration", "일사": "solar_radiation",
    "적설": "snow_depth", "전운량": "cloud_cover", "시정": "visibility",
    "지면온도": "ground_temperature",
}  # fmt: skip
STATION = ("지점", "지점번호", "stn_id", "stn")
STATION_NAME = ("지점명", "stn_ko")
TIME = ("일시", "관측일시", "tm")
QC_SUFFIX = "qc플래그"
QC_NORMAL = ("", "0")  # KMA: 0 normal, 1 error, 9 missing
VISIBILITY_METRES = {"10m": 10.0, "m": 1.0, "km": 1000.0}  # KMA's default unit is 10 m

# 16-point compass (English and Korean) → degrees; KMA writes north as 360 and calm as 0
_POINTS = ("N", "NNE", "NE", "ENE", "E", "ESE", "SE", "SSE",
           "S", "SSW", "SW", "WSW", "W", "WNW", "NW", "NNW")  # fmt: skip
_POINTS_KO = ("북", "북북동", "북동", "동북동", "동", "동남동", "남동", "남남동",
              "남", "남남서", "남서", "서남서", "서", "서북서", "북서", "북북서")  # fmt: skip
COMPASS: dict[str, float] = {
    **{p: (i * 22.5) or 360.0 for i, p in enumerate(_POINTS)},
    **{p: (i * 22.5) or 360.0 for i, p in enumerate(_POINTS_KO)},
    "C": 0.0, "CALM": 0.0, "정온": 0.0,
}  # fmt: skip

# why a row is rejected; {!r} shows the cell
BAD_STATION = "지점 {!r} is not a KMA station number (expected digits, e.g. 108)"
BAD_TIME = "일시 {!r} is not a valid KST date and time (expected yyyy-mm-dd hh:mm)"
BAD_DIRECTION = (
    "풍향 {!r} is neither degrees (0–360) nor a 16-point compass direction "
    "(N, NNE, …, 북, 북북동, …)"
)

# the KMA network lies on the Korean peninsula and its seas; a position outside is a typo
AREA_LON, AREA_LAT = (120.0, 135.0), (30.0, 44.0)
_FORECAST_ZONE = re.compile(r"^\d{2}[A-Z]\d{5}$")


def split_unit(header: str) -> tuple[str, str | None]:
    """Header → (normal-form name, unit): ``기온(°C)`` → ``('기온', '°c')``.

    >>> split_unit("시정(10m)"), split_unit("기온 QC플래그"), split_unit("최저운고(100m )")
    (('시정', '10m'), ('기온qc플래그', None), ('최저운고', '100m'))
    """
    text = normalize_name(header)
    if text.endswith(")") and "(" in text:
        start = text.rindex("(")
        return text[:start], text[start + 1 : -1]
    return text, None


# -- hourly observations ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    station: str
    name: str | None
    time: str
    values: dict[str, str]  # header → property
    scales: dict[str, float]  # header → factor to the vocabulary unit
    flags: dict[str, str]  # QC header → property
    ignored: list[str]

    def types(self) -> dict[str, pa.DataType]:
        """Arrow types to read: text for ids, times, QC marks and (compass) wind direction."""
        text = [self.station, self.time, *self.flags, *([self.name] if self.name else [])]
        types: dict[str, pa.DataType] = dict.fromkeys(text, pa.string())
        for header, prop in self.values.items():
            types[header] = pa.string() if prop == "wind_direction" else pa.float64()
        return types


def detect_layout(names: list[str], source: str, header_line: int = 1) -> _Layout:
    """Match a header to the KMA columns; the error says which required column is missing."""
    bases = {name: split_unit(name)[0] for name in names}

    def find(options: tuple[str, ...], role: str) -> str | None:
        wanted = {normalize_name(o) for o in options}
        found = next((n for n in names if bases[n] in wanted), None)
        if found is None and role:
            raise FeedError(
                source,
                f"no {role} column; expected one of {options}, found {names}",
                line=header_line,
            )
        return found

    station, time = find(STATION, "station (지점)"), find(TIME, "time (일시)")
    name = find(STATION_NAME, "")
    values: dict[str, str] = {}
    for header in names:
        prop = VALUES.get(bases[header])
        if prop is not None and prop not in values.values():
            values[header] = prop
    if not values:
        raise FeedError(
            source,
            f"no known KMA value column (e.g. '기온(°C)', '풍속(m/s)'); found {names}",
            line=header_line,
        )
    flags = _flag_columns(names, values)
    scales = {
        h: _visibility_scale(h, source, header_line) for h, p in values.items() if p == "visibility"
    }
    used = {station, time, name, *values, *flags}
    return _Layout(
        station or "", name, time or "", values, scales, flags, [n for n in names if n not in used]
    )


def _flag_columns(names: list[str], values: dict[str, str]) -> dict[str, str]:
    """``기온 QC플래그`` → air_temperature, for the value columns that are read."""
    by_base = {split_unit(h)[0]: p for h, p in values.items()}
    out: dict[str, str] = {}
    for name in names:
        text = normalize_name(name)
        if text.endswith(QC_SUFFIX) and text[: -len(QC_SUFFIX)] in by_base:
            out[name] = by_base[text[: -len(QC_SUFFIX)]]
    return out


def _visibility_scale(header: str, source: str, header_line: int) -> float:
    unit = split_unit(header)[1] or "10m"
    if unit not in VISIBILITY_METRES:
        raise FeedError(
            source,
            f"visibility column {header!r} has unit {unit!r}; expected one of "
            f"{sorted(VISIBILITY_METRES)}",
            line=header_line,
        )
    return VISIBILITY_METRES[unit]


def read_kma(
    path: str, /, *, stations: str | Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> Iterator[FeedBatch]:
    """Read one KMA ASOS/AWS observation CSV (hourly or finer) into a batch of readings.

    Parameters
    ----------
    path
        The CSV (UTF-8, UTF-8 with BOM or CP949).
    stations
        Optional station registry (see :func:`load_stations`): positions and elevations.
    max_bytes
        Refuse larger files.

    Yields
    ------
    FeedBatch
        Readings in vocabulary units (visibility in metres), times in UTC; rows with an empty or
        non-numeric station, an impossible time, a non-numeric value or an unknown wind direction
        are rejected with the reason.
    """
    source = load_source(path, max_bytes=max_bytes)
    names, header_line = read_header(source)
    layout = detect_layout(names, path, header_line)
    table = _read_table(source, names, header_line, layout.types())
    registry = load_stations(stations).stations if stations is not None else {}
    thing_index, things = _things(table, layout, registry)
    time, time_ok = _times(table, layout.time)
    values, direction_ok = _values(table, layout)
    checks = [
        (thing_index == -1, layout.station, BAD_STATION),
        (~time_ok, layout.time, BAD_TIME),
        (~direction_ok, _wind_header(layout), BAD_DIRECTION),
    ]
    rejects, bad = _row_rejects(checks, table, source.line_text)
    good = ~bad
    flags = {prop: _flagged(table, header)[good] for header, prop in layout.flags.items()}
    readings = Readings(
        things,
        thing_index[good],
        time[good],
        {k: v[good] for k, v in values.items()},
        table.line[good],
        _period(time[good]),
        flags,
    )
    notes = _notes(layout, readings, registry, stations)
    rejects = sorted([*table.rejects, *rejects], key=lambda r: r.line or 0)
    yield FeedBatch(FEED, path, SENSOR, readings, rejects, notes, source.size, source.line_text)


def _read_table(
    source: Source, names: list[str], header_line: int, types: dict[str, pa.DataType]
) -> Table:
    """:func:`read_table`, with a file of no rows typed like any other (text as codes + labels)."""
    table = read_table(source, names=names, header_line=header_line, types=types)
    for name, dtype in types.items():
        if pa.types.is_string(dtype) and name not in table.labels:
            table.columns[name], table.labels[name] = np.empty(0, np.int64), []
    return table


def _wind_header(layout: _Layout) -> str:
    return next((h for h, p in layout.values.items() if p == "wind_direction"), "")


def _things(
    table: Table, layout: _Layout, registry: dict[str, Station]
) -> tuple[NDArray[np.int64], list[ThingSpec]]:
    """Row → thing index (-1 for an empty or non-numeric 지점), and the things, one per station."""
    labels = [label.strip() for label in table.labels[layout.station]]
    ids = list(dict.fromkeys(label for label in labels if label.isdigit()))
    position = {station_id: number for number, station_id in enumerate(ids)}
    label_thing = np.array([position.get(label, -1) for label in labels] + [-1], np.int64)
    thing_index = label_thing[table.columns[layout.station]]
    names = _first_names(table, layout, thing_index, len(ids))
    return thing_index, [
        station_thing(s, n, registry.get(s)) for s, n in zip(ids, names, strict=True)
    ]


def _first_names(
    table: Table, layout: _Layout, thing_index: NDArray[np.int64], count: int
) -> list[str]:
    """Each station's 지점명 as its first row gives it ('' when the file has no names)."""
    names = np.full(count, "", dtype=object)
    known, first = np.unique(thing_index, return_index=True)
    if layout.name is not None:
        names[known[known >= 0]] = _cells(table, layout.name, first[known >= 0])
    return [str(name).strip() for name in names]


def _cells(
    table: Table, name: str, rows: NDArray[np.intp] | NDArray[np.bool_]
) -> NDArray[np.object_]:
    """The text of some cells of a text column ('' for empty ones), without decoding the rest."""
    labels = np.asarray([*table.labels[name], ""], dtype=object)
    cells: NDArray[np.object_] = labels[table.columns[name][rows]]
    return cells


def _times(table: Table, name: str) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Parse each distinct time label once, then index (an hourly file has few distinct times)."""
    micros, ok = parse_kst(pa.array([*table.labels[name], ""], pa.string()))
    codes = table.columns[name]
    return micros[codes], ok[codes] & (codes >= 0)


def parse_kst(text: pa.Array) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """``yyyy-mm-dd hh:mm`` (also ``/`` or ``.`` between date parts, or a date alone), KST → µs UTC.

    The calendar is checked part by part (see ``timeparse.parse_local``).

    >>> t, ok = parse_kst(pa.array(["2018-01-01 09:00", "2018-02-30 10:00", "2018/1/2 9:00"]))
    >>> ok.tolist(), [str(np.datetime64(int(x), "us")) for x in t[::2]]
    ([True, False, True], ['2018-01-01T00:00:00.000000', '2018-01-02T00:00:00.000000'])
    """
    return parse_local(np.asarray(text.to_pylist(), dtype=object), "auto")


def _values(
    table: Table, layout: _Layout
) -> tuple[dict[str, NDArray[np.float64]], NDArray[np.bool_]]:
    """Values in vocabulary units, and which rows' wind direction could be read."""
    values: dict[str, NDArray[np.float64]] = {}
    direction_ok = np.ones(len(table), bool)
    for header, prop in layout.values.items():
        if prop == "wind_direction":
            values[prop], direction_ok = _directions(table, header)
        else:
            column = np.asarray(table.columns[header], np.float64)
            values[prop] = column * layout.scales.get(header, 1.0)
    return values, direction_ok


def _directions(table: Table, header: str) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Wind direction labels (degrees or compass text) → degrees; NaN for empty cells."""
    degrees = np.array([*map(_degrees, table.labels[header]), np.nan], np.float64)
    readable = ~np.isnan(degrees)
    readable[-1] = True  # an empty cell is a missing value, not an unreadable one
    codes = table.columns[header]
    return degrees[codes], readable[codes]


def _degrees(label: str) -> float:
    text = label.strip().upper()
    try:
        return float(text)
    except ValueError:
        return COMPASS.get(text, np.nan)


def _flagged(table: Table, header: str) -> NDArray[np.bool_]:
    """Rows whose QC플래그 cell marks the value (anything but empty or 0)."""
    labels = table.labels[header]
    marks = np.array([label.strip() not in QC_NORMAL for label in labels] + [False], bool)
    flagged: NDArray[np.bool_] = marks[table.columns[header]]
    return flagged


def _row_rejects(
    checks: list[tuple[NDArray[np.bool_], str, str]], table: Table, text: Callable[[int], str]
) -> tuple[list[Reject], NDArray[np.bool_]]:
    """One reject per bad row, with the first failed check's reason (showing the cell)."""
    bad = np.zeros(len(table), bool)
    rejects: list[Reject] = []
    for mask, column, reason in checks:
        fresh = mask & ~bad
        if fresh.any():
            cells = _cells(table, column, fresh)
            rejects += [
                Reject(int(n), text(int(n)), reason.format(str(cell)))
                for n, cell in zip(table.line[fresh], cells, strict=True)
            ]
        bad |= mask
    return rejects, bad


def _period(time: NDArray[np.int64]) -> str:
    """ISO 8601 sampling period: hourly, unless the file's instants are closer (AWS minutes)."""
    steps = np.diff(np.unique(time))
    step = int(np.median(steps)) if len(steps) else HOUR_US
    return "PT1H" if step >= HOUR_US else f"PT{max(step // MINUTE_US, 1)}M"


def _notes(
    layout: _Layout, readings: Readings, registry: dict[str, Station], stations: str | Path | None
) -> list[str]:
    notes = (
        [f"ignored column(s) without a citytwin property: {', '.join(layout.ignored)}"]
        if layout.ignored
        else []
    )
    if stations is None:
        return notes
    seen = [readings.things[i].properties["station_id"] for i in np.unique(readings.thing_index)]
    missing = [s for s in seen if s not in registry]
    unplaced = [s for s in seen if s in registry and registry[s].lon is None]
    if missing:
        notes.append(
            f"{len(missing)} station(s) not in the registry {stations}, stored without "
            f"location: {_listing(missing)}"
        )
    if unplaced:
        notes.append(
            f"{len(unplaced)} station(s) without a usable position in the registry, "
            f"stored without location: {_listing(unplaced)}"
        )
    return notes


def _listing(items: list[str], limit: int = 5) -> str:
    return ", ".join(items[:limit]) + (" …" if len(items) > limit else "")


# -- station registry ------------------------------------------------------------------------

# registry role → header options (KMA API table, then the data portal's Korean headers)
REGISTRY: dict[str, tuple[str, ...]] = {
    "station_id": ("STN_ID", "지점", "지점번호"), "name": ("STN_KO", "지점명"),
    "lon": ("LON", "경도"), "lat": ("LAT", "위도"),
    "elevation_m": ("HT", "노장해발고도", "해발고도"),
    "stn_sp": ("STN_SP",), "forecast_zone": ("FCT_ID",), "warning_zone": ("WRN_ID",),
    "warning_zone_name": ("WRN_KO",), "surface_station_id": ("SFC_STN_ID",),
}  # fmt: skip
_REQUIRED = ("station_id", "lon", "lat")
_NUMERIC = ("lon", "lat", "elevation_m")


@dataclass(frozen=True)
class Station:
    """One station of the registry; ``lon``/``lat`` are None when missing or implausible."""

    station_id: str
    name: str
    line: int
    lon: float | None
    lat: float | None
    properties: dict[str, Any]


@dataclass
class StationRegistry:
    """A parsed registry: stations by id, the rows it rejected and notes for the operator."""

    stations: dict[str, Station]
    rejects: list[Reject] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    size: int = 0
    line_text: Callable[[int], str] | None = None


def station_thing(station_id: str, name: str, station: Station | None) -> ThingSpec:
    """The Thing of one KMA station; the registry (when known) adds position and zones."""
    properties: dict[str, Any] = {"feed": FEED, "station_id": station_id}
    if station is not None:
        properties.update(station.properties)
        name = name or station.name
    return ThingSpec(
        f"{FEED}:{station_id}",
        name or f"KMA {station_id}",
        f"KMA surface weather station {station_id} (ASOS/AWS)",
        station.lon if station else None,
        station.lat if station else None,
        properties,
    )


def load_stations(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> StationRegistry:
    """Parse a station registry (cached while the file is unchanged).

    Rows without a numeric STN_ID, repeated ids and non-numeric coordinates are rejected; a
    station with missing coordinates or coordinates outside the Korean peninsula and its seas
    keeps no position, and an FCT_ID that is not a forecast-zone id (spreadsheets turn
    ``11E00102`` into ``1.1E+103``) is left out. Both are reported in the notes.
    """
    return _load_stations(
        str(path), Path(path).stat().st_mtime if Path(path).exists() else 0.0, max_bytes
    )


@lru_cache(maxsize=8)
def _load_stations(path: str, mtime: float, max_bytes: int) -> StationRegistry:
    source = load_source(path, max_bytes=max_bytes)
    names, header_line = read_header(source)
    columns = _registry_columns(names, path, header_line)
    types = {h: pa.float64() if role in _NUMERIC else pa.string() for role, h in columns.items()}
    table = _read_table(source, names, header_line, types)
    ids = np.array([*(s.strip() for s in table.labels[columns["station_id"]]), ""], object)
    station_ids = ids[table.columns[columns["station_id"]]]
    numeric = np.array([s.isdigit() for s in ids], bool)[table.columns[columns["station_id"]]]
    _, first = np.unique(station_ids, return_index=True)
    repeated = np.ones(len(table), bool)
    repeated[first] = False
    id_column = columns["station_id"]
    checks = [
        (station_ids == "", id_column, "STN_ID is empty; the row names no station"),
        (~numeric, id_column, "STN_ID {!r} is not a station number (expected digits)"),
        (repeated, id_column, "STN_ID {!r} appears again; the first row is kept"),
    ]
    rejects, bad = _row_rejects(checks, table, source.line_text)
    good = table.take(~bad)
    stations, notes = _stations(good, columns)
    return StationRegistry(
        stations,
        sorted([*table.rejects, *rejects], key=lambda r: r.line or 0),
        notes,
        source.size,
        source.line_text,
    )


def _registry_columns(names: list[str], source: str, header_line: int) -> dict[str, str]:
    bases = {split_unit(n)[0]: n for n in reversed(names)}
    columns = {
        role: next((bases[normalize_name(o)] for o in options if normalize_name(o) in bases), "")
        for role, options in REGISTRY.items()
    }
    missing = [REGISTRY[role][0] for role in _REQUIRED if not columns[role]]
    if missing:
        raise FeedError(
            source,
            f"station registry has no {', '.join(missing)} column; expected "
            f"STN_ID,STN_KO,STN_SP,LON,LAT,HT,…; found {names}",
            line=header_line,
        )
    return {role: header for role, header in columns.items() if header}


def _stations(table: Table, columns: dict[str, str]) -> tuple[dict[str, Station], list[str]]:
    """Stations of the accepted rows, with plausibility checks on position and forecast zone."""
    cells = {role: table.text(h) for role, h in columns.items() if role not in _NUMERIC}
    lon = np.asarray(table.columns[columns["lon"]], np.float64)
    lat = np.asarray(table.columns[columns["lat"]], np.float64)
    height = (
        np.asarray(table.columns[columns["elevation_m"]], np.float64)
        if ("elevation_m" in columns)
        else np.full(len(table), np.nan)
    )
    missing = np.isnan(lon) | np.isnan(lat)
    outside = ~missing & ~(
        (lon >= AREA_LON[0]) & (lon <= AREA_LON[1]) & (lat >= AREA_LAT[0]) & (lat <= AREA_LAT[1])
    )
    zones = cells.get("forecast_zone", np.full(len(table), "", object))
    bad_zone = np.array([bool(z) and not _FORECAST_ZONE.match(str(z)) for z in zones], bool)
    ids = cells["station_id"]
    placed = ~(missing | outside)
    stations = {
        str(ids[i]).strip(): Station(
            str(ids[i]).strip(),
            str(cells.get("name", ids)[i]).strip(),
            int(table.line[i]),
            float(lon[i]) if placed[i] else None,
            float(lat[i]) if placed[i] else None,
            _station_properties(cells, height[i], i, bad_zone[i]),
        )
        for i in range(len(table))
    }
    return stations, _registry_notes(ids, lon, lat, missing, outside, zones, bad_zone)


def _station_properties(
    cells: dict[str, NDArray[np.object_]], height: float, row: int, bad_zone: bool
) -> dict[str, Any]:
    text = {
        role: str(values[row]).strip()
        for role, values in cells.items()
        if role not in ("station_id", "name") and not (role == "forecast_zone" and bad_zone)
    }
    elevation = {} if np.isnan(height) else {"elevation_m": float(height)}
    return {**elevation, **{role: value for role, value in text.items() if value}}


def _registry_notes(
    ids: NDArray[np.object_],
    lon: NDArray[np.float64],
    lat: NDArray[np.float64],
    missing: NDArray[np.bool_],
    outside: NDArray[np.bool_],
    zones: NDArray[np.object_],
    bad_zone: NDArray[np.bool_],
) -> list[str]:
    notes = []
    if missing.any():
        notes.append(
            f"{int(missing.sum())} station(s) without LON/LAT, registered without "
            f"location: {_listing([str(s) for s in ids[missing]])}"
        )
    for i in np.flatnonzero(outside):
        notes.append(
            f"station {ids[i]}: LON {lon[i]}, LAT {lat[i]} lie outside the KMA network's "
            f"area (lon {AREA_LON[0]:g}–{AREA_LON[1]:g}, lat {AREA_LAT[0]:g}–"
            f"{AREA_LAT[1]:g}); registered without location"
        )
    if bad_zone.any():
        shown = [f"{ids[i]} ({str(zones[i])[:12]}…)" for i in np.flatnonzero(bad_zone)]
        notes.append(
            f"FCT_ID of {len(shown)} station(s) is not a forecast-zone id like 11B10101 "
            f"(a spreadsheet may have read e.g. 11E00102 as a number); left out: "
            f"{_listing(shown)}"
        )
    return notes


def read_kma_stations(path: str, /, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[FeedBatch]:
    """Register a station registry as Things with Locations (no observations).

    The pipeline registers the things its readings rows point at, so every station gets one row
    with no values (``value_count`` 0). Its time, which dates the station's HistoricalLocation,
    is the registry file's modification time: the registry says where a station *is*, not since
    when.

    Yields
    ------
    FeedBatch
        One row per accepted station; rejected registry rows in ``rejects``.
    """
    registry = load_stations(path, max_bytes=max_bytes)
    stations = list(registry.stations.values())
    things = [station_thing(s.station_id, s.name, s) for s in stations]
    as_of = int(Path(path).stat().st_mtime) * 1_000_000
    readings = Readings(
        things,
        np.arange(len(things), dtype=np.int64),
        np.full(len(things), as_of, np.int64),
        {},
        np.array([s.line for s in stations], np.int64),
    )
    notes = [f"{len(things)} station(s) registered from the station registry", *registry.notes]
    yield FeedBatch(
        f"{FEED}-stations",
        path,
        SENSOR,
        readings,
        list(registry.rejects),
        notes,
        registry.size,
        registry.line_text,
    )


__all__ = [
    "COMPASS", "FEED", "VALUES", "Station", "StationRegistry", "detect_layout", "load_stations",
    "parse_kst", "read_kma", "read_kma_stations", "station_thing",
]  # fmt: skip
