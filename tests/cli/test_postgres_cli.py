"""``--store postgresql://…`` for every command a city data team uses: the demo city built into
PostgreSQL answers each command exactly as the same demo built into DuckDB does.

The DuckDB side is the session's ``demo_store`` (``citytwin demo --no-serve --sensors 150
--buildings 500``, deterministic); the PostgreSQL side runs the same command into a fresh schema
of the session's server. Each command then runs on both stores and the results are compared:
tables value by value, rasters cell by cell to 1e-9, GeoJSON feature by feature.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import rasterio
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from citytwin.api import create_app
from citytwin.cli import app
from citytwin.config import Settings
from citytwin.model.sensing import Thing
from citytwin.store import open_store

runner = CliRunner()
SENSORS, BUILDINGS = "150", "500"  # as conftest's demo_store: the same city, the same day
RELEASE = ["simulate", "release", "--substance", "chlorine", "--rate", "200", "--at",
           "127.0,37.53", "--wind-speed", "3", "--wind-direction", "270", "--stability", "D",
           "--extent", "3000", "--cell", "20"]  # fmt: skip


@pytest.fixture(scope="module")
def pg_demo(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the demo city built by ``citytwin demo --no-serve`` into a schema of its own."""
    schema = f"demo_{uuid.uuid4().hex[:12]}"
    url = f"{postgres_url}?schema={schema}"
    out = tmp_path_factory.mktemp("pg-demo")
    args = ["demo", "--no-serve", "--out", str(out), "--store", url,
            "--sensors", SENSORS, "--buildings", BUILDINGS]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    yield url
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE".encode())


def _both(args: list[str], pg_url: str, duck_url: str, tmp_path: Path) -> dict[str, Any]:
    """Run ``args`` (``{out}`` replaced by a folder per store) with ``--store`` on each store;
    return {store name: (output, folder)}; both must succeed."""
    results: dict[str, Any] = {}
    for name, url in (("postgres", pg_url), ("duckdb", duck_url)):
        folder = tmp_path / name
        folder.mkdir(parents=True)
        filled = [a.replace("{out}", str(folder)) for a in args]
        result = runner.invoke(app, [*filled, "--store", url], env={"COLUMNS": "200"})
        assert result.exit_code == 0, f"{name}: {result.output}"
        results[name] = (result.output, folder)
    return results


def _raster(path: Path) -> np.ndarray[Any, Any]:
    with rasterio.open(path) as raster:
        assert raster.crs.to_epsg() == 5186
        return np.asarray(raster.read(1), np.float64)


def _features(path: Path) -> list[dict[str, Any]]:
    features: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["features"]
    return features


def _rows(output: str) -> list[str]:
    """The body rows of the rich tables in a command's output."""
    return [line for line in output.splitlines() if line.startswith("│")]


def test_demo_stats_and_quarantine_match_duckdb(pg_demo: str, demo_store: str) -> None:
    with open_store(pg_demo) as pg, open_store(demo_store) as duck:
        assert pg.stats() == duck.stats()
        assert sum(s.observations for s in pg.stats()) > 2_000_000  # 150 sensors × a day
        assert pg.layers() == duck.layers()
        quarantined = [(r.feed, r.line, r.reason) for r in pg.quarantined()]
        assert quarantined == [(r.feed, r.line, r.reason) for r in duck.quarantined()]
        assert [t.properties for t in pg.entities(Thing)] == [
            t.properties for t in duck.entities(Thing)
        ]  # bound alike: dong, gu, nearest building and road link
    stats = [runner.invoke(app, ["stats", "--store", url], env={"COLUMNS": "200"})
             for url in (pg_demo, demo_store)]  # fmt: skip
    assert [s.exit_code for s in stats] == [0, 0]
    assert _rows(stats[0].output) == _rows(stats[1].output)
    assert any("pm25" in row for row in _rows(stats[0].output))
    listed = runner.invoke(app, ["quarantine", "list", "--store", pg_demo])
    assert listed.exit_code == 0, listed.output


def test_analyze_map_and_hotspots_match_duckdb(
    pg_demo: str, demo_store: str, tmp_path: Path
) -> None:
    maps = _both(["analyze", "map", "-p", "pm25", "-o", "{out}/pm25.tif"], pg_demo, demo_store,
                 tmp_path / "map")  # fmt: skip
    pg, duck = (_raster(maps[name][1] / "pm25.tif") for name in ("postgres", "duckdb"))
    assert np.isfinite(pg).sum() > 1_000  # a real map: cells inside the city
    np.testing.assert_allclose(pg, duck, rtol=0, atol=1e-9)  # NaN where the other has NaN
    spots = _both(["analyze", "hotspots", "-p", "pm25", "--by", "dong", "-o",
                   "{out}/hot.geojson"], pg_demo, demo_store, tmp_path / "hot")  # fmt: skip
    pg_spots, duck_spots = (_features(spots[n][1] / "hot.geojson") for n in ("postgres", "duckdb"))
    assert len(pg_spots) > 10
    assert pg_spots == duck_spots


