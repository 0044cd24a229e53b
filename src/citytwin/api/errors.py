"""HTTP errors of the API: one table from exception class to status code, one JSON body shape.

Domain errors (:mod:`citytwin.errors`) know nothing about HTTP; this module is the only place
that decides their status code. Every error body has the same shape::

    {"code": 400, "type": "UnsupportedParameterError", "message": "...", "parameter": "$filter"}

``parameter`` names the query parameter or path segment at fault, or is ``null``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from citytwin.errors import (
    CitytwinError,
    ConfigurationError,
    FeedError,
    StoreError,
    ValidationError,
)

logger = logging.getLogger(__name__)


class NotFoundError(CitytwinError):
    """An entity the request names does not exist."""

    def __init__(self, entity_set: str, entity_id: int | None, *, parameter: str = "id") -> None:
        self.parameter = parameter
        if entity_id is None:
            super().__init__(f"{parameter}: no linked entity in {entity_set}")
        else:
            super().__init__(
                f"{entity_set}({entity_id}) not found: no entity with @iot.id {entity_id}"
            )


class InvalidParameterError(ValidationError):
    """A request parameter has a value the API cannot use."""

    def __init__(self, parameter: str, message: str) -> None:
        self.parameter = parameter
        super().__init__(f"{parameter}: {message}")


class UnsupportedParameterError(InvalidParameterError):
    """A standard parameter the API does not implement yet (it is refused, never ignored)."""

    def __init__(self, parameter: str) -> None:
        super().__init__(parameter, "not supported yet by this server")


# The one table. Lookup walks the exception's MRO, so the most specific class wins.
STATUS_CODES: dict[type[Exception], int] = {
    NotFoundError: 404,
    InvalidParameterError: 400,
    ValidationError: 400,
    ValueError: 400,
    FeedError: 400,
    ConfigurationError: 500,
    StoreError: 503,
    CitytwinError: 500,
}


def status_code_for(error: Exception) -> int:
    """Status code of an exception: its nearest class in :data:`STATUS_CODES`, else 500."""
    for cls in type(error).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return 500


def error_body(code: int, kind: str, message: str, parameter: str | None) -> dict[str, Any]:
    return {"code": code, "type": kind, "message": message, "parameter": parameter}


def _respond(code: int, kind: str, message: str, parameter: str | None) -> JSONResponse:
    return JSONResponse(error_body(code, kind, message, parameter), status_code=code)


async def _domain_error(request: Request, error: Exception) -> JSONResponse:
    code = status_code_for(error)
    if code >= 500:
        logger.error("%s %s failed", request.method, request.url.path, exc_info=error)
        return _respond(code, type(error).__name__, "internal error; see the server log", None)
    parameter = getattr(error, "parameter", None)
    return _respond(code, type(error).__name__, str(error), parameter)


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    """FastAPI's 422 becomes a 400 naming the first bad parameter, as STA clients expect."""
    assert isinstance(error, RequestValidationError)
    first = error.errors()[0] if error.errors() else {}
    location = first.get("loc", ())
    parameter = str(location[-1]) if location else None
    message = f"{parameter}: {first.get('msg', 'invalid value')}"
    if "input" in first:
        message += f" (got {first['input']!r})"
    return _respond(400, "InvalidParameterError", message, parameter)


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    kind = "NotFoundError" if error.status_code == 404 else "HTTPError"
    message = f"{request.url.path}: {error.detail}"
    return _respond(error.status_code, kind, message, None)


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through the table above."""
    app.add_exception_handler(CitytwinError, _domain_error)
    app.add_exception_handler(ValueError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
