"""Administrative districts (gu, dong) from GeoJSON, TopoJSON, Shapefile or GeoPackage.

Korean boundary files name their columns differently — KOSTAT (``code``, ``name``, ``name_eng``),
the admdong files (``adm_cd``, ``adm_nm``), the road-name address (JUSO) files (``SIG_CD``,
``SIG_KOR_NM``, ``EMD_CD``, ``EMD_KOR_NM``) — so the columns are found by name. The level follows
the code when not given: a 5-digit code is a gu (시군구), a longer one a dong (읍면동), whose gu
is its first five digits.

Geometries are reprojected to the city CRS. A file without a CRS is read as WGS84 when its
coordinates can only be degrees; anything else without a CRS is an error, not a guess. Invalid
geometries are repaired with ``make_valid`` when the result is still an area; empty or
unrepairable ones are reported per feature with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import geopandas as gpd
import numpy as np
import pyogrio
import shapely

from citytwin.errors import FeedError
from citytwin.ingest.source import check_file, normalize_name
from citytwin.space.crs import DEFAULT_CITY_CRS, WGS84, in_korea, looks_like_lonlat, to_wgs84

Level = Literal["gu", "dong"]
CODE = ("code", "adm_cd", "adm_cd2", "adm_dr_cd", "emd_cd", "sig_cd", "sgg", "sggcd", "코드")
NAME = ("name", "adm_nm", "adm_dr_nm", "emd_kor_nm", "sig_kor_nm", "sggnm", "이름", "명칭")
NAME_ENG = ("name_eng", "emd_eng_nm", "sig_eng_nm")
GU_CODE_DIGITS = 5


@dataclass
class DistrictLayer:
    """Districts in the city CRS: key, code, name, name_eng, level, parent_code, geometry."""

    frame: gpd.GeoDataFrame
    source: str
    problems: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frame)

    def level(self, level: Level) -> gpd.GeoDataFrame:
        """The districts of one level."""
        return self.frame[self.frame["level"] == level]


def load_districts(
    path: str | Path,
    *,
    level: Level | None = None,
    crs: str = DEFAULT_CITY_CRS,
    source_crs: str | None = None,
) -> DistrictLayer:
    """Read a boundary file; ``level`` overrides the level inferred from the codes.

    ``source_crs`` names the file's CRS when the file does not (a Shapefile without .prj).
    """
    path = str(path)
    check_file(path)
    try:
        frame = pyogrio.read_dataframe(path)
    except Exception as exc:  # pyogrio raises its own error types per driver
        raise FeedError(path, f"cannot be read as a vector file ({exc})") from None
    notes: list[str] = []
    frame = _with_crs(frame, path, source_crs, notes)
    columns = _columns(list(frame.columns), path)
    codes = frame[columns["code"]].astype(str).str.strip()
    out = gpd.GeoDataFrame(
        {
            "code": codes,
            "name": _names(frame[columns["name"]]) if "name" in columns else codes,
            "name_eng": frame[columns["name_eng"]].astype(str) if "name_eng" in columns else None,
        },
        geometry=frame.geometry.values,
        crs=frame.crs,
    )
    out["level"] = level or np.where(out["code"].str.len() <= GU_CODE_DIGITS, "gu", "dong")
    out["parent_code"] = np.where(out["level"] == "dong", out["code"].str[:GU_CODE_DIGITS], None)
    out.insert(0, "key", out["level"] + ":" + out["code"])
    out, problems = _repair(out)
    out = out.to_crs(crs)
    misplaced = _misplaced(out, path, crs, problems)
    return DistrictLayer(out[~misplaced].reset_index(drop=True), path, problems, notes)


def _with_crs(
    frame: gpd.GeoDataFrame, path: str, source_crs: str | None, notes: list[str]
) -> gpd.GeoDataFrame:
    if source_crs:
        return frame.set_crs(source_crs, allow_override=True)
    # judged per feature: one swapped feature is reported later, a metric file is an error now
    degrees = not len(frame) or bool(
        np.mean([looks_like_lonlat(b) for b in frame.geometry.bounds.to_numpy()]) > 0.5
    )
    if frame.crs is not None and frame.crs.is_geographic and not degrees:
        raise FeedError(
            path,
            f"declares {frame.crs.to_string()} (GeoJSON always does) but its "
            "coordinates are not degrees; pass the real CRS (e.g. --source-crs "
            "EPSG:5186)",
        )
    if frame.crs is not None:
        return frame
    if degrees:
        notes.append(f"{path}: no CRS in the file; coordinates are degrees, read as WGS84")
        return frame.set_crs(WGS84)
    raise FeedError(
        path,
        "has no CRS and its coordinates are not degrees; pass its CRS "
        "(e.g. --source-crs EPSG:5179)",
    )


def _columns(names: list[str], path: str) -> dict[str, str]:
    normal = {normalize_name(n): n for n in names if n != "geometry"}
    found: dict[str, str] = {}
    for role, options in (("code", CODE), ("name", NAME), ("name_eng", NAME_ENG)):
        match = next((normal[o] for o in options if o in normal), None)
        if match is not None:
            found[role] = match
    if "code" not in found:
        raise FeedError(
            path,
            f"no district code column; expected one of {', '.join(CODE)}, "
            f"found {', '.join(n for n in names if n != 'geometry')}",
            line=1,
        )
    return found


def _names(column: gpd.pd.Series) -> gpd.pd.Series:
    """``서울특별시 종로구 사직동`` → ``사직동``: admdong files give the full address."""
    return column.astype(str).str.strip().str.split().str[-1]


def _repair(frame: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    geometry = frame.geometry.values
    empty = shapely.is_empty(geometry) | shapely.is_missing(geometry)
    invalid = ~empty & ~shapely.is_valid(geometry)
    if invalid.any():
        reasons = shapely.is_valid_reason(geometry[invalid])
        fixed = shapely.make_valid(geometry[invalid])
        fixed = np.array([_areal(g) for g in fixed], dtype=object)
        keys = frame["key"].to_numpy()[invalid]
        for key, reason, geom in zip(keys, reasons, fixed, strict=True):
            if geom is None:
                problems.append((str(key), f"invalid geometry ({reason}) could not be repaired"))
        geometry = geometry.copy()
        geometry[invalid] = fixed
        frame = frame.set_geometry(gpd.GeoSeries(geometry, crs=frame.crs, index=frame.index))
    for key in frame["key"].to_numpy()[empty]:
        problems.append((str(key), "empty geometry"))
    bad = {key for key, _ in problems}
    return frame[~frame["key"].isin(bad)], problems


def _areal(geometry: shapely.Geometry) -> shapely.Geometry | None:
    """The polygonal part of a repaired geometry, or None when nothing with area is left."""
    parts = [p for p in shapely.get_parts(geometry) if p.geom_type in ("Polygon", "MultiPolygon")]
    if not parts:
        return None
    union = shapely.union_all(parts)
    return union if union.area > 0 else None


def _misplaced(
    frame: gpd.GeoDataFrame, path: str, crs: str, problems: list[tuple[str, str]]
) -> np.ndarray:
    """Districts outside Korea point to a wrong CRS (or swapped axes): reported and left out."""
    if not len(frame):
        return np.zeros(0, bool)
    finite = np.isfinite(frame.geometry.bounds.to_numpy()).all(axis=1)
    centre = frame.geometry.where(finite, shapely.Point(0, 0)).representative_point()
    lon, lat = to_wgs84(centre.x.to_numpy(), centre.y.to_numpy(), crs)
    outside = ~in_korea(lon, lat) | ~finite
    for key, x, y in zip(frame["key"][outside], lon[outside], lat[outside], strict=True):
        problems.append(
            (
                str(key),
                f"lies at {x:.3f} E {y:.3f} N, outside Korea: wrong CRS or swapped axes in {path}?",
            )
        )
    result: np.ndarray = outside
    return result
