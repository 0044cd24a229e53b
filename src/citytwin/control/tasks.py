"""The task life cycle: what a rule asked an actuator to do, and how far it got.

A task follows the OGC SensorThings API Part 2 (Tasking Core, OGC 17-079r1) notion of a *Task*
sent to a *TaskingCapability* of an *Actuator*, with a life cycle the standard leaves open::

    created ──► awaiting_approval ──► approved ──► sent ──► acknowledged ──► done
       │               │                 ▲         │  ▲           │
       └───────────────┼─── (auto) ──────┘         │  └ retry     └──► failed
                       └──► rejected               ├──► expired
                                                   └──► failed

Only the transitions of :data:`TRANSITIONS` are allowed; anything else raises
:class:`~citytwin.errors.ValidationError` naming the task, its state and the attempted move.
Delivery is at-least-once (MQTT QoS 1 semantics): a task is re-sent after ``ack_timeout`` without an
acknowledgement, up to ``max_attempts`` sends in all, and carries an ``idempotency_key`` so an
actuator that receives it twice acts once. Time is always passed in (``now``) — nothing sleeps.

>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2025, 7, 1, 12, tzinfo=UTC)
>>> book = TaskBook()
>>> key = idempotency_key("heat-alert", "district:3", "2025-07-01T12", "open_misting")
>>> task = book.create(key, actuator_id="mist-1", command="open_misting", now=t0)
>>> task.state.value, book.create(key, actuator_id="mist-1", command="open_misting", now=t0) is task
('approved', True)
>>> book.mark_sent(key, now=t0).attempts, book.due_retries(t0 + timedelta(seconds=30))[0].attempts
(1, 2)
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from citytwin.errors import ValidationError

logger = logging.getLogger(__name__)

SYSTEM = "system"  # the actor of automatic transitions


class TaskState(StrEnum):
    """Where a task is in its life; the last four are terminal."""

    CREATED = "created"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"
    REJECTED = "rejected"


S = TaskState
TRANSITIONS: Mapping[TaskState, frozenset[TaskState]] = {
    S.CREATED: frozenset({S.AWAITING_APPROVAL, S.APPROVED}),
    S.AWAITING_APPROVAL: frozenset({S.APPROVED, S.REJECTED}),
    S.APPROVED: frozenset({S.SENT}),
    S.SENT: frozenset({S.ACKNOWLEDGED, S.SENT, S.EXPIRED, S.FAILED}),
    S.ACKNOWLEDGED: frozenset({S.DONE, S.FAILED}),
    S.DONE: frozenset(),
    S.FAILED: frozenset(),
    S.EXPIRED: frozenset(),
    S.REJECTED: frozenset(),
}
TERMINAL = frozenset(state for state, targets in TRANSITIONS.items() if not targets)


@dataclass(frozen=True, slots=True)
class Transition:
    """One step of a task's history: when, from where to where, who and why."""

    at: datetime
    source: TaskState
    target: TaskState
    actor: str
    reason: str


TransitionCallback = Callable[["Task", Transition], None]


