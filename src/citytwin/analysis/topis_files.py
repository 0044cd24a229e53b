"""Reading Seoul TOPIS link-speed files (서울시 차량통행속도) into one row per link, day and hour.

Input is the TOPIS monthly release: one row per link and day, one column per hour (``01시`` …
``24시``). **Hour convention**: ``01시`` is the mean speed of 00:00–01:00 KST, so it becomes
``hour = 0`` here and ``24시`` becomes ``hour = 23`` (the ``topis`` ingest preset stores ``01시``
from 00:00 likewise). Dates are local (KST) calendar days.

:func:`read_topis` reads the files (CP949, UTF-8 or UTF-8 with BOM) or a wide frame already
loaded; rows it cannot read are skipped and listed as :class:`TopisReject`. The congestion
analysis of its output is in :mod:`citytwin.analysis.traffic`.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from numpy.typing import NDArray

from citytwin.errors import FeedError

logger = logging.getLogger(__name__)

HOUR_COLUMNS: Final = tuple(f"{h:02d}시" for h in range(1, 25))
#: Columns the ``topis`` ingest preset requires; 요일, 거리, 방향 and the classes are optional.
REQUIRED: Final = ("일자", "링크아이디", "도로명", "시점명", "종점명", *HOUR_COLUMNS)
OPTIONAL: Final = ("요일", "거리", "방향")
MAX_SPEED: Final = 200.0
NUMBER: Final = r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$"


@dataclass(frozen=True)
class TopisReject:
    """A row :func:`read_topis` skipped: file, 1-based line and why."""

    source: str
    line: int
    reason: str


def read_topis(source: str | Path | Sequence[str | Path] | pd.DataFrame) -> pd.DataFrame:
    """TOPIS monthly files (or a wide frame already loaded) → one row per link, day and hour.

    Files may be CP949 (as released), UTF-8 or UTF-8 with BOM; headers are matched after NFKC
    and whitespace removal, like the ingest preset. Rows with an empty link id, an invalid date,
    a non-numeric or negative speed or the wrong number of fields are skipped and listed in
    ``frame.attrs["rejects"]`` (:class:`TopisReject`); empty speed cells become NaN.

    Returns
    -------
    DataFrame
        ``link_id``, ``date`` (KST day), ``weekday`` (0 = Monday), ``hour`` (0 = 00–01),
        ``speed_kmh``, ``road``, ``distance_m``, ``direction``.

    Examples
    --------
    >>> wide = pd.DataFrame([["20240301", "금", "세종대로", "1000000100", "광화문", "시청",
    ...                       "391", "유입", *[30.5] * 23, ""]],
    ...                     columns=["일자", "요일", "도로명", "링크아이디", "시점명", "종점명",
    ...                              "거리", "방향", *HOUR_COLUMNS])
    >>> long = read_topis(wide)
    >>> len(long), int(long.weekday[0]), int(long.hour.iloc[-1]), int(long.speed_kmh.isna().sum())
    (24, 4, 23, 1)
    """
    if isinstance(source, pd.DataFrame):
        frames = [_wide_from_frame(source)]
    else:
        paths = [source] if isinstance(source, str | Path) else list(source)
        frames = [_wide_from_file(Path(p)) for p in paths]
    wide = pd.concat([f for f, _ in frames], ignore_index=True)
    rejects = [r for _, found in frames for r in found]
    if rejects:
        logger.warning("read_topis: %d row(s) skipped, first: %s", len(rejects), rejects[0])
    long = _to_long(wide)
    long.attrs["rejects"] = rejects
    return long


def _decode(path: Path) -> str:
    """CP949 (the release), UTF-8 or UTF-8+BOM; the ingest layer's rule, without importing it."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FeedError(
            str(path), f"cannot be read ({exc.strerror}); expected a TOPIS CSV"
        ) from None
    for encoding in ("utf-8-sig", "cp949"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise FeedError(str(path), "is neither UTF-8 nor CP949 text; expected a TOPIS CSV")


def _wide_from_file(path: Path) -> tuple[pd.DataFrame, list[TopisReject]]:
    text = _decode(path)
    fast = _parse_fast(text)
    if fast is not None:  # a clean file: Arrow's parser, rows on consecutive lines
        frame, header_line = fast
        return _wide_from_frame(frame, source=str(path), header_line=header_line)
    return _parse_exact(text, path)


def _parse_fast(text: str) -> tuple[pd.DataFrame, int] | None:
    """Arrow parse of a file without blank or malformed lines; None when it has any."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip()), None)
    if start is None or len(lines) == start + 1 or any(not line.strip() for line in lines[start:]):
        return None
    header = next(csv.reader([lines[start]]))
    broken: list[object] = []

    def skip(row: object) -> str:
        broken.append(row)
        return "skip"

    try:
        table = pacsv.read_csv(
            io.BytesIO("\n".join(lines[start:]).encode("utf-8")),
            parse_options=pacsv.ParseOptions(invalid_row_handler=skip),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid:  # quoting Arrow cannot follow: the exact path reports the line
        return None
    if broken or len(set(header)) != len(header):
        return None
    return table.to_pandas(), start + 1


def _parse_exact(text: str, path: Path) -> tuple[pd.DataFrame, list[TopisReject]]:
    """Row by row: every malformed line is named by its number."""
    rows = list(csv.reader(io.StringIO(text, newline="")))
    start = next((i for i, row in enumerate(rows) if any(c.strip() for c in row)), None)
    if start is None:
        raise FeedError(str(path), "is empty; expected a TOPIS header line", line=1)
    header, body = rows[start], rows[start + 1 :]
    lines = np.arange(len(body)) + start + 2  # 1-based physical lines (no multi-line cells)
    sizes = np.fromiter(map(len, body), np.int64, len(body))
    blank = np.fromiter((not any(c.strip() for c in r) for r in body), bool, len(body))
    bad = (sizes != len(header)) & ~blank
    rejects = [
        TopisReject(str(path), int(n), f"{s} fields; expected {len(header)} as in the header")
        for n, s in zip(lines[bad], sizes[bad], strict=True)
    ]
    good = np.flatnonzero(~bad & ~blank)
    frame = pd.DataFrame([body[i] for i in good], columns=header, dtype=object)
    wide, more = _wide_from_frame(frame, source=str(path), lines=lines[good], header_line=start + 1)
    return wide, sorted(rejects + more, key=lambda r: r.line)


def _wide_from_frame(
    frame: pd.DataFrame,
    *,
    source: str = "<frame>",
    lines: NDArray[np.int64] | None = None,
    header_line: int = 1,
) -> tuple[pd.DataFrame, list[TopisReject]]:
    """Pick and type the TOPIS columns; reject rows that cannot be read."""
    columns = _resolve_columns([str(c) for c in frame.columns], source, header_line)
    line = np.arange(len(frame)) + header_line + 1 if lines is None else lines
    text = {k: _text(frame[v]) for k, v in columns.items() if k not in HOUR_COLUMNS}
    parsed = [_parse_speeds(frame[columns[h]]) for h in HOUR_COLUMNS]
    speeds = np.column_stack([v for v, _ in parsed]).reshape(len(frame), 24)
    blank = np.column_stack([b for _, b in parsed]).reshape(len(frame), 24)
    date = pd.to_datetime(pd.Series(text["일자"]), format="%Y%m%d", errors="coerce")
    problems = {
        "link id (링크아이디) is empty": text["링크아이디"] == "",
        "일자 is not a date yyyymmdd": date.isna().to_numpy(),
        "a speed cell is not a number": (np.isnan(speeds) & ~blank).any(axis=1),
        f"a speed is outside 0–{MAX_SPEED:g} km/h": ((speeds < 0) | (speeds > MAX_SPEED)).any(
            axis=1
        ),
    }
    rejects = _collect(problems, source, line)
    ok = ~np.logical_or.reduce(list(problems.values()))
    wide = pd.DataFrame(
        {
            "link_id": text["링크아이디"][ok],
            "date": date[ok].to_numpy(),
            "road": text["도로명"][ok],
            "distance_m": pd.to_numeric(text.get("거리", _blank(len(frame)))[ok], errors="coerce"),
            "direction": text.get("방향", _blank(len(frame)))[ok],
        }
    )
    return wide.join(pd.DataFrame(speeds[ok], columns=range(24))), rejects


def _resolve_columns(names: list[str], source: str, line: int) -> dict[str, str]:
    by_norm = {_normalize(n): n for n in names}
    found = {c: by_norm[_normalize(c)] for c in REQUIRED + OPTIONAL if _normalize(c) in by_norm}
    missing = [c for c in REQUIRED if c not in found]
    if missing:
        raise FeedError(
            source,
            f"column(s) {', '.join(missing)} of the TOPIS layout are not in the header; "
            f"found: {', '.join(names)}",
            line=line,
        )
    return found


def _normalize(name: str) -> str:
    text = unicodedata.normalize("NFKC", name.replace("\ufeff", ""))
    return re.sub(r"\s+", "", text).lower()


def _parse_speeds(column: pd.Series) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Numbers of one hour column (NaN where blank or broken) and which cells are blank."""
    if pd.api.types.is_numeric_dtype(column):
        values = column.to_numpy(np.float64, na_value=np.nan)
        return values, np.isnan(values)
    cells = column.astype(object).where(column.notna(), "").astype(str)
    text = pc.utf8_trim_whitespace(pa.array(cells.to_numpy(dtype=str), type=pa.string()))
    number = pc.match_substring_regex(text, NUMBER).to_numpy(zero_copy_only=False)
    blank = pc.equal(text, "").to_numpy(zero_copy_only=False)
    values = np.full(len(column), np.nan)
    values[number] = pc.cast(text.filter(pa.array(number)), pa.float64()).to_numpy()
    return values, blank


def _text(column: pd.Series) -> NDArray[np.str_]:
    """Text cells, stripped; whole numbers read from a spreadsheet lose their ``.0``."""
    if pd.api.types.is_float_dtype(column):
        column = column.astype("Int64")
    text = column.astype(object).where(column.notna(), "").astype(str).str.strip()
    return np.asarray(text.to_numpy(dtype=str))


def _blank(count: int) -> NDArray[np.str_]:
    return np.full(count, "", dtype=str)


def _collect(
    problems: dict[str, NDArray[np.bool_]], source: str, line: NDArray[np.int64]
) -> list[TopisReject]:
    reason = np.full(len(line), "", dtype=object)
    for text, mask in reversed(problems.items()):  # the first problem named wins
        reason[mask] = text
    bad = np.flatnonzero(reason != "")
    return [TopisReject(source, int(line[i]), str(reason[i])) for i in bad]


def _to_long(wide: pd.DataFrame) -> pd.DataFrame:
    """Rows × 24 hour columns → one row per cell (row-major: a row's hours stay together)."""
    long = pd.DataFrame(
        {
            "link_id": _repeat_category(wide["link_id"]),
            "date": np.repeat(wide["date"].to_numpy(), 24),
            "weekday": np.repeat(wide["date"].dt.day_of_week.to_numpy(np.int64), 24),
            "hour": np.tile(np.arange(24, dtype=np.int64), len(wide)),
            "speed_kmh": wide[list(range(24))].to_numpy(float).ravel(),
            "road": _repeat_category(wide["road"]),
            "distance_m": np.repeat(wide["distance_m"].to_numpy(float), 24),
            "direction": _repeat_category(wide["direction"]),
        }
    )
    return long


def _repeat_category(column: pd.Series) -> pd.Categorical:
    codes, labels = pd.factorize(column)
    return pd.Categorical.from_codes(np.repeat(codes, 24), categories=labels.astype(str))


__all__ = ["HOUR_COLUMNS", "TopisReject", "read_topis"]
