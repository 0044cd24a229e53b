"""Realistic S-DoT and KMA observation files with ground-truth fault labels.

Raw S-DoT (Smart Seoul Data of Things) 2-minute files and KMA hourly observation CSVs are not
available offline, so this module writes stand-ins in the real layouts, for tests, the demo and
benchmarks. Everything is pure numpy, seeded and vectorised: a day of 1,100 sensors (≈16 M values)
is written in a few seconds.

The physical model
------------------
*City weather* lives on hourly knots (:class:`Weather`): a synoptic pressure anomaly (AR(1),
~2.5-day memory) raises the chance of rain; rain is a Markov chain with a summer monsoon; cloud,
wind and temperature anomalies are AR(1) processes; PM2.5 follows a one-box model — a transported
background with multi-day episodes plus local (traffic) emissions diluted by wind × mixing height,
relaxing with a 4-hour time constant and washed out by rain. So PM rises over several hours when
the wind drops and falls when it rains. Seasonal normals follow Seoul's climate.

*Each sensor* sees the city signal plus a smooth spatial gradient (cooler to the north, more PM
in the west), a per-site offset (siting), an urban heat island that is strongest at night, slow
local deviations (AR(1) on the same hourly knots) and measurement noise. Noise (dB), vibration
and PM emissions follow a traffic profile; illuminance and UV follow the sun's elevation and the
cloud; the black globe heats in sunshine and cools in wind. Values are quantised to what the file
can hold (e.g. 0.1 °C in the 2020 integer encoding), so QC sees what a parser would.

Faults and labels
-----------------
:class:`FaultPlan` sets how often each fault occurs; every writer returns the injected faults as
:class:`FaultLabels` (sensor index, time, property, kind):

- ``spike``: one reading off by 6–15 robust standard deviations of that sensor's
  reading-to-reading change (e.g. 1–2 °C, +20–60 µg/m³ at moderate PM: the glitches of cheap
  sensors; on a log scale for PM), and a quarter of them *gross*: 1.1–2 × the vocabulary's spike
  size. Glitches happen per reading, so their rate is per 1,000 readings;
- ``stuck``: the value frozen for 1.3–3 × the longer of the property's ``stuck_minutes`` and six
  readings;
- ``range``: an error code outside the valid range (raw 0 in the temperature encoding, i.e.
  −100 °C; 9999; −1; a 0 dB microphone);
- ``drift``: a linearly growing offset on one property of a few sensors (additive for
  temperature and humidity, a gain for PM), reaching 5–10 network spreads. Only points whose
  offset exceeds :data:`DRIFT_TOLERANCE` (4) network spreads are *detectable*. The network spread
  is the robust spread of sensors around the city at one instant, i.e. how much sites genuinely
  differ. Two things make smaller drifts ambiguous: in a network of ~1,000 sensors the most
  extreme honest sites already sit ~3.3 spreads from the consensus (the 1-in-2,000 tail of a
  normal distribution), and a site's own departure wanders by ~0.7 spreads over a day (the heat
  island waxing at night, rush hour at a roadside sensor). Beyond 4 spreads no siting explains it;
- ``gap``: the first reading after an outage of three or more readings (a sensor offline);
- ``source`` (KMA only): a value the KMA QC marked as an error (QC flag 1).

Not modelled: fog/saturation plateaus of humidity (a real sensor at 100 % for hours is not
stuck, but it looks it), single-reading pollution plumes, and snow (KMA ``적설`` stays empty).

Realism choices that matter for QC are documented where they are made: PM sensors differ by a
factor of ~22 % (unit-to-unit calibration of optical sensors is 10–30 %), humidity follows rain
over an hour or two rather than at once, and electrochemical gas cells wander rather than add
white noise.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from numpy.typing import NDArray

from citytwin.ingest.base import Readings
from citytwin.model.quality import Flag
from citytwin.model.vocabulary import get_property

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
Mask = NDArray[np.bool_]

KST: Final = timezone(timedelta(hours=9), "KST")
SEOUL_BBOX: Final = (126.76, 37.43, 127.18, 37.70)  # lon min, lat min, lon max, lat max
MINUTE_US: Final = 60_000_000
DRIFT_TOLERANCE: Final = 4.0  # network spreads beyond which a drift is labelled detectable
CHUNK_ROWS: Final = 400_000  # rows simulated and written at a time
_CENTRE: Final = (126.978, 37.566)  # Seoul City Hall
_EPOCH: Final = datetime(1970, 1, 1)


# -- sites and stations ------------------------------------------------------------------------


@dataclass(frozen=True)
class SensorSite:
    """One S-DoT sensor: its serial and position (WGS84)."""

    serial: str
    lon: float
    lat: float


@dataclass(frozen=True, eq=False)
class Sites:
    """The sensors of a scenario as arrays (index *i* is sensor *i* of the fault labels)."""

    serials: tuple[str, ...]
    lon: F64
    lat: F64

    def __len__(self) -> int:
        return len(self.serials)

    def __getitem__(self, index: int) -> SensorSite:
        return SensorSite(self.serials[index], float(self.lon[index]), float(self.lat[index]))

    def __iter__(self) -> Iterator[SensorSite]:
        return (self[i] for i in range(len(self)))


@dataclass(frozen=True)
class Station:
    """A KMA ASOS/AWS station. Numbers below 300 are ASOS (full programme), the rest AWS."""

    stn_id: int
    name: str
    lon: float
    lat: float
    height: float

    @property
    def asos(self) -> bool:
        """True for a synoptic station (cloud, visibility, sunshine, soil temperatures)."""
        return self.stn_id < 300


# five real Seoul stations from KMA's public station table, used when no registry is given
SEOUL_STATIONS: Final = (
    Station(108, "서울", 126.9658, 37.57142, 85.67),
    Station(400, "강남", 127.08162, 37.4982, 12.66),
    Station(410, "기상청", 126.91809, 37.49371, 36.44),
    Station(413, "광진", 127.08566, 37.5338, 28.63),
    Station(416, "은평", 126.94338, 37.64639, 57.92),
)


def _csv_rows(path: Path) -> list[list[str]]:
    """Rows of a small CSV in UTF-8 (with or without BOM) or CP949."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp949")
    return [row for row in csv.reader(io.StringIO(text)) if row]


def _column(header: list[str], options: tuple[str, ...], path: Path) -> int:
    names = [h.strip().lower() for h in header]
    for option in options:
        if option.lower() in names:
            return names.index(option.lower())
    raise ValueError(f"{path}: no {options[0]} column in {header}")


def load_sites(registry: str | Path | None = None, n: int | None = None, seed: int = 0) -> Sites:
    """Sensor serials and positions, from a registry file or synthesised over Seoul.

    Parameters
    ----------
    registry
        A CSV in the layout of S-DoT's ``sensor_longitude_latitude.csv`` (시리얼, 위도, 경도).
        Optional: without it, serials like ``V02Q19xxxxx`` are spread over Seoul.
    n
        Number of sensors; default: all registry rows, or 1,100 (Seoul's S-DoT network).
        Beyond the registry's rows, rows are reused in turn, with new serials and positions
        moved by ~300 m (deterministically, from ``seed``).
    seed
        Seeds the synthetic serials and positions.

    Returns
    -------
    Sites
        Real registry rows first, in file order.
    """
    rng = _rng(seed, 0)
    if registry is None:
        count = 1100 if n is None else n
        lon, lat = _seoul_points(rng, count)
        return Sites(tuple(_synthetic_serials(rng, count, set())), lon, lat)
    path = Path(registry)
    rows = _csv_rows(path)
    s, la, lo = (
        _column(rows[0], o, path) for o in (("시리얼", "serial"), ("위도", "lat"), ("경도", "lon"))
    )
    serials = [r[s].strip() for r in rows[1:]]
    lat_all = np.array([float(r[la]) for r in rows[1:]])
    lon_all = np.array([float(r[lo]) for r in rows[1:]])
    count = len(serials) if n is None else n
    base = np.arange(count) % len(serials)
    extra = np.arange(count) >= len(serials)
    jitter = rng.normal(0.0, 0.003, (count, 2)) * extra[:, None]
    new = _synthetic_serials(rng, int(extra.sum()), set(serials))
    names = [serials[i] for i in base[~extra]] + new
    return Sites(tuple(names), lon_all[base] + jitter[:, 0], lat_all[base] + jitter[:, 1])


def _seoul_points(rng: np.random.Generator, count: int) -> tuple[F64, F64]:
    """Uniform points in the ellipse inscribed in Seoul's bounding box (closer to its outline)."""
    lon0, lat0, lon1, lat1 = SEOUL_BBOX
    cx, cy, rx, ry = (lon0 + lon1) / 2, (lat0 + lat1) / 2, (lon1 - lon0) / 2, (lat1 - lat0) / 2
    radius = np.sqrt(rng.random(count))
    angle = rng.random(count) * 2 * np.pi
    return cx + rx * radius * np.cos(angle), cy + ry * radius * np.sin(angle)


def _synthetic_serials(rng: np.random.Generator, count: int, taken: set[str]) -> list[str]:
    """Unique serials shaped like the real ones (``V02Q19`` + digits), none in ``taken``."""
    width = max(5, len(str(4 * (count + len(taken)))))
    pool = rng.choice(10**width, size=count + len(taken), replace=False)
    serials = (f"V02Q19{number:0{width}d}" for number in np.sort(pool))
    return [s for s in serials if s not in taken][:count]


