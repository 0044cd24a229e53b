"""Peak-hour traffic on a city's own roads: zones from districts, trips from buildings, UE flows.

The classic four-step model's car part, kept small enough to rebuild for any city the twin holds
(no survey data needed, every assumption a keyword argument):

1. **Zones** — one per district (dong), its centroid at the polygon's representative point,
   joined to the road network by *connectors* to the ``connectors`` nearest nodes of the modelled
   road classes (local streets are not modelled, as in a strategic model: connectors stand
   for them).
2. **Trip generation** — productions from residents, estimated from residential floor area
   (:func:`~citytwin.simulate.exposure.floor_areas`, 30 m² per person) times a peak-hour
   car-trip rate; attractions from non-residential floor area, scaled to the productions.
3. **Distribution** — a doubly constrained gravity model with exponential deterrence
   ``exp(−d / decay_km)`` between centroids (Wilson 1967, *Transportation Research* 1(3)),
   balanced by Furness iterations. Trips within a zone do not load the network and are left out.
4. **Assignment** — user equilibrium on the modelled links with their BPR parameters
   (:func:`~citytwin.simulate.assignment.assign`).

The default ``trip_rate`` of 0.045 car trips per resident in the peak hour is an order of
magnitude, not a calibration: about 2.3 trips per person per day, a quarter of them by car, 1.3
people per car and a tenth of the day's trips in the peak hour. Through traffic from outside the
city, buses and goods vehicles are not modelled: volumes are a lower bound on a real peak.

A closure (:meth:`CityTraffic.close`) removes both directions of the named streets and assigns
again; :func:`compare_flows` gives every link's change and the change in total travel time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from numpy.typing import NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from citytwin.errors import ValidationError
from citytwin.simulate.assignment import AssignmentNetwork, AssignmentResult, assign
from citytwin.simulate.assignment_whatif import close_links, compare
from citytwin.simulate.exposure import floor_areas

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
#: OSM classes a strategic model keeps; residential and service streets are the connectors' job.
MODELLED_CLASSES = (
    "motorway", "trunk", "primary", "secondary", "tertiary",
    "motorway_link", "trunk_link", "primary_link", "secondary_link", "tertiary_link",
)  # fmt: skip
RESIDENTIAL_USES = ("residential", "apartments", "house", "detached", "terrace", "dormitory")
LINK_COLUMNS = ("link_id", "from_node", "to_node", "capacity_veh_h", "free_flow_time", "b",
                "power", "length_m")  # fmt: skip
CONNECTOR_SPEED_KMH = 30.0  # the local streets a connector stands for
CONNECTOR_CAPACITY = 1e6  # connectors never congest


@dataclass(frozen=True)
class TripTable:
    """Zones (``code, name, x, y, productions, attractions``) and zone × zone peak-hour trips."""

    zones: pd.DataFrame
    trips: FloatArray

    @property
    def total(self) -> float:
        """All trips between zones in the peak hour."""
        return float(self.trips.sum())


def trip_table(
    districts: gpd.GeoDataFrame,
    buildings: gpd.GeoDataFrame,
    *,
    trip_rate: float = 0.045,
    floor_area_per_person: float = 30.0,
    decay_km: float = 3.0,
    residential_uses: Sequence[str] = RESIDENTIAL_USES,
    iterations: int = 100,
) -> TripTable:
    """Peak-hour car trips between districts, from their buildings (module docstring, steps 1–3).

    ``districts`` need ``code`` and polygons; ``buildings`` footprints, ``height`` and ``use``,
    in the same projected CRS (metres).

    >>> from shapely.geometry import box
    >>> zones = gpd.GeoDataFrame({"code": ["a", "b"]}, geometry=[box(0, 0, 1e3, 1e3),
    ...                          box(1e3, 0, 2e3, 1e3)])
    >>> homes = gpd.GeoDataFrame({"height": [30.0, 30.0], "use": ["residential", "office"]},
    ...                          geometry=[box(100, 100, 200, 200), box(1100, 100, 1200, 200)])
    >>> # 10 floors of 100 m x 100 m house 100,000 m² / 30 m² = 3,333 people: 333 trips, all to b
    >>> trip_table(zones, homes, trip_rate=0.1).trips.round(1).tolist()
    [[0.0, 333.3], [0.0, 0.0]]
    """
    if not (trip_rate > 0 and floor_area_per_person > 0 and decay_km > 0):
        raise ValidationError(
            f"trip_rate {trip_rate}, floor_area_per_person {floor_area_per_person}, decay_km "
            f"{decay_km}: expected positive numbers"
        )
    zones = _zone_frame(districts)
    area = floor_areas(buildings)
    zone_of = _zone_of(zones, districts, buildings)
    housed = buildings["use"].isin(list(residential_uses)).to_numpy() if "use" in buildings else (
        np.ones(len(buildings), bool)
    )  # fmt: skip
    homes = np.bincount(zone_of[housed], area[housed], minlength=len(zones) + 1)[: len(zones)]
    work = np.bincount(zone_of[~housed], area[~housed], minlength=len(zones) + 1)[: len(zones)]
    productions = homes / floor_area_per_person * trip_rate
    attractions = work * (productions.sum() / work.sum()) if work.sum() > 0 else productions
    distance = np.hypot(*(zones[c].to_numpy()[:, None] - zones[c].to_numpy() for c in "xy")) / 1e3
    deterrence = np.exp(-distance / decay_km)
    np.fill_diagonal(deterrence, 0.0)
    trips = furness(deterrence, productions, attractions, iterations=iterations)
    zones = zones.assign(productions=trips.sum(axis=1), attractions=trips.sum(axis=0))
    return TripTable(zones, trips)


def furness(
    seed: FloatArray, rows: FloatArray, columns: FloatArray, *, iterations: int = 100
) -> FloatArray:
    """``seed`` scaled so its row sums approach ``rows`` and column sums ``columns``.

    Alternating row and column factors (Furness 1965; iterative proportional fitting). Rows or
    columns that the seed cannot reach stay empty.

    >>> furness(np.ones((2, 2)), np.array([3.0, 1.0]), np.array([2.0, 2.0])).round(3).tolist()
    [[1.5, 1.5], [0.5, 0.5]]
    """
    matrix = np.asarray(seed, dtype=np.float64) * rows[:, None] * columns[None, :]
    for _ in range(iterations):
        matrix *= _ratio(rows, matrix.sum(axis=1))[:, None]
        matrix *= _ratio(columns, matrix.sum(axis=0))[None, :]
    return matrix


def _ratio(target: FloatArray, current: FloatArray) -> FloatArray:
    return np.divide(target, current, out=np.zeros_like(target), where=current > 0)


def _zone_frame(districts: gpd.GeoDataFrame) -> pd.DataFrame:
    if "code" not in districts or districts.empty:
        raise ValidationError("districts: expected at least one polygon with a 'code' column")
    centre = districts.geometry.representative_point()
    names = districts["name"] if "name" in districts else districts["code"]
    return pd.DataFrame({"code": districts["code"].astype(str).to_numpy(),
                         "name": names.astype(str).to_numpy(),
                         "x": centre.x.to_numpy(), "y": centre.y.to_numpy()})  # fmt: skip


def _zone_of(
    zones: pd.DataFrame, districts: gpd.GeoDataFrame, buildings: gpd.GeoDataFrame
) -> NDArray[np.intp]:
    """The district each building's representative point lies in (``len(zones)`` outside all)."""
    points = buildings.geometry.representative_point().to_numpy()
    found = np.full(len(buildings), len(zones), dtype=np.intp)
    tree = shapely.STRtree(districts.geometry.to_numpy())
    point, polygon = tree.query(points, predicate="within")
    found[point] = polygon
    return found


