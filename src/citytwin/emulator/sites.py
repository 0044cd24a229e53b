"""Where the sensors and stations are: S-DoT sites and KMA stations over Seoul.

Sites come from a registry in the layout of S-DoT's ``sensor_longitude_latitude.csv`` or are
synthesised over Seoul; stations from KMA's station table, else five built-in Seoul stations.
Everything downstream indexes sensors by their position in :class:`Sites`, which is also the
``sensor`` of the fault labels. :data:`CENTRE` (City Hall) is where the city-wide weather and the
sun are computed, and the origin of each site's position in the city's gradients.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from citytwin.emulator.processes import F64, random_stream

SEOUL_BBOX: Final = (126.76, 37.43, 127.18, 37.70)  # lon min, lat min, lon max, lat max
CENTRE: Final = (126.978, 37.566)  # Seoul City Hall


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
    rng = random_stream(seed, 0)
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
