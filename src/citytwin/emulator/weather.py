"""City-wide weather on hourly knots, and the conditions it makes at any minute.

*City weather* lives on hourly knots (:class:`Weather`): a synoptic pressure anomaly (AR(1),
~2.5-day memory) raises the chance of rain; rain is a Markov chain with a summer monsoon; cloud,
wind and temperature anomalies are AR(1) processes; PM2.5 follows a one-box model — a transported
background with multi-day episodes plus local (traffic) emissions diluted by wind × mixing height,
relaxing with a 4-hour time constant and washed out by rain. So PM rises over several hours when
the wind drops and falls when it rains. Seasonal normals follow Seoul's climate.

:func:`city_state` interpolates the knots to the simulated minutes and adds the diurnal cycles.
The S-DoT sensors and the KMA stations both read it, so the files of one seed share one weather.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from citytwin.emulator.processes import (
    F64,
    I64,
    ar1,
    day_of_year,
    diurnal,
    hour_of_day,
    mixing,
    random_stream,
    sun,
    traffic,
)
from citytwin.emulator.sites import CENTRE


@dataclass(frozen=True, eq=False)
class Weather:
    """City-wide slow weather on hourly knots (``knots``: KST minutes since the epoch)."""

    knots: I64
    temperature_anomaly: F64  # °C, synoptic departure from the seasonal normal
    depression: F64  # dew-point depression of the daily mean, °C
    log_wind: F64  # log of the synoptic wind speed, m/s
    direction: F64  # wind from, degrees
    rain: F64  # mm in the hour starting at the knot
    cloud: F64  # fraction 0–1
    pressure: F64  # sea-level pressure, hPa
    pm25: F64  # city PM2.5 from the box model, µg/m³
    pm_ratio: F64  # PM10 / PM2.5


def simulate_weather(start_minute: int, hours: int, seed: int) -> Weather:
    """City weather from an hour before ``start_minute`` to two hours after ``hours``.

    Each component draws from its own random stream, so a longer simulation from the same start
    and seed begins with the same weather: the S-DoT and KMA files of one seed agree.
    """
    count = hours + 3
    knots = (start_minute // 60 - 1) * 60 + 60 * np.arange(count, dtype=np.int64)
    doy, hour = day_of_year(knots), hour_of_day(knots)
    season = 2 * np.pi * doy / 365.25

    def ar(stream: int, tau: float, sd: float) -> F64:
        return ar1(random_stream(seed, 1, stream), count, tau, sd)

    pressure_anomaly = ar(0, 60.0, 6.0)
    rain = _rain(random_stream(seed, 1, 1), doy, pressure_anomaly)
    wet = rain > 0
    cloud = 1.0 / (1.0 + np.exp(-(ar(2, 10.0, 1.6) - 0.3 + 3.0 * wet)))
    dry = np.maximum(1.5, 6.0 + 2.5 * np.cos(season - 2 * np.pi * 75 / 365.25) + ar(3, 24.0, 2.0))
    depression = _relax(np.where(wet, 1.2, dry), np.where(wet, 0.5, 0.25))
    log_wind = math.log(2.2) + ar(4, 12.0, 0.4)
    prevailing = 270.0 + 45.0 * np.cos(season - 2 * np.pi * 15 / 365.25)  # NW winter, SW summer
    direction = np.mod(prevailing + ar(5, 12.0, 60.0), 360.0)
    wind = np.exp(log_wind) * (1 + 0.3 * np.sin(2 * np.pi * (hour - 9) / 24))
    # transported PM, accumulating regionally when the synoptic wind is weak
    background = (
        16.0
        * (1 + 0.45 * np.cos(season - 2 * np.pi * 60 / 365.25))
        * np.exp(ar(6, 30.0, 0.5))
        * np.sqrt(2.2 / np.exp(log_wind))
    )
    pm25 = _box_model(background, traffic(hour), mixing(hour), wind, rain)
    ratio = np.clip(1.45 + 0.12 * wind + 0.2 * ar(7, 24.0, 1.0) - 0.25 * wet, 1.15, 3.0)
    return Weather(
        knots,
        ar(8, 36.0, 2.5),
        depression,
        log_wind,
        direction,
        rain,
        cloud,
        1015.5 + 9.5 * np.cos(season - 2 * np.pi * 15 / 365.25) + pressure_anomaly,
        pm25,
        ratio,
    )


def _rain(rng: np.random.Generator, doy: F64, pressure_anomaly: F64) -> F64:
    """Hourly rain (mm): a wet/dry Markov chain, likelier under low pressure and in the monsoon."""
    monsoon = 1 + 2.5 * np.exp(-(((doy - 200) / 30) ** 2))
    start = np.minimum(0.3, 0.015 * np.exp(-pressure_anomaly / 5.0) * monsoon)
    draw = rng.random(len(doy))
    amount = rng.lognormal(0.0, 0.9, len(doy)) * monsoon
    wet = np.zeros(len(doy), bool)
    for k in range(len(doy)):
        wet[k] = draw[k] < (0.8 if k and wet[k - 1] else start[k])
    out: F64 = np.where(wet, np.round(amount, 1) + 0.1, 0.0)
    return out


def _relax(target: F64, rate: F64) -> F64:
    """Follow ``target`` closing ``rate`` of the distance each hour (air moistens over about an
    hour of rain and dries over a few hours after it)."""
    out = np.empty_like(target)
    level = float(target[0])
    for k in range(len(target)):
        level += (float(target[k]) - level) * float(rate[k])
        out[k] = level
    return out


def _box_model(background: F64, traffic: F64, mixing: F64, wind: F64, rain: F64) -> F64:
    """PM2.5 relaxing (4 h) towards background + traffic emission / ventilation; rain washes out."""
    target = background + 14.0 * traffic / np.maximum(wind * mixing, 0.3)
    keep = math.exp(-1.0 / 4.0)
    washout = np.exp(-0.12 * np.minimum(rain, 10.0))
    out = np.empty_like(target)
    level = float(target[0])
    for k in range(len(target)):
        level = (level * keep + (1 - keep) * float(target[k])) * float(washout[k])
        out[k] = level
    return out


@dataclass(frozen=True)
class Lerp:
    """Linear interpolation from hourly knots to step times."""

    index: I64
    weight: F64

    @classmethod
    def at(cls, knots: I64, minutes: I64) -> Lerp:
        pos = (minutes - knots[0]) / 60.0
        index = np.clip(np.floor(pos).astype(np.int64), 0, len(knots) - 2)
        return cls(index, pos - index)

    def __call__(self, values: F64) -> F64:
        w = self.weight if values.ndim == 1 else self.weight[:, None]
        out: F64 = values[self.index] * (1 - w) + values[self.index + 1] * w
        return out


@dataclass(frozen=True, eq=False)
class CityState:
    """City-wide conditions at each step (1-D arrays over time)."""

    hour: F64
    temperature: F64
    dew_point: F64
    wind: F64
    direction: F64
    rain: F64
    wet: F64
    cloud: F64
    pressure: F64
    pm25: F64
    pm_ratio: F64
    sin_sun: F64
    ghi: F64  # global horizontal irradiance, W/m²
    traffic: F64
    night: F64  # 1 in the small hours, 0 early afternoon: heat-island strength
    stagnation: F64  # > 1 when pollutants accumulate (low wind, shallow mixing)


def city_state(weather: Weather, minutes: I64) -> CityState:
    """Interpolate the weather to ``minutes`` and add the diurnal cycles."""
    lerp = Lerp.at(weather.knots, minutes)
    doy, hour = day_of_year(minutes), hour_of_day(minutes)
    season = 2 * np.pi * (doy - 20) / 365.25
    normal = 12.5 - 14.0 * np.cos(season)
    cloud, wet = lerp(weather.cloud), lerp((weather.rain > 0).astype(np.float64))
    amplitude = (4.5 + 1.0 * np.sin(2 * np.pi * (doy - 100) / 365.25)) * (1 - 0.55 * cloud)
    anomaly = lerp(weather.temperature_anomaly)
    wind = np.exp(lerp(weather.log_wind)) * (1 + 0.3 * np.sin(2 * np.pi * (hour - 9) / 24))
    rad = np.radians(weather.direction)
    direction = np.mod(np.degrees(np.arctan2(lerp(np.sin(rad)), lerp(np.cos(rad)))), 360.0)
    sin_sun = sun(minutes, *CENTRE)
    ghi = 820.0 * np.maximum(sin_sun, 0.0) ** 1.15 * (1 - 0.72 * cloud**3.2)
    return CityState(
        hour=hour,
        temperature=normal + amplitude * diurnal(hour) + anomaly - 1.2 * wet,
        dew_point=normal + anomaly - lerp(weather.depression),
        wind=wind,
        direction=direction,
        rain=weather.rain[lerp.index],
        wet=wet,
        cloud=cloud,
        pressure=lerp(weather.pressure),
        pm25=lerp(weather.pm25),
        pm_ratio=lerp(weather.pm_ratio),
        sin_sun=sin_sun,
        ghi=ghi,
        traffic=traffic(hour),
        night=0.5 + 0.5 * np.cos(2 * np.pi * (hour - 2) / 24),
        stagnation=np.sqrt(2.2 / np.maximum(wind, 0.5) / mixing(hour)),
    )
