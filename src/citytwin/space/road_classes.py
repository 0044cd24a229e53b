"""Road-class planning defaults and the link table readers fill from them.

Shared by :mod:`citytwin.space.roads` (the :class:`~citytwin.space.roads.RoadNetwork` model) and
the format readers in :mod:`citytwin.space.io`, so neither has to import the other. The values are
planning defaults, not measurements: speeds follow Korea's "safe speed 5030" rule (50 km/h on urban
arterials, 30 km/h in residential streets, since April 2021); per-lane capacities are HCM-style
(Highway Capacity Manual 2010) round figures for uninterrupted (motorway 2,000 veh/h/lane) down to
signalised and local streets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from numpy.typing import NDArray

BPR_B = 0.15  # Bureau of Public Roads (1964) volume-delay defaults
BPR_POWER = 4.0


@dataclass(frozen=True)
class RoadClass:
    """Planning defaults for one OSM ``highway`` class.

    Attributes
    ----------
    speed_kmh
        Free-flow speed when no ``maxspeed`` is tagged.
    lanes
        Lanes per direction when no ``lanes`` is tagged.
    capacity_per_lane
        Vehicles per hour per lane.
    """

    speed_kmh: float
    lanes: int
    capacity_per_lane: float


ROAD_CLASSES: dict[str, RoadClass] = {
    "motorway": RoadClass(100, 2, 2000),
    "trunk": RoadClass(80, 2, 1800),
    "primary": RoadClass(50, 2, 1600),
    "secondary": RoadClass(50, 2, 1400),
    "tertiary": RoadClass(50, 1, 1000),
    "unclassified": RoadClass(30, 1, 800),
    "residential": RoadClass(30, 1, 600),
    "living_street": RoadClass(20, 1, 300),
    "service": RoadClass(20, 1, 300),
    "motorway_link": RoadClass(60, 1, 1600),
    "trunk_link": RoadClass(50, 1, 1400),
    "primary_link": RoadClass(40, 1, 1200),
    "secondary_link": RoadClass(40, 1, 1000),
    "tertiary_link": RoadClass(30, 1, 800),
}
#: OSM ``highway`` values a car may drive on; footways, cycleways, tracks, paths are left out.
DRIVEABLE_CLASSES: tuple[str, ...] = tuple(ROAD_CLASSES)
FALLBACK_CLASS = "unclassified"  # defaults for a SUMO type we do not know
IMPLIED_ONEWAY = frozenset({"motorway", "motorway_link"})  # oneway unless tagged otherwise

#: What the OSM and SUMO readers return: nodes, links and ``(where, what)`` problems.
NetworkFrames = tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, list[tuple[str, str]]]


@dataclass
class LinkRows:
    """Per-link values collected by a reader before they become a frame."""

    link_id: list[str] = field(default_factory=list)
    from_node: list[str] = field(default_factory=list)
    to_node: list[str] = field(default_factory=list)
    lanes: list[int] = field(default_factory=list)
    free_speed_kmh: list[float] = field(default_factory=list)
    road_class: list[str] = field(default_factory=list)
    name: list[str] = field(default_factory=list)

    def add(self, ids: tuple[str, str, str], lanes: int, speed: float, cls: str, name: str) -> None:
        self.link_id.append(ids[0])
        self.from_node.append(ids[1])
        self.to_node.append(ids[2])
        self.lanes.append(lanes)
        self.free_speed_kmh.append(speed)
        self.road_class.append(cls)
        self.name.append(name)


def build_link_frame(
    rows: LinkRows, length_m: NDArray[np.float64], geometry: NDArray[np.object_], crs: str
) -> gpd.GeoDataFrame:
    """Links with capacity, free-flow time (minutes) and BPR defaults derived from the class."""
    defaults = [ROAD_CLASSES.get(c, ROAD_CLASSES[FALLBACK_CLASS]) for c in rows.road_class]
    lanes = np.asarray(rows.lanes, np.int64)
    speed = np.asarray(rows.free_speed_kmh, float)
    rank = {c: i + 1 for i, c in enumerate(DRIVEABLE_CLASSES)}
    frame = pd.DataFrame(
        {
            "link_id": rows.link_id,
            "from_node": rows.from_node,
            "to_node": rows.to_node,
            "length_m": length_m,
            "lanes": lanes,
            "free_speed_kmh": speed,
            "capacity_veh_h": lanes * np.asarray([d.capacity_per_lane for d in defaults], float),
            "road_class": rows.road_class,
            "name": rows.name,
            "free_flow_time": length_m / 1000 / speed * 60,
            "b": BPR_B,
            "power": BPR_POWER,
            "toll": 0.0,
            "link_type": np.asarray([rank.get(c, 0) for c in rows.road_class], np.int64),
        }
    )
    return gpd.GeoDataFrame(frame, geometry=geometry, crs=crs)


def build_node_frame(
    ids: list[str], x: NDArray[np.float64], y: NDArray[np.float64], crs: str | None
) -> gpd.GeoDataFrame:
    """Nodes ``ids`` at points (x, y) in ``crs``."""
    return gpd.GeoDataFrame({"node_id": ids}, geometry=shapely.points(x, y), crs=crs)
