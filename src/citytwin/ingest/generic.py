"""Declarative feeds: a YAML mapping turns a station-per-row CSV or JSON export into readings.

A department adds a feed by writing a mapping, not code::

    citytwin ingest generic AirKorea_2024-01.csv --mapping airkorea   # a bundled preset
    citytwin ingest generic export.csv --mapping my_feed.yaml          # a mapping file

Presets live in ``citytwin/ingest/presets/<name>.yaml`` (``airkorea``, ``topis``). A mapping is
validated when it is loaded; every problem raises :class:`~citytwin.errors.MappingError` naming the
mapping file and the key at fault (``values[2].property: unknown observed property 'pm3'; …``).

Mapping schema
--------------
Column names are matched to the header without spaces, case or BOM (see ``normalize_name``).

``feed`` (required)
    Feed name, lower case (``airkorea``); recorded on every datastream and quarantine record.
``description``
    Free text, used for Things and the sensor when they have none of their own.
``format``
    ``csv`` (default; UTF-8, UTF-8 with BOM or CP949) or ``json``: a list of flat records, or an
    object holding one. ``records`` is the dotted path to the list (``response.body.items``);
    without it the file must be a list or ``{"records": [...]}``. For JSON, a reject's line number
    is the record's 1-based position.
``period``
    ISO 8601 duration each value averages over (``PT1H``, ``PT10M``, ``P1D``). Default ``PT1H``
    for an hour-column layout, none otherwise.
``sensor``
    ``name`` (required), ``description``, ``metadata``: the instrument behind the datastreams.
``thing`` (required)
    ``id_column`` (required): the station or sensor id; a Thing's key is ``<key_prefix>:<id>``
    (``key_prefix`` defaults to ``feed``). ``name_column``, or ``name``: a template such as
    ``"{도로명} {시점명}→{종점명}"`` (default ``"<feed> <id>"``). ``lon_column`` and ``lat_column``
    (WGS 84 degrees, both or neither). ``description``. ``properties``: Thing property → column,
    copied as text from the station's first row (optional columns; e.g. ``district: 지역``).
``time`` (required): either one timestamp column per row
    ``column``; ``format``: ``yyyymmddhh``, ``yyyymmdd``, ``yyyymmddhhmi``, a strptime pattern
    of ``%Y %m %d %H %M %S`` (``"%Y-%m-%d %H:%M"``) or ``auto`` (default: those digit layouts and
    ``timeparse.STRING_FORMATS``); ``label``: ``start`` (default: stored as given) or ``end`` (the
    timestamp closes the averaging period: the stored start is the timestamp − ``period``).
    Or one column per hour (a wide layout; each non-empty cell becomes a reading)
    ``hours: {date_column, date_format (default yyyymmdd), columns: ["01시", …, "24시"],
    first_hour (default 1), label (default end)}``: column *i* holds hour ``first_hour + i``;
    with ``label: end`` hour *N* is the interval ending at *N*, stored as starting at *N* − 1.
    Both layouts: ``timezone`` is ``Asia/Seoul`` (default), ``UTC`` or a fixed offset
    (``+09:00``); times are stored in UTC. Hour 24 means 00 of the next day (KMA/AirKorea).
``values`` (required): a list of
    ``column`` (omitted in the hour-column layout, which has exactly one value entry);
    ``property``: an observed-property key of ``citytwin.model.vocabulary``; ``unit``: the
    column's unit (UCUM or a common spelling), checked against the vocabulary unit and converted
    (ppb → [ppm], mg/m3 or ng/m3 → ug/m3, m/s ↔ km/h, Pa or kPa → hPa); ``scale``: a further
    multiplier; ``required``: false lets the column be absent from a file (noted, not an error).

Unknown keys are errors (a misspelt ``colum:`` would otherwise be silently ignored). Cells that
are not numbers, empty ids and unreadable times quarantine their row with a reason; the rest of
the file lands. The bundled presets are worked examples of both layouts.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import yaml
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticError
from pydantic_core import ErrorDetails

from citytwin.errors import FeedError, MappingError, ValidationError
from citytwin.ingest.base import FeedBatch, Readings, SensorSpec, ThingSpec, reject_rows
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
from citytwin.ingest.timeparse import (
    HOUR_US,
    KST_OFFSET_US,
    MINUTE_US,
    format_regex,
    parse_local,
)
from citytwin.model.vocabulary import get_property

# --- units ---------------------------------------------------------------------------------------

# common spellings → UCUM, in normal form (normalize_name: NFKC, lower case, µ → u)
_UNIT_ALIASES = {"ppm": "[ppm]", "ppb": "[ppb]", "°c": "cel", "kph": "km/h", "km/hr": "km/h"}
# (declared unit, vocabulary unit) → (multiplier, divisor); a divisor keeps 45 ppb = 0.045 exact
CONVERSIONS: dict[tuple[str, str], tuple[float, float]] = {
    ("[ppb]", "[ppm]"): (1.0, 1000.0),
    ("mg/m3", "ug/m3"): (1000.0, 1.0),
    ("ng/m3", "ug/m3"): (1.0, 1000.0),
    ("m/s", "km/h"): (3.6, 1.0),
    ("km/h", "m/s"): (1.0, 3.6),
    ("Pa", "hPa"): (1.0, 100.0),
    ("kPa", "hPa"): (10.0, 1.0),
}


def _unit_key(unit: str) -> str:
    key = normalize_name(unit)
    return _UNIT_ALIASES.get(key, key)


_BY_UNIT_KEYS = {(_unit_key(a), _unit_key(b)): factor for (a, b), factor in CONVERSIONS.items()}


def unit_conversion(property_key: str, unit: str | None) -> tuple[float, float]:
    """(multiplier, divisor) from ``unit`` to the vocabulary unit of ``property_key``.

    Raises
    ------
    ValueError
        When no conversion is known; the message names both units and the accepted ones.
    """
    target = get_property(property_key).unit.ucum
    if unit is None or _unit_key(unit) == _unit_key(target):
        return 1.0, 1.0
    try:
        return _BY_UNIT_KEYS[(_unit_key(unit), _unit_key(target))]
    except KeyError:
        others = sorted(a for a, b in CONVERSIONS if _unit_key(b) == _unit_key(target))
        accepted = ", ".join(repr(u) for u in [target, *others])
        raise ValueError(
            f"unit {unit!r} cannot be converted to {target!r}, the vocabulary unit of "
            f"{property_key!r}; accepted: {accepted}"
        ) from None


# --- times ---------------------------------------------------------------------------------------

_DURATION = re.compile(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?")


def timezone_shift(timezone: str) -> int:
    """µs to add to times parsed as KST when their labels are in ``timezone`` instead."""
    if timezone in ("Asia/Seoul", "KST"):
        return 0
    if timezone.upper() in ("UTC", "Z", "ETC/UTC", "GMT"):
        return KST_OFFSET_US
    match = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", timezone)
    if match is None:
        raise ValueError(
            f"timezone {timezone!r} is not supported; use Asia/Seoul (default), UTC or a fixed "
            "offset such as +09:00 (zones with daylight saving time are not supported)"
        )
    offset = (int(match[2]) * 60 + int(match[3])) * MINUTE_US * (1 if match[1] == "+" else -1)
    return KST_OFFSET_US - offset


def duration_us(period: str) -> int:
    """An ISO 8601 duration of days, hours, minutes and seconds (``PT1H``) in µs."""
    match = _DURATION.fullmatch(period)
    if match is None or not any(match.groups()):
        raise ValueError(f"period {period!r} is not an ISO 8601 duration such as PT1H or PT10M")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * MINUTE_US + seconds * 1_000_000


# --- the mapping ---------------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class SensorMapping(_Section):
    """The instrument behind the feed's datastreams."""

    name: str
    description: str = ""
    metadata: str = ""


