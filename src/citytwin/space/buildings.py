"""Buildings: footprints with heights (the input of LoD1 block models) in the city CRS.

``load_buildings`` reads OpenStreetMap XML (``.osm``), OpenStreetMap PBF (``.osm.pbf``) or a
footprint file GDAL can open (GeoJSON, GeoPackage, Shapefile, …) and returns a
:class:`BuildingLayer`: one row per building, footprints in metres, and a list of problems.

OpenStreetMap semantics
    * A closed way tagged ``building`` (any value but ``no``) is a footprint; so is a relation
      ``type=multipolygon`` tagged ``building``, whose member ways are joined end to end into
      rings. Members with role ``inner`` make holes (in the outer ring that covers them); every
      other role, including the empty one, is read as ``outer``.
    * Both formats are read into the same node/way/relation arrays and go through one ring
      assembler, so ``.osm`` and ``.osm.pbf`` give identical footprints and identical problem
      reports. (libosmium's area assembler would drop a broken multipolygon without telling
      Python why.) Nodes are held as three flat arrays, 24 bytes per node. Coordinates
      that Overpass ``out geom`` writes on a way's ``<nd>`` stand in for nodes not in the file.
    * ``use`` is the ``building`` value; for ``building=yes`` it is ``building:use``, else
      ``amenity``, else missing.

Heights (``height_source`` records which rule applied)
    ``height`` — a length: ``12``, ``12 m``, ``12.5m``, feet ``40'`` or ``40'6"``;
    ``levels`` — ``building:levels`` × ``storey_height``. ``roof:levels`` are not counted: an LoD1
    block stands for the walls, and OSM's ``building:levels`` already excludes the roof;
    ``default`` — ``default_height``. A tag that is present but unreadable is reported and the
    next rule is used; a height or floor count of 0 (how Korean registries write "unknown") is
    passed over quietly. ``min_height`` comes from ``min_height`` or ``building:min_level`` ×
    ``storey_height`` and is 0 (the ground) when neither is given.

Geometry
    Invalid footprints are repaired with ``shapely.make_valid(method="structure")`` when that
    leaves a polygon with area (``repaired=True``); otherwise the feature goes to ``problems``
    with the reason, as do footprints under ``MIN_WIDTH`` wide on average (collinear nodes),
    unclosed ways, rings with under 3 distinct nodes and ways whose nodes are missing from the
    extract. ``problems`` also notes kept features whose tags could not be read in full (an
    unreadable ``height``, say). Nothing is dropped without a problem.

Footprint files are checked for a wrong CRS: lon/lat degrees labelled with a metric CRS raise
:class:`~citytwin.errors.FeedError`; footprints that land outside Korea (or outside a non-Korean
city CRS's area of use) after transformation are reported and left out.

OpenStreetMap reading and footprint (ring) assembly are in :mod:`citytwin.space.io.osm`; this
module turns their footprints and tags into a :class:`BuildingLayer`, as it does footprint files.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from numpy.typing import NDArray
from pyproj import CRS

from citytwin.errors import FeedError
from citytwin.space.crs import DEFAULT_CITY_CRS, KOREA_LONLAT, WGS84, looks_like_lonlat, to_wgs84
from citytwin.space.io.osm import (
    OsmExtract,
    OsmNodes,
    read_osm_pbf,
    read_osm_xml,
    relation_footprints,
    way_footprints,
)

logger = logging.getLogger(__name__)

COLUMNS: Final = (
    "key", "name", "use", "height", "height_source", "levels", "min_height", "repaired", "geometry",
)  # fmt: skip
FOOTPRINT_SUFFIXES: Final = (".geojson", ".json", ".gpkg", ".shp", ".fgb", ".zip")
# Footprint-file columns, matched case-insensitively, first match wins.
HEIGHT_COLUMNS: Final = ("height", "높이")
LEVELS_COLUMNS: Final = ("levels", "building:levels", "floors", "grnd_flr", "지상층수")
MIN_HEIGHT_COLUMNS: Final = ("min_height",)
NAME_COLUMNS: Final = ("name", "bld_nm", "buld_nm", "건물명")
USE_COLUMNS: Final = ("use", "building", "usage", "주용도")
ID_COLUMNS: Final = ("key", "id", "ufid", "bd_mgt_sn")

MIN_WIDTH: Final = 0.01  # metres: a footprint narrower on average (2 × area / perimeter) is a line
_FOOT, _INCH = 0.3048, 0.0254
_LENGTH = re.compile(
    r"^\s*(?P<number>\d+(?:[.,]\d+)?|[.,]\d+)\s*"
    r"(?:(?P<metres>m|metres?|meters?)|(?P<feet>'|ft|feet)\s*(?:(?P<inches>\d+(?:\.\d+)?)\s*(?:\"|in))?)?"
    r"\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class BuildingLayer:
    """Building footprints with heights, in the city CRS.

    Attributes
    ----------
    frame
        One row per building: ``key`` (``osm:way/123``, ``osm:relation/456`` or
        ``<file name>/<id or row>``), ``name``, ``use``, ``height`` and ``min_height`` (metres),
        ``height_source`` (``height``, ``levels`` or ``default``), ``levels``, ``repaired``,
        ``geometry`` (Polygon or MultiPolygon).
    problems
        ``(feature key, reason)`` for each dropped feature and each tag that could not be read.
    source
        The file the layer was read from.
    """

    frame: gpd.GeoDataFrame
    problems: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""


def load_buildings(
    path: str | Path,
    *,
    crs: str = DEFAULT_CITY_CRS,
    storey_height: float = 3.0,
    default_height: float = 9.0,
) -> BuildingLayer:
    """Read building footprints and heights from OSM XML/PBF or a footprint file.

    Parameters
    ----------
    path
        ``.osm``, ``.osm.pbf`` or a footprint file (GeoJSON, GeoPackage, Shapefile, FlatGeobuf).
    crs
        The city CRS (metric) the footprints are returned in.
    storey_height
        Metres per storey, to turn a floor count into a height.
    default_height
        Metres given to a building with neither a height nor a floor count.

    Raises
    ------
    FeedError
        The file is missing, of an unknown kind, unreadable, or its CRS is evidently wrong.
    """
    path = Path(path)
    if storey_height <= 0 or default_height <= 0:
        raise ValueError(
            f"storey_height and default_height must be positive metres, "
            f"got {storey_height} and {default_height}"
        )
    if not path.is_file():
        raise FeedError(str(path), "file not found")
    name = path.name.lower()
    rules = _Rules(crs, storey_height, default_height)
    if name.endswith(".osm"):
        layer = _osm_layer(read_osm_xml(path), str(path), rules)
    elif name.endswith(".pbf"):
        layer = _osm_layer(read_osm_pbf(path), str(path), rules)
    elif name.endswith(FOOTPRINT_SUFFIXES):
        layer = _footprint_layer(path, rules)
    else:
        expected = ", ".join((".osm", ".osm.pbf", *FOOTPRINT_SUFFIXES))
        raise FeedError(str(path), f"unknown building file type; expected one of {expected}")
    logger.info("%s: %d buildings, %d problems", path, len(layer.frame), len(layer.problems))
    return layer


def parse_lengths(values: pd.Series) -> NDArray[np.float64]:
    """Lengths as OSM writes them → metres (NaN where missing or not a length).

    >>> parse_lengths(pd.Series(["12", "12.5 m", "40'", "3'6\\"", "tall", None])).round(3).tolist()
    [12.0, 12.5, 12.192, 1.067, nan, nan]
    """
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    parts = values.astype("string").str.extract(_LENGTH)
    number = _numbers(parts["number"].str.replace(",", ".", regex=False))
    inches = np.nan_to_num(_numbers(parts["inches"]))
    feet = parts["feet"].notna().to_numpy(dtype=np.bool_)
    metres: NDArray[np.float64] = np.where(feet, number * _FOOT + inches * _INCH, number)
    return metres


def _numbers(text: pd.Series) -> NDArray[np.float64]:
    return pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _parse_counts(values: pd.Series) -> NDArray[np.float64]:
    """Floor counts → numbers (NaN where missing or not a number)."""
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    return _numbers(values.astype("string").str.strip().str.replace(",", ".", regex=False))


# --- options and features, shared by both readers ------------------------------------------------


@dataclass(frozen=True)
class _Rules:
    """Where footprints go and how heights are derived (the options of :func:`load_buildings`)."""

    crs: str
    storey_height: float
    default_height: float


@dataclass
class _Features:
    """Footprints and raw attributes before repair and height rules (one entry per feature)."""

    keys: list[str]
    labels: list[str]  # how a problem names the feature: "way 123", "row 4"
    geometry: NDArray[np.object_]
    name: list[str | None]
    use: list[str | None]
    height: pd.Series
    levels: pd.Series
    min_height: pd.Series
    min_level: pd.Series


# --- OpenStreetMap buildings ---------------------------------------------------------------------


def _osm_layer(extract: OsmExtract, source: str, rules: _Rules) -> BuildingLayer:
    """Footprints of building ways and multipolygon relations, with their tags."""
    nodes = OsmNodes(extract, rules.crs)
    problems: list[tuple[str, str]] = []
    way_keys, way_tags, way_geometry = way_footprints(extract, nodes, problems)
    relation_keys, relation_tags, relation_geometry = relation_footprints(extract, nodes, problems)
    keys, tags = way_keys + relation_keys, way_tags + relation_tags
    features = _Features(
        keys=keys,
        labels=[key.removeprefix("osm:").replace("/", " ") for key in keys],
        geometry=np.concatenate([way_geometry, relation_geometry]),
        name=[tag.get("name") for tag in tags],
        use=[_osm_use(tag) for tag in tags],
        height=_tag_values(tags, "height"),
        levels=_tag_values(tags, "building:levels"),
        min_height=_tag_values(tags, "min_height"),
        min_level=_tag_values(tags, "building:min_level"),
    )
    return _finish(features, problems, source, rules)


def _osm_use(tags: dict[str, str]) -> str | None:
    if tags["building"] != "yes":
        return tags["building"]
    return tags.get("building:use") or tags.get("amenity")


def _tag_values(tags: list[dict[str, str]], key: str) -> pd.Series:
    return pd.Series([tag.get(key) for tag in tags], dtype=object)


# --- reading footprint files ---------------------------------------------------------------------


def _footprint_layer(path: Path, rules: _Rules) -> BuildingLayer:
    """Footprints and height/floor columns of a GDAL-readable file."""
    frame = _read_frame(path)
    file_crs = _file_crs(path, frame)
    problems: list[tuple[str, str]] = []
    id_column = _column(frame, ID_COLUMNS)
    ids = frame[id_column].to_numpy() if id_column else np.arange(len(frame))
    keys = [f"{path.name}/{value}" for value in ids]
    labels = [f"{path.name} row {row}" for row in range(len(frame))]
    geometry = shapely.force_2d(frame.geometry.to_numpy())
    usable = _check_kinds(geometry, keys, labels, problems)
    geometry = gpd.GeoSeries(geometry, crs=file_crs).to_crs(rules.crs).to_numpy()
    usable &= _check_extent(geometry, usable, rules.crs, file_crs, keys, labels, problems)
    rows = np.flatnonzero(usable)
    features = _Features(
        keys=[keys[row] for row in rows],
        labels=[labels[row] for row in rows],
        geometry=geometry[rows],
        name=_texts(frame, NAME_COLUMNS, rows),
        use=_texts(frame, USE_COLUMNS, rows),
        height=_values(frame, HEIGHT_COLUMNS, rows),
        levels=_values(frame, LEVELS_COLUMNS, rows),
        min_height=_values(frame, MIN_HEIGHT_COLUMNS, rows),
        min_level=_values(frame, (), rows),
    )
    return _finish(features, problems, str(path), rules)


def _read_frame(path: Path) -> gpd.GeoDataFrame:
    try:
        return gpd.read_file(path, engine="pyogrio")
    except (RuntimeError, ValueError) as error:  # pyogrio's errors derive from RuntimeError
        raise FeedError(str(path), f"cannot be read as a footprint file: {error}") from error


def _file_crs(path: Path, frame: gpd.GeoDataFrame) -> CRS:
    """The file's CRS, refusing the classic mislabel: lon/lat degrees declared as metres."""
    bounds = frame.total_bounds
    declared: CRS | None = frame.crs
    if declared is None:
        if len(frame) == 0 or looks_like_lonlat(bounds):
            logger.warning("%s declares no CRS; its coordinates look like lon/lat", path)
            return CRS.from_user_input(WGS84)
        raise FeedError(
            str(path), f"declares no CRS and its bounds {bounds.round(1).tolist()} are not lon/lat"
        )
    if declared.is_projected and looks_like_lonlat(bounds):
        raise FeedError(
            str(path),
            f"coordinates {bounds.round(4).tolist()} look like lon/lat degrees but the file "
            f"declares {declared.to_string()} (metres); expected metres in that CRS, "
            "or the file labelled EPSG:4326",
        )
    return declared


def _column(frame: gpd.GeoDataFrame, candidates: Sequence[str]) -> str | None:
    """The first column named like one of ``candidates`` (case-insensitive)."""
    by_name = {str(column).lower(): str(column) for column in frame.columns}
    return next((by_name[name] for name in candidates if name in by_name), None)


def _texts(
    frame: gpd.GeoDataFrame, candidates: Sequence[str], rows: NDArray[np.intp]
) -> list[str | None]:
    column = _column(frame, candidates)
    if column is None:
        return [None] * len(rows)
    return [None if pd.isna(value) else str(value) for value in frame[column].to_numpy()[rows]]


def _values(
    frame: gpd.GeoDataFrame, candidates: Sequence[str], rows: NDArray[np.intp]
) -> pd.Series:
    column = _column(frame, candidates)
    if column is None:
        return pd.Series([None] * len(rows), dtype=object)
    values: pd.Series = frame[column].iloc[rows].reset_index(drop=True)
    return values


def _check_kinds(
    geometry: NDArray[np.object_],
    keys: list[str],
    labels: list[str],
    problems: list[tuple[str, str]],
) -> NDArray[np.bool_]:
    """Which features are (multi)polygons; the others → problems."""
    kind = shapely.get_type_id(geometry)
    empty = shapely.is_missing(geometry) | shapely.is_empty(geometry)
    polygonal = ~empty & np.isin(kind, (3, 6))
    for row in np.flatnonzero(~polygonal):
        what = "has no geometry" if empty[row] else f"is a {geometry[row].geom_type}, not a polygon"
        problems.append((keys[row], f"{labels[row]}: {what}"))
    usable: NDArray[np.bool_] = polygonal
    return usable


def _check_extent(
    geometry: NDArray[np.object_],
    usable: NDArray[np.bool_],
    crs: str,
    file_crs: CRS,
    keys: list[str],
    labels: list[str],
    problems: list[tuple[str, str]],
) -> NDArray[np.bool_]:
    """Which footprints land where the city CRS is meant for; the others → problems."""
    (west, south, east, north), where = _plausible_extent(crs)
    bounds = shapely.bounds(geometry)  # (a centroid is undefined for a bow-tie: no net area)
    lon, lat = to_wgs84((bounds[:, 0] + bounds[:, 2]) / 2, (bounds[:, 1] + bounds[:, 3]) / 2, crs)
    inside = (lon >= west) & (lon <= east) & (lat >= south) & (lat <= north)
    for row in np.flatnonzero(usable & ~inside):
        problems.append((
            keys[row],
            f"{labels[row]}: lies at {lon[row]:.3f}°E {lat[row]:.3f}°N when read as "
            f"{file_crs.to_string()}, outside {where}; is the file's CRS right?",
        ))  # fmt: skip
    result: NDArray[np.bool_] = inside
    return result


def _plausible_extent(crs: str) -> tuple[tuple[float, float, float, float], str]:
    """Korea for a Korean city CRS, else the CRS's area of use (lon/lat bounds)."""
    area = CRS.from_user_input(crs).area_of_use
    if area is None:
        return (-180.0, -90.0, 180.0, 90.0), "the world"
    west, south, east, north = area.bounds
    korea_west, korea_south, korea_east, korea_north = KOREA_LONLAT
    if west < korea_east and east > korea_west and south < korea_north and north > korea_south:
        return KOREA_LONLAT, "Korea"
    return area.bounds, f"the area of use of {crs} ({area.name})"


# --- repair, heights and the frame --------------------------------------------------------------


def _finish(
    features: _Features, problems: list[tuple[str, str]], source: str, rules: _Rules
) -> BuildingLayer:
    """Repair footprints, apply the height rules and build the frame in the city CRS."""
    geometry, repaired = _repair(features, problems)
    rows = np.flatnonzero(~shapely.is_missing(geometry))
    heights = _heights(features, rows, problems, rules)
    columns = {
        "key": pd.Series([features.keys[row] for row in rows], dtype="str"),
        "name": pd.Series([features.name[row] for row in rows], dtype="str"),
        "use": pd.Series([features.use[row] for row in rows], dtype="str"),
        **heights,
        "repaired": repaired[rows],
    }
    frame = gpd.GeoDataFrame(columns, geometry=geometry[rows], crs=rules.crs)
    return BuildingLayer(frame=frame[list(COLUMNS)], problems=problems, source=source)


def _repair(
    features: _Features, problems: list[tuple[str, str]]
) -> tuple[NDArray[np.object_], NDArray[np.bool_]]:
    """Make invalid footprints valid where a polygon with area survives; None where not."""
    geometry = features.geometry.copy()
    invalid = ~shapely.is_valid(geometry)
    reasons = dict(
        zip(np.flatnonzero(invalid), shapely.is_valid_reason(geometry[invalid]), strict=True)
    )
    geometry[invalid] = shapely.make_valid(
        geometry[invalid], method="structure", keep_collapsed=False
    )
    # nodes "on a line" in lon/lat are a sliver once projected: judge area by the mean width
    width = 2 * shapely.area(geometry) / np.maximum(shapely.length(geometry), 1e-300)
    keep = np.isin(shapely.get_type_id(geometry), (3, 6)) & (width >= MIN_WIDTH)
    for row in np.flatnonzero(~keep):
        why = (
            f"invalid ({reasons[row]}) and make_valid leaves no area"
            if row in reasons
            else f"has no area (under {MIN_WIDTH * 100:g} cm wide: its nodes lie on a line)"
        )
        problems.append((features.keys[row], f"{features.labels[row]}: footprint {why}"))
    geometry[~keep] = None
    repaired: NDArray[np.bool_] = invalid & keep
    return geometry, repaired


_TAG_NAMES: Final = {
    "height": "height",
    "levels": "building:levels",
    "min_height": "min_height",
    "min_level": "building:min_level",
}


def _heights(
    features: _Features,
    rows: NDArray[np.intp],
    problems: list[tuple[str, str]],
    rules: _Rules,
) -> dict[str, Any]:
    """Height rule per building: a height, else floors × storey height, else the default."""
    texts = {
        name: getattr(features, name).iloc[rows].reset_index(drop=True)
        for name in ("height", "levels", "min_height", "min_level")
    }
    height, min_height = parse_lengths(texts["height"]), parse_lengths(texts["min_height"])
    levels, min_level = _parse_counts(texts["levels"]), _parse_counts(texts["min_level"])
    by_height = height > 0
    by_levels = ~by_height & (levels > 0)
    result = np.select(
        [by_height, by_levels], [height, levels * rules.storey_height], rules.default_height
    )
    bottom = np.where(min_level >= 0, min_level * rules.storey_height, 0.0)
    bottom = np.where(min_height >= 0, min_height, bottom)
    keys = [features.keys[row] for row in rows]
    labels = [features.labels[row] for row in rows]
    parsed = {"height": height, "levels": levels, "min_height": min_height, "min_level": min_level}
    for name, values in parsed.items():
        for i in np.flatnonzero(texts[name].notna().to_numpy() & ~(values >= 0)):
            what = f"{_TAG_NAMES[name]} {texts[name][i]!r}"
            problems.append((keys[i], f"{labels[i]}: {what} is not understood; ignored"))
    for i in np.flatnonzero(bottom >= result):
        what = f"min_height {bottom[i]:g} m is not below the height {result[i]:g} m"
        problems.append((keys[i], f"{labels[i]}: {what}"))
    return {
        "height": result,
        "height_source": pd.Series(
            np.select([by_height, by_levels], ["height", "levels"], "default"), dtype="str"
        ),
        "levels": np.where(levels >= 0, levels, np.nan),
        "min_height": bottom,
    }
