"""Seoul road-traffic noise workbooks (도로교통 소음): hourly LEQ per station, one sheet each.

The Seoul Open Data Plaza publishes one ``.xlsx`` workbook per month with one sheet per
monitoring station (sheet titles such as ``시청(시간별)``). Each sheet reads::

    row 4   측정월: <month>        측정장소 : <station>        측정 데이터: LEQ
    row 6   측정일\\시간 | 1 | 2 | … | 24 | 낮 | 밤
    row 7…  <date>      | dB | dB | … | dB | dB | dB

Hour *h* is the hour ending at *h*:00 KST, i.e. the interval (h−1):00–h:00; the observation's
phenomenon time is the start of that interval, converted to UTC, with ``period = "PT1H"``.
The ``낮``/``밤`` (day/night) columns are aggregates derived from the hourly values, so they are
not stored (the batch notes say so). Dates come from formulas: the workbook is read with cached
values (``data_only=True``).

Nothing depends on fixed row or column numbers: the header row is the one holding ``측정일``,
the hour columns are the header cells 1–24, and the month, station and measured quantity are
found by their labels above the header.

Stations become Things keyed ``noise:<station>`` (e.g. ``noise:시청``). Their positions are not
stored: the workbooks give none, and the only public copy of the data (sofiaKon/py-pgSQL-noisemap)
places all four stations on one placeholder point, so any coordinate would be invented.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time

import numpy as np
from numpy.typing import NDArray
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException
from openpyxl.worksheet._read_only import ReadOnlyWorksheet

from citytwin.errors import FeedError
from citytwin.ingest.base import FeedBatch, Readings, SensorSpec, ThingSpec
from citytwin.ingest.source import DEFAULT_MAX_BYTES, Reject, check_file
from citytwin.ingest.timeparse import HOUR_US, kst_from_parts

FEED = "noise"
PROPERTY = "noise"
SENSOR = SensorSpec(
    "noise:road-traffic-monitor",
    "Seoul road-traffic noise monitor",
    "Fixed road-traffic noise monitoring station of the Seoul Metropolitan Government; "
    "hourly equivalent continuous sound level (LEQ, dB)",
)

DATE_LABEL = "측정일"
MONTH_LABEL = "측정월"
STATION_LABEL = "측정장소"
QUANTITY_LABEL = "측정데이터"
DERIVED = {"낮": "day", "밤": "night"}
DATE_FORMATS = ("%Y-%m-%d", "%Y.%m.%d", "%Y/%m/%d", "%Y%m%d", "%Y-%m-%d%H:%M:%S")

# what openpyxl raises for files that are not (intact) xlsx workbooks
_LOAD_ERRORS = (
    InvalidFileException,
    zipfile.BadZipFile,
    KeyError,
    ValueError,
    TypeError,
    OSError,
    EOFError,
    SyntaxError,
)
_HOUR = re.compile(r"^(\d{1,2})시?$")
_YEAR_MONTH = re.compile(r"(\d{4})\s*[-./년]\s*(\d{1,2})")
_TITLE_SUFFIX = re.compile(r"^(.+?)\s*\(.*\)\s*$")

Row = tuple[object, ...]


@dataclass(frozen=True)
class _Sheet:
    """A worksheet's cached cell values; ``rows[i]`` is Excel row ``i + 1``."""

    title: str
    rows: list[Row]


@dataclass(frozen=True)
class _Header:
    """The ``측정일\\시간`` header: its row, the date column and hour columns (0-based)."""

    row: int
    date_col: int
    hours: dict[int, int]  # column index -> hour label 1..24 (the hour ending then)
    derived: list[str]
    unknown: list[str]


@dataclass
class _SheetData:
    """One sheet parsed: hourly values with their KST dates, rejects and notes."""

    sheet: _Sheet
    station: str
    time: NDArray[np.int64]
    value: NDArray[np.float64]
    line: NDArray[np.int64]
    derived: list[str]
    rejects: list[Reject] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _SkipSheet(Exception):
    """A sheet without the road-noise layout; the message says what is missing."""


