"""Maps of the gentrification stages: a PNG choropleth and a GeoJSON layer for the web.

Both join a :func:`citytwin.analysis.gentrification.gentrification_index` result to dong
polygons (EPSG:5186) on the dong id. The PNG colours the four stages (안정/초기/진행/심화) and
labels them in Korean only when a CJK font is installed; the GeoJSON follows RFC 7946 (WGS84
lon/lat, counter-clockwise shells).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import shapely.geometry
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch, PathPatch
from matplotlib.path import Path as MplPath
from pyproj import Transformer

from citytwin.analysis.gentrification import STAGES
from citytwin.errors import ValidationError

logger = logging.getLogger(__name__)

STAGE_COLOURS: Final = ("#d9ead3", "#ffd966", "#f6a04d", "#cc2929")
NO_DATA_COLOUR: Final = "#f2f2f2"
_CJK_FONTS: Final = ("CJK", "Nanum", "Malgun", "AppleGothic", "UnDotum", "Baekmuk")


def render_gentrification_map(
    path: str | Path,
    districts: gpd.GeoDataFrame,
    result: pd.DataFrame,
    *,
    key: str = "code",
    title: str = "Gentrification stage by dong",
) -> Path:
    """A PNG choropleth of the stages, with a legend; dongs without a stage are pale grey.

    ``districts`` are dong polygons (a ``level`` column, if any, selects ``"dong"``) whose ``key``
    column matches ``result``'s index. Labels are Korean only when a CJK font is installed.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "stages.png"
    >>> render_gentrification_map(path, _SQUARES, _SQUARE_RESULT).stat().st_size > 5_000
    True
    """
    joined = _join(districts, result, key)
    korean = _korean_font()
    figure = Figure(figsize=(9, 6), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colours = [STAGE_COLOURS[int(s)] if pd.notna(s) else NO_DATA_COLOUR for s in joined["stage"]]
    patches = [PathPatch(_mpl_path(geometry)) for geometry in joined.geometry]
    axes.add_collection(PatchCollection(patches, facecolors=colours, edgecolors="#555555", lw=0.4))
    minx, miny, maxx, maxy = joined.total_bounds
    axes.set_xlim(minx, maxx)
    axes.set_ylim(miny, maxy)
    axes.set_aspect("equal")
    axes.set_axis_off()
    labels = [f"{ko} {en}" if korean else en for en, ko in STAGES] + ["no data"]
    handles = [
        Patch(facecolor=c, edgecolor="#555555", label=label)
        for c, label in zip((*STAGE_COLOURS, NO_DATA_COLOUR), labels, strict=True)
    ]
    font = {"family": korean} if korean else None
    axes.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), prop=font, title="stage"
    )
    axes.set_title(title)
    target = Path(path)
    figure.savefig(target, format="png", bbox_inches="tight")
    return target


def gentrification_geojson(
    districts: gpd.GeoDataFrame, result: pd.DataFrame, *, key: str = "code"
) -> dict[str, object]:
    """A GeoJSON FeatureCollection (RFC 7946: WGS84 lon/lat, counter-clockwise shells).

    Properties: the dong ``key`` and ``name`` (if any), ``index``, ``stage``, ``stage_name``,
    ``stage_ko`` and ``weight_coverage`` (``null`` where missing).

    Examples
    --------
    >>> collection = gentrification_geojson(_SQUARES, _SQUARE_RESULT)
    >>> [f["properties"]["stage_name"] for f in collection["features"]]
    ['stable', 'advanced']
    >>> square = shapely.geometry.shape(collection["features"][0]["geometry"])
    >>> tuple(round(edge, 4) for edge in square.bounds)
    (127.0, 38.0, 127.0114, 38.009)
    """
    joined = _join(districts, result, key)
    lonlat = Transformer.from_crs(joined.crs, "EPSG:4326", always_xy=True)
    shapes = shapely.orient_polygons(
        shapely.transform(
            np.asarray(joined.geometry.array), lambda xy: np.c_[lonlat.transform(*xy.T)]
        )
    )
    columns = [c for c in (key, "name", "index", "stage", "stage_name", "stage_ko",
                           "weight_coverage") if c in joined]  # fmt: skip
    features = [
        {"type": "Feature", "geometry": shapely.geometry.mapping(shape),
         "properties": {c: _plain(v) for c, v in zip(columns, row, strict=True)}}
        for shape, row in zip(shapes, joined[columns].itertuples(index=False), strict=True)
    ]  # fmt: skip
    return {"type": "FeatureCollection", "features": features}


def _plain(value: object) -> object:
    """A JSON-ready scalar: numpy numbers as Python ones, missing values as ``None``."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _join(districts: gpd.GeoDataFrame, result: pd.DataFrame, key: str) -> gpd.GeoDataFrame:
    """Dong polygons with the result's columns, matched on ``districts[key]`` = result index."""
    if key not in districts.columns or districts.crs is None:
        raise ValidationError(
            f"districts: expected a CRS and a {key!r} column; columns {list(districts.columns)}, "
            f"crs {districts.crs}"
        )
    dongs = districts[districts["level"] == "dong"] if "level" in districts else districts
    ids = result.index.astype(str)
    columns = result.drop(columns=[c for c in result.columns if c in dongs.columns])
    joined = dongs.merge(columns.set_axis(ids), left_on=dongs[key].astype(str), right_index=True,
                         how="left")  # fmt: skip
    matched = int(dongs[key].astype(str).isin(ids).sum())
    if matched == 0:
        raise ValidationError(
            f"districts[{key!r}]: no value matches the result's dong ids "
            f"(e.g. {list(ids[:3])} versus {list(dongs[key].astype(str)[:3])})"
        )
    logger.info("gentrification map: %d of %d dong have a result", matched, len(dongs))
    return joined


def _mpl_path(geometry: shapely.Geometry) -> MplPath:
    """A compound matplotlib path of a (multi)polygon, holes included."""
    rings = [
        np.asarray(ring.coords)
        for polygon in shapely.get_parts(geometry)
        for ring in (polygon.exterior, *polygon.interiors)
    ]
    return MplPath.make_compound_path(*(MplPath(ring, closed=True) for ring in rings))


def _korean_font() -> str | None:
    """The name of an installed font with Hangul, if any."""
    for font in font_manager.fontManager.ttflist:
        if any(mark in font.name for mark in _CJK_FONTS):
            return str(font.name)
    return None


# two 1-km squares at EPSG:5186's origin (127° E, 38° N), for the examples above
_SQUARES = gpd.GeoDataFrame(
    {"code": ["a", "b"]},
    geometry=[
        shapely.box(200_000, 600_000, 201_000, 601_000),
        shapely.box(201_000, 600_000, 202_000, 601_000),
    ],
    crs="EPSG:5186",
)
_SQUARE_RESULT = pd.DataFrame(
    {"index": [0.1, 2.5], "stage": pd.array([0, 3], dtype="Int64"),
     "stage_name": ["stable", "advanced"]}, index=["a", "b"]
)  # fmt: skip
