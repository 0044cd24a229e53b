"""Schemathesis over ``/openapi.json``: no generated request makes the API answer 5xx.

Every operation of the published schema is exercised with a bounded number of generated
requests (valid ones, then schema-violating ones) against an app over a populated in-memory
store, with a write token so the write routes are reached too: request bodies are generated from
the schemas the document declares, and updates and deletes run after every read so that deleting
the known entities does not turn the later reads into 404s. WebSocket routes are not in the
OpenAPI document and so are not exercised here.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case
from schemathesis.core.result import Err
from schemathesis.generation import GenerationMode

from citytwin.api import create_app
from citytwin.api.errors import install_error_handlers
from citytwin.api.sta import ENTITY_SETS
from citytwin.config import Settings
from citytwin.errors import ConfigurationError
from citytwin.ingest import read_feed
from citytwin.ingest.pipeline import ingest
from citytwin.space.city import bind_sensors, import_buildings, import_districts
from citytwin.store import open_store

KOSTAT = Path("seoul_boundaries") / "kostat" / "2013"
READINGS = [
    ("V02Q1940790", "202003150000", 10), ("V02Q1940790", "202003150002", 20),
    ("V02Q1940787", "202003150000", 30), ("V02Q1940612", "202003150002", 60),
]  # fmt: skip
TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# per operation, generation mode and path-parameter set: ~25 s on 2 cores. Under CI=true the
# conftest "ci" profile (inherited by the settings below) derandomizes the examples.
MAX_EXAMPLES = 12
LAST = {"patch": 1, "put": 1, "delete": 2}  # run order: reads and creates, updates, deletes


@pytest.fixture(scope="module")
def app(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    data = tmp_path_factory.mktemp("sdot-fuzz") / "sdot.csv"
    rows = "\n".join(f"{s},{v},{t}" for s, t, v in READINGS)
    data.write_text(f"시리얼,미세먼지2.5(초미세먼지),측정시간\n{rows}\n", encoding="utf-8")
    with open_store("memory://") as store:
        import_districts(store, shared_data / KOSTAT / "json/seoul_municipalities_geo.json")
        import_buildings(store, shared_data / "osm" / "asanH.osm")
        registry = shared_data / "sdot" / "sensor_longitude_latitude.csv"
        ingest(read_feed("sdot", str(data), registry=str(registry)), store)
        bind_sensors(store)
        yield create_app(Settings(store_url="memory://", api_tokens=(TOKEN,)), store=store)


def _known_path_parameters(app: FastAPI) -> dict[str, list[dict[str, Any]]]:
    """Path parameters naming entities that exist, per path template.

    Generated path parameters almost never name a real entity, so without these every request
    below a path parameter would stop at 404 before its query parameters were ever looked at.
    """
    with TestClient(app) as client:
        known: dict[str, list[dict[str, Any]]] = {}
        for entity_set in ENTITY_SETS:
            values = client.get(f"/v1.1/{entity_set}?$top=1").json()["value"]
            if values:
                known[entity_set] = [{"id": values[0]["@iot.id"]}]
        collections = [c["id"] for c in client.get("/collections").json()["collections"]]
        known["collections"] = []
        for collection in collections:
            items = client.get(f"/collections/{collection}/items?limit=1").json()["features"]
            known["collections"] += [
                {"collection_id": collection, "feature_id": f["id"]} for f in items
            ]
        sensors = [f["id"] for f in client.get("/twin/sensors").json()["features"]][:1]
        known["twin"] = [{"key": key} for key in sensors]
        known["ngsi-ld"] = [
            {"entity_id": f"urn:ngsi-ld:AirQualityObserved:{key}"} for key in sensors
        ]
    return known


def _path_choices(path: str, known: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The known parameter sets that fill exactly the placeholders of ``path``."""
    names = set(re.findall(r"{(\w+)}", path))
    if not names:
        return []
    if path.startswith("/v1.1/"):
        candidates = known.get(path.removeprefix("/v1.1/").split("(")[0], [])
    else:
        candidates = [c for group in known.values() for c in group]
    return [{n: c[n] for n in names} for c in candidates if names <= set(c)]


def _operations(app: FastAPI) -> list[APIOperation[Any, Any, Any, Any]]:
    """Every operation of the app's OpenAPI document; a schema schemathesis cannot read fails."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operations.append(result.ok())
    return operations


def _server_errors(
    operation: APIOperation[Any, Any, Any, Any],
    mode: GenerationMode,
    path_parameters: dict[str, Any] | None = None,
    statuses: Counter[str] | None = None,
) -> list[str]:
    """Generated requests of one operation that got a 5xx, as ``METHOD url -> status: body``.

    ``statuses`` counts the answers as ``"METHOD status"``.
    """
    found: list[str] = []
    counted: Counter[str] = Counter() if statuses is None else statuses

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    def run(case: Case[APIOperation[Any, Any, Any, Any]]) -> None:
        response = case.call(headers=AUTH)
        counted[f"{case.method.upper()} {response.status_code}"] += 1
        if response.status_code >= 500:
            found.append(
                f"{case.method} {response.request.url} -> {response.status_code}: "
                f"{response.text[:300]}"
            )

    try:
        run()
    except Unsatisfiable:
        # an operation without parameters or body has nothing to violate in negative mode
        if mode is GenerationMode.POSITIVE:
            raise
    return found


def test_no_generated_request_gets_a_server_error(app: FastAPI) -> None:
    known = _known_path_parameters(app)
    operations = sorted(_operations(app), key=lambda op: LAST.get(op.method.lower(), 0))
    failures: list[str] = []
    statuses: Counter[str] = Counter()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures += _server_errors(operation, mode, statuses=statuses)
            for parameters in _path_choices(operation.path, known):
                failures += _server_errors(operation, mode, parameters, statuses)
    assert len(operations) > 10
    assert not failures, "\n".join(failures)
    # generated bodies got through validation: entities were created, updated and deleted
    assert min(statuses["POST 201"], statuses["PATCH 200"], statuses["DELETE 200"]) > 0, statuses


def test_the_harness_sees_server_errors() -> None:
    """A 500 from the error table is reported; an unhandled exception propagates to the test."""
    broken = FastAPI()
    install_error_handlers(broken)

    @broken.get("/handled")
    def handled(n: int = 0) -> dict[str, int]:
        raise ConfigurationError(f"misconfigured for {n}")  # the table maps it to 500

    @broken.get("/unhandled")
    def unhandled(n: int = 0) -> dict[str, int]:
        raise RuntimeError(f"bug for {n}")

    operations = {operation.path: operation for operation in _operations(broken)}
    failures = _server_errors(operations["/handled"], GenerationMode.POSITIVE)
    assert failures
    assert all("-> 500" in failure for failure in failures)
    with pytest.raises(RuntimeError, match="bug for"):
        _server_errors(operations["/unhandled"], GenerationMode.POSITIVE)
