"""The city's own traffic model, built from the store: peak-hour flows and road closures.

:func:`build_traffic_model` reads the stored ``road_links``, the finest district level and the
buildings, and builds :class:`~citytwin.simulate.city_traffic.CityTraffic` (zones, gravity trips,
connectors). :class:`TrafficModels` keeps one model and its base flows per store, rebuilt only
when those layers change, and runs closures one at a time with a small cache — an assignment
takes seconds and the server has few cores, so two operators clicking the same street share one.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import geopandas as gpd

from citytwin.errors import ValidationError
from citytwin.simulate.city_traffic import (
    CityFlows,
    CityTraffic,
    city_traffic,
    compare_flows,
    trip_table,
)
from citytwin.space.crs import DEFAULT_CITY_CRS
from citytwin.space.layers import to_frame
from citytwin.store.base import Store

logger = logging.getLogger(__name__)

LAYERS = ("road_links", "districts", "buildings")
#: Closures kept per store: a control room tries a handful of streets, not hundreds.
CLOSURE_CACHE = 16


def build_traffic_model(store: Store, *, crs: str = DEFAULT_CITY_CRS) -> CityTraffic:
    """The traffic model of the city in ``store`` (roads, finest districts, buildings)."""
    counts = store.layers()
    missing = [layer for layer in LAYERS if not counts.get(layer)]
    if missing:
        raise ValidationError(
            f"traffic model: the store has no {', '.join(missing)}; expected a city imported "
            "with `citytwin city import` (or built by `citytwin demo`)"
        )
    links = to_frame(store.features("road_links"), crs=crs)
    districts = _finest(to_frame(store.features("districts"), crs=crs))
    buildings = _with_heights(to_frame(store.features("buildings"), crs=crs))
    return city_traffic(links, trip_table(districts, buildings))


def _finest(districts: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The district level with the most polygons (dong in Seoul)."""
    if "level" not in districts:
        return districts
    level = districts["level"].value_counts().idxmax()
    return districts[districts["level"] == level].reset_index(drop=True)


def _with_heights(buildings: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    if "height" not in buildings:
        raise ValidationError("traffic model: stored buildings have no height; expected metres")
    usable = buildings["height"].astype(float) > 0
    if (~usable).any():
        logger.info("traffic model: %d buildings without a height left out", (~usable).sum())
    return buildings[usable.to_numpy()]


@dataclass(frozen=True)
class Closure:
    """A closure's links (every modelled link, with ``volume_after``, ``volume_change``,
    ``closed``) and the peak hour's vehicle-hours before and after."""

    links: gpd.GeoDataFrame
    vehicle_hours_base: float
    vehicle_hours: float


class TrafficModels:
    """One model and its base flows per store, and the last few closures (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[object, ...] | None = None
        self._base: CityFlows | None = None
        self._closures: OrderedDict[tuple[str, ...], Closure] = OrderedDict()

    def base(self, key: tuple[object, ...], build: Callable[[], CityTraffic]) -> CityFlows:
        """The base flows for the city whose :func:`layer_key` is ``key``; ``build()`` makes its
        model when the key changed. One assignment runs at a time."""
        with self._lock:
            if self._base is None or key != self._key:
                self._base, self._key = build().flows(), key
                self._closures.clear()
            return self._base

    def closure(self, base: CityFlows, link_ids: Sequence[str]) -> Closure:
        """``base`` with the streets of ``link_ids`` closed, assigned again (cached)."""
        key = tuple(sorted({str(i) for i in link_ids}))
        with self._lock:
            if key not in self._closures:
                variant = base.model.close(list(key)).flows()
                table = compare_flows(base, variant)
                self._closures[key] = Closure(table, base.vehicle_hours, variant.vehicle_hours)
                while len(self._closures) > CLOSURE_CACHE:
                    self._closures.popitem(last=False)
            self._closures.move_to_end(key)
            return self._closures[key]


def layer_key(store: Store) -> tuple[object, ...]:
    """What the model depends on: the feature counts of its layers (re-imports change them)."""
    counts = store.layers()
    return tuple(counts.get(layer, 0) for layer in LAYERS)
