"""``/services`` and ``/services/linkage`` serve what the library computes on the same store."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from citytwin.api import create_app
from citytwin.api import services as services_api
from citytwin.config import Settings
from citytwin.control.audit import AuditLog
from citytwin.control.config import load_control
from citytwin.control.dispatcher import Controller
from citytwin.services.catalog import DEFAULT_CATALOG, DEMO_CONTROL, Configuration, load_catalog
from citytwin.services.linkage import as_dict, linkage_table
from citytwin.store import open_store
from citytwin.store.base import Store


@pytest.fixture(scope="module")
def store(demo_store: str) -> Iterator[Store]:
    with open_store(demo_store) as opened:
        yield opened


def client_for(store: Store, tmp_path: Path, *, control: bool) -> TestClient:
    audit = AuditLog(tmp_path / "audit.jsonl")
    controller = Controller(load_control(DEMO_CONTROL), audit=audit, sinks=()) if control else None
    app = create_app(Settings(store_url="memory://"), store=store, audit=audit, control=controller)
    app.include_router(services_api.create_router())  # not yet included by create_app
    return TestClient(app)


def test_catalog_json(store: Store, tmp_path: Path) -> None:
    body = client_for(store, tmp_path, control=True).get("/services").json()
    catalog = load_catalog(DEFAULT_CATALOG)
    assert [s["id"] for s in body["services"]] == [s.id for s in catalog.services]
    assert body["departments"]["transport"] == {"ko": "교통", "en": "Transport"}


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_linkage_json_equals_the_library(store: Store, tmp_path: Path, lang: str) -> None:
    response = client_for(store, tmp_path, control=True).get(
        "/services/linkage", params={"lang": lang}
    )
    assert response.status_code == 200, response.text
    configuration = Configuration.gather(store=store, control=load_control(DEMO_CONTROL))
    expected = linkage_table(
        load_catalog(DEFAULT_CATALOG),
        configuration,
        store=store,
        lang=lang,  # type: ignore[arg-type]
    )
    assert response.json() == as_dict(expected)
    assert expected.unexplained() == []


def test_linkage_without_control_loop_shows_control_missing(store: Store, tmp_path: Path) -> None:
    body = client_for(store, tmp_path, control=False).get("/services/linkage").json()
    fine_dust = next(row for row in body["rows"] if row["service"] == "fine-dust")
    control = next(c for c in fine_dust["cells"] if c["function"] == "autonomous_control")
    assert control["status"] == "missing"
    assert {i["name"] for i in control["items"]} == {
        "dong-pm25-high", "spray-truck:{dong}", "vms:{dong}", "shelter:{sensor}",
    }  # fmt: skip


def test_linkage_formats(store: Store, tmp_path: Path) -> None:
    client = client_for(store, tmp_path, control=True)
    table = client.get("/services/linkage", params={"format": "csv"})
    assert table.headers["content-type"].startswith("text/csv")
    assert len(list(csv.DictReader(io.StringIO(table.text)))) == 6 * 7
    page = client.get("/services/linkage", params={"format": "html", "lang": "ko"})
    assert page.headers["content-type"].startswith("text/html")
    assert "미세먼지 대응" in page.text
    markdown = client.get("/services/linkage", params={"format": "md"})
    assert markdown.text.startswith("# CPS linkage table")
    assert client.get("/services/linkage", params={"format": "pdf"}).status_code == 400
