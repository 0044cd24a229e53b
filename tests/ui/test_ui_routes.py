"""The dashboard's HTTP side (no browser): the page, its bundle, its configuration, and ``GET /``
redirecting browsers only — JSON clients keep the OGC API – Features landing page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from citytwin import __version__
from citytwin.api import create_app, ui
from citytwin.config import Settings
from citytwin.store import open_store

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def dashboard_app(static_dir: Path) -> FastAPI:
    return create_app(
        Settings(store_url="memory://"), store=open_store("memory://"), ui_dir=static_dir
    )


@pytest.fixture
def built(tmp_path: Path) -> Iterator[TestClient]:
    """An app serving a stand-in bundle (the page and one script)."""
    (tmp_path / "index.html").write_text("<!doctype html><title>citytwin</title>")
    (tmp_path / "app.js").write_text("export const ok = 1;\n")
    with TestClient(dashboard_app(tmp_path), follow_redirects=False) as client:
        yield client


def test_browsers_are_sent_to_the_dashboard_and_json_clients_get_the_landing_page(
    built: TestClient,
) -> None:
    browser = built.get("/", headers={"Accept": BROWSER_ACCEPT})
    assert browser.status_code == 307
    assert browser.headers["location"] == "/ui/"
    assert browser.headers["vary"] == "Accept"
    for accept in ("*/*", "application/json", "application/json, text/html;q=0.5", ""):
        landing = built.get("/", headers={"Accept": accept})
        assert landing.status_code == 200, accept
        assert landing.json()["title"] == "citytwin OGC API – Features"
    assert built.get("/ui").headers["location"].endswith("/ui/")


def test_the_page_and_its_bundle_are_served(built: TestClient) -> None:
    page = built.get("/ui/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.text == "<!doctype html><title>citytwin</title>"
    script = built.get("/ui/static/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.text == "export const ok = 1;\n"
    assert built.get("/ui/static/missing.js").status_code == 404
    assert built.get("/ui/config.json").json() == {"control": False, "version": __version__}
    paths = set(built.get("/openapi.json").json()["paths"])
    assert not {p for p in paths if p.startswith("/ui")}, "the page is not part of the API"


def test_an_unbuilt_dashboard_answers_503_naming_the_build_command(tmp_path: Path) -> None:
    with TestClient(dashboard_app(tmp_path / "not-built")) as client:
        page = client.get("/ui/")
    assert page.status_code == 503
    assert "node web/build.mjs" in page.text


def test_install_twice_changes_nothing(tmp_path: Path) -> None:
    app = dashboard_app(tmp_path)
    routes = len(app.routes)
    ui.install(app, static_dir=tmp_path)
    assert len(app.routes) == routes
