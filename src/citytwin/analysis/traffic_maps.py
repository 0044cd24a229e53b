"""Pictures and the web map layer of TOPIS congestion: hour × weekday heatmap, link map, GeoJSON.

All take a :func:`citytwin.analysis.traffic.congestion_index` result. The heatmap shows
:func:`hour_weekday_matrix` (network-wide, length-weighted, or one link); the map colours the
links by the Seoul TOPIS urban-road level of their mean speed (원활 > 30, 서행 15–30, 정체 < 15
km/h) and :func:`congestion_layer` gives the same layer as GeoJSON for the web. Pictures are a
matplotlib ``Figure`` + Agg canvas with English labels (CJK fonts may be missing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from numpy.typing import NDArray

from citytwin.analysis.traffic import WEEKDAYS, _require, speed_level
from citytwin.errors import ValidationError

KOREAN_WEEKDAYS: Final = ("월", "화", "수", "목", "금", "토", "일")
LEVEL_COLOURS: Final = {
    "congested": "#d7301f",
    "slow": "#fdae61",
    "smooth": "#1a9850",
    None: "#bdbdbd",
}


def hour_weekday_matrix(index: pd.DataFrame, *, link: str | None = None) -> NDArray[np.float64]:
    """``(7, 24)`` congestion index by weekday (row 0 = Monday) and hour, NaN without data.

    With ``link=None`` each cell is the network-wide mean weighted by link length (a link
    without a length counts as the median one), i.e. the share of free-flow speed lost per km.

    >>> index = pd.DataFrame({"link_id": ["a", "b"], "weekday": [0, 0], "hour": [8, 8],
    ...                       "congestion_index": [0.2, 0.8], "distance_m": [100.0, 300.0]})
    >>> matrix = hour_weekday_matrix(index)
    >>> round(float(matrix[0, 8]), 3), bool(np.isnan(matrix[6, 0]))
    (0.65, True)
    """
    _require(index, ("link_id", "weekday", "hour", "congestion_index"), "hour_weekday_matrix index")
    if link is not None:
        index = index[index["link_id"].astype(str) == str(link)]
        if index.empty:
            raise ValidationError(f"hour_weekday_matrix link={link!r}: not in the index")
    length = pd.to_numeric(index.get("distance_m", pd.Series(1.0, index=index.index)))
    weight = length.fillna(length.median()).fillna(1.0).to_numpy(float)
    value = index["congestion_index"].to_numpy(float)
    ok = ~np.isnan(value)
    cell = (index["weekday"].to_numpy(np.int64)[ok], index["hour"].to_numpy(np.int64)[ok])
    total, mass = np.zeros((7, 24)), np.zeros((7, 24))
    np.add.at(total, cell, value[ok] * weight[ok])
    np.add.at(mass, cell, weight[ok])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mass > 0, total / mass, np.nan)


def render_hour_weekday_heatmap(
    path: str | Path, index: pd.DataFrame, *, link: str | None = None, title: str | None = None
) -> Path:
    """Write a 1000 × 400 px PNG of :func:`hour_weekday_matrix` with a colour bar.

    >>> import tempfile
    >>> index = pd.DataFrame({"link_id": "a", "weekday": 0, "hour": [8], "congestion_index": [0.6]})
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     written = render_hour_weekday_heatmap(Path(folder) / "h.png", index)
    ...     written.stat().st_size > 1000
    True
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = hour_weekday_matrix(index, link=link)
    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="RdYlGn_r", vmin=0, vmax=1, aspect="auto")
    axes.set_xticks(range(24), [f"{h:02d}" for h in range(24)])
    axes.set_yticks(range(7), list(WEEKDAYS))
    axes.set_xlabel("hour of day (KST, 08 = 08:00–09:00)")
    axes.set_ylabel("weekday")
    scope = f"link {link}" if link is not None else "network, length-weighted"
    axes.set_title(title or f"Congestion index by hour and weekday ({scope})")
    figure.colorbar(image, ax=axes, label="congestion index 1 − v / v_free")
    figure.savefig(path, format="png")
    return Path(path)


def congestion_layer(
    index: pd.DataFrame, links: pd.DataFrame, *, weekday: int | str, hour: int
) -> dict[str, object]:
    """GeoJSON FeatureCollection (WGS84 lon/lat) of ``links`` with speed, index and level.

    ``links`` is a GeoDataFrame with ``link_id`` and a projected CRS (EPSG:5186); one feature per
    link, with null values where the index has no cell. ``weekday`` is 0–6, ``Mon``… or ``월``….
    Coordinates are transformed with ``always_xy`` (geopandas/pyproj), so they are lon, lat.

    Examples
    --------
    >>> links = gpd.GeoDataFrame({"link_id": ["a", "b"]}, crs="EPSG:5186", geometry=[
    ...     shapely.LineString([(200000, 550000), (200200, 550000)]),
    ...     shapely.LineString([(200200, 550000), (200200, 550200)])])
    >>> index = pd.DataFrame({"link_id": ["a"], "weekday": [0], "hour": [8],
    ...                       "mean_speed_kmh": [12.0], "free_flow_kmh": [50.0],
    ...                       "congestion_index": [0.76]})
    >>> layer = congestion_layer(index, links, weekday="Mon", hour=8)  # 50 km S of 127°E 38°N
    >>> [f["properties"]["level"] for f in layer["features"]]
    ['congested', None]
    >>> [round(c, 3) for c in layer["features"][0]["geometry"]["coordinates"][0]]
    [127.0, 37.55]
    """
    frame = _layer_frame(index, links, weekday, hour)
    collection: dict[str, object] = json.loads(frame.to_crs("EPSG:4326").to_json(na="null"))
    return collection


