"""A synthetic Korean city for demos and tests that must run without real data.

:func:`build_demo_city` draws districts, a river with bridges, a street network, buildings and
sensor sites from one seed; :func:`write_demo_city` writes them in the files the import commands
read. The city lies at 127.0° E 37.55° N (inside Korea, so every Korean check accepts it) but is
plainly invented: a straight-edged 15 × 12 km rectangle, district codes under the unused prefix
``99``, invented names and ``DEMO`` sensor serials. Each layer draws from its own random stream
(``SeedSequence([seed, layer])``), so asking for more buildings does not move the roads.

Modules: ``layout`` (extent, river, zones), ``districts``, ``roads``, ``buildings``, ``sensors``,
``dem`` (terrain) and ``files`` (writing).
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS

from citytwin.emulator.sites import Sites
from citytwin.space.buildings import BuildingLayer
from citytwin.space.crs import DEFAULT_CITY_CRS
from citytwin.space.democity.buildings import STOREY_HEIGHT, build_buildings
from citytwin.space.democity.districts import build_districts
from citytwin.space.democity.files import write_demo_city
from citytwin.space.democity.layout import PLAN_CRS, plan_city
from citytwin.space.democity.roads import build_roads
from citytwin.space.democity.sensors import place_sensors
from citytwin.space.districts import DistrictLayer
from citytwin.space.roads import RoadNetwork

__all__ = ["STOREY_HEIGHT", "DemoCity", "build_demo_city", "write_demo_city"]

PLAN, DISTRICTS, ROADS, BUILDINGS, SENSORS = range(5)  # random stream of each layer


@dataclass(frozen=True, eq=False)
class DemoCity:
    """A synthetic city; every geometry is in ``crs``, sensor positions in WGS84.

    Attributes
    ----------
    districts
        Gu and dong in :class:`~citytwin.space.districts.DistrictLayer` columns.
    buildings
        Footprints in :class:`~citytwin.space.buildings.BuildingLayer` columns.
    roads
        Directed street network.
    bridges
        The links of ``roads`` that cross the river, the only ones that touch it.
    river
        The water area.
    sensor_sites
        The emulator's sensor sites (serial, lon, lat).
    boundary, core
        The city limit and the high-rise core (a disc).
    """

    seed: int
    crs: str
    districts: gpd.GeoDataFrame
    buildings: gpd.GeoDataFrame
    roads: RoadNetwork
    bridges: gpd.GeoDataFrame
    river: shapely.Polygon
    sensor_sites: Sites
    boundary: shapely.Polygon
    core: shapely.Polygon

    def district_layer(self) -> DistrictLayer:
        """The districts as the layer :func:`~citytwin.space.districts.load_districts` returns."""
        return DistrictLayer(self.districts, self.roads.source)

    def building_layer(self) -> BuildingLayer:
        """The buildings as the layer :func:`~citytwin.space.buildings.load_buildings` returns."""
        return BuildingLayer(self.buildings, [], self.roads.source)


def build_demo_city(
    *, seed: int = 0, buildings: int = 20_000, sensors: int = 1_100, crs: str = DEFAULT_CITY_CRS
) -> DemoCity:
    """Build the demo city of ``seed``: same seed, same city, to the last coordinate.

    Parameters
    ----------
    seed
        Chooses river, zones, districts, names, buildings and sensors.
    buildings
        Number of buildings, exactly (at most the ~100,000 free lots of the plan).
    sensors
        Number of sensor sites, exactly.
    crs
        A projected CRS for every geometry (the plan is drawn in EPSG:5186 and reprojected).

    Examples
    --------
    >>> city = build_demo_city(buildings=2_000, sensors=50)
    >>> len(city.buildings), len(city.sensor_sites), sorted(set(city.districts["level"]))
    (2000, 50, ['dong', 'gu'])
    """
    if CRS.from_user_input(crs).is_geographic:
        raise ValueError(f"crs={crs!r} is geographic; the demo city needs metres (EPSG:5186)")
    if buildings < 0 or sensors < 0:
        raise ValueError(f"buildings and sensors must be >= 0, got {buildings} and {sensors}")
    plan = plan_city(_stream(seed, PLAN))
    source = f"citytwin demo city (seed {seed})"
    roads = build_roads(plan, _stream(seed, ROADS), source)
    built = build_buildings(plan, roads.grid, _stream(seed, BUILDINGS), buildings)
    sites = place_sensors(plan, built, _stream(seed, SENSORS), sensors)
    network = roads.network
    links, nodes = network.links.to_crs(crs), network.nodes.to_crs(crs)
    core = shapely.Point(plan.core.x, plan.core.y).buffer(plan.core.radius)
    river, boundary, core = gpd.GeoSeries(
        [plan.river_polygon(), plan.boundary, core], crs=PLAN_CRS
    ).to_crs(crs)
    return DemoCity(
        seed=seed,
        crs=crs,
        districts=build_districts(plan, _stream(seed, DISTRICTS)).to_crs(crs),
        buildings=built.frame.to_crs(crs),
        roads=RoadNetwork(nodes, links, crs, source),
        bridges=links[links["link_id"].isin(roads.bridges)],
        river=river,
        sensor_sites=sites,
        boundary=boundary,
        core=core,
    )


def _stream(seed: int, layer: int) -> np.random.Generator:
    return np.random.default_rng([seed, layer])
