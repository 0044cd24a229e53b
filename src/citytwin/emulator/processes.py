"""The clock and the elementary processes the emulated city is built from.

Time is counted in whole minutes on the KST wall clock (:func:`kst_minute`), as the Korean feeds
write it; :func:`utc_micros` gives what the readers return and :func:`digit_times` /
:func:`text_times` what the files hold. Every random draw comes from :func:`random_stream`, one
independent stream per (seed, purpose, …), so adding a consumer never shifts another's numbers.
The AR(1) process and the diurnal profiles (traffic, mixing height, temperature shape, the sun's
elevation) drive the city weather, and the AR(1) process and the traffic profile the sensors too.
Every other emulator module needs the clock or the random streams, so this one sits at the bottom
and imports nothing of the emulator.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Final

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
Mask = NDArray[np.bool_]

KST: Final = timezone(timedelta(hours=9), "KST")
MINUTE_US: Final = 60_000_000
_EPOCH: Final = datetime(1970, 1, 1)


# -- time --------------------------------------------------------------------------------------


def kst_minute(moment: datetime) -> int:
    """Minutes since 1970-01-01 00:00 on the KST wall clock (a naive ``moment`` is KST)."""
    wall = moment.astimezone(KST).replace(tzinfo=None) if moment.tzinfo else moment
    return (wall - _EPOCH) // timedelta(minutes=1)


def utc_micros(minutes: I64) -> I64:
    return (minutes - 9 * 60) * MINUTE_US


def day_of_year(minutes: I64) -> F64:
    day = (minutes // 1440).astype("datetime64[D]")
    first = day.astype("datetime64[Y]").astype("datetime64[D]")
    out: F64 = (day - first).astype(np.int64) + 1.0 + (minutes % 1440) / 1440.0
    return out


def hour_of_day(minutes: I64) -> F64:
    return (minutes % 1440) / 60.0


def digit_times(minutes: I64) -> I64:
    """``yyyymmddhhmi`` integers (the 2020 S-DoT time encoding)."""
    day = (minutes // 1440).astype("datetime64[D]")
    month = day.astype("datetime64[M]")
    year = month.astype("datetime64[Y]").astype(np.int64) + 1970
    mon = month.astype(np.int64) % 12 + 1
    dom = (day - month.astype("datetime64[D]")).astype(np.int64) + 1
    hh, mi = np.divmod(minutes % 1440, 60)
    out: I64 = ((year * 100 + mon) * 100 + dom) * 10_000 + hh * 100 + mi
    return out


def text_times(minutes: I64, seconds: bool = True) -> list[str]:
    """``yyyy-mm-dd hh:mm[:ss]`` strings."""
    text = np.datetime_as_string(minutes.astype("datetime64[m]"), unit="s" if seconds else "m")
    return [t.replace("T", " ") for t in text.tolist()]


# -- random processes --------------------------------------------------------------------------


def random_stream(seed: int, *stream: int) -> np.random.Generator:
    """An independent random stream per (seed, purpose, …): adding a consumer elsewhere
    does not shift the numbers of another."""
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


def ar1(
    rng: np.random.Generator, steps: int, tau: float, sd: float, width: int | None = None
) -> F64:
    """Stationary AR(1) along axis 0 with e-folding time ``tau`` steps and standard deviation."""
    phi = math.exp(-1.0 / tau)
    shape = (steps,) if width is None else (steps, width)
    shocks = rng.standard_normal(shape) * sd * math.sqrt(1.0 - phi * phi)
    out = np.empty(shape)
    out[0] = shocks[0] / math.sqrt(1.0 - phi * phi)
    for k in range(1, steps):
        out[k] = phi * out[k - 1] + shocks[k]
    return out


_TRAFFIC: Final = np.array([
    0.35, 0.25, 0.2, 0.18, 0.22, 0.4, 0.75, 1.0, 1.05, 0.95, 0.9, 0.92,
    0.93, 0.92, 0.93, 0.95, 1.0, 1.08, 1.05, 0.9, 0.78, 0.7, 0.6, 0.47,
])  # fmt: skip


def traffic(hour: F64) -> F64:
    """Relative road traffic by hour of day (Seoul arterial profile, 1 = daytime)."""
    h = np.mod(hour, 24.0)
    i = np.floor(h).astype(np.int64)
    w = h - i
    out: F64 = _TRAFFIC[i] * (1 - w) + _TRAFFIC[(i + 1) % 24] * w
    return out


def mixing(hour: F64) -> F64:
    """Relative boundary-layer height: shallow at night, deepest early afternoon."""
    out: F64 = 0.35 + 0.65 * np.maximum(0.0, np.sin(np.pi * (hour - 7.0) / 13.0))
    return out


def diurnal(hour: F64) -> F64:
    """Temperature shape in [-1, 1]: minimum 05:30, maximum 14:30 (faster rise than fall)."""
    rising = (hour >= 5.5) & (hour < 14.5)
    fall = np.mod(hour - 14.5, 24.0)
    out: F64 = np.where(rising, -np.cos(np.pi * (hour - 5.5) / 9.0), np.cos(np.pi * fall / 15.0))
    return out


def sun(minutes: I64, lon: float, lat: float) -> F64:
    """Sine of the sun's elevation (declination and equation of time, ±0.5° accuracy)."""
    utc = minutes - 9 * 60
    doy = np.mod(utc / 1440.0 - 0.5, 365.2422) + 0.5  # day of year from 1970-01-01
    b = 2 * np.pi * (doy - 81) / 364.0
    eot = 9.87 * np.sin(2 * b) - 7.53 * np.cos(b) - 1.5 * np.sin(b)
    decl = np.radians(23.44) * np.sin(2 * np.pi * (doy - 81) / 365.2422)
    solar = np.mod(utc, 1440) + 4 * lon + eot
    angle = np.radians(solar / 4.0 - 180.0)
    phi = math.radians(lat)
    out: F64 = math.sin(phi) * np.sin(decl) + math.cos(phi) * np.cos(decl) * np.cos(angle)
    return out
