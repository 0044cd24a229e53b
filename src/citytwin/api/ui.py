"""The operator dashboard over HTTP: ``/ui/`` (the page), ``/ui/static/*`` (its bundle) and
``/ui/config.json`` (what the page needs to know about this server).

``GET /`` stays the OGC API – Features landing page (JSON) for every client except a browser:
a request whose ``Accept`` header prefers HTML (RFC 9110 §12.5.1 quality values) is redirected
to ``/ui/``. When the bundle has not been built, ``/ui/`` answers 503 naming the build command.

Install on an app with :func:`install` (it mounts the static files, which a router cannot carry).
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.datastructures import Headers
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from citytwin import __version__
from citytwin.ui import STATIC_DIR

logger = logging.getLogger(__name__)

BUILD_COMMAND = "make web (that is: npm ci --prefix web && node web/build.mjs)"
HTML_TYPES = ("text/html", "application/xhtml+xml")
JSON_TYPES = ("application/json", "application/geo+json")


def prefers_html(accept: str) -> bool:
    """Whether an ``Accept`` header asks for HTML at least as much as for JSON.

    A browser's ``text/html,…,*/*;q=0.8`` does; ``*/*``, ``application/json`` and an empty header
    do not (``*/*`` alone is a script or a JSON client that takes the default).

    >>> prefers_html("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
    True
    >>> prefers_html("application/json, text/html;q=0.5"), prefers_html("*/*")
    (False, False)
    """
    quality: dict[str, float] = {}
    for part in accept.lower().split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        quality[media] = max(q, quality.get(media, 0.0))
    html = max(quality.get(media, 0.0) for media in HTML_TYPES)
    json = max(quality.get(media, 0.0) for media in JSON_TYPES)
    return html > 0 and html >= json


class BrowserRedirect:
    """ASGI middleware: ``GET /`` from a browser goes to ``/ui/``; everything else passes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            root = scope.get("root_path", "")
            path = scope["path"].removeprefix(root) if root else scope["path"]
            if path == "/" and prefers_html(Headers(scope=scope).get("accept", "")):
                target = f"{root}/ui/"
                response = RedirectResponse(target, status_code=307, headers={"Vary": "Accept"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_router(static_dir: Path = STATIC_DIR) -> APIRouter:
    """The page and its configuration (the bundle itself is mounted by :func:`install`)."""
    router = APIRouter(prefix="/ui", tags=["ui"], include_in_schema=False)
    index = static_dir / "index.html"

    def page() -> Response:
        if not index.is_file():
            logger.warning("dashboard requested but %s is missing", index)
            return PlainTextResponse(
                f"the dashboard is not built: run {BUILD_COMMAND}\n", status_code=503
            )
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    def config(request: Request) -> JSONResponse:
        control = getattr(request.app.state, "control", None) is not None
        return JSONResponse({"control": control, "version": __version__})

    router.add_api_route("/", page, methods=["GET"], name="ui_page")
    router.add_api_route("/config.json", config, methods=["GET"], name="ui_config")
    return router


def install(app: FastAPI, *, static_dir: Path = STATIC_DIR) -> None:
    """Serve the dashboard on ``app``: the routes, the static bundle and the browser redirect.

    Idempotent: a second call on the same app changes nothing.
    """
    if any(getattr(route, "name", None) == "ui_static" for route in app.routes):
        return
    app.include_router(create_router(static_dir))
    app.mount("/ui/static", StaticFiles(directory=static_dir, check_dir=False), name="ui_static")
    app.add_middleware(BrowserRedirect)
