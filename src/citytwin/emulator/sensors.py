"""What each S-DoT sensor measures: per-site parameters and the physical fields.

*Each sensor* sees the city signal plus a smooth spatial gradient (cooler to the north, more PM
in the west), a per-site offset (siting), an urban heat island that is strongest at night, slow
local deviations (AR(1) on the same hourly knots as the weather) and measurement noise. Noise
(dB), vibration and PM emissions follow a traffic profile; illuminance and UV follow the sun's
elevation and the cloud; the black globe heats in sunshine and cools in wind.

Realism choices that matter for QC are documented where they are made: PM sensors differ by a
factor of ~22 % (unit-to-unit calibration of optical sensors is 10–30 %), humidity follows rain
over an hour or two rather than at once, and electrochemical gas cells wander rather than add
white noise.

Each field function takes a :class:`Step` (a chunk of time steps for every site) and returns
clean (fault-free, unquantised) arrays of shape (steps, sites), which :mod:`.scenario` composes.
The Magnus constants and :func:`as_column` are shared with the KMA writer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from citytwin.emulator.processes import F64, Mask, ar1, random_stream, traffic
from citytwin.emulator.sites import CENTRE, Sites
from citytwin.emulator.weather import CityState, Lerp


@dataclass(frozen=True, eq=False)
class SiteModel:
    """Static per-site parameters and slow local deviations (hourly knots × sites)."""

    x: F64  # east–west position, ~±1 across Seoul
    y: F64  # south–north position
    params: dict[str, F64]
    local: dict[str, F64]
    missing: dict[str, Mask]  # sensors without this channel


def site_model(sites: Sites, knots: int, seed: int) -> SiteModel:
    rng = random_stream(seed, 2)
    n = len(sites)
    x, y = (sites.lon - CENTRE[0]) / 0.21, (sites.lat - CENTRE[1]) / 0.135
    road = rng.uniform(0.0, 0.4, n)
    params = {
        "t_offset": -0.45 * y + rng.normal(0, 0.4, n),  # the northern hills are cooler
        "heat": np.maximum(0, 1.3 * np.exp(-(x**2 + y**2)) + rng.normal(0, 0.25, n)),
        "dew_offset": rng.normal(0, 0.4, n),
        # unit-to-unit calibration of optical PM sensors differs by 10–30 %; the west, upwind,
        # carries more PM, and local sources (industry, bus depots, big junctions) raise it over
        # a few km: a smooth field that a distribution map can recover
        "pm_factor": np.exp(rng.normal(0, 0.15, n) - 0.10 * x + _pm_sources(rng, sites)),
        "road": road,
        "pm10_factor": np.exp(rng.normal(0, 0.1, n)),
        "gain25": rng.uniform(0.72, 0.95, n),  # PM correction to the national network
        "gain10": rng.uniform(0.75, 1.0, n),
        "exposure": rng.uniform(0.35, 1.2, n),
        "deflection": rng.normal(0, 25, n),
        "shade": rng.uniform(0.25, 1.0, n),
        "street": rng.uniform(0, 40, n),
        "noise_base": rng.uniform(47, 57, n) + 25 * road,
        "vibration": np.exp(rng.normal(math.log(0.04), 0.5, n)),
        "gas": 0.7 + 1.5 * road,
        "visitors": np.exp(rng.normal(math.log(300), 0.8, n)),
    }
    local = {
        "t": ar1(rng, knots, 3.0, 0.25, n),
        "dew": ar1(rng, knots, 4.0, 0.35, n),
        "pm": ar1(rng, knots, 2.0, 0.08, n),
        "noise": ar1(rng, knots, 2.0, 1.0, n),
    }
    missing = {"noise": rng.random(n) < 0.02, "black_globe_temperature": rng.random(n) < 0.03}
    return SiteModel(x, y, params, local, missing)


def _pm_sources(rng: np.random.Generator, sites: Sites, count: int = 12) -> F64:
    """Log-factor of PM from ``count`` local source areas: Gaussian bumps 1.5–4 km wide, ±0.35,
    placed around the sites (so a small city gets them too)."""
    lon0, lat0 = float(np.mean(sites.lon)), float(np.mean(sites.lat))
    span_x = max(float(np.ptp(sites.lon)), 0.01) * 88_000  # metres per degree at 37.5° N
    span_y = max(float(np.ptp(sites.lat)), 0.01) * 111_000
    east = (sites.lon - lon0) * 88_000
    north = (sites.lat - lat0) * 111_000
    field = np.zeros(len(sites))
    for _ in range(count):
        cx, cy = rng.uniform(-0.5, 0.5) * span_x, rng.uniform(-0.5, 0.5) * span_y
        width, height = rng.uniform(1500, 4000), rng.uniform(-0.35, 0.35)
        field += height * np.exp(-((east - cx) ** 2 + (north - cy) ** 2) / (2 * width**2))
    return field


MAGNUS_A, MAGNUS_B = 17.625, 243.04  # Magnus formula (Alduchov & Eskridge 1996)


def as_column(values: F64) -> F64:
    """A time series as a column, to broadcast over sites."""
    return values[:, None]


@dataclass(frozen=True, eq=False)
class Step:
    """What the field functions share for one chunk of steps."""

    city: CityState
    lerp: Lerp
    site: SiteModel
    rng: np.random.Generator
    noise: float  # measurement-noise scale: 1 for 2-minute means, smaller for longer means

    def normal(self, sd: float) -> F64:
        shape = (len(self.city.hour), len(self.site.x))
        out: F64 = self.rng.standard_normal(shape) * (sd * self.noise)
        return out

    def p(self, name: str) -> F64:
        return self.site.params[name]


def thermal(s: Step, wind: F64) -> dict[str, F64]:
    """Air temperature, humidity (Magnus formula from the dew point) and black globe."""
    true_t = (
        as_column(s.city.temperature)
        + s.p("t_offset")
        + s.p("heat") * as_column(s.city.night)
        + s.lerp(s.site.local["t"])
    )
    dew = np.minimum(
        as_column(s.city.dew_point) + s.p("dew_offset") + s.lerp(s.site.local["dew"]), true_t - 0.7
    )
    rh = 100 * np.exp(MAGNUS_A * dew / (MAGNUS_B + dew) - MAGNUS_A * true_t / (MAGNUS_B + true_t))
    heating = 0.016 * as_column(s.city.ghi) * s.p("shade") / (1 + 0.35 * wind)
    return {
        "air_temperature": true_t + s.normal(0.08),
        "relative_humidity": np.clip(rh + s.normal(0.5), 3.0, 98.0),
        "black_globe_temperature": true_t + heating + s.normal(0.15),
    }


def wind(s: Step) -> dict[str, F64]:
    """Street-level wind: the city wind scaled by exposure, turbulent, deflected by
    buildings; gusts 1.35–1.8 × the mean."""
    mean = as_column(s.city.wind) * s.p("exposure")
    speed = mean * np.exp(s.normal(0.3))
    spread = 15 + 25 / (mean + 0.5)
    direction = np.mod(
        as_column(s.city.direction) + s.p("deflection") + s.normal(1.0) * spread, 360
    )
    gust = speed * s.rng.uniform(1.35, 1.8, speed.shape) + 0.3
    return {
        "wind_direction": direction,
        "wind_speed": speed,
        "gust_direction": np.mod(direction + s.normal(12.0), 360),
        "gust_speed": gust,
    }


def light(s: Step) -> dict[str, F64]:
    """Illuminance (≈ 110 lx per W/m², shaded per site, street lights at night) and UV."""
    sun = np.maximum(s.city.sin_sun, 0.0)
    dark = (s.city.sin_sun < 0.03).astype(np.float64)
    lux = 110 * as_column(s.city.ghi) * s.p("shade") * np.exp(s.normal(0.04)) + s.p(
        "street"
    ) * as_column(dark)
    uv = as_column(12.5 * sun**2.5 * (1 - 0.5 * s.city.cloud**2)) * s.p("shade") ** 0.3
    return {"illuminance": lux, "uv_index": np.maximum(uv, 0.0)}


def sound(s: Step) -> dict[str, F64]:
    """Equivalent sound level: site base + 8·log10(traffic) + rain + wander + noise."""
    level = (
        s.p("noise_base")
        + as_column(8 * np.log10(s.city.traffic) + 1.5 * s.city.wet)
        + s.lerp(s.site.local["noise"])
        + s.normal(1.8)
    )
    return {"noise": np.clip(level, 30.0, 95.0)}


def vibration(s: Step, prefix: str, base: F64) -> dict[str, F64]:
    """Three axes and their 2-minute maxima; z (vertical) is strongest near roads."""
    level = base * as_column(s.city.traffic) ** 0.7
    out: dict[str, F64] = {}
    for axis, gain in zip("xyz", (1.0, 0.9, 1.6), strict=True):
        mean = level * gain * np.exp(s.normal(0.35))
        out[f"{prefix}_{axis}"] = mean
        out[f"{prefix}_{axis}_max"] = mean * (1.6 + s.rng.exponential(0.8, mean.shape))
    return out


def particles(s: Step) -> dict[str, F64]:
    """PM2.5 and PM10: city level × site factor × roadside traffic increment × wander,
    with the multiplicative and additive noise of an optical counter."""
    level = (
        as_column(s.city.pm25)
        * s.p("pm_factor")
        * (1 + s.p("road") * (as_column(s.city.traffic) - 0.6))
        * np.exp(s.lerp(s.site.local["pm"]))
    )
    pm25 = level * np.exp(s.normal(0.06)) + s.normal(0.8)
    pm10 = level * as_column(s.city.pm_ratio) * s.p("pm10_factor") * np.exp(s.normal(0.07))
    return {"pm25": np.maximum(pm25, 0.0), "pm10": np.maximum(pm10 + s.normal(1.2), 0.0)}


def gases(s: Step, interval: int, temperature: F64) -> dict[str, F64]:
    """The gas sensors and visitor counter of newer S-DoT models (ppm; people per interval).

    Electrochemical cells wander (cross-sensitivity to temperature and humidity) rather than
    produce white noise, so their noise does not average away over an hour.
    """

    def wander(sd: float) -> F64:
        shape = (len(s.city.hour), len(s.site.x))
        out: F64 = s.rng.standard_normal(shape) * sd
        return out

    no2 = (
        (0.008 + 0.03 * as_column(s.city.traffic * s.city.stagnation))
        * s.p("gas")
        * np.exp(wander(0.15))
    )
    sun = np.maximum(s.city.sin_sun, 0.0) ** 0.8 * (1 - 0.4 * s.city.cloud)
    activity = traffic(s.city.hour - 1.5)  # people: later than cars
    return {
        "no2": no2,
        "co": np.maximum(0.25 + 6 * no2 + wander(0.03), 0.0),
        "so2": np.maximum(0.003 + 0.0015 * as_column(s.city.stagnation) + wander(0.0006), 0.0),
        "nh3": np.maximum(0.05 + 0.002 * np.maximum(temperature, 0) + wander(0.006), 0.0),
        "h2s": 0.001 + np.abs(wander(0.0008)),
        # titrated by NO2 at night, but a cheap cell still reads a few ppb
        "o3": np.abs(0.015 * np.exp(-no2 / 0.03) + as_column(0.045 * sun) + wander(0.004)),
        "visitor_count": s.rng.poisson(
            s.p("visitors") * as_column(activity) * interval / 60
        ).astype(np.float64),
    }
