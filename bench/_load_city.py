"""The load test's city: S-DoT-like devices that each publish 17 values every 2 minutes.

Seoul's S-DoT network has about 1,100 sensors; the load test runs ten times as many. Each
device sends one MQTT message per round in the format ``citytwin ingest mqtt`` reads
(:mod:`citytwin.mqtt.messages`): the five physical values of the live emulator
(:class:`~citytwin.emulator.live.LiveCity`: PM2.5, PM10, temperature, humidity, noise) plus the
other twelve of the S-DoT 2020 raw layout (wind, gust, illuminance, UV, vibration), drawn from
plausible ranges, with the device's position, name and district as the emulator sends them.

>>> city = make_city(3, seed=1)
>>> topic, payload = round_messages(city, SIM_EPOCH, round_number=0)[0]
>>> topic, len(json.loads(payload)["values"])
('devices/V02L0000000', 17)
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Final

import numpy as np
from numpy.typing import NDArray

from citytwin.emulator.live import LiveCity, LiveSensor
from citytwin.model.sensing import stable_id
from citytwin.mqtt.messages import FEED

SEOUL_SENSORS: Final = 1_100  # S-DoT sensors in Seoul
SENSORS_10X: Final = 11_000
PERIOD: Final = timedelta(minutes=2)  # an S-DoT device reports every 2 minutes
TOPIC_PREFIX: Final = "devices"
SIM_EPOCH: Final = datetime(2026, 3, 15, tzinfo=UTC)
PHYSICAL: Final = ("pm25", "pm10", "air_temperature", "relative_humidity", "noise")
# the other twelve of the first 17 S-DoT 2020 columns: key, low, high of a uniform draw
EXTRA: Final = (
    ("wind_direction", 0.0, 359.0),
    ("wind_speed", 0.0, 8.0),
    ("gust_direction", 0.0, 359.0),
    ("gust_speed", 0.0, 14.0),
    ("illuminance", 0.0, 60_000.0),
    ("uv_index", 0.0, 9.0),
    ("vibration_x", 0.0, 0.5),
    ("vibration_y", 0.0, 0.5),
    ("vibration_z", 0.0, 0.5),
    ("vibration_x_max", 0.5, 2.0),
    ("vibration_y_max", 0.5, 2.0),
    ("vibration_z_max", 0.5, 2.0),
)
PROPERTIES: Final = (*PHYSICAL, *(key for key, _, _ in EXTRA))
# Seoul's extent (WGS84) and a 5 × 5 grid of made-up districts over it
WEST, EAST, SOUTH, NORTH = 126.80, 127.18, 37.43, 37.70
GRID = 5


def observations_per_round(sensors: int) -> int:
    """Observations one round of ``sensors`` devices carries (17 each)."""
    return sensors * len(PROPERTIES)


def rate_10x() -> float:
    """Observations/s at 10× Seoul's S-DoT rate in real time: 187,000 per 2 minutes.

    >>> round(rate_10x())
    1558
    """
    return observations_per_round(SENSORS_10X) / PERIOD.total_seconds()


def device_id(index: int) -> str:
    """The id of device ``index`` (S-DoT serials look like ``V02Q1940612``)."""
    return f"V02L{index:07d}"


def make_city(sensors: int, *, seed: int = 0) -> LiveCity:
    """``sensors`` live-emulator devices spread uniformly over Seoul, in a grid of districts."""
    rng = np.random.default_rng(seed)
    lon = rng.uniform(WEST, EAST, sensors)
    lat = rng.uniform(SOUTH, NORTH, sensors)
    column = np.minimum(((lon - WEST) / (EAST - WEST) * GRID).astype(int), GRID - 1)
    row = np.minimum(((lat - SOUTH) / (NORTH - SOUTH) * GRID).astype(int), GRID - 1)
    return LiveCity(
        [
            LiveSensor(
                device_id(i),
                round(float(lon[i]), 6),
                round(float(lat[i]), 6),
                gu_code=f"990{column[i]}0",
                dong_code=f"990{column[i]}0{row[i]:02d}",
                dong=f"load-dong-{column[i]}{row[i]}",
                gu=f"load-gu-{column[i]}",
            )
            for i in range(sensors)
        ],
        seed=seed,
        weather=True,
    )


def round_time(round_number: int, *, start: datetime = SIM_EPOCH) -> datetime:
    """The phenomenon time of round ``round_number``: ``start`` + 2 minutes per round."""
    return start + round_number * PERIOD


def extra_values(sensors: int, round_number: int, *, seed: int = 0) -> NDArray[np.float64]:
    """The twelve non-physical values of every device in one round (devices × 12)."""
    rng = np.random.default_rng([seed, round_number])
    low = np.array([low for _, low, _ in EXTRA])
    high = np.array([high for _, _, high in EXTRA])
    values: NDArray[np.float64] = np.round(rng.uniform(low, high, (sensors, len(EXTRA))), 2)
    return values


def round_messages(
    city: LiveCity, start: datetime, *, round_number: int, seed: int = 0
) -> list[tuple[str, bytes]]:
    """(topic, payload) of every device's message in round ``round_number``, in device order."""
    messages = city.step(round_time(round_number, start=start))
    extra = extra_values(len(messages), round_number, seed=seed).tolist()
    keys = [key for key, _, _ in EXTRA]
    out = []
    for message, row in zip(messages, extra, strict=True):
        message["values"].update(zip(keys, row, strict=True))
        out.append((f"{TOPIC_PREFIX}/{message['thing']}", json.dumps(message).encode()))
    return out


def datastream_id(device: str, key: str) -> int:
    """The ``@iot.id`` ``citytwin ingest mqtt`` gives the datastream of ``key`` on ``device``
    (a stable hash of its natural key ``mqtt:<device>/<key>``)."""
    return stable_id("Datastream", f"{FEED}:{device}/{key}")
