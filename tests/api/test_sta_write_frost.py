"""Interoperability: the FROST Python client (frost-sta-client) writes and reads over real HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from citytwin.api import create_app
from citytwin.config import Settings
from citytwin.store import open_store

frost = pytest.importorskip("frost_sta_client")
TOKEN = "frost-token"
# the client calls a deprecated furl API; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:furl.pathstr is deprecated:DeprecationWarning")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(params=["memory://", "duckdb://"])
def base_url(request: pytest.FixtureRequest) -> Iterator[str]:
    with open_store(request.param) as store:
        app = create_app(Settings(store_url="memory://", api_tokens=(TOKEN,)), store=store)
        port = _free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{port}/v1.1"
        finally:
            server.should_exit = True
            thread.join(10)


def _bearer(request: Any) -> Any:
    request.headers["Authorization"] = f"Bearer {TOKEN}"
    return request


def test_frost_client_creates_and_reads_back(base_url: str) -> None:
    handler = frost.service.auth_handler.AuthHandler()
    handler.add_auth_header = lambda: _bearer
    service = frost.SensorThingsService(base_url, auth_handler=handler)
    thing = frost.Thing(name="frost thing", description="made by frost-sta-client")
    service.create(thing)
    assert thing.id is not None
    datastream = frost.Datastream(
        name="frost temperature",
        description="d",
        observation_type="http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
        unit_of_measurement=frost.UnitOfMeasurement(
            name="degree Celsius", symbol="°C", definition="http://unitsofmeasure.org"
        ),
        thing=thing,
        sensor=frost.Sensor(
            name="s", description="d", encoding_type="application/pdf", metadata="m"
        ),
        observed_property=frost.ObservedProperty(name="t", definition="http://x", description="d"),
    )
    service.create(datastream)
    things = service.things().query().filter("name eq 'frost thing'").list()
    assert [(t.id, t.name) for t in things] == [(thing.id, "frost thing")]
    assert [d.name for d in thing.get_datastreams().query().list()] == ["frost temperature"]
    values = {f"2026-03-15T{h:02d}:00:00Z": 10.0 + h for h in range(6)}
    for when, value in values.items():
        service.create(frost.Observation(phenomenon_time=when, result=value, datastream=datastream))
    found = (  # Datastreams(id)/Observations: the read side's $filter has no Datastream/@iot.id
        datastream.get_observations()
        .query()
        .filter("result ge 12")
        .orderby("phenomenonTime", "desc")  # the read side refuses "DESC", the client's default
        .list()
    )
    got = [(o.result, o.phenomenon_time) for o in found]
    assert [r for r, _ in got] == [15.0, 14.0, 13.0, 12.0]
    assert [t for _, t in got] == [f"2026-03-15T{h:02d}:00:00Z" for h in (5, 4, 3, 2)]
