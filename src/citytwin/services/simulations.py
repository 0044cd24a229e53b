"""What-if services over the twin: a chemical release placed in the city with the live wind and
the buildings of the store.

The traffic assignment needs no twin (its network and demand come from TNTP files or the road
layer); this module holds what composes the store with :mod:`citytwin.simulate`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from citytwin.analysis.grid import Grid
from citytwin.analysis.render import render_map, write_geotiff
from citytwin.errors import ValidationError
from citytwin.simulate.dispersion import insolation_from_elevation, stability_class
from citytwin.simulate.exposure import exposed_buildings, threshold_zones
from citytwin.simulate.plume import plume_grid, wind_from_sensors
from citytwin.simulate.substances import get_substance
from citytwin.space.crs import DEFAULT_CITY_CRS, to_city
from citytwin.space.layers import to_frame
from citytwin.store.base import Store
from citytwin.twin.fields import district_outlines
from citytwin.twin.state import SUSPECT, Twin

logger = logging.getLogger(__name__)
BUILDINGS = "buildings"


@dataclass(frozen=True)
class Release:
    """A chemical release: what, how much, where (city CRS) and how high."""

    substance: str
    rate_g_s: float
    x: float
    y: float
    height_m: float = 0.0


@dataclass(frozen=True)
class ReleaseResult:
    """Concentration grid (g/m³), AEGL zones, exposed buildings and the weather used."""

    release: Release
    grid: Grid
    concentration: np.ndarray
    zones: gpd.GeoDataFrame
    exposure: pd.DataFrame | None
    wind_speed: float
    wind_direction: float
    stability: str
    wind_source: str


def chemical_release(
    store: Store,
    release: Release,
    *,
    wind_speed: float | None = None,
    wind_direction: float | None = None,
    stability: str | None = None,
    when: datetime | None = None,
    cloud_cover: float = 4.0,
    extent_m: float = 5000.0,
    cell: float = 25.0,
    terrain: str = "urban",
    crs: str = DEFAULT_CITY_CRS,
) -> ReleaseResult:
    """A continuous release over a square of ``extent_m`` around the source: the plume, its
    AEGL-1/2/3 zones and the buildings (and residents) inside them.

    Without ``wind_speed``/``wind_direction`` the wind is the nearest sensors' latest readings
    (inverse-distance weights, :func:`~citytwin.simulate.plume.wind_from_sensors`); without
    ``stability`` the Pasquill class follows from the wind, the sun's elevation at the source
    at ``when`` (default: now) and the cloud cover (oktas).
    """
    get_substance(release.substance)  # an unknown name fails before any work
    source = "given"
    if wind_speed is None or wind_direction is None:
        wind_speed, wind_direction = _sensor_wind(store, (release.x, release.y), crs)
        source = "nearest sensors"
    if stability is None:
        stability = _stability_now(release, wind_speed, cloud_cover, crs, when)
    half = extent_m / 2
    bounds = (release.x - half, release.y - half, release.x + half, release.y + half)
    grid = Grid.covering(bounds, cell=cell, crs=crs)
    concentration = plume_grid(
        (release.x, release.y), release.rate_g_s, wind_speed, wind_direction, grid,
        height=release.height_m, stability=stability, terrain=terrain,  # type: ignore[arg-type]
    )  # fmt: skip
    zones = threshold_zones(grid, concentration, release.substance)
    buildings = _buildings_near(store, bounds, crs)
    exposure = exposed_buildings(zones, buildings) if buildings is not None else None
    return ReleaseResult(
        release, grid, concentration, zones, exposure, wind_speed, wind_direction, stability,
        source,
    )  # fmt: skip


def save_release(
    result: ReleaseResult, out: Path, *, store: Store | None = None
) -> dict[str, Path]:
    """Concentration GeoTIFF, zones GeoJSON (WGS84), exposure CSV and a PNG map into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = {
        "concentration": write_geotiff(
            out / "concentration.tif", result.grid, {"concentration_g_m3": result.concentration}
        )
    }
    zones = result.zones[~result.zones.geometry.is_empty]
    (out / "zones.geojson").write_text(zones.to_crs("EPSG:4326").to_json(), encoding="utf-8")
    written["zones"] = out / "zones.geojson"
    if result.exposure is not None:
        result.exposure.to_csv(out / "exposure.csv")
        written["exposure"] = out / "exposure.csv"
    districts = district_outlines(store, crs=result.grid.crs) if store is not None else None
    # down to 1 % of the lowest (AEGL-1) level: fainter traces only paint the whole map
    floor = float(result.zones["threshold_g_m3"].min()) / 100.0
    shown = np.where(result.concentration >= floor, result.concentration * 1000.0, np.nan)
    written["map"] = render_map(
        out / "plume.png", result.grid, np.log10(shown),
        title=f"{result.release.substance} {result.release.rate_g_s:g} g/s, wind "
        f"{result.wind_speed:.1f} m/s from {result.wind_direction:.0f}°, class {result.stability}",
        unit="log10 mg/m³", districts=zones if len(zones) else districts,
        points=np.array([[result.release.x, result.release.y]]), cmap="inferno_r",
        caption="outlines: AEGL zones (outer AEGL-1, inner AEGL-3)",
    )  # fmt: skip
    return written


def _stability_now(
    release: Release, wind_speed: float, cloud_cover: float, crs: str, when: datetime | None
) -> str:
    """Pasquill class for the sun at the source: insolation by day, cloud cover by night."""
    from citytwin.simulate.sun import solar_position
    from citytwin.space.crs import to_wgs84

    lon, lat = to_wgs84(release.x, release.y, crs)
    moment = pd.DatetimeIndex([when or datetime.now(UTC)])
    elevation = float(solar_position(moment, float(lat), float(lon))["elevation"].iloc[0])
    if elevation > 0:
        insolation = insolation_from_elevation(elevation)
        return stability_class(wind_speed, daytime=True, insolation=insolation)
    return stability_class(wind_speed, daytime=False, cloud_cover=cloud_cover)


def _sensor_wind(store: Store, source: tuple[float, float], crs: str) -> tuple[float, float]:
    """The nearest located sensors' latest usable wind speed and direction."""
    twin = Twin(store)

    def latest(prop: str) -> pd.DataFrame:  # only the wind datastreams, not every property
        found = twin.latest(observed_property=prop)
        return found[(found["quality"] & SUSPECT) == 0].set_index("thing")

    speed, direction = latest("wind_speed"), latest("wind_direction")
    both = pd.concat(
        [speed["value"].rename("speed"), direction["value"].rename("direction"),
         speed[["lon", "lat"]]], axis=1, join="inner",
    ).dropna()  # fmt: skip
    if both.empty:
        raise ValidationError(
            "no wind given and no sensor in the store reports wind_speed and wind_direction; "
            "give --wind-speed and --wind-direction"
        )
    x, y = to_city(both["lon"].to_numpy(), both["lat"].to_numpy(), crs)
    return wind_from_sensors(
        source, np.column_stack([x, y]), both["speed"].to_numpy(), both["direction"].to_numpy()
    )


def _buildings_near(
    store: Store, bounds: tuple[float, float, float, float], crs: str
) -> gpd.GeoDataFrame | None:
    if not store.layers().get(BUILDINGS):
        return None
    frame = to_frame(store.features(BUILDINGS, bbox=bounds), crs=crs)
    if frame.empty or "height" not in frame.columns:
        logger.info("no buildings with heights inside %s: exposure not estimated", bounds)
        return None
    return frame
