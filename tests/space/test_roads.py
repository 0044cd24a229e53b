"""Road networks read from the real Jamsil OSM/SUMO extract and the TNTP reference networks.

Expected values are computed here from the files themselves (with ElementTree and plain regular
expressions, independently of the readers) or taken from the networks' published READMEs.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from citytwin.errors import FeedError, ValidationError
from citytwin.space.crs import to_city, to_wgs84
from citytwin.space.roads import (
    DRIVEABLE_CLASSES,
    LINK_COLUMNS,
    ROAD_CLASSES,
    RoadNetwork,
    load_osm_roads,
    load_sumo_network,
    load_tntp_network,
)

Way = tuple[str, list[str], dict[str, str]]  # id, node refs, tags


@pytest.fixture(scope="module")
def osm_file(shared_data: Path) -> Path:
    return shared_data / "osm" / "asanH.osm"


@pytest.fixture(scope="module")
def sumo_file(shared_data: Path) -> Path:
    return shared_data / "osm" / "asanH.net.xml"


@pytest.fixture(scope="module")
def osm(osm_file: Path) -> RoadNetwork:
    return load_osm_roads(osm_file)


@pytest.fixture(scope="module")
def sumo(sumo_file: Path) -> RoadNetwork:
    return load_sumo_network(sumo_file)


@pytest.fixture(scope="module")
def osm_xml(osm_file: Path) -> ET.Element:
    return ET.parse(osm_file).getroot()


@pytest.fixture(scope="module")
def osm_coords(osm_xml: ET.Element) -> dict[str, tuple[float, float]]:
    """Node id → (lon, lat), read straight from the XML."""
    nodes = osm_xml.iter("node")
    return {n.attrib["id"]: (float(n.attrib["lon"]), float(n.attrib["lat"])) for n in nodes}


@pytest.fixture(scope="module")
def osm_ways(osm_xml: ET.Element) -> list[Way]:
    """Driveable ways as (id, node refs, tags), read straight from the XML."""
    ways = []
    for way in osm_xml.iter("way"):
        tags = {t.attrib["k"]: t.attrib["v"] for t in way.iter("tag")}
        if tags.get("highway") in DRIVEABLE_CLASSES:
            ways.append((way.attrib["id"], [nd.attrib["ref"] for nd in way.iter("nd")], tags))
    return ways


def _directions(tags: dict[str, str]) -> set[str]:
    """Link id suffixes a way must produce: f(orward), b(ackward) or both."""
    if tags.get("oneway") == "-1":
        return {"b"}
    one_way = tags.get("oneway") in ("yes", "1", "true") or tags.get("junction") == "roundabout"
    return {"f"} if one_way or tags["highway"] == "motorway" else {"f", "b"}


def _way_of(link_id: str) -> str:
    return link_id.split(":")[0]


# --- SUMO ---------------------------------------------------------------------------------------


def test_sumo_links_are_the_non_internal_edges(sumo: RoadNetwork, sumo_file: Path) -> None:
    root = ET.parse(sumo_file).getroot()
    functions = Counter(edge.get("function", "normal") for edge in root.iter("edge"))
    non_internal = sum(n for function, n in functions.items() if function != "internal")
    assert non_internal == 1206  # the acceptance number
    # no pedestrian crossings or walking areas here, so "not internal" and "driveable" agree
    assert set(functions) == {"normal", "internal"}
    assert len(sumo.links) == non_internal
    assert sumo.links["link_id"].is_unique
    junctions = [j for j in root.iter("junction") if j.get("type") != "internal"]
    assert len(sumo.nodes) == len(junctions) == 525
    lanes = sum(len(e.findall("lane")) for e in root.iter("edge") if e.get("function") is None)
    assert int(sumo.links["lanes"].sum()) == lanes


def test_sumo_nodes_land_in_jamsil_on_their_osm_nodes(
    sumo: RoadNetwork, sumo_file: Path, osm_coords: dict[str, tuple[float, float]]
) -> None:
    lon, lat = to_wgs84(sumo.nodes.geometry.x, sumo.nodes.geometry.y)
    assert 127.08 < float(np.median(lon)) < 127.14
    assert 37.50 < float(np.median(lat)) < 37.54
    location = ET.parse(sumo_file).getroot().find("location")
    assert location is not None
    west, south, east, north = (float(v) for v in location.attrib["origBoundary"].split(","))
    assert (lon.min(), lat.min()) == pytest.approx((west, south), abs=1e-5)
    assert (lon.max(), lat.max()) == pytest.approx((east, north), abs=1e-5)
    # netconvert names junctions after OSM nodes: the round trip through UTM lands within cm
    x, y = to_city(*np.asarray([osm_coords[n] for n in sumo.nodes["node_id"]]).T)
    assert np.hypot(sumo.nodes.geometry.x - x, sumo.nodes.geometry.y - y).max() < 0.05


def test_sumo_speeds_lengths_and_capacity(sumo: RoadNetwork, sumo_file: Path) -> None:
    links = sumo.links.set_index("link_id")
    assert (links["free_speed_kmh"] > 0).all()
    assert (links["length_m"] > 0).all()
    edge = next(e for e in ET.parse(sumo_file).getroot().iter("edge") if e.get("function") is None)
    lane = edge.findall("lane")[0]
    first = links.loc[edge.attrib["id"]]
    assert first["free_speed_kmh"] == pytest.approx(float(lane.attrib["speed"]) * 3.6)
    assert first["length_m"] == pytest.approx(float(lane.attrib["length"]))
    assert first["road_class"] == edge.attrib["type"].removeprefix("highway.")
    per_lane = links["road_class"].map({c: d.capacity_per_lane for c, d in ROAD_CLASSES.items()})
    assert np.allclose(links["capacity_veh_h"], links["lanes"] * per_lane)
    minutes = links["length_m"] / 1000 / links["free_speed_kmh"] * 60
    assert np.allclose(links["free_flow_time"], minutes)
    assert links[list(LINK_COLUMNS[3:])].notna().all().all()


def test_sumo_graph_is_mostly_strongly_connected(sumo: RoadNetwork) -> None:
    component = sumo.strong_components()
    tail, head = sumo.edge_index()
    assert ((component[tail] == 0) & (component[head] == 0)).mean() > 0.9


# --- OpenStreetMap ------------------------------------------------------------------------------


def test_osm_every_driveable_way_becomes_links(osm: RoadNetwork, osm_ways: list[Way]) -> None:
    assert len(osm_ways) == 356
    assert set(osm.links["link_id"].map(_way_of)) == {way_id for way_id, _, _ in osm_ways}
    assert osm.problems == []
    suffixes = osm.links["link_id"].str[-1].groupby(osm.links["link_id"].map(_way_of)).agg(set)
    for way_id, _, tags in osm_ways:
        assert suffixes[way_id] == _directions(tags), way_id


def test_osm_links_chain_along_their_way(osm: RoadNetwork, osm_ways: list[Way]) -> None:
    links = osm.links.set_index("link_id")
    for way_id, refs, tags in osm_ways:
        for direction in _directions(tags):
            ids = [f"{way_id}:{k}{direction}" for k in range(len(refs))]
            chain = links.loc[[i for i in ids if i in links.index]]
            path = refs
            if direction == "b":  # backward links run the way's pieces in reverse order
                chain, path = chain.iloc[::-1], refs[::-1]
            assert chain["from_node"].iloc[0] == path[0]
            assert chain["to_node"].iloc[-1] == path[-1]
            assert list(chain["to_node"].iloc[:-1]) == list(chain["from_node"].iloc[1:])


def test_osm_lengths_sum_to_the_ways(
    osm: RoadNetwork, osm_ways: list[Way], osm_coords: dict[str, tuple[float, float]]
) -> None:
    expected = {}
    for way_id, refs, tags in osm_ways:
        x, y = to_city(*np.asarray([osm_coords[r] for r in refs]).T)
        length = float(np.hypot(np.diff(x), np.diff(y)).sum())
        expected[way_id] = length * len(_directions(tags))  # a two-way way counts twice
    measured = osm.links.groupby(osm.links["link_id"].map(_way_of))["length_m"].sum()
    assert measured.to_dict() == pytest.approx(expected, rel=1e-9)
    assert np.allclose(osm.links["length_m"], osm.links.geometry.length)
    assert float(osm.links["length_m"].sum()) == pytest.approx(sum(expected.values()))


def test_osm_graph_is_routable(osm: RoadNetwork, osm_ways: list[Way]) -> None:
    nodes = set(osm.nodes["node_id"])
    assert set(osm.links["from_node"]) | set(osm.links["to_node"]) == nodes
    uses = Counter(ref for _, refs, _ in osm_ways for ref in set(refs))
    assert {ref for ref, n in uses.items() if n > 1} <= nodes  # split at every intersection
    starts = osm.links.geometry.get_coordinates().groupby(level=0).head(1)
    tails = osm.nodes.set_index("node_id").geometry[osm.links["from_node"]].get_coordinates()
    assert np.allclose(starts, tails)  # each link's geometry starts on its from_node
    component = osm.strong_components()
    tail, head = osm.edge_index()
    assert ((component[tail] == 0) & (component[head] == 0)).mean() > 0.9


def test_osm_tags_set_speed_lanes_and_capacity(osm: RoadNetwork) -> None:
    links = osm.links.set_index("link_id")
    # way 37398852 (강동대로): secondary, oneway=yes, no lanes or maxspeed tag → class defaults
    gangdong = links.loc["37398852:0f"]
    assert (gangdong["lanes"], gangdong["free_speed_kmh"]) == (2, 50.0)
    assert gangdong["capacity_veh_h"] == 2 * ROAD_CLASSES["secondary"].capacity_per_lane
    assert "37398852:0b" not in links.index
    tagged = links[links["free_speed_kmh"] == 80]
    assert len(tagged) > 0
    assert set(tagged["road_class"]) <= {"trunk", "trunk_link", "primary"}
    assert (links["lanes"] >= 1).all()
    assert links[list(LINK_COLUMNS[3:])].notna().all().all()


def test_osm_lanes_split_per_direction(osm: RoadNetwork) -> None:
    lanes = osm.links.set_index("link_id")["lanes"]
    # 481374922: lanes:forward=3, lanes:backward=4; 59097446 (primary): lanes=8, two-way
    assert (lanes["481374922:0f"], lanes["481374922:0b"]) == (3, 4)
    assert (lanes["59097446:0f"], lanes["59097446:0b"]) == (4, 4)


SMALL_OSM = """<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6">
  <node id="1" lat="37.5100" lon="127.1000"/>
  <node id="2" lat="37.5100" lon="127.1010"/>
  <node id="3" lat="37.5110" lon="127.1010"/>
  <node id="4" lat="37.5110" lon="127.1000"/>
  <way id="10"><nd ref="1"/><nd ref="2"/><nd ref="3"/>
    <tag k="highway" v="primary"/><tag k="oneway" v="-1"/><tag k="lanes" v="3"/>
    <tag k="maxspeed" v="30 mph"/></way>
  <way id="11"><nd ref="3"/><nd ref="4"/><nd ref="1"/><nd ref="3"/>
    <tag k="highway" v="tertiary"/><tag k="junction" v="roundabout"/>
    <tag k="maxspeed" v="KR:urban"/></way>
  <way id="12"><nd ref="2"/><nd ref="4"/><tag k="highway" v="motorway"/></way>
  <way id="13"><nd ref="2"/><nd ref="99"/><tag k="highway" v="residential"/></way>
  <way id="14"><nd ref="1"/><nd ref="4"/><tag k="highway" v="footway"/></way>
