"""The controller: readings in, decisions out — rules → alerts and tasks → actuators → audit.

:class:`Controller` ties the pure parts together and is the one object the server, the CLI and
the tests drive:

1. :meth:`Controller.observe` takes a batch of readings (columns ``property, sensor, dong, gu,
   time, value``), advances every rule's windows to the stream's watermark (the newest reading
   time, minus an allowed lateness) and acts on each event. A firing is recorded first
   (``rule.fired``, with a snapshot reference of its inputs: property, scope, window), then its
   actions run: alerts (log, webhook, the server's bus), tasks, scenario runs.
2. A task action names an actuator (pattern filled with the scope). The actuator must match an
   entry of the configuration (else ``unroutable``). With a ``check``, the simulate-before-act
   checker runs first and a failing check rejects the task (``check_failed``). ``approval:
   required`` — or a manual override on the actuator — makes it wait for a person
   (:meth:`approve` / :meth:`reject`); otherwise it is sent at once, unless the actuator's rate
   limit is reached (then it waits in order, ``rate_limited``). A dry run (global or per rule)
   records what would have been sent and sends nothing.
3. :meth:`pump` is called periodically: it applies the actuators' acknowledgements (queued from
   their threads), re-sends overdue tasks, expires those out of attempts or time — and says so in
   a ``task_expired`` alert naming the rule — and sends rate-limited tasks whose turn has come.

Every task transition is written to the audit log by the task book's callback (actor, reason,
attempt, command), so the log holds the whole chain: inputs → rule → check → approver → command →
acknowledgement. Public methods take a lock: the API, the bus consumer and actuator threads may
call in concurrently. Time for tasks comes from ``clock`` (wall time); rule windows use the
readings' own times, so a replay or a time-compressed emulator behaves like the live city.

>>> from citytwin.control.config import parse_control
>>> config = parse_control({"actuators": [{"match": "truck:*", "url": "log://t"}], "rules": [
...     {"name": "pm", "when": {"property": "pm25", "scope": "dong", "window": "10min",
...      "on": {"above": 75}, "off": {"below": 60}}, "cooldown": "1h",
...      "actions": [{"task": {"actuator": "truck:{dong}", "command": "spray"}}]}]})
>>> controller = Controller(config)
>>> t = pd.date_range("2026-06-01 09:00", periods=3, freq="10min", tz="UTC")
>>> alerts = controller.observe(pd.DataFrame({"property": "pm25", "sensor": "s1",
...     "dong": "1111051", "gu": "11110", "time": t, "value": [90.0, 50.0, 40.0]}))
>>> [a.kind for a in alerts], [task.state.value for task in controller.book]
(['fired', 'approval_needed', 'cleared'], ['awaiting_approval'])
"""

from __future__ import annotations

import fnmatch
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import pandas as pd

from citytwin.control.alerts import Alert, AlertSink, WebhookSink, log_alert
from citytwin.control.audit import AuditLog, Entry
from citytwin.control.base import Actuator, open_actuator
from citytwin.control.config import ActuatorSpec, ControlConfig
from citytwin.control.rule_engine import ReadingArrays, RuleState, advance
from citytwin.control.rules import (
    AlertAction,
    CheckSpec,
    Rule,
    ScenarioAction,
    TaskAction,
    parse_rule,
)
from citytwin.control.tasks import SYSTEM, Task, TaskBook, TaskState, Transition, idempotency_key
from citytwin.errors import CitytwinError, ValidationError

logger = logging.getLogger(__name__)

READING_COLUMNS = ("property", "sensor", "dong", "gu", "time", "value")
MAX_ALERTS = 500