def load_stations(
    registry: str | Path | None = None, *, bbox: tuple[float, float, float, float] = SEOUL_BBOX
) -> list[Station]:
    """KMA stations inside ``bbox``, from a registry in KMA's station-table layout.

    Parameters
    ----------
    registry
        ``STN_ID,STN_KO,…,LON,LAT,HT`` (e.g. ``kma_asos_aws_stations.csv``). Without it, the five
        Seoul stations of :data:`SEOUL_STATIONS`.
    bbox
        (lon min, lat min, lon max, lat max).

    Returns
    -------
    list of Station
        Ordered by station number, as the KMA portal orders its files. Registry rows without a
        station number or position (warning-zone rows) are skipped.
    """
    if registry is None:
        return list(SEOUL_STATIONS)
    path = Path(registry)
    rows = _csv_rows(path)
    head = rows[0]
    i, name, lon, lat, ht = (
        _column(head, (c,), path) for c in ("STN_ID", "STN_KO", "LON", "LAT", "HT")
    )
    stations = [
        Station(int(r[i]), r[name].strip(), float(r[lon]), float(r[lat]), float(r[ht] or 0.0))
        for r in rows[1:]
        if r[i].strip().isdigit() and r[lon].strip() and r[lat].strip()
    ]
    inside = [s for s in stations if bbox[0] <= s.lon <= bbox[2] and bbox[1] <= s.lat <= bbox[3]]
    return sorted(inside, key=lambda s: s.stn_id)


# -- time --------------------------------------------------------------------------------------


def kst_minute(moment: datetime) -> int:
    """Minutes since 1970-01-01 00:00 on the KST wall clock (a naive ``moment`` is KST)."""
    wall = moment.astimezone(KST).replace(tzinfo=None) if moment.tzinfo else moment
    return (wall - _EPOCH) // timedelta(minutes=1)


def _utc_micros(minutes: I64) -> I64:
    return (minutes - 9 * 60) * MINUTE_US


