"""Congestion patterns from Seoul TOPIS link speeds: index, recurring bottlenecks, pictures.

Input is the TOPIS monthly release (서울시 차량통행속도): one row per link and day, one column per
hour (``01시`` … ``24시``). **Hour convention**: ``01시`` is the mean speed of 00:00–01:00 KST, so
it becomes ``hour = 0`` here and ``24시`` becomes ``hour = 23`` (the ``topis`` ingest preset
stores ``01시`` from 00:00 likewise). Dates are local (KST) calendar days.

Method
------
The congestion index of a link at a weekday and hour is ``1 − v / v_free`` (0 free flow, 1 at
standstill): one minus the Speed Performance Index of He et al. (2016), "A traffic congestion
assessment method for urban road networks based on Speed Performance Index", *Procedia
Engineering* 137, 425–433. ``v`` is the mean speed over the month's days of that weekday; the
free-flow speed ``v_free`` is a high percentile (default 90th; 85th–95th is usual, FHWA/INRIX
practice) of the link's own hourly speeds, which on Seoul streets are reached at night. Each cell
also gets the Seoul TOPIS level for urban roads: 원활 (smooth, > 30 km/h), 서행 (slow, 15–30) and
정체 (congested, < 15) — the thresholds of TOPIS's 도시부 도로 소통정보.

A day's hour is *congested* when its index is ≥ 0.7 (default): below 30 % of free flow, which on
a 50 km/h arterial is TOPIS's 정체 (< 15 km/h); ordinary Seoul rush hours run at 40–55 % of free
flow (index 0.45–0.6) and do not count. A bottleneck is *recurring* when it is congested at the
same weekday and hour
on at least ``min_share`` of the weeks observed (cf. FHWA, *Traffic Bottlenecks: A Primer*, 2007,
recurring vs non-recurring congestion); a one-off incident reaches one week in four or five.

Pictures: an hour × weekday heatmap and a map of the links by level (matplotlib ``Figure`` + Agg
canvas, English labels: CJK fonts may be missing), and the same layer as GeoJSON for the web.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import shapely
from numpy.typing import NDArray

from citytwin.errors import FeedError, ValidationError

logger = logging.getLogger(__name__)

HOUR_COLUMNS: Final = tuple(f"{h:02d}시" for h in range(1, 25))
#: Columns the ``topis`` ingest preset requires; 요일, 거리, 방향 and the classes are optional.
REQUIRED: Final = ("일자", "링크아이디", "도로명", "시점명", "종점명", *HOUR_COLUMNS)
OPTIONAL: Final = ("요일", "거리", "방향")
WEEKDAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
KOREAN_WEEKDAYS: Final = ("월", "화", "수", "목", "금", "토", "일")
#: Seoul TOPIS urban-road levels (km/h): < 15 정체, 15–30 서행, > 30 원활.
LEVELS: Final = ("congested", "slow", "smooth")
LEVEL_LIMITS: Final = (15.0, 30.0)
MAX_SPEED: Final = 200.0
NUMBER: Final = r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$"
ORDER: Final = [
    "link_id", "weekday", "hour", "mean_speed_kmh", "free_flow_kmh", "congestion_index", "level",
    "days", "congested_days", "congested_share", "road", "distance_m",
]  # fmt: skip


@dataclass(frozen=True)
class TopisReject:
    """A row :func:`read_topis` skipped: file, 1-based line and why."""

    source: str
    line: int
    reason: str


# --- reading --------------------------------------------------------------------------------------


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


# --- congestion index and bottlenecks -------------------------------------------------------------


def congestion_index(
    long: pd.DataFrame,
    *,
    free_flow: float | pd.Series | None = None,
    percentile: float = 90.0,
    threshold: float = 0.7,
) -> pd.DataFrame:
    """Mean speed, congestion index ``1 − v / v_free`` and TOPIS level per link × weekday × hour.

    Parameters
    ----------
    long
        :func:`read_topis` output.
    free_flow
        Free-flow speed (km/h): one number, a Series by link id, or None for each link's
        ``percentile``-th percentile of its observed hourly speeds.
    threshold
        Index at or above which a single day's hour counts as congested (``congested_days``);
        0.7 is TOPIS's 정체 (< 15 km/h) on a 50 km/h arterial.

    Returns
    -------
    DataFrame
        ``link_id, weekday, hour, mean_speed_kmh, free_flow_kmh, congestion_index, level,
        days, congested_days, congested_share, road, distance_m``; ``level`` is the TOPIS
        class of the mean speed (``congested`` < 15, ``slow`` 15–30, ``smooth`` > 30 km/h).

    Examples
    --------
    >>> long = pd.DataFrame({"link_id": "a", "weekday": 0, "hour": [8, 8, 3, 3],
    ...                      "speed_kmh": [10.0, 14.0, 40.0, 40.0]})
    >>> index = congestion_index(long, free_flow=40.0)
    >>> index[["hour", "mean_speed_kmh", "congestion_index", "level"]].values.tolist()
    [[3, 40.0, 0.0, 'smooth'], [8, 12.0, 0.7, 'congested']]
    """
    _require(long, ("link_id", "weekday", "hour", "speed_kmh"), "congestion_index long")
    _check_range("percentile", percentile, 0.0, 100.0)
    _check_range("threshold", threshold, 0.0, 1.0)
    codes, labels = pd.factorize(long["link_id"], use_na_sentinel=True)
    links = pd.Index(np.asarray(labels, dtype=str))
    key = _cell_keys(long, codes)
    speed = long["speed_kmh"].to_numpy(float)
    free = _free_flow(codes, links, speed, free_flow, percentile)
    observed = ~np.isnan(speed)
    with np.errstate(invalid="ignore", divide="ignore"):
        congested = observed & (1 - speed / free[codes] >= threshold)
    size = len(links) * 168
    days = np.bincount(key[observed], minlength=size)
    total = np.bincount(key[observed], weights=speed[observed], minlength=size)
    cell = np.flatnonzero(np.bincount(key, minlength=size))
    link, slot = np.divmod(cell, 168)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total[cell] / days[cell]
    index = pd.DataFrame(
        {
            "link_id": links[link],
            "weekday": slot // 24,
            "hour": slot % 24,
            "mean_speed_kmh": mean,
            "free_flow_kmh": free[link],
            "days": days[cell],
            "congested_days": np.bincount(key[congested], minlength=size)[cell],
        }
    )
    return _finish_index(index, long, codes, link, threshold)


def _cell_keys(long: pd.DataFrame, codes: NDArray[np.intp]) -> NDArray[np.int64]:
    """``(link × 7 + weekday) × 24 + hour`` of each row, after checking the ranges."""
    weekday = long["weekday"].to_numpy(np.int64)
    hour = long["hour"].to_numpy(np.int64)
    bad = (codes < 0) | (weekday < 0) | (weekday > 6) | (hour < 0) | (hour > 23)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValidationError(
            f"congestion_index long: row {row} has link_id={long['link_id'].iloc[row]!r}, "
            f"weekday={weekday[row]}, hour={hour[row]}; expected an id, 0–6 and 0–23"
        )
    keys: NDArray[np.int64] = (codes.astype(np.int64) * 7 + weekday) * 24 + hour
    return keys


def _free_flow(
    codes: NDArray[np.intp],
    links: pd.Index,
    speed: NDArray[np.float64],
    given: float | pd.Series | None,
    percentile: float,
) -> NDArray[np.float64]:
    """Free-flow speed per link code."""
    if given is None:
        quantile = pd.Series(speed).groupby(codes).quantile(percentile / 100)
        return np.asarray(quantile.reindex(range(len(links))), dtype=np.float64)
    if isinstance(given, pd.Series):
        free = given.set_axis(given.index.astype(str)).reindex(links)
        if free.isna().any():
            missing = ", ".join(free.index[free.isna()][:5])
            raise ValidationError(f"congestion_index free_flow: no speed for link(s) {missing}")
        speeds: NDArray[np.float64] = free.to_numpy(np.float64)
        return speeds
    if not given > 0:
        raise ValidationError(f"congestion_index free_flow={given}: expected a speed > 0 km/h")
    return np.full(len(links), float(given), dtype=np.float64)


def _finish_index(
    index: pd.DataFrame,
    long: pd.DataFrame,
    codes: NDArray[np.intp],
    link: NDArray[np.int64],
    threshold: float,
) -> pd.DataFrame:
    ratio = index["mean_speed_kmh"] / index["free_flow_kmh"]
    index["congestion_index"] = np.clip(1 - ratio, 0.0, 1.0)
    index["level"] = speed_level(index["mean_speed_kmh"].to_numpy(float))
    index["congested_share"] = index["congested_days"] / index["days"].replace(0, np.nan)
    _, first = np.unique(codes, return_index=True)  # codes are 0…n−1, so first[k] is link k's
    for column in ("road", "distance_m"):
        values = long[column].to_numpy()[first] if column in long else np.full(len(first), None)
        index[column] = values[link]
    index.attrs["threshold"] = threshold
    return index[ORDER]


def speed_level(speed_kmh: NDArray[np.float64]) -> NDArray[np.object_]:
    """TOPIS urban-road level of each speed: ``congested`` (정체) < 15 ≤ ``slow`` (서행) ≤ 30 <
    ``smooth`` (원활); None for NaN.

    >>> speed_level(np.array([10.0, 15.0, 30.0, 30.5, np.nan])).tolist()
    ['congested', 'slow', 'slow', 'smooth', None]
    """
    low, high = LEVEL_LIMITS
    level: NDArray[np.object_] = np.select(
        [speed_kmh < low, speed_kmh <= high, speed_kmh > high], LEVELS, ""
    ).astype(object)
    level[level == ""] = None
    return level


def recurring_bottlenecks(
    data: pd.DataFrame,
    *,
    threshold: float | None = None,
    min_share: float = 0.75,
    min_days: int = 3,
) -> pd.DataFrame:
    """Links congested at the same weekday and hour in most weeks, worst first.

    A cell (link, weekday, hour) recurs when its index is ≥ ``threshold`` on at least
    ``min_share`` of its ``days`` (≥ ``min_days`` observed). Links are ranked by
    ``severity × hours_per_week × length_km``: mean index of the recurring cells, their count,
    and the link length.

    Parameters
    ----------
    data
        :func:`read_topis` output (the index is computed with ``threshold``, default 0.7) or a
        :func:`congestion_index` result (which carries the threshold it was computed with).

    Returns
    -------
    DataFrame
        ``link_id, road, distance_m, weekdays, hours, hours_per_week, share, severity, score``.

    Examples
    --------
    >>> days = pd.date_range("2024-03-04", periods=28)
    >>> long = pd.DataFrame({"link_id": "a", "date": days.repeat(2), "hour": [3, 8] * 28,
    ...                      "weekday": days.day_of_week.repeat(2), "distance_m": 500.0,
    ...                      "speed_kmh": [50.0, 12.0] * 28})
    >>> found = recurring_bottlenecks(long).round(2)
    >>> found[["link_id", "hours", "hours_per_week", "severity", "score"]].values.tolist()
    [['a', (8,), 7, 0.76, 2.66]]
    """
    if "congested_days" in data:
        made = data.attrs.get("threshold")
        if threshold is not None and made is not None and made != threshold:
            raise ValidationError(
                f"recurring_bottlenecks threshold={threshold}: the index was computed with "
                f"{made}; pass the long frame or the same threshold"
            )
        index = data
    else:
        index = congestion_index(data, threshold=0.7 if threshold is None else threshold)
    _check_range("min_share", min_share, 0.0, 1.0)
    recurring = index[(index["days"] >= min_days) & (index["congested_share"] >= min_share)]
    return _rank(recurring)


def _rank(cells: pd.DataFrame) -> pd.DataFrame:
    grouped = cells.groupby("link_id", sort=False)
    found = grouped.agg(
        road=("road", "first"), distance_m=("distance_m", "first"),
        weekdays=("weekday", lambda w: tuple(WEEKDAYS[d] for d in sorted(set(w)))),
        hours=("hour", lambda h: tuple(sorted({int(x) for x in h}))),
        hours_per_week=("hour", "size"), share=("congested_share", "mean"),
        severity=("congestion_index", "mean"),
    ).reset_index()  # fmt: skip
    found["score"] = found["severity"] * found["hours_per_week"] * found["distance_m"] / 1000
    found = found.sort_values(["score", "severity"], ascending=False, na_position="last")
    return found.reset_index(drop=True)


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame]
    if missing:
        raise ValidationError(
            f"{what}: column(s) {', '.join(missing)} missing; found {', '.join(map(str, frame))}"
        )


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low < value <= high:
        raise ValidationError(f"{name}={value}: expected a value in ({low:g}, {high:g}]")


# --- pictures and map layer -----------------------------------------------------------------------

LEVEL_COLOURS: Final = {
    "congested": "#d7301f",
    "slow": "#fdae61",
    "smooth": "#1a9850",
    None: "#bdbdbd",
}


def hour_weekday_matrix(index: pd.DataFrame, *, link: str | None = None) -> NDArray[np.float64]:
    """``(7, 24)`` congestion index by weekday (row 0 = Monday) and hour, NaN without data.

    With ``link=None`` each cell is the network-wide mean weighted by link length (a link
    without a length counts as the median one), i.e. the share of free-flow speed lost per km.

    >>> index = pd.DataFrame({"link_id": ["a", "b"], "weekday": [0, 0], "hour": [8, 8],
    ...                       "congestion_index": [0.2, 0.8], "distance_m": [100.0, 300.0]})
    >>> matrix = hour_weekday_matrix(index)
    >>> round(float(matrix[0, 8]), 3), bool(np.isnan(matrix[6, 0]))
    (0.65, True)
    """
    _require(index, ("link_id", "weekday", "hour", "congestion_index"), "hour_weekday_matrix index")
    if link is not None:
        index = index[index["link_id"].astype(str) == str(link)]
        if index.empty:
            raise ValidationError(f"hour_weekday_matrix link={link!r}: not in the index")
    length = pd.to_numeric(index.get("distance_m", pd.Series(1.0, index=index.index)))
    weight = length.fillna(length.median()).fillna(1.0).to_numpy(float)
    value = index["congestion_index"].to_numpy(float)
    ok = ~np.isnan(value)
    cell = (index["weekday"].to_numpy(np.int64)[ok], index["hour"].to_numpy(np.int64)[ok])
    total, mass = np.zeros((7, 24)), np.zeros((7, 24))
    np.add.at(total, cell, value[ok] * weight[ok])
    np.add.at(mass, cell, weight[ok])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mass > 0, total / mass, np.nan)


def render_hour_weekday_heatmap(
    path: str | Path, index: pd.DataFrame, *, link: str | None = None, title: str | None = None
) -> Path:
    """Write a 1000 × 400 px PNG of :func:`hour_weekday_matrix` with a colour bar.

    >>> import tempfile
    >>> index = pd.DataFrame({"link_id": "a", "weekday": 0, "hour": [8], "congestion_index": [0.6]})
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     written = render_hour_weekday_heatmap(Path(folder) / "h.png", index)
    ...     written.stat().st_size > 1000
    True
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = hour_weekday_matrix(index, link=link)
    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="RdYlGn_r", vmin=0, vmax=1, aspect="auto")
    axes.set_xticks(range(24), [f"{h:02d}" for h in range(24)])
    axes.set_yticks(range(7), list(WEEKDAYS))
    axes.set_xlabel("hour of day (KST, 08 = 08:00–09:00)")
    axes.set_ylabel("weekday")
    scope = f"link {link}" if link is not None else "network, length-weighted"
    axes.set_title(title or f"Congestion index by hour and weekday ({scope})")
    figure.colorbar(image, ax=axes, label="congestion index 1 − v / v_free")
    figure.savefig(path, format="png")
    return Path(path)