class CheckOutcome(Protocol):
    """What a simulate-before-act check returns (:class:`citytwin.control.checks.CheckResult`)."""

    @property
    def passed(self) -> bool: ...

    @property
    def detail(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


Checker = Callable[[CheckSpec, Mapping[str, object]], CheckOutcome]
ScenarioRunner = Callable[[str], str]  # scenario name -> run id (or a note)


@dataclass(frozen=True, slots=True)
class Origin:
    """Why a task exists: the rule and scope that fired (None for a person's task), the window."""

    rule: str | None
    scope: str | None
    window_end: str | None
    decision: int | None  # sequence number of the rule.fired audit entry


@dataclass(frozen=True, slots=True)
class Override:
    """A person has taken an actuator out of automatic control."""

    actor: str
    reason: str
    since: datetime


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _fill(template: str, context: Mapping[str, object]) -> str:
    try:
        return template.format(**context)
    except (KeyError, IndexError, ValueError):
        return template


def _fill_params(value: object, context: Mapping[str, object]) -> object:
    if isinstance(value, str):
        return _fill(value, context)
    if isinstance(value, dict):
        return {k: _fill_params(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_params(v, context) for v in value]
    return value


class Controller:
    """Rules → tasks → actuators → audit, with approval, checks, rate limits and overrides."""

    def __init__(
        self,
        config: ControlConfig,
        *,
        audit: AuditLog | None = None,
        checker: Checker | None = None,
        scenario_runner: ScenarioRunner | None = None,
        sinks: Sequence[AlertSink] = (log_alert,),
        clock: Callable[[], datetime] = _utc_now,
        lateness: timedelta = timedelta(0),
    ) -> None:
        self.config = config
        self.audit = audit
        self.checker = checker
        self.scenario_runner = scenario_runner
        self.sinks = list(sinks)
        self.clock = clock
        self.lateness = pd.Timedelta(lateness)
        self.dry_run = config.dry_run
        self.book = TaskBook(on_transition=self._record_transition)
        self.alerts: deque[Alert] = deque(maxlen=MAX_ALERTS)
        self.overrides: dict[str, Override] = {}
        self.origins: dict[str, Origin] = {}
        self.checks: dict[str, dict[str, Any]] = {}
        self.states: dict[str, RuleState] = {rule.name: RuleState() for rule in config.rules}
        self.watermark: pd.Timestamp | None = None
        self._lock = threading.RLock()
        self._acks: queue.SimpleQueue[tuple[str, bool, str, bool]] = queue.SimpleQueue()
        self._actuators: dict[str, Actuator] = {}
        self._sent: dict[str, deque[datetime]] = {}
        self._waiting: dict[str, Task] = {}  # rate-limited, in arrival order
        self._webhooks: dict[str, WebhookSink] = {}
        self._new: list[Alert] = []
        self._creating: Origin | None = None

    # -- readings → decisions -------------------------------------------------------------------
    def observe(self, readings: pd.DataFrame) -> list[Alert]:
        """Feed a batch of readings; return the alerts it caused (see the module docstring)."""
        missing = [c for c in READING_COLUMNS if c not in readings.columns]
        if missing:
            raise ValidationError(
                f"readings: missing columns {missing}; expected {list(READING_COLUMNS)}"
            )
        times = pd.DatetimeIndex(readings["time"]).tz_convert("UTC").as_unit("ns").asi8
        values = readings["value"].to_numpy(np.float64)
        properties = readings["property"].to_numpy(object)
        with self._lock:
            if len(times):
                newest = pd.Timestamp(int(times.max()), tz="UTC")
                self.watermark = newest if self.watermark is None else max(self.watermark, newest)
            if self.watermark is None:
                return self._drain_and_collect(self.clock())
            until = int((self.watermark - self.lateness).value)
            for rule in self.config.rules:
                scopes = readings[rule.when.scope].to_numpy(object)
                mine = (properties == rule.when.property) & pd.notna(scopes) & ~np.isnan(values)
                batch = ReadingArrays(
                    np.asarray(scopes[mine], dtype=str).astype(object), times[mine], values[mine]
                )
                events, self.states[rule.name] = advance(
                    rule, batch, state=self.states[rule.name], until=until
                )
                for scope, end, kind, value in zip(
                    events["scope"],
                    events["window_end"],
                    events["kind"],
                    events["value"],
                    strict=True,
                ):
                    self._on_event(rule, str(scope), pd.Timestamp(end), str(kind), float(value))
            return self._drain_and_collect(self.clock())

    def _on_event(
        self, rule: Rule, scope: str, window_end: pd.Timestamp, kind: str, value: float
    ) -> None:
        start = window_end - rule.when.window
        context = {"scope": scope, rule.when.scope: scope, "value": value, "rule": rule.name}
        snapshot = {
            "property": rule.when.property, "scope_level": rule.when.scope, "scope": scope,
            "window": [start.isoformat(), window_end.isoformat()],
            "statistic": rule.when.statistic, "value": value,
        }  # fmt: skip
        entry = self._audit(f"rule.{kind}", SYSTEM, {"rule": rule.name, "scope": scope}, snapshot)
        if kind == "cleared":
            self._alert(
                "cleared",
                f"rule {rule.name}: {scope} back to normal ({value:.1f})",
                rule.name,
                scope,
            )
            return
        origin = Origin(rule.name, scope, window_end.isoformat(), entry)
        if not any(isinstance(a, AlertAction) for a in rule.actions):
            self._alert(
                "fired", f"rule {rule.name} fired in {scope}: {value:.1f}", rule.name, scope
            )
        for action in rule.actions:
            if isinstance(action, AlertAction):
                self._alert("fired", _fill(action.alert.message, context), rule.name, scope)
                if action.alert.webhook is not None:
                    self._webhook(str(action.alert.webhook))(self.alerts[-1])
            elif isinstance(action, TaskAction):
                self._task_action(rule, action, context, origin, (start, window_end))
            elif isinstance(action, ScenarioAction):
                self._scenario_action(rule, action.scenario.name, scope)

    def _task_action(
        self, rule: Rule, action: TaskAction, context: Mapping[str, object], origin: Origin,
        window: tuple[pd.Timestamp, pd.Timestamp],
    ) -> None:  # fmt: skip
        spec_task = action.task
        actuator_id = _fill(spec_task.actuator, context)
        parameters = _fill_params(spec_task.parameters, context)
        assert isinstance(parameters, dict)
        where = f"rule {rule.name}: {spec_task.command} → {actuator_id}"
        if self.dry_run or rule.dry_run:
            mode = "global" if self.dry_run else "rule"
            facts = {"command": spec_task.command, "parameters": parameters, "mode": mode}
            self._audit("task.dry_run", SYSTEM, {"rule": rule.name, "actuator": actuator_id}, facts)
            self._alert("dry_run", f"{where} (dry run, {mode}: not sent)", rule.name, origin.scope)
            return
        spec = self.config.actuator_for(actuator_id)
        if spec is None:
            subject = {"rule": rule.name, "actuator": actuator_id}
            self._audit("task.unroutable", SYSTEM, subject, {"command": spec_task.command})
            self._alert(
                "unroutable",
                f"{where}: no actuator entry matches {actuator_id!r}",
                rule.name,
                origin.scope,
            )
            return
        now = self.clock()
        key = idempotency_key(
            rule.name,
            origin.scope or "",
            (window[0].to_pydatetime(), window[1].to_pydatetime()),
            spec_task.command,
        )
        overridden = self.overridden(actuator_id)
        needs_person = spec_task.approval == "required" or overridden is not None
        self._creating = origin  # the creation's audit entry names it (the id is not known yet)
        try:
            task = self.book.create(
                key, actuator_id=actuator_id, command=spec_task.command, parameters=parameters,
                now=now, requires_approval=needs_person or spec_task.check is not None,
                ack_timeout=(spec_task.ack_timeout or spec.ack_timeout).to_pytimedelta(),
                max_attempts=spec_task.max_attempts or spec.max_attempts,
                expires_at=now + (spec_task.expires or spec.expires).to_pytimedelta(),
            )  # fmt: skip
        finally:
            self._creating = None
        if task.id in self.origins:  # the same decision again (idempotency key): nothing new
            return
        self.origins[task.id] = origin
        if spec_task.check is not None and not self._run_check(task, spec_task.check, needs_person):
            return
        if task.state is TaskState.AWAITING_APPROVAL:
            why = f"manual override by {overridden.actor}" if overridden else "approval required"
            self._task_alert("approval_needed", task, f"awaits approval ({why})")
        else:
            self._dispatch(task, now)

    def _run_check(self, task: Task, check: CheckSpec, needs_person: bool) -> bool:
        now = self.clock()
        if self.checker is None:
            result: dict[str, Any] = {"passed": False, "detail": "no simulation checker configured"}
        else:
            outcome = self.checker(check, task.parameters)
            result = {"passed": outcome.passed, "detail": outcome.detail, **outcome.to_dict()}
        self.checks[task.id] = result
        self._audit("task.check", SYSTEM, {"task": task.id, "actuator": task.actuator_id}, result)
        if not result["passed"]:
            self.book.reject(
                task.id, actor=SYSTEM, reason=f"check failed: {result['detail']}", now=now
            )
            self._task_alert("check_failed", task, f"refused: {result['detail']}")
            return False
        if not needs_person:
            self.book.approve(
                task.id, actor=SYSTEM, reason=f"check passed: {result['detail']}", now=now
            )
        return True

    def _scenario_action(self, rule: Rule, name: str, scope: str) -> None:
        if self.scenario_runner is None:
            note = "no scenario runner configured"
        else:
            try:
                note = self.scenario_runner(name)
            except CitytwinError as exc:
                note = f"failed: {exc}"
        self._audit("scenario.run", SYSTEM, {"rule": rule.name, "scenario": name}, {"result": note})
        self._alert(
            "scenario", f"rule {rule.name}: scenario {name} for {scope}: {note}", rule.name, scope
        )

    # -- people ---------------------------------------------------------------------------------
    def submit(
        self, actuator_id: str, command: str, parameters: Mapping[str, object] | None = None, *,
        actor: str, reason: str, key: str | None = None, approved: bool = True,
    ) -> Task:  # fmt: skip
        """A person's own task (the API's POST Tasks): approved by that person unless ``approved``
        is false (then it waits for someone else), and sent like any other."""
        with self._lock:
            spec = self._spec(actuator_id)
            now = self.clock()
            key = key or idempotency_key(f"manual:{actor}", actuator_id, now.isoformat(), command)
            task = self.book.create(
                key, actuator_id=actuator_id, command=command, parameters=parameters, now=now,
                requires_approval=True, ack_timeout=spec.ack_timeout.to_pytimedelta(),
                max_attempts=spec.max_attempts, expires_at=now + spec.expires.to_pytimedelta(),
            )  # fmt: skip
            if task.id not in self.origins:
                self.origins[task.id] = Origin(None, None, None, None)
                if approved:
                    self.book.approve(task.id, actor=actor, reason=reason, now=now)
                    self._dispatch(task, now)
            self._drain_and_collect(now)
            return task

    def approve(self, ref: str, *, actor: str, reason: str) -> Task:
        """A person approves a waiting task; it is sent at once (rate limits permitting)."""
        with self._lock:
            now = self.clock()
            task = self.book.approve(ref, actor=actor, reason=_reason(reason), now=now)
            self._dispatch(task, now)
            self._drain_and_collect(now)
            return task

    def reject(self, ref: str, *, actor: str, reason: str) -> Task:
        """A person rejects a waiting task; it is terminal."""
        with self._lock:
            task = self.book.reject(ref, actor=actor, reason=_reason(reason), now=self.clock())
            return task

    def override(self, actuator: str, *, active: bool, actor: str, reason: str) -> None:
        """Suspend (``active``) or resume automation for an actuator id or pattern."""
        with self._lock:
            if active:
                self.overrides[actuator] = Override(actor, _reason(reason), self.clock())
            elif self.overrides.pop(actuator, None) is None:
                raise ValidationError(f"actuator {actuator!r}: no manual override is active")
            verb = "suspended" if active else "resumed"
            self._audit(
                f"actuator.{'override' if active else 'resume'}",
                actor,
                {"actuator": actuator},
                {"reason": reason},
            )
            self._alert("override", f"automation {verb} for {actuator} by {actor}: {reason}")

    def set_dry_run(self, active: bool, *, actor: str) -> None:
        """Switch the global dry run (recorded)."""
        with self._lock:
            self.dry_run = active
            self._audit("control.dry_run", actor, {"switch": "on" if active else "off"}, {})
            self._alert(
                "override", f"global dry run switched {'on' if active else 'off'} by {actor}"
            )

    def set_rule(self, rule: Rule, *, actor: str) -> None:
        """Add a rule or replace the one of the same name; it starts with a fresh state."""
        with self._lock:
            self._install(rule)
            payload = rule.model_dump(mode="json", by_alias=True)
            self._audit("rule.set", actor, {"rule": rule.name}, payload)

    def _install(self, rule: Rule) -> None:
        """Put ``rule`` in force in place of the one of the same name, with a fresh state."""
        with self._lock:
            rules = [r for r in self.config.rules if r.name != rule.name] + [rule]
            self.config = self.config.model_copy(update={"rules": rules})
            self.states[rule.name] = RuleState()

    def restore_rules(
        self, entries: Iterable[Entry], *, newer_than: datetime | None = None
    ) -> list[str]:
        """Re-apply the rules set through the API (``rule.set`` entries of the audit log).

        :meth:`set_rule` keeps a rule in this controller only, but its audit entry holds the
        whole rule. Replaying the entries in order makes those changes survive a restart. Only
        entries later than ``newer_than`` count (the control file's last change): the newer of
        the file and the API wins, as if the file's edit had been made through the API. Not
        audited again. An entry whose rule no longer parses (an older rule schema) is skipped
        with a warning naming its sequence number. Returns the names restored, in order.
        """
        restored: list[str] = []
        for entry in entries:
            if entry.kind != "rule.set":
                continue
            if newer_than is not None and datetime.fromisoformat(entry.time) <= newer_than:
                continue
            try:
                rule = parse_rule(dict(entry.payload), position=f"audit entry {entry.seq}")
            except ValidationError as error:
                logger.warning("audit entry %d: rule not restored: %s", entry.seq, error)
                continue
            self._install(rule)
            restored.append(rule.name)
        if restored:
            logger.info("restored %d rule change(s) from the audit log: %s", len(restored),
                        ", ".join(dict.fromkeys(restored)))  # fmt: skip
        return restored

    def restore_tasks(self, entries: Iterable[Entry]) -> list[Task]:
        """Rebuild the tasks of the audit log (``task.*`` entries), as they were at its end.

        Tasks live in memory; their audit entries hold every transition, and the first one holds
        how the task is delivered. Replaying them after a restart brings back what waits for a
        person (the approval queue), what was sent and not yet acknowledged (re-sent after its
        ``ack_timeout``, at least once as ever), and what was approved but not yet sent (sent by
        the next :meth:`pump`, rate limits permitting). Finished tasks come back too, so their
        idempotency keys keep a decision that fires again from becoming a second task. Not
        audited again. A task whose first entry lacks the delivery facts (written by an older
        citytwin) takes them from its actuator's entry in the control file; a task whose entries
        do not replay (no such actuator, a gap in its history) is skipped with a warning naming
        its audit entry. Returns the tasks restored, in the order they were created.
        """
        rebuilt: dict[str, Task] = {}
        skipped: set[str] = set()
        for entry in entries:
            task_id = entry.subject.get("task")
            if not entry.kind.startswith("task.") or task_id is None or task_id in skipped:
                continue
            try:
                if task_id not in rebuilt:
                    rebuilt[task_id] = self._rebuilt_task(task_id, entry)
                _replay(rebuilt[task_id], entry)
            except (KeyError, TypeError, ValueError, ValidationError) as error:
                logger.warning("audit entry %d: task %s not restored: %s", entry.seq, task_id,
                               error)  # fmt: skip
                rebuilt.pop(task_id, None)
                self.origins.pop(task_id, None)
                skipped.add(task_id)
        with self._lock:
            for task in list(rebuilt.values()):
                try:
                    self.book.restore(task)
                except ValidationError as error:  # restored already, or made since start-up
                    logger.warning("task %s not restored: %s", task.id, error)
                    del rebuilt[task.id]
                    continue
                if task.state is TaskState.APPROVED:
                    self._waiting[task.id] = task  # sent by the next pump
        if rebuilt:
            waiting = sum(t.state is TaskState.AWAITING_APPROVAL for t in rebuilt.values())
            logger.info("restored %d task(s) from the audit log, %d awaiting approval",
                        len(rebuilt), waiting)  # fmt: skip
        return list(rebuilt.values())

    def _rebuilt_task(self, task_id: str, entry: Entry) -> Task:
        """The task as created, from its first audit entry (its creation)."""
        payload = entry.payload
        if payload.get("from") != TaskState.CREATED.value:
            raise ValueError(f"its first entry is {entry.kind}, not its creation")
        actuator_id = entry.subject["actuator"]
        at = _moment(entry)
        delivery = payload.get("delivery")
        if isinstance(delivery, dict):
            expires = delivery["expires_at"]
            requires_approval = bool(delivery["requires_approval"])
            ack_timeout = timedelta(seconds=float(delivery["ack_timeout_s"]))
            max_attempts = int(delivery["max_attempts"])
            expires_at = None if expires is None else datetime.fromisoformat(str(expires))
        else:  # an older entry: the actuator's delivery settings as configured now
            spec = self._spec(actuator_id)
            requires_approval = entry.kind == "task.awaiting_approval"
            ack_timeout, max_attempts = spec.ack_timeout.to_pytimedelta(), spec.max_attempts
            expires_at = at + spec.expires.to_pytimedelta()
        parameters = payload.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise TypeError(f"parameters are {type(parameters).__name__}, not an object")
        decision = payload.get("decision")
        self.origins[task_id] = Origin(
            _text(payload.get("rule")), _text(payload.get("scope")),
            _text(payload.get("window_end")), decision if isinstance(decision, int) else None,
        )  # fmt: skip
        return Task(
            id=task_id, idempotency_key=str(payload["idempotency_key"]), actuator_id=actuator_id,
            command=str(payload["command"]), parameters=parameters, created_at=at,
            requires_approval=requires_approval, ack_timeout=ack_timeout,
            max_attempts=max_attempts, expires_at=expires_at,
        )  # fmt: skip

    def overridden(self, actuator_id: str) -> Override | None:
        """The manual override covering this actuator, if any."""
        return next(
            (
                o
                for pattern, o in self.overrides.items()
                if fnmatch.fnmatchcase(actuator_id, pattern)
            ),
            None,
        )

    # -- delivery -------------------------------------------------------------------------------
    def pump(self, now: datetime | None = None) -> list[Alert]:
        """Apply acknowledgements, re-send overdue tasks, expire dead ones, send waiting ones."""
        with self._lock:
            now = now or self.clock()
            for task in self.book.due_retries(now):
                self._deliver(task)
            for task in self.book.expire(now):
                self._task_alert("task_expired", task, f"expired: {task.history[-1].reason}")
            for task in list(self._waiting.values()):
                if not self._limited(task.actuator_id, now):
                    del self._waiting[task.id]
                    self._dispatch(task, now)
            return self._drain_and_collect(now)

    def _dispatch(self, task: Task, now: datetime) -> None:
        if task.state is not TaskState.APPROVED:
            return
        if self._limited(task.actuator_id, now):
            if task.id not in self._waiting:
                self._waiting[task.id] = task
                self._task_alert(
                    "rate_limited", task, "waits: the actuator's rate limit is reached"
                )
            return
        self._sent.setdefault(task.actuator_id, deque()).append(now)
        self.book.mark_sent(task.id, now=now)
        self._deliver(task)

    def _deliver(self, task: Task) -> None:
        try:
            actuator = self._actuator(task.actuator_id)
            actuator.send(task)
        except CitytwinError as exc:
            self._acks.put((task.id, False, f"delivery failed: {exc}", True))

    def _limited(self, actuator_id: str, now: datetime) -> bool:
        spec = self.config.actuator_for(actuator_id)
        if spec is None or spec.rate_limit is None:
            return False
        times = self._sent.setdefault(actuator_id, deque())
        period = spec.rate_limit.period.to_pytimedelta()
        while times and times[0] <= now - period:
            times.popleft()
        return len(times) >= spec.rate_limit.tasks

    def _spec(self, actuator_id: str) -> ActuatorSpec:
        spec = self.config.actuator_for(actuator_id)
        if spec is None:
            patterns = ", ".join(s.match for s in self.config.actuators) or "none"
            raise ValidationError(
                f"actuator {actuator_id!r}: no actuator entry matches it; configured: {patterns}"
            )
        return spec

    def _actuator(self, actuator_id: str) -> Actuator:
        if actuator_id not in self._actuators:
            url = self._spec(actuator_id).url_for(actuator_id)
            self._actuators[actuator_id] = open_actuator(url, on_ack=self._on_ack)
        return self._actuators[actuator_id]

    def _on_ack(self, task_id: str, ok: bool, detail: str, /, done: bool = False) -> None:
        """Runs in the actuator's thread: queue the answer for :meth:`pump`."""
        self._acks.put((task_id, ok, detail, done))

    def _apply_acks(self, now: datetime) -> None:
        while True:
            try:
                task_id, ok, detail, done = self._acks.get_nowait()
            except queue.Empty:
                return
            try:
                task = self.book.get(task_id)
            except ValidationError:
                self._audit(
                    "task.unknown_ack", "actuator", {"task": task_id}, {"ok": ok, "detail": detail}
                )
                continue
            if task.terminal or task.state not in (TaskState.SENT, TaskState.ACKNOWLEDGED):
                facts = {"ok": ok, "detail": detail, "state": task.state.value}
                self._audit("task.late_ack", task.actuator_id, {"task": task.id}, facts)
                continue
            if task.state is TaskState.SENT:
                self.book.on_ack(task.id, ok, detail, now=now)
            if done and task.state is TaskState.ACKNOWLEDGED:
                self.book.complete(task.id, ok, detail, now=now)
            if _state(task) is TaskState.FAILED:  # moved just above by on_ack or complete
                self._task_alert("task_failed", task, f"failed: {detail}")

    # -- records ----------------------------------------------------------------------------------
    def _record_transition(self, task: Task, step: Transition) -> None:
        origin = self.origins.get(task.id)
        if origin is None and step.source is TaskState.CREATED:
            origin = self._creating
        payload: dict[str, object] = {
            "from": step.source.value, "at": step.at.isoformat(), "reason": step.reason,
            "attempt": task.attempts, "command": task.command, "parameters": task.parameters,
            "idempotency_key": task.idempotency_key,
            "rule": origin.rule if origin else None,
            "decision": origin.decision if origin else None,
        }  # fmt: skip
        if step.source is TaskState.CREATED:  # all restore_tasks needs to rebuild the task
            payload["scope"] = origin.scope if origin else None
            payload["window_end"] = origin.window_end if origin else None
            payload["delivery"] = {
                "requires_approval": task.requires_approval,
                "ack_timeout_s": task.ack_timeout.total_seconds(),
                "max_attempts": task.max_attempts,
                "expires_at": task.expires_at.isoformat() if task.expires_at else None,
            }
        if step.target is TaskState.SENT:
            payload["message"] = task.payload()
        self._audit(
            f"task.{step.target.value}",
            step.actor,
            {"task": task.id, "actuator": task.actuator_id},
            payload,
        )

    def _audit(
        self, kind: str, actor: str, subject: Mapping[str, str], payload: Mapping[str, object]
    ) -> int | None:
        if self.audit is None:
            return None
        return self.audit.append(kind, actor=actor, subject=subject, payload=payload).seq

    def _task_alert(self, kind: str, task: Task, what: str) -> None:
        """An alert about a task, naming the rule that asked for it (if a rule did)."""
        origin = self.origins.get(task.id, Origin(None, None, None, None))
        lead = f"rule {origin.rule}: " if origin.rule else ""
        message = f"{lead}task {task.id} ({task.command} → {task.actuator_id}) {what}"
        self._alert(kind, message, origin.rule, origin.scope, task.id)

    def _alert(
        self,
        kind: str,
        message: str,
        rule: str | None = None,
        scope: str | None = None,
        task_id: str | None = None,
    ) -> None:
        alert = Alert(self.clock(), kind, message, rule, scope, task_id)
        self.alerts.append(alert)
        self._new.append(alert)
        for sink in self.sinks:
            try:
                sink(alert)
            except Exception:  # a broken sink must not stop the control loop
                logger.exception("alert sink %r failed", sink)

    def _webhook(self, url: str) -> WebhookSink:
        if url not in self._webhooks:
            self._webhooks[url] = WebhookSink(url)
        return self._webhooks[url]

    def _drain_and_collect(self, now: datetime) -> list[Alert]:
        self._apply_acks(now)
        new, self._new = self._new, []
        return new

    # -- reading the state ----------------------------------------------------------------------
    def tasks(self, *, states: Iterable[TaskState] | None = None) -> list[Task]:
        """Tasks, newest first, optionally only in ``states``."""
        wanted = set(states) if states is not None else None
        with self._lock:
            chosen = [t for t in self.book if wanted is None or t.state in wanted]
        return sorted(chosen, key=lambda t: t.created_at, reverse=True)

    def close(self) -> None:
        """Close the actuators and webhooks this controller opened. Idempotent."""
        with self._lock:
            actuators, self._actuators = self._actuators, {}
            webhooks, self._webhooks = self._webhooks, {}
        for actuator in actuators.values():
            actuator.close()
        for webhook in webhooks.values():
            webhook.close()


def _replay(task: Task, entry: Entry) -> None:
    """Apply one ``task.<state>`` audit entry to a task being rebuilt (as it happened: the
    entries are the record of moves that were checked when they were made)."""
    payload = entry.payload
    source, target = TaskState(str(payload["from"])), TaskState(entry.kind.removeprefix("task."))
    if source is not task.state:
        raise ValueError(f"it moves from {source.value} but the task is {task.state.value}")
    at = _moment(entry)
    reason = str(payload.get("reason") or "")
    if target is TaskState.SENT:
        task.attempts, task.last_sent_at = int(str(payload["attempt"])), at
    if entry.actor == task.actuator_id:  # the actuator's answer: acknowledged, done or failed
        task.detail = reason
    task.state = target
    task.history.append(Transition(at, source, target, entry.actor, reason))


def _moment(entry: Entry) -> datetime:
    """When a task's audited transition was made: its own time, or (entries written before
    transitions recorded it) when it was audited."""
    return datetime.fromisoformat(str(entry.payload.get("at") or entry.time))


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _state(task: Task) -> TaskState:
    """The task's state now (a call, so type checkers do not carry a narrowed state across
    the transitions made in between)."""
    return task.state


def _reason(reason: str) -> str:
    if not reason or not reason.strip():
        raise ValidationError(
            "reason: a decision by a person needs a reason (e.g. 'checked on CCTV')"
        )
    return reason.strip()
