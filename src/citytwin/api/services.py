"""Service-catalog endpoints: the CPS services and their linkage table (연계테이블).

- ``GET /services`` — the service catalog as JSON (departments and services with their references);
- ``GET /services/linkage?format=json|md|csv|html&lang=ko|en`` — the linkage table of the catalog
  against what this server has configured: the code's registries, the store's feeds, layers and
  data (newest observation per feed) and the running control loop's rules and actuators (none
  when the server runs without a control file).

The catalog is ``app.state.service_catalog`` when set, else the bundled one
(``citytwin/services/presets/catalog.yaml``).
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from citytwin.api.sta import Access
from citytwin.control.config import ControlConfig
from citytwin.services.catalog import DEFAULT_CATALOG, Catalog, Configuration, load_catalog
from citytwin.services.linkage import as_dict, linkage_table
from citytwin.services.linkage_render import MEDIA_TYPES, render


@cache
def _bundled_catalog() -> Catalog:
    return load_catalog(DEFAULT_CATALOG)


def service_catalog(request: Request) -> Catalog:
    """The catalog this app serves: ``app.state.service_catalog``, else the bundled one."""
    given: Catalog | None = getattr(request.app.state, "service_catalog", None)
    return given if given is not None else _bundled_catalog()


def control_config(request: Request) -> ControlConfig | None:
    """The running control loop's configuration (rules, actuators), or None without one."""
    loop = getattr(request.app.state, "control", None)
    config: ControlConfig | None = loop.controller.config if loop is not None else None
    return config


def services(request: Request) -> dict[str, Any]:
    """The service catalog: departments (key → ko/en labels) and services."""
    return service_catalog(request).model_dump(mode="json")


def linkage(
    request: Request,
    access: Access,
    format: Annotated[Literal["json", "md", "csv", "html"], Query()] = "json",
    lang: Annotated[Literal["ko", "en"], Query(description="label language")] = "en",
) -> Response:
    """The linkage table: each service × the seven CPS functions, with status and gaps."""
    catalog = service_catalog(request)
    with access.lock:
        store = access.store()
        configuration = Configuration.gather(store=store, control=control_config(request))
        table = linkage_table(catalog, configuration, store=store, lang=lang)
    if format == "json":
        return JSONResponse(as_dict(table))
    return Response(render(table, format), media_type=MEDIA_TYPES[format])


def create_router() -> APIRouter:
    """Routes under ``/services``."""
    router = APIRouter(prefix="/services", tags=["services"])
    router.add_api_route("", services, methods=["GET"], name="services")
    router.add_api_route("/linkage", linkage, methods=["GET"], name="services_linkage")
    return router
