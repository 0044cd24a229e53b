"""The live city: S-DoT-like readings at any moment, pollution episodes and actuators that act.

:class:`LiveCity` emits one device message per sensor (the format of
:mod:`citytwin.mqtt.messages`, with the sensor's gu and dong in ``properties`` so the twin binds
it without ``citytwin bind``) and, with a traffic model, one ``link_speed`` message per road
link. Every reading is a pure function of the seed, the moment, the episodes and the actuator
effects applied before that moment: the caller passes emulated time in and decides how fast it
runs; nothing sleeps.

The physics is deliberately simple and documented where it is made:

- PM2.5 = 18 µg/m³ × season × stagnation × (0.4 + 0.6 · traffic(h) / mixing(h)) × site factor ×
  measurement noise — emissions follow the Seoul traffic profile and are diluted in a boundary
  layer that is shallow at night and deepest in the early afternoon (:mod:`.processes`), so PM
  peaks in the morning rush, dips at midday and rises again in the evening. PM10 is PM2.5 times
  a site ratio of 1.4–2.0 (Seoul's PM2.5/PM10 is ~0.5–0.7).
- Temperature follows Seoul's normals (12.8 °C mean, ±13.9 °C annual, coldest about 20 January),
  a ±4 °C day (minimum 05:30, maximum 14:30, :func:`~citytwin.emulator.processes.diurnal`) and a
  slow weather process (±2 °C); humidity comes from a dew-point depression by the Magnus formula.
- Noise (dB) is a site level plus 10·log10 of the traffic profile.

The slow weather processes are sums of four sinusoids with periods of 0.7–6 days and random
phases (a smooth stationary process that can be evaluated at any moment); measurement noise is
drawn from :func:`~citytwin.emulator.processes.random_stream` keyed by the minute.
Actuator effects are in :mod:`.effects`; :mod:`.live_mqtt` runs a city over MQTT.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Self

import numpy as np

from citytwin.emulator.effects import (
    ActuatorState,
    EffectRefused,
    LiveTraffic,
    SignMessage,
    act,
    grid_traffic,
)
from citytwin.emulator.processes import F64, KST, diurnal, mixing, random_stream, traffic
from citytwin.errors import ValidationError

logger = logging.getLogger(__name__)

PM25_BASE: Final = 18.0  # µg/m³, a Seoul annual mean of the 2020s
MAGNUS_A, MAGNUS_B = 17.625, 243.04  # Magnus formula (Alduchov & Eskridge 1996)
_EPOCH: Final = datetime(1970, 1, 1)
_SITE, _NOISE, _SLOW = 10, 20, 30  # random stream purposes


@dataclass(frozen=True)
class LiveSensor:
    """One emulated sensor: its id, WGS84 position and the district it stands in."""

    id: str
    lon: float
    lat: float
    gu_code: str
    dong_code: str
    dong: str
    gu: str = ""


@dataclass(frozen=True)
class Episode:
    """``add`` µg/m³ of PM2.5 in one dong from ``start`` for ``duration``."""

    dong_code: str
    start: datetime
    duration: timedelta
    add: float


def pm_shape(hour: F64) -> F64:
    """The diurnal shape of PM: ``0.4 + 0.6 · traffic / mixing`` (emissions over dilution).

    >>> pm_shape(np.array([4.0, 8.0, 14.0])).round(2).tolist()
    [0.78, 1.65, 0.96]
    """
    out: F64 = 0.4 + 0.6 * traffic(hour) / mixing(hour)
    return out


def minute_of(moment: datetime) -> float:
    """Minutes since 1970-01-01 00:00 on the KST wall clock; ``moment`` must carry a time zone."""
    if moment.tzinfo is None:
        raise ValidationError(
            f"time {moment.isoformat()!r} has no time zone; expected an aware datetime"
        )
    return (moment.astimezone(KST).replace(tzinfo=None) - _EPOCH) / timedelta(minutes=1)


class LiveCity:
    """An emulated city of sensors (and optionally a road network) that actuators act on.

    Parameters
    ----------
    sensors
        The sensors, in the order of every reading.
    seed
        Chooses site factors, weather and noise: same seed, same readings.
    traffic
        A :class:`~citytwin.emulator.effects.LiveTraffic` to report ``link_speed`` from, with
        ``link_lonlat`` the (lon, lat) arrays of its nodes if known.
    weather
        False holds the slow weather processes at zero (a steady synoptic situation), leaving
        the seasonal and diurnal cycles, site differences and measurement noise.

    Examples
    --------
    >>> from datetime import datetime
    >>> from citytwin.emulator.processes import KST
    >>> city = LiveCity([LiveSensor("s1", 127.0, 37.5, "99010", "9901001", "가온동")], seed=1)
    >>> city.raise_pm("9901001", start=datetime(2026, 3, 1, 8, tzinfo=KST),
    ...               duration=timedelta(hours=1), add=50.0)
    >>> at = datetime(2026, 3, 1, 8, 30, tzinfo=KST)
    >>> message = city.step(at)[0]
    >>> message["thing"], message["values"]["pm25"] > 50
    ('s1', True)
    >>> city.apply({"idempotency_key": "k1", "command": "spray", "parameters": {}},
    ...            at=at, actuator="spray-truck:9901001")[0]
    True
    """

    def __init__(
        self,
        sensors: Sequence[LiveSensor],
        *,
        seed: int = 0,
        traffic: LiveTraffic | None = None,
        link_lonlat: tuple[F64, F64] | None = None,
        weather: bool = True,
    ) -> None:
        ids = [s.id for s in sensors]
        if len(set(ids)) != len(ids):
            twice = sorted({i for i in ids if ids.count(i) > 1})
            raise ValidationError(f"sensors: id(s) {', '.join(twice[:5])} given twice")
        self.sensors, self.seed = tuple(sensors), seed
        self.lon = np.array([s.lon for s in sensors], np.float64)
        self.lat = np.array([s.lat for s in sensors], np.float64)
        self.dong_codes = np.array([s.dong_code for s in sensors], dtype=str)
        self.state = ActuatorState(tuple(ids), self.dong_codes, traffic)
        self.link_lonlat, self.weather = link_lonlat, weather
        self.episodes: list[Episode] = []
        self._done: dict[str, tuple[bool, str]] = {}
        rng = random_stream(seed, _SITE)
        n = len(sensors)
        self._pm_factor = np.exp(rng.normal(0.0, 0.2, n))
        self._pm10_ratio = rng.uniform(1.4, 2.0, n)
        self._t_offset = rng.normal(0.0, 0.5, n)
        self._noise_base = rng.uniform(50.0, 62.0, n)

    @classmethod
    def demo(
        cls, *, seed: int = 0, sensors: int = 300, traffic: bool = True, weather: bool = True
    ) -> Self:
        """The live city on the demo city of ``seed`` (its districts and sensor sites).

        Sensors take their gu and dong from the demo districts; with ``traffic`` a 4 × 4 grid of
        streets over the sensors' extent gives ``link_speed`` readings.
        """
        from citytwin.space.binding import bind_to_districts
        from citytwin.space.democity import build_demo_city

        city = build_demo_city(seed=seed, buildings=max(200, 2 * sensors), sensors=sensors)
        sites = city.sensor_sites
        bound = bind_to_districts(sites.lon, sites.lat, city.districts, crs=city.crs)
        inside = np.flatnonzero(~bound.outside)
        live = [
            LiveSensor(
                sites.serials[i],
                float(sites.lon[i]),
                float(sites.lat[i]),
                str(bound.gu_code[i]),
                str(bound.dong_code[i]),
                str(bound.dong_name[i]),
                str(bound.gu_name[i] or ""),
            )
            for i in inside
        ]
        if not traffic:
            return cls(live, seed=seed, weather=weather)
        west, south = float(sites.lon.min()), float(sites.lat.min())
        east, north = float(sites.lon.max()), float(sites.lat.max())
        model, lon, lat = grid_traffic((west, south, east, north), seed=seed)
        return cls(live, seed=seed, traffic=model, link_lonlat=(lon, lat), weather=weather)

    # -- episodes and actuators --------------------------------------------------------------

    def raise_pm(
        self, dong_code: str, *, start: datetime, duration: timedelta, add: float = 60.0
    ) -> None:
        """Add ``add`` µg/m³ of PM2.5 (and ``add`` × the site's PM10 ratio of PM10) in one dong.

        A local pollution episode (a fire, construction dust, a stagnant street canyon).
        """
        minute_of(start)
        if dong_code not in self.dong_codes:
            known = ", ".join(sorted(set(self.dong_codes.tolist()))[:10])
            raise ValidationError(f"raise_pm: no sensor in dong {dong_code!r}; e.g. {known}")
        if not (math.isfinite(add) and add > 0 and duration > timedelta(0)):
            raise ValidationError(f"raise_pm: add={add}, duration={duration}; expected both > 0")
        self.episodes.append(Episode(dong_code, start, duration, add))

    def apply(
        self, task_payload: Mapping[str, Any], *, at: datetime, actuator: str | None = None
    ) -> tuple[bool, str]:
        """Carry out one task (a :meth:`~citytwin.control.tasks.Task.payload`) at ``at``.

        ``actuator`` is the actuator id (``spray-truck:<dong>``, ``shelter:<sensor>``,
        ``vms:<id>``, ``signal:<node>``); without it the payload's ``actuator_id`` is used. The
        same ``idempotency_key`` twice acts once and answers the same. Returns ``(ok, detail)``:
        an unknown command or actuator or bad parameters give ``(False, reason)``. ``expires_at``
        is not checked: emulated time runs compressed and need not match the task book's clock,
        which handles expiry itself.
        """
        key = str(task_payload.get("idempotency_key") or task_payload.get("task_id") or "")
        if key and key in self._done:
            return self._done[key]
        answer = self._act(task_payload, at, actuator or task_payload.get("actuator_id"))
        logger.info("live city: task %s on %s -> %s", key, actuator, answer)
        if key:
            self._done[key] = answer
        return answer

    def _act(self, payload: Mapping[str, Any], at: datetime, actuator: object) -> tuple[bool, str]:
        minute = minute_of(at)
        if not isinstance(actuator, str) or not actuator:
            return False, "no actuator id; expected e.g. 'spray-truck:<dong code>'"
        try:
            detail = act(
                self.state, actuator, payload.get("command"), payload.get("parameters") or {},
                minute=minute, at=at,
            )  # fmt: skip
        except EffectRefused as exc:
            return False, str(exc)
        return True, detail

    @property
    def dongs(self) -> dict[str, str]:
        """The dong that have sensors: code → name, in code order."""
        return dict(sorted({s.dong_code: s.dong for s in self.sensors}.items()))

    @property
    def signs(self) -> dict[str, str]:
        """What each variable message sign shows now (sign id → text)."""
        return {sign: shown.text for sign, shown in self.state.signs.items()}

    @property
    def sign_history(self) -> dict[str, SignMessage]:
        """Each sign's text and since when it shows it."""
        return dict(self.state.signs)

    # -- readings ----------------------------------------------------------------------------

    def fields(self, now: datetime) -> dict[str, F64]:
        """Every sensor's values at ``now`` (vocabulary key → array in sensor order)."""
        minute = minute_of(now)
        hour = np.array([(minute % 1440) / 60.0])
        doy = (minute / 1440.0) % 365.2425
        noise = random_stream(self.seed, _NOISE, int(minute // 1))
        n = len(self.sensors)
        season = 1.0 + 0.35 * math.cos(2 * math.pi * (doy - 40) / 365.2425)  # spring dust
        stagnation = math.exp(0.35 * self._slow(1, minute))
        pm25 = PM25_BASE * season * stagnation * float(pm_shape(hour)[0]) * self._pm_factor
        pm25 = pm25 * np.exp(noise.normal(0.0, 0.06, n)) + self._episode_pm(now)
        pm10 = pm25 * self._pm10_ratio
        cut25, cut10 = self.state.pm_factors(minute)
        city_t = (
            12.8 - 13.9 * math.cos(2 * math.pi * (doy - 20) / 365.2425)
            + 4.0 * float(diurnal(hour)[0]) + 2.0 * self._slow(2, minute)
        )  # fmt: skip
        temperature = city_t + self._t_offset + noise.normal(0.0, 0.2, n)
        spread = 5.0 + 3.0 * (1.0 + float(diurnal(hour)[0])) + 2.0 * self._slow(3, minute)
        dew = city_t - max(spread, 0.5)
        rh = 100 * np.exp(
            MAGNUS_A * dew / (MAGNUS_B + dew) - MAGNUS_A * temperature / (MAGNUS_B + temperature)
        )
        level = self._noise_base + 10 * math.log10(float(traffic(hour)[0]))
        return {
            "pm25": np.maximum(pm25 * cut25, 0.0),
            "pm10": np.maximum(pm10 * cut10, 0.0),
            "air_temperature": temperature,
            "relative_humidity": np.clip(rh + noise.normal(0.0, 1.0, n), 5.0, 100.0),
            "noise": level + noise.normal(0.0, 1.5, n),
        }

    def _slow(self, purpose: int, minute: float) -> float:
        """A smooth weather anomaly of unit-order spread: four sinusoids of 0.7–6 days."""
        if not self.weather:
            return 0.0
        rng = random_stream(self.seed, _SLOW, purpose)
        periods = rng.uniform(0.7, 6.0, 4) * 1440.0
        phases = rng.uniform(0.0, 2 * math.pi, 4)
        return float(np.sum(np.sin(2 * math.pi * minute / periods + phases)) / math.sqrt(2.0))

    def _episode_pm(self, now: datetime) -> F64:
        add = np.zeros(len(self.sensors))
        for episode in self.episodes:
            if episode.start <= now < episode.start + episode.duration:
                add[self.dong_codes == episode.dong_code] += episode.add
        return add

    def step(self, now: datetime) -> list[dict[str, Any]]:
        """One device message per sensor at ``now`` (see :mod:`citytwin.mqtt.messages`)."""
        values = self.fields(now)
        rounded = {key: np.round(column, 1).tolist() for key, column in values.items()}
        stamp = now.isoformat()
        return [
            {
                "thing": sensor.id,
                "phenomenonTime": stamp,
                "values": {key: column[i] for key, column in rounded.items()},
                "lon": sensor.lon,
                "lat": sensor.lat,
                "name": f"{sensor.dong} live {sensor.id}",
                "properties": {
                    "gu_code": sensor.gu_code,
                    "gu": sensor.gu,
                    "dong_code": sensor.dong_code,
                    "dong": sensor.dong,
                    "source": "citytwin live emulator",
                },
            }
            for i, sensor in enumerate(self.sensors)
        ]

    def link_speeds(self, now: datetime) -> list[dict[str, Any]]:
        """One ``link_speed`` message (km/h) per road link at ``now``; none without traffic."""
        model = self.state.traffic
        if model is None:
            return []
        minute = minute_of(now)
        scale = float(traffic(np.array([(minute % 1440) / 60.0]))[0])
        speeds = np.round(model.speeds(minute, scale), 2).tolist()
        tail, head = model.network.tail, model.network.head
        stamp, messages = now.isoformat(), []
        for k, name in enumerate(model.link_names()):
            message: dict[str, Any] = {
                "thing": f"link-{name}", "phenomenonTime": stamp,
                "values": {"link_speed": speeds[k]}, "name": f"live city road link {name}",
                "properties": {"road_link": name, "source": "citytwin live emulator"},
            }  # fmt: skip
            if self.link_lonlat is not None:
                lon, lat = self.link_lonlat
                message["lon"] = float((lon[tail[k]] + lon[head[k]]) / 2)
                message["lat"] = float((lat[tail[k]] + lat[head[k]]) / 2)
            messages.append(message)
        return messages
