"""Emulated city feeds: realistic raw files with ground-truth faults.

:mod:`.feeds` maps the modules (sites, weather, sensors, faults, writers, scoring) and holds
:func:`generate_day`; the names below are imported from where they are defined.

>>> from datetime import datetime
>>> sites = load_sites(n=3, seed=1)
>>> len(sites), sites[0].serial.startswith("V02Q19")
(3, True)
"""

from __future__ import annotations

from citytwin.emulator.faults import (
    DEFAULT_FAULTS,
    DRIFT_TOLERANCE,
    NO_FAULTS,
    FaultLabels,
    FaultPlan,
)
from citytwin.emulator.feeds import generate_day
from citytwin.emulator.kma import write_kma_hourly
from citytwin.emulator.live import LiveCity, LiveSensor
from citytwin.emulator.live_mqtt import LiveCityRunner
from citytwin.emulator.scoring import QcScore, label_rows, score_flags
from citytwin.emulator.sdot import WrittenFeed, encode_sdot_2020, write_sdot_2020, write_sdot_hourly
from citytwin.emulator.sites import SensorSite, Sites, Station, load_sites, load_stations

__all__ = [
    "DEFAULT_FAULTS",
    "DRIFT_TOLERANCE",
    "NO_FAULTS",
    "FaultLabels",
    "FaultPlan",
    "LiveCity",
    "LiveCityRunner",
    "LiveSensor",
    "QcScore",
    "SensorSite",
    "Sites",
    "Station",
    "WrittenFeed",
    "encode_sdot_2020",
    "generate_day",
    "label_rows",
    "load_sites",
    "load_stations",
    "score_flags",
    "write_kma_hourly",
    "write_sdot_2020",
    "write_sdot_hourly",
]
