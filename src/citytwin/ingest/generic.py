"""Declarative feeds: a YAML mapping turns a station-per-row CSV or JSON export into readings.

A department adds a feed by writing a mapping, not code::

    citytwin ingest generic AirKorea_2024-01.csv --mapping airkorea   # a bundled preset
    citytwin ingest generic export.csv --mapping my_feed.yaml          # a mapping file

The mapping schema, its validation and the unit conversions are in :mod:`citytwin.ingest.mapping`;
this module reads files with a loaded mapping. Cells that are not numbers, empty ids and
unreadable times quarantine their row with a reason; the rest of the file lands.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from citytwin.errors import FeedError
from citytwin.ingest.base import FeedBatch, Readings, SensorSpec, ThingSpec, reject_rows
from citytwin.ingest.mapping import (
    FeedMapping,
    duration_us,
    load_mapping,
    template_fields,
    timezone_shift,
)
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
    parse_local,
)

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
    except (ValueError, RecursionError) as exc:  # an integer of > 4,300 digits; deep nesting
        raise FeedError(source.name, f"not valid JSON: {exc}") from None
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


__all__ = ["read_generic"]
