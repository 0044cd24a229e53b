"""The disaster what-if of rainfall: ponding on a DEM and the buildings and road links it
floods, with the city layers of the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np

from citytwin.analysis.render import render_map, write_geotiff
from citytwin.simulate.dem import read_dem
from citytwin.simulate.flood import PondingResult, simulate_ponding
from citytwin.simulate.flood_impacts import flooded_features
from citytwin.space.layers import to_frame
from citytwin.store.base import Store
from citytwin.twin.fields import district_outlines

LAYERS = ("buildings", "road_links")


@dataclass
class FloodReport:
    """The ponding result, the flooded features and the files written."""

    ponding: PondingResult
    buildings: gpd.GeoDataFrame | None
    links: gpd.GeoDataFrame | None
    written: dict[str, Path] = field(default_factory=dict)


def rainfall_flood(
    store: Store,
    dem: Path,
    out: Path,
    *,
    intensity_mm_h: float,
    duration_h: float,
    runoff_coefficient: float = 1.0,
    threshold_m: float = 0.1,
) -> FloodReport:
    """Rain of ``intensity_mm_h`` for ``duration_h`` on the DEM → depth GeoTIFF and PNG; with
    the store's buildings and road links inside the DEM, which of them are flooded."""
    grid, heights = read_dem(dem)
    ponding = simulate_ponding(
        grid, heights, intensity_mm_h=intensity_mm_h, duration_h=duration_h,
        runoff_coefficient=runoff_coefficient,
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    report = FloodReport(ponding, None, None)
    report.written["depth"] = write_geotiff(out / "depth.tif", grid, {"depth_m": ponding.depth})
    frames = {
        layer: to_frame(store.features(layer, bbox=grid.bounds), crs=grid.crs)
        for layer in LAYERS
        if store.layers().get(layer)
    }
    if len(frames) == len(LAYERS) and all(len(f) for f in frames.values()):
        buildings, links = flooded_features(
            grid, ponding.depth, frames["buildings"], frames["road_links"], threshold=threshold_m
        )
        report.buildings, report.links = buildings, links
        for name, frame in (("buildings", buildings), ("links", links)):
            path = out / f"flooded_{name}.geojson"
            path.write_text(frame[frame["flooded"]].to_crs("EPSG:4326").to_json(), "utf-8")
            report.written[f"flooded {name}"] = path
    shown = np.where(ponding.depth >= 0.01, ponding.depth, np.nan)  # below 1 cm: dry on the map
    report.written["map"] = render_map(
        out / "flood.png", grid, shown,
        title=f"ponding after {intensity_mm_h:g} mm/h for {duration_h:g} h (fill-and-spill)",
        unit="depth (m)", districts=district_outlines(store, crs=grid.crs), cmap="Blues",
    )  # fmt: skip
    return report
