"""Atmospheric stability and dispersion coefficients: the σy, σz of a Gaussian plume or puff.

Stability
    :func:`stability_class` reads the Pasquill (1961) / Turner (1970) table: daytime classes from
    the 10 m wind speed and the incoming solar radiation (*insolation*), night classes from the
    wind and the cloud cover. :func:`insolation_from_elevation` gives the insolation of a clear
    sky from the sun's elevation (Turner 1964), so a solar-position model can feed the table.

Dispersion coefficients (``x`` is the downwind distance in metres, σ in metres)
    ``"pasquill-gifford"`` — the Pasquill–Gifford curves as drawn in Turner's *Workbook of
    Atmospheric Dispersion Estimates* (1970), in the piecewise power-law fit of the US EPA
    *ISC3 User's Guide, Vol. II* (EPA-454/B-95-003b, 1995, eqs. 1-33/1-34, tables 1-1 and 1-2).
    Open-country (rural) terrain only; these are the curves textbook plume examples read.

    ``"briggs"`` — Briggs (1973) interpolation formulas for open country (from the
    Pasquill–Gifford curves) and for urban areas (from the St Louis data of McElroy & Pooler),
    as tabulated in Hanna, Briggs & Hosker (1982), *Handbook on Atmospheric Diffusion*
    (DOE/TIC-11223) and in AIChE/CCPS (1999); see Griffiths (1994, *Atmos. Environ.* 28,
    2861–2865) on misprints of these formulas in secondary sources.

    :func:`puff_sigmas` — instantaneous-puff coefficients (σx = σy) from AIChE/CCPS (1999)
    *Guidelines for Consequence Analysis of Chemical Releases*, after Slade (1968).
"""

from __future__ import annotations

import logging
from typing import Final, Literal, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from citytwin.errors import ValidationError

logger = logging.getLogger(__name__)

Stability = Literal["A", "B", "C", "D", "E", "F"]
Insolation = Literal["strong", "moderate", "slight"]
Terrain = Literal["rural", "urban"]
Dispersion = Literal["briggs", "pasquill-gifford"]
Floats = NDArray[np.floating]

STABILITY_CLASSES: Final[tuple[Stability, ...]] = ("A", "B", "C", "D", "E", "F")

#: Pasquill/Turner table, one row per 10 m wind-speed band (upper bound exclusive, m/s):
#: day strong, moderate, slight insolation; night ≥ 4/8 cloud, ≤ 3/8 cloud. Turner (1970)
#: leaves night below 2 m/s blank; NOAA ARL READY fills it with E and F, as here.
_PASQUILL_TABLE: Final = (
    (2.0, ("A", "AB", "B", "E", "F")),
    (3.0, ("AB", "B", "C", "E", "F")),
    (5.0, ("B", "BC", "C", "D", "E")),
    (6.0, ("C", "CD", "D", "D", "D")),
    (float("inf"), ("C", "D", "D", "D", "D")),
)
_INSOLATION_COLUMN: Final = {"strong": 0, "moderate": 1, "slight": 2}

#: ISC3 σy = 465.11628·x·tan(0.017453293·(c − d·ln x)), x in km (EPA-454/B-95-003b, table 1-1).
_PG_SIGMA_Y: Final = {
    "A": (24.1670, 2.5334),
    "B": (18.3330, 1.8096),
    "C": (12.5000, 1.0857),
    "D": (8.3330, 0.72382),
    "E": (6.2500, 0.54287),
    "F": (4.1667, 0.36191),
}
#: ISC3 σz = a·x^b by distance band (x in km, band upper bounds inclusive), table 1-2.
_PG_SIGMA_Z: Final = {
    "A": (
        (0.10, 0.15, 0.20, 0.25, 0.30, 0.40, 0.50),
        (122.800, 158.080, 170.220, 179.520, 217.410, 258.890, 346.750, 453.850),
        (0.94470, 1.05420, 1.09320, 1.12620, 1.26440, 1.40940, 1.72830, 2.11660),
    ),
    "B": ((0.20, 0.40), (90.673, 98.483, 109.300), (0.93198, 0.98332, 1.09710)),
    "C": ((), (61.141,), (0.91465,)),
    "D": (
        (0.30, 1.00, 3.00, 10.00, 30.00),
        (34.459, 32.093, 32.093, 33.504, 36.650, 44.053),
        (0.86974, 0.81066, 0.64403, 0.60486, 0.56589, 0.51179),
    ),
    "E": (
        (0.10, 0.30, 1.00, 2.00, 4.00, 10.00, 20.00, 40.00),
        (24.260, 23.331, 21.628, 21.628, 22.534, 24.703, 26.970, 35.420, 47.618),
        (0.83660, 0.81956, 0.75660, 0.63077, 0.57154, 0.50527, 0.46713, 0.37615, 0.29592),
    ),
    "F": (
        (0.20, 0.70, 1.00, 2.00, 3.00, 7.00, 15.00, 30.00, 60.00),
        (15.209, 14.457, 13.953, 13.953, 14.823, 16.187, 17.836, 22.651, 27.074, 34.219),
        (0.81558, 0.78407, 0.68465, 0.63227, 0.54503, 0.46490, 0.41507, 0.32681, 0.27436, 0.21716),
    ),
}
#: ISC3 caps σz at 5 000 m.
_PG_SIGMA_Z_MAX: Final = 5000.0