def congestion_layer(
    index: pd.DataFrame, links: pd.DataFrame, *, weekday: int | str, hour: int
) -> dict[str, object]:
    """GeoJSON FeatureCollection (WGS84 lon/lat) of ``links`` with speed, index and level.

    ``links`` is a GeoDataFrame with ``link_id`` and a projected CRS (EPSG:5186); one feature per
    link, with null values where the index has no cell. ``weekday`` is 0–6, ``Mon``… or ``월``….
    Coordinates are transformed with ``always_xy`` (geopandas/pyproj), so they are lon, lat.

    Examples
    --------
    >>> links = gpd.GeoDataFrame({"link_id": ["a", "b"]}, crs="EPSG:5186", geometry=[
    ...     shapely.LineString([(200000, 550000), (200200, 550000)]),
    ...     shapely.LineString([(200200, 550000), (200200, 550200)])])
    >>> index = pd.DataFrame({"link_id": ["a"], "weekday": [0], "hour": [8],
    ...                       "mean_speed_kmh": [12.0], "free_flow_kmh": [50.0],
    ...                       "congestion_index": [0.76]})
    >>> layer = congestion_layer(index, links, weekday="Mon", hour=8)  # 50 km S of 127°E 38°N
    >>> [f["properties"]["level"] for f in layer["features"]]
    ['congested', None]
    >>> [round(c, 3) for c in layer["features"][0]["geometry"]["coordinates"][0]]
    [127.0, 37.55]
    """
    frame = _layer_frame(index, links, weekday, hour)
    collection: dict[str, object] = json.loads(frame.to_crs("EPSG:4326").to_json(na="null"))
    return collection


