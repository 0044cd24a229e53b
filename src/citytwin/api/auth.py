"""Authentication, role checks and access records of the HTTP API (roles: :mod:`citytwin.auth`).

A route that changes something declares what it needs with :func:`require`; the dependency
yields the :class:`~citytwin.auth.Principal` and records the attempt in the audit log::

    from citytwin.api.auth import require

    Approver = Annotated[Principal, Depends(require("approve"), scope="function")]

    def approve_task(task_id: str, who: Approver) -> JSONResponse: ...

or, for a whole router, ``APIRouter(dependencies=[Depends(require("approve"), scope="function")])``
(``scope="function"``: the record is written when the handler returns, before the response is
sent). Use the same ``require(action)`` everywhere: it returns one function per action, so FastAPI
runs it once per request however many parameters depend on it.

Answers: no ``Authorization`` header is the public principal (a 401 with ``WWW-Authenticate``
when the action needs more); a malformed header or unknown token is a 401; a known key whose role
may not is a 403 naming the roles needed. With no key configured at all, every such action is
refused (403 naming ``CITYTWIN_API_TOKENS``).

Audit (``app.state.audit``, an :class:`~citytwin.control.audit.AuditLog`): every refusal (401,
403 — also a writer's 403 for another department's entity) is an ``access.denied`` entry, every
other POST/PATCH/PUT/DELETE that passed is ``access.write`` with the status it ended with. Actor:
the key's name (``anonymous`` without one); subject ``{method, path}``; payload ``{role,
department, status, reason}``. Appends run in a worker thread; each is fsynced.

Ownership checks of writers (:func:`check_datastreams`, :func:`department_of`) look a
Datastream's department up once and keep it in ``app.state.datastream_departments``
(:class:`DepartmentCache`), which Thing and Datastream updates and deletes clear.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import State

from citytwin.api.errors import error_body, status_code_for
from citytwin.api.sta import StoreAccess
from citytwin.auth import (
    ANONYMOUS,
    AccessPolicy,
    Action,
    Principal,
    Role,
    can,
    may_write_thing,
    needed_roles,
    thing_department,
)
from citytwin.control.audit import AuditLog
from citytwin.errors import CitytwinError
from citytwin.model.sensing import (
    Datastream,
    Entity,
    FeatureOfInterest,
    HistoricalLocation,
    Location,
    ObservedProperty,
    Sensor,
    Thing,
)
from citytwin.store.base import Store

logger = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="citytwin"'}
CATALOGUE = (Sensor, ObservedProperty, FeatureOfInterest)  # shared by every department
MAX_CACHED = 100_000


class WriteError(CitytwinError):
    """A refused write with its own status code (401, 403, 405, 409)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        parameter: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.parameter = parameter
        self.headers = headers or {}
        super().__init__(message)