#: Briggs (1973): σy = ky·x·(1 + ay·x)^-½ and σz = kz·x·(1 + az·x)^pz.
_BRIGGS: Final[dict[Terrain, dict[str, tuple[float, float, float, float, float]]]] = {
    "rural": {
        "A": (0.22, 1e-4, 0.20, 0.0, 0.0),
        "B": (0.16, 1e-4, 0.12, 0.0, 0.0),
        "C": (0.11, 1e-4, 0.08, 2e-4, -0.5),
        "D": (0.08, 1e-4, 0.06, 1.5e-3, -0.5),
        "E": (0.06, 1e-4, 0.03, 3e-4, -1.0),
        "F": (0.04, 1e-4, 0.016, 3e-4, -1.0),
    },
    "urban": {
        "A": (0.32, 4e-4, 0.24, 1e-3, 0.5),
        "B": (0.32, 4e-4, 0.24, 1e-3, 0.5),
        "C": (0.22, 4e-4, 0.20, 0.0, 0.0),
        "D": (0.16, 4e-4, 0.14, 3e-4, -0.5),
        "E": (0.11, 4e-4, 0.08, 1.5e-3, -0.5),
        "F": (0.11, 4e-4, 0.08, 1.5e-3, -0.5),
    },
}
#: CCPS (1999) instantaneous puff: σx = σy = a·x^b, σz = c·x^d.
_PUFF: Final = {
    "A": (0.18, 0.92, 0.60, 0.75),
    "B": (0.14, 0.92, 0.53, 0.73),
    "C": (0.10, 0.92, 0.34, 0.71),
    "D": (0.06, 0.92, 0.15, 0.70),
    "E": (0.04, 0.92, 0.10, 0.65),
    "F": (0.02, 0.89, 0.05, 0.61),
}


def stability_class(
    wind_speed: float,
    *,
    daytime: bool,
    insolation: Insolation | None = None,
    cloud_cover: float | None = None,
    intermediate: Literal["stable", "unstable"] = "stable",
) -> Stability:
    """Pasquill–Gifford stability class from the 10 m wind, time of day, sun and cloud.

    Pasquill (1961) as tabulated by Turner (1970, table 1): by day the class follows the wind
    and the insolation, by night (one hour before sunset to one hour after sunrise) the wind and
    the cloud cover (``cloud_cover`` in oktas, 0–8: ≥ 4/8 is the cloudy column). An overcast
    sky (8/8) gives neutral D by day or night. Intermediate classes (A–B, B–C, C–D) resolve to
    the more stable one by default, which gives higher ground-level concentrations from
    near-ground releases — the cautious choice for hazard zones.

    Examples
    --------
    >>> stability_class(6.5, daytime=True, insolation="moderate")
    'D'
    >>> stability_class(1.5, daytime=False, cloud_cover=2)
    'F'
    >>> stability_class(2.5, daytime=True, insolation="strong", intermediate="unstable")
    'A'
    """
    _check_wind(wind_speed)
    if cloud_cover is not None and not 0 <= cloud_cover <= 8:
        raise ValidationError(f"cloud_cover {cloud_cover}: expected oktas between 0 and 8")
    if cloud_cover == 8:
        return "D"
    row = next(classes for bound, classes in _PASQUILL_TABLE if wind_speed < bound)
    if daytime:
        if insolation not in _INSOLATION_COLUMN:
            raise ValidationError(
                f"insolation {insolation!r}: by day expected one of strong, moderate, slight"
            )
        entry = row[_INSOLATION_COLUMN[insolation]]
    else:
        if cloud_cover is None:
            raise ValidationError("cloud_cover: at night the stability class needs it (oktas)")
        entry = row[3] if cloud_cover >= 4 else row[4]
    letter = entry[-1] if intermediate == "stable" else entry[0]
    return cast(Stability, letter)


def insolation_from_elevation(elevation: float) -> Insolation:
    """Clear-sky insolation class from the sun's elevation in degrees (Turner 1964).

    Above 60° the insolation is strong, from 35° to 60° moderate, below 35° slight.

    Examples
    --------
    >>> insolation_from_elevation(65.0), insolation_from_elevation(40.0)
    ('strong', 'moderate')
    """
    if not elevation > 0:
        raise ValidationError(
            f"sun elevation {elevation}°: the sun is down; use daytime=False and cloud_cover"
        )
    return "strong" if elevation > 60 else "moderate" if elevation > 35 else "slight"


