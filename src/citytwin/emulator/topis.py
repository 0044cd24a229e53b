"""Seoul TOPIS monthly link speeds (서울시 차량통행속도) for the demo city, with ground truth.

One row per link and day, one column per hour, in the layout of the TOPIS monthly release::

    일자, 요일, 도로명, 링크아이디, 시점명, 종점명, 거리, 방향,
    기능유형구분, 도심/외곽구분, 권역구분, 01시 … 24시

``01시`` is the mean speed (km/h) of 00:00–01:00 KST. The three classification columns of the
releases since 2019 can be left out (``classification=False``) for the older 32-column layout.

The speeds follow what the TOPIS monthly reports show for Seoul: free flow at night by road class,
a morning (07–09) and an evening (18–20) trough on weekdays, a shallower daytime dip at weekends,
multiplicative noise and a few empty cells (no probe vehicle in the hour). On top of that:

- **recurring bottlenecks** — a few links that break down at the same weekday peak hours every
  week (returned as ground truth: :attr:`TopisMonth.bottlenecks`);
- **incidents** — one-off slowdowns of one to three hours on one day (:attr:`TopisMonth.incidents`),
  which an analysis must *not* call recurring.
"""

from __future__ import annotations

import calendar
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import shapely
from numpy.typing import NDArray

from citytwin.errors import ValidationError

logger = logging.getLogger(__name__)

F64 = NDArray[np.float64]
HOUR_COLUMNS: Final = tuple(f"{h:02d}시" for h in range(1, 25))
TOPIS_COLUMNS: Final = ("일자", "요일", "도로명", "링크아이디", "시점명", "종점명", "거리", "방향")
CLASS_COLUMNS: Final = ("기능유형구분", "도심/외곽구분", "권역구분")
WEEKDAY_NAMES: Final = ("월", "화", "수", "목", "금", "토", "일")
#: OSM class → (TOPIS 기능유형구분, night free-flow speed km/h), after the TOPIS monthly reports.
FUNCTIONAL_CLASS: Final = {
    "motorway": ("도시고속도로", 80.0),
    "trunk": ("도시고속도로", 72.0),
    "primary": ("주간선도로", 55.0),
    "secondary": ("보조간선도로", 45.0),
}
OTHER_CLASS: Final = ("기타도로", 35.0)
AM_PEAK, PM_PEAK = (7, 8), (18, 19)  # hour indices: 07–09 and 18–20
BOTTLENECK_FACTOR, INCIDENT_FACTOR = 0.35, 0.3
NOISE: Final = 0.06


@dataclass(frozen=True)
class TopisMonth:
    """A written month and its ground truth.

    Attributes
    ----------
    path
        The CSV file.
    speeds
        ``(links, days, 24)`` km/h as written (rounded to 0.01), NaN where the cell is empty.
    link_ids, dates
        The row order of ``speeds``.
    bottlenecks
        Planted recurring bottlenecks: ``link_id``, ``hours`` (tuple of hour indices, 0 = 00–01)
        on every weekday (Mon–Fri).
    incidents
        One-off slowdowns: ``link_id``, ``date``, ``hours``.
    """

    path: Path
    speeds: F64
    link_ids: tuple[str, ...]
    dates: tuple[pd.Timestamp, ...]
    bottlenecks: pd.DataFrame
    incidents: pd.DataFrame


def write_topis_month(
    out: str | Path,
    links: pd.DataFrame | Sequence[Mapping[str, Any]],
    *,
    year: int,
    month: int,
    seed: int = 0,
    encoding: str = "cp949",
    link_ids: Sequence[str] | None = None,
    bottlenecks: int = 3,
    incidents: int = 6,
    missing: float = 0.003,
    classification: bool = True,
) -> TopisMonth:
    """Write one month of TOPIS link speeds for ``links`` and return the file with its truth.

    Parameters
    ----------
    out
        A directory (the file is named like the real release, ``2024년 3월 서울시
        차량통행속도.csv``) or a ``.csv`` path.
    links
        A (Geo)DataFrame or records with ``link_id`` and optionally ``name``, ``road_class``
        (OSM), ``length_m``, ``from_node``, ``to_node`` and ``geometry`` (EPSG:5186), as in
        :attr:`citytwin.space.roads.RoadNetwork.links`.
    link_ids
        Ids to write instead of ``links.link_id``, e.g. real TOPIS service-link ids.
    encoding
        ``"cp949"`` like the real monthly files, or ``"utf-8-sig"``.
    bottlenecks, incidents
        How many recurring bottleneck links and one-off incidents to plant.
    missing
        Share of empty cells.

    Examples
    --------
    >>> import tempfile
    >>> links = [{"link_id": "1000000100", "name": "세종대로", "road_class": "primary"}]
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     month = write_topis_month(folder, links, year=2024, month=2, bottlenecks=1)
    ...     header = month.path.read_bytes().decode("cp949").splitlines()[0].split(",")
    >>> month.path.name, month.speeds.shape, len(header)
    ('2024년 2월 서울시 차량통행속도.csv', (1, 29, 24), 35)
    >>> header[:4], header[-1]
    (['일자', '요일', '도로명', '링크아이디'], '24시')
    """
    frame = _link_frame(links, link_ids)
    rng = np.random.default_rng([seed, year, month])
    dates = pd.date_range(f"{year}-{month:02d}-01", periods=calendar.monthrange(year, month)[1])
    speeds, truth, events = _simulate(frame, dates, rng, bottlenecks, incidents)
    speeds = np.round(speeds, 2)
    speeds[rng.random(speeds.shape) < missing] = np.nan
    path = _target(out, year, month)
    table = _table(frame, dates, speeds, classification)
    path.write_bytes(table.to_csv(index=False, lineterminator="\r\n").encode(encoding))
    logger.info("wrote %s: %d links × %d days", path, len(frame), len(dates))
    ids = tuple(frame["link_id"])
    return TopisMonth(path, speeds, ids, tuple(dates), truth, events)


