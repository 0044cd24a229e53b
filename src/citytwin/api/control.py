"""Control endpoints: tasks waiting for a person, alerts, rules, overrides.

- ``GET /control`` — status: dry run, rules, actuator entries, overrides, the loop's counters;
- ``GET /control/tasks[?state=awaiting_approval]`` and ``GET /control/tasks/{id}``;
- ``POST /control/tasks`` — a person's own task ``{actuator, command, parameters, reason}``
  (role operator or admin);
- ``POST /control/tasks/{id}/approve`` and ``/reject`` with ``{"reason": "..."}`` (operator, admin);
- ``POST /control/actuators/{id}/override`` with ``{"active": true, "reason": "..."}``: suspend or
  resume automation for an actuator id or pattern (operator, admin);
- ``POST /control/dry-run`` with ``{"active": true}``: the global dry-run switch (admin);
- ``GET /control/alerts[?limit=&kind=]`` — the latest alerts, newest first;
- ``GET /control/rules`` and ``PUT /control/rules/{name}`` — read or replace one rule (admin, or
  the writer of the rule's department: a writer can neither take over another department's rule
  nor give its own to another department). A rule set here lives until the server restarts; the
  control file stays the source of truth, and the audit log holds the rule as it was set.

Every write needs a role (:func:`citytwin.api.auth.require`) and is recorded with its outcome;
denied attempts are recorded too. Without a control file (``CITYTWIN_CONTROL_FILE``) these routes
answer 404 saying so.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from citytwin.api.auth import WriteError, require
from citytwin.api.errors import InvalidParameterError
from citytwin.auth import Principal, Role
from citytwin.control.dispatcher import Controller
from citytwin.control.rules import parse_rule
from citytwin.control.tasks import Task, TaskState, Transition
from citytwin.errors import ValidationError
from citytwin.services.control import ControlLoop

MAX_BODY_BYTES = 64 * 1024
Approver = Annotated[Principal, Depends(require("approve"), scope="function")]
RuleWriter = Annotated[Principal, Depends(require("rules"), scope="function")]
Admin = Annotated[Principal, Depends(require("admin"), scope="function")]


def control_loop(request: Request) -> ControlLoop:
    """The running control loop, or 404 when the server has no control file."""
    loop: ControlLoop | None = getattr(request.app.state, "control", None)
    if loop is None:
        raise HTTPException(
            404, "control is not configured: start the server with CITYTWIN_CONTROL_FILE=FILE"
        )
    return loop


Loop = Annotated[ControlLoop, Depends(control_loop)]


async def json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, at most :data:`MAX_BODY_BYTES`."""
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidParameterError("body", f"{len(raw)} bytes; expected at most {MAX_BODY_BYTES}")
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidParameterError("body", f"not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidParameterError("body", "expected a JSON object")
    return body


Body = Annotated[dict[str, Any], Depends(json_object)]


def task_json(task: Task, controller: Controller) -> dict[str, Any]:
    """A task as the API shows it: state, origin, check result and full history."""
    origin = controller.origins.get(task.id)
    return {
        "id": task.id,
        "idempotencyKey": task.idempotency_key,
        "actuator": task.actuator_id,
        "command": task.command,
        "parameters": task.parameters,
        "state": task.state.value,
        "requiresApproval": task.requires_approval,
        "createdAt": task.created_at.isoformat(),
        "expiresAt": task.expires_at.isoformat() if task.expires_at else None,
        "attempts": task.attempts,
        "maxAttempts": task.max_attempts,
        "detail": task.detail,
        "rule": origin.rule if origin else None,
        "scope": origin.scope if origin else None,
        "windowEnd": origin.window_end if origin else None,
        "check": controller.checks.get(task.id),
        "history": [_step(s) for s in task.history],
    }


def _step(step: Transition) -> dict[str, str]:
    return {"at": step.at.isoformat(), "from": step.source.value, "to": step.target.value,
            "actor": step.actor, "reason": step.reason}  # fmt: skip


def _text(body: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = body.get(name)
    if isinstance(value, str) and value.strip():
        return value.strip()
    if not required and value is None:
        return ""
    raise InvalidParameterError(name, f"expected a non-empty string, got {value!r}")


def _state(value: str | None) -> list[TaskState] | None:
    if value is None:
        return None
    try:
        return [TaskState(part.strip()) for part in value.split(",")]
    except ValueError:
        allowed = ", ".join(s.value for s in TaskState)
        raise InvalidParameterError(
            "state", f"{value!r}; expected one or more of {allowed}"
        ) from None


def status(loop: Loop) -> dict[str, Any]:
    """What the controller is doing: switches, rules, actuators, overrides and counters."""
    controller = loop.controller
    return {
        "dryRun": controller.dry_run,
        "rules": [rule.name for rule in controller.config.rules],
        "actuators": [spec.match for spec in controller.config.actuators],
        "overrides": {
            pattern: {"actor": o.actor, "reason": o.reason, "since": o.since.isoformat()}
            for pattern, o in controller.overrides.items()
        },
        "watermark": None if controller.watermark is None else controller.watermark.isoformat(),
        "loop": vars(loop.stats),
        "tasks": {state.value: len(controller.tasks(states=[state])) for state in TaskState},
    }


def list_tasks(
    loop: Loop,
    state: Annotated[str | None, Query(description="comma-separated task states")] = None,
) -> list[dict[str, Any]]:
    """Tasks, newest first (``?state=awaiting_approval`` for the approval queue)."""
    controller = loop.controller
    return [task_json(t, controller) for t in controller.tasks(states=_state(state))]


def get_task(loop: Loop, task_id: str) -> dict[str, Any]:
    """One task by id or idempotency key."""
    try:
        task = loop.controller.book.get(task_id)
    except ValidationError as exc:
        raise HTTPException(404, str(exc)) from None
    return task_json(task, loop.controller)


def create_task(loop: Loop, body: Body, who: Approver) -> JSONResponse:
    """A person's own task: approved by them and sent (rate limits permitting)."""
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidParameterError("parameters", "expected a JSON object")
    task = loop.controller.submit(
        _text(body, "actuator"), _text(body, "command"), parameters,
        actor=who.name, reason=_text(body, "reason"),
    )  # fmt: skip
    return JSONResponse(task_json(task, loop.controller), status_code=201)


def _decide(loop: Loop, task_id: str, body: dict[str, Any], who: Principal, verb: str) -> Any:
    controller = loop.controller
    try:
        controller.book.get(task_id)
    except ValidationError as exc:
        raise HTTPException(404, str(exc)) from None
    reason = _text(body, "reason")
    try:
        decide = controller.approve if verb == "approve" else controller.reject
        task = decide(task_id, actor=who.name, reason=reason)
    except ValidationError as exc:
        raise WriteError(409, str(exc)) from None
    return task_json(task, controller)


def approve_task(loop: Loop, task_id: str, body: Body, who: Approver) -> dict[str, Any]:
    """Approve a task awaiting approval (409 if it is not waiting); it is sent at once."""
    result: dict[str, Any] = _decide(loop, task_id, body, who, "approve")
    return result


def reject_task(loop: Loop, task_id: str, body: Body, who: Approver) -> dict[str, Any]:
    """Reject a task awaiting approval, with a reason."""
    result: dict[str, Any] = _decide(loop, task_id, body, who, "reject")
    return result


def override_actuator(loop: Loop, actuator: str, body: Body, who: Approver) -> dict[str, Any]:
    """Suspend (``active: true``) or resume automation for an actuator id or pattern."""
    active = body.get("active", True)
    if not isinstance(active, bool):
        raise InvalidParameterError("active", f"expected true or false, got {active!r}")
    try:
        loop.controller.override(
            actuator, active=active, actor=who.name, reason=_text(body, "reason")
        )
    except ValidationError as exc:
        raise WriteError(409, str(exc)) from None
    return status(loop)


def set_dry_run(loop: Loop, body: Body, who: Admin) -> dict[str, Any]:
    """Switch the global dry run on or off (admin)."""
    active = body.get("active")
    if not isinstance(active, bool):
        raise InvalidParameterError("active", f"expected true or false, got {active!r}")
    loop.controller.set_dry_run(active, actor=who.name)
    return status(loop)


def list_alerts(
    loop: Loop,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    kind: str | None = None,
) -> list[dict[str, Any]]:
    """The latest alerts, newest first."""
    alerts = [a for a in reversed(loop.controller.alerts) if kind is None or a.kind == kind]
    return [a.to_dict() for a in alerts[:limit]]


def list_rules(loop: Loop) -> list[dict[str, Any]]:
    """The rules in force, as JSON."""
    return [rule.model_dump(mode="json", by_alias=True) for rule in loop.controller.config.rules]


def put_rule(loop: Loop, name: str, body: Body, who: RuleWriter) -> dict[str, Any]:
    """Add or replace a rule; writers only within their own department."""
    body = {**body, "name": body.get("name", name)}
    if body["name"] != name:
        raise InvalidParameterError("name", f"{body['name']!r} differs from the path's {name!r}")
    rule = parse_rule(body, position=f"PUT /control/rules/{name}")
    controller = loop.controller
    current = next((r for r in controller.config.rules if r.name == name), None)
    if who.role is not Role.ADMIN:  # a writer: only rules of its own department
        if rule.department is None:
            rule = rule.model_copy(update={"department": who.department})
        for department in (rule.department, current.department if current else who.department):
            if department != who.department:
                raise WriteError(
                    403, f"rule {name!r} belongs to {department or 'no department'}; key "
                    f"{who.name!r} writes rules of department {who.department!r} only",
                )  # fmt: skip
    controller.set_rule(rule, actor=who.name)
    return rule.model_dump(mode="json", by_alias=True)


def create_router() -> APIRouter:
    """The ``/control`` routes."""
    router = APIRouter(prefix="/control", tags=["control"])
    router.add_api_route("", status, methods=["GET"])
    router.add_api_route("/tasks", list_tasks, methods=["GET"])
    router.add_api_route("/tasks", create_task, methods=["POST"], status_code=201)
    router.add_api_route("/tasks/{task_id}", get_task, methods=["GET"])
    router.add_api_route("/tasks/{task_id}/approve", approve_task, methods=["POST"])
    router.add_api_route("/tasks/{task_id}/reject", reject_task, methods=["POST"])
    router.add_api_route("/actuators/{actuator}/override", override_actuator, methods=["POST"])
    router.add_api_route("/dry-run", set_dry_run, methods=["POST"])
    router.add_api_route("/alerts", list_alerts, methods=["GET"])
    router.add_api_route("/rules", list_rules, methods=["GET"])
    router.add_api_route("/rules/{name}", put_rule, methods=["PUT"])
    return router
