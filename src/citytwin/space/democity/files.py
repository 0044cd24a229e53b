"""Write a demo city in the files the import commands read."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

from citytwin.space.crs import DEFAULT_CITY_CRS as DEM_CRS
from citytwin.space.crs import WGS84

if TYPE_CHECKING:
    from citytwin.space.democity import DemoCity

DISTRICT_COLUMNS = ("code", "name", "name_eng", "level", "parent_code", "geometry")
BUILDING_COLUMNS = ("key", "use", "levels", "geometry")


def write_demo_city(city: DemoCity, out_dir: str | Path) -> dict[str, Path]:
    """Write the layers into ``out_dir`` (created if needed), replacing earlier files.

    ``districts.geojson`` (WGS84, KOSTAT columns), ``buildings.gpkg`` (city CRS; floor counts
    only, so :func:`~citytwin.space.buildings.load_buildings` derives the same heights from
    3 m storeys), ``road_nodes.gpkg`` and ``road_links.gpkg`` (city CRS, the
    :class:`~citytwin.space.roads.RoadNetwork` columns) and ``sensors.csv`` in the layout of
    S-DoT's registry (``시리얼,위도,경도``, UTF-8), and ``dem.tif``, the terrain (a float32
    GeoTIFF in the city CRS, 20 m cells, :func:`~citytwin.space.democity.dem.build_demo_dem`).

    Returns
    -------
    dict
        Layer name (``districts``, ``buildings``, ``road_nodes``, ``road_links``, ``sensors``,
        ``dem``) to the path written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "districts": out / "districts.geojson",
        "buildings": out / "buildings.gpkg",
        "road_nodes": out / "road_nodes.gpkg",
        "road_links": out / "road_links.gpkg",
        "sensors": out / "sensors.csv",
    }
    for path in paths.values():
        path.unlink(missing_ok=True)
    districts = city.districts[list(DISTRICT_COLUMNS)].to_crs(WGS84)
    districts.to_file(paths["districts"], driver="GeoJSON", engine="pyogrio")
    buildings = city.buildings[list(BUILDING_COLUMNS)]
    buildings.to_file(paths["buildings"], driver="GPKG", engine="pyogrio")
    city.roads.nodes.to_file(paths["road_nodes"], driver="GPKG", engine="pyogrio")
    city.roads.links.to_file(paths["road_links"], driver="GPKG", engine="pyogrio")
    _write_registry(city, paths["sensors"])
    if city.crs == DEM_CRS:  # the terrain is drawn in the default city CRS only
        from citytwin.space.democity.dem import write_demo_dem  # it imports this package

        paths["dem"] = write_demo_dem(out / "dem.tif", seed=city.seed)
    return paths


def _write_registry(city: DemoCity, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["시리얼", "위도", "경도"])
        for site in city.sensor_sites:
            writer.writerow([site.serial, f"{site.lat:.7f}", f"{site.lon:.7f}"])
