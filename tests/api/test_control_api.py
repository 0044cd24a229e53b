"""The control API and the SensorThings Tasking Core: approval by role, 403s recorded, rules by
department, overrides, and POST Tasks — against a controller on the logging fake."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient

from citytwin.api import create_app
from citytwin.config import Settings
from citytwin.control.audit import AuditLog
from citytwin.control.config import parse_control
from citytwin.control.dispatcher import Controller
from citytwin.store import open_store

KEYS = (
    "adm-1=admin@boss",
    "env-2=writer:environment@env-team",
    "trn-3=writer:transport@trn-team",
    "ops-4=operator@op-kim",
    "pub-5=public@viewer",
)
TOKENS = {"admin": "adm-1", "env": "env-2", "trn": "trn-3", "operator": "ops-4", "public": "pub-5"}
DONG = "1111051"
CONTROL = {
    "actuators": [
        {"match": "spray-truck:*", "url": "log://trucks?ack=always", "name": "Spray trucks",
         "commands": {"spray": {"description": "Wash the roads",
                                "parameters": {"minutes": {"type": "integer", "unit": "min",
                                                           "required": True}}}}},
        {"match": "vms:*", "url": "log://signs?ack=always"},
    ],
    "rules": [{
        "name": "dong-pm25", "department": "environment",
        "when": {"property": "pm25", "scope": "dong", "window": "10min", "on": {"above": 75}},
        "actions": [{"task": {"actuator": "spray-truck:{dong}", "command": "spray",
                              "parameters": {"minutes": 30}}}],
    }],
}  # fmt: skip


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"} if who in TOKENS else {}


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[TestClient, Controller, AuditLog]]:
    audit = AuditLog(tmp_path / "audit.jsonl")
    controller = Controller(parse_control(CONTROL), audit=audit, sinks=())
    settings = Settings(store_url="memory://", api_tokens=KEYS)
    with open_store("memory://") as store:
        app = create_app(settings, store=store, audit=audit, control=controller)
        with TestClient(app) as client:
            yield client, controller, audit


def with_control_file(tmp_path: Path) -> Settings:
    """Settings of a server that builds its controller from a control file (CONTROL) and an
    audit log in ``tmp_path``, as ``citytwin serve --control`` does: what a restart reads."""
    control = tmp_path / "control.yaml"
    control.write_text(yaml.safe_dump(CONTROL), "utf-8")
    return Settings(store_url="memory://", api_tokens=KEYS, control_file=str(control),
                    audit_log=str(tmp_path / "audit.jsonl"))  # fmt: skip


def waiting_task(controller: Controller) -> str:
    times = pd.date_range("2026-06-01 09:00", periods=2, freq="10min", tz="UTC")
    readings = {"property": "pm25", "sensor": "s1", "dong": DONG, "gu": "11110", "time": times}
    controller.observe(pd.DataFrame({**readings, "value": [90.0, 91.0]}))
    (task,) = controller.tasks()
    return task.id


def test_only_operators_and_admins_approve_and_refusals_are_recorded(
    setup: tuple[TestClient, Controller, AuditLog],
) -> None:
    client, controller, audit = setup
    task_id = waiting_task(controller)
    queue = client.get("/control/tasks", params={"state": "awaiting_approval"}).json()
    assert [(t["id"], t["rule"], t["scope"]) for t in queue] == [(task_id, "dong-pm25", DONG)]
    url, body = f"/control/tasks/{task_id}/approve", {"reason": "dust seen on CCTV"}
    answers = {who: client.post(url, json=body, headers=auth(who)).status_code
               for who in ("anonymous", "public", "env", "trn")}  # fmt: skip
    assert answers == {"anonymous": 401, "public": 403, "env": 403, "trn": 403}
    denied = [(e.actor, e.payload["status"]) for e in audit.entries() if e.kind == "access.denied"]
    assert denied == [("anonymous", 401), ("viewer", 403), ("env-team", 403), ("trn-team", 403)]
    assert client.get(f"/control/tasks/{task_id}").json()["state"] == "awaiting_approval"
    missing_reason = client.post(url, json={}, headers=auth("operator"))
    assert missing_reason.status_code == 400
    approved = client.post(url, json=body, headers=auth("operator"))
    assert approved.status_code == 200
    assert approved.json()["state"] == "acknowledged"  # the fake truck answers at once
    steps = [(h["to"], h["actor"]) for h in approved.json()["history"]]
    assert steps[:3] == [
        ("awaiting_approval", "system"),
        ("approved", "op-kim"),
        ("sent", "system"),
    ]
    again = client.post(url, json=body, headers=auth("operator"))
    assert again.status_code == 409
    assert "cannot move from 'acknowledged' to 'approved'" in again.json()["message"]
    assert audit.verify().ok


def test_a_public_key_cannot_send_a_task_through_the_tasking_api(
    setup: tuple[TestClient, Controller, AuditLog],
) -> None:
    client, controller, audit = setup
    root = client.get("/v1.1").json()
    assert {"Actuators", "TaskingCapabilities", "Tasks"} <= {v["name"] for v in root["value"]}
    caps = client.get("/v1.1/TaskingCapabilities").json()["value"]
    spray = next(c for c in caps if c["properties"]["command"] == "spray")
    fields = {f["name"]: f for f in spray["taskingParameters"]["field"]}
    expected = {"name": "minutes", "label": "minutes", "description": "", "type": "Count"}
    assert fields["minutes"] == {**expected, "required": True, "uom": {"code": "min"}}
    assert client.get(spray["Actuator@iot.navigationLink"]).json()["name"] == "Spray trucks"
    body = {"TaskingCapability": {"@iot.id": spray["@iot.id"]},
            "taskingParameters": {"actuator": f"spray-truck:{DONG}", "minutes": 20}}  # fmt: skip
    assert client.post("/v1.1/Tasks", json=body, headers=auth("public")).status_code == 403
    assert controller.tasks() == []
    bad = {**body, "taskingParameters": {"actuator": f"spray-truck:{DONG}", "minutes": "20"}}
    wrong = client.post("/v1.1/Tasks", json=bad, headers=auth("operator"))
    assert wrong.status_code == 400
    assert wrong.json()["parameter"] == "taskingParameters.minutes"
    created = client.post("/v1.1/Tasks", json=body, headers=auth("operator"))
    assert created.status_code == 201
    task = created.json()
    assert created.headers["Location"] == task["@iot.selfLink"]
    assert task["taskingParameters"] == {"actuator": f"spray-truck:{DONG}", "minutes": 20}
    assert task["status"] == "acknowledged"
    assert client.get(f"/v1.1/Tasks('{task['@iot.id']}')").json()["status"] == "acknowledged"
    kinds = [(e.kind, e.actor) for e in audit.entries()]
    assert ("access.denied", "viewer") in kinds
    assert ("task.approved", "op-kim") in kinds


def test_writers_change_only_their_department_rules(
    setup: tuple[TestClient, Controller, AuditLog],
) -> None:
    client, controller, _ = setup
    rule: dict[str, Any] = {
        "when": {"property": "pm25", "scope": "dong", "window": "1h", "on": {"above": 80}},
    }
    assert client.put("/control/rules/dong-pm25", json=rule, headers=auth("trn")).status_code == 403
    assert (
        client.put("/control/rules/dong-pm25", json=rule, headers=auth("operator")).status_code
        == 403
    )
    changed = client.put("/control/rules/dong-pm25", json=rule, headers=auth("env"))
    assert changed.status_code == 200
    assert changed.json()["department"] == "environment"
    assert controller.config.rule("dong-pm25").when.on.value == 80
    other = {**rule, "department": "environment"}
    refused = client.put("/control/rules/jam", json=other, headers=auth("trn"))
    assert refused.status_code == 403
    unknown = {"when": {"property": "pm2.5", "window": "1h", "on": {"above": 80}}}
    invalid = client.put("/control/rules/x", json=unknown, headers=auth("admin"))
    assert invalid.status_code == 400
    assert "unknown property 'pm2.5'" in invalid.json()["message"]


def test_override_and_dry_run_switches(setup: tuple[TestClient, Controller, AuditLog]) -> None:
    client, controller, _ = setup
    body = {"active": True, "reason": "truck in maintenance"}
    url = "/control/actuators/spray-truck:*/override"
    assert client.post(url, json=body, headers=auth("public")).status_code == 403
    status = client.post(url, json=body, headers=auth("operator")).json()
    assert status["overrides"]["spray-truck:*"]["actor"] == "op-kim"
    assert controller.overridden(f"spray-truck:{DONG}") is not None
    switch = {"active": True}
    assert client.post("/control/dry-run", json=switch, headers=auth("operator")).status_code == 403
    assert client.post("/control/dry-run", json=switch, headers=auth("admin")).json()["dryRun"]
    alerts = client.get("/control/alerts", params={"kind": "override"}).json()
    assert [a["message"].split(" by ")[0] for a in alerts] == [
        "global dry run switched on", "automation suspended for spray-truck:*",
    ]  # fmt: skip


def test_without_a_control_file_the_routes_say_so(tmp_path: Path) -> None:
    with open_store("memory://") as store:
        app = create_app(Settings(store_url="memory://"), store=store)
        with TestClient(app) as client:
            answer = client.get("/control/tasks")
            assert answer.status_code == 404
            assert "CITYTWIN_CONTROL_FILE" in answer.json()["message"]
            names = {v["name"] for v in client.get("/v1.1").json()["value"]}
            assert "Tasks" not in names


def test_rule_changes_survive_a_restart_unless_the_file_changed_since(tmp_path: Path) -> None:
    """PUT /control/rules keeps a rule in the controller and audits it whole; a new app on the
    same audit log re-applies it, unless the control file was edited after it (newer wins)."""
    settings = with_control_file(tmp_path)
    control = Path(str(settings.control_file))
    an_hour_ago = time.time() - 3600
    os.utime(control, (an_hour_ago, an_hour_ago))

    def threshold(put: dict[str, Any] | None = None) -> float:
        with open_store("memory://") as store:
            app = create_app(settings, store=store)
            with TestClient(app) as client:
                if put is not None:
                    answer = client.put("/control/rules/dong-pm25", json=put, headers=auth("env"))
                    assert answer.status_code == 200, answer.text
                return float(app.state.control.controller.config.rule("dong-pm25").when.on.value)

    rule = {"when": {"property": "pm25", "scope": "dong", "window": "1h", "on": {"above": 80}}}
    assert threshold() == 75  # the file's
    assert threshold(rule) == 80  # changed through the API
    assert threshold() == 80  # a restart keeps it
    os.utime(control)  # the file edited (touched) after the API change: the file wins
    assert threshold() == 75


def test_restore_skips_rules_that_no_longer_parse(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    good = {"name": "heat", "when": {"property": "air_temperature", "window": "1h",
                                     "on": {"above": 33}}}  # fmt: skip
    bad = {"name": "old", "when": {"property": "pm2.5", "window": "1h", "on": {"above": 80}}}
    for payload in (bad, good):
        audit.append("rule.set", actor="admin", subject={"rule": str(payload["name"])},
                     payload=payload)  # fmt: skip
    audit.append("task.sent", actor="system", subject={"task": "t1"}, payload={})
    controller = Controller(parse_control(CONTROL), audit=audit, sinks=())
    with caplog.at_level(logging.WARNING, logger="citytwin.control.dispatcher"):
        assert controller.restore_rules(audit.entries()) == ["heat"]
    assert "audit entry 1" in caplog.text
    assert "pm2.5" in caplog.text
    assert [r.name for r in controller.config.rules] == ["dong-pm25", "heat"]
    assert len(audit.entries()) == 3  # restoring records nothing


def test_the_approval_queue_survives_a_restart(tmp_path: Path) -> None:
    """Tasks are rebuilt from the audit log when the server starts: the task waiting for a
    person is still in the queue, with its rule and scope, and can be approved."""
    settings = with_control_file(tmp_path)
    with open_store("memory://") as store, TestClient(create_app(settings, store=store)) as client:
        task_id = waiting_task(client.app.state.control.controller)  # type: ignore[attr-defined]
    with open_store("memory://") as store, TestClient(create_app(settings, store=store)) as client:
        queue = client.get("/control/tasks", params={"state": "awaiting_approval"}).json()
        assert [(t["id"], t["rule"], t["scope"]) for t in queue] == [(task_id, "dong-pm25", DONG)]
        approved = client.post(f"/control/tasks/{task_id}/approve", headers=auth("operator"),
                               json={"reason": "dust seen on CCTV"})  # fmt: skip
        assert approved.status_code == 200
        assert approved.json()["state"] == "acknowledged"