def render_congestion_map(
    path: str | Path,
    index: pd.DataFrame,
    links: pd.DataFrame,
    *,
    weekday: int | str,
    hour: int,
    title: str | None = None,
) -> Path:
    """Write an 800 × 800 px PNG map of ``links`` (in their metric CRS) coloured by TOPIS level.

    Examples
    --------
    >>> import tempfile
    >>> links = gpd.GeoDataFrame({"link_id": ["a"]}, crs="EPSG:5186",
    ...                          geometry=[shapely.LineString([(0, 0), (200, 0)])])
    >>> index = pd.DataFrame({"link_id": ["a"], "weekday": [4], "hour": [18],
    ...                       "mean_speed_kmh": [22.0], "free_flow_kmh": [50.0],
    ...                       "congestion_index": [0.56]})
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = render_congestion_map(Path(folder) / "m.png", index, links, weekday=4, hour=18)
    ...     path.stat().st_size > 1000
    True
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    frame = _layer_frame(index, links, weekday, hour)
    coords, part = shapely.get_coordinates(frame.geometry.to_numpy(), return_index=True)
    segments = np.split(coords, np.flatnonzero(np.diff(part)) + 1)
    colours = [LEVEL_COLOURS.get(level, LEVEL_COLOURS[None]) for level in frame["level"]]
    figure = Figure(figsize=(8, 8), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.add_collection(LineCollection(segments, colors=colours, linewidths=1.5))
    axes.autoscale_view()
    axes.set_aspect("equal")
    axes.set_xlabel(f"easting (m, {frame.crs.to_string() if frame.crs else 'metric'})")
    axes.set_ylabel("northing (m)")
    day = WEEKDAYS[_weekday_number(weekday)]
    axes.set_title(title or f"Link speed level, {day} {hour:02d}:00–{hour + 1:02d}:00")
    names = {
        "congested": "congested < 15 km/h",
        "slow": "slow 15–30",
        "smooth": "smooth > 30",
        None: "no data",
    }
    handles = [Line2D([], [], color=c, lw=3, label=names[k]) for k, c in LEVEL_COLOURS.items()]
    axes.legend(handles=handles, loc="lower right")
    figure.savefig(path, format="png")
    return Path(path)


def _layer_frame(
    index: pd.DataFrame, links: pd.DataFrame, weekday: int | str, hour: int
) -> gpd.GeoDataFrame:
    _require(links, ("link_id", "geometry"), "congestion layer links")
    if not isinstance(links, gpd.GeoDataFrame) or links.crs is None:
        raise ValidationError(
            "congestion layer links: expected a GeoDataFrame with a CRS (EPSG:5186)"
        )
    if not 0 <= hour <= 23:
        raise ValidationError(f"congestion layer hour={hour}: expected 0–23 (0 = 00:00–01:00)")
    day = _weekday_number(weekday)
    cells = index[(index["weekday"] == day) & (index["hour"] == hour)]
    values = cells.assign(link_id=cells["link_id"].astype(str)).set_index("link_id")
    frame = gpd.GeoDataFrame({"link_id": links["link_id"].astype(str).to_numpy()},
                             geometry=links.geometry.to_numpy(), crs=links.crs)  # fmt: skip
    for column in ("mean_speed_kmh", "free_flow_kmh", "congestion_index"):
        frame[column] = frame["link_id"].map(values[column]).astype(float)
    frame["level"] = speed_level(frame["mean_speed_kmh"].to_numpy(float))
    return frame


def _weekday_number(weekday: int | str) -> int:
    names = {n: i for i, n in enumerate(WEEKDAYS)} | {n: i for i, n in enumerate(KOREAN_WEEKDAYS)}
    if isinstance(weekday, str) and weekday in names:
        return names[weekday]
    if isinstance(weekday, int) and 0 <= weekday <= 6:
        return weekday
    raise ValidationError(f"weekday={weekday!r}: expected 0–6 (0 = Monday), Mon…Sun or 월…일")


__all__ = [
    "HOUR_COLUMNS", "LEVELS", "WEEKDAYS", "TopisReject", "congestion_index", "congestion_layer",
    "hour_weekday_matrix", "read_topis", "recurring_bottlenecks", "render_congestion_map",
    "render_hour_weekday_heatmap", "speed_level",
]  # fmt: skip