def test_simulations_match_duckdb(pg_demo: str, demo_store: str, tmp_path: Path) -> None:
    traffic = _both(["simulate", "city-traffic", "-o", "{out}/traffic"], pg_demo, demo_store,
                    tmp_path / "traffic")  # fmt: skip
    flows = [_features(traffic[n][1] / "traffic" / "flows.geojson") for n in ("postgres", "duckdb")]
    assert len(flows[0]) > 1_000
    assert flows[0] == flows[1]
    release = _both([*RELEASE, "-o", "{out}/release"], pg_demo, demo_store, tmp_path / "release")
    pg, duck = (release[n][1] / "release" for n in ("postgres", "duckdb"))
    np.testing.assert_allclose(
        _raster(pg / "concentration.tif"), _raster(duck / "concentration.tif"), rtol=0, atol=1e-9
    )
    exposure = (pg / "exposure.csv").read_text(encoding="utf-8")
    assert "AEGL-1" in exposure
    assert exposure == (duck / "exposure.csv").read_text(encoding="utf-8")


def test_city_and_lake_exports_match_duckdb(pg_demo: str, demo_store: str, tmp_path: Path) -> None:
    roads = _both(["export", "geojson", "{out}/roads.geojson", "--layer", "road_links"],
                  pg_demo, demo_store, tmp_path / "roads")  # fmt: skip
    links = [_features(roads[n][1] / "roads.geojson") for n in ("postgres", "duckdb")]
    assert len(links[0]) > 1_000
    assert links[0] == links[1]
    city = _both(["export", "cityjson", "{out}/city.json"], pg_demo, demo_store, tmp_path / "cj")
    pg_city, duck_city = (
        json.loads((city[n][1] / "city.json").read_text(encoding="utf-8"))
        for n in ("postgres", "duckdb")
    )
    assert len(pg_city["CityObjects"]) == int(BUILDINGS)
    assert pg_city == duck_city
    lake = _both(["lake", "export", "-o", "{out}/lake"], pg_demo, demo_store, tmp_path / "lake")
    summaries = [" ".join(lake[n][0].split()).split(" (")[0] for n in ("postgres", "duckdb")]
    assert summaries[0].split(": ", 1)[1] == summaries[1].split(": ", 1)[1]  # rows, days, files
    with open_store(demo_store) as duck:
        total = sum(s.observations for s in duck.stats())
    assert f"{total:,} observations" in summaries[0]


def test_linkage_bind_and_dry_run_on_postgres(
    pg_demo: str, demo_store: str, tmp_path: Path
) -> None:
    linkage = _both(["linkage", "--format", "json", "--out", "{out}/linkage.json"], pg_demo,
                    demo_store, tmp_path / "linkage")  # fmt: skip
    tables = [json.loads((linkage[n][1] / "linkage.json").read_text(encoding="utf-8"))
              for n in ("postgres", "duckdb")]  # fmt: skip
    assert tables[0] == tables[1]
    assert tables[0]["store_checked"] is True  # the data was looked at: feeds seen flowing
    assert '"last_observation": "2020-03-15T14:58:00+00:00"' in json.dumps(tables[0])
    control = tmp_path / "control.yaml"
    control.write_text(
        "actuators: [{match: 'spray-truck:*', url: 'log://trucks'}]\n"
        "rules:\n"
        "  - name: pm\n"
        "    when: {property: pm25, scope: dong, window: 1h, on: {above: 40}}\n"
        "    actions: [{task: {actuator: 'spray-truck:{dong}', command: spray}}]\n",
        encoding="utf-8",
    )
    dry = _both(["control", "dry-run", str(control), "--json", "--start",
                 "2020-03-15T00:00+09:00", "--end", "2020-03-16T00:00+09:00"], pg_demo,
                demo_store, tmp_path / "dry")  # fmt: skip
    events = [[json.loads(line) for line in dry[n][0].splitlines() if line.startswith("{")]
              for n in ("postgres", "duckdb")]  # fmt: skip
    assert any(e["kind"] == "fired" for e in events[0])
    assert events[0] == events[1]
    with open_store(pg_demo) as pg:
        before = [t.properties for t in pg.entities(Thing)]
    bound = runner.invoke(app, ["bind", "--store", pg_demo])  # demo_store is read-only here
    assert bound.exit_code == 0, bound.output
    with open_store(pg_demo) as pg:
        assert [t.properties for t in pg.entities(Thing)] == before  # binding again: the same


def test_http_api_on_postgres_matches_duckdb(pg_demo: str, demo_store: str) -> None:
    answers: dict[str, dict[str, Any]] = {}
    for name, url in (("postgres", pg_demo), ("duckdb", demo_store)):
        with TestClient(create_app(Settings(store_url=url))) as client:
            got = {}
            for path in (
                "/v1.1/Things?$count=true&$top=500&$orderby=id",
                "/twin/sensors?property=pm25",
                "/collections/buildings/items?bbox=126.9,37.4,127.2,37.7&limit=10000",
            ):
                response = client.get(path)
                assert response.status_code == 200, (name, path, response.text)
                got[path.split("?")[0]] = response.json()
            answers[name] = got
    pg, duck = answers["postgres"], answers["duckdb"]
    things = pg["/v1.1/Things"]
    assert things["@iot.count"] == duck["/v1.1/Things"]["@iot.count"] >= int(SENSORS)
    assert [t["@iot.id"] for t in things["value"]] == [
        t["@iot.id"] for t in duck["/v1.1/Things"]["value"]
    ]
    sensors = pg["/twin/sensors"]["features"]
    assert len(sensors) >= int(SENSORS) - 10  # the sensors with a located pm25 datastream
    assert sensors == duck["/twin/sensors"]["features"]
    buildings = pg["/collections/buildings/items"]["features"]
    assert 0 < len(buildings) <= int(BUILDINGS)
    assert buildings == duck["/collections/buildings/items"]["features"]
