"""The task life cycle, the actuator registry and the logging fake, driven by a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from citytwin.control.base import Actuator, open_actuator
from citytwin.control.log import LogActuator
from citytwin.control.tasks import (
    TERMINAL,
    TRANSITIONS,
    Task,
    TaskBook,
    TaskState,
    Transition,
    idempotency_key,
)
from citytwin.errors import ConfigurationError, UnknownBackendError, ValidationError

S = TaskState
T0 = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)
TIMEOUT = timedelta(seconds=30)
KEY = idempotency_key("heat-alert", "district:3", (T0, T0 + timedelta(hours=1)), "open_misting")


class Clock:
    """A fake clock the test advances by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


def wire(book: TaskBook, clock: Clock, *, ack: int | str) -> LogActuator:
    """A fake actuator whose acknowledgements go straight into the book, stamped by the clock."""

    def on_ack(task_id: str, ok: bool, detail: str, /, done: bool = False) -> None:
        book.on_ack(task_id, ok, detail, now=clock())

    return LogActuator("mist-1", ack=ack, on_ack=on_ack)  # type: ignore[arg-type]


def create(book: TaskBook, key: str = KEY, **options: object) -> Task:
    return book.create(key, actuator_id="mist-1", command="open_misting", now=T0, **options)  # type: ignore[arg-type]


def path(task: Task) -> list[tuple[str, str, str]]:
    return [(step.source.value, step.target.value, step.actor) for step in task.history]


def test_happy_path_with_approval_is_recorded_with_actors() -> None:
    book, clock = TaskBook(), Clock()
    actuator = wire(book, clock, ack="always")
    task = create(book, parameters={"spray_minutes": 15}, requires_approval=True)
    assert task.state is S.AWAITING_APPROVAL
    book.approve(
        task.id, actor="operator:kim", reason="heat wave warning", now=clock.advance(TIMEOUT)
    )
    actuator.send(book.mark_sent(task.id, now=clock()))
    book.complete(task.id, True, "misting ran 15 min", now=clock.advance(TIMEOUT))
    assert path(task) == [
        ("created", "awaiting_approval", "system"),
        ("awaiting_approval", "approved", "operator:kim"),
        ("approved", "sent", "system"),
        ("sent", "acknowledged", "mist-1"),
        ("acknowledged", "done", "mist-1"),
    ]
    assert task.history[1].reason == "heat wave warning"
    assert [step.at for step in task.history] == [
        T0,
        T0 + TIMEOUT,
        *[T0 + TIMEOUT] * 2,
        T0 + 2 * TIMEOUT,
    ]
    assert actuator.sent == [task.payload() | {"attempt": 1}]
    assert actuator.sent[0]["idempotency_key"] == KEY
    assert actuator.sent[0]["parameters"] == {"spray_minutes": 15}
    assert task.terminal
    assert task.detail == "misting ran 15 min"


def test_rejection_needs_actor_and_reason_and_is_terminal() -> None:
    book = TaskBook()
    task = create(book, requires_approval=True)
    with pytest.raises(ValidationError, match="needs an actor and a reason"):
        book.reject(task.id, actor="operator:kim", reason=" ", now=T0)
    with pytest.raises(ValidationError, match="needs an actor and a reason"):
        book.approve(KEY, actor="", reason="fine", now=T0)
    assert task.state is S.AWAITING_APPROVAL
    assert len(task.history) == 1
    book.reject(KEY, actor="operator:kim", reason="school event in the square", now=T0)
    last = task.history[-1]
    assert (last.target, last.actor, last.reason) == (
        S.REJECTED,
        "operator:kim",
        "school event in the square",
    )
    assert task.terminal
    with pytest.raises(ValidationError, match="allowed: none"):
        book.mark_sent(task.id, now=T0)


def test_auto_approval_without_approval_requirement() -> None:
    task = create(TaskBook())
    assert path(task) == [("created", "approved", "system")]


def test_illegal_transition_names_task_state_and_target() -> None:
    book = TaskBook()
    task = create(book, requires_approval=True)
    with pytest.raises(ValidationError) as caught:
        book.mark_sent(task.id, now=T0)
    message = str(caught.value)
    assert f"task {task.id}" in message
    assert "from 'awaiting_approval' to 'sent'" in message
    assert "allowed: approved, rejected" in message
    assert task.state is S.AWAITING_APPROVAL


def test_transition_table_matches_the_specified_life_cycle() -> None:
    assert TRANSITIONS[S.SENT] == {S.ACKNOWLEDGED, S.SENT, S.EXPIRED, S.FAILED}
    assert {S.DONE, S.FAILED, S.EXPIRED, S.REJECTED} == TERMINAL
    reachable = {S.CREATED} | {target for targets in TRANSITIONS.values() for target in targets}
    assert reachable == set(TaskState)


def test_same_key_gives_the_same_task() -> None:
    book = TaskBook()
    first = create(book)
    again = book.create(KEY, actuator_id="mist-1", command="open_misting", now=T0 + TIMEOUT,
                        parameters={"spray_minutes": 20})  # fmt: skip
    assert again is first
    assert len(book) == 1
    assert first.parameters == {}
    assert book.get(KEY) is book.get(first.id) is first
    same_window = idempotency_key(
        "heat-alert", "district:3", (T0, T0 + timedelta(hours=1)), "open_misting"
    )
    next_window = idempotency_key(
        "heat-alert",
        "district:3",
        (T0 + timedelta(hours=1), T0 + timedelta(hours=2)),
        "open_misting",
    )
    assert same_window == KEY
    assert next_window != KEY
    assert create(book, next_window) is not first
    assert len(book) == 2


