"""The linkage table of the shipped catalog on the demo city: no unexplained gaps, data flowing
with the store's own newest observation times, and four renderings that parse."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from citytwin.auth import feed_of
from citytwin.control.config import load_control
from citytwin.model.sensing import Thing
from citytwin.services.catalog import (
    DEFAULT_CATALOG,
    DEMO_CONTROL,
    FUNCTIONS,
    Catalog,
    Configuration,
    load_catalog,
)
from citytwin.services.linkage import LinkageTable, as_dict, linkage_table
from citytwin.services.linkage_render import render, to_csv, to_html, to_json, to_markdown
from citytwin.store import open_store

# the report's seven CPS function names (seeds/002, the paragraph on the 연계테이블)
KOREAN_FUNCTIONS = [
    "현실문제", "현실데이터", "현실모델링", "데이터전달",
    "가상모델(가상화)", "의사결정", "자율제어",
]  # fmt: skip


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(DEFAULT_CATALOG)


@pytest.fixture(scope="module")
def tables(demo_store: str, catalog: Catalog) -> dict[str, LinkageTable]:
    with open_store(demo_store) as store:
        configuration = Configuration.gather(store=store, control=load_control(DEMO_CONTROL))
        return {
            lang: linkage_table(catalog, configuration, store=store, lang=lang)
            for lang in ("en", "ko")
        }


@pytest.fixture(scope="module")
def newest(demo_store: str) -> dict[str, datetime]:
    """Newest observation per feed, from the store's own per-feed statistics (SQL aggregates)."""
    with open_store(demo_store) as store:
        out: dict[str, datetime] = {}
        for row in store.stats():
            if row.last is not None:
                out[row.feed] = max(out.get(row.feed, row.last), row.last)
        return out


def items(table: LinkageTable, service: str, function: str) -> dict[str, Any]:
    (row,) = [r for r in table.rows if r.service == service]
    (cell,) = [c for c in row.cells if c.function == function]
    return {f"{i.field}:{i.name}": i for i in cell.items}


def test_every_cell_is_present_or_an_explained_gap(tables: dict[str, LinkageTable]) -> None:
    table = tables["en"]
    assert table.unexplained() == []
    explained = {
        (s["id"], g["function"])
        for s in yaml.safe_load(DEFAULT_CATALOG.read_text(encoding="utf-8"))["services"]
        for g in s.get("gaps", [])
    }
    for row in table.rows:
        assert [c.function for c in row.cells] == list(FUNCTIONS)
        for cell in row.cells:
            assert cell.status in ("ok", "no_data", "gap"), (row.service, cell.function)
            if cell.status == "gap":
                assert (row.service, cell.function) in explained
                assert cell.note


def test_sdot_data_flows_with_the_stores_newest_observation(
    tables: dict[str, LinkageTable], newest: dict[str, datetime]
) -> None:
    found = items(tables["en"], "fine-dust", "real_data")
    assert found["feeds:sdot"].status == "ok"
    assert found["feeds:sdot"].last_observation == newest["sdot"]
    assert found["feeds:kma"].last_observation == newest["kma"]
    (row,) = [r for r in tables["en"].rows if r.service == "fine-dust"]
    assert row.cells[1].last_observation == max(newest["sdot"], newest["kma"])


def test_feeds_without_things_in_the_store_have_no_data(
    demo_store: str, tables: dict[str, LinkageTable]
) -> None:
    with open_store(demo_store) as store:
        stored = {feed_of(t.key) for t in store.entities(Thing)}
        layers = store.layers()
    assert "topis" not in stored  # the demo city ingests S-DoT and KMA only
    congestion = items(tables["en"], "congestion", "real_data")
    assert congestion["feeds:topis"].status == "no_data"
    assert congestion["feeds:topis"].last_observation is None
    modelling = items(tables["en"], "congestion", "real_modelling")
    expected = "ok" if layers.get("road_links") else "no_data"
    assert modelling["layers:road_links"].status == expected


