"""Vectorised timestamp parsing for Korean feeds: local time (KST, UTC+9) → µs since epoch, UTC.

Every parser returns the times and a validity mask, so impossible dates (month 13, 31 February,
minute 75) reject their own row and nothing else.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

KST_OFFSET_US = 9 * 3_600_000_000
MINUTE_US = 60_000_000
HOUR_US = 60 * MINUTE_US

# the text layouts Korean portals use, tried in order
STRING_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d_%H:%M:%S",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y.%m.%d %H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y%m%d%H%M",
    "%Y-%m-%d",
    "%Y.%m.%d",
    "%Y%m%d",
)


def kst_from_parts(
    year: NDArray[np.int64],
    month: NDArray[np.int64],
    day: NDArray[np.int64],
    hour: NDArray[np.int64] | int = 0,
    minute: NDArray[np.int64] | int = 0,
    *,
    allow_hour_24: bool = False,
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Calendar parts in KST → (µs UTC, valid). ``allow_hour_24``: 24:00 is next day's 00:00.

    >>> t, ok = kst_from_parts(np.array([2020, 2020]), np.array([3, 2]), np.array([15, 30]),
    ...                        np.array([9, 0]))
    >>> ok.tolist(), str(np.datetime64(int(t[0]), "us"))
    ([True, False], '2020-03-15T00:00:00.000000')
    """
    hour = np.broadcast_to(np.asarray(hour, np.int64), year.shape)
    minute = np.broadcast_to(np.asarray(minute, np.int64), year.shape)
    max_hour = 24 if allow_hour_24 else 23
    ok = (year >= 1900) & (year <= 2200) & (month >= 1) & (month <= 12) & (day >= 1)
    ok &= (hour >= 0) & (hour <= max_hour) & (minute >= 0) & (minute <= 59)
    ok &= ~((hour == 24) & (minute != 0))
    safe_month = np.where(ok, (year - 1970) * 12 + month - 1, 0).astype("datetime64[M]")
    days = safe_month.astype("datetime64[D]") + np.where(ok, day - 1, 0)
    ok &= days.astype("datetime64[M]") == safe_month  # 31 February rolls into March: invalid
    micros = days.astype("datetime64[us]").astype(np.int64) + hour * HOUR_US + minute * MINUTE_US
    return np.where(ok, micros - KST_OFFSET_US, 0), ok


