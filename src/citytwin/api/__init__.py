"""The web API: OGC SensorThings API v1.1 over a store (see :func:`create_app`)."""

from __future__ import annotations

from citytwin.api.app import create_app

__all__ = ["create_app"]