def _link_frame(
    links: pd.DataFrame | Sequence[Mapping[str, Any]], link_ids: Sequence[str] | None
) -> pd.DataFrame:
    """Links with every column the file needs, filled with defaults where absent."""
    frame = links.copy() if isinstance(links, pd.DataFrame) else pd.DataFrame(list(links))
    if "link_id" not in frame or not len(frame):
        raise ValidationError("write_topis_month links: expected a non-empty table with link_id")
    if link_ids is not None:
        if len(link_ids) != len(frame):
            raise ValidationError(
                f"write_topis_month link_ids: {len(link_ids)} ids for {len(frame)} links"
            )
        frame["link_id"] = list(link_ids)
    frame = frame.reset_index(drop=True)
    count = len(frame)
    defaults: dict[str, object] = {"name": "", "road_class": "secondary", "length_m": 400.0}
    for column, value in {**defaults, "from_node": "", "to_node": ""}.items():
        if column not in frame:
            frame[column] = pd.Series([value] * count, dtype=object)
    frame["link_id"] = frame["link_id"].astype(str)
    return frame


def _simulate(
    frame: pd.DataFrame,
    dates: pd.DatetimeIndex,
    rng: np.random.Generator,
    bottlenecks: int,
    incidents: int,
) -> tuple[F64, pd.DataFrame, pd.DataFrame]:
    """``(links, days, 24)`` speeds and the planted bottlenecks and incidents."""
    free = np.asarray([_functional(c)[1] for c in frame["road_class"]], float)
    free *= rng.uniform(0.92, 1.08, len(frame))
    plateau = rng.uniform(0.56, 0.64, len(frame))  # daytime speed / free flow
    peak = plateau - rng.uniform(0.07, 0.12, len(frame))  # weekday rush hours
    weekend = np.asarray(dates.day_of_week >= 5)
    profile = _profile(plateau, peak, weekend)  # (links, days, 24)
    factor = np.ones_like(profile)
    chosen = rng.choice(len(frame), size=min(bottlenecks + incidents, len(frame)), replace=False)
    truth = _plant_bottlenecks(factor, chosen[:bottlenecks], weekend, frame, rng)
    events = _plant_incidents(factor, chosen[bottlenecks:], dates, frame, rng)
    noise = 1 + NOISE * rng.standard_normal(profile.shape)
    speeds = free[:, None, None] * profile * factor * noise
    return np.clip(speeds, 3.0, free[:, None, None] * 1.3), truth, events


def _functional(road_class: object) -> tuple[str, float]:
    return FUNCTIONAL_CLASS.get(str(road_class), OTHER_CLASS)


def _profile(plateau: F64, peak: F64, weekend: NDArray[np.bool_]) -> F64:
    """Speed / free flow by hour: 1 at night, ``plateau`` by day, ``peak`` at weekday rush hours.

    Seoul's arterials run at 20–30 km/h by day and recover to 45–55 km/h at night (TOPIS
    monthly reports); weekends have no rush hours and a shallower daytime dip.
    """
    hour = np.arange(24)
    day = np.clip((hour - 5) / 2, 0, 1) * np.clip((23 - hour) / 2, 0, 1)  # 06–22 ramps
    rush = np.isin(hour, AM_PEAK + PM_PEAK)
    weekday = 1 - (1 - plateau[:, None]) * day - (plateau - peak)[:, None] * rush
    weekend_day = 1 - (1 - plateau[:, None] - 0.08) * day
    shape = np.where(weekend[None, :, None], weekend_day[:, None, :], weekday[:, None, :])
    return np.asarray(shape, float)


