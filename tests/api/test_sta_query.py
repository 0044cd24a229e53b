"""SensorThings ``$select``, ``$expand``, navigation ``$filter`` and Observation push-down.

A two-station city (Songpa-gu and Mapo-gu), each with a PM2.5 and a temperature Datastream of six
hourly observations, over the memory fake and DuckDB.
"""

from __future__ import annotations

import math
import string
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from citytwin.api import create_app
from citytwin.api.errors import InvalidParameterError
from citytwin.api.sta import _sort_value
from citytwin.api.sta_options import bind_options
from citytwin.api.sta_query import (
    QuerySyntaxError,
    QueryText,
    format_expand,
    parse_expand,
    parse_select,
)
from citytwin.config import Settings
from citytwin.model.sensing import (
    Datastream,
    Entity,
    Location,
    ObservedProperty,
    Sensor,
    Thing,
    UnitOfMeasurement,
)
from citytwin.store import open_store
from citytwin.store.base import ObservationFrame, Store, to_micros

T0 = datetime(2026, 3, 15, tzinfo=UTC)
HOURS = 6
PM25 = [5.0, 8.0, 11.0, 14.0, 17.0, 20.0]  # µg/m³, hourly from T0
TEMPERATURE = [1.5, 2.0, 2.5, 3.0, 3.5, 4.0]  # °C
SENSOR = Sensor(key="test:sensor", name="S-DoT sensor")
PM = ObservedProperty(key="test:pm25", name="PM2.5", definition="http://example.org/pm25")
TEMP = ObservedProperty(key="test:t", name="Air temperature", definition="http://example.org/t")
SONGPA = Thing(key="test:songpa", name="Songpa station", properties={"gu": "송파구"})
MAPO = Thing(key="test:mapo", name="Mapo station", properties={"gu": "마포구"})
SONGPA_PLACE = Location(
    key="test:songpa-place",
    name="Olympic Park",
    location={"type": "Point", "coordinates": [127.1215, 37.5206]},
    thing_id=SONGPA.id,
)


def _stream(thing: Thing, prop: ObservedProperty, unit: str) -> Datastream:
    return Datastream(
        key=f"{thing.key}/{prop.key}",
        name=f"{thing.name} {prop.name}",
        unit_of_measurement=UnitOfMeasurement(name=unit, symbol=unit, definition="http://x"),
        # only the PM2.5 streams say what they observe: the others order as null
        properties={"observedProperty": prop.name} if prop is PM else {},
        thing_id=thing.id or 0,
        sensor_id=SENSOR.id or 0,
        observed_property_id=prop.id or 0,
    )


STREAMS = {
    (thing.name, prop.name): _stream(thing, prop, unit)
    for thing in (SONGPA, MAPO)
    for prop, unit in ((PM, "µg/m³"), (TEMP, "°C"))
}
SONGPA_PM = STREAMS["Songpa station", "PM2.5"].id or 0


def _seed(store: Store) -> None:
    entities: list[Entity] = [SENSOR, PM, TEMP, SONGPA, MAPO, SONGPA_PLACE, *STREAMS.values()]
    store.register(entities)
    times = [to_micros(T0 + timedelta(hours=h)) for h in range(HOURS)]
    for (_, prop), stream in STREAMS.items():
        values = PM25 if prop == "PM2.5" else TEMPERATURE
        store.write_observations(
            ObservationFrame.from_arrays([stream.id or 0] * HOURS, times, values)
        )


@pytest.fixture(params=["memory://", "duckdb://"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    with open_store(request.param) as opened:
        _seed(opened)
        yield opened


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(store_url="memory://"), store=store)) as test_client:
        yield test_client


def _get(client: TestClient, url: str, status: int = 200) -> dict[str, Any]:
    response = client.get(url)
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