def test_without_a_store_data_is_not_checked(catalog: Catalog) -> None:
    configuration = Configuration.gather(control=load_control(DEMO_CONTROL))
    table = linkage_table(catalog, configuration)
    assert not table.store_checked
    assert items(table, "fine-dust", "real_data")["feeds:sdot"].status == "unchecked"
    assert items(table, "fine-dust", "data_transfer")["protocols:sta"].status == "ok"


def test_a_deleted_feed_or_an_unexplained_empty_function_is_missing(catalog: Catalog) -> None:
    configuration = Configuration.gather(control=load_control(DEMO_CONTROL))
    table = linkage_table(catalog, configuration.without(feeds=["sdot"]))
    assert items(table, "fine-dust", "real_data")["feeds:sdot"].status == "missing"
    assert ("fine-dust", "real_data") in table.unexplained()
    review = next(s for s in catalog.services if s.id == "building-review")
    bare = catalog.model_copy(update={"services": (review.model_copy(update={"gaps": ()}),)})
    unexplained = linkage_table(bare, configuration).unexplained()
    assert unexplained == [
        ("building-review", "real_data"),
        ("building-review", "autonomous_control"),
    ]


def test_korean_labels(tables: dict[str, LinkageTable]) -> None:
    table = as_dict(tables["ko"])
    assert [f["label"] for f in table["functions"]] == KOREAN_FUNCTIONS
    assert table["rows"][0]["department"] == "환경"
    assert table["rows"][0]["name"] == "미세먼지 대응"
    markdown = to_markdown(tables["ko"])
    assert markdown.startswith("# 사이버물리시스템 연계테이블")
    assert all(label in markdown.splitlines()[2] for label in KOREAN_FUNCTIONS)


def test_csv_round_trips(tables: dict[str, LinkageTable], newest: dict[str, datetime]) -> None:
    table = tables["en"]
    rows = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert len(rows) == len(table.rows) * len(FUNCTIONS)
    statuses = {(r["service"], r["function"]): r["status"] for r in rows}
    cells = {(row.service, c.function): c.status for row in table.rows for c in row.cells}
    assert statuses == cells
    heat = next(r for r in rows if (r["service"], r["function"]) == ("heat-wave", "real_data"))
    assert datetime.fromisoformat(heat["last_observation"]) == max(newest["sdot"], newest["kma"])


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.rows: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr" and found.get("id"):
            self.rows.append(str(found["id"]))
        self.external += [v or "" for k, v in attrs if k in ("src", "href")]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_html_parses_and_shows_every_service(
    tables: dict[str, LinkageTable], catalog: Catalog, lang: str
) -> None:
    parser = _Cells()
    parser.feed(to_html(tables[lang]))
    parser.close()
    assert parser.rows == [s.id for s in catalog.services]
    assert parser.external == []
    text = "".join(parser.text)
    assert all(s.name.text(lang) in text for s in catalog.services)


def test_json_is_the_plain_data(tables: dict[str, LinkageTable]) -> None:
    assert json.loads(to_json(tables["en"])) == as_dict(tables["en"])
    assert render(tables["en"], "json") == to_json(tables["en"])


def _cli() -> Any:
    import typer

    from citytwin.cli.linkage import linkage

    app = typer.Typer()
    app.command()(linkage)  # the command as `citytwin linkage` will register it
    app.command("noop")(lambda: None)  # two commands: typer keeps the `linkage` name
    return app


def test_cli_writes_the_table_and_check_names_an_unknown_feed(
    demo_store: str, tmp_path: Path, tables: dict[str, LinkageTable]
) -> None:
    from typer.testing import CliRunner

    out = tmp_path / "linkage.json"
    args = ["linkage", "--store", demo_store, "--format", "json", "--out", str(out), "--check"]
    result = CliRunner().invoke(_cli(), args)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text(encoding="utf-8")) == as_dict(tables["en"])
    data = yaml.safe_load(DEFAULT_CATALOG.read_text(encoding="utf-8"))
    data["services"][1]["feeds"] = ["sdot", "citydata"]
    bad = tmp_path / "catalog.yaml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = CliRunner().invoke(_cli(), ["linkage", "--catalog", str(bad), "--check"])
    assert result.exit_code == 1
    assert "heat-wave" in result.output
    assert "'citydata'" in result.output