async def _write_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, WriteError)
    body = error_body(error.status, type(error).__name__, str(error), error.parameter)
    return JSONResponse(body, status_code=error.status, headers=error.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Give :class:`WriteError` its own status codes (the generic table maps it to 500)."""
    app.add_exception_handler(WriteError, _write_error)


# -- who is asking ------------------------------------------------------------------------------
def access_policy(state: State) -> AccessPolicy:
    """The app's keys and feed owners, built from its settings on first use."""
    policy: AccessPolicy | None = getattr(state, "access_policy", None)
    if policy is None:
        policy = AccessPolicy.from_settings(state.settings)
        state.access_policy = policy
    return policy


async def principal(request: Request) -> Principal:
    """The principal of a request: public without ``Authorization``, 401 for a bad token."""
    header = request.headers.get("authorization")
    keys = access_policy(request.app.state).keys
    if header is None or not len(keys):
        return ANONYMOUS
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        reason = "expected 'Authorization: Bearer <token>'"
    elif (found := keys.lookup(token.strip())) is not None:
        return found
    else:
        reason = "the bearer token is not valid"
    await record(request, "access.denied", ANONYMOUS, status=401, reason=reason)
    raise WriteError(401, reason, headers=CHALLENGE)


def require(action: Action) -> Callable[..., AsyncIterator[Principal]]:
    """The dependency that lets a request through only for a principal who :func:`can` act.

    Returns the same function for the same action (one run per request; see the module
    docstring for how to declare it).
    """
    return _REQUIREMENTS[action]


def _requirement(action: Action) -> Callable[..., AsyncIterator[Principal]]:
    async def required(
        request: Request, who: Annotated[Principal, Depends(principal)]
    ) -> AsyncIterator[Principal]:
        if not can(who, action):
            raise await _denied(request, who, action)
        if request.method not in WRITE_METHODS:
            yield who
            return
        status, reason, kind = 500, "failed", "access.write"
        try:
            yield who
            status, reason = _success_status(request), "done"
        except Exception as error:
            status, reason = _error_status(error), str(error)
            if status == 403:
                kind = "access.denied"
            raise
        finally:
            await record(request, kind, who, status=status, reason=reason)

    required.__name__ = f"require_{action}"
    return required


_REQUIREMENTS: dict[Action, Callable[..., AsyncIterator[Principal]]] = {}
_ACTIONS: tuple[Action, ...] = ("write", "approve", "rules", "scenarios", "admin")
for _action in _ACTIONS:
    _REQUIREMENTS[_action] = _requirement(_action)


async def _denied(request: Request, who: Principal, action: Action) -> WriteError:
    roles = needed_roles(action)
    where = f"{request.method} {request.url.path}"
    if not len(access_policy(request.app.state).keys):
        status, headers = 403, None
        reason = (
            f"{where} is disabled: no API tokens configured; set CITYTWIN_API_TOKENS to a "
            "comma-separated list of keys (or Settings(api_tokens=(...)), see docs/security.md) "
            "and send 'Authorization: Bearer <token>'"
        )
    elif who is ANONYMOUS:
        status, headers = 401, CHALLENGE
        reason = f"{where} needs 'Authorization: Bearer <token>' of a key with role {roles}"
    else:
        status, headers = 403, None
        reason = f"{where} needs role {roles}; key {who.name!r} has role {who.role}"
    await record(request, "access.denied", who, status=status, reason=reason)
    return WriteError(status, reason, headers=headers)


def _success_status(request: Request) -> int:
    route = request.scope.get("route")
    code = getattr(route, "status_code", None)
    return code if isinstance(code, int) else 200


def _error_status(error: Exception) -> int:
    if isinstance(error, WriteError):
        return error.status
    if isinstance(error, HTTPException):
        return error.status_code
    return status_code_for(error)


async def record(request: Request, kind: str, who: Principal, *, status: int, reason: str) -> None:
    """Append one access entry to ``app.state.audit`` (in a worker thread: each is fsynced)."""
    audit: AuditLog | None = getattr(request.app.state, "audit", None)
    if audit is None:
        logger.warning("%s %s %s: no audit log on the app", kind, request.method, request.url)
        return
    payload = {"role": str(who.role), "department": who.department, "status": status}
    await asyncio.to_thread(
        audit.append,
        kind,
        actor=who.name,
        subject={"method": request.method, "path": request.url.path},
        payload={**payload, "reason": reason},
    )


# -- ownership ----------------------------------------------------------------------------------
class DepartmentCache:
    """Datastream id → owning department, filled on demand, cleared by ownership changes."""

    def __init__(self) -> None:
        self._known: dict[int, str | None] = {}

    def clear(self) -> None:
        self._known.clear()

    def missing(self, ids: Iterable[int]) -> list[int]:
        return sorted({i for i in ids if i not in self._known})

    def fill(self, store: Store, ids: list[int], feeds: Mapping[str, str]) -> None:
        """Look the departments of ``ids`` up (unknown datastreams are not kept)."""
        if len(self._known) + len(ids) > MAX_CACHED:
            self._known.clear()
        streams = store.entities(Datastream, ids)
        things = {t.id: t for t in store.entities(Thing, sorted({d.thing_id for d in streams}))}
        for stream in streams:
            thing = things.get(stream.thing_id)
            owner = None if thing is None else thing_department(thing.key, thing.properties, feeds)
            self._known[stream.id or 0] = owner

    def get(self, datastream_id: int) -> tuple[bool, str | None]:
        return datastream_id in self._known, self._known.get(datastream_id)


def department_cache(state: State) -> DepartmentCache:
    cache: DepartmentCache | None = getattr(state, "datastream_departments", None)
    if cache is None:
        cache = DepartmentCache()
        state.datastream_departments = cache
    return cache


def _refuse(who: Principal, what: str, owner: str | None) -> WriteError:
    owned = f"department {owner!r}" if owner else "no department (only an admin may write it)"
    return WriteError(
        403, f"{what} belongs to {owned}; key {who.name!r} writes for department {who.department!r}"
    )


def check_datastreams(state: State, who: Principal, ids: Iterable[int]) -> None:
    """403 unless ``who`` may write Observations of every (existing) datastream in ``ids``."""
    if who.role is Role.ADMIN:
        return
    wanted = list(ids)
    cache, policy = department_cache(state), access_policy(state)
    if missing := cache.missing(wanted):
        access: StoreAccess = state.store_access
        with access.lock:
            cache.fill(access.store(), missing, policy.feeds)
    for datastream_id in wanted:
        known, owner = cache.get(datastream_id)
        if known and not may_write_thing(who, owner):
            raise _refuse(who, f"Datastreams({datastream_id})", owner)


async def check_datastreams_async(state: State, who: Principal, ids: list[int]) -> None:
    """:func:`check_datastreams` off the event loop when the store must be asked."""
    if who.role is Role.ADMIN:
        return
    if department_cache(state).missing(ids):
        await asyncio.to_thread(check_datastreams, state, who, ids)
    else:
        check_datastreams(state, who, ids)


def department_of(
    store: Store, entity: Entity, feeds: Mapping[str, str], pending: Mapping[int, Thing]
) -> str | None:
    """The department owning ``entity``: its Thing's (``pending`` Things first, then stored)."""
    if isinstance(entity, Thing):
        return thing_department(entity.key, entity.properties, feeds)
    thing_id = getattr(entity, "thing_id", None)
    if isinstance(entity, (Datastream, HistoricalLocation, Location)) and thing_id is not None:
        thing = pending.get(thing_id) or next(iter(store.entities(Thing, [thing_id])), None)
        return None if thing is None else thing_department(thing.key, thing.properties, feeds)
    stamped = getattr(entity, "properties", {}).get("department")
    return stamped if isinstance(stamped, str) and stamped else None


def check_entities(
    state: State,
    store: Store,
    who: Principal,
    entities: Iterable[tuple[Entity, str]],
    *,
    pending: Mapping[int, Thing] | None = None,
) -> None:
    """403 unless ``who`` may write each ``(entity, verb)``; the shared catalogue (Sensors,
    ObservedProperties, FeaturesOfInterest) only an admin may change, anyone with "write"
    create."""
    if who.role is Role.ADMIN:
        return
    feeds = access_policy(state).feeds
    for entity, verb in entities:
        what = f"{entity.entity_set}({entity.id})"
        if isinstance(entity, CATALOGUE):
            if verb != "create":
                raise WriteError(
                    403, f"{what} is in the shared catalogue: only an admin may {verb} it"
                )
            continue
        owner = department_of(store, entity, feeds, pending or {})
        if not may_write_thing(who, owner):
            raise _refuse(who, what, owner)


Writer = Annotated[Principal, Depends(require("write"), scope="function")]
"""A route parameter: the principal allowed to write (SensorThings writes)."""


def stamp(properties: dict[str, Any], who: Principal) -> dict[str, Any]:
    """``properties`` with ``department`` set to a writer's own when absent."""
    if who.role is Role.WRITER and not properties.get("department"):
        return {**properties, "department": who.department}
    return properties
