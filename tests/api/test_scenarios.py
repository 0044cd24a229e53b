"""``/scenarios``: create (token), run (token), list, compare as JSON and PNG."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from citytwin.api.app import create_app
from citytwin.api.scenarios import MAX_SPEC_BYTES, create_router
from citytwin.config import Settings

TOKEN = {"Authorization": "Bearer t"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(Settings(store_url="memory://", api_tokens=("t",)))
    if not any(isinstance(r, APIRoute) and r.path == "/scenarios" for r in app.routes):
        app.include_router(create_router())
    app.state.scenario_dir = tmp_path / "registry"
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def spec(shared_data: Path) -> dict[str, object]:
    return {
        "name": "close-10-16", "model": "assignment",
        "base": {"network": str(shared_data / "tntp" / "SiouxFalls")},
        "changes": [{"close": [[10, 16], [16, 10]]}], "parameters": {"gap": 1e-4},
    }  # fmt: skip


def test_writes_need_the_token(client: TestClient, spec: dict[str, object]) -> None:
    assert client.post("/scenarios", json=spec).status_code == 401
    bad = {"Authorization": "Bearer wrong"}
    assert client.post("/scenarios", json=spec, headers=bad).status_code == 401
    assert client.post("/scenarios/close-10-16/runs").status_code == 401
    assert client.get("/scenarios").json() == []


def test_create_run_list_compare(
    client: TestClient, spec: dict[str, object], tmp_path: Path
) -> None:
    created = client.post("/scenarios", json=spec, headers=TOKEN)
    assert created.status_code == 201
    assert created.json()["changes"] == spec["changes"]
    ran = client.post("/scenarios/close-10-16/runs", headers=TOKEN)
    assert ran.status_code == 201
    record = ran.json()
    assert record["run_id"] == "close-10-16.1"
    assert record["summary"]["links"] == 74
    assert (tmp_path / "registry" / "close-10-16" / "runs" / "close-10-16.1").is_dir()
    listed = client.get("/scenarios").json()
    assert [(s["name"], s["runs"], s["latest_run"]) for s in listed] == [
        ("close-10-16", 1, "close-10-16.1")
    ]
    assert client.get("/scenarios/close-10-16").json()["runs"] == ["close-10-16.1"]
    runs = client.get("/scenarios/close-10-16/runs").json()
    assert runs[0]["result_sha256"] == record["result_sha256"]
    compared = client.get("/scenarios/compare", params={"a": "close-10-16"})
    assert compared.status_code == 200
    body = compared.json()
    assert body["b"] == record["baseline_id"]
    assert body["tstt_change"] == pytest.approx(body["tstt_variant"] - body["tstt_base"])
    assert body["tstt_change"] > 0
    assert body["links_closed"] == 2
    picture = client.get("/scenarios/compare", params={"a": "close-10-16.1", "format": "png"})
    assert picture.headers["content-type"] == "image/png"
    assert picture.content.startswith(b"\x89PNG")


def test_errors_name_the_field(client: TestClient, spec: dict[str, object]) -> None:
    wrong = client.post("/scenarios", json={**spec, "model": "traffic"}, headers=TOKEN)
    assert wrong.status_code == 400
    assert "expected one of assignment, plume" in wrong.json()["message"]
    bad_change = {**spec, "changes": [{"capacity": {"links": [[1, 2]], "factor": -1}}]}
    answer = client.post("/scenarios", json=bad_change, headers=TOKEN).json()
    assert "changes[0].capacity.factor" in answer["message"]
    huge = client.post("/scenarios", content=b" " * (MAX_SPEC_BYTES + 1), headers=TOKEN)
    assert huge.status_code == 400
    assert huge.json()["parameter"] == "body"
    missing = client.get("/scenarios/compare", params={"a": "nope"})
    assert missing.status_code == 404
    assert "'nope'" in missing.json()["message"]
    assert client.get("/scenarios/nope").status_code == 404