def test_never_acknowledging_actuator_is_retried_then_expires() -> None:
    book, clock = TaskBook(), Clock()
    actuator = wire(book, clock, ack="never")
    task = create(book, max_attempts=3, ack_timeout=TIMEOUT)
    actuator.send(book.mark_sent(task.id, now=clock()))
    # half a timeout later nothing is due
    assert book.due_retries(clock.advance(TIMEOUT / 2)) == []
    assert book.expire(clock()) == []
    for step in (TIMEOUT / 2, TIMEOUT):  # to T0 + 30 s, then T0 + 60 s
        assert book.expire(clock.advance(step)) == []
        for due in book.due_retries(clock()):
            actuator.send(due)
    assert [payload["attempt"] for payload in actuator.sent] == [1, 2, 3]
    sends = [step.at for step in task.history if step.target is S.SENT]
    assert sends == [T0, T0 + TIMEOUT, T0 + 2 * TIMEOUT]
    # the last attempt's timeout runs out: no retry is due, the task expires
    assert book.due_retries(clock.advance(TIMEOUT)) == []
    assert book.expire(clock()) == [task]
    assert task.state is S.EXPIRED
    assert task.attempts == 3
    assert "no acknowledgement after 3 attempt(s)" in task.history[-1].reason
    assert book.expire(clock.advance(TIMEOUT)) == []
    assert len(actuator.sent) == 3


def test_acknowledgement_on_a_retry_stops_retrying() -> None:
    book, clock = TaskBook(), Clock()
    actuator = wire(book, clock, ack=2)
    task = create(book, max_attempts=5)
    actuator.send(book.mark_sent(task.id, now=clock()))
    for due in book.due_retries(clock.advance(TIMEOUT)):
        actuator.send(due)
    assert task.state is S.ACKNOWLEDGED
    assert task.attempts == 2
    assert book.due_retries(clock.advance(10 * TIMEOUT)) == []
    assert book.expire(clock()) == []
    book.on_ack(task.id, True, "duplicate ack", now=clock())  # at-least-once: repeat is harmless
    assert task.state is S.ACKNOWLEDGED
    assert len(task.history) == 4


def test_expiry_by_deadline_before_attempts_are_used() -> None:
    book, clock = TaskBook(), Clock()
    actuator = wire(book, clock, ack="never")
    task = create(book, max_attempts=10, expires_at=T0 + 90 * timedelta(seconds=1))
    actuator.send(book.mark_sent(task.id, now=clock()))
    for _ in range(2):
        for due in book.due_retries(clock.advance(TIMEOUT)):
            actuator.send(due)
    assert task.attempts == 3
    assert book.due_retries(clock.advance(TIMEOUT)) == []  # at 90 s: past the deadline
    assert book.expire(clock()) == [task]
    assert task.state is S.EXPIRED
    assert "expires_at" in task.history[-1].reason


def test_negative_ack_fails_and_early_expiry_is_refused() -> None:
    book, clock = TaskBook(), Clock()
    task = create(book)
    book.mark_sent(task.id, now=T0)
    with pytest.raises(ValidationError, match="attempts remain"):
        task.move(S.EXPIRED, at=T0, actor="system")
    wire(book, clock, ack="reject").send(task)
    assert task.state is S.FAILED
    assert task.history[-1].reason == "mist-1: refused"


def test_on_transition_sees_every_transition_in_order() -> None:
    seen: list[tuple[str, Transition]] = []
    book, clock = TaskBook(on_transition=lambda task, step: seen.append((task.id, step))), Clock()
    actuator = wire(book, clock, ack="never")
    first = create(book, requires_approval=True, max_attempts=2)
    second = create(book, idempotency_key("r", "district:1", "w", "c"))
    book.approve(first.id, actor="operator:lee", reason="ok", now=T0)
    actuator.send(book.mark_sent(first.id, now=T0))
    for due in book.due_retries(clock.advance(TIMEOUT)):
        actuator.send(due)
    book.expire(clock.advance(TIMEOUT))
    assert [step for _, step in seen if _ == first.id] == first.history
    assert [step for _, step in seen if _ == second.id] == second.history
    assert [(step.source.value, step.target.value) for _, step in seen] == [
        ("created", "awaiting_approval"),
        ("created", "approved"),
        ("awaiting_approval", "approved"),
        ("approved", "sent"),
        ("sent", "sent"),
        ("sent", "expired"),
    ]


def test_naive_time_and_bad_delivery_options_are_rejected() -> None:
    book = TaskBook()
    with pytest.raises(ValidationError, match="timezone-aware"):
        book.create("k", actuator_id="a", command="c", now=datetime(2025, 7, 1))
    with pytest.raises(ValidationError, match=r"ack_timeout=0:00:00.*max_attempts=0"):
        book.create(
            "k", actuator_id="a", command="c", now=T0, ack_timeout=timedelta(0), max_attempts=0
        )
    with pytest.raises(ValidationError, match="no task has this id"):
        book.get("missing")


def test_registry_opens_log_and_lists_valid_schemes() -> None:
    actuator = open_actuator("log://pump-7?ack=3")
    assert isinstance(actuator, LogActuator)
    assert isinstance(actuator, Actuator)
    assert (actuator.id, actuator.ack_mode, actuator.acknowledges) == ("pump-7", 3, True)
    with pytest.raises(UnknownBackendError, match="'coap'; expected one of: emulated, log, mqtt"):
        open_actuator("coap://device/1")
    with pytest.raises(ConfigurationError, match="ack='sometimes'"):
        open_actuator("log://pump?ack=sometimes")
