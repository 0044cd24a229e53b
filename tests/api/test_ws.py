"""WebSocket /ws/observations: stored observations reach the subscribers that asked for them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from citytwin.api import create_app
from citytwin.bus.memory import InProcessBus
from citytwin.config import Settings
from citytwin.ingest import read_feed
from citytwin.ingest.pipeline import Ingestor, datastream_key, ingest
from citytwin.model.sensing import stable_id
from citytwin.store import open_store

HEADER = "시리얼,미세먼지2.5(초미세먼지),기온,측정시간"
SEOUL = ("V02Q1940612", 126.9386, 37.5551)  # serial, lon, lat
BUSAN = ("V02Q1940790", 129.0756, 35.1796)
BUSAN_BBOX = "128.9,35.0,129.2,35.3"


@pytest.fixture(params=["memory://", "duckdb://"])
def app(request: pytest.FixtureRequest) -> Iterator[FastAPI]:
    with InProcessBus() as bus, open_store(request.param) as store:
        application = create_app(Settings(store_url="memory://"), store=store, bus=bus)
        application.state.ingestor = Ingestor(store, bus=bus)
        yield application


def _write_feed(path: Path, serial: str, rows: list[tuple[int, str]]) -> str:
    body = "".join(f"{serial},{pm25},1234,{time}\n" for pm25, time in rows)
    path.write_text(f"{HEADER}\n{body}", encoding="utf-8")
    return str(path)


def _ingest(app: FastAPI, path: str, registry: Path) -> None:
    # the API reads the store from its threads; the store is used by one thread at a time
    with app.state.store_access.lock:
        ingest(read_feed("sdot", path, registry=str(registry)), app.state.ingestor.store,
               ingestor=app.state.ingestor)  # fmt: skip


def _expected(sensor: tuple[str, float, float], pm25: float, time: str) -> dict[str, Any]:
    serial, lon, lat = sensor
    return {
        "datastream": stable_id("Datastream", datastream_key(f"sdot:{serial}", "pm25")),
        "thing": f"sdot:{serial}",
        "observedProperty": "pm25",
        "phenomenonTime": time,
        "result": pm25,
        "resultQuality": [],
        "lon": lon,
        "lat": lat,
    }


@pytest.mark.timeout(60)
def test_subscribers_receive_exactly_what_was_stored(app: FastAPI, tmp_path: Path) -> None:
    registry = tmp_path / "registry.csv"
    registry.write_text(
        "시리얼,위도,경도\n" + "".join(f"{s},{lat},{lon}\n" for s, lon, lat in (SEOUL, BUSAN)),
        encoding="utf-8",
    )
    seoul = _write_feed(
        tmp_path / "seoul.csv", SEOUL[0], [(12, "202003150000"), (15, "202003150002")]
    )
    busan = _write_feed(tmp_path / "busan.csv", BUSAN[0], [(7, "202003150001")])
    with (
        TestClient(app) as client,
        client.websocket_connect("/ws/observations?property=pm25") as pm25,
        client.websocket_connect(f"/ws/observations?property=pm25&bbox={BUSAN_BBOX}") as far,
    ):
        _ingest(app, seoul, registry)
        _ingest(app, busan, registry)
        # ordered per connection: the temperature rows (기온) in between were filtered out
        assert [pm25.receive_json() for _ in range(3)] == [
            _expected(SEOUL, 12.0, "2020-03-14T15:00:00+00:00"),
            _expected(SEOUL, 15.0, "2020-03-14T15:02:00+00:00"),
            _expected(BUSAN, 7.0, "2020-03-14T15:01:00+00:00"),
        ]
        # the first message of the Busan box is Busan's: nothing from Seoul came before it
        assert far.receive_json() == _expected(BUSAN, 7.0, "2020-03-14T15:01:00+00:00")


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("bbox=127.0,37.5,127.1", "bbox"),
        ("bbox=127.2,37.5,127.1,37.6", "bbox"),
        ("bbox=east,37.5,127.1,37.6", "bbox"),
        ("property=pm2.5", "property"),
    ],
)
def test_bad_parameters_close_with_policy_violation(
    app: FastAPI, query: str, parameter: str
) -> None:
    with (
        TestClient(app) as client,
        client.websocket_connect(f"/ws/observations?{query}") as socket,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        socket.receive_json()
    assert closed.value.code == 1008
    assert closed.value.reason.startswith(f"{parameter}: ")
    assert app.state.bus.subscribers == 0


def test_leaving_clients_unsubscribe(app: FastAPI) -> None:
    with TestClient(app) as client, client.websocket_connect("/ws/observations") as socket:
        socket.send_text("hello")  # clients may talk; the server ignores it
        assert app.state.bus.subscribers == 1
    assert app.state.bus.subscribers == 0
