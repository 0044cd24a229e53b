"""Sensors bound to the nearest building and road link of the imported Jamsil extract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import shapely

from citytwin.ingest import read_feed
from citytwin.ingest.pipeline import ingest
from citytwin.model import Thing
from citytwin.space.binding import nearest_features
from citytwin.space.buildings import load_buildings
from citytwin.space.city import bind_sensors, import_buildings, import_districts, import_network
from citytwin.space.crs import to_city
from citytwin.store import open_store

JAMSIL_SENSORS = ["V02Q1940790", "V02Q1940787"]  # registry sensors inside the OSM extract


def test_nearest_building_matches_brute_force(shared_data: Path) -> None:
    buildings = load_buildings(shared_data / "osm" / "asanH.osm").frame
    lon, lat = np.array([127.1000, 127.0850, 127.1200]), np.array([37.5130, 37.5200, 37.5300])
    keys, metres = nearest_features(lon, lat, buildings)
    x, y = to_city(lon, lat)
    for i in range(len(lon)):
        distances = buildings.geometry.distance(shapely.Point(x[i], y[i]))
        assert keys[i] == buildings["key"].to_numpy()[int(np.argmin(distances.to_numpy()))]
        assert metres[i] == distances.min()


def test_bind_adds_district_building_and_link(shared_data: Path, tmp_path: Path) -> None:
    registry = shared_data / "sdot" / "sensor_longitude_latitude.csv"
    data = tmp_path / "sdot.csv"
    data.write_text(
        "시리얼,미세먼지2.5(초미세먼지),측정시간\n"
        + "\n".join(f"{s},10,202003150000" for s in JAMSIL_SENSORS),
        encoding="utf-8",
    )
    osm = shared_data / "osm" / "asanH.osm"
    with open_store(f"duckdb:///{tmp_path / 'c.duckdb'}") as store:
        import_districts(
            store, shared_data / "seoul_boundaries/kostat/2013/shp/seoul_submunicipalities.shp"
        )
        first = import_buildings(store, osm)
        again = import_buildings(store, osm)
        import_network(store, osm)
        ingest(read_feed("sdot", str(data), registry=str(registry)), store)
        report = bind_sensors(store)
        things = {t.properties["serial"]: t.properties for t in store.entities(Thing)}
        layers = store.layers()
    assert (first.inserted, again.inserted, again.replaced) == (1357, 0, 1357)
    assert layers["buildings"] == 1357
    assert report.bound == 2
    for serial in JAMSIL_SENSORS:
        place = things[serial]
        assert place["gu_code"] == "11240"  # 송파구
        assert str(place["building"]).startswith("osm:")
        assert 0 <= place["building_distance_m"] < 100
        assert place["road_link_distance_m"] < 150