def idempotency_key(
    rule: str, scope: str, window: str | tuple[datetime, datetime], command: str
) -> str:
    """A stable key for one decision: the same rule, scope, window and command give the same key.

    Parameters are left out on purpose: a re-fired decision whose computed parameters differ
    slightly is still the same decision and must not become a second task.

    >>> a = idempotency_key("r", "district:1", "2025-07-01T12", "on")
    >>> a == idempotency_key("r", "district:1", "2025-07-01T12", "on"), len(a)
    (True, 64)
    >>> a == idempotency_key("r", "district:2", "2025-07-01T12", "on")
    False
    """
    if not isinstance(window, str):
        window = "/".join(moment.isoformat() for moment in window)
    canonical = json.dumps([rule, scope, window, command], ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _require_aware(name: str, moment: datetime | None) -> None:
    if moment is not None and moment.utcoffset() is None:
        raise ValidationError(f"{name}={moment.isoformat()}: expected a timezone-aware datetime")


@dataclass(slots=True, eq=False)
class Task:
    """A command for one actuator, with its delivery bookkeeping and its full history."""

    id: str
    idempotency_key: str
    actuator_id: str
    command: str
    parameters: dict[str, object]
    created_at: datetime
    requires_approval: bool
    ack_timeout: timedelta
    max_attempts: int
    expires_at: datetime | None = None
    state: TaskState = TaskState.CREATED
    attempts: int = 0
    last_sent_at: datetime | None = None
    detail: str = ""
    history: list[Transition] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        """True once the task can change no more (done, failed, expired or rejected)."""
        return self.state in TERMINAL

    def payload(self) -> dict[str, object]:
        """The message an actuator receives (JSON-serialisable)."""
        return {
            "task_id": self.id,
            "idempotency_key": self.idempotency_key,
            "command": self.command,
            "parameters": self.parameters,
            "attempt": self.attempts,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }

    def move(self, target: TaskState, *, at: datetime, actor: str, reason: str = "") -> Transition:
        """Apply one transition after checking it against :data:`TRANSITIONS` and its guard."""
        if target not in TRANSITIONS[self.state]:
            allowed = ", ".join(sorted(TRANSITIONS[self.state])) or "none (terminal)"
            raise ValidationError(
                f"task {self.id}: cannot move from {self.state.value!r} to {target.value!r}; "
                f"allowed: {allowed}"
            )
        self._guard(target, at=at, actor=actor, reason=reason)
        step = Transition(at, self.state, target, actor, reason)
        if target is TaskState.SENT:
            self.attempts += 1
            self.last_sent_at = at
        self.state = target
        self.history.append(step)
        logger.info("task %s: %s -> %s by %s (%s)", self.id, step.source, target, actor, reason)
        return step

    def _guard(self, target: TaskState, *, at: datetime, actor: str, reason: str) -> None:
        _require_aware("at", at)
        where = f"task {self.id}: {self.state.value} -> {target.value}"
        if self.state is TaskState.AWAITING_APPROVAL and not (actor.strip() and reason.strip()):
            raise ValidationError(f"{where}: an approval decision needs an actor and a reason")
        retry = self.state is TaskState.SENT and target is TaskState.SENT
        if retry and self.attempts >= self.max_attempts:
            raise ValidationError(f"{where}: all {self.max_attempts} attempts are used")
        if target is TaskState.EXPIRED and not self.exhausted(at) and not self.past_expiry(at):
            raise ValidationError(f"{where}: attempts remain and expires_at is not reached")

    def ack_overdue(self, now: datetime) -> bool:
        """True when the last send has waited ``ack_timeout`` without an acknowledgement."""
        sent = self.last_sent_at
        return self.state is TaskState.SENT and sent is not None and now >= sent + self.ack_timeout

    def exhausted(self, now: datetime) -> bool:
        """True when the last allowed send is overdue: no retry is left."""
        return self.ack_overdue(now) and self.attempts >= self.max_attempts

    def past_expiry(self, now: datetime) -> bool:
        """True when the task's own deadline has passed."""
        return self.expires_at is not None and now >= self.expires_at


class TaskBook:
    """An in-memory registry of tasks keyed by idempotency key.

    ``on_transition`` sees every transition of every task, in order (the audit log hooks in here).
    """

    def __init__(self, *, on_transition: TransitionCallback | None = None) -> None:
        self._by_key: dict[str, Task] = {}
        self._by_id: dict[str, Task] = {}
        self._on_transition = on_transition

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[Task]:
        return iter(list(self._by_key.values()))

    def create(
        self,
        key: str,
        *,
        actuator_id: str,
        command: str,
        now: datetime,
        parameters: Mapping[str, object] | None = None,
        requires_approval: bool = False,
        ack_timeout: timedelta = timedelta(seconds=30),
        max_attempts: int = 3,
        expires_at: datetime | None = None,
    ) -> Task:
        """The task for ``key``: the existing one if the key is known, else a new one.

        A new task moves at once to ``awaiting_approval`` or, when no approval is required,
        to ``approved`` (actor ``system``).
        """
        if key in self._by_key:
            return self._by_key[key]
        _check_delivery(key, ack_timeout=ack_timeout, max_attempts=max_attempts)
        _require_aware("now", now)
        _require_aware("expires_at", expires_at)
        task = Task(
            id=uuid.uuid4().hex, idempotency_key=key, actuator_id=actuator_id, command=command,
            parameters=dict(parameters or {}), created_at=now, requires_approval=requires_approval,
            ack_timeout=ack_timeout, max_attempts=max_attempts, expires_at=expires_at,
        )  # fmt: skip
        self._by_key[key], self._by_id[task.id] = task, task
        if requires_approval:
            self._move(task, TaskState.AWAITING_APPROVAL, now, SYSTEM, "approval required")
        else:
            self._move(task, TaskState.APPROVED, now, SYSTEM, "approved automatically")
        return task

    def restore(self, task: Task) -> None:
        """Put back a task rebuilt from its audit entries (after a restart), as it was: no
        transition is made or reported. Its idempotency key then stops the same decision from
        becoming a second task."""
        if task.idempotency_key in self._by_key:
            raise ValidationError(f"task {task.id}: its idempotency key is already in the book")
        self._by_key[task.idempotency_key], self._by_id[task.id] = task, task

    def get(self, ref: str) -> Task:
        """The task with this id or idempotency key."""
        task = self._by_id.get(ref) or self._by_key.get(ref)
        if task is None:
            raise ValidationError(f"task {ref!r}: no task has this id or idempotency key")
        return task

    def approve(self, ref: str, *, actor: str, reason: str, now: datetime) -> Task:
        """A person (or policy) approves a task awaiting approval."""
        return self._move(self.get(ref), TaskState.APPROVED, now, actor, reason)

    def reject(self, ref: str, *, actor: str, reason: str, now: datetime) -> Task:
        """A person (or policy) rejects a task awaiting approval; it is terminal."""
        return self._move(self.get(ref), TaskState.REJECTED, now, actor, reason)

    def mark_sent(self, ref: str, *, now: datetime, actor: str = SYSTEM) -> Task:
        """Record the first delivery of an approved task (the caller hands it to the actuator)."""
        return self._move(self.get(ref), TaskState.SENT, now, actor, "attempt 1")

    def on_ack(self, ref: str, ok: bool, detail: str = "", *, now: datetime) -> Task:
        """The actuator's answer to a sent task: acknowledged, or failed when ``ok`` is false.

        A repeated positive acknowledgement (at-least-once delivery) changes nothing.
        """
        task = self.get(ref)
        if ok and task.state is TaskState.ACKNOWLEDGED:
            return task
        task.detail = detail
        target = TaskState.ACKNOWLEDGED if ok else TaskState.FAILED
        return self._move(task, target, now, task.actuator_id, detail)

    def complete(self, ref: str, ok: bool, detail: str = "", *, now: datetime) -> Task:
        """The actuator reports the outcome of an acknowledged task: done, or failed."""
        task = self.get(ref)
        task.detail = detail
        target = TaskState.DONE if ok else TaskState.FAILED
        return self._move(task, target, now, task.actuator_id, detail)

    def due_retries(self, now: datetime) -> list[Task]:
        """Sent tasks whose acknowledgement is overdue and that have attempts left.

        Each is moved ``sent → sent`` (attempts + 1) and returned for the caller to re-send.
        Tasks past ``expires_at`` are left for :meth:`expire`.
        """
        due = [
            task
            for task in self
            if task.ack_overdue(now)
            and task.attempts < task.max_attempts
            and not task.past_expiry(now)
        ]
        for task in due:
            reason = f"no acknowledgement within {task.ack_timeout}; attempt {task.attempts + 1}"
            self._move(task, TaskState.SENT, now, SYSTEM, reason)
        return due

    def expire(self, now: datetime) -> list[Task]:
        """Move to ``expired`` every sent task whose attempts are exhausted or deadline passed."""
        expired = []
        for task in self:
            if task.state is not TaskState.SENT:
                continue
            if task.past_expiry(now):
                reason = f"expires_at {task.expires_at} passed after {task.attempts} attempt(s)"
            elif task.exhausted(now):
                reason = f"no acknowledgement after {task.attempts} attempt(s)"
            else:
                continue
            expired.append(self._move(task, TaskState.EXPIRED, now, SYSTEM, reason))
        return expired

    def _move(self, task: Task, target: TaskState, now: datetime, actor: str, reason: str) -> Task:
        step = task.move(target, at=now, actor=actor, reason=reason)
        if self._on_transition is not None:
            self._on_transition(task, step)
        return task


def _check_delivery(key: str, *, ack_timeout: timedelta, max_attempts: int) -> None:
    problems = []
    if not key:
        problems.append("idempotency key is empty")
    if ack_timeout <= timedelta(0):
        problems.append(f"ack_timeout={ack_timeout}: expected a positive duration")
    if max_attempts < 1:
        problems.append(f"max_attempts={max_attempts}: expected at least 1")
    if problems:
        raise ValidationError(f"task {key!r}: " + "; ".join(problems))