# -- $select ------------------------------------------------------------------------------------
def test_select_keeps_only_the_named_properties(client: TestClient) -> None:
    things = _get(client, "/v1.1/Things?$select=name,@iot.id")["value"]
    assert sorted((t["name"], t["@iot.id"]) for t in things) == sorted(
        [("Songpa station", SONGPA.id), ("Mapo station", MAPO.id)]
    )
    assert all(set(t) == {"name", "@iot.id"} for t in things)
    assert _get(client, f"/v1.1/Things({SONGPA.id})?$select=name") == {"name": "Songpa station"}
    linked = _get(client, f"/v1.1/Things({SONGPA.id})?$select=id,Datastreams")
    assert linked == {
        "@iot.id": SONGPA.id,
        "Datastreams@iot.navigationLink": f"http://testserver/v1.1/Things({SONGPA.id})/Datastreams",
    }
    results = _get(client, f"/v1.1/Datastreams({SONGPA_PM})/Observations?$select=result")
    assert results["value"] == [{"result": r} for r in PM25]


def test_unknown_select_is_400_naming_the_property(client: TestClient) -> None:
    body = _get(client, "/v1.1/Things?$select=name,nope", 400)
    assert body["parameter"] == "$select"
    assert "no property 'nope'" in body["message"]
    assert "position 5" in body["message"]
    assert "description" in body["message"]  # the allowed names are listed
    syntax = _get(client, "/v1.1/Things?$select=name,,id", 400)
    assert syntax["parameter"] == "$select"
    assert "expected a name, got ',' at position 5" in syntax["message"]


# -- $expand ------------------------------------------------------------------------------------
def test_expand_to_many_inlines_the_set(client: TestClient) -> None:
    things = _get(client, "/v1.1/Things?$expand=Datastreams&$orderby=id")["value"]
    names = {t["name"]: sorted(d["name"] for d in t["Datastreams"]) for t in things}
    assert names == {
        "Songpa station": ["Songpa station Air temperature", "Songpa station PM2.5"],
        "Mapo station": ["Mapo station Air temperature", "Mapo station PM2.5"],
    }
    assert all("Datastreams@iot.nextLink" not in t for t in things)
    assert all("Datastreams@iot.navigationLink" in t for t in things)  # links stay


def test_expand_path_nests(client: TestClient) -> None:
    thing = _get(client, f"/v1.1/Things({SONGPA.id})?$expand=Datastreams/Observations")
    by_name = {d["name"]: [o["result"] for o in d["Observations"]] for d in thing["Datastreams"]}
    assert by_name == {
        "Songpa station PM2.5": PM25,
        "Songpa station Air temperature": TEMPERATURE,
    }


def test_expand_with_nested_options(client: TestClient) -> None:
    query = (
        "$expand=Datastreams($select=name;$expand=ObservedProperty,"
        "Observations($top=3;$orderby=phenomenonTime desc;$filter=result gt 10))"
    )
    thing = _get(client, f"/v1.1/Things({SONGPA.id})?{query}")
    pm = next(d for d in thing["Datastreams"] if d["name"] == "Songpa station PM2.5")
    assert set(pm) == {"name", "ObservedProperty", "Observations", "Observations@iot.nextLink"}
    assert pm["ObservedProperty"]["name"] == "PM2.5"
    assert [o["result"] for o in pm["Observations"]] == [20.0, 17.0, 14.0]
    rest = _get(client, pm["Observations@iot.nextLink"])
    assert [o["result"] for o in rest["value"]] == [11.0]
    assert "@iot.nextLink" not in rest
    link = unquote(pm["Observations@iot.nextLink"])
    assert link.startswith(f"http://testserver/v1.1/Datastreams({SONGPA_PM})/Observations?")
    temperature = next(d for d in thing["Datastreams"] if d["name"].endswith("temperature"))
    assert temperature["Observations"] == []  # all below 10 °C
    assert "Observations@iot.nextLink" not in temperature


