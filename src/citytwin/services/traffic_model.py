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
from pathlib import Path

import geopandas as gpd
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize

from citytwin.analysis.render import new_figure, save_figure
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

    @property
    def vehicle_hours_change(self) -> float:
        """After minus before, to 0.1 vehicle-hour (never "-0.0")."""
        return round(self.vehicle_hours - self.vehicle_hours_base, 1) + 0.0


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


def save_flows(flows: CityFlows, out: Path, *, closure: Closure | None = None) -> dict[str, Path]:
    """Write the flows (and a closure's changes) as GeoJSON (WGS84) and PNG maps in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    table = flows.table()
    written = {"flows": _geojson(table, out / "flows.geojson")}
    written["flows map"] = _draw(
        table, "vc", out / "flows.png", cmap="RdYlGn_r", limits=(0.0, 1.2),
        title=f"Peak-hour flows: volume/capacity ({flows.vehicle_hours:,.0f} vehicle-hours)",
    )  # fmt: skip
    if closure is not None:
        links = closure.links
        written["closure"] = _geojson(links, out / "closure.geojson")
        limit = float(links.loc[~links["closed"], "volume_change"].abs().max()) or 1.0
        change = closure.vehicle_hours_change
        written["closure map"] = _draw(
            links, "volume_change", out / "closure.png", cmap="RdBu_r", limits=(-limit, limit),
            width="volume_change",
            title=f"Road closure: volume change (veh/h), {change:+,.1f} vehicle-hours",
        )  # fmt: skip
    return written


def _geojson(frame: gpd.GeoDataFrame, path: Path) -> Path:
    frame.to_crs("EPSG:4326").to_file(path, driver="GeoJSON")
    return path


def _draw(
    links: gpd.GeoDataFrame, column: str, path: Path, *, cmap: str,
    limits: tuple[float, float], title: str, width: str = "volume",
) -> Path:  # fmt: skip
    """The links coloured by ``column``, as wide as ``width`` (its size); closed links dashed."""
    figure, axes = new_figure(title)
    size = links[width].abs().to_numpy(np.float64)
    widths = 0.3 + 3.0 * size / max(float(size.max()), 1.0)
    closed = links["closed"].to_numpy(bool) if "closed" in links else np.zeros(len(links), bool)
    lines = LineCollection(
        [np.asarray(g.coords) for g in links.geometry], cmap=cmap, norm=Normalize(*limits),
        linewidths=np.where(closed, 2.0, widths),
        linestyles=[(0, (2, 2)) if c else "solid" for c in closed],
    )  # fmt: skip
    lines.set_array(links[column].to_numpy(np.float64))
    axes.add_collection(lines)
    axes.autoscale()
    axes.set_aspect("equal")
    figure.colorbar(lines, ax=axes, shrink=0.8).set_label(column.replace("_", " "))
    return save_figure(figure, path)
