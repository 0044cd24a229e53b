"""The SensorThings API Part 2 — Tasking Core (OGC 17-079r1) over the controller.

Entity sets under ``/v1.1`` (read-only except ``POST Tasks``):

- ``Actuators`` — one per actuator entry of the control file (``@iot.id`` 1, 2, … in file order;
  ``name`` is the entry's name or pattern);
- ``TaskingCapabilities`` — one per (actuator entry, command): the commands the entry declares
  plus those its rules send; ``taskingParameters`` is a SWE Common ``DataRecord`` whose fields are
  ``actuator`` (an id matching the entry's pattern), ``reason``, and the command's parameters;
- ``Tasks`` — every task the controller knows (``@iot.id`` is the task id, a string:
  ``Tasks('…')``); ``taskingParameters`` holds actuator and parameters, and the extension field
  ``status`` the task's state (the standard leaves the life cycle open; ours is in
  :mod:`citytwin.control.tasks`). ``POST /v1.1/Tasks`` with ``{"TaskingCapability": {"@iot.id":
  n}, "taskingParameters": {"actuator": "spray-truck:1111051", "minutes": 20, "reason": "…"}}``
  creates a person's task (operator or admin), approved by that person.

Navigation: ``Actuators(n)/TaskingCapabilities``, ``TaskingCapabilities(n)/Actuator``,
``TaskingCapabilities(n)/Tasks``, ``Tasks('id')/TaskingCapability``.
"""

from __future__ import annotations

import fnmatch
import string
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse

from citytwin.api.auth import require
from citytwin.api.control import Body, Loop, task_json
from citytwin.api.errors import InvalidParameterError
from citytwin.api.sta import VERSION
from citytwin.auth import Principal
from citytwin.control.config import ActuatorSpec, CommandSpec, ControlConfig, ParameterSpec
from citytwin.control.dispatcher import Controller
from citytwin.control.rules import TaskAction
from citytwin.control.tasks import Task

Approver = Annotated[Principal, Depends(require("approve"), scope="function")]
SWE_TYPES = {"number": "Quantity", "integer": "Count", "text": "Text", "boolean": "Boolean"}
_CHECKS = {"number": (int, float), "integer": (int,), "text": (str,), "boolean": (bool,)}


@dataclass(frozen=True)
class Capability:
    """One (actuator entry, command) pair: a TaskingCapability."""

    id: int
    actuator: int  # @iot.id of the Actuator (1-based entry index)
    spec: ActuatorSpec
    command: str
    details: CommandSpec


def capabilities(config: ControlConfig) -> list[Capability]:
    """The capabilities of a control configuration, numbered in a stable order."""
    found = []
    for number, spec in enumerate(config.actuators, start=1):
        commands = dict(spec.commands)
        for rule in config.rules:
            for action in rule.actions:
                if isinstance(action, TaskAction) and _may_route(action.task.actuator, spec):
                    commands.setdefault(action.task.command, CommandSpec())
        for command in sorted(commands):
            found.append((number, spec, command, commands[command]))
    return [Capability(i, *item) for i, item in enumerate(found, start=1)]


def _may_route(pattern: str, spec: ActuatorSpec) -> bool:
    """Whether a rule's actuator pattern (with ``{placeholders}``) can produce a matching id."""
    fields = [name for _, name, _, _ in string.Formatter().parse(pattern) if name]
    probe = pattern.format(**dict.fromkeys(fields, "x")) if fields else pattern
    return fnmatch.fnmatchcase(probe, spec.match) or fnmatch.fnmatchcase(spec.match, probe)


def _base(request: Request) -> str:
    return f"{str(request.base_url).rstrip('/')}/{VERSION}"


def actuator_json(request: Request, number: int, spec: ActuatorSpec) -> dict[str, Any]:
    link = f"{_base(request)}/Actuators({number})"
    return {
        "@iot.id": number,
        "@iot.selfLink": link,
        "name": spec.name or spec.match,
        "description": spec.description or f"actuators matching {spec.match!r}",
        "encodingType": "application/json",
        "metadata": spec.url.split("?")[0],
        "TaskingCapabilities@iot.navigationLink": f"{link}/TaskingCapabilities",
    }


