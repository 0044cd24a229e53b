"""Buildings: Jamsil's OSM buildings (XML and PBF), footprint files, repairs and problems."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import osmium
import pandas as pd
import pytest
import shapely

from citytwin.errors import FeedError
from citytwin.space.buildings import COLUMNS, BuildingLayer, load_buildings, parse_lengths
from citytwin.space.crs import to_city, to_wgs84

# --- Jamsil, Seoul: ../shared/data/osm/asanH.osm -------------------------------------------------


@pytest.fixture(scope="module")
def jamsil_osm(shared_data: Path) -> Path:
    return shared_data / "osm" / "asanH.osm"


@pytest.fixture(scope="module")
def jamsil(jamsil_osm: Path) -> BuildingLayer:
    return load_buildings(jamsil_osm)


def _scan_buildings(path: Path) -> dict[str, dict[str, str]]:
    """Tags of every closed building way and building multipolygon, by key — a plain XML scan."""
    found: dict[str, dict[str, str]] = {}
    for element in ET.parse(path).getroot():
        tags = {tag.attrib["k"]: tag.attrib["v"] for tag in element.iter("tag")}
        if tags.get("building", "no") == "no":
            continue
        refs = [nd.attrib["ref"] for nd in element.findall("nd")]
        if element.tag == "way" and len(refs) > 3 and refs[0] == refs[-1]:
            found[f"osm:way/{element.attrib['id']}"] = tags
        elif element.tag == "relation" and tags.get("type") == "multipolygon":
            found[f"osm:relation/{element.attrib['id']}"] = tags
    return found


def test_every_building_way_and_multipolygon_becomes_a_footprint(
    jamsil: BuildingLayer, jamsil_osm: Path
) -> None:
    expected = _scan_buildings(jamsil_osm)
    ways = [key for key in expected if key.startswith("osm:way/")]
    assert len(ways) == 1355  # PROVENANCE.md
    assert len(expected) == 1357  # + relations 6185424 (SOMA museum), 16563734 (Peace Gate)
    assert sorted(jamsil.frame["key"]) == sorted(expected)
    assert jamsil.problems == []
    assert list(jamsil.frame.columns) == list(COLUMNS)
    assert jamsil.source == str(jamsil_osm)


def test_height_sources_follow_the_tags(jamsil: BuildingLayer, jamsil_osm: Path) -> None:
    expected = _scan_buildings(jamsil_osm)
    tagged = {k for k, tags in expected.items() if {"height", "building:levels"} & tags.keys()}
    frame = jamsil.frame.set_index("key")
    measured = frame.index[frame["height_source"].isin(["height", "levels"])]
    assert set(measured) == tagged
    assert sum(key.startswith("osm:way/") for key in measured) == 863  # PROVENANCE.md
    with_height = [key for key in tagged if "height" in expected[key]]
    assert frame.loc[with_height, "height"].tolist() == [
        float(expected[key]["height"]) for key in with_height
    ]
    assert (frame.loc[~frame.index.isin(tagged), "height"] == 9.0).all()


@pytest.mark.parametrize(
    ("key", "height", "source", "levels", "min_height", "use", "name"),
    [
        ("osm:way/76750265", 149.0, "height", 39, 0.0, None, "잠실롯데캐슬골드"),
        ("osm:way/596587275", 154.41, "height", 39, 0.0, "residential", "잠실더샵스타파크"),
        ("osm:way/129600576", 45.0, "levels", 15, 0.0, "apartments", "503동"),
        # a station on a viaduct: building:levels=3, building:min_level=2
        ("osm:way/609080980", 9.0, "levels", 3, 6.0, "train_station", None),
        # building=yes with neither building:use nor amenity: no known use
        ("osm:relation/16563734", 24.0, "height", np.nan, 0.0, None, "올림픽공원 세계평화의문"),
    ],
)
def test_specific_buildings(
    jamsil: BuildingLayer,
    key: str,
    height: float,
    source: str,
    levels: float,
    min_height: float,
    use: str | None,
    name: str | None,
) -> None:
    row = jamsil.frame.set_index("key").loc[key]
    assert row["height"] == pytest.approx(height)
    assert row["height_source"] == source
    assert row["levels"] == pytest.approx(levels, nan_ok=True)
    assert row["min_height"] == min_height
    assert (None if pd.isna(row["use"]) else row["use"]) == use
    assert (None if pd.isna(row["name"]) else row["name"]) == name


def test_geometries_are_valid_metric_and_in_jamsil(jamsil: BuildingLayer) -> None:
    frame = jamsil.frame
    assert frame.crs.to_epsg() == 5186
    assert frame.geometry.is_valid.all()
    assert (frame.geometry.area > 0).all()
    assert set(frame.geom_type) == {"Polygon", "MultiPolygon"}
    assert not frame["repaired"].any()
    # the extract's bbox is 127.0775–127.1331 E, 37.5063–37.5387 N; ways crossing it stick out
    west, south = to_city(127.07, 37.50)
    east, north = to_city(127.14, 37.545)
    minx, miny, maxx, maxy = frame.total_bounds
    assert west < minx < maxx < east
    assert south < miny < maxy < north
    tower = frame.set_index("key").loc["osm:way/76750265", "geometry"]
    lon, lat = to_wgs84(tower.centroid.x, tower.centroid.y)
    assert float(lon) == pytest.approx(127.1, abs=0.03)
    assert float(lat) == pytest.approx(37.52, abs=0.02)
    assert 100 < tower.area < 10_000  # square metres: a tower block, not degrees²


def test_multipolygon_relations_are_assembled(jamsil: BuildingLayer) -> None:
    frame = jamsil.frame.set_index("key")
    museum = frame.loc["osm:relation/6185424", "geometry"]  # two outer ways, two buildings
    assert museum.geom_type == "MultiPolygon"
    assert len(museum.geoms) == 2
    gate = frame.loc["osm:relation/16563734", "geometry"]  # outer way + inner way
    assert gate.geom_type == "Polygon"
    assert len(gate.interiors) == 1


def test_pbf_gives_the_same_buildings(
    jamsil: BuildingLayer, jamsil_osm: Path, tmp_path: Path
) -> None:
    pbf = _to_pbf(_strip_overpass_geometry(jamsil_osm, tmp_path / "plain.osm"), tmp_path)
    layer = load_buildings(pbf)
    assert len(layer.frame) == len(jamsil.frame) == 1357
    assert layer.problems == []
    pd.testing.assert_frame_equal(
        pd.DataFrame(layer.frame.drop(columns="geometry")),
        pd.DataFrame(jamsil.frame.drop(columns="geometry")),
    )
    assert np.allclose(layer.frame.area, jamsil.frame.area, rtol=1e-9)


def _strip_overpass_geometry(source: Path, target: Path) -> Path:
    """The file is Overpass "out geom" output; libosmium's XML reader rejects coordinates
    inside ``<member>`` and ``<bounds>`` inside ways, so write the plain OSM form."""
    tree = ET.parse(source)
    for element in tree.getroot():
        for child in list(element):
            if child.tag == "bounds":
                element.remove(child)
            elif child.tag == "member":
                child[:] = []
    tree.write(target, encoding="utf-8", xml_declaration=True)
    return target


def _to_pbf(osm: Path, tmp_path: Path) -> Path:
    pbf = tmp_path / f"{osm.stem}.osm.pbf"
    with osmium.SimpleWriter(str(pbf)) as writer:
        osmium.apply(str(osm), writer)
    return pbf


# --- a small OSM file with every kind of trouble -------------------------------------------------

_SQUARE = [(0, 0), (1, 0), (1, 1), (0, 1)]  # in units of 0.0002° (about 20 m)


def _small_osm(path: Path) -> Path:
    """Buildings around 127.10 E, 37.51 N; ids tell the story (see the test below)."""
    nodes: list[str] = []
    ways: list[str] = []

    def node(node_id: int, i: float, j: float) -> int:
        nodes.append(
            f'<node id="{node_id}" lon="{127.10 + i * 0.0002}" lat="{37.51 + j * 0.0002}"/>'
        )
        return node_id

    def way(way_id: int, refs: list[int], tags: dict[str, str] | None = None) -> None:
        nds = "".join(f'<nd ref="{ref}"/>' for ref in refs)
        tag_xml = "".join(f'<tag k="{k}" v="{v}"/>' for k, v in (tags or {}).items())
        ways.append(f'<way id="{way_id}">{nds}{tag_xml}</way>')

    def square(first_id: int, i: float, j: float, size: float = 1.0) -> list[int]:
        ids = [node(first_id + n, i + x * size, j + y * size) for n, (x, y) in enumerate(_SQUARE)]
        return [*ids, ids[0]]

    yes = {"building": "yes"}
    way(1, square(10, 0, 0), {"building": "apartments", "height": "40'"})
    way(2, square(20, 2, 0), {**yes, "amenity": "school", "building:levels": "5", "name": "학교"})
    way(3, square(30, 4, 0), {"building": "residential"})
    way(4, square(40, 6, 0), {"building": "office", "height": "12.5m", "min_height": "3"})
    way(5, square(50, 8, 0), {**yes, "height": "tall", "building:levels": "2"})
    bowtie = square(60, 0, 2)
    way(6, [bowtie[0], bowtie[2], bowtie[1], bowtie[3], bowtie[0]], yes)
    way(7, square(70, 2, 2)[:-1], yes)  # not closed
    a, b = node(80, 4, 2), node(81, 5, 2)
    way(8, [a, b, a], yes)  # two distinct nodes
    way(9, [*square(90, 6, 2)[:-1], 999, 90], yes)  # node 999 is not in the file
    line = [node(100 + n, 8 + n, 2 + n) for n in range(3)]
    way(10, [*line, line[0]], yes)  # collinear: no area
    way(11, square(110, 0, 4), {"building": "no"})  # not a building
    outer = square(120, 0, 6, size=4)  # split in two ways, one reversed
    inner = square(130, 1, 7, size=2)
    way(12, outer[:3])
    way(13, outer[2:][::-1])
    way(14, inner)
    way(15, square(140, 6, 6)[:3])  # an outer that never closes
    members = ('<member type="way" ref="12" role="outer"/><member type="way" ref="13" role=""/>'
               '<member type="way" ref="14" role="inner"/>')  # fmt: skip
    relations = [
        f'<relation id="500">{members}<tag k="type" v="multipolygon"/>'
        '<tag k="building" v="office"/><tag k="height" v="30"/></relation>',
        '<relation id="501"><member type="way" ref="15" role="outer"/>'
        '<tag k="type" v="multipolygon"/><tag k="building" v="yes"/></relation>',
        '<relation id="502"><member type="way" ref="1" role="outer"/>'
        '<tag k="type" v="building"/><tag k="building" v="yes"/></relation>',
        '<relation id="503"><member type="way" ref="9999" role="outer"/>'
        '<tag k="type" v="multipolygon"/><tag k="building" v="yes"/></relation>',
    ]
    body = "\n".join([*nodes, *ways, *relations])
    path.write_text(
        f'<?xml version="1.0" encoding="UTF-8"?>\n<osm version="0.6">\n{body}\n</osm>\n'
    )
    return path


@pytest.fixture
def small_osm(tmp_path: Path) -> Path:
    return _small_osm(tmp_path / "small.osm")


def test_small_osm_heights_repairs_and_problems(small_osm: Path) -> None:
    layer = load_buildings(small_osm)
    frame = layer.frame.set_index("key")
    assert sorted(frame.index) == sorted(
        [f"osm:way/{i}" for i in (1, 2, 3, 4, 5, 6)] + ["osm:relation/500"]
    )
    expected = {  # key: (height, source, min_height)
        "osm:way/1": (40 * 0.3048, "height", 0.0),
        "osm:way/2": (15.0, "levels", 0.0),
        "osm:way/3": (9.0, "default", 0.0),
        "osm:way/4": (12.5, "height", 3.0),
        "osm:way/5": (6.0, "levels", 0.0),
        "osm:way/6": (9.0, "default", 0.0),
        "osm:relation/500": (30.0, "height", 0.0),
    }
    for key, (height, source, min_height) in expected.items():
        assert frame.loc[key, "height"] == pytest.approx(height), key
        assert (frame.loc[key, "height_source"], frame.loc[key, "min_height"]) == (
            source,
            min_height,
        )
    assert frame.loc["osm:way/2", "use"] == "school"  # building=yes + amenity
    assert frame.loc["osm:way/2", "name"] == "학교"
    assert frame["repaired"].tolist().count(True) == 1
    assert frame.loc["osm:way/6", "repaired"]
    assert (
        frame.loc["osm:way/6", "geometry"].geom_type == "MultiPolygon"
    )  # the bow-tie's two halves
    office = frame.loc["osm:relation/500", "geometry"]
    assert office.geom_type == "Polygon"
    assert len(office.interiors) == 1
    cell = 17.66 * 22.19  # m²: 0.0002° of longitude and of latitude at 37.51° N
    assert office.area == pytest.approx((4 * 4 - 2 * 2) * cell, rel=0.01)
    assert frame.geometry.is_valid.all()

    problems = dict(layer.problems)
    assert sorted(problems) == sorted(
        [f"osm:way/{i}" for i in (5, 7, 8, 9, 10)] + ["osm:relation/501", "osm:relation/503"]
    )
    assert problems["osm:way/5"] == "way 5: height 'tall' is not understood; ignored"
    assert problems["osm:way/7"] == "way 7: not closed (starts at node 70, ends at node 73)"
    assert problems["osm:way/8"] == "way 8: ring has 2 distinct nodes; a footprint needs at least 3"
    assert problems["osm:way/9"] == "way 9: 1 of 5 nodes missing from the extract (first: node 999)"
    assert problems["osm:way/10"] == (
        "way 10: footprint has no area (under 1 cm wide: its nodes lie on a line)"
    )
    assert problems["osm:relation/501"] == (
        "relation 501: outer ring of way(s) 15 is open: no member continues it at node 142"
    )
    assert problems["osm:relation/503"] == (
        "relation 503: member way(s) 9999 missing from the extract"
    )


def test_small_osm_pbf_matches_xml(small_osm: Path, tmp_path: Path) -> None:
    xml_layer = load_buildings(small_osm)
    pbf_layer = load_buildings(_to_pbf(small_osm, tmp_path))
    assert pbf_layer.problems == xml_layer.problems
    pd.testing.assert_frame_equal(
        pd.DataFrame(pbf_layer.frame.drop(columns="geometry")),
        pd.DataFrame(xml_layer.frame.drop(columns="geometry")),
    )
    assert shapely.equals_exact(
        pbf_layer.frame.geometry.to_numpy(), xml_layer.frame.geometry.to_numpy(), tolerance=1e-3
    ).all()


def test_overpass_inline_coordinates_stand_in_for_nodes(tmp_path: Path) -> None:
    path = tmp_path / "geom.osm"  # Overpass "out geom" without the nodes themselves
    corners = [(1, 127.1, 37.51), (2, 127.1002, 37.51), (3, 127.1002, 37.5102), (1, 127.1, 37.51)]
    nds = "".join(f'<nd ref="{ref}" lon="{lon}" lat="{lat}"/>' for ref, lon, lat in corners)
    path.write_text(f'<osm version="0.6"><way id="7">{nds}<tag k="building" v="yes"/></way></osm>')
    layer = load_buildings(path)
    assert layer.frame["key"].tolist() == ["osm:way/7"]
    assert layer.frame.area.iloc[0] == pytest.approx(17.66 * 22.19 / 2, rel=0.01)


def test_broken_xml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.osm"
    path.write_text('<osm version="0.6">\n<node id="1" lon="127" lat="37.5">\n</osm>\n')
    with pytest.raises(FeedError, match=r"broken\.osm:3: not well-formed OSM XML"):
        load_buildings(path)


def test_osm_without_buildings_gives_an_empty_layer(tmp_path: Path) -> None:
    path = tmp_path / "empty.osm"
    path.write_text('<osm version="0.6"><node id="1" lon="127.1" lat="37.5"/></osm>')
    layer = load_buildings(path)
    assert len(layer.frame) == 0
    assert layer.problems == []
    assert list(layer.frame.columns) == list(COLUMNS)
    assert layer.frame.crs.to_epsg() == 5186


@pytest.mark.parametrize(
    ("text", "metres"),
    [("12", 12.0), ("12 m", 12.0), ("12.5m", 12.5), ("12,5", 12.5), ("40'", 12.192),
     ("40 ft", 12.192), ("10'6\"", 3.2004), ("tall", np.nan), ("-3", np.nan), ("", np.nan)],
)  # fmt: skip
def test_parse_lengths(text: str, metres: float) -> None:
    assert parse_lengths(pd.Series([text]))[0] == pytest.approx(metres, nan_ok=True)


# --- footprint files ------------------------------------------------------------------------------


def _box(lon: float, lat: float, size: float = 0.0002) -> shapely.Polygon:
    return shapely.box(lon, lat, lon + size, lat + size)


def test_footprint_geojson_heights_and_sources(tmp_path: Path) -> None:
    bowtie = shapely.Polygon(
        [(127.1, 37.51), (127.1002, 37.5102), (127.1002, 37.51), (127.1, 37.5102)]
    )
    frame = gpd.GeoDataFrame(
        {
            "name": ["A", "B", None, "bow-tie", "line", "Tokyo"],
            "height": [20.0, None, None, 12.0, 5.0, 5.0],
            "지상층수": [7, 5, None, None, None, None],
        },
        geometry=[
            _box(127.10, 37.50),
            _box(127.11, 37.50),
            _box(127.12, 37.50),
            bowtie,
            shapely.LineString([(127.1, 37.5), (127.2, 37.6)]),
            _box(139.7, 35.68),
        ],
        crs="EPSG:4326",
    )
    path = tmp_path / "footprints.geojson"
    frame.to_file(path, engine="pyogrio")

    layer = load_buildings(path, storey_height=3.5)
    result = layer.frame.set_index("key")
    assert result.index.tolist() == [f"footprints.geojson/{row}" for row in range(4)]
    assert result["height"].tolist() == [20.0, 17.5, 9.0, 12.0]
    assert result["height_source"].tolist() == ["height", "levels", "default", "height"]
    assert result["levels"].tolist()[:2] == [7.0, 5.0]
    assert result["repaired"].tolist() == [False, False, False, True]
    assert result.crs.to_epsg() == 5186
    assert result.geometry.is_valid.all()
    assert result.geometry.iloc[0].area == pytest.approx(17.66 * 22.19, rel=0.01)  # m², not deg²
    problems = dict(layer.problems)
    assert problems["footprints.geojson/4"] == (
        "footprints.geojson row 4: is a LineString, not a polygon"
    )
    assert "outside Korea; is the file's CRS right?" in problems["footprints.geojson/5"]
    assert len(problems) == 2


def test_footprint_floor_columns_of_korean_registries(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame(
        {"BD_MGT_SN": ["1171010100", "1171010200"], "GRND_FLR": [12, 0], "높이": [None, None]},
        geometry=[_box(127.10, 37.51), _box(127.101, 37.51)],
        crs="EPSG:4326",
    ).to_crs("EPSG:5179")
    path = tmp_path / "registry.gpkg"
    frame.to_file(path, engine="pyogrio")
    layer = load_buildings(path)
    assert layer.frame["key"].tolist() == ["registry.gpkg/1171010100", "registry.gpkg/1171010200"]
    assert layer.frame["height"].tolist() == [36.0, 9.0]  # 0 floors means unknown
    assert layer.frame["height_source"].tolist() == ["levels", "default"]
    assert layer.problems == []
    x, y = to_city(127.10, 37.51)
    assert layer.frame.total_bounds[:2] == pytest.approx([float(x), float(y)], abs=0.5)


def test_lonlat_labelled_as_metres_is_refused(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame({"height": [10.0]}, geometry=[_box(127.1, 37.51)], crs="EPSG:5186")
    path = tmp_path / "mislabelled.gpkg"
    frame.to_file(path, engine="pyogrio")
    with pytest.raises(FeedError, match=r"mislabelled\.gpkg: coordinates .* look like lon/lat"):
        load_buildings(path)


def test_empty_and_unreadable_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.geojson"
    empty.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    layer = load_buildings(empty)
    assert len(layer.frame) == 0
    assert layer.problems == []
    assert list(layer.frame.columns) == list(COLUMNS)
    assert layer.frame.crs.to_epsg() == 5186

    blank = tmp_path / "blank.geojson"
    blank.write_text("")
    with pytest.raises(FeedError, match=r"blank\.geojson: cannot be read as a footprint file"):
        load_buildings(blank)
    with pytest.raises(FeedError, match=r"nowhere\.osm: file not found"):
        load_buildings(tmp_path / "nowhere.osm")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FeedError, match=r"unknown building file type; expected one of \.osm"):
        load_buildings(tmp_path / "notes.txt")


def test_options_are_checked(small_osm: Path) -> None:
    with pytest.raises(ValueError, match="storey_height and default_height must be positive"):
        load_buildings(small_osm, storey_height=0)
    layer: Any = load_buildings(small_osm, default_height=12.0, crs="EPSG:5179")
    assert layer.frame.set_index("key").loc["osm:way/3", "height"] == 12.0
    assert layer.frame.crs.to_epsg() == 5179
