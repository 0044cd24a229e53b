"""The CLI: documented commands, summaries, exit codes, and no tracebacks on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from citytwin.cli import app

runner = CliRunner()
HEADER = (
    "모델명,시리얼,미세먼지2.5(초미세먼지),미세먼지10(미세먼지),기온,상대습도,풍향,풍속,돌풍 풍향,"
    "돌풍 풍속,조도,자외선,소음,진동(x),진동(y),진동(z),진동(x) 최대,진동(y) 최대,진동(z) 최대,"
    "흑구 온도,pm25 보정,pm10 보정,측정시간,등록 일시"
)
ROW = (
    "SDOT-2,V02Q1940612,12,20,1234,45,2700,35,2900,61,5400,23,55,12,15,98,30,41,120,1300,14,22,{t},"
)


def test_help_documents_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("ingest", "stats", "quarantine", "vocabulary", "demo"):
        assert command in result.output
    assert "list" in runner.invoke(app, ["quarantine", "--help"]).output


def test_ingest_summary_stats_and_quarantine(tmp_path: Path) -> None:
    data = tmp_path / "a.csv"
    data.write_text(
        "\n".join(
            [HEADER, ROW.format(t="202003150000"), "garbage,line", ROW.format(t="202003150002")]
        )
        + "\n",
        encoding="cp949",
    )
    store = f"duckdb:///{tmp_path / 'c.duckdb'}"
    result = runner.invoke(app, ["ingest", "sdot", str(data), "--store", store])
    assert result.exit_code == 0, result.output
    assert "ingest summary" in result.output
    assert "40" in result.output
    assert "Traceback" not in result.output
    listed = runner.invoke(app, ["quarantine", "list", "--store", store])
    assert "expected 24 columns" in listed.output
    out = tmp_path / "q.csv"
    runner.invoke(app, ["quarantine", "export", str(out), "--store", store])
    assert out.read_text(encoding="utf-8-sig").count("garbage") == 1
    again = runner.invoke(app, ["ingest", "sdot", str(data), "--store", store])
    assert again.exit_code == 0, again.output
    runner.invoke(app, ["quarantine", "export", str(out), "--store", store])
    assert out.read_text(encoding="utf-8-sig").count("garbage") == 1  # the same line, kept once
    stats = runner.invoke(app, ["stats", "--store", store])
    assert "noise" in stats.output
    assert "pm25" in stats.output


@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00garbage"])
def test_unreadable_input_exits_1_without_traceback(tmp_path: Path, content: bytes) -> None:
    data = tmp_path / "bad.csv"
    data.write_bytes(content)
    result = runner.invoke(app, ["ingest", "sdot", str(data), "--store", "memory://"])
    assert result.exit_code == 1
    assert "could not read" in result.output
    assert "Traceback" not in result.output


def test_unknown_feed_names_the_valid_ones(tmp_path: Path) -> None:
    data = tmp_path / "a.csv"
    data.write_text("x\n", encoding="utf-8")
    result = runner.invoke(app, ["ingest", "nope", str(data), "--store", "memory://"])
    assert result.exit_code == 1
    assert "expected one of" in result.output
    assert "sdot" in result.output


def test_generic_without_mapping_is_a_usage_error(tmp_path: Path) -> None:
    data = tmp_path / "a.csv"
    data.write_text("x\n", encoding="utf-8")
    result = runner.invoke(app, ["ingest", "generic", str(data), "--store", "memory://"])
    assert result.exit_code == 2
    assert "--mapping" in result.output


def test_demo_builds_a_city_store_offline(tmp_path: Path) -> None:
    import json

    from citytwin.model import Location, Thing
    from citytwin.store import open_store

    out = tmp_path / "demo"
    args = ["demo", "--no-serve", "--out", str(out), "--sensors", "12", "--buildings", "400"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    sensors = (out / "city" / "sensors.csv").read_text(encoding="utf-8").splitlines()[1:]
    with open_store(f"duckdb:///{out / 'city.duckdb'}") as store:
        things = store.entities(Thing)
        located = store.entities(Location)
        stats = {(s.feed, s.observed_property): s.observations for s in store.stats()}
        layers = store.layers()
        by_gu = store.aggregate(bucket="day", by="thing.gu", observed_property="pm25")
    assert len(sensors) == 12
    assert len(things) == 12 + 5  # the sensors and the five KMA stations
    assert len(located) == 12 + 5
    assert layers["buildings"] == 400
    assert layers["districts"] > 0
    rows = (out / "ALLDATA_20200315.csv").read_text(encoding="utf-8").splitlines()[1:]
    assert stats[("sdot", "pm25")] == sum(1 for row in rows if row.split(",")[2] != "")
    assert sum(by_gu.column("count").to_pylist()) == stats[("sdot", "pm25")]
    tileset = json.loads((out / "tiles" / "tileset.json").read_text(encoding="utf-8"))
    assert tileset["asset"]["version"] == "1.1"
    # buildings carry their dong in the tile metadata (EXT_structural_metadata)
    dong_columns = 0
    for glb in (out / "tiles").rglob("*.glb"):
        data = glb.read_bytes()
        length = int.from_bytes(data[12:16], "little")  # first chunk: the glTF JSON
        gltf = json.loads(data[20 : 20 + length])
        tables = gltf["extensions"]["EXT_structural_metadata"]["propertyTables"]
        dong_columns += sum("dong" in table["properties"] for table in tables)
    assert dong_columns > 0


def test_import_boundaries_and_bind(tmp_path: Path, shared_data: Path) -> None:
    kostat = shared_data / "seoul_boundaries" / "kostat" / "2013"
    registry = shared_data / "sdot" / "sensor_longitude_latitude.csv"
    store = f"duckdb:///{tmp_path / 'c.duckdb'}"
    data = tmp_path / "a.csv"
    data.write_text("\n".join([HEADER, ROW.format(t="202003150000")]) + "\n", encoding="utf-8")
    for name in ("json/seoul_municipalities_geo.json", "shp/seoul_submunicipalities.shp"):
        result = runner.invoke(app, ["import", "boundaries", str(kostat / name), "--store", store])
        assert result.exit_code == 0, result.output
    assert "423" in result.output
    runner.invoke(app, ["ingest", "sdot", str(data), "--registry", str(registry), "--store", store])
    bound = runner.invoke(app, ["bind", "--store", store])
    assert bound.exit_code == 0, bound.output
    assert "bound 1 sensor" in bound.output
    wrong = runner.invoke(app, ["import", "rivers", str(data), "--store", store])
    assert wrong.exit_code == 2
    assert "boundaries" in wrong.output


def test_import_network_twice_replaces(tmp_path: Path, shared_data: Path) -> None:
    store = f"duckdb:///{tmp_path / 'c.duckdb'}"
    net = shared_data / "osm" / "asanH.net.xml"
    first = runner.invoke(app, ["import", "network", str(net), "--store", store])
    again = runner.invoke(app, ["import", "network", str(net), "--store", store])
    assert first.exit_code == 0, first.output
    assert "1,206" in first.output
    assert again.exit_code == 0
    from citytwin.store import open_store

    with open_store(store) as opened:
        assert opened.layers() == {"road_links": 1206, "road_nodes": 525}
    tntp = shared_data / "tntp" / "SiouxFalls" / "SiouxFalls_net.tntp"
    refused = runner.invoke(app, ["import", "network", str(tntp), "--store", store])
    assert refused.exit_code == 2
    assert "TNTP networks are abstract" in " ".join(refused.output.split())


def test_import_osm_and_export_cityjson_geojson(tmp_path: Path, shared_data: Path) -> None:
    import json

    store = f"duckdb:///{tmp_path / 'c.duckdb'}"
    imported = runner.invoke(
        app, ["import", "osm", str(shared_data / "osm" / "asanH.osm"), "--store", store]
    )
    assert imported.exit_code == 0, imported.output
    assert "1,357" in imported.output  # 1,355 building ways + 2 building relations
    out = tmp_path / "jamsil.json"
    exported = runner.invoke(app, ["export", "cityjson", str(out), "--store", store])
    assert exported.exit_code == 0, exported.output
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["type"] == "CityJSON"
    assert document["version"] == "2.0"
    top = [o for o in document["CityObjects"].values() if o["type"] == "Building"]
    assert len(top) == 1357
    geojson = tmp_path / "links.geojson"
    links = runner.invoke(
        app, ["export", "geojson", str(geojson), "--layer", "road_links", "--store", store]
    )
    assert links.exit_code == 0, links.output
    assert len(json.loads(geojson.read_text(encoding="utf-8"))["features"]) == 1159
    missing = runner.invoke(
        app, ["export", "geojson", str(geojson), "--layer", "rivers", "--store", store]
    )
    assert missing.exit_code == 2


def test_export_3dtiles_folder(tmp_path: Path, shared_data: Path) -> None:
    import json

    store = f"duckdb:///{tmp_path / 'c.duckdb'}"
    runner.invoke(
        app, ["import", "buildings", str(shared_data / "osm" / "asanH.osm"), "--store", store]
    )
    out = tmp_path / "tiles"
    result = runner.invoke(app, ["export", "3dtiles", str(out), "--store", store])
    assert result.exit_code == 0, result.output
    assert "1,357" in result.output
    tileset = json.loads((out / "tileset.json").read_text(encoding="utf-8"))
    assert tileset["asset"]["version"] == "1.1"
    assert len(list(out.rglob("*.glb"))) >= 1