def _field(name: str, parameter: ParameterSpec) -> dict[str, Any]:
    field: dict[str, Any] = {
        "name": name, "label": name, "description": parameter.description,
        "type": SWE_TYPES[parameter.type], "required": parameter.required,
    }  # fmt: skip
    if parameter.unit:
        field["uom"] = {"code": parameter.unit}
    return field


def capability_json(request: Request, cap: Capability) -> dict[str, Any]:
    link = f"{_base(request)}/TaskingCapabilities({cap.id})"
    target = ParameterSpec(
        type="text", required=True, description=f"an actuator id matching {cap.spec.match!r}"
    )
    why = ParameterSpec(type="text", description="why (recorded in the audit log)")
    fields = [
        _field("actuator", target),
        _field("reason", why),
        *(_field(name, p) for name, p in cap.details.parameters.items()),
    ]
    return {
        "@iot.id": cap.id,
        "@iot.selfLink": link,
        "name": f"{cap.command} ({cap.spec.name or cap.spec.match})",
        "description": cap.details.description or cap.command,
        "properties": {"command": cap.command, "actuatorPattern": cap.spec.match},
        "taskingParameters": {"type": "DataRecord", "field": fields},
        "Actuator@iot.navigationLink": f"{link}/Actuator",
        "Tasks@iot.navigationLink": f"{link}/Tasks",
    }


def sta_task_json(request: Request, task: Task, controller: Controller) -> dict[str, Any]:
    link = f"{_base(request)}/Tasks('{task.id}')"
    return {
        "@iot.id": task.id,
        "@iot.selfLink": link,
        "creationTime": task.created_at.isoformat(),
        "taskingParameters": {"actuator": task.actuator_id, **task.parameters},
        "status": task.state.value,
        "TaskingCapability@iot.navigationLink": f"{link}/TaskingCapability",
        "citytwin:task": task_json(task, controller),
    }


def _capability_of(task: Task, caps: list[Capability]) -> Capability | None:
    return next(
        (c for c in caps if c.command == task.command and c.spec.matches(task.actuator_id)), None
    )


def _one(caps: list[Capability], number: int) -> Capability:
    for cap in caps:
        if cap.id == number:
            return cap
    raise HTTPException(404, f"TaskingCapabilities({number}): no such entity")


def _task(loop: Loop, task_id: str) -> Task:
    try:
        return loop.controller.book.get(task_id.strip("'"))
    except Exception:
        raise HTTPException(404, f"Tasks({task_id}): no such entity") from None


def _value(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"@iot.count": len(items), "value": items}


def list_actuators(request: Request, loop: Loop) -> dict[str, Any]:
    actuators = loop.controller.config.actuators
    return _value([actuator_json(request, n, s) for n, s in enumerate(actuators, start=1)])


def get_actuator(request: Request, loop: Loop, id: int) -> dict[str, Any]:
    actuators = loop.controller.config.actuators
    if not 1 <= id <= len(actuators):
        raise HTTPException(404, f"Actuators({id}): no such entity")
    return actuator_json(request, id, actuators[id - 1])


def actuator_capabilities(request: Request, loop: Loop, id: int) -> dict[str, Any]:
    get_actuator(request, loop, id)
    caps = capabilities(loop.controller.config)
    return _value([capability_json(request, c) for c in caps if c.actuator == id])


def list_capabilities(request: Request, loop: Loop) -> dict[str, Any]:
    caps = capabilities(loop.controller.config)
    return _value([capability_json(request, c) for c in caps])


def get_capability(request: Request, loop: Loop, id: int) -> dict[str, Any]:
    return capability_json(request, _one(capabilities(loop.controller.config), id))


def capability_actuator(request: Request, loop: Loop, id: int) -> dict[str, Any]:
    cap = _one(capabilities(loop.controller.config), id)
    return actuator_json(request, cap.actuator, cap.spec)


