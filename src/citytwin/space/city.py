"""The city model in the store: importing layers and binding sensors to districts.

Layers live in the store as feature layers in the city CRS: ``districts`` (gu and dong; key
``gu:<code>`` / ``dong:<code>``), and — as the readers land — ``buildings``, ``road_nodes``,
``road_links``. Re-importing a file replaces features by key; nothing is duplicated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from citytwin.errors import FeedError
from citytwin.model.sensing import Location, Thing
from citytwin.space.binding import bind_to_districts, dong_of_features, nearest_features
from citytwin.space.buildings import load_buildings
from citytwin.space.cityjson import read_cityjson, write_cityjson
from citytwin.space.crs import DEFAULT_CITY_CRS, WGS84
from citytwin.space.districts import Level, load_districts
from citytwin.space.io.tiles3d import write_3dtiles
from citytwin.space.layers import to_batch, to_frame
from citytwin.space.roads import (
    RoadNetwork,
    load_osm_roads,
    load_sumo_network,
    load_tntp_network,
)
from citytwin.store.base import Store

DISTRICTS = "districts"
BUILDINGS = "buildings"
ROAD_NODES, ROAD_LINKS = "road_nodes", "road_links"


@dataclass
class ImportReport:
    """What an import did to one layer."""

    layer: str
    read: int
    inserted: int
    replaced: int
    problems: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def import_districts(
    store: Store,
    path: str | Path,
    *,
    level: Level | None = None,
    crs: str = DEFAULT_CITY_CRS,
    source_crs: str | None = None,
) -> ImportReport:
    """Read a boundary file into the ``districts`` layer (gu and dong side by side)."""
    layer = load_districts(path, level=level, crs=crs, source_crs=source_crs)
    result = store.write_features(DISTRICTS, to_batch(layer.frame))
    counts = layer.frame["level"].value_counts().to_dict()
    notes = [*layer.notes, ", ".join(f"{n} {lvl}" for lvl, n in sorted(counts.items()))]
    return ImportReport(
        DISTRICTS, len(layer.frame), result.inserted, result.duplicates, layer.problems, notes
    )


@dataclass
class BindReport:
    """Sensors placed in districts, and those outside every dong (listed, not guessed)."""

    bound: int
    outside: list[str]
    without_location: int


def bind_sensors(store: Store, *, crs: str = DEFAULT_CITY_CRS) -> BindReport:
    """Give every located Thing its dong and gu (Thing properties gu, gu_code, dong, dong_code),
    and — when those layers exist — its nearest building and road link with their distances
    (``building``, ``building_distance_m``, ``road_link``, ``road_link_distance_m``).

    Aggregates can then group by district: ``store.aggregate(by="thing.gu", ...)``.
    """
    districts = to_frame(store.features(DISTRICTS), crs=crs)
    if not len(districts):
        raise ValueError(
            "no districts in the store; import boundaries first (citytwin import boundaries FILE)"
        )
    things = {t.id: t for t in store.entities(Thing)}
    located = [loc for loc in store.entities(Location) if loc.thing_id in things]
    if not located:
        return BindReport(0, [], len(things))
    lon = np.array([loc.location.coordinates[0] for loc in located])
    lat = np.array([loc.location.coordinates[1] for loc in located])
    binding = bind_to_districts(lon, lat, districts, crs=crs)
    sizes = store.layers()
    nearest = {
        name: nearest_features(lon, lat, to_frame(store.features(layer), crs=crs), crs=crs)
        for name, layer in (("building", BUILDINGS), ("road_link", ROAD_LINKS))
        if sizes.get(layer)
    }
    updated = []
    for i, loc in enumerate(located):
        thing = things[loc.thing_id]
        place: dict[str, object] = {
            "gu_code": binding.gu_code[i],
            "gu": binding.gu_name[i],
            "dong_code": binding.dong_code[i],
            "dong": binding.dong_name[i],
        }
        for name, (keys, metres) in nearest.items():
            place[name] = keys[i]
            place[f"{name}_distance_m"] = round(float(metres[i]), 2)
        updated.append(thing.model_copy(update={"properties": {**thing.properties, **place}}))
    store.register(updated)
    outside = [
        str(things[loc.thing_id].key)
        for loc, out in zip(located, binding.outside, strict=True)
        if out
    ]
    return BindReport(
        len(located) - len(outside), outside, len(things) - len({loc.thing_id for loc in located})
    )


def import_buildings(
    store: Store, path: str | Path, *, crs: str = DEFAULT_CITY_CRS
) -> ImportReport:
    """Store building footprints with heights (layer ``buildings``) from OSM or footprint files."""
    layer = load_buildings(path, crs=crs)
    result = store.write_features(BUILDINGS, to_batch(layer.frame))
    sources = layer.frame["height_source"].value_counts().to_dict() if len(layer.frame) else {}
    notes = ["heights from " + ", ".join(f"{k}: {v:,}" for k, v in sorted(sources.items()))]
    return ImportReport(
        BUILDINGS, len(layer.frame), result.inserted, result.duplicates, layer.problems, notes
    )


def load_network(path: str | Path, *, crs: str = DEFAULT_CITY_CRS) -> RoadNetwork:
    """A road network from OSM XML (``.osm``), SUMO (``.net.xml``) or TNTP (``_net.tntp``)."""
    name = Path(path).name.lower()
    if name.endswith(".net.xml"):
        return load_sumo_network(path, crs=crs)
    if name.endswith(".tntp"):
        return load_tntp_network(path)
    if name.endswith(".osm"):
        return load_osm_roads(path, crs=crs)
    raise FeedError(str(path), "is not a road network file; expected .osm, .net.xml or _net.tntp")


def import_network(
    store: Store, path: str | Path, *, crs: str = DEFAULT_CITY_CRS
) -> list[ImportReport]:
    """Store a network's nodes and links (layers ``road_nodes``, ``road_links``).

    Keys are ``<format>:<id>`` so networks from different sources never overwrite each other,
    while re-importing the same file replaces its features.
    """
    network = load_network(path, crs=crs)
    if network.crs is None:
        raise FeedError(
            str(path),
            "has no geographic coordinates (TNTP networks are abstract); "
            "it can be used for assignment but not placed in the city model",
        )
    return store_network(store, network, kind=_network_kind(path))


def store_network(store: Store, network: RoadNetwork, *, kind: str) -> list[ImportReport]:
    """Write a network's nodes and links as ``road_nodes``/``road_links`` keyed ``<kind>:<id>``."""
    reports = []
    for layer, frame, column in (
        (ROAD_NODES, network.nodes, "node_id"),
        (ROAD_LINKS, network.links, "link_id"),
    ):
        keyed = frame.copy()
        keyed.insert(0, "key", kind + ":" + keyed[column].astype(str))
        result = store.write_features(layer, to_batch(keyed))
        problems = list(network.problems) if layer == ROAD_LINKS else []
        reports.append(
            ImportReport(layer, len(keyed), result.inserted, result.duplicates, problems)
        )
    return reports


