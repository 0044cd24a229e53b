"""The planning what-if of sunlight: hours of direct sun that a proposed building takes from
the store's neighbouring buildings and the ground around them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from citytwin.analysis.grid import Grid
from citytwin.analysis.render import render_map
from citytwin.errors import ValidationError
from citytwin.simulate.sunlight import sunlight_loss
from citytwin.space.crs import DEFAULT_CITY_CRS, to_city
from citytwin.space.layers import to_frame
from citytwin.store.base import Store

BUILDINGS = "buildings"
PROPOSED = "proposed"


@dataclass
class SunlightReport:
    """A one-line summary, the per-building table and what was written."""

    summary: str
    buildings: gpd.GeoDataFrame
    written: dict[str, Path] = field(default_factory=dict)


def proposed_building_loss(
    store: Store,
    lon: float,
    lat: float,
    *,
    height: float,
    width: float = 30.0,
    depth: float = 30.0,
    day: date | None = None,
    radius: float = 400.0,
    cell: float = 10.0,
    out: Path,
    crs: str = DEFAULT_CITY_CRS,
) -> SunlightReport:
    """Sun lost (hours in 09–15 local time of ``day``, default the winter solstice, as Korean
    sunlight-right practice uses) when a ``width × depth`` box of ``height`` metres is built at
    (lon, lat)."""
    day = day or date(date.today().year, 12, 21)
    x, y = (float(v) for v in to_city(lon, lat, crs))
    bounds = (x - radius, y - radius, x + radius, y + radius)
    neighbours = _buildings(store, bounds, crs)
    footprint = shapely.box(x - width / 2, y - depth / 2, x + width / 2, y + depth / 2)
    proposed = gpd.GeoDataFrame(
        {"key": [PROPOSED], "height": [height]}, geometry=[footprint], crs=crs
    )
    grid = Grid.covering(bounds, cell=cell, crs=crs)
    table, ground = sunlight_loss(neighbours, proposed, grid, day, lat=lat, lon=lon)
    result = neighbours[["key", "geometry"]].merge(table, on="key")
    out.mkdir(parents=True, exist_ok=True)
    written = {"buildings": out / "sunlight_loss.csv"}
    result.drop(columns="geometry").to_csv(written["buildings"], index=False)
    written["map"] = render_map(
        out / "sunlight_loss.png", grid, np.where(ground > 0, ground, np.nan),
        title=f"hours of sun lost on {day:%Y-%m-%d} (09–15) to a {height:g} m building",
        unit="hours lost", districts=gpd.GeoDataFrame(
            geometry=[*neighbours.geometry, footprint], crs=crs
        ), cmap="YlOrRd",
    )  # fmt: skip
    losing = result[result["hours_lost"] > 1e-9]
    summary = (
        f"{len(losing):,} of {len(result):,} buildings within {radius:g} m lose sun; the worst "
        f"loses {result['hours_lost'].max():.2f} h on average over its façade"
        if len(losing)
        else f"none of the {len(result):,} buildings within {radius:g} m loses direct sun"
    )
    return SunlightReport(summary, result, written)


def _buildings(
    store: Store, bounds: tuple[float, float, float, float], crs: str
) -> gpd.GeoDataFrame:
    if not store.layers().get(BUILDINGS):
        raise ValidationError(
            "no buildings in the store; import them first (citytwin import osm|buildings|cityjson)"
        )
    frame = to_frame(store.features(BUILDINGS, bbox=bounds), crs=crs)
    if frame.empty:
        raise ValidationError(f"no stored building within {bounds} (EPSG:5186 metres)")
    usable = frame[frame["height"].astype(float) > 0].reset_index(drop=True)
    columns = ["key", "height", *(["min_height"] if "min_height" in usable.columns else [])]
    return usable[[*columns, "geometry"]]