def capability_tasks(request: Request, loop: Loop, id: int) -> dict[str, Any]:
    cap = _one(capabilities(loop.controller.config), id)
    controller = loop.controller
    tasks = [
        t
        for t in controller.tasks()
        if t.command == cap.command and cap.spec.matches(t.actuator_id)
    ]
    return _value([sta_task_json(request, t, controller) for t in tasks])


def list_tasks(request: Request, loop: Loop) -> dict[str, Any]:
    controller = loop.controller
    return _value([sta_task_json(request, t, controller) for t in controller.tasks()])


def get_task(request: Request, loop: Loop, id: str) -> dict[str, Any]:
    return sta_task_json(request, _task(loop, id), loop.controller)


def task_capability(request: Request, loop: Loop, id: str) -> dict[str, Any]:
    cap = _capability_of(_task(loop, id), capabilities(loop.controller.config))
    if cap is None:
        raise HTTPException(404, f"Tasks({id})/TaskingCapability: no capability matches the task")
    return capability_json(request, cap)


def _check_parameters(cap: Capability, given: dict[str, Any]) -> dict[str, Any]:
    declared = cap.details.parameters
    if not declared:
        return given
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise InvalidParameterError(
            "taskingParameters",
            f"unknown parameters {unknown}; {cap.command} takes {sorted(declared)}",
        )
    for name, parameter in declared.items():
        if name not in given:
            if parameter.required:
                raise InvalidParameterError(f"taskingParameters.{name}", "required")
            continue
        value = given[name]
        wrong_bool = isinstance(value, bool) and parameter.type != "boolean"
        if wrong_bool or not isinstance(value, _CHECKS[parameter.type]):
            raise InvalidParameterError(
                f"taskingParameters.{name}", f"{value!r}; expected a {parameter.type}"
            )
    return given


def create_task(request: Request, loop: Loop, body: Body, who: Approver) -> JSONResponse:
    """``POST /v1.1/Tasks``: a person's task on a TaskingCapability (see the module docstring)."""
    link = body.get("TaskingCapability")
    number = link.get("@iot.id") if isinstance(link, dict) else None
    if not isinstance(number, int) or isinstance(number, bool):
        raise InvalidParameterError("TaskingCapability", 'expected {"@iot.id": <integer>}')
    cap = _one(capabilities(loop.controller.config), number)
    parameters = body.get("taskingParameters")
    if not isinstance(parameters, dict):
        raise InvalidParameterError("taskingParameters", "expected a JSON object")
    parameters = dict(parameters)
    actuator = parameters.pop("actuator", None)
    if not isinstance(actuator, str) or not cap.spec.matches(actuator):
        raise InvalidParameterError(
            "taskingParameters.actuator",
            f"{actuator!r}; expected an id matching {cap.spec.match!r}",
        )
    reason = parameters.pop("reason", None) or "requested through the SensorThings Tasking API"
    task = loop.controller.submit(
        actuator,
        cap.command,
        _check_parameters(cap, parameters),
        actor=who.name,
        reason=str(reason),
    )
    body_out = sta_task_json(request, task, loop.controller)
    return JSONResponse(body_out, status_code=201, headers={"Location": body_out["@iot.selfLink"]})


def create_router() -> APIRouter:
    """The Tasking Core routes under ``/v1.1``."""
    router = APIRouter(prefix=f"/{VERSION}", tags=["Tasking"])
    routes = (
        ("/Actuators", list_actuators, "GET"),
        ("/Actuators({id})", get_actuator, "GET"),
        ("/Actuators({id})/TaskingCapabilities", actuator_capabilities, "GET"),
        ("/TaskingCapabilities", list_capabilities, "GET"),
        ("/TaskingCapabilities({id})", get_capability, "GET"),
        ("/TaskingCapabilities({id})/Actuator", capability_actuator, "GET"),
        ("/TaskingCapabilities({id})/Tasks", capability_tasks, "GET"),
        ("/Tasks", list_tasks, "GET"),
        ("/Tasks({id})", get_task, "GET"),
        ("/Tasks({id})/TaskingCapability", task_capability, "GET"),
    )
    for path, endpoint, method in routes:
        router.add_api_route(path, endpoint, methods=[method])
    router.add_api_route("/Tasks", create_task, methods=["POST"], status_code=201)
    return router
