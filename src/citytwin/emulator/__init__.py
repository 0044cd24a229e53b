"""Emulated city feeds: realistic raw files with ground-truth faults (see :mod:`.feeds`).

>>> from datetime import datetime
>>> sites = load_sites(n=3, seed=1)
>>> len(sites), sites[0].serial.startswith("V02Q19")
(3, True)
"""

from __future__ import annotations

from citytwin.emulator.feeds import (
    DEFAULT_FAULTS,
    DRIFT_TOLERANCE,
    NO_FAULTS,
    FaultLabels,
    FaultPlan,
    QcScore,
    SensorSite,
    Sites,
    Station,
    WrittenFeed,
    encode_sdot_2020,
    generate_day,
    label_rows,
    load_sites,
    load_stations,
    score_flags,
    write_kma_hourly,
    write_sdot_2020,
    write_sdot_hourly,
)

__all__ = [
    "DEFAULT_FAULTS",
    "DRIFT_TOLERANCE",
    "NO_FAULTS",
    "FaultLabels",
    "FaultPlan",
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