def _plant_bottlenecks(
    factor: F64,
    rows: NDArray[np.int64],
    weekend: NDArray[np.bool_],
    frame: pd.DataFrame,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Break down each chosen link at the same weekday peak hours, every week."""
    records = []
    for row in rows.tolist():
        peak = AM_PEAK if rng.random() < 0.5 else PM_PEAK
        hours = tuple(range(peak[0] - int(rng.integers(0, 2)), peak[1] + 1))
        factor[row][np.ix_(np.flatnonzero(~weekend), np.asarray(hours))] = BOTTLENECK_FACTOR
        records.append({"link_id": frame.at[row, "link_id"], "hours": hours})
    return pd.DataFrame(records, columns=["link_id", "hours"])


def _plant_incidents(
    factor: F64,
    rows: NDArray[np.int64],
    dates: pd.DatetimeIndex,
    frame: pd.DataFrame,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """One slowdown of one to three hours on one random day per chosen link."""
    records = []
    for row in rows.tolist():
        day, start = int(rng.integers(len(dates))), int(rng.integers(6, 21))
        hours = tuple(range(start, start + int(rng.integers(1, 4))))
        factor[row, day, list(hours)] = INCIDENT_FACTOR
        records.append({"link_id": frame.at[row, "link_id"], "date": dates[day], "hours": hours})
    return pd.DataFrame(records, columns=["link_id", "date", "hours"])


def _target(out: str | Path, year: int, month: int) -> Path:
    path = Path(out)
    if path.suffix.lower() != ".csv":
        path.mkdir(parents=True, exist_ok=True)
        path = path / f"{year}년 {month}월 서울시 차량통행속도.csv"
    return path


def _table(
    frame: pd.DataFrame, dates: pd.DatetimeIndex, speeds: F64, classes: bool
) -> pd.DataFrame:
    """Rows ordered by day then link, as the monthly release is."""
    n_links, n_days = len(frame), len(dates)
    link = np.tile(np.arange(n_links), n_days)
    day = np.repeat(np.arange(n_days), n_links)
    info = _descriptions(frame)
    columns: dict[str, Any] = {
        "일자": np.asarray(dates.strftime("%Y%m%d"))[day],
        "요일": np.asarray(WEEKDAY_NAMES)[dates.day_of_week][day],
        **{c: info[c][link] for c in TOPIS_COLUMNS[2:]},
    }
    if classes:
        columns.update({c: info[c][link] for c in CLASS_COLUMNS})
    cells = speeds[link, day, :]
    text = np.char.mod("%.2f", np.nan_to_num(cells)).astype(object)
    text[np.isnan(cells)] = ""
    columns.update({name: text[:, h] for h, name in enumerate(HOUR_COLUMNS)})
    return pd.DataFrame(columns)


def _descriptions(frame: pd.DataFrame) -> dict[str, NDArray[Any]]:
    """Per-link text columns: names, distance, direction (유입/유출) and the TOPIS classes."""
    inbound, core, sector = _geography(frame)
    regions = np.asarray(["동북권", "서북권", "서남권", "동남권"])
    return {
        "도로명": frame["name"].astype(str).to_numpy(),
        "링크아이디": frame["link_id"].to_numpy(),
        "시점명": frame["from_node"].astype(str).to_numpy(),
        "종점명": frame["to_node"].astype(str).to_numpy(),
        "거리": np.round(frame["length_m"].to_numpy(float)).astype(np.int64),
        "방향": np.where(inbound, "유입", "유출"),
        "기능유형구분": np.asarray([_functional(c)[0] for c in frame["road_class"]]),
        "도심/외곽구분": np.where(core, "도심", "외곽"),
        "권역구분": np.where(core, "도심권", regions[sector]),
    }


def _geography(frame: pd.DataFrame) -> tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[Any]]:
    """Whether each link heads towards the centre, lies in the core, and its quadrant."""
    count = len(frame)
    if "geometry" not in frame:
        return np.ones(count, bool), np.zeros(count, bool), np.zeros(count, np.int64)
    geometry = np.asarray(frame["geometry"], dtype=object)
    start = shapely.get_coordinates(shapely.get_point(geometry, 0))
    end = shapely.get_coordinates(shapely.get_point(geometry, -1))
    middle = (start + end) / 2
    centre = middle.mean(axis=0)
    inbound = np.hypot(*(end - centre).T) < np.hypot(*(start - centre).T)
    radius = np.hypot(*(middle - centre).T)
    core = radius < np.quantile(radius, 0.15)
    east, north = middle[:, 0] >= centre[0], middle[:, 1] >= centre[1]
    sector = np.select([north & east, north & ~east, ~north & ~east], [0, 1, 2], 3)
    return inbound, core, sector


__all__ = ["HOUR_COLUMNS", "TOPIS_COLUMNS", "TopisMonth", "write_topis_month"]