def render_congestion_map(
    path: str | Path,
    index: pd.DataFrame,
    links: pd.DataFrame,
    *,
    weekday: int | str,
    hour: int,
    title: str | None = None,
) -> Path:
    """Write an 800 × 800 px PNG map of ``links`` (in their metric CRS) coloured by TOPIS level.

    Examples
    --------
    >>> import tempfile
    >>> links = gpd.GeoDataFrame({"link_id": ["a"]}, crs="EPSG:5186",
    ...                          geometry=[shapely.LineString([(0, 0), (200, 0)])])
    >>> index = pd.DataFrame({"link_id": ["a"], "weekday": [4], "hour": [18],
    ...                       "mean_speed_kmh": [22.0], "free_flow_kmh": [50.0],
    ...                       "congestion_index": [0.56]})
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = render_congestion_map(Path(folder) / "m.png", index, links, weekday=4, hour=18)
    ...     path.stat().st_size > 1000
    True
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    frame = _layer_frame(index, links, weekday, hour)
    coords, part = shapely.get_coordinates(frame.geometry.to_numpy(), return_index=True)
    segments = np.split(coords, np.flatnonzero(np.diff(part)) + 1)
    colours = [LEVEL_COLOURS.get(level, LEVEL_COLOURS[None]) for level in frame["level"]]
    figure = Figure(figsize=(8, 8), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.add_collection(LineCollection(segments, colors=colours, linewidths=1.5))
    axes.autoscale_view()
    axes.set_aspect("equal")
    axes.set_xlabel(f"easting (m, {frame.crs.to_string() if frame.crs else 'metric'})")
    axes.set_ylabel("northing (m)")
    day = WEEKDAYS[_weekday_number(weekday)]
    axes.set_title(title or f"Link speed level, {day} {hour:02d}:00–{hour + 1:02d}:00")
    names = {
        "congested": "congested < 15 km/h",
        "slow": "slow 15–30",
        "smooth": "smooth > 30",
        None: "no data",
    }
    handles = [Line2D([], [], color=c, lw=3, label=names[k]) for k, c in LEVEL_COLOURS.items()]
    axes.legend(handles=handles, loc="lower right")
    figure.savefig(path, format="png")
    return Path(path)


def _layer_frame(
    index: pd.DataFrame, links: pd.DataFrame, weekday: int | str, hour: int
) -> gpd.GeoDataFrame:
    _require(links, ("link_id", "geometry"), "congestion layer links")
    if not isinstance(links, gpd.GeoDataFrame) or links.crs is None:
        raise ValidationError(
            "congestion layer links: expected a GeoDataFrame with a CRS (EPSG:5186)"
        )
    if not 0 <= hour <= 23:
        raise ValidationError(f"congestion layer hour={hour}: expected 0–23 (0 = 00:00–01:00)")
    day = _weekday_number(weekday)
    cells = index[(index["weekday"] == day) & (index["hour"] == hour)]
    values = cells.assign(link_id=cells["link_id"].astype(str)).set_index("link_id")
    frame = gpd.GeoDataFrame({"link_id": links["link_id"].astype(str).to_numpy()},
                             geometry=links.geometry.to_numpy(), crs=links.crs)  # fmt: skip
    for column in ("mean_speed_kmh", "free_flow_kmh", "congestion_index"):
        frame[column] = frame["link_id"].map(values[column]).astype(float)
    frame["level"] = speed_level(frame["mean_speed_kmh"].to_numpy(float))
    return frame


def _weekday_number(weekday: int | str) -> int:
    names = {n: i for i, n in enumerate(WEEKDAYS)} | {n: i for i, n in enumerate(KOREAN_WEEKDAYS)}
    if isinstance(weekday, str) and weekday in names:
        return names[weekday]
    if isinstance(weekday, int) and 0 <= weekday <= 6:
        return weekday
    raise ValidationError(f"weekday={weekday!r}: expected 0–6 (0 = Monday), Mon…Sun or 월…일")


__all__ = [
    "LEVEL_COLOURS", "congestion_layer", "hour_weekday_matrix", "render_congestion_map",
    "render_hour_weekday_heatmap",
]  # fmt: skip
