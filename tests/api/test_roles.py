"""Roles and API keys (issue 7, part 4): who may write what, and the audit trail of access."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from citytwin.api import create_app
from citytwin.auth import (
    KeyRing,
    Principal,
    Role,
    can,
    feed_of,
    may_write_thing,
    parse_key_spec,
    read_keys_file,
    thing_department,
)
from citytwin.config import Settings, audit_log_path
from citytwin.control.audit import AuditLog
from citytwin.errors import ConfigurationError
from citytwin.model.sensing import Thing
from citytwin.store import open_store

KEYS = (
    "adm-9f2=admin@boss",
    "env-5c1=writer:environment@env-team",
    "trn-77a=writer:transport@trn-team",
    "ops-301=operator@ops",
    "pub-e0e=public@viewer",
)
TOKENS = {
    "admin": "adm-9f2",
    "env": "env-5c1",
    "trn": "trn-77a",
    "operator": "ops-301",
    "public": "pub-e0e",
}
ACTORS = {"admin": "boss", "env": "env-team", "trn": "trn-team", "operator": "ops"}
ACTORS |= {"public": "viewer", "anonymous": "anonymous"}
T0 = datetime(2026, 3, 15, tzinfo=UTC)
UNIT = {"name": "degree Celsius", "symbol": "°C", "definition": "http://unitsofmeasure.org/ucum"}


def _auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"} if who in TOKENS else {}


def _datastream(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "unitOfMeasurement": UNIT,
        "Sensor": {"name": f"{name} sensor"},
        "ObservedProperty": {"name": name, "definition": f"https://example.org/{name}"},
    }


@dataclass
class City:
    client: TestClient
    audit: AuditLog
    env_thing: int  # key sdot:…, owned by environment through feed_departments
    env_stream: int
    trn_thing: int  # properties.department = transport
    trn_stream: int
    orphan_stream: int  # an api: Thing without department: admin only


@pytest.fixture
def city(tmp_path: Path, shared_data: Path) -> Iterator[City]:
    settings = Settings(
        store_url="memory://", api_tokens=KEYS, feed_departments=("sdot=environment",)
    )
    audit = AuditLog(tmp_path / "audit.jsonl")
    with open_store("memory://") as store:
        sdot = Thing(key="sdot:V02Q1940015", name="S-DoT V02Q1940015")
        store.register([sdot])
        app = create_app(settings, store=store, audit=audit)
        app.state.scenario_dir = tmp_path / "scenarios"
        with TestClient(app) as client:
            admin = _auth("admin")

            def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
                response = client.post(url, json=body, headers=admin)
                assert response.status_code == 201, response.text
                created: dict[str, Any] = response.json()
                return created

            env_stream = post(
                "/v1.1/Datastreams", {**_datastream("pm10"), "Thing": {"@iot.id": sdot.id}}
            )
            trn = post(
                "/v1.1/Things",
                {"name": "counter", "properties": {"department": "transport"},
                 "Datastreams": [_datastream("vehicles")]},
            )  # fmt: skip
            orphan = post("/v1.1/Things", {"name": "orphan", "Datastreams": [_datastream("x")]})

            def stream_of(thing: dict[str, Any]) -> int:
                found = client.get(f"/v1.1/Things({thing['@iot.id']})/Datastreams").json()
                return int(found["value"][0]["@iot.id"])

            yield City(
                client, audit, sdot.id or 0, env_stream["@iot.id"], trn["@iot.id"],
                stream_of(trn), stream_of(orphan),
            )  # fmt: skip


def _observation(minutes: int = 0) -> dict[str, Any]:
    return {"phenomenonTime": (T0 + timedelta(minutes=minutes)).isoformat(), "result": 21.5}


ALL = ["admin", "env", "trn", "operator", "public", "anonymous"]


@pytest.mark.parametrize(
    ("who", "expected"),
    list(zip(ALL, [201, 201, 201, 403, 403, 401], strict=True)),
)
def test_post_things_by_role(city: City, who: str, expected: int) -> None:
    response = city.client.post("/v1.1/Things", json={"name": "new"}, headers=_auth(who))
    assert response.status_code == expected, response.text
    if expected == 201:
        stamped = {"env": "environment", "trn": "transport"}.get(who)
        assert response.json()["properties"].get("department") == stamped
    elif who == "anonymous":
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    else:
        assert "needs role admin or writer" in response.json()["message"]


@pytest.mark.parametrize(
    ("who", "own", "other", "orphan"),
    [
        ("admin", 201, 201, 201),
        ("env", 201, 403, 403),
        ("trn", 403, 201, 403),
        ("operator", 403, 403, 403),
        ("public", 403, 403, 403),
        ("anonymous", 401, 401, 401),
    ],
)
def test_post_observations_by_role(city: City, who: str, own: int, other: int, orphan: int) -> None:
    streams = [(city.env_stream, own), (city.trn_stream, other), (city.orphan_stream, orphan)]
    for minutes, (stream, expected) in enumerate(streams):
        url = f"/v1.1/Datastreams({stream})/Observations"
        response = city.client.post(url, json=_observation(minutes), headers=_auth(who))
        assert response.status_code == expected, (stream, response.text)


def test_a_refusal_names_the_datastream_and_both_departments(city: City) -> None:
    body = {**_observation(), "Datastream": {"@iot.id": city.trn_stream}}
    response = city.client.post("/v1.1/Observations", json=body, headers=_auth("env"))
    assert response.status_code == 403
    message = response.json()["message"]
    assert f"Datastreams({city.trn_stream})" in message
    assert "'transport'" in message
    assert "'environment'" in message
    block = {
        "Datastream": {"@iot.id": city.trn_stream},
        "components": ["phenomenonTime", "result"],
        "dataArray": [[T0.isoformat(), 1.0]],
    }
    bulk = city.client.post("/v1.1/CreateObservations", json=[block], headers=_auth("env"))
    assert bulk.status_code == 403
    count = city.client.get(f"/v1.1/Datastreams({city.trn_stream})/Observations?$count=true")
    assert count.json()["@iot.count"] == 0


@pytest.mark.parametrize(
    ("who", "patch_own", "delete_other"),
    [
        ("admin", 200, 200),
        ("env", 200, 403),
        ("trn", 403, 200),
        ("operator", 403, 403),
        ("public", 403, 403),
        ("anonymous", 401, 401),
    ],
)
def test_patch_and_delete_by_role(city: City, who: str, patch_own: int, delete_other: int) -> None:
    """PATCH the environment Thing; DELETE the transport Datastream."""
    patched = city.client.patch(
        f"/v1.1/Things({city.env_thing})", json={"description": "moved"}, headers=_auth(who)
    )
    assert patched.status_code == patch_own, patched.text
    thing = city.client.get(f"/v1.1/Things({city.env_thing})").json()
    assert thing["description"] == ("moved" if patch_own == 200 else "")
    deleted = city.client.delete(f"/v1.1/Datastreams({city.trn_stream})", headers=_auth(who))
    assert deleted.status_code == delete_other, deleted.text
    left = city.client.get(f"/v1.1/Datastreams({city.trn_stream})").status_code
    assert left == (404 if delete_other == 200 else 200)


def test_a_writer_cannot_hand_a_thing_to_another_department(city: City) -> None:
    created = city.client.post(
        "/v1.1/Things", json={"name": "x", "properties": {"department": "transport"}},
        headers=_auth("env"),
    )  # fmt: skip
    assert created.status_code == 403
    url = f"/v1.1/Things({city.env_thing})"
    moved = city.client.patch(
        url, json={"properties": {"department": "transport"}}, headers=_auth("env")
    )
    assert moved.status_code == 403
    assert "department" not in city.client.get(url).json()["properties"]
    relink = city.client.patch(
        f"/v1.1/Datastreams({city.env_stream})", json={"Thing": {"@iot.id": city.trn_thing}},
        headers=_auth("env"),
    )  # fmt: skip
    assert relink.status_code == 403
    sensor = city.client.get(f"/v1.1/Datastreams({city.env_stream})/Sensor").json()
    catalogue = city.client.delete(f"/v1.1/Sensors({sensor['@iot.id']})", headers=_auth("env"))
    assert catalogue.status_code == 403
    assert "shared catalogue" in catalogue.json()["message"]


def test_ownership_follows_a_thing_handed_over_by_an_admin(city: City) -> None:
    url = f"/v1.1/Datastreams({city.env_stream})/Observations"
    assert city.client.post(url, json=_observation(0), headers=_auth("env")).status_code == 201
    handed = city.client.patch(
        f"/v1.1/Things({city.env_thing})", json={"properties": {"department": "transport"}},
        headers=_auth("admin"),
    )  # fmt: skip
    assert handed.status_code == 200
    assert city.client.post(url, json=_observation(1), headers=_auth("env")).status_code == 403
    assert city.client.post(url, json=_observation(2), headers=_auth("trn")).status_code == 201


@pytest.mark.parametrize(
    ("who", "expected"), list(zip(ALL, [201, 201, 201, 201, 403, 401], strict=True))
)
def test_post_scenarios_by_role(city: City, shared_data: Path, who: str, expected: int) -> None:
    spec = {
        "name": f"close-10-16-{who}", "model": "assignment",
        "base": {"network": str(shared_data / "tntp" / "SiouxFalls")},
        "changes": [{"close": [[10, 16], [16, 10]]}], "parameters": {"gap": 1e-4},
    }  # fmt: skip
    response = city.client.post("/scenarios", json=spec, headers=_auth(who))
    assert response.status_code == expected, response.text


def test_unknown_or_malformed_tokens_are_401(city: City) -> None:
    for header in ("Bearer not-a-key", "Basic adm-9f2", "Bearer "):
        response = city.client.post(
            "/v1.1/Things", json={"name": "x"}, headers={"Authorization": header}
        )
        assert response.status_code == 401, header
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_denials_and_writes_are_audited_once_each(city: City) -> None:
    before = len(city.audit.entries())
    url = f"/v1.1/Datastreams({city.env_stream})/Observations"
    client = city.client
    client.post(url, json=_observation(0), headers=_auth("env"))  # written
    client.post(url, json=_observation(0), headers=_auth("env"))  # 409: a write that failed
    client.post(url, json=_observation(1), headers=_auth("trn"))  # other department
    client.post(url, json=_observation(1), headers=_auth("public"))  # role
    client.post(url, json=_observation(1), headers={"Authorization": "Bearer nope"})
    client.get(url, headers=_auth("public"))  # a read is not recorded
    entries = city.audit.entries()[before:]
    seen = [(e.kind, e.actor, e.payload["status"]) for e in entries]
    assert seen == [
        ("access.write", "env-team", 201),
        ("access.write", "env-team", 409),
        ("access.denied", "trn-team", 403),
        ("access.denied", "viewer", 403),
        ("access.denied", "anonymous", 401),
    ]
    first = entries[0]
    assert first.subject == {"method": "POST", "path": url}
    assert first.payload["role"] == "writer"
    assert first.payload["department"] == "environment"
    assert "transport" in str(entries[2].payload["reason"])
    assert "nope" not in city.audit.path.read_text(encoding="utf-8")
    report = city.audit.verify()
    assert report.ok
    assert report.entries_checked == before + 5


# -- keys and settings ----------------------------------------------------------------------------
def test_key_specs_give_roles_departments_and_names() -> None:
    ring = KeyRing(parse_key_spec(text, position=i) for i, text in enumerate(KEYS, 1))
    assert ring.lookup("env-5c1") == Principal("env-team", Role.WRITER, "environment")
    assert ring.lookup("ops-301") == Principal("ops", Role.OPERATOR)
    assert ring.lookup("adm-9f2x") is None
    legacy = parse_key_spec("b64tok==", position=3).principal  # base64 padding: a bare token
    assert legacy == Principal("api_tokens[3]", Role.ADMIN)
    assert KeyRing([parse_key_spec("b64tok==")]).lookup("b64tok==") is not None
    assert "adm-9f2" not in repr(ring)


@pytest.mark.parametrize(
    "entry",
    [
        "sekrit-1=writer",  # writer without department
        "sekrit-1=operator:parks",  # department on a non-writer
        "sekrit-1=root",  # unknown role
        "sekrit-1=writer:",  # empty department
        "sekrit-1=public@",  # empty name
        "sekrit-1=writer:a b",  # bad department
        "=admin",  # empty token
    ],
)
def test_bad_key_specs_name_the_position_never_the_token(entry: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        KeyRing.from_settings(Settings(api_tokens=("fine-token", entry)))
    message = str(caught.value)
    assert "api_tokens entry 2" in message
    assert "sekrit" not in message
    assert "fine-token" not in message


def test_duplicate_tokens_are_refused_without_showing_them() -> None:
    with pytest.raises(ConfigurationError) as caught:
        KeyRing.from_settings(Settings(api_tokens=("dup-tok=admin@a", "dup-tok=public@b")))
    message = str(caught.value)
    assert "'a' and 'b'" in message
    assert "dup-tok" not in message


def test_tokens_are_absent_from_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYTWIN_API_TOKENS", "env-5c1=writer:environment, ops-301=operator")
    monkeypatch.setenv("CITYTWIN_FEED_DEPARTMENTS", "sdot=environment,mqtt=transport")
    settings = Settings.from_env()
    assert settings.feed_departments == ("sdot=environment", "mqtt=transport")
    assert "env-5c1" not in repr(settings)
    assert "ops-301" not in repr(settings)


def test_a_keys_file_holds_hashes_only(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"field-tablet-7").hexdigest()  # printf %s TOKEN | sha256sum
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        f"- token_sha256: {digest}\n  role: writer\n  department: parks\n  name: tablet\n"
        "- token: plain-key\n  role: operator\n",
        encoding="utf-8",
    )
    ring = KeyRing(read_keys_file(keys))
    assert ring.lookup("field-tablet-7") == Principal("tablet", Role.WRITER, "parks")
    assert ring.lookup("plain-key") == Principal("keys[2]", Role.OPERATOR)
    keys.write_text("- token: plain-key\n  role: writer\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="entry 1: role writer needs a department"):
        read_keys_file(keys)


def test_feeds_departments_and_permissions() -> None:
    assert (feed_of("sdot:V02Q1940015"), feed_of("mqtt:dev1")) == ("sdot", "mqtt")
    feeds = {"sdot": "environment"}
    assert thing_department("sdot:V02Q1940015", {}, feeds) == "environment"
    assert thing_department("api:0d1", {}, feeds) is None
    operator, public = Principal("o", Role.OPERATOR), Principal("p", Role.PUBLIC)
    writer = Principal("w", Role.WRITER, "environment")
    assert [can(p, "approve") for p in (operator, public, writer)] == [True, False, False]
    assert can(writer, "rules", department="environment")
    assert not can(writer, "rules", department="transport")
    assert not may_write_thing(operator, "environment")


def test_audit_log_path_follows_the_store(tmp_path: Path) -> None:
    store = tmp_path / "city.duckdb"
    assert audit_log_path(Settings(store_url=f"duckdb:///{store}")) == tmp_path / "city.audit.jsonl"
    explicit = Settings(store_url="memory://", audit_log=str(tmp_path / "a.jsonl"))
    assert audit_log_path(explicit) == tmp_path / "a.jsonl"
    ephemeral = audit_log_path(Settings(store_url="memory://"))
    assert ephemeral.parent.is_dir()
    assert ephemeral.name == "audit.jsonl"