@dataclass(frozen=True)
class CityTraffic:
    """A city's assignment model: connectors first, then the modelled road links.

    ``links`` are the modelled road links (``link_id``, ``from_node``, ``to_node``, geometry, …)
    in network order after the ``n_connectors`` connector links.
    """

    network: AssignmentNetwork
    trips: TripTable
    links: gpd.GeoDataFrame
    n_connectors: int

    def flows(self, *, gap: float = 1e-4, max_iterations: int = 500) -> CityFlows:
        """User-equilibrium peak-hour flows on every modelled link."""
        result = assign(self.network, self.trips.trips, gap=gap, max_iterations=max_iterations)
        return CityFlows(self, result)

    def close(self, link_ids: Sequence[str]) -> CityTraffic:
        """The model without the streets of ``link_ids``, both directions (a road closure)."""
        chosen = self.links[self.links["link_id"].astype(str).isin([str(i) for i in link_ids])]
        unknown = sorted(set(map(str, link_ids)) - set(chosen["link_id"].astype(str)))
        if unknown or not len(link_ids):
            raise ValidationError(
                f"road closure: unknown link(s) {', '.join(unknown) or '(none given)'}; expected "
                f"ids of modelled links ({', '.join(self.links['link_id'].astype(str)[:3])}, …)"
            )
        ends = set(zip(chosen["from_node"], chosen["to_node"], strict=True))
        twins = {(b, a) for a, b in ends}
        present = set(zip(self.links["from_node"], self.links["to_node"], strict=True))
        pairs = sorted((ends | twins) & present)
        closed = self.links["from_node"].map(str) + "|" + self.links["to_node"].map(str)
        keep = ~closed.isin([f"{a}|{b}" for a, b in pairs])
        network = close_links(self.network, pairs)
        return replace(self, network=network, links=self.links[keep.to_numpy()])


