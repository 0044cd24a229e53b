"""Districts from every supported format; sensors bound to exactly one dong or reported outside."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from citytwin.errors import FeedError
from citytwin.ingest import read_feed
from citytwin.ingest.pipeline import ingest
from citytwin.model import Thing
from citytwin.space.binding import bind_to_districts
from citytwin.space.city import bind_sensors, import_districts
from citytwin.space.districts import load_districts
from citytwin.store import open_store

KOSTAT = Path("seoul_boundaries") / "kostat" / "2013"
FORMATS = [
    ("json/seoul_municipalities_geo.json", "gu", 25),
    ("json/seoul_municipalities_geo_simple.json", "gu", 25),
    ("json/seoul_submunicipalities_geo_simple.json", "dong", 423),
    ("json/seoul_submunicipalities_topo.json", "dong", 423),  # TopoJSON
    ("shp/seoul_submunicipalities.shp", "dong", 423),  # Shapefile
]


def _feature_count(path: Path) -> int:
    """Count features straight from the file (GeoJSON features or TopoJSON geometries)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if data["type"] == "Topology":
        return sum(len(obj["geometries"]) for obj in data["objects"].values())
    return len(data["features"])


@pytest.mark.parametrize(("name", "level", "expected"), FORMATS)
def test_seoul_boundaries_in_every_format(
    shared_data: Path, name: str, level: str, expected: int
) -> None:
    path = shared_data / KOSTAT / name
    layer = load_districts(path)
    if path.suffix == ".json":
        assert _feature_count(path) == expected
    assert len(layer) == expected
    assert set(layer.frame["level"]) == {level}
    assert layer.frame.crs.to_epsg() == 5186
    assert layer.problems == []
    assert layer.frame["key"].is_unique
    jongno = layer.frame[layer.frame["code"].str.startswith("11010")]
    assert len(jongno) >= 1  # 종로구 (code 11010) and its dongs keep codes and names


def test_codes_names_and_parents(shared_data: Path) -> None:
    dong = load_districts(shared_data / KOSTAT / "shp/seoul_submunicipalities.shp").frame
    gil = dong[dong["code"] == "1125074"].iloc[0]
    assert (gil["name"], gil["name_eng"], gil["parent_code"]) == ("길동", "Gil-dong", "11250")


def test_geopackage_and_missing_crs(tmp_path: Path, shared_data: Path) -> None:
    gu = load_districts(shared_data / KOSTAT / "json/seoul_municipalities_geo.json").frame
    gpkg = tmp_path / "gu.gpkg"
    gu.drop(columns=["key", "level", "parent_code"]).to_file(gpkg, driver="GPKG")
    again = load_districts(gpkg)
    assert len(again) == 25
    assert again.frame.geometry.area.sum() == pytest.approx(gu.geometry.area.sum(), rel=1e-9)
    metric = tmp_path / "metric.geojson"  # metres with no CRS, as a careless export would be
    plain = gu.drop(columns=["key", "level", "parent_code", "geometry"])
    features = [
        {"type": "Feature", "properties": dict(p), "geometry": shapely.geometry.mapping(g)}
        for p, g in zip(plain.to_dict("records"), gu.geometry, strict=True)
    ]
    metric.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    with pytest.raises(FeedError, match="coordinates are not degrees"):
        load_districts(metric)
    assert len(load_districts(metric, source_crs="EPSG:5186")) == 25


def test_broken_geometries_repaired_or_reported(tmp_path: Path) -> None:
    bowtie = shapely.Polygon([(126.97, 37.56), (126.99, 37.58), (126.99, 37.56), (126.97, 37.58)])
    good = shapely.box(126.97, 37.56, 126.99, 37.58)
    swapped = shapely.box(37.56, 126.97, 37.58, 126.99)  # lat/lon swapped
    frame = gpd.GeoDataFrame(
        {"code": ["11010", "11020", "11030"], "name": ["a", "b", "c"]},
        geometry=[bowtie, good, swapped],
        crs="EPSG:4326",
    )
    path = tmp_path / "broken.geojson"
    frame.to_file(path, driver="GeoJSON")
    layer = load_districts(path)
    assert set(layer.frame["code"]) >= {"11010", "11020"}  # the bow-tie is repaired
    assert layer.frame.geometry.is_valid.all()
    assert any(key == "gu:11030" and "outside Korea" in reason for key, reason in layer.problems)


def test_each_sdot_sensor_in_exactly_one_dong_or_outside(shared_data: Path) -> None:
    districts = pd.concat([
        load_districts(shared_data / KOSTAT / "json/seoul_municipalities_geo.json").frame,
        load_districts(shared_data / KOSTAT / "shp/seoul_submunicipalities.shp").frame,
    ], ignore_index=True)  # fmt: skip
    with (shared_data / "sdot" / "sensor_longitude_latitude.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    lon = np.array([float(r["경도"]) for r in rows])
    lat = np.array([float(r["위도"]) for r in rows])
    binding = bind_to_districts(lon, lat, districts)
    assert len(rows) == 851
    # ground truth by brute force: which dong polygons contain each point
    dongs = districts[districts["level"] == "dong"].to_crs("EPSG:4326")
    contains = [
        np.flatnonzero(dongs.intersects(shapely.Point(x, y)))
        for x, y in zip(lon, lat, strict=False)
    ]
    for i, hits in enumerate(contains):
        if len(hits) == 0:
            assert binding.outside[i]
        else:
            assert binding.dong_code[i] == min(dongs["code"].to_numpy()[hits])
            assert binding.gu_code[i] == binding.dong_code[i][:5]
    assert int(binding.outside.sum()) == sum(1 for hits in contains if len(hits) == 0)


def test_import_is_idempotent_and_binding_feeds_district_rollups(
    shared_data: Path, tmp_path: Path
) -> None:
    registry = shared_data / "sdot" / "sensor_longitude_latitude.csv"
    serials = [line.split(",")[0] for line in registry.read_text("utf-8").splitlines()[1:6]]
    data = tmp_path / "sdot.csv"
    data.write_text(
        "시리얼,미세먼지2.5(초미세먼지),측정시간\n"
        + "\n".join(f"{s},{10 * (i + 1)},202003150000" for i, s in enumerate(serials)),
        encoding="utf-8",
    )
    with open_store(f"duckdb:///{tmp_path / 'c.duckdb'}") as store:
        first = import_districts(store, shared_data / KOSTAT / "json/seoul_municipalities_geo.json")
        import_districts(store, shared_data / KOSTAT / "shp/seoul_submunicipalities.shp")
        again = import_districts(store, shared_data / KOSTAT / "shp/seoul_submunicipalities.shp")
        assert (first.inserted, again.inserted, again.replaced) == (25, 0, 423)
        assert store.layers() == {"districts": 25 + 423}
        ingest(read_feed("sdot", str(data), registry=str(registry)), store)
        report = bind_sensors(store)
        things = {t.properties["serial"]: t.properties for t in store.entities(Thing)}
        rollup = store.aggregate(bucket="day", by="thing.gu", observed_property="pm25")
    assert report.bound + len(report.outside) == 5
    assert all(things[s]["gu_code"] == things[s]["dong_code"][:5] for s in serials
               if things[s]["dong_code"])  # fmt: skip
    assert sum(rollup.column("count").to_pylist()) == report.bound