def kst_from_digits(
    values: NDArray[np.int64], *, allow_hour_24: bool = False
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """``yyyymmddhhmi`` (12 digits), ``yyyymmddhh`` (10) or ``yyyymmdd`` (8) integers in KST.

    ``allow_hour_24``: AirKorea and KMA write the last hour of a day as hour 24. A file ordered
    by time repeats each time for every sensor: each run of equal values is parsed once.
    """
    values = np.asarray(values, np.int64)
    if len(values) > 1:
        change = np.empty(len(values), bool)
        change[0] = True
        np.not_equal(values[1:], values[:-1], out=change[1:])
        head = np.flatnonzero(change)
        if len(head) * 4 < len(values):
            micros, ok = _from_digits(values[head], allow_hour_24)
            length = np.diff(np.append(head, len(values)))
            return np.repeat(micros, length), np.repeat(ok, length)
    return _from_digits(values, allow_hour_24)


def _from_digits(
    values: NDArray[np.int64], allow_hour_24: bool
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    digits = np.where(values > 0, np.floor(np.log10(np.maximum(values, 1))).astype(np.int64) + 1, 0)
    scaled = np.select(
        [digits == 12, digits == 10, digits == 8], [values, values * 100, values * 10_000], -1
    )
    year, rest = np.divmod(scaled, 100_000_000)
    month, rest = np.divmod(rest, 1_000_000)
    day, rest = np.divmod(rest, 10_000)
    hour, minute = np.divmod(rest, 100)
    micros, ok = kst_from_parts(year, month, day, hour, minute, allow_hour_24=allow_hour_24)
    return micros, ok & (scaled >= 0)


NAMED_FORMATS = {
    "yyyymmddhhmi": "%Y%m%d%H%M",
    "yyyymmddhhmm": "%Y%m%d%H%M",
    "yyyymmddhh": "%Y%m%d%H",
    "yyyymmdd": "%Y%m%d",
}
_DIRECTIVES = {"Y": "year", "m": "month", "d": "day", "H": "hour", "M": "minute", "S": "second"}


def format_regex(fmt: str) -> str:
    """A strptime-style or named format → an anchored regex with one named group per field.

    Fields next to another field are fixed width (``%Y%m%d%H``); others take one or two digits.

    Raises
    ------
    ValueError
        For a directive other than ``%Y %m %d %H %M %S``, a repeated field or no full date.
    """
    pattern = NAMED_FORMATS.get(fmt.lower(), fmt)
    tokens = [t for t in re.split(r"(%.)", pattern) if t]
    is_field = [len(t) == 2 and t[0] == "%" and t != "%%" for t in tokens]
    parts: list[str] = []
    seen: set[str] = set()
    for i, token in enumerate(tokens):
        if not is_field[i]:
            parts.append(re.escape("%" if token == "%%" else token))
            continue
        name = _DIRECTIVES.get(token[1])
        if name is None or name in seen:
            problem = "is repeated" if name else "is not supported"
            raise ValueError(
                f"time format {fmt!r}: {token} {problem}; use %Y %m %d %H %M %S "
                f"or one of {', '.join(NAMED_FORMATS)}"
            )
        seen.add(name)
        adjacent = (i > 0 and is_field[i - 1]) or (i + 1 < len(tokens) and is_field[i + 1])
        width = r"\d{4}" if name == "year" else r"\d{2}" if adjacent else r"\d{1,2}"
        parts.append(f"(?P<{name}>{width})")
    if not {"year", "month", "day"} <= seen:
        raise ValueError(f"time format {fmt!r} needs %Y, %m and %d (or a named format)")
    return "^" + "".join(parts) + "$"


def parse_local(
    labels: NDArray[np.object_], fmt: str
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Time labels read as KST → (µs since epoch UTC, valid). Hour 24 is 00 of the next day."""
    text = pc.utf8_trim_whitespace(pa.array(labels, pa.string()))
    if fmt != "auto":
        return _parse_pattern(text, format_regex(fmt))
    micros, ok = np.zeros(len(text), np.int64), np.zeros(len(text), bool)
    for pattern in _auto_patterns():
        if ok.all():
            break
        found, hit = _parse_pattern(text, pattern)
        micros, ok = np.where(ok, micros, found), ok | hit
    return micros, ok


@lru_cache(maxsize=1)
def _auto_patterns() -> list[str]:
    """``auto``: digit layouts first (fixed width), then the text layouts of ``timeparse``."""
    formats = dict.fromkeys(["%Y%m%d%H%M", "%Y%m%d%H", "%Y%m%d", *STRING_FORMATS])
    return [format_regex(f) for f in formats]


def _parse_pattern(text: pa.Array, pattern: str) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    parts = pc.extract_regex(text, pattern)
    matched = parts.is_valid().to_numpy(zero_copy_only=False)
    names = {parts.type.field(i).name for i in range(parts.type.num_fields)}

    def field(name: str) -> NDArray[np.int64]:
        if name not in names:
            return np.zeros(len(text), np.int64)
        values = pc.struct_field(parts, name).cast(pa.int64()).fill_null(0)
        return np.asarray(values.to_numpy(), np.int64)

    second = field("second")
    micros, ok = kst_from_parts(
        field("year"),
        field("month"),
        field("day"),
        field("hour"),
        field("minute"),
        allow_hour_24=True,
    )
    ok &= matched & (second <= 59) & ~((field("hour") == 24) & (second != 0))
    return np.where(ok, micros + second * 1_000_000, 0), ok


def kst_from_strings(values: NDArray[np.object_]) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Text timestamps in any of :data:`STRING_FORMATS` (or yyyymmdd[hh[mi]] digits), KST.

    >>> t, ok = kst_from_strings(np.array(["2018-01-01 09:00", "2018-02-30 10:00", "2020.5.1"],
    ...                                   dtype=object))
    >>> ok.tolist(), str(np.datetime64(int(t[0]), "us"))
    ([True, False, True], '2018-01-01T00:00:00.000000')
    """
    return parse_local(values, "auto")
