"""Vectorised timestamp parsing for Korean feeds: local time (KST, UTC+9) → µs since epoch, UTC.

Every parser returns the times and a validity mask, so impossible dates (month 13, 31 February,
minute 75) reject their own row and nothing else.
"""

from __future__ import annotations

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


def kst_from_digits(values: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """``yyyymmddhhmi`` (12 digits), ``yyyymmddhh`` (10) or ``yyyymmdd`` (8) integers in KST."""
    values = np.asarray(values, np.int64)
    digits = np.where(values > 0, np.floor(np.log10(np.maximum(values, 1))).astype(np.int64) + 1, 0)
    scaled = np.select(
        [digits == 12, digits == 10, digits == 8], [values, values * 100, values * 10_000], -1
    )
    year, rest = np.divmod(scaled, 100_000_000)
    month, rest = np.divmod(rest, 1_000_000)
    day, rest = np.divmod(rest, 10_000)
    hour, minute = np.divmod(rest, 100)
    micros, ok = kst_from_parts(year, month, day, hour, minute)
    return micros, ok & (scaled >= 0)


def kst_from_strings(values: NDArray[np.object_]) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Text timestamps in any of :data:`STRING_FORMATS`, KST."""
    text = pc.utf8_trim_whitespace(pa.array(values, pa.string()))
    micros = np.zeros(len(text), np.int64)
    ok = np.zeros(len(text), bool)
    for fmt in STRING_FORMATS:
        if ok.all():
            break
        parsed = pc.strptime(text, format=fmt, unit="us", error_is_null=True)
        hit = pc.is_valid(parsed).to_numpy(zero_copy_only=False) & ~ok
        if hit.any():
            values_us = parsed.cast(pa.int64()).fill_null(0).to_numpy()
            micros[hit] = values_us[hit] - KST_OFFSET_US
            ok |= hit
    return micros, ok
