"""Realistic S-DoT and KMA observation files with ground-truth fault labels.

Raw S-DoT (Smart Seoul Data of Things) 2-minute files and KMA hourly observation CSVs are not
available offline, so the emulator writes stand-ins in the real layouts, for tests, the demo and
benchmarks. Everything is pure numpy, seeded and vectorised: a day of 1,100 sensors (≈16 M values)
is written in a few seconds.

This module is the public entry: :func:`generate_day` (the demo's day) and the emulator's public
names, re-exported. The work is done by modules that read in the order the data flows, each
importing only from those before it in this list:

- :mod:`.processes`: the KST minute clock, seeded random streams, AR(1) and diurnal profiles;
- :mod:`.sites`: S-DoT sites and KMA stations;
- :mod:`.weather`: city weather on hourly knots, and the city's state at any minute;
- :mod:`.sensors`: per-site parameters and the physical fields each sensor measures;
- :mod:`.faults`: fault rates, fault events and outages, and the ground-truth labels;
- :mod:`.scenario`: one file's world drawn up front, simulated and faulted a chunk at a time;
- :mod:`.sdot`, then :mod:`.kma`: the writers (KMA reuses the S-DoT module's CSV helpers);
- :mod:`.scoring`: QC flags scored against the labels.

Not modelled: fog/saturation plateaus of humidity (a real sensor at 100 % for hours is not
stuck, but it looks it), single-reading pollution plumes, and snow (KMA ``적설`` stays empty).
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from citytwin.emulator.faults import (
    DEFAULT_FAULTS,
    DRIFT_TOLERANCE,
    NO_FAULTS,
    FaultLabels,
    FaultPlan,
)
from citytwin.emulator.kma import KMA_HEADER, KMA_VALUES, write_kma_hourly
from citytwin.emulator.processes import KST, kst_minute
from citytwin.emulator.scoring import KIND_FLAGS, VALUE_FLAGS, QcScore, label_rows, score_flags
from citytwin.emulator.sdot import (
    SDOT_2020_COLUMNS,
    SDOT_HOURLY_COLUMNS,
    WrittenFeed,
    encode_sdot_2020,
    write_sdot_2020,
    write_sdot_hourly,
)
from citytwin.emulator.sites import (
    SEOUL_BBOX,
    SEOUL_STATIONS,
    SensorSite,
    Sites,
    Station,
    load_sites,
    load_stations,
)
from citytwin.emulator.weather import CityState, Weather, city_state, simulate_weather


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