def _day_of_year(minutes: I64) -> F64:
    day = (minutes // 1440).astype("datetime64[D]")
    first = day.astype("datetime64[Y]").astype("datetime64[D]")
    out: F64 = (day - first).astype(np.int64) + 1.0 + (minutes % 1440) / 1440.0
    return out


def _hour(minutes: I64) -> F64:
    return (minutes % 1440) / 60.0


def _digits(minutes: I64) -> I64:
    """``yyyymmddhhmi`` integers (the 2020 S-DoT time encoding)."""
    day = (minutes // 1440).astype("datetime64[D]")
    month = day.astype("datetime64[M]")
    year = month.astype("datetime64[Y]").astype(np.int64) + 1970
    mon = month.astype(np.int64) % 12 + 1
    dom = (day - month.astype("datetime64[D]")).astype(np.int64) + 1
    hh, mi = np.divmod(minutes % 1440, 60)
    out: I64 = ((year * 100 + mon) * 100 + dom) * 10_000 + hh * 100 + mi
    return out


def _text_times(minutes: I64, seconds: bool = True) -> list[str]:
    """``yyyy-mm-dd hh:mm[:ss]`` strings."""
    text = np.datetime_as_string(minutes.astype("datetime64[m]"), unit="s" if seconds else "m")
    return [t.replace("T", " ") for t in text.tolist()]


# -- random processes --------------------------------------------------------------------------


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent random stream per (seed, purpose, …): adding a consumer elsewhere
    does not shift the numbers of another."""
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


def _ar1(
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


def _traffic(hour: F64) -> F64:
    """Relative road traffic by hour of day (Seoul arterial profile, 1 = daytime)."""
    h = np.mod(hour, 24.0)
    i = np.floor(h).astype(np.int64)
    w = h - i
    out: F64 = _TRAFFIC[i] * (1 - w) + _TRAFFIC[(i + 1) % 24] * w
    return out


def _mixing(hour: F64) -> F64:
    """Relative boundary-layer height: shallow at night, deepest early afternoon."""
    out: F64 = 0.35 + 0.65 * np.maximum(0.0, np.sin(np.pi * (hour - 7.0) / 13.0))
    return out


def _diurnal(hour: F64) -> F64:
    """Temperature shape in [-1, 1]: minimum 05:30, maximum 14:30 (faster rise than fall)."""
    rising = (hour >= 5.5) & (hour < 14.5)
    fall = np.mod(hour - 14.5, 24.0)
    out: F64 = np.where(rising, -np.cos(np.pi * (hour - 5.5) / 9.0), np.cos(np.pi * fall / 15.0))
    return out


def _sun(minutes: I64, lon: float, lat: float) -> F64:
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


# -- city weather --------------------------------------------------------------------------------


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
    doy, hour = _day_of_year(knots), _hour(knots)
    season = 2 * np.pi * doy / 365.25

    def ar(stream: int, tau: float, sd: float) -> F64:
        return _ar1(_rng(seed, 1, stream), count, tau, sd)

    pressure_anomaly = ar(0, 60.0, 6.0)
    rain = _rain(_rng(seed, 1, 1), doy, pressure_anomaly)
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
    pm25 = _box_model(background, _traffic(hour), _mixing(hour), wind, rain)
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
class _Lerp:
    """Linear interpolation from hourly knots to step times."""

    index: I64
    weight: F64

    @classmethod
    def at(cls, knots: I64, minutes: I64) -> _Lerp:
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
    lerp = _Lerp.at(weather.knots, minutes)
    doy, hour = _day_of_year(minutes), _hour(minutes)
    season = 2 * np.pi * (doy - 20) / 365.25
    normal = 12.5 - 14.0 * np.cos(season)
    cloud, wet = lerp(weather.cloud), lerp((weather.rain > 0).astype(np.float64))
    amplitude = (4.5 + 1.0 * np.sin(2 * np.pi * (doy - 100) / 365.25)) * (1 - 0.55 * cloud)
    anomaly = lerp(weather.temperature_anomaly)
    wind = np.exp(lerp(weather.log_wind)) * (1 + 0.3 * np.sin(2 * np.pi * (hour - 9) / 24))
    rad = np.radians(weather.direction)
    direction = np.mod(np.degrees(np.arctan2(lerp(np.sin(rad)), lerp(np.cos(rad)))), 360.0)
    sin_sun = _sun(minutes, *_CENTRE)
    ghi = 820.0 * np.maximum(sin_sun, 0.0) ** 1.15 * (1 - 0.72 * cloud**3.2)
    return CityState(
        hour=hour,
        temperature=normal + amplitude * _diurnal(hour) + anomaly - 1.2 * wet,
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
        traffic=_traffic(hour),
        night=0.5 + 0.5 * np.cos(2 * np.pi * (hour - 2) / 24),
        stagnation=np.sqrt(2.2 / np.maximum(wind, 0.5) / _mixing(hour)),
    )


# -- sensors -------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _SiteModel:
    """Static per-site parameters and slow local deviations (hourly knots × sites)."""

    x: F64  # east–west position, ~±1 across Seoul
    y: F64  # south–north position
    params: dict[str, F64]
    local: dict[str, F64]
    missing: dict[str, Mask]  # sensors without this channel


def _site_model(sites: Sites, knots: int, seed: int) -> _SiteModel:
    rng = _rng(seed, 2)
    n = len(sites)
    x, y = (sites.lon - _CENTRE[0]) / 0.21, (sites.lat - _CENTRE[1]) / 0.135
    road = rng.uniform(0.0, 0.4, n)
    params = {
        "t_offset": -0.45 * y + rng.normal(0, 0.4, n),  # the northern hills are cooler
        "heat": np.maximum(0, 1.3 * np.exp(-(x**2 + y**2)) + rng.normal(0, 0.25, n)),
        "dew_offset": rng.normal(0, 0.4, n),
        # unit-to-unit calibration of optical PM sensors differs by 10–30 %; the west, upwind,
        # carries more PM
        "pm_factor": np.exp(rng.normal(0, 0.22, n) - 0.10 * x),
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
        "t": _ar1(rng, knots, 3.0, 0.25, n),
        "dew": _ar1(rng, knots, 4.0, 0.35, n),
        "pm": _ar1(rng, knots, 2.0, 0.08, n),
        "noise": _ar1(rng, knots, 2.0, 1.0, n),
    }
    missing = {"noise": rng.random(n) < 0.02, "black_globe_temperature": rng.random(n) < 0.03}
    return _SiteModel(x, y, params, local, missing)


_A, _B = 17.625, 243.04  # Magnus formula (Alduchov & Eskridge 1996)


def _c(values: F64) -> F64:
    """A time series as a column, to broadcast over sites."""
    return values[:, None]


@dataclass(frozen=True, eq=False)
class _Step:
    """What the field functions share for one chunk of steps."""

    city: CityState
    lerp: _Lerp
    site: _SiteModel
    rng: np.random.Generator
    noise: float  # measurement-noise scale: 1 for 2-minute means, smaller for longer means

    def normal(self, sd: float) -> F64:
        shape = (len(self.city.hour), len(self.site.x))
        out: F64 = self.rng.standard_normal(shape) * (sd * self.noise)
        return out

    def p(self, name: str) -> F64:
        return self.site.params[name]


def _thermal(s: _Step, wind: F64) -> dict[str, F64]:
    """Air temperature, humidity (Magnus formula from the dew point) and black globe."""
    true_t = (
        _c(s.city.temperature)
        + s.p("t_offset")
        + s.p("heat") * _c(s.city.night)
        + s.lerp(s.site.local["t"])
    )
    dew = np.minimum(
        _c(s.city.dew_point) + s.p("dew_offset") + s.lerp(s.site.local["dew"]), true_t - 0.7
    )
    rh = 100 * np.exp(_A * dew / (_B + dew) - _A * true_t / (_B + true_t))
    heating = 0.016 * _c(s.city.ghi) * s.p("shade") / (1 + 0.35 * wind)
    return {
        "air_temperature": true_t + s.normal(0.08),
        "relative_humidity": np.clip(rh + s.normal(0.5), 3.0, 98.0),
        "black_globe_temperature": true_t + heating + s.normal(0.15),
    }


def _wind(s: _Step) -> dict[str, F64]:
    """Street-level wind: the city wind scaled by exposure, turbulent, deflected by
    buildings; gusts 1.35–1.8 × the mean."""
    mean = _c(s.city.wind) * s.p("exposure")
    speed = mean * np.exp(s.normal(0.3))
    spread = 15 + 25 / (mean + 0.5)
    direction = np.mod(_c(s.city.direction) + s.p("deflection") + s.normal(1.0) * spread, 360)
    gust = speed * s.rng.uniform(1.35, 1.8, speed.shape) + 0.3
    return {
        "wind_direction": direction,
        "wind_speed": speed,
        "gust_direction": np.mod(direction + s.normal(12.0), 360),
        "gust_speed": gust,
    }


def _light(s: _Step) -> dict[str, F64]:
    """Illuminance (≈ 110 lx per W/m², shaded per site, street lights at night) and UV."""
    sun = np.maximum(s.city.sin_sun, 0.0)
    dark = (s.city.sin_sun < 0.03).astype(np.float64)
    lux = 110 * _c(s.city.ghi) * s.p("shade") * np.exp(s.normal(0.04)) + s.p("street") * _c(dark)
    uv = _c(12.5 * sun**2.5 * (1 - 0.5 * s.city.cloud**2)) * s.p("shade") ** 0.3
    return {"illuminance": lux, "uv_index": np.maximum(uv, 0.0)}


def _sound(s: _Step) -> dict[str, F64]:
    """Equivalent sound level: site base + 8·log10(traffic) + rain + wander + noise."""
    level = (
        s.p("noise_base")
        + _c(8 * np.log10(s.city.traffic) + 1.5 * s.city.wet)
        + s.lerp(s.site.local["noise"])
        + s.normal(1.8)
    )
    return {"noise": np.clip(level, 30.0, 95.0)}


def _vibration(s: _Step, prefix: str, base: F64) -> dict[str, F64]:
    """Three axes and their 2-minute maxima; z (vertical) is strongest near roads."""
    level = base * _c(s.city.traffic) ** 0.7
    out: dict[str, F64] = {}
    for axis, gain in zip("xyz", (1.0, 0.9, 1.6), strict=True):
        mean = level * gain * np.exp(s.normal(0.35))
        out[f"{prefix}_{axis}"] = mean
        out[f"{prefix}_{axis}_max"] = mean * (1.6 + s.rng.exponential(0.8, mean.shape))
    return out


def _particles(s: _Step) -> dict[str, F64]:
    """PM2.5 and PM10: city level × site factor × roadside traffic increment × wander,
    with the multiplicative and additive noise of an optical counter."""
    level = (
        _c(s.city.pm25)
        * s.p("pm_factor")
        * (1 + s.p("road") * (_c(s.city.traffic) - 0.6))
        * np.exp(s.lerp(s.site.local["pm"]))
    )
    pm25 = level * np.exp(s.normal(0.06)) + s.normal(0.8)
    pm10 = level * _c(s.city.pm_ratio) * s.p("pm10_factor") * np.exp(s.normal(0.07))
    return {"pm25": np.maximum(pm25, 0.0), "pm10": np.maximum(pm10 + s.normal(1.2), 0.0)}


def _gases(s: _Step, interval: int, temperature: F64) -> dict[str, F64]:
    """The gas sensors and visitor counter of newer S-DoT models (ppm; people per interval).

    Electrochemical cells wander (cross-sensitivity to temperature and humidity) rather than
    produce white noise, so their noise does not average away over an hour.
    """

    def wander(sd: float) -> F64:
        shape = (len(s.city.hour), len(s.site.x))
        out: F64 = s.rng.standard_normal(shape) * sd
        return out

    no2 = (
        (0.008 + 0.03 * _c(s.city.traffic * s.city.stagnation)) * s.p("gas") * np.exp(wander(0.15))
    )
    sun = np.maximum(s.city.sin_sun, 0.0) ** 0.8 * (1 - 0.4 * s.city.cloud)
    activity = _traffic(s.city.hour - 1.5)  # people: later than cars
    return {
        "no2": no2,
        "co": np.maximum(0.25 + 6 * no2 + wander(0.03), 0.0),
        "so2": np.maximum(0.003 + 0.0015 * _c(s.city.stagnation) + wander(0.0006), 0.0),
        "nh3": np.maximum(0.05 + 0.002 * np.maximum(temperature, 0) + wander(0.006), 0.0),
        "h2s": 0.001 + np.abs(wander(0.0008)),
        # titrated by NO2 at night, but a cheap cell still reads a few ppb
        "o3": np.abs(0.015 * np.exp(-no2 / 0.03) + _c(0.045 * sun) + wander(0.004)),
        "visitor_count": s.rng.poisson(s.p("visitors") * _c(activity) * interval / 60).astype(
            np.float64
        ),
    }


def _fields(sc: _Scenario, a: int, b: int, rng: np.random.Generator) -> dict[str, F64]:
    """Clean (fault-free, unquantised) values of every simulated property, (steps, sites)."""
    minutes = sc.minutes[a:b]
    s = _Step(
        city_state(sc.weather, minutes),
        _Lerp.at(sc.weather.knots, minutes),
        sc.model,
        rng,
        math.sqrt(2.0 / sc.interval),
    )
    out = _wind(s)
    out.update(_thermal(s, out["wind_speed"]))
    out.update(_particles(s))
    out.update(_light(s))
    out.update(_sound(s))
    if sc.extended:
        out.update(_vibration(s, "acceleration", 0.05 * s.p("vibration")))
        out.update(_gases(s, sc.interval, out["air_temperature"]))
    else:
        out.update(_vibration(s, "vibration", s.p("vibration")))
    return out


# -- faults --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultPlan:
    """How often faults occur, per property they affect.

    Glitches (spikes, error codes) happen per reading, so their rates are per 1,000 readings;
    stuck runs, outages and drift happen in time, so theirs are per sensor and day.

    Attributes
    ----------
    spikes
        Single-reading spikes per 1,000 readings on PM, temperature and humidity (a
        ``gross_fraction`` share of that rate also on wind, gust and black-globe temperature,
        which only carry gross spikes).
    stuck
        Frozen runs per sensor-day on PM, temperature, humidity, noise and black globe.
    out_of_range
        Error codes (1–2 readings) per 1,000 readings on PM, temperature, humidity, noise,
        wind and black globe.
    drift
        Fraction of sensors with one drifting property (PM, temperature or humidity).
    outages
        Sensor outages (missing rows, 2 minutes to 3 hours) per sensor-day.
    blank_cells
        Probability that a single value is missing.
    spike_size
        Spike height in robust standard deviations of the sensor's reading-to-reading change.
    gross_fraction
        Share of spikes that are 1.1–2 × the vocabulary's spike size instead.
    """

    spikes: float = 0.7
    stuck: float = 0.05
    out_of_range: float = 0.15
    drift: float = 0.01
    outages: float = 0.2
    blank_cells: float = 1e-4
    spike_size: tuple[float, float] = (6.0, 15.0)
    gross_fraction: float = 0.25


NO_FAULTS: Final = FaultPlan(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
DEFAULT_FAULTS: Final = FaultPlan()

_SPIKE, _GROSS, _STUCK, _RANGE, _DRIFT = range(5)
_KIND_NAMES: Final = ("spike", "spike", "stuck", "range", "drift")
_RELATIVE_SPIKE: Final = ("pm25", "pm10", "air_temperature", "relative_humidity")
_GROSS_ONLY: Final = ("wind_speed", "gust_speed", "black_globe_temperature")
_STUCK_PROPS: Final = (*_RELATIVE_SPIKE, "noise", "black_globe_temperature")
_SENTINELS: Final[dict[str, tuple[float, ...]]] = {
    "pm25": (-1.0, 9999.0),
    "pm10": (-1.0, 9999.0),
    "air_temperature": (-100.0, 899.9),  # raw 0 and 9999 of the (v + 100) × 10 encoding
    "relative_humidity": (-1.0, 120.0),
    "noise": (0.0,),
    "wind_speed": (999.9,),
    "black_globe_temperature": (-100.0,),
}
_LOG_OFFSET: Final = 5.0  # PM is handled as log(x + 5 µg/m³): its noise is multiplicative
_DERIVED: Final = {"pm25_corrected": ("pm25", "gain25"), "pm10_corrected": ("pm10", "gain10")}


def _forward(prop: str, x: F64) -> F64:
    """The scale faults are sized on: log(x + 5) for PM, else the value itself."""
    out: F64 = np.log(np.maximum(x, 0.0) + _LOG_OFFSET) if prop.startswith("pm") else x
    return out


def _inverse(prop: str, y: F64) -> F64:
    """Back from :func:`_forward`'s scale."""
    out: F64 = np.exp(y) - _LOG_OFFSET if prop.startswith("pm") else y
    return out


@dataclass(frozen=True, eq=False)
class FaultLabels:
    """Ground truth: one row per faulty value.

    ``sensor`` indexes the sites (or stations); ``time`` is the phenomenon time in µs since the
    epoch, UTC (what the readers return); ``prop`` the vocabulary key; ``kind`` one of spike,
    stuck, range, drift, gap, source. ``detectable`` is False only for drift below
    :data:`DRIFT_TOLERANCE` network spreads: a real fault, but not one QC can be asked to find.
    """

    sensor: I64
    time: I64
    prop: NDArray[np.str_]
    kind: NDArray[np.str_]
    detectable: Mask

    def __len__(self) -> int:
        return int(self.sensor.shape[0])

    @classmethod
    def empty(cls) -> FaultLabels:
        """No labels."""
        return cls(
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros(0, "<U1"),
            np.zeros(0, "<U1"),
            np.zeros(0, bool),
        )

    @classmethod
    def concat(cls, parts: Sequence[FaultLabels]) -> FaultLabels:
        """All rows of ``parts``, in order."""
        if not parts:
            return cls.empty()
        return cls(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("sensor", "time", "prop", "kind", "detectable")
            )
        )

    def counts(self) -> dict[str, int]:
        """Labelled values per kind."""
        kinds, counts = np.unique(self.kind, return_counts=True)
        return {str(k): int(c) for k, c in zip(kinds, counts, strict=True)}


@dataclass(frozen=True, eq=False)
class _Events:
    """Fault events: a kind on one property of one sensor from ``start`` for ``length`` steps."""

    sensor: I64
    prop: I64  # index into the scenario's properties
    kind: I64
    start: I64
    length: I64
    param: F64  # spike: size (signed); range: the value; drift: final offset in network spreads

    def take(self, index: I64 | Mask) -> _Events:
        return _Events(
            self.sensor[index],
            self.prop[index],
            self.kind[index],
            self.start[index],
            self.length[index],
            self.param[index],
        )

    @classmethod
    def concat(cls, parts: Sequence[_Events]) -> _Events:
        if not parts:
            empty = np.zeros(0, np.int64)
            return cls(empty, empty, empty, empty, empty, np.zeros(0))
        return cls(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("sensor", "prop", "kind", "start", "length", "param")
            )
        )