def test_expand_two_sets_count_and_next_link(client: TestClient) -> None:
    thing = _get(
        client,
        f"/v1.1/Things({SONGPA.id})?$expand=Locations,Datastreams($count=true;$top=1;$orderby=id)",
    )
    assert [loc["name"] for loc in thing["Locations"]] == ["Olympic Park"]
    assert thing["Datastreams@iot.count"] == 2
    first = thing["Datastreams"]
    assert len(first) == 1
    second = _get(client, thing["Datastreams@iot.nextLink"])
    assert second["@iot.count"] == 2
    ids = [first[0]["@iot.id"], second["value"][0]["@iot.id"]]
    expected = sorted(s.id or 0 for s in STREAMS.values() if s.thing_id == SONGPA.id)
    assert ids == expected


def test_expand_to_one_on_collections_and_navigation(client: TestClient) -> None:
    observations = _get(
        client,
        f"/v1.1/Datastreams({SONGPA_PM})/Observations?$top=2&$expand=Datastream($select=name)",
    )
    assert [o["Datastream"] for o in observations["value"]] == [
        {"name": "Songpa station PM2.5"}
    ] * 2
    assert "$expand=Datastream" in unquote(observations["@iot.nextLink"])
    thing = _get(client, f"/v1.1/Datastreams({SONGPA_PM})/Thing?$expand=Locations($select=name)")
    assert thing["name"] == "Songpa station"
    assert thing["Locations"] == [{"name": "Olympic Park"}]
    streams = _get(client, f"/v1.1/Sensors({SENSOR.id})/Datastreams?$expand=Thing,ObservedProperty")
    pairs = sorted((d["Thing"]["name"], d["ObservedProperty"]["name"]) for d in streams["value"])
    assert pairs == sorted(STREAMS)
    one = _get(client, observations["value"][0]["@iot.selfLink"] + "?$expand=Datastream/Thing")
    assert one["Datastream"]["Thing"]["properties"] == {"gu": "송파구"}


@pytest.mark.parametrize(
    ("entity_set", "expand", "expected"),
    [
        ("Things", "Sensor", "Things has no navigation property 'Sensor' (at position 0)"),
        ("Things", "Sensor", "expected one of: Locations, HistoricalLocations, Datastreams"),
        ("Things", "Datastreams/Nope", "no navigation property 'Nope' (at position 12)"),
        ("Things", "Datastreams($top=x)", "integer for $top, got 'x' at position 17"),
        ("Things", "Datastreams($select=nope)", "$select: Datastreams has no property 'nope'"),
        ("Things", "Datastreams($select=nope)", "(at position 20)"),
        ("Things", "Datastreams($filter=name eq)", "$filter: expected an operand"),
        ("Things", "Datastreams($filter=name eq)", "got end of filter at position 27"),
        ("Things", "Datastreams($top=10001)", "$top: expected at most 10000"),
        ("Things", "Datastreams(", "at position 12"),
        ("Observations", "Datastreams", "expected one of: Datastream"),
    ],
)
def test_bad_expand_is_400_with_name_and_position(
    client: TestClient, entity_set: str, expand: str, expected: str
) -> None:
    body = _get(client, f"/v1.1/{entity_set}?$expand={expand}", 400)
    assert body["parameter"] == "$expand"
    assert expected in body["message"]


# -- $filter on navigation paths ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "count"),
    [
        (f"/v1.1/Observations?$filter=Datastream/@iot.id eq {SONGPA_PM}", HOURS),
        (f"/v1.1/Observations?$filter=Datastream/id eq {SONGPA_PM} and result ge 14", 3),
        ("/v1.1/Datastreams?$filter=Thing/name eq 'Songpa station'", 2),
        ("/v1.1/Datastreams?$filter=ObservedProperty/name eq 'PM2.5'", 2),
        ("/v1.1/Observations?$filter=Datastream/Thing/properties/gu eq '송파구'", 2 * HOURS),
        (
            "/v1.1/Observations?$filter=Datastream/Thing/properties/gu eq '마포구'"
            " and Datastream/ObservedProperty/name eq 'PM2.5' and result gt 10",
            4,
        ),
        ("/v1.1/HistoricalLocations?$filter=Thing/name eq 'Songpa station'", 0),
        (f"/v1.1/Things({SONGPA.id})/Datastreams?$filter=Sensor/name eq 'S-DoT sensor'", 2),
    ],
)
def test_filter_follows_to_one_links(client: TestClient, url: str, count: int) -> None:
    assert _get(client, f"{url}&$count=true")["@iot.count"] == count


