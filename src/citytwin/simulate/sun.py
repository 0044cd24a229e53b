"""Where the sun is: the NREL Solar Position Algorithm (SPA), vectorised over times.

Method
    Reda, I. and Andreas, A. (2004), *Solar position algorithm for solar radiation applications*,
    Solar Energy 76(5), 577–589; revised as NREL/TP-560-34302 (2008). The Earth's heliocentric
    position comes from the abridged VSOP87 periodic terms of the paper's Table A4.2, nutation
    from its Table A4.3 (after Meeus, *Astronomical Algorithms*, 2nd ed., 1998), then the
    parallax of the observer and the atmospheric refraction at the given pressure and
    temperature. The paper gives ±0.0003° for the years −2000 to 6000; the tests reproduce its
    worked example (Table A5.1) to 1e-4°. The code is written from the paper's equations and tables.

Conventions
    Angles are degrees. ``azimuth`` is measured clockwise from true north (east = 90°),
    ``elevation`` is the apparent (refracted) elevation above the horizon, ``zenith`` is
    ``90 − elevation``. Refraction is applied only while the sun is above −0.8333° (its upper limb
    on the horizon), as in the paper. ΔT (terrestrial minus universal time) defaults to 69 s,
    its value for the 2020s; an error of a few seconds moves the sun by about 1e-5°. UT1 is taken
    to be UTC (they differ by under 0.9 s).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Final

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from citytwin.errors import ValidationError

logger = logging.getLogger(__name__)

Array = NDArray[np.float64]

# Table A4.2: Earth periodic terms, rows "A B C" of A·cos(B + C·JME), in units of 1e-8 rad or AU.
_EARTH_TERMS: Final = {
    "L0": """175347046 0 0; 3341656 4.6692568 6283.07585; 34894 4.6261 12566.1517;
        3497 2.7441 5753.3849; 3418 2.8289 3.5231; 3136 3.6277 77713.7715;
        2676 4.4181 7860.4194; 2343 6.1352 3930.2097; 1324 0.7425 11506.7698;
        1273 2.0371 529.691; 1199 1.1096 1577.3435; 990 5.233 5884.927; 902 2.045 26.298;
        857 3.508 398.149; 780 1.179 5223.694; 753 2.533 5507.553; 505 4.583 18849.228;
        492 4.205 775.523; 357 2.92 0.067; 317 5.849 11790.629; 284 1.899 796.298;
        271 0.315 10977.079; 243 0.345 5486.778; 206 4.806 2544.314; 205 1.869 5573.143;
        202 2.458 6069.777; 156 0.833 213.299; 132 3.411 2942.463; 126 1.083 20.775;
        115 0.645 0.98; 103 0.636 4694.003; 102 0.976 15720.839; 102 4.267 7.114;
        99 6.21 2146.17; 98 0.68 155.42; 86 5.98 161000.69; 85 1.3 6275.96; 85 3.67 71430.7;
        80 1.81 17260.15; 79 3.04 12036.46; 75 1.76 5088.63; 74 3.5 3154.69; 74 4.68 801.82;
        70 0.83 9437.76; 62 3.98 8827.39; 61 1.82 7084.9; 57 2.78 6286.6; 56 4.39 14143.5;
        56 3.47 6279.55; 52 0.19 12139.55; 52 1.33 1748.02; 51 0.28 5856.48; 49 0.49 1194.45;
        41 5.37 8429.24; 41 2.4 19651.05; 39 6.17 10447.39; 37 6.04 10213.29;
        37 2.57 1059.38; 36 1.71 2352.87; 36 1.78 6812.77; 33 0.59 17789.85;
        30 0.44 83996.85; 30 2.74 1349.87; 25 3.16 4690.48""",
    "L1": """628331966747 0 0; 206059 2.678235 6283.07585; 4303 2.6351 12566.1517;
        425 1.59 3.523; 119 5.796 26.298; 109 2.966 1577.344; 93 2.59 18849.23;
        72 1.14 529.69; 68 1.87 398.15; 67 4.41 5507.55; 59 2.89 5223.69; 56 2.17 155.42;
        45 0.4 796.3; 36 0.47 775.52; 29 2.65 7.11; 21 5.34 0.98; 19 1.85 5486.78;
        19 4.97 213.3; 17 2.99 6275.96; 16 0.03 2544.31; 16 1.43 2146.17; 15 1.21 10977.08;
        12 2.83 1748.02; 12 3.26 5088.63; 12 5.27 1194.45; 12 2.08 4694; 11 0.77 553.57;
        10 1.3 6286.6; 10 4.24 1349.87; 9 2.7 242.73; 9 5.64 951.72; 8 5.3 2352.87;
        6 2.65 9437.76; 6 4.67 4690.48""",
    "L2": """52919 0 0; 8720 1.0721 6283.0758; 309 0.867 12566.152; 27 0.05 3.52;
        16 5.19 26.3; 16 3.68 155.42; 10 0.76 18849.23; 9 2.06 77713.77; 7 0.83 775.52;
        5 4.66 1577.34; 4 1.03 7.11; 4 3.44 5573.14; 3 5.14 796.3; 3 6.05 5507.55;
        3 1.19 242.73; 3 6.12 529.69; 3 0.31 398.15; 3 2.28 553.57; 2 4.38 5223.69;
        2 3.75 0.98""",
    "L3": """289 5.844 6283.076; 35 0 0; 17 5.49 12566.15; 3 5.2 155.42; 1 4.72 3.52;
        1 5.3 18849.23; 1 5.97 242.73""",
    "L4": "114 3.142 0; 8 4.13 6283.08; 1 3.84 12566.15",
    "L5": "1 3.14 0",
    "B0": """280 3.199 84334.662; 102 5.422 5507.553; 80 3.88 5223.69; 44 3.7 2352.87;
        32 4 1577.34""",
    "B1": "9 3.9 5507.55; 6 1.73 5223.69",
    "R0": """100013989 0 0; 1670700 3.0984635 6283.07585; 13956 3.05525 12566.1517;
        3084 5.1985 77713.7715; 1628 1.1739 5753.3849; 1576 2.8469 7860.4194;
        925 5.453 11506.77; 542 4.564 3930.21; 472 3.661 5884.927; 346 0.964 5507.553;
        329 5.9 5223.694; 307 0.299 5573.143; 243 4.273 11790.629; 212 5.847 1577.344;
        186 5.022 10977.079; 175 3.012 18849.228; 110 5.055 5486.778; 98 0.89 6069.78;
        86 5.69 15720.84; 86 1.27 161000.69; 65 0.27 17260.15; 63 0.92 529.69;
        57 2.01 83996.85; 56 5.24 71430.7; 49 3.25 2544.31; 47 2.58 775.52; 45 5.54 9437.76;
        43 6.01 6275.96; 39 5.36 4694; 38 2.39 8827.39; 37 0.83 19651.05; 37 4.9 12139.55;
        36 1.67 12036.46; 35 1.84 2942.46; 33 0.24 7084.9; 32 0.18 5088.63; 32 1.78 398.15;
        28 1.21 6286.6; 28 1.9 6279.55; 26 4.59 10447.39""",
    "R1": """103019 1.10749 6283.07585; 1721 1.0644 12566.1517; 702 3.142 0;
        32 1.02 18849.23; 31 2.84 5507.55; 25 1.32 5223.69; 18 1.42 1577.34;
        10 5.91 10977.08; 9 1.42 6275.96; 9 0.27 5486.78""",
    "R2": """4359 5.7846 6283.0758; 124 5.579 12566.152; 12 3.14 0; 9 3.63 77713.77;
        6 1.87 5573.14; 3 5.47 18849.23""",
    "R3": "145 4.273 6283.076; 7 3.92 12566.15",
    "R4": "4 2.56 6283.08",
}

# Table A4.3: nutation, rows "Y0 Y1 Y2 Y3 Y4 a b c d": Δψ += (a + b·JCE)·sin(ΣXᵢYᵢ) and
# Δε += (c + d·JCE)·cos(ΣXᵢYᵢ), in units of 0.0001″.
_NUTATION: Final = """
    0 0 0 0 1 -171996 -174.2 92025 8.9; -2 0 0 2 2 -13187 -1.6 5736 -3.1;
    0 0 0 2 2 -2274 -0.2 977 -0.5; 0 0 0 0 2 2062 0.2 -895 0.5; 0 1 0 0 0 1426 -3.4 54 -0.1;
    0 0 1 0 0 712 0.1 -7 0; -2 1 0 2 2 -517 1.2 224 -0.6; 0 0 0 2 1 -386 -0.4 200 0;
    0 0 1 2 2 -301 0 129 -0.1; -2 -1 0 2 2 217 -0.5 -95 0.3; -2 0 1 0 0 -158 0 0 0;
    -2 0 0 2 1 129 0.1 -70 0; 0 0 -1 2 2 123 0 -53 0; 2 0 0 0 0 63 0 0 0; 0 0 1 0 1 63 0.1 -33 0;
    2 0 -1 2 2 -59 0 26 0; 0 0 -1 0 1 -58 -0.1 32 0; 0 0 1 2 1 -51 0 27 0; -2 0 2 0 0 48 0 0 0;
    0 0 -2 2 1 46 0 -24 0; 2 0 0 2 2 -38 0 16 0; 0 0 2 2 2 -31 0 13 0; 0 0 2 0 0 29 0 0 0;
    -2 0 1 2 2 29 0 -12 0; 0 0 0 2 0 26 0 0 0; -2 0 0 2 0 -22 0 0 0; 0 0 -1 2 1 21 0 -10 0;
    0 2 0 0 0 17 -0.1 0 0; 2 0 -1 0 1 16 0 -8 0; -2 2 0 2 2 -16 0.1 7 0; 0 1 0 0 1 -15 0 9 0;
    -2 0 1 0 1 -13 0 7 0; 0 -1 0 0 1 -12 0 6 0; 0 0 2 -2 0 11 0 0 0; 2 0 -1 2 1 -10 0 5 0;
    2 0 1 2 2 -8 0 3 0; 0 1 0 2 2 7 0 -3 0; -2 1 1 0 0 -7 0 0 0; 0 -1 0 2 2 -7 0 3 0;
    2 0 0 2 1 -7 0 3 0; 2 0 1 0 0 6 0 0 0; -2 0 2 2 2 6 0 -3 0; -2 0 1 2 1 6 0 -3 0;
    2 0 -2 0 1 -6 0 3 0; 2 0 0 0 1 -6 0 3 0; 0 -1 1 0 0 5 0 0 0; -2 -1 0 2 1 -5 0 3 0;
    -2 0 0 0 1 -5 0 3 0; 0 0 2 2 1 -5 0 3 0; -2 0 2 0 1 4 0 0 0; -2 1 0 2 1 4 0 0 0;
    0 0 1 -2 0 4 0 0 0; -1 0 1 0 0 -4 0 0 0; -2 1 0 0 0 -4 0 0 0; 1 0 0 0 0 -4 0 0 0;
    0 0 1 2 0 3 0 0 0; 0 0 -2 2 2 -3 0 0 0; -1 -1 1 0 0 -3 0 0 0; 0 1 1 0 0 -3 0 0 0;
    0 -1 1 2 2 -3 0 0 0; 2 -1 -1 2 2 -3 0 0 0; 0 0 3 2 2 -3 0 0 0; 2 -1 0 2 2 -3 0 0 0"""

#: Sun's angular radius plus the standard refraction at the horizon, degrees (paper, step 3.14).
HORIZON_ELEVATION: Final = -(0.26667 + 0.5667)
_EARTH_RADIUS: Final = 6378140.0  # metres, the paper's equatorial radius


def _table(text: str, columns: int) -> Array:
    rows = [row.split() for row in text.split(";")]
    return np.array(rows, dtype=np.float64).reshape(-1, columns)


_TERMS: Final = {name: _table(text, 3) for name, text in _EARTH_TERMS.items()}
_NUTATION_TABLE: Final = _table(_NUTATION, 9)


def solar_position(
    times: pd.DatetimeIndex | Sequence[datetime] | pd.Timestamp,
    lat: float,
    lon: float,
    *,
    elevation: float = 0.0,
    pressure: float = 1013.25,
    temperature: float = 12.0,
    delta_t: float = 69.0,
) -> pd.DataFrame:
    """Apparent topocentric sun position at ``times`` seen from ``(lat, lon)``.

    The NREL Solar Position Algorithm (Reda & Andreas 2004), evaluated for all times at once.

    Parameters
    ----------
    times
        Time-zone-aware instants (any zone; a mix of zones is indexed in UTC).
    lat, lon
        Observer latitude and longitude, degrees (north and east positive).
    elevation
        Observer height above sea level, metres (for the parallax).
    pressure, temperature
        Mean annual air pressure (hPa) and temperature (°C), for the refraction.
    delta_t
        ΔT = TT − UT, seconds.

    Returns
    -------
    DataFrame indexed by ``times`` with ``zenith``, ``azimuth`` (clockwise from north) and
    ``elevation`` (apparent, refracted), degrees.

    Raises
    ------
    ValidationError
        Times without a time zone, or an observer off the globe.

    Examples
    --------
    The worked example of Reda & Andreas (Table A5.1: zenith 50.11162°, azimuth 194.34024°):

    >>> when = pd.Timestamp("2003-10-17 12:30:30", tz="Etc/GMT+7")  # UTC−7
    >>> sun = solar_position(when, 39.742476, -105.1786, elevation=1830.14, pressure=820,
    ...                      temperature=11, delta_t=67)
    >>> sun[["zenith", "azimuth"]].round(5).to_numpy().tolist()
    [[50.11162, 194.34024]]
    """
    index = _validate(times, lat, lon, pressure)
    days = (index - pd.Timestamp("1970-01-01", tz="UTC")) / pd.Timedelta(days=1)
    jd = np.asarray(days, dtype=np.float64) + 2440587.5
    ra, dec, sidereal, radius = _geocentric(jd, delta_t)
    hour_angle = np.mod(sidereal + lon - ra, 360.0)
    dec_topo, hour_topo = _parallax(dec, hour_angle, radius, lat, elevation)
    true_elevation, azimuth = _horizon(dec_topo, hour_topo, lat)
    apparent = true_elevation + _refraction(true_elevation, pressure, temperature)
    return pd.DataFrame(
        {"zenith": 90.0 - apparent, "azimuth": azimuth, "elevation": apparent}, index=index
    )


def _validate(
    times: pd.DatetimeIndex | Sequence[datetime] | pd.Timestamp,
    lat: float,
    lon: float,
    pressure: float,
) -> pd.DatetimeIndex:
    problems = []
    if isinstance(times, pd.DatetimeIndex):
        index = times
    else:
        stamps = [pd.Timestamp(t) for t in ([times] if isinstance(times, datetime) else times)]
        naive = [row for row, stamp in enumerate(stamps) if stamp.tz is None]
        if naive:
            problems.append(f"times at positions {naive[:5]} have no time zone")
        zones = {str(stamp.tz) for stamp in stamps}
        mixed = len(zones) > 1 and not naive  # several zones: index them in UTC
        utc = [stamp.tz_convert("UTC") for stamp in stamps] if mixed else stamps
        index = pd.DatetimeIndex([] if naive else utc)
    if index.tz is None and not problems:
        problems.append("times have no time zone")
    if not -90.0 <= lat <= 90.0:
        problems.append(f"lat {lat}")
    if not -180.0 <= lon <= 360.0:
        problems.append(f"lon {lon}")
    if not pressure > 0:
        problems.append(f"pressure {pressure} hPa")
    if problems:
        raise ValidationError(
            "solar_position: " + "; ".join(problems) + "; expected time-zone-aware instants, "
            "lat in [-90, 90], lon in [-180, 360] and a positive pressure"
        )
    return index


def _series(name: str, jme: Array) -> Array:
    """Σ A·cos(B + C·JME) for one row of Table A4.2, for every time."""
    a, b, c = _TERMS[name].T
    result: Array = np.cos(b + np.multiply.outer(jme, c)) @ a
    return result


def _polynomial(prefix: str, count: int, jme: Array) -> Array:
    """(X0 + X1·JME + X2·JME² + …) / 1e8, the heliocentric L, B (radians) or R (AU)."""
    total = sum(_series(f"{prefix}{k}", jme) * jme**k for k in range(count))
    return np.asarray(total, dtype=np.float64) / 1e8


def _nutation(jce: Array) -> tuple[Array, Array]:
    """Nutation in longitude Δψ and obliquity Δε, degrees (paper, step 3.4)."""
    x = np.stack(
        [
            297.85036 + 445267.111480 * jce - 0.0019142 * jce**2 + jce**3 / 189474,
            357.52772 + 35999.050340 * jce - 0.0001603 * jce**2 - jce**3 / 300000,
            134.96298 + 477198.867398 * jce + 0.0086972 * jce**2 + jce**3 / 56250,
            93.27191 + 483202.017538 * jce - 0.0036825 * jce**2 + jce**3 / 327270,
            125.04452 - 1934.136261 * jce + 0.0020708 * jce**2 + jce**3 / 450000,
        ],
        axis=-1,
    )
    y, (a, b, c, d) = _NUTATION_TABLE[:, :5], _NUTATION_TABLE[:, 5:].T
    argument = np.radians(x @ y.T)
    psi = ((a + np.multiply.outer(jce, b)) * np.sin(argument)).sum(axis=-1) / 36e6
    epsilon = ((c + np.multiply.outer(jce, d)) * np.cos(argument)).sum(axis=-1) / 36e6
    return psi, epsilon


def _obliquity(jme: Array) -> Array:
    """Mean obliquity of the ecliptic ε₀, arc seconds (paper, step 3.5, Laskar 1986)."""
    u = jme / 10
    coefficients = (84381.448, -4680.93, -1.55, 1999.25, -51.38, -249.67, -39.05, 7.12, 27.87)
    result = np.polynomial.polynomial.polyval(u, [*coefficients, 5.79, 2.45])
    return np.asarray(result, dtype=np.float64)


def _geocentric(jd: Array, delta_t: float) -> tuple[Array, Array, Array, Array]:
    """Geocentric right ascension, declination, apparent sidereal time (°) and distance (AU)."""
    jde = jd + delta_t / 86400
    jc, jce = (jd - 2451545) / 36525, (jde - 2451545) / 36525
    jme = jce / 10
    longitude = np.degrees(_polynomial("L", 6, jme))
    latitude = np.degrees(_polynomial("B", 2, jme))
    radius = _polynomial("R", 5, jme)
    sun_longitude, sun_latitude = np.radians(np.mod(longitude + 180, 360)), np.radians(-latitude)
    psi, epsilon_nutation = _nutation(jce)
    epsilon = np.radians(_obliquity(jme) / 3600 + epsilon_nutation)
    aberration = -20.4898 / (3600 * radius)
    apparent = sun_longitude + np.radians(psi + aberration)
    ra = np.degrees(
        np.arctan2(
            np.sin(apparent) * np.cos(epsilon) - np.tan(sun_latitude) * np.sin(epsilon),
            np.cos(apparent),
        )
    )
    dec = np.degrees(
        np.arcsin(
            np.sin(sun_latitude) * np.cos(epsilon)
            + np.cos(sun_latitude) * np.sin(epsilon) * np.sin(apparent)
        )
    )
    mean_sidereal = 280.46061837 + 360.98564736629 * (jd - 2451545) + 0.000387933 * jc**2
    sidereal = np.mod(mean_sidereal - jc**3 / 38710000, 360) + psi * np.cos(epsilon)
    return np.mod(ra, 360), dec, sidereal, radius


def _parallax(
    dec: Array, hour_angle: Array, radius: Array, lat: float, elevation: float
) -> tuple[Array, Array]:
    """Topocentric declination and local hour angle, degrees (paper, steps 3.12–3.13)."""
    xi = np.radians(8.794 / (3600 * radius))
    phi = np.radians(lat)
    u = np.arctan(0.99664719 * np.tan(phi))
    x = np.cos(u) + elevation / _EARTH_RADIUS * np.cos(phi)
    y = 0.99664719 * np.sin(u) + elevation / _EARTH_RADIUS * np.sin(phi)
    delta, h = np.radians(dec), np.radians(hour_angle)
    denominator = np.cos(delta) - x * np.sin(xi) * np.cos(h)
    delta_alpha = np.arctan2(-x * np.sin(xi) * np.sin(h), denominator)
    dec_topo = np.arctan2((np.sin(delta) - y * np.sin(xi)) * np.cos(delta_alpha), denominator)
    return np.degrees(dec_topo), hour_angle - np.degrees(delta_alpha)


def _horizon(dec: Array, hour_angle: Array, lat: float) -> tuple[Array, Array]:
    """True elevation and azimuth (clockwise from north), degrees (paper, steps 3.14–3.15)."""
    phi, delta, h = np.radians(lat), np.radians(dec), np.radians(hour_angle)
    sin_e = np.sin(phi) * np.sin(delta) + np.cos(phi) * np.cos(delta) * np.cos(h)
    elevation = np.degrees(np.arcsin(np.clip(sin_e, -1.0, 1.0)))
    astronomers = np.arctan2(np.sin(h), np.cos(h) * np.sin(phi) - np.tan(delta) * np.cos(phi))
    return elevation, np.mod(np.degrees(astronomers) + 180.0, 360.0)


def _refraction(elevation: Array, pressure: float, temperature: float) -> Array:
    """Atmospheric refraction, degrees (Bennett's formula as in the paper, step 3.14.3)."""
    above = np.maximum(elevation, HORIZON_ELEVATION)  # keeps the formula off its pole at −5.11°
    bent = (
        (pressure / 1010.0)
        * (283.0 / (273.0 + temperature))
        * 1.02
        / (60.0 * np.tan(np.radians(above + 10.3 / (above + 5.11))))
    )
    return np.where(elevation >= HORIZON_ELEVATION, bent, 0.0)
