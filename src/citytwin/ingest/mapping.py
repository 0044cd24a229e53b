"""Feed mappings: the YAML schema of declarative feeds, its validation, units and time options.

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

import difflib
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticError
from pydantic_core import ErrorDetails

from citytwin.errors import MappingError, ValidationError
from citytwin.ingest.source import (
    normalize_name,
)
from citytwin.ingest.timeparse import (
    HOUR_US,
    KST_OFFSET_US,
    MINUTE_US,
    format_regex,
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


__all__ = [
    "CONVERSIONS",
    "FeedMapping",
    "duration_us",
    "load_mapping",
    "preset_names",
    "template_fields",
    "timezone_shift",
    "unit_conversion",
]
