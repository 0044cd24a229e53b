"""Scenario endpoints: create, run, list and compare versioned what-ifs.

- ``POST /scenarios`` — create (or replace) a scenario from a JSON spec (a key of role admin,
  writer or operator: :func:`citytwin.api.auth.require`, action ``scenarios``);
- ``GET /scenarios`` — the stored scenarios; ``GET /scenarios/{name}`` — one spec and its runs;
- ``POST /scenarios/{name}/runs`` — run it (same keys; the baseline is run once if new);
- ``GET /scenarios/{name}/runs`` — its runs with summaries and result hashes;
- ``GET /scenarios/compare?a=&b=`` — deltas of ``a`` against ``b`` (default: ``a``'s baseline)
  as JSON, or the difference map with ``format=png``.

The registry folder is ``app.state.scenario_dir`` when set, else ``$CITYTWIN_SCENARIO_DIR``,
else ``scenarios/`` in the server's working folder. Relative paths in a spec are taken against
the server's working folder.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response

from citytwin.api.auth import require
from citytwin.api.errors import InvalidParameterError
from citytwin.auth import Principal
from citytwin.services import scenarios
from citytwin.services.scenarios import ScenarioNotFoundError

#: A scenario spec is a few hundred bytes; anything much larger is a mistake or an attack.
MAX_SPEC_BYTES = 64 * 1024
#: Creating and running scenarios is analysis: admin, writer and operator keys; public 403.
Authorised = Annotated[Principal, Depends(require("scenarios"), scope="function")]


def scenario_dir(request: Request) -> Path:
    """The registry folder: app state, then environment, then ``scenarios/``."""
    configured = getattr(request.app.state, "scenario_dir", None)
    if configured is not None:
        return Path(configured)
    return Path(os.environ.get("CITYTWIN_SCENARIO_DIR") or "scenarios")


@contextmanager
def _found() -> Iterator[None]:
    """A scenario or run the request names that does not exist is a 404 naming it."""
    try:
        yield
    except ScenarioNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None


async def _spec_body(request: Request) -> dict[str, Any]:
    settings = getattr(request.app.state, "settings", None)
    limit = min(MAX_SPEC_BYTES, getattr(settings, "max_input_bytes", MAX_SPEC_BYTES))
    declared = request.headers.get("content-length", "0")
    if declared.isdigit() and int(declared) > limit:
        raise InvalidParameterError("body", f"{declared} bytes; expected at most {limit}")
    raw = await request.body()
    if len(raw) > limit:
        raise InvalidParameterError("body", f"{len(raw)} bytes; expected at most {limit}")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidParameterError("body", f"not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidParameterError("body", "expected a JSON object (a scenario spec)")
    return body


async def create_scenario(request: Request, _: Authorised) -> JSONResponse:
    """Create or replace a scenario from its JSON spec."""
    scenario = scenarios.create(scenario_dir(request), await _spec_body(request))
    return JSONResponse(scenario.model_dump(mode="json"), status_code=201)


def list_scenarios(request: Request) -> list[dict[str, Any]]:
    """Every stored scenario with its model, number of runs and latest run."""
    return scenarios.list_scenarios(scenario_dir(request))


def get_scenario(request: Request, name: str) -> dict[str, Any]:
    """One scenario's spec and its runs."""
    root = scenario_dir(request)
    with _found():
        spec = scenarios.get_scenario(root, name).model_dump(mode="json")
        runs = [record.run_id for record in scenarios.list_runs(root, name)]
    return {"spec": spec, "runs": runs}


def run_scenario(request: Request, name: str, _: Authorised) -> JSONResponse:
    """Run the scenario (a plain ``def``: the model runs in the thread pool, not the loop)."""
    with _found():
        record = scenarios.run(scenario_dir(request), name)
    return JSONResponse(record.as_dict(), status_code=201)


def list_runs(request: Request, name: str) -> list[dict[str, Any]]:
    """The scenario's runs, oldest first."""
    with _found():
        return [r.as_dict() for r in scenarios.list_runs(scenario_dir(request), name)]


def compare_runs(
    request: Request,
    a: Annotated[str, Query(description="scenario name (latest run) or run id")],
    b: Annotated[str | None, Query(description="default: the baseline of a")] = None,
    format: Literal["json", "png"] = "json",
) -> Response:
    """Deltas of ``a`` against ``b``: headline figures as JSON, or the difference map."""
    with _found():
        comparison = scenarios.compare(scenario_dir(request), a, b)
    if format == "json":
        return JSONResponse(comparison.as_dict())
    with tempfile.TemporaryDirectory(prefix="citytwin-compare-") as scratch:
        picture = scenarios.comparison_picture(comparison, Path(scratch) / "difference.png")
        if picture is None:
            raise HTTPException(404, f"{comparison.a}: the base data has no places to map")
        return Response(picture.read_bytes(), media_type="image/png")


def create_router() -> APIRouter:
    """The ``/scenarios`` routes (``compare`` before ``{name}`` so it is not taken for a name)."""
    router = APIRouter(prefix="/scenarios", tags=["scenarios"])
    router.add_api_route("", create_scenario, methods=["POST"], status_code=201)
    router.add_api_route("", list_scenarios, methods=["GET"])
    router.add_api_route("/compare", compare_runs, methods=["GET"])
    router.add_api_route("/{name}", get_scenario, methods=["GET"])
    router.add_api_route("/{name}/runs", run_scenario, methods=["POST"], status_code=201)
    router.add_api_route("/{name}/runs", list_runs, methods=["GET"])
    return router