</osm>
"""


def test_osm_tag_rules_on_a_small_file(tmp_path: Path) -> None:
    path = tmp_path / "small.osm"
    path.write_text(SMALL_OSM)
    net = load_osm_roads(path)
    links = net.links.set_index("link_id")
    # oneway=-1: only the reverse direction, all 3 lanes, 30 mph; split at node 2 (way 12 meets it)
    assert list(links.index[links.index.str.startswith("10:")]) == ["10:0b", "10:1b"]
    assert (links.loc["10:0b", "from_node"], links.loc["10:0b", "to_node"]) == ("2", "1")
    assert links.loc["10:0b", "lanes"] == 3
    assert links.loc["10:0b", "free_speed_kmh"] == pytest.approx(48.28032)
    # a closed roundabout is one-way and split at its ends (3) and where ways 10/12 meet it (1, 4)
    pieces = links[links.index.str.startswith("11:")]
    assert list(zip(pieces["from_node"], pieces["to_node"], strict=True)) == [
        ("3", "4"),
        ("4", "1"),
        ("1", "3"),
    ]
    assert links.loc["11:0f", "free_speed_kmh"] == ROAD_CLASSES["tertiary"].speed_kmh
    assert "12:0b" not in links.index  # motorways are one-way unless tagged
    assert not links.index.str.startswith(("13:", "14:")).any()
    assert net.problems == [
        ("way 13", "skipped: nodes ['99'] not in the file"),
        ("way 11", "maxspeed 'KR:urban' not understood; using 50 km/h"),
    ]


def test_osm_reader_names_broken_xml(tmp_path: Path) -> None:
    path = tmp_path / "broken.osm"
    path.write_text(SMALL_OSM.replace("</way>", "", 1))
    with pytest.raises(FeedError, match=r"broken\.osm:\d+: not well-formed XML"):
        load_osm_roads(path)


# --- TNTP ---------------------------------------------------------------------------------------


def _header(path: Path) -> dict[str, int]:
    items = re.findall(r"<(NUMBER OF \w+|FIRST THRU NODE)>\s*(\d+)", path.read_text())
    return {key: int(value) for key, value in items}


def test_tntp_sioux_falls(shared_data: Path) -> None:
    net = load_tntp_network(shared_data / "tntp" / "SiouxFalls" / "SiouxFalls_net.tntp")
    assert (len(net.nodes), len(net.links), net.first_thru_node, net.zones) == (24, 76, 1, 24)
    first = net.links.iloc[0]
    assert (first["from_node"], first["to_node"]) == ("1", "2")
    assert (first["capacity_veh_h"], first["free_flow_time"]) == (25900.20064, 6.0)
    assert (first["b"], first["power"], first["toll"], first["link_type"]) == (0.15, 4.0, 0.0, 1)
    assert net.crs is None
    assert net.links.crs is None
    node_one = net.nodes.set_index("node_id").geometry["1"]
    assert (node_one.x, node_one.y) == (-96.77041974, 43.61282792)  # as given, not reprojected
    assert net.links.geometry.notna().all()
    assert set(net.strong_components()) == {0}


def test_tntp_anaheim_counts_and_units(shared_data: Path) -> None:
    path = shared_data / "tntp" / "Anaheim" / "Anaheim_net.tntp"
    header = _header(path)
    net = load_tntp_network(path, length_to_m=0.3048, speed_to_kmh=0.3048 * 60 / 1000)
    assert (len(net.nodes), len(net.links)) == (
        header["NUMBER OF NODES"],
        header["NUMBER OF LINKS"],
    )
    assert (net.first_thru_node, net.zones) == (
        header["FIRST THRU NODE"],
        header["NUMBER OF ZONES"],
    )
    assert (len(net.links), net.first_thru_node) == (914, 39)  # the README's dimensions
    assert net.links["length_m"].iloc[0] == pytest.approx(1609.344)  # 5,280 ft = one mile
    # Anaheim's free-flow times are its lengths over its speeds (ft / ft/min = min)
    hours = net.links["length_m"] / 1000 / net.links["free_speed_kmh"]
    assert np.allclose(hours * 60, net.links["free_flow_time"])
    assert net.links.geometry.isna().all()
    assert len(net.problems) == 1


def test_tntp_braess(shared_data: Path) -> None:
    path = shared_data / "tntp" / "Braess-Example" / "Braess_net.tntp"
    net = load_tntp_network(path)
    assert (len(net.nodes), len(net.links), net.first_thru_node) == (4, 5, 1)
    last = net.links.iloc[-1]  # its row ends "1;" with no tab before the semicolon
    assert (last["from_node"], last["to_node"], last["b"]) == ("4", "2", 1e9)
    assert sorted(set(net.strong_components())) == [0, 1, 2, 3]  # a DAG: no cycles


# (text to replace in Braess_net.tntp, replacement, expected message, line it must name)
BROKEN_TNTP = [
    ("\t4\t2\t1\t100\t0.00000001\t1000000000\t1\t0\t0\t1;\n", "", "is 5 but the table has 4", 13),
    ("1000000000\t1\t0\t0\t1;\n", "10", "row not terminated by ';' (truncated?)", 14),
    ("\t3\t2\t", "\t3\tx\t", "expected 10 numbers (init_node", 12),
    ("\t3\t4\t", "\t3\t9\t", "link ends ['3', '9'] must be nodes 1…4", 13),
    ("\t50\t0.02\t1\t0\t0\t1\t;", "\t50\t0.02\t1\t0\t1\t;", "got 9 fields", 11),
    ("<END OF METADATA>", "", "no <END OF METADATA>", 14),
    ("<NUMBER OF LINKS> 5\n", "", "metadata lacks <NUMBER OF LINKS>", 5),
    ("<NUMBER OF NODES> 4", "<NUMBER OF NODES> four", "<NUMBER OF NODES> needs a number", 2),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "message", "line"), BROKEN_TNTP)
def test_tntp_broken_files_name_the_line(
    shared_data: Path, tmp_path: Path, old: str, new: str, message: str, line: int
) -> None:
    original = (shared_data / "tntp" / "Braess-Example" / "Braess_net.tntp").read_text()
    assert old in original
    broken = tmp_path / "Broken_net.tntp"
    broken.write_text(original.replace(old, new, 1))
    with pytest.raises(FeedError, match=re.escape(message)) as caught:
        load_tntp_network(broken)
    assert str(caught.value).startswith(f"{broken}:{line}: ")


def test_tntp_node_file_errors_name_the_line(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "tntp" / "SiouxFalls"
    nodes = tmp_path / "SiouxFalls_node.tntp"
    rows = (folder / "SiouxFalls_node.tntp").read_text().splitlines()
    nodes.write_text("\n".join([*rows, "25\t0\t0\t;"]) + "\n")
    with pytest.raises(FeedError, match="node 25 outside 1…24") as caught:
        load_tntp_network(folder / "SiouxFalls_net.tntp", node_path=nodes)
    assert caught.value.line == len(rows) + 1


def test_network_rejects_links_to_unknown_nodes(shared_data: Path) -> None:
    net = load_tntp_network(shared_data / "tntp" / "SiouxFalls" / "SiouxFalls_net.tntp")
    links = net.links.copy()
    links.loc[0, "to_node"] = "99"
    with pytest.raises(ValidationError, match=r"1 links end at unknown nodes, e.g. \['1'\]"):
        RoadNetwork(net.nodes, links, None, "edited")