def pasquill_gifford_sigmas(x: ArrayLike, stability: str) -> tuple[Floats, Floats]:
    """σy, σz (m) of the Pasquill–Gifford curves at downwind distances ``x`` (m) > 0.

    ISC3's fit of Turner's (1970) curves (EPA-454/B-95-003b, eqs. 1-33 and 1-34), open country.

    Examples
    --------
    >>> sy, sz = pasquill_gifford_sigmas(500.0, "D")
    >>> round(float(sy), 1), round(float(sz), 1)
    (36.1, 18.3)
    """
    stability = check_stability(stability)
    km = np.asarray(x, dtype=np.float64) / 1000.0 if _is_int(x) else np.asarray(x) / 1000.0
    log_km = np.log(km)
    c, d = _PG_SIGMA_Y[stability]
    sigma_y = 465.11628 * km * np.tan(0.017453293 * c - (0.017453293 * d) * log_km)
    breaks, a, b = _PG_SIGMA_Z[stability]
    if breaks:
        band = np.searchsorted(np.asarray(breaks, dtype=km.dtype), km, side="left")
        coef, power = np.asarray(a, km.dtype)[band], np.asarray(b, km.dtype)[band]
        sigma_z = coef * np.exp(power * log_km)
    else:
        sigma_z = a[0] * np.exp(b[0] * log_km)
    return sigma_y, np.minimum(sigma_z, _PG_SIGMA_Z_MAX)


def briggs_sigmas(
    x: ArrayLike, stability: str, *, terrain: Terrain = "urban"
) -> tuple[Floats, Floats]:
    """σy, σz (m) of Briggs' (1973) formulas at downwind distances ``x`` (m), rural or urban.

    As tabulated in Hanna, Briggs & Hosker (1982); the urban set suits a city like Seoul.

    Examples
    --------
    >>> sy, sz = briggs_sigmas(1000.0, "D", terrain="rural")
    >>> round(float(sy), 2), round(float(sz), 2)
    (76.28, 37.95)
    """
    stability = check_stability(stability)
    if terrain not in _BRIGGS:
        raise ValidationError(f"terrain {terrain!r}: expected 'rural' or 'urban'")
    ky, ay, kz, az, pz = _BRIGGS[terrain][stability]
    dist = np.asarray(x, dtype=np.float64) if _is_int(x) else np.asarray(x)
    sigma_y = ky * dist / np.sqrt(1.0 + ay * dist)
    sigma_z = kz * dist
    if az:  # exponents are ±½ or −1: sqrt and division are much cheaper than a power
        factor = 1.0 + az * dist
        sigma_z = (
            sigma_z * np.sqrt(factor)
            if pz == 0.5
            else sigma_z / (np.sqrt(factor) if pz == -0.5 else factor)
        )
    return sigma_y, sigma_z


def plume_sigmas(
    x: ArrayLike, stability: str, *, dispersion: Dispersion, terrain: Terrain
) -> tuple[Floats, Floats]:
    """σy, σz of the chosen parameterisation; Pasquill–Gifford curves are rural only.

    Examples
    --------
    >>> sy, sz = plume_sigmas(500.0, "D", dispersion="briggs", terrain="urban")
    >>> round(float(sy), 1), round(float(sz), 1)
    (73.0, 65.3)
    """
    if dispersion == "briggs":
        return briggs_sigmas(x, stability, terrain=terrain)
    if dispersion != "pasquill-gifford":
        raise ValidationError(
            f"dispersion {dispersion!r}: expected one of 'briggs', 'pasquill-gifford'"
        )
    if terrain != "rural":
        raise ValidationError(
            "terrain 'urban' with dispersion 'pasquill-gifford': the Pasquill–Gifford curves "
            "describe open country; use dispersion='briggs' for urban terrain"
        )
    return pasquill_gifford_sigmas(x, stability)


def puff_sigmas(x: ArrayLike, stability: str) -> tuple[Floats, Floats]:
    """σy (= σx) and σz (m) of an instantaneous puff after travelling ``x`` metres (CCPS 1999).

    Examples
    --------
    >>> sy, sz = puff_sigmas(1000.0, "D")
    >>> round(float(sy), 1), round(float(sz), 1)
    (34.5, 18.9)
    """
    stability = check_stability(stability)
    a, b, c, d = _PUFF[stability]
    dist = np.asarray(x, dtype=np.float64) if _is_int(x) else np.asarray(x)
    return a * dist**b, c * dist**d


def check_stability(stability: str) -> Stability:
    """``stability`` as a class letter, or a :class:`ValidationError` listing the valid ones."""
    if stability not in STABILITY_CLASSES:
        raise ValidationError(
            f"stability class {stability!r}: expected one of {', '.join(STABILITY_CLASSES)}"
        )
    return stability


def _check_wind(wind_speed: float) -> None:
    if not (np.isfinite(wind_speed) and wind_speed >= 0):
        raise ValidationError(f"wind_speed {wind_speed}: expected a non-negative speed in m/s")


def _is_int(x: ArrayLike) -> bool:
    """Whether ``x`` would become an integer array (distances are then computed in float64)."""
    return not np.issubdtype(np.asarray(x).dtype, np.floating)
