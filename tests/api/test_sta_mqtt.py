"""The SensorThings MQTT extension (OGC 18-088 14.2) against a real mosquitto broker."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from citytwin.api import create_app
from citytwin.api.sta import observation_ids
from citytwin.api.sta_mqtt import FEED, MAX_UNACKED, StaMqttBridge
from citytwin.config import Settings
from citytwin.ingest import read_feed
from citytwin.ingest.pipeline import Ingestor, datastream_key, ingest
from citytwin.model.sensing import stable_id
from citytwin.mqtt.broker import Mosquitto, parse_broker_url
from citytwin.store import open_store
from citytwin.store.base import ObservationFrame, QuarantineRecord, Store

HEADER = "시리얼,미세먼지2.5(초미세먼지),기온,측정시간"
SERIAL, LON, LAT = "V02Q1940612", 126.9386, 37.5551
PM25 = stable_id("Datastream", datastream_key(f"sdot:{SERIAL}", "pm25"))
TEMPERATURE = stable_id("Datastream", datastream_key(f"sdot:{SERIAL}", "air_temperature"))
BASE = "http://testserver/v1.1"  # what the TestClient's requests render, so bodies compare equal
DEADLINE_S = 30.0


def until(what: str, ready: Callable[[], bool], timeout: float = DEADLINE_S) -> None:
    """Poll until ``ready()``; fail naming ``what`` after the deadline."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.02)