def import_cityjson(
    store: Store, path: str | Path, *, crs: str = DEFAULT_CITY_CRS, source_crs: str | None = None
) -> ImportReport:
    """Store the buildings of a CityJSON file (LoD1/LoD2) as footprints with heights.

    Keys are ``cityjson:<CityObject id>``; the height source is ``cityjson``.
    """
    frame = read_cityjson(path, crs=source_crs)
    if frame.crs is None:
        raise FeedError(str(path), "has no referenceSystem; pass its CRS (--source-crs EPSG:…)")
    frame = frame.to_crs(crs)
    frame["key"] = "cityjson:" + frame["key"].astype(str)
    frame["height_source"] = "cityjson"
    result = store.write_features(BUILDINGS, to_batch(frame))
    return ImportReport(BUILDINGS, len(frame), result.inserted, result.duplicates)


EXPORT_FORMATS = ("geojson", "gpkg", "cityjson", "3dtiles")


def export_layer(
    store: Store,
    layer: str,
    out: str | Path,
    *,
    format: str | None = None,
    crs: str = DEFAULT_CITY_CRS,
) -> tuple[int, list[tuple[str, str]]]:
    """Write a layer as GeoJSON (WGS84, as RFC 7946 requires), GeoPackage (city CRS), CityJSON
    2.0 (buildings as LoD1 solids, city CRS) or 3D Tiles 1.1 (buildings; ``out`` is a folder).

    ``format`` defaults to what ``out`` looks like: ``.geojson``, ``.gpkg``, ``.json`` (CityJSON),
    or a folder / ``tileset.json`` (3D Tiles). Returns the number of features written and those
    left out, with reasons.
    """
    format = format or _format_of(Path(out), layer)
    if format not in EXPORT_FORMATS:
        raise ValueError(
            f"unknown export format {format!r}; expected one of {', '.join(EXPORT_FORMATS)}"
        )
    if format in ("cityjson", "3dtiles") and layer != BUILDINGS:
        raise ValueError(f"{format} holds buildings; layer {layer!r} exports as geojson or gpkg")
    frame = to_frame(store.features(layer), crs=crs)
    if layer == BUILDINGS and "dong" not in frame and store.layers().get(DISTRICTS):
        districts = to_frame(store.features(DISTRICTS), crs=crs)
        frame["dong"] = dong_of_features(frame, districts)  # 3D Tiles / CityJSON metadata
    if format == "3dtiles":
        folder = Path(out).parent if Path(out).name == "tileset.json" else Path(out)
        report = write_3dtiles(frame, folder, crs=crs)
        return report.buildings, list(report.skipped)
    if format == "cityjson":
        skipped = write_cityjson(frame, out, crs=crs)
        return len(frame) - len(skipped), skipped
    if format == "geojson":
        frame.to_crs(WGS84).to_file(out, driver="GeoJSON")
    else:
        frame.to_file(out, driver="GPKG", layer=layer)
    return len(frame), []


def _format_of(out: Path, layer: str) -> str:
    suffix = out.suffix.lower()
    if suffix == "" or out.name == "tileset.json":
        return "3dtiles"
    if suffix in (".json", ".cityjson") and layer == BUILDINGS:
        return "cityjson"
    return {".geojson": "geojson", ".json": "geojson", ".gpkg": "gpkg"}.get(suffix, suffix)


def _network_kind(path: str | Path) -> str:
    name = Path(path).name.lower()
    return "sumo" if name.endswith(".net.xml") else "tntp" if name.endswith(".tntp") else "osm"