def test_filter_across_to_many_is_400_naming_the_path(client: TestClient) -> None:
    body = _get(client, "/v1.1/Things?$filter=name eq 'x' or Datastreams/name eq 'x'", 400)
    assert body["parameter"] == "$filter"
    assert "path 'Datastreams/name' at position 15 crosses to-many navigation" in body["message"]
    deep = _get(client, "/v1.1/Observations?$filter=Datastream/Observations/result gt 1", 400)
    assert "'Datastream/Observations'" in deep["message"]


# -- push-down ----------------------------------------------------------------------------------
@pytest.fixture
def store_calls(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every ``store.observations`` call's arguments (the call itself still runs)."""
    calls: list[dict[str, Any]] = []
    read = store.observations

    def recording(**kwargs: Any) -> ObservationFrame:
        calls.append(kwargs)
        return read(**kwargs)

    monkeypatch.setattr(store, "observations", recording)
    return calls


def test_time_and_datastream_conjuncts_reach_the_store(
    client: TestClient, store_calls: list[dict[str, Any]]
) -> None:
    window = (
        "phenomenonTime ge 2026-03-15T02:00:00Z and result gt 0"
        f" and (phenomenonTime lt 2026-03-15T04:00:00Z and Datastream/@iot.id eq {SONGPA_PM})"
    )
    body = _get(client, f"/v1.1/Observations?$filter={window}")
    assert [o["result"] for o in body["value"]] == PM25[2:4]
    (call,) = store_calls
    assert call["datastream_ids"] == [SONGPA_PM]
    micro = timedelta(microseconds=1)
    assert call["start"] == T0 + timedelta(hours=2) - micro
    assert call["end"] == T0 + timedelta(hours=4) + micro


def test_pushed_down_bounds_keep_exact_answers(
    client: TestClient, store_calls: list[dict[str, Any]]
) -> None:
    base = f"/v1.1/Datastreams({SONGPA_PM})/Observations?$filter="
    at = "2026-03-15T03:00:00Z"
    expected = {"gt": PM25[4:], "ge": PM25[3:], "lt": PM25[:3], "le": PM25[:4], "eq": [PM25[3]]}
    for op, results in expected.items():
        body = _get(client, f"{base}phenomenonTime {op} {at}")
        assert [o["result"] for o in body["value"]] == results, op
        flipped = {"gt": "lt", "ge": "le", "lt": "gt", "le": "ge", "eq": "eq"}[op]
        body = _get(client, f"{base}{at} {flipped} phenomenonTime")
        assert [o["result"] for o in body["value"]] == results, op
    assert all(call["datastream_ids"] == [SONGPA_PM] for call in store_calls)
    assert all(call["start"] is not None or call["end"] is not None for call in store_calls)


def test_disjunction_is_not_pushed_down(
    client: TestClient, store_calls: list[dict[str, Any]]
) -> None:
    either = f"Datastream/id eq {SONGPA_PM} or result eq 4"
    body = _get(client, f"/v1.1/Observations?$filter={either}&$count=true")
    assert body["@iot.count"] == HOURS + 2  # Songpa PM2.5, and 4.0 °C at both stations
    assert store_calls == [{"datastream_ids": None, "start": None, "end": None}]
    other = STREAMS["Mapo station", "PM2.5"].id
    none = _get(
        client, f"/v1.1/Datastreams({SONGPA_PM})/Observations?$filter=Datastream/id eq {other}"
    )
    assert none["value"] == []


def test_next_link_keeps_expand_and_select(client: TestClient) -> None:
    url: str | None = (
        "/v1.1/Things?$top=1&$orderby=id desc&$select=name&$expand=Datastreams($select=name)"
    )
    seen: list[tuple[str, int]] = []
    while url is not None:
        body = _get(client, url)
        seen.extend((t["name"], len(t["Datastreams"])) for t in body["value"])
        url = body.get("@iot.nextLink")
    ordered = sorted([SONGPA, MAPO], key=lambda t: t.id or 0, reverse=True)
    assert seen == [(t.name, 2) for t in ordered]


# -- $orderby ----------------------------------------------------------------------------------
def _pages(client: TestClient, url: str) -> list[dict[str, Any]]:
    """Every entity of a collection, following ``@iot.nextLink``."""
    seen: list[dict[str, Any]] = []
    next_url: str | None = url
    while next_url is not None:
        body = _get(client, next_url)
        seen.extend(body["value"])
        next_url = body.get("@iot.nextLink")
    return seen


def _observations() -> list[tuple[int, datetime, float]]:
    """The seeded observations as (datastream, time, result)."""
    return [
        (stream.id or 0, T0 + timedelta(hours=h), value)
        for (_, prop), stream in STREAMS.items()
        for h, value in enumerate(PM25 if prop == "PM2.5" else TEMPERATURE)
    ]


def _when(body: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(body["phenomenonTime"].replace("Z", "+00:00"))


def test_orderby_a_property_descending(client: TestClient) -> None:
    things = _get(client, "/v1.1/Things?$orderby=name desc")["value"]
    assert [t["name"] for t in things] == ["Songpa station", "Mapo station"]
    ascending = _get(client, "/v1.1/Things?$orderby=properties/gu asc")["value"]
    assert [t["name"] for t in ascending] == sorted(
        ["Songpa station", "Mapo station"], key=lambda n: "송파구" if "Songpa" in n else "마포구"
    )


def test_orderby_several_keys_with_nulls_first(client: TestClient) -> None:
    streams = _get(client, "/v1.1/Datastreams?$orderby=properties/observedProperty asc, name desc")
    by_name = sorted(STREAMS.values(), key=lambda d: d.name, reverse=True)
    nulls_first = sorted(by_name, key=lambda d: "observedProperty" in d.properties)
    expected = [d.name for d in nulls_first]
    assert expected == [
        "Songpa station Air temperature",
        "Mapo station Air temperature",
        "Songpa station PM2.5",
        "Mapo station PM2.5",
    ]
    assert [d["name"] for d in streams["value"]] == expected
    flipped = _get(client, "/v1.1/Datastreams?$orderby=properties/observedProperty desc,name")
    assert [d["name"] for d in flipped["value"]] == [
        "Mapo station PM2.5",
        "Songpa station PM2.5",
        "Mapo station Air temperature",
        "Songpa station Air temperature",
    ]


def test_orderby_to_one_navigation_path_with_filter(client: TestClient) -> None:
    streams = _get(client, "/v1.1/Datastreams?$orderby=Thing/name,ObservedProperty/name desc")
    assert [d["name"] for d in streams["value"]] == [
        "Mapo station PM2.5",
        "Mapo station Air temperature",
        "Songpa station PM2.5",
        "Songpa station Air temperature",
    ]
    songpa = _get(
        client, "/v1.1/Datastreams?$filter=Thing/name eq 'Songpa station'&$orderby=name desc"
    )
    assert [d["name"] for d in songpa["value"]] == [
        "Songpa station PM2.5",
        "Songpa station Air temperature",
    ]


def test_orderby_observations_on_several_columns(client: TestClient) -> None:
    url = "/v1.1/Observations?$orderby=result desc, phenomenonTime asc&$top=100"
    got = [(o["result"], _when(o)) for o in _get(client, url)["value"]]
    expected = sorted(((r, t) for _, t, r in _observations()), key=lambda p: (-p[0], p[1]))
    assert got == expected
    assert got[:3] == [(20.0, T0 + timedelta(hours=5))] * 2 + [(17.0, T0 + timedelta(hours=4))]
    url = (
        "/v1.1/Observations?$orderby=result,phenomenonTime desc,Datastream/id desc"
        "&$expand=Datastream($select=id)"
    )
    body = _get(client, url)["value"]
    rows = sorted(_observations(), key=lambda o: (o[2], -o[1].timestamp(), -o[0]))
    assert [(o["Datastream"]["@iot.id"], _when(o), o["result"]) for o in body] == rows
    ids = [o["@iot.id"] for o in _get(client, "/v1.1/Observations?$orderby=id desc")["value"]]
    assert ids == sorted(ids, reverse=True)
    same = _get(client, "/v1.1/Observations?$orderby=resultTime desc, result")["value"]
    assert [o["result"] for o in same] == sorted(r for _, _, r in _observations())


def test_orderby_paging_follows_the_order(client: TestClient) -> None:
    order = "properties/observedProperty asc,name desc"
    whole = [d["name"] for d in _get(client, f"/v1.1/Datastreams?$orderby={order}")["value"]]
    paged = _pages(client, f"/v1.1/Datastreams?$orderby={order}&$top=1")
    assert [d["name"] for d in paged] == whole
    skipped = _get(client, f"/v1.1/Datastreams?$orderby={order}&$skip=1&$top=2&$count=true")
    assert [d["name"] for d in skipped["value"]] == whole[1:3]
    assert skipped["@iot.count"] == 4
    assert "$skip=3" in unquote(skipped["@iot.nextLink"])
    url = "/v1.1/Observations?$orderby=result desc,phenomenonTime&$top=5"
    observations = _pages(client, url)
    expected = sorted(((r, t) for _, t, r in _observations()), key=lambda p: (-p[0], p[1]))
    assert [(o["result"], _when(o)) for o in observations] == expected


def test_orderby_inside_expand(client: TestClient) -> None:
    query = (
        "$orderby=name desc&$expand=Datastreams($orderby=name desc;"
        "$expand=Observations($orderby=result desc;$top=2))"
    )
    things = _get(client, f"/v1.1/Things?{query}")["value"]
    assert [t["name"] for t in things] == ["Songpa station", "Mapo station"]
    songpa = things[0]["Datastreams"]
    assert [d["name"] for d in songpa] == ["Songpa station PM2.5", "Songpa station Air temperature"]
    assert [o["result"] for o in songpa[0]["Observations"]] == [20.0, 17.0]
    rest = _pages(client, songpa[0]["Observations@iot.nextLink"])
    assert [o["result"] for o in rest] == sorted(PM25, reverse=True)[2:]


@pytest.mark.parametrize(
    ("url", "parameter", "expected"),
    [
        (
            "/v1.1/Things?$orderby=name desc, nope asc",
            "$orderby",
            "Things has no property 'nope' to order by (at position 11); expected one of: id, "
            "description, name, properties",
        ),
        (
            "/v1.1/Datastreams?$orderby=Thing/nope",
            "$orderby",
            "no property 'Thing/nope' to order by (at position 0); expected one of: id, "
            "description, name, properties",
        ),
        ("/v1.1/Things?$orderby=Datastreams/name", "$orderby", "'Datastreams/name'"),
        ("/v1.1/Datastreams?$orderby=Thing", "$orderby", "'Thing' to order by (at position 0)"),
        (
            "/v1.1/Observations?$orderby=result,parameters",
            "$orderby",
            "'parameters' to order by (at position 7); expected one of: id, phenomenonTime, "
            "resultTime, result, Datastream/id",
        ),
        (
            "/v1.1/Things?$orderby=name sideways",
            "$orderby",
            "expected 'asc', 'desc', ',' or end of $orderby, got 'sideways' at position 5",
        ),
        ("/v1.1/Things?$orderby=name,", "$orderby", "got end of $orderby at position 5"),
        ("/v1.1/Things?$orderby=name/", "$orderby", "after '/' at position 5"),
        ("/v1.1/Things?$orderby=", "$orderby", "at position 0"),
        (
            "/v1.1/Things?$expand=Datastreams($orderby=name,nope)",
            "$expand",
            "$orderby: Datastreams has no property 'nope' to order by (at position 26)",
        ),
    ],
)
def test_bad_orderby_is_400_naming_the_key_and_position(
    client: TestClient, url: str, parameter: str, expected: str
) -> None:
    body = _get(client, url, 400)
    assert body["parameter"] == parameter
    assert expected in body["message"]


def test_sort_values_of_mixed_types_compare() -> None:
    values: list[object] = [{"a": 1}, "b", 2, None, True, 1.5, float("nan"), "a", [1]]
    ordered = sorted(values, key=_sort_value)
    assert ordered[0] is None
    assert math.isnan(ordered[1])  # type: ignore[arg-type]  # NaN orders as null
    assert ordered[2:] == [True, 1.5, 2, "a", "b", [1], {"a": 1}]


def test_service_root_lists_the_request_data_classes(client: TestClient) -> None:
    conformance = _get(client, "/v1.1")["serverSettings"]["conformance"]
    for name in ("select", "expand", "filter"):
        assert f"http://www.opengis.net/spec/iot_sensing/1.1/req/request-data/{name}" in conformance


PIECES = [
    "Datastreams", "Thing", "Observations", "Locations", "Datastream", "name", "/", ",", "(", ")",
    ";", "$top=", "$skip=", "$count=", "true", "$select=", "$expand=", "$filter=", "$orderby=",
    "3", "id", "result gt 1", "phenomenonTime desc", "'", " ", "x",
]  # fmt: skip


# -- the parser ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "Datastreams",
        "Locations,Datastreams/Observations",
        "Datastreams($select=name;$expand=ObservedProperty,Observations($top=3;$count=true))",
        "Observations($orderby=phenomenonTime desc;$filter=result gt 10 and name eq 'a;b)''c')",
        "Datastreams($skip=2;$filter=(result gt 1))",
    ],
)
def test_expand_text_round_trips(text: str) -> None:
    assert format_expand(parse_expand(text)) == text


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("", 0, "expected a name, got end of text"),
        ("Datastreams,", 12, "expected a name"),
        ("Datastreams(", 12, "expected one of $top"),
        ("Datastreams($top=1", 18, "expected ')', got end of text"),
        ("Datastreams($top=1;$top=2)", 19, "$top given twice"),
        ("Datastreams($count=yes)", 19, "expected true or false"),
        ("Datastreams($filter=)", 20, "expected a value"),
        ("Datastreams)", 11, "expected ',' or end of $expand"),
        ("Things" + "($expand=Things" * 16 + ")" * 16, 6 + 15 * 15 + 9, "nested expansions"),
        ("/".join(["Datastream", "Thing"] * 9), 11 + 17 * 7 + 6, "at most 16 nested expansions"),
    ],
)
def test_expand_syntax_errors_have_positions(text: str, position: int, message: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_expand(text)
    assert info.value.position == position
    assert message in info.value.message


@given(
    st.text(alphabet=string.printable, max_size=60) | st.lists(st.sampled_from(PIECES)).map("".join)
)
def test_any_expand_text_parses_and_binds_or_is_a_positioned_400(text: str) -> None:
    try:
        items = parse_expand(text)
    except QuerySyntaxError as error:
        position = error.position
    else:
        refused = []
        for entity_set in ("Things", "Observations"):
            try:
                bind_options(entity_set, QueryText(expand=items))
            except InvalidParameterError as error:
                refused.append(error.parameter)
        assert set(refused) <= {"$expand"}
        return
    assert 0 <= position <= len(text)


def test_select_parses_names_with_positions() -> None:
    assert [(s.text, s.position) for s in parse_select("name, @iot.id")] == [
        ("name", 0),
        ("@iot.id", 6),
    ]
    with pytest.raises(QuerySyntaxError, match=r"at position 5$"):
        parse_select("name id")