def read_noise(path: str, /, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[FeedBatch]:
    """Read one monthly road-noise workbook: one batch per station sheet.

    Parameters
    ----------
    path
        The ``.xlsx`` workbook.
    max_bytes
        Largest file accepted; a larger one raises :class:`~citytwin.errors.FeedError`.

    Yields
    ------
    FeedBatch
        Hourly ``noise`` readings (dB) of one station, ``Readings.line`` = Excel row number.
        File-level notes (derived columns, skipped sheets, openpyxl warnings) are on the first.

    Raises
    ------
    FeedError
        The file is missing, too large, not a valid xlsx workbook, or no sheet has the layout.
    """
    size = check_file(path, max_bytes)
    sheets, warned = _load_sheets(path)
    parsed: list[_SheetData] = []
    skipped: list[str] = []
    for sheet in sheets:
        try:
            parsed.append(_parse_sheet(sheet))
        except _SkipSheet as exc:
            skipped.append(f"sheet {sheet.title!r} not read: {exc}")
    if not parsed:
        raise FeedError(
            path,
            "no sheet has the road-noise layout (a '측정일\\시간' header row "
            "with hour columns 1–24): " + "; ".join(skipped),
        )
    notes = _file_notes(parsed, skipped, warned)
    for number, data in enumerate(parsed):
        yield FeedBatch(
            FEED,
            path,
            SENSOR,
            _readings(data),
            data.rejects,
            notes if number == 0 else [],
            size if number == 0 else 0,
            _line_text(data.sheet),
        )


def _load_sheets(path: str) -> tuple[list[_Sheet], list[str]]:
    """Every worksheet's cached values, and the warnings openpyxl raised while reading."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            workbook = load_workbook(path, read_only=True, data_only=True)
        except _LOAD_ERRORS as exc:
            raise FeedError(path, f"is not a valid .xlsx workbook ({_short(exc)})") from None
        try:
            sheets = []
            for ws in workbook.worksheets:
                if isinstance(ws, ReadOnlyWorksheet):
                    ws.reset_dimensions()  # a wrong <dimension> tag would truncate rows
                sheets.append(_Sheet(ws.title, list(ws.iter_rows(values_only=True))))
        except _LOAD_ERRORS as exc:
            raise FeedError(path, f"is a damaged .xlsx workbook ({_short(exc)})") from None
        finally:
            workbook.close()
    return sheets, sorted({str(w.message) for w in caught})


def _short(exc: BaseException) -> str:
    """A one-line description of an exception, without traceback."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "…"


def _parse_sheet(sheet: _Sheet) -> _SheetData:
    """Hourly values of one station sheet; raises :class:`_SkipSheet` if it has no layout."""
    header = _find_header(sheet)
    notes: list[str] = []
    _check_quantity(sheet, header.row, notes)
    station = _station(sheet, header.row, notes)
    month = _month(sheet, header.row, notes)
    if header.unknown:
        notes.append(
            f"sheet {sheet.title!r}: header cell(s) {', '.join(header.unknown)} are neither "
            "hours 1–24 nor 낮/밤; their columns were not read"
        )
    rows = _Rows()
    for line in range(header.row + 1, len(sheet.rows) + 1):
        _collect_row(sheet, header, line, month, rows)
    if rows.empty_cells:
        notes.append(
            f"sheet {sheet.title!r}: {rows.empty_cells} empty hourly cell(s), "
            "taken as missing values"
        )
    if rows.unread:
        notes.append(
            f"sheet {sheet.title!r}: row(s) {_list(rows.unread)} hold neither a date "
            "nor an hourly value; not read"
        )
    return _SheetData(
        sheet,
        station,
        _hour_starts(rows.days, rows.hours),
        np.asarray(rows.values, np.float64),
        np.asarray(rows.lines, np.int64),
        header.derived,
        rows.rejects,
        notes,
    )


@dataclass
class _Rows:
    """What the data rows of one sheet yield, one hourly cell per list entry."""

    days: list[date] = field(default_factory=list)
    hours: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    empty_cells: int = 0
    unread: list[int] = field(default_factory=list)  # rows with content but no date or value


def _collect_row(
    sheet: _Sheet, header: _Header, line: int, month: tuple[int, int] | None, out: _Rows
) -> None:
    """Add one data row's hourly values to ``out``, or its reject."""
    row = sheet.rows[line - 1]
    if _blank(_cell(row, header.date_col)) and all(_blank(_cell(row, c)) for c in header.hours):
        if any(not _blank(value) for value in row):
            out.unread.append(line)
        return
    cells, bad, empty = _hour_cells(sheet, header, line)
    day, date_problem = _row_date(sheet, header, line, month)
    if day is None:
        reason = f"{date_problem}; the row's {len(cells)} hourly value(s) were not stored"
        out.rejects.append(Reject(line, _render(row, line), "; ".join([reason, *bad])))
        return
    if bad:
        reason = "; ".join(bad) + "; the row's other hourly values were stored"
        out.rejects.append(Reject(line, _render(row, line), reason))
    out.empty_cells += empty
    for hour, value in cells:
        out.days.append(day)
        out.hours.append(hour)
        out.values.append(value)
        out.lines.append(line)


def _hour_cells(
    sheet: _Sheet, header: _Header, line: int
) -> tuple[list[tuple[int, float]], list[str], int]:
    """The row's (hour, dB) values, why its non-numeric cells are bad, and its empty cells."""
    row = sheet.rows[line - 1]
    cells: list[tuple[int, float]] = []
    bad: list[str] = []
    empty = 0
    for col, hour in header.hours.items():
        value = _cell(row, col)
        if _blank(value):
            empty += 1
            continue
        number = _number(value)
        if number is None:
            bad.append(
                f"sheet {sheet.title!r} row {line}, column {get_column_letter(col + 1)} "
                f"(hour {hour}): {_show(value)} is not a number; expected LEQ in dB "
                "or an empty cell"
            )
        else:
            cells.append((hour, number))
    return cells, bad, empty


def _find_header(sheet: _Sheet) -> _Header:
    """The row holding ``측정일`` and the hour columns 1–24 beside it."""
    for number, row in enumerate(sheet.rows, start=1):
        date_col = next((c for c, v in enumerate(row) if _label(v).startswith(DATE_LABEL)), None)
        if date_col is not None:
            return _header(number, date_col, row)
    raise _SkipSheet(f"no header row with a '{DATE_LABEL}\\시간' cell")


def _header(number: int, date_col: int, row: Row) -> _Header:
    """Sort header row ``number``'s cells into hour, derived (낮/밤) and unknown columns."""
    hours: dict[int, int] = {}
    derived: list[str] = []
    unknown: list[str] = []
    for col, value in enumerate(row):
        if col == date_col or _blank(value):
            continue
        hour = _hour_label(value)
        if hour is not None:
            hours[col] = hour
        elif _label(value) in DERIVED:
            derived.append(_label(value))
        else:
            unknown.append(f"{get_column_letter(col + 1)}{number}={_show(value)}")
    if not hours:
        raise _SkipSheet(f"header row {number} has no hour columns 1–24")
    return _Header(number, date_col, hours, derived, unknown)


def _hour_label(value: object) -> int | None:
    """1–24 from a header cell (``1``, ``1.0``, ``'01'``, ``'1시'``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and float(value).is_integer():
        hour = int(value)
    elif isinstance(value, str) and (match := _HOUR.match(value.strip())):
        hour = int(match.group(1))
    else:
        return None
    return hour if 1 <= hour <= 24 else None


def _labelled(sheet: _Sheet, above: int, label: str) -> object:
    """The value next to a label (``측정장소 :`` → the next non-empty cell to its right, or the
    text after the colon in the label cell itself) in the rows above the header; None if absent.
    """
    for row in sheet.rows[: above - 1]:
        for col, value in enumerate(row):
            if not _label(value).startswith(label):
                continue
            _, colon, after = str(value).replace("：", ":").partition(":")
            if colon and after.strip():
                return after.strip()
            return next((v for v in row[col + 1 :] if not _blank(v)), None)
    return None


def _check_quantity(sheet: _Sheet, header_row: int, notes: list[str]) -> None:
    """Skip sheets that say they hold something other than LEQ (e.g. Lmax)."""
    quantity = _labelled(sheet, header_row, QUANTITY_LABEL)
    if quantity is None:
        notes.append(f"sheet {sheet.title!r}: no '측정 데이터' label; values taken as LEQ")
    elif _label(quantity).upper() not in ("LEQ", "LAEQ"):
        raise _SkipSheet(f"it holds {_show(quantity)} ('측정 데이터'), not LEQ")


def _station(sheet: _Sheet, header_row: int, notes: list[str]) -> str:
    """The station name from ``측정장소``, else from the sheet title (``시청(시간별)`` → 시청)."""
    station = _labelled(sheet, header_row, STATION_LABEL)
    if isinstance(station, str | int) and str(station).strip():
        return str(station).strip()
    match = _TITLE_SUFFIX.match(sheet.title)
    name = match.group(1) if match else sheet.title.strip()
    notes.append(
        f"sheet {sheet.title!r}: no '{STATION_LABEL}' label above the header; "
        f"station name {name!r} taken from the sheet title"
    )
    return name


def _month(sheet: _Sheet, header_row: int, notes: list[str]) -> tuple[int, int] | None:
    """(year, month) from the ``측정월`` label, which every row's date must fall in."""
    value = _labelled(sheet, header_row, MONTH_LABEL)
    if isinstance(value, date):
        return value.year, value.month
    match = _YEAR_MONTH.search(value) if isinstance(value, str) else None
    if match and 1 <= int(match.group(2)) <= 12:
        return int(match.group(1)), int(match.group(2))
    notes.append(
        f"sheet {sheet.title!r}: no readable '{MONTH_LABEL}' (measurement month); "
        "dates were not checked against it"
    )
    return None


def _row_date(
    sheet: _Sheet, header: _Header, line: int, month: tuple[int, int] | None
) -> tuple[date | None, str]:
    """The row's date, or None and why it is not usable."""
    value = _cell(sheet.rows[line - 1], header.date_col)
    where = f"sheet {sheet.title!r} row {line}, column {get_column_letter(header.date_col + 1)}"
    if _blank(value):
        return None, (
            f"{where}: no date (an empty cell, or a formula without a cached value); "
            f"expected the measurement date ({DATE_LABEL})"
        )
    day = _to_date(value)
    if day is None or not 1900 <= day.year <= 2200:
        return None, f"{where}: {_show(value)} is not a date; expected the measurement date"
    if month is not None and (day.year, day.month) != month:
        return None, (
            f"{where}: date {day.isoformat()} is outside the sheet's measurement month "
            f"{month[0]}-{month[1]:02d} ({MONTH_LABEL})"
        )
    return day, ""


def _to_date(value: object) -> date | None:
    """A calendar date from a date cell or date text (``2025-01-01``, ``2025.1.1.``)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        return None
    text = re.sub(r"\s+", "", value).rstrip(".")
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def _number(value: object) -> float | None:
    """A finite float from a numeric cell or numeric text; None if it is not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an integer cell beyond the float range
            return None
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if np.isfinite(number) else None


def _hour_starts(days: Sequence[date], hours: Sequence[int]) -> NDArray[np.int64]:
    """µs UTC of the start of each hour interval: hour *h* of a KST day starts at (h−1):00."""
    if not days:
        return np.zeros(0, np.int64)
    year = np.fromiter((d.year for d in days), np.int64, len(days))
    month = np.fromiter((d.month for d in days), np.int64, len(days))
    day = np.fromiter((d.day for d in days), np.int64, len(days))
    midnight, _ = kst_from_parts(year, month, day)  # dates are valid: checked in _row_date
    return midnight + (np.asarray(hours, np.int64) - 1) * HOUR_US


def _readings(data: _SheetData) -> Readings:
    thing = ThingSpec(
        f"{FEED}:{data.station}",
        f"Road noise {data.station}",
        f"Seoul road-traffic noise monitoring station {data.station} (hourly LEQ)",
        None,
        None,
        {"feed": FEED, "station": data.station},
    )
    n = len(data.time)
    return Readings(
        [thing], np.zeros(n, np.int64), data.time, {PROPERTY: data.value}, data.line, "PT1H"
    )


def _file_notes(parsed: list[_SheetData], skipped: list[str], warned: list[str]) -> list[str]:
    """Notes for the whole workbook: derived columns, odd headers, sheets skipped, warnings."""
    notes: list[str] = []
    derived = sorted({d for data in parsed for d in data.derived})
    if derived:
        with_derived = sum(1 for data in parsed if data.derived)
        names = ", ".join(f"'{d}' ({DERIVED[d]})" for d in derived)
        notes.append(
            f"column(s) {names}: day/night LEQ aggregates derived from the hourly "
            f"values in {with_derived} sheet(s); not stored as observations"
        )
    by_station: dict[str, list[str]] = {}
    for data in parsed:
        by_station.setdefault(data.station, []).append(data.sheet.title)
        notes.extend(data.notes)
    for station, titles in by_station.items():
        if len(titles) > 1:
            notes.append(
                f"sheets {', '.join(map(repr, titles))} all hold station {station!r}; "
                "where their dates overlap, the first stored value is kept"
            )
    notes.extend(skipped)
    notes.extend(f"openpyxl warning: {message}" for message in warned)
    return notes


def _line_text(sheet: _Sheet) -> Callable[[int], str]:
    """Renders an Excel row of ``sheet`` for the quarantine (``B7=2025-01-01, C7=64.4, …``)."""

    def text(line: int) -> str:
        return _render(sheet.rows[line - 1], line) if 1 <= line <= len(sheet.rows) else ""

    return text


def _render(row: Row, line: int) -> str:
    return ", ".join(
        f"{get_column_letter(col + 1)}{line}={_show(value)}"
        for col, value in enumerate(row)
        if not _blank(value)
    )


def _show(value: object) -> str:
    """A cell value as people read it: dates ISO, text quoted, numbers as written."""
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time.min else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _label(value: object) -> str:
    """Label normal form: text without spaces and colons (``'측정장소 :'`` → ``'측정장소'``)."""
    return re.sub(r"[\s:：]", "", value) if isinstance(value, str) else ""


def _cell(row: Row, col: int) -> object:
    return row[col] if col < len(row) else None


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _list(numbers: list[int], limit: int = 10) -> str:
    shown = ", ".join(map(str, numbers[:limit]))
    return shown + (f" … ({len(numbers)} in all)" if len(numbers) > limit else "")


__all__ = ["FEED", "SENSOR", "read_noise"]