class Peer:
    """An MQTT client of the test: subscribes (waiting for the SUBACK), collects, publishes."""

    def __init__(self, url: str, *topics: str, qos: int = 1) -> None:
        self.messages: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        host, port = parse_broker_url(url)
        self.client.connect(host, port)
        self.client.loop_start()
        if topics:
            self.client.subscribe([(topic, qos) for topic in topics])
            assert self._subscribed.wait(DEADLINE_S), f"no SUBACK for {topics}"

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, json.loads(msg.payload)))

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        assert not any(reason.is_failure for reason in reasons)
        self._subscribed.set()

    def notifications(self) -> list[dict[str, Any]]:
        """The server's notifications (full STA JSON), not other clients' create requests."""
        with self._lock:
            return [body for _, body in self.messages if "@iot.id" in body]

    def publish(self, topic: str, payload: object) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        self.client.publish(topic, text, qos=1).wait_for_publish(DEADLINE_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(params=["memory://", "duckdb://"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    with open_store(request.param) as opened:
        yield opened


def make_app(store: Store, url: str, *, create: bool = True) -> FastAPI:
    settings = Settings(
        store_url="memory://", mqtt_url=url, mqtt_create=create, public_url="http://testserver"
    )
    return create_app(settings, store=store)


def bridge_of(app: FastAPI) -> StaMqttBridge:
    bridge = app.state.mqtt
    assert isinstance(bridge, StaMqttBridge)
    return bridge


def ingest_sdot(app: FastAPI, tmp_path: Path, rows: list[tuple[int, str]]) -> None:
    """Store an S-DoT file (pm25 and temperature per row) through the pipeline and app bus."""
    registry = tmp_path / "registry.csv"
    registry.write_text(f"시리얼,위도,경도\n{SERIAL},{LAT},{LON}\n", encoding="utf-8")
    feed = tmp_path / "sdot.csv"
    body = "".join(f"{SERIAL},{pm25},21,{time}\n" for pm25, time in rows)
    feed.write_text(f"{HEADER}\n{body}", encoding="utf-8")
    access = app.state.store_access
    with access.lock:
        store = access.store()
        batches = read_feed("sdot", str(feed), registry=str(registry))
        ingest(batches, store, ingestor=Ingestor(store, bus=app.state.bus))


def observations_of(client: TestClient, datastream_id: int) -> list[dict[str, Any]]:
    response = client.get(f"/v1.1/Datastreams({datastream_id})/Observations")
    assert response.status_code == 200, response.text
    values: list[dict[str, Any]] = response.json()["value"]
    return sorted(values, key=lambda body: body["phenomenonTime"])


def quarantined(app: FastAPI) -> list[QuarantineRecord]:
    access = app.state.store_access
    with access.lock:
        records: list[QuarantineRecord] = access.store().quarantined(feed=FEED)
        return records


@pytest.mark.timeout(120)
def test_subscribers_receive_the_sta_json_of_ingested_observations(
    store: Store, broker: Mosquitto, tmp_path: Path
) -> None:
    app = make_app(store, broker.url, create=False)
    with TestClient(app) as client:
        until("bridge connected", lambda: bridge_of(app).connected)
        pm25 = Peer(broker.url, f"v1.1/Datastreams({PM25})/Observations")
        everything = Peer(broker.url, "v1.1/Observations")
        try:
            ingest_sdot(app, tmp_path, [(12, "202003150000"), (15, "202003150002")])
            until("2 pm25 notifications", lambda: len(pm25.notifications()) >= 2)
            until("4 notifications", lambda: len(everything.notifications()) >= 4)
            stored = observations_of(client, PM25)
            assert [o["result"] for o in stored] == [12.0, 15.0]
            # exactly the read side's JSON: @iot.id, @iot.selfLink, navigation links and all
            assert sorted(pm25.notifications(), key=lambda b: b["phenomenonTime"]) == stored
            assert stored[0]["phenomenonTime"] == "2020-03-14T15:00:00Z"
            both = observations_of(client, PM25) + observations_of(client, TEMPERATURE)
            by_id = {body["@iot.id"]: body for body in both}
            assert {b["@iot.id"]: b for b in everything.notifications()} == by_id
            assert len(everything.notifications()) == 4  # nothing published twice
        finally:
            pm25.close()
            everything.close()


@pytest.mark.timeout(120)
def test_observations_published_to_the_broker_are_created(
    store: Store, broker: Mosquitto, tmp_path: Path
) -> None:
    app = make_app(store, broker.url)
    with TestClient(app) as client:
        until("bridge ready", lambda: bridge_of(app).connected)
        watcher = Peer(broker.url, f"v1.1/Datastreams({PM25})/Observations")
        device = Peer(broker.url)
        try:
            ingest_sdot(app, tmp_path, [(12, "202003150000")])  # the datastreams to publish into
            until("the ingest's notification", lambda: len(watcher.notifications()) == 1)
            device.publish(
                f"v1.1/Datastreams({PM25})/Observations",
                {"phenomenonTime": "2020-03-15T00:10:00+09:00", "result": 31.5},
            )
            device.publish(
                "v1.1/Observations",
                {
                    "phenomenonTime": "2020-03-15T00:20:00+09:00",
                    "result": 33,
                    "resultTime": "2020-03-15T00:20:01+09:00",
                    "Datastream": {"@iot.id": PM25},
                },
            )
            until("3 pm25 observations", lambda: len(observations_of(client, PM25)) == 3)
            stored = observations_of(client, PM25)
            assert [(o["phenomenonTime"], o["result"]) for o in stored] == [
                ("2020-03-14T15:00:00Z", 12.0),
                ("2020-03-14T15:10:00Z", 31.5),
                ("2020-03-14T15:20:00Z", 33.0),
            ]
            # created observations are announced like ingested ones (via observations/mqtt)
            until("3 notifications", lambda: len(watcher.notifications()) >= 3)
            notified = sorted(watcher.notifications(), key=lambda b: b["phenomenonTime"])
            assert notified == stored
            assert quarantined(app) == []
        finally:
            watcher.close()
            device.close()


@pytest.mark.timeout(120)
def test_refused_creates_are_quarantined_with_their_reason(
    store: Store, broker: Mosquitto, tmp_path: Path
) -> None:
    app = make_app(store, broker.url)
    with TestClient(app) as client:
        ingest_sdot(app, tmp_path, [(12, "202003150000")])
        until("bridge ready", lambda: bridge_of(app).connected)
        device = Peer(broker.url)
        topic = f"v1.1/Datastreams({PM25})/Observations"
        sent = [
            (topic, "{not json"),
            (topic, json.dumps({"phenomenonTime": "2020-03-15T00:30:00Z", "result": "high"})),
            ("v1.1/Datastreams(999)/Observations", '{"phenomenonTime": "2020-03-15T00:30:00Z", '
             '"result": 1.0}'),
            (topic, json.dumps({"phenomenonTime": "2020-03-14T15:00:00Z", "result": 99.0})),
            ("v1.1/Observations", json.dumps({"phenomenonTime": "2020-03-15T00:30:00Z",
                                              "result": 2.0})),
            ("v1.1/Things(1)/Observations", json.dumps({"phenomenonTime": "2020-03-15T00:30:00Z",
                                                        "result": 2.0})),
        ]  # fmt: skip
        try:
            for where, payload in sent:
                device.publish(where, payload)
            until("6 quarantined", lambda: len(quarantined(app)) == len(sent))
        finally:
            device.close()
        records = sorted(quarantined(app), key=lambda r: r.line or 0)
        assert [(r.feed, r.source, r.raw) for r in records] == [(FEED, t, p) for t, p in sent]
        assert [r.line for r in records] == [1, 2, 3, 4, 5, 6]
        reasons = [r.reason for r in records]
        assert reasons[0].startswith("body: not valid JSON")
        assert reasons[1].startswith("result: ")
        assert reasons[2] == "Datastream: no Datastreams(999)"
        assert "has an Observation at 2020-03-14T15:00:00+00:00 already" in reasons[3]
        assert reasons[4] == "Datastream: an Observation needs a Datastream link"
        assert reasons[5].startswith("topic 'v1.1/Things(1)/Observations': create via MQTT takes")
        stored = observations_of(client, PM25)
        assert [(o["phenomenonTime"], o["result"]) for o in stored] == [
            ("2020-03-14T15:00:00Z", 12.0)
        ]


@pytest.mark.timeout(120)
def test_server_starts_without_the_broker_and_connects_when_it_is_up(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = Mosquitto(tmp_path / "broker")  # a port of its own, nobody listening yet
    app = make_app(store, broker.url)
    with TestClient(app) as client:
        assert client.get("/v1.1").status_code == 200
        assert not bridge_of(app).connected
        until("the failure logged", lambda: "unreachable; retrying" in caplog.text)
        ingest_sdot(app, tmp_path, [(12, "202003150000")])
        with broker:
            until("bridge connected after the broker started", lambda: bridge_of(app).connected)
            device = Peer(broker.url)
            try:
                device.publish(
                    f"v1.1/Datastreams({PM25})/Observations",
                    {"phenomenonTime": "2020-03-15T00:10:00+09:00", "result": 31.5},
                )
                until("created", lambda: len(observations_of(client, PM25)) == 2)
            finally:
                device.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_large_frame_reaches_subscribers_in_full(broker: Mosquitto) -> None:
    rows = 2 * MAX_UNACKED  # two messages a row: four times the unacknowledged window
    start_us = 1_584_230_400_000_000  # 2020-03-15T00:00:00Z
    frame = ObservationFrame.from_arrays(
        np.full(rows, PM25), start_us + np.arange(rows) * 60_000_000, np.arange(rows) / 10
    )
    with open_store("memory://") as store, TestClient(make_app(store, broker.url)) as client:
        app = client.app
        assert isinstance(app, FastAPI)
        until("bridge connected", lambda: bridge_of(app).connected)
        # QoS 0 to this peer: paho acknowledging each message in the test's own process (sharing
        # the GIL with the bridge) would be the slowest part; the bridge still publishes at QoS 1
        peer = Peer(broker.url, f"v1.1/Datastreams({PM25})/Observations", qos=0)
        try:
            app.state.bus.publish("observations/large", frame)
            assert client.get("/v1.1").status_code == 200  # the event loop serves meanwhile
            until(f"{rows} notifications", lambda: len(peer.messages) >= rows, timeout=240)
            received = peer.notifications()
        finally:
            peer.close()
    assert len(received) == rows
    assert {body["@iot.id"] for body in received} == set(observation_ids(frame).tolist())
    assert received[-1]["result"] == (rows - 1) / 10  # in order, the last row last


@pytest.mark.timeout(120)
def test_the_server_ingests_devices_and_announces_their_readings(
    store: Store, broker: Mosquitto
) -> None:
    settings = Settings(
        store_url="memory://", mqtt_url=broker.url, mqtt_ingest_topics=("devices/#",)
    )
    app = create_app(settings, store=store)
    with TestClient(app) as client:
        until("bridge connected", lambda: bridge_of(app).connected)
        until("device subscriber connected", lambda: app.state.mqtt_ingest.ingest.connected)
        watcher = Peer(broker.url, "v1.1/Observations")
        device = Peer(broker.url)
        try:
            for minute, pm25 in ((0, 11.5), (2, 13.0)):
                reading = {
                    "thing": "dev-7",
                    "phenomenonTime": f"2026-11-23T09:0{minute}:00+09:00",
                    "lon": 127.1,
                    "lat": 37.51,
                    "values": {"pm25": pm25},
                }
                device.publish("devices/dev-7", reading)
            until("2 notifications", lambda: len(watcher.notifications()) >= 2)
            body = client.get("/v1.1/Observations?$orderby=phenomenonTime").json()
            assert [o["result"] for o in body["value"]] == [11.5, 13.0]
            assert body["value"][0]["phenomenonTime"] == "2026-11-23T00:00:00Z"  # KST → UTC
            notified = sorted(watcher.notifications(), key=lambda o: o["phenomenonTime"])
            assert [o["@iot.id"] for o in notified] == [o["@iot.id"] for o in body["value"]]
        finally:
            watcher.close()
            device.close()
    assert not app.state.mqtt_ingest._thread.is_alive()  # stopped with the server


AUTH = {"Authorization": "Bearer t"}


def make_writable_app(store: Store, url: str) -> FastAPI:
    settings = Settings(
        store_url="memory://", mqtt_url=url, public_url="http://testserver", api_tokens=("t",)
    )
    return create_app(settings, store=store)


def created(client: TestClient, entity_set: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"/v1.1/{entity_set}", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()
    return found


def read(client: TestClient, path: str) -> dict[str, Any]:
    response = client.get(f"/v1.1/{path}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


@pytest.mark.timeout(120)
def test_entity_set_and_entity_topics_announce_creates_and_updates(
    store: Store, broker: Mosquitto
) -> None:
    app = make_writable_app(store, broker.url)
    with TestClient(app) as client:
        until("bridge connected", lambda: bridge_of(app).connected)
        things = Peer(broker.url, "v1.1/Things")
        try:
            thing = created(client, "Things", {"name": "station", "properties": {"floor": 1}})
            until("the new Thing", lambda: len(things.notifications()) == 1)
            # exactly the read side's JSON
            assert things.notifications() == [read(client, f"Things({thing['@iot.id']})")]
            one = Peer(broker.url, f"v1.1/Things({thing['@iot.id']})")
            name = Peer(broker.url, f"v1.1/Things({thing['@iot.id']})/name")
            try:
                response = client.patch(
                    f"/v1.1/Things({thing['@iot.id']})", json={"name": "moved"}, headers=AUTH
                )
                assert response.status_code == 200, response.text
                # (the creation may reach it too, when the bridge announced it after SUBSCRIBE)
                until(
                    "the updated Thing", lambda: "moved" in [b["name"] for b in one.notifications()]
                )
                until("the updated name", lambda: len(name.messages) >= 1)
                assert one.notifications()[-1] == read(client, f"Things({thing['@iot.id']})")
                assert one.notifications()[-1]["name"] == "moved"
                assert [body for _, body in name.messages] == [{"name": "moved"}]
            finally:
                one.close()
                name.close()
            assert len(things.notifications()) == 1  # an update is no new member of the set
        finally:
            things.close()


@pytest.mark.timeout(120)
def test_a_deep_insert_announces_every_created_entity(store: Store, broker: Mosquitto) -> None:
    app = make_writable_app(store, broker.url)
    unit = {"name": "degree Celsius", "symbol": "degC", "definition": "ucum:Cel"}

    def datastream(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "unitOfMeasurement": unit,
            "Sensor": {"name": f"{name} sensor"},
            "ObservedProperty": {"name": name, "definition": f"urn:{name}"},
        }

    with TestClient(app) as client:
        until("bridge connected", lambda: bridge_of(app).connected)
        datastreams = Peer(broker.url, "v1.1/Datastreams")
        sensors = Peer(broker.url, "v1.1/Sensors")
        try:
            body = {"name": "station", "Datastreams": [datastream("pm25"), datastream("pm10")]}
            thing = created(client, "Things", body)
            until("2 Datastreams", lambda: len(datastreams.notifications()) >= 2)
            until("2 Sensors", lambda: len(sensors.notifications()) >= 2)
            stored = read(client, f"Things({thing['@iot.id']})/Datastreams")["value"]
            by_id = {d["@iot.id"]: d for d in datastreams.notifications()}
            assert len(datastreams.notifications()) == 2  # once per Datastream
            assert by_id == {d["@iot.id"]: d for d in stored}
            # a Datastream created afterwards reaches its Thing's navigation set
            linked = Peer(broker.url, f"v1.1/Things({thing['@iot.id']})/Datastreams")
            try:
                third = created(client, "Datastreams", {**datastream("no2"), "Thing": thing})
                until("the linked Datastream", lambda: len(linked.notifications()) == 1)
                assert linked.notifications() == [read(client, f"Datastreams({third['@iot.id']})")]
            finally:
                linked.close()
        finally:
            datastreams.close()
            sensors.close()