@dataclass(frozen=True)
class CityFlows:
    """An assignment of a :class:`CityTraffic` model: per-link volume, v/c and speed."""

    model: CityTraffic
    result: AssignmentResult

    def table(self) -> gpd.GeoDataFrame:
        """The modelled links with ``volume`` (veh/h), ``vc`` (volume/capacity), ``time_min``
        and ``speed_kmh`` (congested)."""
        road = slice(self.model.n_connectors, None)
        volume, time = self.result.volume[road], self.result.time[road]
        links = self.model.links
        capacity = links["capacity_veh_h"].to_numpy(np.float64)
        length_km = links["length_m"].to_numpy(np.float64) / 1e3
        speed = np.divide(length_km * 60.0, time, out=np.zeros_like(time), where=time > 0)
        return links.assign(volume=volume, vc=volume / capacity, time_min=time, speed_kmh=speed)

    @property
    def vehicle_hours(self) -> float:
        """Total system travel time of the peak hour, vehicle-hours (connectors included)."""
        return self.result.tstt / 60.0


def compare_flows(base: CityFlows, variant: CityFlows) -> gpd.GeoDataFrame:
    """Every modelled link of ``base`` with its variant ``volume_after``, ``vc_after`` and
    ``volume_change`` (a closed link: 0 after, ``closed`` True); ``attrs`` hold the vehicle-hours
    before and after."""
    change = compare(base.result, variant.result)
    keys = change.set_index(["from", "to"])
    table = base.table()
    index = _ends(table)
    after = keys["volume_variant"].groupby(level=[0, 1]).sum().reindex(index).to_numpy()
    closed = ~index.isin(_ends(variant.model.links))
    table = table.assign(volume_after=np.where(closed, 0.0, after), closed=closed)
    table["volume_change"] = table["volume_after"] - table["volume"]
    table["vc_after"] = table["volume_after"] / table["capacity_veh_h"]
    table.attrs.update(vehicle_hours_base=base.vehicle_hours,
                       vehicle_hours_variant=variant.vehicle_hours)  # fmt: skip
    return table