@dataclass(frozen=True, eq=False)
class _Points:
    """Expanded fault events: one entry per affected (step, sensor, property), sorted by step."""

    step: I64
    sensor: I64
    prop: I64
    kind: I64
    event: I64
    param: F64  # as the event's, except drift: the offset reached at this step

    def between(self, a: int, b: int) -> _Points:
        lo, hi = np.searchsorted(self.step, [a, b])
        return _Points(
            self.step[lo:hi],
            self.sensor[lo:hi],
            self.prop[lo:hi],
            self.kind[lo:hi],
            self.event[lo:hi],
            self.param[lo:hi],
        )


class _Planner:
    """Draws fault events for a scenario (see :class:`FaultPlan` for the kinds and sizes)."""

    def __init__(
        self,
        rng: np.random.Generator,
        plan: FaultPlan,
        props: tuple[str, ...],
        steps: int,
        n: int,
        interval: int,
    ) -> None:
        self.rng, self.plan, self.props = rng, plan, props
        self.steps, self.n, self.interval = steps, n, interval
        self.days = steps * interval / 1440.0

    def events(self) -> _Events:
        parts = [self._spikes(p) for p in (*_RELATIVE_SPIKE, *_GROSS_ONLY)]
        parts += [self._stuck(p) for p in _STUCK_PROPS]
        parts += [self._range(p, codes) for p, codes in _SENTINELS.items()]
        parts.append(self._drift())
        return _Events.concat([p for p in parts if p is not None])

    def _make(self, prop: str, kind: I64, length: I64, param: F64) -> _Events | None:
        fits = length <= self.steps
        if prop not in self.props or not fits.any():
            return None
        kind, length, param = kind[fits], length[fits], param[fits]
        count = len(length)
        start = self.rng.integers(0, self.steps - length + 1)
        if np.all(length == 1) and self.steps >= 3:  # a spike needs a neighbour on each side
            start = np.clip(start, 1, self.steps - 2)
        sensor = self.rng.integers(0, self.n, count)
        return _Events(sensor, np.full(count, self.props.index(prop)), kind, start, length, param)

    def _spikes(self, prop: str) -> _Events | None:
        spec, rng, plan = get_property(prop), self.rng, self.plan
        relative = prop in _RELATIVE_SPIKE
        count = int(
            rng.poisson(
                plan.spikes
                / 1000
                * self.n
                * self.steps
                * (1.0 if relative else plan.gross_fraction)
            )
        )
        gross = (rng.random(count) < plan.gross_fraction) | (not relative)
        sign = np.ones(count) if prop.startswith("pm") else rng.choice([-1.0, 1.0], count)
        size = np.where(
            gross,
            (spec.spike or 0.0) * rng.uniform(1.1, 2.0, count),
            rng.uniform(*plan.spike_size, count),
        )
        kind = np.where(gross, _GROSS, _SPIKE).astype(np.int64)
        return self._make(prop, kind, np.ones(count, np.int64), sign * size)

    def _stuck(self, prop: str) -> _Events | None:
        """Frozen for 1.3–3 × the longer of ``stuck_minutes`` and six readings (with fewer, an
        hourly series of integers repeats by chance)."""
        count = int(self.rng.poisson(self.plan.stuck * self.n * self.days))
        limit = max(get_property(prop).stuck_minutes or 0.0, 6.0 * self.interval)
        minutes = limit * self.rng.uniform(1.3, 3.0, count)
        length = np.ceil(minutes / self.interval).astype(np.int64) + 1
        return self._make(prop, np.full(count, _STUCK), length, np.zeros(count))

    def _range(self, prop: str, codes: tuple[float, ...]) -> _Events | None:
        count = int(self.rng.poisson(self.plan.out_of_range / 1000 * self.n * self.steps))
        length = self.rng.integers(1, 3, count)
        return self._make(
            prop, np.full(count, _RANGE), length, self.rng.choice(np.array(codes), count)
        )

    def _drift(self) -> _Events | None:
        """Drifting sensors: a ramp from a start in the first half to the end, 5–10 spreads."""
        candidates = np.array([self.props.index(p) for p in _RELATIVE_SPIKE if p in self.props])
        count = int(self.rng.binomial(self.n, self.plan.drift)) if len(candidates) else 0
        if not count:
            return None
        start = self.rng.integers(0, max(self.steps // 2, 1), count)
        return _Events(
            self.rng.choice(self.n, count, replace=False),
            self.rng.choice(candidates, count),
            np.full(count, _DRIFT),
            start,
            self.steps - start,
            self.rng.choice([-1.0, 1.0], count) * self.rng.uniform(5.0, 10.0, count),
        )


def _resolve(events: _Events, outage: Mask) -> _Events:
    """Drop events that overlap an earlier one on the same sensor and property (3-step margin),
    and all but drift events that come within two steps of an outage."""
    order = np.lexsort((events.start, events.prop, events.sensor))
    e = events.take(order)
    steps = int(outage.shape[0])
    span = steps + 10
    group = e.sensor * 1000 + e.prop
    end = e.start + e.length - 1
    reach = np.maximum.accumulate(group * span + end + 3)
    clash = np.r_[False, group[1:] * span + e.start[1:] <= reach[:-1]]
    cum = np.vstack([np.zeros((1, outage.shape[1]), np.int64), np.cumsum(outage, axis=0)])
    lo, hi = np.clip(e.start - 2, 0, steps), np.clip(end + 3, 0, steps)
    touched = cum[hi, e.sensor] - cum[lo, e.sensor] > 0
    return e.take(~clash & ~(touched & (e.kind != _DRIFT)))


def _expand(events: _Events) -> _Points:
    length = events.length
    event = np.repeat(np.arange(len(length)), length)
    offset = np.arange(int(length.sum())) - np.repeat(np.cumsum(length) - length, length)
    kind, param = events.kind[event], events.param[event]
    param = np.where(kind == _DRIFT, param * (offset + 1) / length[event], param)
    step = events.start[event] + offset
    order = np.argsort(step, kind="stable")
    return _Points(
        step[order],
        events.sensor[event][order],
        events.prop[event][order],
        kind[order],
        event[order],
        param[order],
    )


def _outages(rng: np.random.Generator, plan: FaultPlan, steps: int, n: int, interval: int) -> Mask:
    """Missing rows (steps, sites): sensors offline for 2 minutes to 3 hours (mean 20 minutes),
    i.e. 1–90 readings of a 2-minute file and mostly one of an hourly file."""
    count = rng.poisson(plan.outages * n * steps * interval / 1440.0)
    sensor, start = rng.integers(0, n, count), rng.integers(0, steps, count)
    minutes = 2 * np.minimum(rng.geometric(0.1, count), 90)
    length = np.maximum(1, np.rint(minutes / interval).astype(np.int64))
    mask = np.zeros((steps + int(length.max(initial=1)), n), bool)
    offsets = np.arange(int(length.sum())) - np.repeat(np.cumsum(length) - length, length)
    mask[np.repeat(start, length) + offsets, np.repeat(sensor, length)] = True
    return mask[:steps]


def _gap_points(outage: Mask) -> tuple[I64, I64]:
    """(step, sensor) of the first reading after an outage of ≥ 3 readings (QC's gap size)."""
    edges = np.diff(np.pad(outage.T.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    sensor, first = np.nonzero(edges == 1)
    _, after = np.nonzero(edges == -1)
    keep = (first > 0) & (after < outage.shape[0]) & (after - first >= 3)
    return after[keep].astype(np.int64), sensor[keep].astype(np.int64)


# -- scenario ------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Scenario:
    sites: Sites
    minutes: I64
    interval: int
    extended: bool  # newer sensors: acceleration in g, gases, visitor counter
    props: tuple[str, ...]
    quantum: dict[str, float]
    weather: Weather
    model: _SiteModel
    plan: FaultPlan
    points: _Points
    outage: Mask
    gaps: tuple[I64, I64]
    seed: int
    frozen: F64
    spread: dict[str, float] = field(default_factory=dict)  # network spread (transformed)
    change: dict[str, F64] = field(default_factory=dict)  # per sensor reading-to-reading sd


def _scenario(
    sites: Sites,
    start: datetime,
    hours: int,
    interval: int,
    plan: FaultPlan,
    seed: int,
    quantum: dict[str, float],
    extended: bool,
) -> _Scenario:
    """Everything drawn up front: time axis, weather, sites, outages and fault events."""
    steps = hours * 60 // interval
    if steps < 1 or len(sites) < 1:
        raise ValueError(f"need at least one step and one sensor; got {hours} h, {len(sites)}")
    first = kst_minute(start)
    minutes = first + interval * np.arange(steps, dtype=np.int64)
    weather = simulate_weather(first, hours, seed)
    props = tuple(quantum)
    rng = _rng(seed, 3)
    outage = _outages(rng, plan, steps, len(sites), interval)
    events = _resolve(_Planner(rng, plan, props, steps, len(sites), interval).events(), outage)
    return _Scenario(
        sites,
        minutes,
        interval,
        extended,
        props,
        quantum,
        weather,
        _site_model(sites, len(weather.knots), seed),
        plan,
        _expand(events),
        outage,
        _gap_points(outage),
        seed,
        np.full(len(events.sensor), np.nan),
    )


def _quantise(values: F64, quantum: float) -> F64:
    """Round to the file's resolution (0.1, 1, 0.0001 …), as the nearest decimal double."""
    decimals = max(0, round(-math.log10(quantum)))
    out: F64 = np.round(values, decimals)
    return out


def _calibrate(sc: _Scenario, clean: dict[str, F64]) -> None:
    """Measure, on the first chunk's clean quantised values, the network spread of the
    drift/spike properties (robust spread across sensors at one instant) and each sensor's
    reading-to-reading variability (robust sd of its changes), on the transformed scale."""
    for prop in _RELATIVE_SPIKE:
        if prop not in clean:
            continue
        y = _forward(prop, _quantise(clean[prop], sc.quantum[prop]))
        sc.spread[prop] = 1.4826 * float(np.median(np.abs(y - np.median(y, axis=1)[:, None])))
        level = np.median(clean[prop], axis=0) + (_LOG_OFFSET if prop.startswith("pm") else 0.0)
        floor = (
            sc.quantum[prop] / level
            if prop.startswith("pm")
            else np.full(y.shape[1], sc.quantum[prop])
        )
        change = np.abs(np.diff(y, axis=0))
        step = 1.4826 * np.median(change, axis=0) if len(change) else np.zeros(y.shape[1])
        sc.change[prop] = np.maximum(step, floor)


def _apply_faults(sc: _Scenario, a: int, b: int, values: dict[str, F64]) -> _Points:
    """Inject the chunk's fault points into ``values`` (in place); return those points."""
    pts = sc.points.between(a, b)
    for index, prop in enumerate(sc.props):
        mine = pts.prop == index
        if not mine.any():
            continue
        x = values[prop]
        t, s, kind, event = pts.step[mine] - a, pts.sensor[mine], pts.kind[mine], pts.event[mine]
        _freeze(sc, event, kind, x[t, s])
        x[t, s] = _faulty(sc, prop, x[t, s], kind, pts.param[mine], sc.frozen[event], s)
    return pts


def _freeze(sc: _Scenario, event: I64, kind: I64, clean: F64) -> None:
    """Remember a stuck run's value at its first step (runs may continue into later chunks).

    Points are sorted by step and chunks come in order, so an event's first point seen is its
    start."""
    first = (kind == _STUCK) & np.isnan(sc.frozen[event])
    if first.any():
        events, where = np.unique(event[first], return_index=True)
        sc.frozen[events] = clean[first][where]


def _faulty(
    sc: _Scenario, prop: str, x: F64, kind: I64, param: F64, frozen: F64, sensor: I64
) -> F64:
    """Values after faults: drift offset, frozen value, spike (kept in range), error code."""
    out = x.copy()
    drift = kind == _DRIFT
    out[drift] = _inverse(prop, _forward(prop, x[drift]) + param[drift] * sc.spread.get(prop, 0))
    stuck = kind == _STUCK
    out[stuck] = frozen[stuck]
    spike, gross = kind == _SPIKE, kind == _GROSS
    change = sc.change.get(prop, np.zeros(len(sc.sites)))[sensor[spike]]
    relative = _inverse(prop, _forward(prop, x[spike]) + param[spike] * change)
    out[spike] = _spiked(prop, x[spike], relative - x[spike])
    out[gross] = _spiked(prop, x[gross], param[gross])
    out[kind == _RANGE] = param[kind == _RANGE]
    return out


def _spiked(prop: str, x: F64, size: F64) -> F64:
    """``x + size``, or ``x - size`` when that leaves the valid range (else the bound)."""
    spec = get_property(prop)
    up, down = x + np.abs(size), x - np.abs(size)
    fits_up, fits_down = up <= spec.valid_max, down >= spec.valid_min
    out: F64 = np.where(
        size > 0,
        np.where(fits_up, up, np.where(fits_down, down, spec.valid_max)),
        np.where(fits_down, down, np.where(fits_up, up, spec.valid_min)),
    )
    return out


def _blank(sc: _Scenario, rng: np.random.Generator, values: dict[str, F64], present: Mask) -> None:
    """Missing channels, single missing cells and missing rows become NaN (in place)."""
    shape = present.shape
    for prop, x in values.items():
        x[~present] = np.nan
        absent = sc.model.missing.get(prop)
        if absent is not None:
            x[:, absent] = np.nan
        count = rng.poisson(sc.plan.blank_cells * x.size)
        if count:
            x[rng.integers(0, shape[0], count), rng.integers(0, shape[1], count)] = np.nan


def _labels(sc: _Scenario, a: int, values: dict[str, F64], pts: _Points) -> FaultLabels:
    """Labels of the chunk's fault points that hold a value, plus the derived PM columns."""
    parts: list[FaultLabels] = []
    time = _utc_micros(sc.minutes)
    for index, prop in enumerate(sc.props):
        mine = pts.prop == index
        targets = [prop, *(d for d, (src, _) in _DERIVED.items() if src == prop and d in values)]
        for target in targets:
            t, s = pts.step[mine], pts.sensor[mine]
            ok = ~np.isnan(values[target][t - a, s])
            kind = np.asarray(_KIND_NAMES)[pts.kind[mine][ok]]
            detectable = (pts.kind[mine][ok] != _DRIFT) | (
                np.abs(pts.param[mine][ok]) > DRIFT_TOLERANCE
            )
            parts.append(
                FaultLabels(s[ok], time[t[ok]], np.full(int(ok.sum()), target), kind, detectable)
            )
    step, sensor = sc.gaps
    here = (step >= a) & (step < a + len(next(iter(values.values()))))
    for prop, x in values.items():
        ok = ~np.isnan(x[step[here] - a, sensor[here]])
        count = int(ok.sum())
        parts.append(
            FaultLabels(
                sensor[here][ok],
                time[step[here][ok]],
                np.full(count, prop),
                np.full(count, "gap"),
                np.ones(count, bool),
            )
        )
    return FaultLabels.concat(parts)


@dataclass(frozen=True, eq=False)
class _Chunk:
    first: int
    minutes: I64
    values: dict[str, F64]  # (steps, sites); NaN = no value
    present: Mask  # (steps, sites): the row exists
    labels: FaultLabels


def _chunks(sc: _Scenario) -> Iterator[_Chunk]:
    """Simulate, inject, quantise and blank the scenario a chunk of steps at a time."""
    n, steps = len(sc.sites), len(sc.minutes)
    size = max(1, CHUNK_ROWS // n)
    for a in range(0, steps, size):
        b = min(steps, a + size)
        rng = _rng(sc.seed, 4, a)
        clean = _fields(sc, a, b, rng)
        if a == 0:
            _calibrate(sc, clean)
        values = {p: clean[p] for p in sc.props if p not in _DERIVED}
        pts = _apply_faults(sc, a, b, values)
        for derived, (source, gain) in _DERIVED.items():
            if derived in sc.props:
                values[derived] = values[source] * sc.model.params[gain]
        values = {p: _quantise(values[p], sc.quantum[p]) for p in sc.props}
        present = ~sc.outage[a:b]
        _blank(sc, rng, values, present)
        yield _Chunk(a, sc.minutes[a:b], values, present, _labels(sc, a, values, pts))


# -- writers -------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class WrittenFeed:
    """What a writer wrote: the file, its data rows, its values (non-empty value cells a reader
    turns into observations) and the injected faults."""

    path: Path
    rows: int
    values: int
    labels: FaultLabels


# 2020 raw files: header, property, integer scale, offset (S-DoT column dictionary)
SDOT_2020_COLUMNS: Final = (
    ("미세먼지2.5(초미세먼지)", "pm25", 1.0, 0.0), ("미세먼지10(미세먼지)", "pm10", 1.0, 0.0),
    ("기온", "air_temperature", 10.0, 1000.0), ("상대습도", "relative_humidity", 1.0, 0.0),
    ("풍향", "wind_direction", 10.0, 0.0), ("풍속", "wind_speed", 10.0, 0.0),
    ("돌풍 풍향", "gust_direction", 10.0, 0.0), ("돌풍 풍속", "gust_speed", 10.0, 0.0),
    ("조도", "illuminance", 1.0, 0.0), ("자외선", "uv_index", 10.0, 0.0),
    ("소음", "noise", 1.0, 0.0),
    ("진동(x)", "vibration_x", 100.0, 0.0), ("진동(y)", "vibration_y", 100.0, 0.0),
    ("진동(z)", "vibration_z", 100.0, 0.0), ("진동(x) 최대", "vibration_x_max", 100.0, 0.0),
    ("진동(y) 최대", "vibration_y_max", 100.0, 0.0),
    ("진동(z) 최대", "vibration_z_max", 100.0, 0.0),
    ("흑구 온도", "black_globe_temperature", 10.0, 1000.0),
    ("pm25 보정", "pm25_corrected", 1.0, 0.0), ("pm10 보정", "pm10_corrected", 1.0, 0.0),
)  # fmt: skip

# hourly exports: header (with unit), property, quantum
SDOT_HOURLY_COLUMNS: Final = (
    ("초미세먼지 (㎍/㎥)", "pm25", 1.0), ("미세먼지 (㎍/㎥)", "pm10", 1.0),
    ("기온(℃)", "air_temperature", 0.1), ("상대습도(%)", "relative_humidity", 1.0),
    ("풍향(°)", "wind_direction", 1.0), ("풍속(m/s)", "wind_speed", 0.1),
    ("돌풍 풍향(°)", "gust_direction", 1.0), ("돌풍 풍속(m/s)", "gust_speed", 0.1),
    ("조도(lux)", "illuminance", 1.0), ("자외선(UVI)", "uv_index", 0.1),
    ("소음 (dB)", "noise", 0.1),
    ("진동(x) (g)", "acceleration_x", 1e-4), ("진동(y) (g)", "acceleration_y", 1e-4),
    ("진동(z) (g)", "acceleration_z", 1e-4), ("진동(x) 최대 (g)", "acceleration_x_max", 1e-4),
    ("진동(y) 최대 (g)", "acceleration_y_max", 1e-4),
    ("진동(z) 최대 (g)", "acceleration_z_max", 1e-4),
    ("흑구 온도(℃)", "black_globe_temperature", 0.1),
    ("초미세먼지 보정 (㎍/㎥)", "pm25_corrected", 1.0),
    ("미세먼지 보정 (㎍/㎥)", "pm10_corrected", 1.0),
    ("이산화질소 (ppm)", "no2", 1e-4), ("일산화탄소 (ppm)", "co", 1e-4),
    ("아황산가스 (ppm)", "so2", 1e-4), ("암모니아 (ppm)", "nh3", 1e-4),
    ("황화수소 (ppm)", "h2s", 1e-4), ("오존 (ppm)", "o3", 1e-4),
    ("방문자수 (명)", "visitor_count", 1.0),
)  # fmt: skip

_WRITE: Final = pacsv.WriteOptions(include_header=False, quoting_style="none")


def _take(labels: Sequence[str], index: I64) -> pa.Array:
    """A string column from a small set of labels."""
    return pa.array(list(labels), pa.string()).take(pa.array(index))


def _write_rows(handle: io.BufferedIOBase, columns: dict[str, pa.Array], encoding: str) -> None:
    """Append rows; the body is re-encoded only when it holds text outside ASCII."""
    if encoding.replace("-", "").lower() in ("utf8", "utf8sig"):
        pacsv.write_csv(pa.table(columns), handle, _WRITE)
        return
    buffer = io.BytesIO()
    pacsv.write_csv(pa.table(columns), buffer, _WRITE)
    data = buffer.getvalue()
    handle.write(data if data.isascii() else data.decode("utf-8").encode(encoding))


def _header(handle: io.BufferedIOBase, names: Sequence[str], encoding: str) -> None:
    """Write the header line unquoted, as the portals do."""
    handle.write((",".join(names) + "\n").encode(encoding))


_ENCODING_2020: Final = {prop: (scale, offset) for _, prop, scale, offset in SDOT_2020_COLUMNS}


def encode_sdot_2020(prop: str, values: F64) -> I64:
    """Physical values → the integers of a 2020 raw file (S-DoT column dictionary).

    >>> encode_sdot_2020("air_temperature", np.array([23.4, -100.0])).tolist()
    [1234, 0]
    >>> encode_sdot_2020("vibration_z", np.array([0.05])).tolist()
    [5]
    """
    scale, offset = _ENCODING_2020[prop]
    raw: I64 = np.rint(np.asarray(values, np.float64) * scale + offset).astype(np.int64)
    return raw


def _value_column(x: F64, prop: str | None = None) -> tuple[pa.Array, int]:
    """An Arrow column of present values (null for NaN), encoded for the 2020 layout when
    ``prop`` is given, and its value count."""
    missing = np.isnan(x)
    count = int(missing.size - missing.sum())
    if prop is not None:
        return pa.array(encode_sdot_2020(prop, np.where(missing, 0.0, x)), mask=missing), count
    return pa.array(x, mask=missing), count


def write_sdot_2020(
    path: str | Path,
    sites: Sites,
    start: datetime,
    hours: int,
    *,
    interval_minutes: int = 2,
    faults: FaultPlan = DEFAULT_FAULTS,
    seed: int = 0,
    encoding: str = "utf-8",
) -> WrittenFeed:
    """An S-DoT raw file in the 2020 layout (``ALLDATA_yyyymmdd.csv``).

    Integers with the column dictionary's scalings: temperature and black globe (v + 100) × 10,
    wind, gust, direction and UV × 10, vibration × 100; ``측정시간`` is ``yyyymmddhhmi`` (KST) and
    ``등록 일시`` the upload time a minute or two later. Rows are in time order, sensors within.

    Parameters
    ----------
    path
        Output file (overwritten).
    sites
        The sensors (see :func:`load_sites`).
    start
        First measurement time; a naive datetime is KST.
    hours
        Length of the file.
    interval_minutes
        Sampling period (2 in the real files).
    faults
        Fault rates; :data:`NO_FAULTS` for clean data.
    seed
        Everything is reproducible from it.
    encoding
        ``utf-8``, ``utf-8-sig`` or ``cp949`` (only the header is non-ASCII).

    Returns
    -------
    WrittenFeed
    """
    quantum = {prop: 1.0 / scale for _, prop, scale, _ in SDOT_2020_COLUMNS}
    sc = _scenario(sites, start, hours, interval_minutes, faults, seed, quantum, False)
    names = ["모델명", "시리얼", *(c[0] for c in SDOT_2020_COLUMNS), "측정시간", "등록 일시"]
    out, rows, count, labels = Path(path), 0, 0, []
    with out.open("wb") as handle:
        _header(handle, names, encoding)
        for chunk in _chunks(sc):
            columns, values = _sdot_2020_columns(sc, chunk)
            _write_rows(handle, columns, encoding)
            rows += int(chunk.present.sum())
            count += values
            labels.append(chunk.labels)
    return WrittenFeed(out, rows, count, FaultLabels.concat(labels))


def _row_index(chunk: _Chunk) -> tuple[I64, I64]:
    """(step within chunk, sensor) of each present row, time-major."""
    step, sensor = np.nonzero(chunk.present)
    return step.astype(np.int64), sensor.astype(np.int64)


def _sdot_2020_columns(sc: _Scenario, chunk: _Chunk) -> tuple[dict[str, pa.Array], int]:
    """One chunk's rows in the 2020 layout, and their value count."""
    step, sensor = _row_index(chunk)
    lag = (step * 7 + sensor * 13) % 150 + 20  # upload delay, 20–169 s
    first = int(chunk.minutes[0])
    span = int(chunk.minutes[-1]) - first + 4
    upload = _text_times(first + np.arange(span, dtype=np.int64))
    registered = [f"{t[:-2]}{s:02d}" for t in upload for s in range(60)]
    seconds = (chunk.minutes[step] - first) * 60 + lag
    columns: dict[str, pa.Array] = {
        "모델명": _take(["SDOT-2"], np.zeros(len(step), np.int64)),
        "시리얼": _take(sc.sites.serials, sensor),
    }
    count = 0
    for name, prop, _, _ in SDOT_2020_COLUMNS:
        columns[name], values = _value_column(chunk.values[prop][step, sensor], prop)
        count += values
    columns["측정시간"] = pa.array(_digits(chunk.minutes)[step])
    columns["등록 일시"] = _take(registered, seconds)
    return columns, count


_GU: Final = {  # approximate centres of Seoul's 25 districts (for the 자치구 column)
    "종로구": (126.979, 37.594), "중구": (126.996, 37.560), "용산구": (126.980, 37.531),
    "성동구": (127.041, 37.551), "광진구": (127.086, 37.546), "동대문구": (127.055, 37.582),
    "중랑구": (127.093, 37.598), "성북구": (127.018, 37.606), "강북구": (127.011, 37.643),
    "도봉구": (127.032, 37.669), "노원구": (127.075, 37.652), "은평구": (126.927, 37.619),
    "서대문구": (126.937, 37.578), "마포구": (126.902, 37.559), "양천구": (126.855, 37.525),
    "강서구": (126.822, 37.561), "구로구": (126.856, 37.494), "금천구": (126.900, 37.460),
    "영등포구": (126.910, 37.522), "동작구": (126.952, 37.499), "관악구": (126.945, 37.467),
    "서초구": (127.031, 37.473), "강남구": (127.063, 37.497), "송파구": (127.115, 37.505),
    "강동구": (127.147, 37.550),
}  # fmt: skip


def _districts(sites: Sites) -> list[str]:
    """The district (자치구) of each site: the nearest district centre."""
    names = list(_GU)
    centres = np.array(list(_GU.values()))
    d = (sites.lon[:, None] - centres[:, 0]) ** 2 + (sites.lat[:, None] - centres[:, 1]) ** 2
    return [names[i] for i in np.argmin(d, axis=1)]


def write_sdot_hourly(
    path: str | Path,
    sites: Sites,
    start: datetime,
    hours: int,
    *,
    faults: FaultPlan = DEFAULT_FAULTS,
    seed: int = 0,
    encoding: str = "utf-8",
) -> WrittenFeed:
    """An S-DoT hourly export of the Seoul Open Data Plaza (newer sensor generation).

    Physical values under headers with units (``초미세먼지 (㎍/㎥)``, ``기온(℃)``, vibration in g),
    the gas sensors (NO2, CO, SO2, NH3, H2S, O3 in ppm) and the visitor counter (``방문자수``);
    ``측정시간`` is ``yyyy-mm-dd hh:mm:ss`` (KST) and 지역/자치구 name the district.

    Parameters
    ----------
    path, sites, start, hours, faults, seed
        As for :func:`write_sdot_2020` (one reading per sensor and hour).
    encoding
        ``utf-8``, ``utf-8-sig`` or ``cp949`` (the portal's two choices).

    Returns
    -------
    WrittenFeed
    """
    quantum = {prop: q for _, prop, q in SDOT_HOURLY_COLUMNS}
    sc = _scenario(sites, start, hours, 60, faults, seed, quantum, True)
    names = ["모델명", "시리얼", "측정시간", "지역", "자치구", *(c[0] for c in SDOT_HOURLY_COLUMNS)]
    districts = _districts(sites)
    out, rows, count, labels = Path(path), 0, 0, []
    with out.open("wb") as handle:
        _header(handle, names, encoding)
        for chunk in _chunks(sc):
            step, sensor = _row_index(chunk)
            columns: dict[str, pa.Array] = {
                "모델명": _take(["SDOT-3"], np.zeros(len(step), np.int64)),
                "시리얼": _take(sites.serials, sensor),
                "측정시간": _take(_text_times(chunk.minutes), step),
                "지역": _take(["서울"], np.zeros(len(step), np.int64)),
                "자치구": _take(districts, sensor),
            }
            for name, prop, _ in SDOT_HOURLY_COLUMNS:
                columns[name], values = _value_column(chunk.values[prop][step, sensor])
                count += values
            _write_rows(handle, columns, encoding)
            rows += len(step)
            labels.append(chunk.labels)
    return WrittenFeed(out, rows, count, FaultLabels.concat(labels))


# -- KMA -----------------------------------------------------------------------------------------

KMA_HEADER: Final = (
    "지점", "지점명", "일시", "기온(°C)", "기온 QC플래그", "강수량(mm)", "강수량 QC플래그",
    "풍속(m/s)", "풍속 QC플래그", "풍향(16방위)", "풍향 QC플래그", "습도(%)", "습도 QC플래그",
    "증기압(hPa)", "이슬점온도(°C)", "현지기압(hPa)", "현지기압 QC플래그", "해면기압(hPa)",
    "해면기압 QC플래그", "일조(hr)", "일조 QC플래그", "일사(MJ/m2)", "일사 QC플래그", "적설(cm)",
    "3시간신적설(cm)", "전운량(10분위)", "중하층운량(10분위)", "운형(운형약어)", "최저운고(100m )",
    "시정(10m)", "지면상태(지면상태코드)", "현상번호(국내식)", "지면온도(°C)", "지면온도 QC플래그",
    "5cm 지중온도(°C)", "10cm 지중온도(°C)", "20cm 지중온도(°C)", "30cm 지중온도(°C)",
)  # fmt: skip
# value columns with a vocabulary property: header → (property, decimals)
KMA_VALUES: Final = {
    "기온(°C)": ("air_temperature", 1), "강수량(mm)": ("precipitation", 1),
    "풍속(m/s)": ("wind_speed", 1), "풍향(16방위)": ("wind_direction", 0),
    "습도(%)": ("relative_humidity", 0), "증기압(hPa)": ("vapour_pressure", 1),
    "이슬점온도(°C)": ("dew_point_temperature", 1), "현지기압(hPa)": ("air_pressure", 1),
    "해면기압(hPa)": ("sea_level_pressure", 1), "일조(hr)": ("sunshine_duration", 1),
    "일사(MJ/m2)": ("solar_radiation", 2), "적설(cm)": ("snow_depth", 1),
    "전운량(10분위)": ("cloud_cover", 0), "시정(10m)": ("visibility", 0),
    "지면온도(°C)": ("ground_temperature", 1),
}  # fmt: skip
_SUSPECT: Final = {  # values KMA's QC may mark as errors, and how wrong they are
    "기온(°C)": 8.0,
    "풍속(m/s)": 6.0,
    "습도(%)": 30.0,
    "현지기압(hPa)": 12.0,
    "해면기압(hPa)": 12.0,
    "지면온도(°C)": 10.0,
}


def _compass(direction: F64, speed: F64) -> F64:
    """16-point direction as KMA writes it: 22.5° steps rounded half-up to 10°, north 360,
    calm (< 0.3 m/s) 0."""
    point = np.mod(np.rint(direction / 22.5), 16) * 22.5
    tens = np.floor(point / 10 + 0.5) * 10
    out: F64 = np.where(speed < 0.3, 0.0, np.where(tens == 0, 360.0, tens))
    return out


def _kma_fields(stations: Sequence[Station], minutes: I64, seed: int) -> dict[str, F64]:
    """Hourly station values (hours, stations) from the same city weather as the sensors."""
    weather = simulate_weather(int(minutes[0]), len(minutes), seed)
    city = city_state(weather, minutes)
    before = city_state(weather, minutes - 30)  # mid-point of the hour just ended
    rng = _rng(seed, 5)
    n = len(stations)
    height = np.array([s.height for s in stations])
    lat = np.array([s.lat for s in stations])
    temp = (
        _c(city.temperature)
        - 0.0065 * (height - 40)
        + 0.45 * (lat.mean() - lat) / 0.135
        + rng.normal(0, 0.4, n)
        + rng.normal(0, 0.2, (len(minutes), n))
    )
    dew = np.minimum(_c(city.dew_point) + rng.normal(0, 0.3, n), temp - 0.5)
    speed = np.maximum(
        _c(city.wind) * rng.uniform(0.6, 1.3, n) * np.exp(rng.normal(0, 0.2, (len(minutes), n))),
        0.0,
    )
    sea = _c(city.pressure) + rng.normal(0, 0.3, n)
    rain = _c(np.interp(minutes - 60, weather.knots, weather.rain)) * np.exp(
        rng.normal(0, 0.4, (len(minutes), n))
    )
    sun_up = _c(before.sin_sun) > 0.0
    return {
        "temp": temp,
        "dew": dew,
        "speed": speed,
        "rain": np.where(rain >= 0.05, rain, np.nan),
        "direction": _compass(
            np.mod(_c(city.direction) + rng.normal(0, 15, (len(minutes), n)), 360), speed
        ),
        "rh": 100 * np.exp(_A * dew / (_B + dew) - _A * temp / (_B + temp)),
        "vapour": 6.112 * np.exp(_A * dew / (_B + dew)),
        "sea": sea,
        "local": sea * np.exp(-height / (29.27 * (temp + 273.15))),
        "sunshine": np.where(
            sun_up, _c((1 - before.cloud) ** 1.5 * np.clip(before.sin_sun * 10, 0, 1)), np.nan
        ),
        "solar": np.where(sun_up, _c(before.ghi * 0.0036), np.nan),
        "cloud": np.broadcast_to(_c(np.rint(city.cloud * 10)), temp.shape),
        "visibility": np.broadcast_to(
            _c(np.rint((20000 * np.exp(-city.pm25 / 60) + 500) / 10)), temp.shape
        ),
        "ground": temp + _c(0.012 * city.ghi) - 1.5 * _c(city.night),
    }


def write_kma_hourly(
    path: str | Path,
    stations: Sequence[Station] | None,
    start: datetime,
    hours: int,
    *,
    seed: int = 0,
    suspect_rate: float = 0.002,
    missing_rate: float = 0.002,
    encoding: str = "cp949",
) -> WrittenFeed:
    """KMA hourly observations in the data portal's layout (``OBS_ASOS_TIM_*``).

    One row per station and hour (station-major), values from the same city weather as the S-DoT
    writers with the same seed. AWS stations (number ≥ 300) leave the synoptic columns (cloud,
    visibility, sunshine, radiation, soil temperatures) empty; precipitation and snow are empty
    when there is none, radiation and sunshine at night, as in real portal files. QC플래그 is empty
    for a normal value, 9 for a missing one (empty value) and 1 for an error; error values are
    labelled ``source``.

    Parameters
    ----------
    path
        Output file (overwritten).
    stations
        From :func:`load_stations`; None for :data:`SEOUL_STATIONS`.
    start
        First hour (naive: KST).
    hours
        Number of hours.
    seed
        Shared with the S-DoT writers for consistent weather.
    suspect_rate, missing_rate
        Share of flagged values that KMA's QC marks as error (1) or missing (9).
    encoding
        ``cp949`` like the portal, or ``utf-8``/``utf-8-sig``.

    Returns
    -------
    WrittenFeed
    """
    stations = list(SEOUL_STATIONS if stations is None else stations)
    minutes = kst_minute(start) // 60 * 60 + 60 * np.arange(hours, dtype=np.int64)
    fields = _kma_fields(stations, minutes, seed)
    asos = np.array([s.asos for s in stations])
    cells = _kma_cells(fields, asos)
    rng = _rng(seed, 6)
    flags, labels = _kma_flags(rng, cells, suspect_rate, missing_rate, _utc_micros(minutes))
    table = _kma_table(stations, minutes, cells, flags)
    out = Path(path)
    with out.open("wb") as handle:
        _header(handle, KMA_HEADER, encoding)
        _write_rows(handle, table, encoding)
    values = sum(int(np.count_nonzero(~np.isnan(cells[h]))) for h in KMA_VALUES)
    return WrittenFeed(out, len(stations) * hours, values, labels)


def _kma_cells(f: dict[str, F64], asos: Mask) -> dict[str, F64]:
    """Value columns (hours, stations), rounded as KMA writes them; NaN = empty."""

    def synoptic(x: F64) -> F64:
        out: F64 = np.where(asos, x, np.nan)
        return out

    soil = f["temp"].mean(axis=0, keepdims=True)
    cells = {
        "기온(°C)": f["temp"],
        "강수량(mm)": f["rain"],
        "풍속(m/s)": f["speed"],
        "풍향(16방위)": f["direction"],
        "습도(%)": np.clip(f["rh"], 1, 100),
        "증기압(hPa)": f["vapour"],
        "이슬점온도(°C)": f["dew"],
        "현지기압(hPa)": f["local"],
        "해면기압(hPa)": f["sea"],
        "일조(hr)": synoptic(f["sunshine"]),
        "일사(MJ/m2)": synoptic(f["solar"]),
        "적설(cm)": np.full(f["temp"].shape, np.nan),
        "전운량(10분위)": synoptic(f["cloud"]),
        "시정(10m)": synoptic(f["visibility"]),
        "지면온도(°C)": synoptic(f["ground"]),
        "중하층운량(10분위)": synoptic(np.rint(f["cloud"] * 0.7)),
        "최저운고(100m )": synoptic(np.where(f["cloud"] >= 3, 8 + f["cloud"], np.nan)),
        **{
            f"{d}cm 지중온도(°C)": synoptic(soil + (f["ground"] - soil) * math.exp(-d / 8))
            for d in (5, 10, 20, 30)
        },
    }
    decimals = {h: d for h, (_, d) in KMA_VALUES.items()}
    return {h: np.round(x, decimals.get(h, 1)) for h, x in cells.items()}


def _kma_flags(
    rng: np.random.Generator, cells: dict[str, F64], suspect: float, missing: float, time: I64
) -> tuple[dict[str, NDArray[np.int64]], FaultLabels]:
    """QC marks per flagged column (0 none, 1 error, 9 missing), applied to ``cells`` in place."""
    flags: dict[str, NDArray[np.int64]] = {}
    parts = []
    for header in KMA_HEADER:
        if not header.endswith(" QC플래그"):
            continue
        value = next(h for h in KMA_VALUES if h.startswith(header[: -len(" QC플래그")]))
        x = cells[value]
        draw = rng.random(x.shape)
        gone = (draw < missing) & ~np.isnan(x)
        bad = (draw >= missing) & (draw < missing + suspect) & ~np.isnan(x) & (value in _SUSPECT)
        x[gone] = np.nan
        sign = 1.0 if value == "풍속(m/s)" else rng.choice([-1.0, 1.0], int(bad.sum()))
        x[bad] += _SUSPECT.get(value, 0.0) * sign  # a wind error is a false gust
        if value == "습도(%)":
            x[bad] = np.clip(x[bad], 1, 100)
        flags[header] = np.where(gone, 9, np.where(bad, 1, 0))
        hour, station = np.nonzero(bad)
        parts.append(
            FaultLabels(
                station.astype(np.int64),
                time[hour],
                np.full(len(hour), KMA_VALUES[value][0]),
                np.full(len(hour), "source"),
                np.ones(len(hour), bool),
            )
        )
    return flags, FaultLabels.concat(parts)


def _kma_table(
    stations: Sequence[Station],
    minutes: I64,
    cells: dict[str, F64],
    flags: dict[str, NDArray[np.int64]],
) -> dict[str, pa.Array]:
    """Station-major rows of the portal layout."""
    hours, n = len(minutes), len(stations)
    station = np.repeat(np.arange(n), hours)
    hour = np.tile(np.arange(hours), n)
    integer = {h for h, (_, d) in KMA_VALUES.items() if d == 0} | {
        "중하층운량(10분위)",
        "최저운고(100m )",
    }
    cloudy = cells["중하층운량(10분위)"][hour, station]
    table: dict[str, pa.Array] = {}
    for header in KMA_HEADER:
        if header == "지점":
            table[header] = pa.array(np.array([s.stn_id for s in stations])[station])
        elif header == "지점명":
            table[header] = _take([s.name for s in stations], station)
        elif header == "일시":
            table[header] = _take(_text_times(minutes, seconds=False), hour)
        elif header in flags:
            mark = flags[header][hour, station]
            table[header] = pa.array(mark, mask=mark == 0)
        elif header == "운형(운형약어)":
            kinds = np.select([cloudy >= 5, cloudy >= 1], [1, 2], 0)
            table[header] = _take(["", "StNs", "Sc"], kinds)
        elif header in integer:
            cell = cells[header][hour, station]
            table[header] = pa.array(np.nan_to_num(cell).astype(np.int64), mask=np.isnan(cell))
        elif header in cells:
            table[header] = _value_column(cells[header][hour, station])[0]
        else:
            table[header] = pa.nulls(hours * n, pa.string())
    return table


# -- scoring QC against the labels -------------------------------------------------------------

VALUE_FLAGS: Final = int(Flag.RANGE | Flag.SPIKE | Flag.STEP | Flag.STUCK | Flag.DRIFT | Flag.GAP)
KIND_FLAGS: Final = {
    "spike": int(Flag.SPIKE),
    "stuck": int(Flag.STUCK),
    "range": int(Flag.RANGE),
    "drift": int(Flag.DRIFT),
    "gap": int(Flag.GAP),
    "source": int(Flag.SOURCE),
}


def label_rows(labels: FaultLabels, thing_keys: Sequence[str], readings: Readings) -> I64:
    """The row of ``readings`` (sorted by thing, then time) that holds each label, -1 if none.

    ``thing_keys[i]`` is the thing key of sensor *i* of the labels, e.g. ``"sdot:" + serial``.
    """
    position = {thing.key: number for number, thing in enumerate(readings.things)}
    thing = np.array([position.get(key, -1) for key in thing_keys], np.int64)[labels.sensor]
    t0 = int(min(readings.time.min(initial=0), labels.time.min(initial=0)))
    span = int(max(readings.time.max(initial=0), labels.time.max(initial=0))) - t0 + 1
    key = readings.thing_index * span + (readings.time - t0)
    wanted = thing * span + (labels.time - t0)
    row = np.minimum(np.searchsorted(key, wanted), max(len(key) - 1, 0))
    found = (thing >= 0) & (len(key) > 0) & (key[row] == wanted)
    out: I64 = np.where(found, row, -1)
    return out


@dataclass(frozen=True)
class QcScore:
    """How QC flags match the injected faults of one kind (or ``all`` kinds).

    ``recall`` counts detectable labelled values carrying any value flag (range, spike, step,
    stuck, drift, gap); ``recall_matching`` those carrying the kind's own flag. ``precision``
    is the share of values carrying the kind's flag (any value flag for ``all``) that are
    labelled faults of any kind — including drift below the detectability tolerance, which is
    a fault even if QC is not asked to find it.
    """

    kind: str
    labelled: int
    recall: float
    recall_matching: float
    flagged: int
    precision: float


def score_flags(
    labels: FaultLabels, rows: I64, flags: dict[str, NDArray[np.int32]], values: dict[str, F64]
) -> dict[str, QcScore]:
    """Recall and precision of QC ``flags`` per fault kind and overall (key ``all``).

    Parameters
    ----------
    labels
        Ground truth from a writer.
    rows
        :func:`label_rows` of the labels.
    flags
        ``check_quality`` output for the same readings.
    values
        The readings' values (only present values count).
    """
    labelled = {p: np.zeros(len(f), bool) for p, f in flags.items()}
    bits = np.zeros(len(labels), np.int64)
    for prop, f in flags.items():
        mine = (labels.prop == prop) & (rows >= 0)
        labelled[prop][rows[mine]] = True
        bits[mine] = f[rows[mine]]
    out: dict[str, QcScore] = {}
    for kind, flag in [("all", VALUE_FLAGS), *KIND_FLAGS.items()]:
        target = labels.detectable & (rows >= 0) & ((labels.kind == kind) | (kind == "all"))
        hits = [(flags[p] & flag != 0) & ~np.isnan(values[p]) for p in flags]
        flagged = sum(int(h.sum()) for h in hits)
        true = sum(int((h & labelled[p]).sum()) for h, p in zip(hits, flags, strict=True))
        if not target.any() and not flagged:
            continue
        count = max(int(target.sum()), 1)
        own = flag if kind != "all" else VALUE_FLAGS
        out[kind] = QcScore(
            kind,
            int(target.sum()),
            int((bits[target] & VALUE_FLAGS != 0).sum()) / count,
            int((bits[target] & own != 0).sum()) / count,
            flagged,
            true / max(flagged, 1),
        )
    return out


# -- the demo day --------------------------------------------------------------------------------


def generate_day(
    out_dir: str | Path,
    *,
    sensors: int | None = None,
    registry: str | Path | None = None,
    stations: str | Path | None = None,
    day: date = date(2020, 3, 15),
    seed: int = 0,
    faults: FaultPlan = DEFAULT_FAULTS,
) -> list[Path]:
    """One day of the city: S-DoT 2020 raw data (2-minute) and KMA hourly observations.

    Parameters
    ----------
    out_dir
        Created if needed; receives ``ALLDATA_yyyymmdd.csv`` and ``OBS_ASOS_TIM_yyyymmdd.csv``.
    sensors
        Number of S-DoT sensors (default: the registry's, else 1,100).
    registry
        Optional S-DoT registry (시리얼, 위도, 경도) for real serials and positions.
    stations
        Optional KMA station registry; else five Seoul stations.
    day
        The date (KST).
    seed
        Seeds weather, sensors and faults; both files share the weather.
    faults
        Fault rates of the S-DoT file.

    Returns
    -------
    list of Path
        The S-DoT file, then the KMA file.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    start = datetime(day.year, day.month, day.day)
    stamp = day.strftime("%Y%m%d")
    sites = load_sites(registry, sensors, seed)
    sdot = write_sdot_2020(
        folder / f"ALLDATA_{stamp}.csv", sites, start, 24, faults=faults, seed=seed
    )
    kma = write_kma_hourly(
        folder / f"OBS_ASOS_TIM_{stamp}.csv", load_stations(stations), start, 24, seed=seed
    )
    return [sdot.path, kma.path]


__all__ = [
    "DEFAULT_FAULTS",
    "DRIFT_TOLERANCE",
    "KIND_FLAGS",
    "KMA_HEADER",
    "KMA_VALUES",
    "KST",
    "NO_FAULTS",
    "SDOT_2020_COLUMNS",
    "SDOT_HOURLY_COLUMNS",
    "SEOUL_BBOX",
    "SEOUL_STATIONS",
    "VALUE_FLAGS",
    "CityState",
    "FaultLabels",
    "FaultPlan",
    "QcScore",
    "SensorSite",
    "Sites",
    "Station",
    "Weather",
    "WrittenFeed",
    "city_state",
    "encode_sdot_2020",
    "generate_day",
    "kst_minute",
    "label_rows",
    "load_sites",
    "load_stations",
    "score_flags",
    "simulate_weather",
    "write_kma_hourly",
    "write_sdot_2020",
    "write_sdot_hourly",
]