def template_fields(template: str) -> list[str]:
    """Column names a name template refers to: ``"{도로명} {시점명}"`` → ``[도로명, 시점명]``."""
    return re.findall(r"\{([^{}]+)\}", template)


class ThingMapping(_Section):
    """Which columns identify, name and place a Thing."""

    id_column: str
    name_column: str | None = None
    name: str | None = None
    lon_column: str | None = None
    lat_column: str | None = None
    key_prefix: str | None = Field(default=None, pattern=r"^[\w.-]+$")
    description: str = ""
    properties: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> ThingMapping:
        if self.name_column and self.name:
            raise ValueError("give name_column or name (a template), not both")
        if self.name is not None and not template_fields(self.name):
            raise ValueError(f"name template {self.name!r} names no column; e.g. '{{측정소명}}'")
        if (self.lon_column is None) != (self.lat_column is None):
            raise ValueError("give both lon_column and lat_column, or neither")
        return self

    def name_template(self) -> str | None:
        """The name as a template, whichever way it was given."""
        return f"{{{self.name_column}}}" if self.name_column else self.name


class HoursMapping(_Section):
    """A wide layout: one row per thing and day, one column per hour."""

    date_column: str
    date_format: str = "yyyymmdd"
    columns: list[str] = Field(min_length=1, max_length=25)
    first_hour: int = Field(default=1, ge=0, le=24)
    label: Literal["start", "end"] = "end"

    @field_validator("date_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        format_regex(value)
        return value

    @model_validator(mode="after")
    def _check(self) -> HoursMapping:
        if len(set(self.columns)) != len(self.columns):
            raise ValueError("columns lists a column twice")
        last = self.first_hour + len(self.columns) - 1
        if last > 24 or (self.label == "end" and self.first_hour < 1):
            raise ValueError(
                f"{len(self.columns)} hour columns from first_hour {self.first_hour} "
                f"do not fit a day (label {self.label!r})"
            )
        return self

    def start_offsets(self) -> NDArray[np.int64]:
        """µs from the date's midnight to the start of each hour column's interval."""
        first = self.first_hour - (1 if self.label == "end" else 0)
        return (np.arange(len(self.columns), dtype=np.int64) + first) * HOUR_US


class TimeMapping(_Section):
    """Where the time of a reading comes from."""

    column: str | None = None
    format: str = "auto"
    timezone: str = "Asia/Seoul"
    label: Literal["start", "end"] = "start"
    hours: HoursMapping | None = None

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value != "auto":
            format_regex(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        timezone_shift(value)
        return value

    @model_validator(mode="after")
    def _one_layout(self) -> TimeMapping:
        if (self.column is None) == (self.hours is None):
            raise ValueError(
                "give either column (one timestamp per row) or hours (one column per hour)"
                + (", not both" if self.column else "")
            )
        misplaced = {"format", "label"} & self.model_fields_set if self.hours else set()
        if misplaced:
            raise ValueError(
                f"{', '.join(sorted(misplaced))} belongs under hours (date_format, "
                "label) when hours is given"
            )
        return self


class ValueMapping(_Section):
    """One value column: which observed property it measures, in which unit."""

    column: str | None = None
    property: str
    unit: str | None = None
    scale: float = 1.0
    required: bool = True

    @field_validator("property")
    @classmethod
    def _known_property(cls, value: str) -> str:
        try:
            get_property(value)
        except ValidationError as exc:
            raise ValueError(str(exc).replace("; known:", "; valid keys:")) from None
        return value

    @model_validator(mode="after")
    def _convertible(self) -> ValueMapping:
        unit_conversion(self.property, self.unit)
        return self

    def convert(self, raw: NDArray[np.float64]) -> NDArray[np.float64]:
        """Raw column values in the vocabulary unit (unit conversion, then ``scale``)."""
        multiplier, divisor = unit_conversion(self.property, self.unit)
        out = raw * multiplier if multiplier != 1.0 else raw.copy()
        if divisor != 1.0:
            out /= divisor
        if self.scale != 1.0:
            out *= self.scale
        return out


class FeedMapping(_Section):
    """A whole declarative feed; see the module docstring for the schema."""

    feed: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    description: str = ""
    format: Literal["csv", "json"] = "csv"
    records: str | None = None
    period: str | None = None
    sensor: SensorMapping | None = None
    thing: ThingMapping
    time: TimeMapping
    values: list[ValueMapping] = Field(min_length=1)

    @field_validator("period")
    @classmethod
    def _iso_duration(cls, value: str | None) -> str | None:
        if value is not None:
            duration_us(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FeedMapping:
        if self.records is not None and self.format != "json":
            raise ValueError("records applies to format: json only")
        if self.time.label == "end" and self.period is None:
            raise ValueError("time.label: end needs a period (how far back the interval starts)")
        self._check_values()
        text = {*self.text_columns(), *self.thing.properties.values()}
        numbers = {v.column for v in self.values if v.column} | set(self.hour_columns)
        numbers |= {c for c in (self.thing.lon_column, self.thing.lat_column) if c}
        clash = text & numbers
        if clash:
            raise ValueError(f"column(s) {sorted(clash)} used both as text and as numbers")
        return self

    def _check_values(self) -> None:
        if self.time.hours is not None and (len(self.values) != 1 or self.values[0].column):
            raise ValueError(
                "with time.hours the hour columns hold the values: give exactly one values entry, "
                "without column"
            )
        if self.time.hours is None and any(v.column is None for v in self.values):
            raise ValueError("every values entry needs a column (only time.hours omits it)")
        properties = [v.property for v in self.values]
        repeated = sorted({p for p in properties if properties.count(p) > 1})
        if repeated:
            raise ValueError(f"property {repeated[0]!r} is mapped by more than one column")

    @property
    def hour_columns(self) -> list[str]:
        """The hour columns of a wide layout (empty otherwise)."""
        return self.time.hours.columns if self.time.hours else []

    @property
    def effective_period(self) -> str | None:
        """``period``, defaulting to PT1H for hour columns."""
        return self.period or ("PT1H" if self.time.hours else None)

    def text_columns(self) -> list[str]:
        """Columns read as text: id, name template fields, time and date."""
        template = self.thing.name_template()
        columns = [self.thing.id_column, *(template_fields(template) if template else [])]
        columns.append(self.time.hours.date_column if self.time.hours else self.time.column or "")
        return list(dict.fromkeys(columns))

    def required_columns(self) -> dict[str, bool]:
        """Every column the mapping reads → whether a file must have it."""
        columns = dict.fromkeys(self.text_columns(), True)
        for column in self.thing.properties.values():
            columns.setdefault(column, False)
        if self.thing.lon_column and self.thing.lat_column:
            columns.update({self.thing.lon_column: True, self.thing.lat_column: True})
        columns.update(dict.fromkeys(self.hour_columns, True))
        columns.update({v.column: v.required for v in self.values if v.column})
        return columns


# --- loading a mapping ---------------------------------------------------------------------------


def preset_names() -> list[str]:
    """Names of the bundled presets (``airkorea``, ``topis`` …)."""
    folder = resources.files("citytwin.ingest") / "presets"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def load_mapping(mapping: str | Path) -> FeedMapping:
    """Load and validate a mapping: a YAML file path or a preset name.

    Raises
    ------
    MappingError
        When the file or preset does not exist, is not YAML, or breaks the schema.
    """
    name = str(mapping)
    preset = resources.files("citytwin.ingest") / "presets" / f"{name}.yaml"
    if not isinstance(mapping, Path) and re.fullmatch(r"[\w-]+", name) and preset.is_file():
        return _parse_mapping(preset.read_text(encoding="utf-8"), f"{preset} ({name} preset)")
    path = Path(mapping)
    if not path.is_file():
        raise MappingError(
            name,
            "no such mapping file, nor a preset named so; presets: " + ", ".join(preset_names()),
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MappingError(name, f"mapping files must be UTF-8 ({exc.reason})") from None
    return _parse_mapping(text, name)


@lru_cache(maxsize=32)
def _parse_mapping(text: str, where: str) -> FeedMapping:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark is not None else None
        raise MappingError(where, f"not valid YAML: {problem}", line=line) from None
    if not isinstance(data, dict):
        raise MappingError(where, "expected a YAML mapping with keys feed, thing, time, values")
    try:
        return FeedMapping.model_validate(data)
    except PydanticError as exc:
        problems = [_describe(error) for error in exc.errors()]
        raise MappingError(where, "invalid mapping: " + "; ".join(problems)) from None


_SECTIONS: tuple[type[_Section], ...] = (
    FeedMapping,
    SensorMapping,
    ThingMapping,
    TimeMapping,
    HoursMapping,
    ValueMapping,
)


def _describe(error: ErrorDetails) -> str:
    """One pydantic error as 'where: what', in the mapping's own terms."""
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
    if error["type"] == "missing":
        return f"missing required key {where!r}"
    if error["type"] == "extra_forbidden":
        known = {name for model in _SECTIONS for name in model.model_fields}
        close = difflib.get_close_matches(str(error["loc"][-1]), sorted(known), n=1)
        return f"unknown key {where!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


# --- reading a file ------------------------------------------------------------------------------


@dataclass
class _Rows:
    """A parsed file: its table, header spelling of each mapping column, and how to quote lines."""

    table: Table
    columns: dict[str, str]  # mapping column → header name (present columns only)
    notes: list[str]
    line_text: Callable[[int], str]
    size: int


def read_generic(
    path: str, /, *, mapping: str | Path, max_bytes: int = DEFAULT_MAX_BYTES
) -> Iterator[FeedBatch]:
    """Read one file as the mapping describes (a YAML path or a preset name such as ``airkorea``).

    The mapping is validated at once (:class:`~citytwin.errors.MappingError`); the file is read
    when the batches are iterated.
    """
    return _read(path, load_mapping(mapping), max_bytes)


def _read(path: str, spec: FeedMapping, max_bytes: int) -> Iterator[FeedBatch]:
    rows = _load_rows(path, spec, max_bytes)
    readings, rejects = _readings(rows, spec) if len(rows.table) else (_empty_readings(spec), [])
    yield FeedBatch(
        spec.feed,
        path,
        _sensor(spec),
        readings,
        [*rows.table.rejects, *rejects],
        rows.notes,
        rows.size,
        rows.line_text,
    )


def _readings(rows: _Rows, spec: FeedMapping) -> tuple[Readings, list[Reject]]:
    """The rows with an id and a valid time as readings; the others as rejects."""
    table = rows.table
    things = _things(table, rows.columns, spec)
    has_id = table.columns[rows.columns[spec.thing.id_column]] >= 0
    time, ok = _times(rows, spec)
    rejects = _time_rejects(rows, spec, ~ok & has_id)
    id_reason = f"column {spec.thing.id_column!r} (the id) is empty"
    rejects += reject_rows(~has_id, table.line, rows.line_text, id_reason)
    good = ok & has_id
    if spec.time.hours is None:
        return _long_readings(table, rows.columns, spec, things, good, time), rejects
    return _wide_readings(table, rows.columns, spec, things, good, time), rejects


def _load_rows(path: str, spec: FeedMapping, max_bytes: int) -> _Rows:
    raw = load_source(path, max_bytes=max_bytes)
    if spec.format == "json":
        source, records = _json_as_csv(raw, spec.records)
        if not records:
            empty = Table({}, np.empty(0, np.int64), [])
            return _Rows(empty, {}, ["no records"], source.line_text, raw.size)
    else:
        source, records = raw, None
    names, header_line = read_header(source)
    columns, notes = _resolve_columns(names, spec, source.name, header_line)
    types = dict.fromkeys(columns.values(), pa.float64())
    types.update({columns[c]: pa.string() for c in spec.text_columns()})
    types.update({columns[c]: pa.string() for c in spec.thing.properties.values() if c in columns})
    table = read_table(source, names=names, header_line=header_line, types=types)
    if records is None:
        return _Rows(table, columns, notes, source.line_text, raw.size)
    return _Rows(_renumber(table, records), columns, notes, _record_text(records), raw.size)


def _resolve_columns(
    names: list[str], spec: FeedMapping, source: str, header_line: int
) -> tuple[dict[str, str], list[str]]:
    """Mapping column → header spelling; a missing required column is a file error."""
    by_norm = {normalize_name(n): n for n in names}
    wanted = spec.required_columns()
    found = {c: by_norm[normalize_name(c)] for c in wanted if normalize_name(c) in by_norm}
    missing = [c for c, required in wanted.items() if required and c not in found]
    if missing:
        raise FeedError(
            source,
            f"column(s) {', '.join(missing)} named by the {spec.feed!r} "
            f"mapping are not in the header; found: {', '.join(names)}",
            line=header_line,
        )
    absent = [v.column for v in spec.values if v.column and v.column not in found]
    ignored = [n for n in names if n.strip() and n not in found.values()]
    notes = [f"column(s) not in this file, skipped: {', '.join(absent)}"] if absent else []
    notes += [f"ignored column(s): {', '.join(ignored)}"] if ignored else []
    return found, notes


def _time_source(spec: FeedMapping) -> tuple[str, str]:
    """The column times come from and its format."""
    hours = spec.time.hours
    if hours is not None:
        return hours.date_column, hours.date_format
    return spec.time.column or "", spec.time.format


def _times(rows: _Rows, spec: FeedMapping) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Per-row time in µs UTC (the date's midnight for hour columns) and its validity."""
    column, fmt = _time_source(spec)
    header = rows.columns[column]
    labels = np.asarray([*rows.table.labels[header], ""], dtype=object)
    micros, ok = parse_local(labels, fmt)  # each distinct label once: a file has few times
    shift = timezone_shift(spec.time.timezone)
    if spec.time.label == "end" and spec.period and spec.time.hours is None:
        shift -= duration_us(spec.period)
    codes = rows.table.columns[header]
    return micros[codes] + shift, ok[codes] & (codes >= 0)


def _time_rejects(rows: _Rows, spec: FeedMapping, bad: NDArray[np.bool_]) -> list[Reject]:
    """One reject per row whose time is unreadable, quoting the time text."""
    column, fmt = _time_source(spec)
    text = rows.table.text(rows.columns[column])[bad]
    return [
        Reject(
            int(n),
            rows.line_text(int(n)),
            f"column {column!r}: {t!r} is not a valid time (format {fmt})"
            if t
            else f"column {column!r} is empty; expected a time (format {fmt})",
        )
        for n, t in zip(rows.table.line[bad], text, strict=True)
    ]


def _long_readings(
    table: Table,
    columns: dict[str, str],
    spec: FeedMapping,
    things: list[ThingSpec],
    good: NDArray[np.bool_],
    time: NDArray[np.int64],
) -> Readings:
    """One reading per row, one value per value column."""
    values = {
        v.property: v.convert(table.columns[columns[v.column]][good].astype(np.float64))
        for v in spec.values
        if v.column in columns
    }
    ids = table.columns[columns[spec.thing.id_column]][good].astype(np.int64)
    return Readings(things, ids, time[good], values, table.line[good], spec.effective_period)


def _wide_readings(
    table: Table,
    columns: dict[str, str],
    spec: FeedMapping,
    things: list[ThingSpec],
    good: NDArray[np.bool_],
    day: NDArray[np.int64],
) -> Readings:
    """One reading per hour cell: rows × hour columns, flattened row-major, empty cells dropped."""
    hours = spec.time.hours
    if hours is None:
        raise TypeError("_wide_readings needs a mapping with time.hours")
    cells = np.column_stack([table.columns[columns[c]][good] for c in hours.columns])
    n_rows, n_hours = cells.shape
    value = spec.values[0].convert(cells.astype(np.float64).ravel())
    time = np.repeat(day[good], n_hours) + np.tile(hours.start_offsets(), n_rows)
    ids = np.repeat(table.columns[columns[spec.thing.id_column]][good].astype(np.int64), n_hours)
    line = np.repeat(table.line[good], n_hours)
    keep = ~np.isnan(value)
    readings = Readings(
        things, ids, time, {spec.values[0].property: value}, line, spec.effective_period
    )
    return readings if keep.all() else readings.take(keep)


def _empty_readings(spec: FeedMapping) -> Readings:
    empty = np.empty(0, np.int64)
    values = {v.property: np.empty(0, np.float64) for v in spec.values}
    return Readings([], empty, empty.copy(), values, empty.copy(), spec.effective_period)


# --- things and sensor ---------------------------------------------------------------------------


def _things(table: Table, columns: dict[str, str], spec: FeedMapping) -> list[ThingSpec]:
    """One ThingSpec per distinct id (indexed by the id column's codes), from its first row."""
    id_header = columns[spec.thing.id_column]
    ids: list[str] = table.labels[id_header]
    codes = table.columns[id_header]
    with_id = np.flatnonzero(codes >= 0)
    present, first = np.unique(codes[with_id], return_index=True)
    first_row = np.zeros(len(ids), np.int64)
    first_row[present] = with_id[first]
    texts = {c: table.text(columns[c])[first_row] for c in _thing_text_columns(spec, columns)}
    lon, lat = _coordinates(table, columns, spec, first_row)
    prefix = spec.thing.key_prefix or spec.feed
    template = spec.thing.name_template() or f"{spec.feed} {{{spec.thing.id_column}}}"
    return [
        ThingSpec(
            key=f"{prefix}:{source_id}",
            name=_render(template, {c: str(t[k]) for c, t in texts.items()}) or source_id,
            description=spec.thing.description or spec.description,
            lon=lon[k],
            lat=lat[k],
            properties={"feed": spec.feed, "id": source_id, **_properties(spec, texts, k)},
        )
        for k, source_id in enumerate(ids)
    ]


def _thing_text_columns(spec: FeedMapping, columns: dict[str, str]) -> list[str]:
    template = spec.thing.name_template() or f"{{{spec.thing.id_column}}}"
    wanted = [*template_fields(template), spec.thing.id_column, *spec.thing.properties.values()]
    return [c for c in dict.fromkeys(wanted) if c in columns]


def _properties(spec: FeedMapping, texts: dict[str, NDArray[np.object_]], k: int) -> dict[str, str]:
    pairs = ((key, str(texts[c][k])) for key, c in spec.thing.properties.items() if c in texts)
    return {key: value for key, value in pairs if value}


def _render(template: str, values: dict[str, str]) -> str:
    """Fill ``{column}`` fields; collapse the whitespace an empty field leaves."""
    text = re.sub(r"\{([^{}]+)\}", lambda m: values.get(m[1], ""), template)
    return " ".join(text.split())


def _coordinates(
    table: Table, columns: dict[str, str], spec: FeedMapping, first_row: NDArray[np.int64]
) -> tuple[list[float | None], list[float | None]]:
    lon_column, lat_column = spec.thing.lon_column, spec.thing.lat_column
    if lon_column is None or lat_column is None:
        return [None] * len(first_row), [None] * len(first_row)

    def pick(column: str) -> list[float | None]:
        values = table.columns[columns[column]][first_row].astype(np.float64)
        return [None if np.isnan(v) else float(v) for v in values]

    return pick(lon_column), pick(lat_column)


def _sensor(spec: FeedMapping) -> SensorSpec:
    if spec.sensor is None:
        name = spec.description or f"{spec.feed} station"
        return SensorSpec(f"{spec.feed}:sensor", name, spec.description)
    given = spec.sensor
    return SensorSpec(f"{spec.feed}:sensor", given.name, given.description, given.metadata)


# --- JSON ---------------------------------------------------------------------------------------


def _json_as_csv(source: Source, records_path: str | None) -> tuple[Source, list[Any]]:
    """JSON records → the same CSV the CSV path reads (header on line 1, record *i* on i + 1)."""
    try:
        data = json.loads(source.data)
    except json.JSONDecodeError as exc:
        raise FeedError(source.name, f"not valid JSON: {exc.msg}", line=exc.lineno) from None
    records = _records_at(data, records_path, source.name)
    header = list(dict.fromkeys(k for r in records if isinstance(r, dict) for k in r))
    if not header:
        header = ["_"]  # no object records: an empty table, not a missing header
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for record in records:
        fields = record if isinstance(record, dict) else {}
        writer.writerow([_csv_cell(fields.get(k)) for k in header])
    return Source(source.name, buffer.getvalue().encode("utf-8"), source.encoding), records


def _records_at(data: Any, path: str | None, name: str) -> list[Any]:
    node = data
    if path is None and isinstance(data, dict) and "records" in data:
        path = "records"
    for key in path.split(".") if path else []:
        if not isinstance(node, dict) or key not in node:
            keys = ", ".join(node) if isinstance(node, dict) else type(node).__name__
            raise FeedError(name, f"no {key!r} on the records path {path!r}; found: {keys}")
        node = node[key]
    if not isinstance(node, list):
        raise FeedError(
            name,
            'expected a list of records or {"records": [...]}; set records: '
            "in the mapping to the dotted path of the list",
        )
    return node


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list | bool):
        return json.dumps(value, ensure_ascii=False)
    return " ".join(str(value).splitlines())  # one record, one line


def _renumber(table: Table, records: list[Any]) -> Table:
    """CSV line numbers → 1-based record numbers; non-object records become rejects."""
    text = _record_text(records)
    rejects = [
        Reject(
            r.line - 1 if r.line is not None else None,
            text(r.line - 1) if r.line is not None else r.raw,
            r.reason,
        )
        for r in table.rejects
    ]
    rejects += [
        Reject(n, text(n), "record is not a JSON object")
        for n, record in enumerate(records, start=1)
        if not isinstance(record, dict)
    ]
    return Table(table.columns, table.line - 1, rejects, table.labels)


def _record_text(records: list[Any]) -> Callable[[int], str]:
    def text(number: int) -> str:
        if 1 <= number <= len(records):
            return json.dumps(records[number - 1], ensure_ascii=False)
        return ""

    return text


__all__ = [
    "FeedMapping",
    "load_mapping",
    "preset_names",
    "read_generic",
    "unit_conversion",
]