def _ends(links: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_arrays([links["from_node"].astype(str), links["to_node"].astype(str)])


def city_traffic(
    links: gpd.GeoDataFrame,
    trips: TripTable,
    *,
    classes: Sequence[str] = MODELLED_CLASSES,
    connectors: int = 3,
) -> CityTraffic:
    """The assignment model of ``links`` (the road link table, :data:`LINK_COLUMNS` and
    ``road_class``, line geometries in the zones' CRS) for ``trips``.

    Only links of ``classes`` in the largest strongly connected part of them are modelled, so
    every zone reaches every other; each zone connects to its ``connectors`` nearest nodes.
    """
    missing = [c for c in (*LINK_COLUMNS, "road_class") if c not in links]
    if missing:
        raise ValidationError(f"road links: missing column(s) {', '.join(missing)}")
    kept = _strongly_connected(links[links["road_class"].isin(list(classes))])
    if kept.empty:
        raise ValidationError(
            f"road links: none of class {', '.join(classes)}; expected a network with arterials"
        )
    nodes, xy = _node_points(kept)
    connector = _connectors(trips.zones, nodes, xy, connectors)
    n_zones = len(trips.zones)
    index = {node: n_zones + i for i, node in enumerate(nodes)}
    road = {"tail": kept["from_node"].map(index), "head": kept["to_node"].map(index)}

    def column(name: str, fill: float | NDArray[np.generic]) -> FloatArray:
        values = kept[name].to_numpy(np.float64)
        return np.concatenate([np.broadcast_to(fill, len(connector["tail"])), values])

    network = AssignmentNetwork(
        node_ids=tuple([f"zone:{c}" for c in trips.zones["code"]] + list(nodes)),
        tail=np.concatenate([connector["tail"], road["tail"]]).astype(np.int64),
        head=np.concatenate([connector["head"], road["head"]]).astype(np.int64),
        capacity=column("capacity_veh_h", CONNECTOR_CAPACITY),
        free_flow_time=column("free_flow_time", connector["minutes"]),
        b=column("b", 0.0), power=column("power", 4.0),
        length=column("length_m", connector["metres"]),
        toll=np.zeros(len(connector["tail"]) + len(kept)),
        n_zones=n_zones, first_thru_node=n_zones + 1, source="city road links",
    )  # fmt: skip
    logger.info("traffic model: %d zones, %d road links, %d connectors, %.0f trips",
                n_zones, len(kept), len(connector["tail"]), trips.total)  # fmt: skip
    return CityTraffic(network, trips, kept.reset_index(drop=True), len(connector["tail"]))


def _strongly_connected(links: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    nodes = pd.Index(pd.unique(pd.concat([links["from_node"], links["to_node"]]).astype(str)))
    tail = nodes.get_indexer(links["from_node"].astype(str))
    head = nodes.get_indexer(links["to_node"].astype(str))
    graph = coo_matrix((np.ones(len(links)), (tail, head)), shape=(len(nodes), len(nodes)))
    _, label = connected_components(graph, directed=True, connection="strong")
    largest = np.bincount(label).argmax() if len(label) else 0
    inside = (label[tail] == largest) & (label[head] == largest)
    if (~inside).any():
        logger.info("traffic model: %d links outside the main network left out", (~inside).sum())
    return links[inside]


def _node_points(links: gpd.GeoDataFrame) -> tuple[list[str], FloatArray]:
    """Each node's coordinates, from the first and last vertex of the links at it."""
    first = shapely.get_coordinates(shapely.get_point(links.geometry.to_numpy(), 0))
    last = shapely.get_coordinates(shapely.get_point(links.geometry.to_numpy(), -1))
    ends = pd.DataFrame(
        np.vstack([first, last]), columns=["x", "y"],
        index=pd.concat([links["from_node"], links["to_node"]]).astype(str).to_numpy(),
    )  # fmt: skip
    points = ends.groupby(level=0, sort=False).first()
    return points.index.tolist(), points.to_numpy(np.float64)


def _connectors(
    zones: pd.DataFrame, nodes: list[str], xy: FloatArray, count: int
) -> dict[str, NDArray[np.generic]]:
    """Both directions between each zone and its ``count`` nearest nodes."""
    k = max(1, min(count, len(nodes)))
    distance, nearest = cKDTree(xy).query(zones[["x", "y"]].to_numpy(), k=k)
    distance, nearest = distance.reshape(len(zones), k), nearest.reshape(len(zones), k)
    zone = np.repeat(np.arange(len(zones)), k)
    node = nearest.ravel() + len(zones)
    metres = np.maximum(distance.ravel(), 1.0)
    minutes = metres / 1e3 / CONNECTOR_SPEED_KMH * 60.0
    return {"tail": np.concatenate([zone, node]), "head": np.concatenate([node, zone]),
            "metres": np.tile(metres, 2), "minutes": np.tile(minutes, 2)}  # fmt: skip
