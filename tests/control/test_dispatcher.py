"""The controller end to end on the logging fake: firing, approval, delivery, retries, expiry,
rate limits, dry runs, overrides, checks — and the audit chain that records all of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from citytwin.control.audit import AuditLog
from citytwin.control.config import parse_control
from citytwin.control.dispatcher import Controller
from citytwin.control.log import LogActuator
from citytwin.control.tasks import TaskState
from citytwin.errors import ValidationError

T0 = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)
DONG, OTHER = "1111051", "1111053"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def config(*, approval: str = "required", ack: str = "always", **extra: Any) -> dict[str, Any]:
    actuator = {"match": "truck:*", "url": f"log://trucks?ack={ack}", "ack_timeout": "30s",
                "max_attempts": 3, "expires": "10min", **extra.pop("actuator", {})}  # fmt: skip
    rule = {
        "name": "dong-pm25",
        "when": {"property": "pm25", "scope": "dong", "window": "10min", "for": 2,
                 "on": {"above": 75}, "off": {"below": 60}},
        "cooldown": "1h",
        "actions": [
            {"alert": {"message": "PM2.5 {value:.0f} in {dong}"}},
            {"task": {"actuator": "truck:{dong}", "command": "spray", "approval": approval,
                      "parameters": {"minutes": 30, "dong": "{dong}"}}},
        ],
        **extra.pop("rule", {}),
    }  # fmt: skip
    return {"actuators": [actuator], "rules": [rule], **extra}


def readings(values: dict[str, list[float]], start: str = "2026-06-01 09:00") -> pd.DataFrame:
    """Two sensors per dong, one reading per 10-minute window each (the dong mean is the value)."""
    times = pd.date_range(start, periods=len(next(iter(values.values()))), freq="10min", tz="UTC")
    parts = []
    for dong, series in values.items():
        for sensor, offset in ((f"{dong}-a", -2.0), (f"{dong}-b", 2.0)):
            parts.append(pd.DataFrame({"property": "pm25", "sensor": sensor, "dong": dong,
                                       "gu": "11110", "time": times,
                                       "value": [v + offset for v in series]}))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def make(tmp_path: Path, **options: Any) -> tuple[Controller, Clock, AuditLog]:
    clock, audit = Clock(), AuditLog(tmp_path / "audit.jsonl", clock=lambda: T0)
    checker = options.pop("checker", None)
    controller = Controller(parse_control(config(**options)), audit=audit, clock=clock,
                            checker=checker, sinks=())  # fmt: skip
    return controller, clock, audit


def sent(controller: Controller, dong: str = DONG) -> list[dict[str, object]]:
    actuator = controller._actuators.get(f"truck:{dong}")
    assert actuator is None or isinstance(actuator, LogActuator)
    return [] if actuator is None else actuator.sent


def test_fires_once_waits_for_approval_then_is_sent_and_acknowledged(tmp_path: Path) -> None:
    controller, clock, audit = make(tmp_path)
    # two windows above 75 (for: 2) in DONG; the third is still open; OTHER stays clean
    first = controller.observe(readings({DONG: [90, 95, 99], OTHER: [30, 31, 32]}))
    kinds = [(a.kind, a.scope) for a in first]
    assert kinds == [("fired", DONG), ("approval_needed", DONG)]
    assert first[0].message == "PM2.5 95 in 1111051"  # the second window's mean: (93 + 97) / 2
    # hysteresis: 70 is below 75 but not below 60, so no clear and no second firing
    later = readings({DONG: [70, 99, 99], OTHER: [30, 30, 30]}, "2026-06-01 09:30")
    again = controller.observe(later)
    assert [a.kind for a in again] == []
    (task,) = controller.tasks()
    assert task.state is TaskState.AWAITING_APPROVAL
    assert sent(controller) == []
    assert task.parameters == {"minutes": 30, "dong": DONG}
    with pytest.raises(ValidationError, match="needs a reason"):
        controller.approve(task.id, actor="op-kim", reason=" ")
    clock.now += timedelta(minutes=1)
    controller.approve(task.id, actor="op-kim", reason="CCTV shows dust")
    assert task.state.value == "acknowledged"  # the fake answers at once
    assert [p["command"] for p in sent(controller)] == ["spray"]
    kinds_actors = [(e.kind, e.actor) for e in audit.entries()]
    assert kinds_actors == [
        ("rule.fired", "system"), ("task.awaiting_approval", "system"),
        ("task.approved", "op-kim"), ("task.sent", "system"),
        ("task.acknowledged", "truck:1111051"),
    ]  # fmt: skip
    fired, *_, sent_entry = audit.entries()
    assert fired.payload["window"] == ["2026-06-01T09:10:00+00:00", "2026-06-01T09:20:00+00:00"]
    assert sent_entry.payload["decision"] == fired.seq
    assert audit.verify().ok


def test_automatic_task_without_ack_is_retried_then_expires_and_the_alert_names_the_rule(
    tmp_path: Path,
) -> None:
    controller, clock, _ = make(tmp_path, approval="none", ack="never")
    controller.observe(readings({DONG: [90, 90, 90]}))
    (task,) = controller.tasks()
    assert task.state is TaskState.SENT
    assert task.attempts == 1
    for attempt in (2, 3):
        clock.now += timedelta(seconds=31)
        controller.pump()
        assert task.attempts == attempt
    clock.now += timedelta(seconds=31)
    alerts = controller.pump()
    assert task.state.value == "expired"  # (mypy narrowed state to SENT above)
    assert len(sent(controller)) == 3
    (alert,) = alerts
    assert alert.kind == "task_expired"
    assert alert.rule == "dong-pm25"
    assert "expired: no acknowledgement after 3 attempt(s)" in alert.message


def test_rate_limit_holds_the_second_task_until_the_period_has_passed(tmp_path: Path) -> None:
    controller, clock, _ = make(
        tmp_path, approval="none", actuator={"rate_limit": "1/h"}, rule={"cooldown": "20min"}
    )
    # fires at 09:20, clears at 09:30 (below 60), fires again at 09:50
    alerts = controller.observe(readings({DONG: [90, 90, 40, 90, 90, 10]}))
    assert [a.kind for a in alerts].count("fired") == 2
    assert [a.kind for a in alerts][-1] == "rate_limited"
    assert len(sent(controller)) == 1
    clock.now += timedelta(minutes=59)
    controller.pump()
    assert len(sent(controller)) == 1
    clock.now += timedelta(minutes=2)
    controller.pump()
    assert len(sent(controller)) == 2


def test_dry_run_global_and_per_rule_records_but_sends_nothing(tmp_path: Path) -> None:
    choices: list[dict[str, Any]] = [{"dry_run": True}, {"rule": {"dry_run": True}}]
    for number, options in enumerate(choices):
        folder = tmp_path / str(number)
        folder.mkdir()
        controller, _, audit = make(folder, approval="none", **options)
        alerts = controller.observe(readings({DONG: [90, 90, 90]}))
        assert "dry_run" in [a.kind for a in alerts]
        assert controller.tasks() == []
        assert sent(controller) == []
        assert [e.kind for e in audit.entries()] == ["rule.fired", "task.dry_run"]


def test_manual_override_makes_automatic_tasks_wait_for_a_person(tmp_path: Path) -> None:
    controller, _, audit = make(tmp_path, approval="none")
    controller.override("truck:*", active=True, actor="op-lee", reason="truck in maintenance")
    alerts = controller.observe(readings({DONG: [90, 90, 90]}))
    (task,) = controller.tasks()
    assert task.state is TaskState.AWAITING_APPROVAL
    assert "manual override by op-lee" in alerts[-1].message
    controller.override("truck:*", active=False, actor="op-lee", reason="back in service")
    with pytest.raises(ValidationError, match="no manual override"):
        controller.override("truck:*", active=False, actor="op-lee", reason="again")
    assert [e.kind for e in audit.entries()][:1] == ["actuator.override"]


@dataclass(frozen=True)
class Outcome:
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "detail": self.detail}


def test_simulation_check_rejects_or_lets_through(tmp_path: Path) -> None:
    check = {"scenario": "signal-plan", "max_tstt_increase_pct": 5}
    task_rule = {"actions": [{"task": {"actuator": "truck:{dong}", "command": "spray",
                                       "approval": "none", "check": check}}]}  # fmt: skip
    for passed in (False, True):
        folder = tmp_path / str(passed)
        folder.mkdir()
        seen: list[dict[str, object]] = []

        def checker(
            spec: Any, parameters: Any, passed: bool = passed, seen: list[Any] = seen
        ) -> Outcome:
            seen.append({"scenario": spec.scenario, "limit": spec.max_tstt_increase_pct})
            return Outcome(passed, "TSTT +7.2 % (limit 5 %)" if not passed else "TSTT +1 %")

        controller, _, audit = make(folder, checker=checker, rule=task_rule)
        alerts = controller.observe(readings({DONG: [90, 90, 90]}))
        (task,) = controller.tasks()
        assert seen == [{"scenario": "signal-plan", "limit": 5.0}]
        if passed:
            assert task.state is TaskState.ACKNOWLEDGED
            assert task.history[1].reason == "check passed: TSTT +1 %"
        else:
            assert task.state is TaskState.REJECTED
            assert sent(controller) == []
            assert alerts[-1].kind == "check_failed"
            assert "TSTT +7.2 %" in alerts[-1].message
        assert "task.check" in [e.kind for e in audit.entries()]


def test_unroutable_actuator_is_refused_with_a_reason(tmp_path: Path) -> None:
    rule = {"actions": [{"task": {"actuator": "pump:{dong}", "command": "spray"}}]}
    controller, _, _ = make(tmp_path, rule=rule)
    alerts = controller.observe(readings({DONG: [90, 90, 90]}))
    assert alerts[-1].kind == "unroutable"
    assert "'pump:1111051'" in alerts[-1].message
    assert controller.tasks() == []
    with pytest.raises(ValidationError, match="no actuator entry matches"):
        controller.submit("pump:1", "spray", actor="op", reason="test")


def test_a_person_submits_a_task_and_a_failed_answer_raises_an_alert(tmp_path: Path) -> None:
    controller, _, audit = make(tmp_path, ack="reject")
    task = controller.submit("truck:1111051", "spray", {"minutes": 10}, actor="op-kim",
                             reason="complaint from school")  # fmt: skip
    assert task.state is TaskState.FAILED
    alert = controller.alerts[-1]
    assert alert.kind == "task_failed"
    assert alert.rule is None
    assert "refused" in alert.message
    assert [(e.kind, e.actor) for e in audit.entries()][:2] == [
        ("task.awaiting_approval", "system"), ("task.approved", "op-kim")
    ]  # fmt: skip


def test_tasks_survive_a_restart_from_the_audit_log(tmp_path: Path) -> None:
    """A restarted controller rebuilds its tasks from the audit log: the approval queue, a sent
    task still waiting for its acknowledgement (re-sent on time), and the idempotency keys that
    keep a decision firing again from becoming a second task."""
    before, clock, audit = make(tmp_path, ack="never")
    before.observe(readings({DONG: [90, 95, 99], OTHER: [90, 95, 99]}))
    waiting, other = sorted(before.tasks(), key=lambda t: t.parameters["dong"] != DONG)
    clock.now += timedelta(minutes=1)
    before.approve(other.id, actor="op-kim", reason="CCTV shows dust")
    assert (waiting.state, other.state, other.attempts) == (TaskState.AWAITING_APPROVAL,
                                                            TaskState.SENT, 1)  # fmt: skip

    after = Controller(before.config, audit=audit, clock=clock, sinks=())
    restored = after.restore_tasks(audit.entries())
    assert [t.id for t in restored] == [waiting.id, other.id]
    fields = ("id", "idempotency_key", "actuator_id", "command", "parameters", "created_at",
              "requires_approval", "ack_timeout", "max_attempts", "expires_at", "state",
              "attempts", "last_sent_at", "history")  # fmt: skip
    for old, new in zip((waiting, other), restored, strict=True):
        assert {f: getattr(new, f) for f in fields} == {f: getattr(old, f) for f in fields}
        assert after.origins[new.id] == before.origins[old.id]
    assert after.origins[other.id].rule == "dong-pm25"

    clock.now += timedelta(seconds=31)  # other's acknowledgement is overdue: sent again
    after.pump()
    assert after.book.get(other.id).attempts == 2
    assert [p["task_id"] for p in sent(after, OTHER)] == [other.id]
    after.approve(waiting.id, actor="op-lee", reason="confirmed by phone")
    assert after.book.get(waiting.id).state is TaskState.SENT
    after.observe(readings({DONG: [90, 95, 99], OTHER: [90, 95, 99]}))  # the same decisions
    assert len(after.tasks()) == 2
    assert after.restore_tasks(audit.entries()) == []  # twice: the book keeps its own
    assert audit.verify().ok


def test_a_task_whose_history_does_not_replay_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before, _, audit = make(tmp_path, ack="never")
    before.observe(readings({DONG: [90, 95, 99]}))
    (task,) = before.tasks()
    before.approve(task.id, actor="op-kim", reason="CCTV shows dust")
    approved = next(e for e in audit.entries() if e.kind == "task.approved")
    gap = [e for e in audit.entries() if e.seq != approved.seq]
    after = Controller(before.config, audit=audit, sinks=())
    assert after.restore_tasks(gap) == []
    with pytest.raises(ValidationError, match="no task has this id"):
        after.book.get(task.id)
    sent_seq = next(e.seq for e in gap if e.kind == "task.sent")
    assert f"audit entry {sent_seq}: task {task.id} not restored: it moves from approved" in (
        caplog.text
    )


def test_a_task_audited_before_delivery_was_recorded_takes_its_actuator_settings(
    tmp_path: Path,
) -> None:
    """Creation entries written by an older citytwin lack the delivery facts: the actuator's
    entry in the control file gives them, and the entry's time stands for the transition's."""
    controller, _, audit = make(tmp_path)
    old = {"from": "created", "reason": "approval required", "attempt": 0, "command": "spray",
           "parameters": {"minutes": 30}, "idempotency_key": "k-old", "rule": None,
           "decision": None}  # fmt: skip
    subject = {"task": "t-old", "actuator": f"truck:{DONG}"}
    entry = audit.append("task.awaiting_approval", actor="system", subject=subject, payload=old)
    (task,) = controller.restore_tasks(audit.entries())
    created = datetime.fromisoformat(entry.time)
    assert (task.id, task.state, task.requires_approval) == ("t-old", TaskState.AWAITING_APPROVAL,
                                                             True)  # fmt: skip
    assert (task.ack_timeout, task.max_attempts) == (timedelta(seconds=30), 3)
    assert (task.created_at, task.expires_at) == (created, created + timedelta(minutes=10))
    controller.approve("t-old", actor="op-kim", reason="checked")
    assert [p["task_id"] for p in sent(controller)] == ["t-old"]
