"""The web application factory: ``create_app(settings, *, store=None, bus=None, audit=None)``.

Access (roles: :mod:`citytwin.auth`, HTTP side: :mod:`citytwin.api.auth`) is recorded in
``app.state.audit``: the given :class:`~citytwin.control.audit.AuditLog`, else one at
:func:`citytwin.config.audit_log_path` (ephemeral when a store is injected and
``settings.audit_log`` is not set).

Nothing connects at import time. An injected store or bus belongs to the caller (it is never
closed here); without one, the app opens ``settings.store_url`` on the first request that needs it
and closes it when the app shuts down, and builds an :class:`~citytwin.bus.memory.InProcessBus`
(closed at shutdown, which ends the open WebSocket streams).

With ``settings.mqtt_url`` the lifespan also runs the SensorThings MQTT extension
(:class:`~citytwin.api.sta_mqtt.StaMqttBridge`, ``app.state.mqtt``): notifications always, create
via MQTT only with ``settings.mqtt_create``; links in notifications start at
``settings.public_url`` (a notification has no request to take the host from). With
``settings.mqtt_ingest_topics`` as well, the server runs the durable device subscriber of
``citytwin ingest mqtt`` on those topics in a thread (``app.state.mqtt_ingest``).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pandas as pd
from fastapi import FastAPI

from citytwin import __version__
from citytwin.api import (
    analysis,
    auth,
    features,
    layers,
    ngsi_ld,
    scenarios,
    sta_update,
    sta_write,
    tasking,
    twin,
    ui,
    ws,
)
from citytwin.api import control as control_api
from citytwin.api import services as services_api
from citytwin.api.errors import install_error_handlers
from citytwin.api.sta import VERSION, StoreAccess, create_router
from citytwin.api.sta_mqtt import StaMqttBridge
from citytwin.auth import AccessPolicy
from citytwin.bus import Bus, open_bus
from citytwin.config import Settings, audit_log_path
from citytwin.control.audit import AuditLog
from citytwin.control.dispatcher import Controller
from citytwin.mqtt.ingest import MqttIngest
from citytwin.services.control import ControlLoop, build_controller
from citytwin.store.base import Store
from citytwin.twin.state import Twin
from citytwin.ui import STATIC_DIR


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    bus: Bus | None = None,
    audit: AuditLog | None = None,
    control: Controller | None = None,
    ui_dir: Path | None = None,
) -> FastAPI:
    """Build the citytwin API: OGC SensorThings API v1.1 (read side) under ``/v1.1``.

    >>> app = create_app(Settings(store_url="memory://"))
    >>> app.title
    'citytwin SensorThings API'
    """
    settings = settings or Settings.from_env()
    access = StoreAccess(lambda: store) if store is not None else StoreAccess(_opener(settings))
    live = bus if bus is not None else open_bus()  # the in-process bus connects to nothing

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        bridge = None
        if settings.mqtt_url is not None:
            bridge = StaMqttBridge(
                settings.mqtt_url, bus=live, store_access=access, create=settings.mqtt_create,
                base_url=f"{settings.public_url.rstrip('/')}/{VERSION}",
            )  # fmt: skip
            await bridge.start()
        app.state.mqtt = bridge
        devices = _DeviceIngest.start(settings, access, live)
        app.state.mqtt_ingest = devices
        running = app.state.control.start(live) if app.state.control is not None else None
        try:
            yield
        finally:
            if running is not None:
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
                await asyncio.to_thread(app.state.control.controller.close)
            if devices is not None:
                await asyncio.to_thread(devices.stop)
            if bridge is not None:
                await bridge.stop()
        if bus is None:
            live.close()
        if store is None:
            access.close()

    app = FastAPI(
        title="citytwin SensorThings API",
        version=__version__,
        summary="Urban digital twin: OGC SensorThings API v1.1 Part 1 (Sensing), read side.",
        lifespan=lifespan,
    )
    app.state.store_access = access
    app.state.settings = settings
    app.state.bus = live
    app.state.access_policy = AccessPolicy.from_settings(settings)  # a bad key fails here
    app.state.audit = audit if audit is not None else AuditLog(_audit_path(settings, store))
    app.state.control = _control_loop(settings, access, app.state.audit, live, control)
    install_error_handlers(app)
    auth.install_error_handlers(app)
    # writes first: routes are matched in order, and a device POSTing an Observation should not
    # walk past every read route (a GET skips the write routes as cheaply: wrong method)
    app.include_router(sta_write.create_router())
    app.include_router(sta_update.create_router())
    app.include_router(tasking.create_router())  # before the Sensing routes: /v1.1/Tasks …
    app.include_router(create_router())
    app.include_router(twin.create_router())
    app.include_router(analysis.create_router())
    app.include_router(layers.create_router())
    app.include_router(scenarios.create_router())
    app.include_router(control_api.create_router())
    app.include_router(features.create_router())
    app.include_router(ngsi_ld.create_router())
    app.include_router(ws.create_router())
    app.include_router(services_api.create_router())
    # the operator dashboard at /ui/ (browsers asking for / are sent there); ui_dir: another build
    ui.install(app, static_dir=ui_dir or STATIC_DIR)
    return app


class _DeviceIngest:
    """``citytwin ingest mqtt`` inside the server (``settings.mqtt_ingest_topics``): one process
    owns the store — an embedded DuckDB file takes one writer — and devices' readings reach the
    bus, hence WebSocket clients and the SensorThings MQTT topics."""

    def __init__(self, ingest: MqttIngest) -> None:
        self.ingest = ingest
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=ingest.run, args=(self._stop,), name="citytwin-mqtt-ingest", daemon=True
        )

    @classmethod
    def start(cls, settings: Settings, access: StoreAccess, bus: Bus) -> _DeviceIngest | None:
        if settings.mqtt_url is None or not settings.mqtt_ingest_topics:
            return None
        with access.lock:
            store = access.store()
        ingest = MqttIngest(
            store, settings.mqtt_url, list(settings.mqtt_ingest_topics), bus=bus, lock=access.lock
        )
        running = cls(ingest)
        running._thread.start()
        return running

    def stop(self) -> None:
        """Flush, acknowledge and disconnect (the session stays on the broker)."""
        self._stop.set()
        self._thread.join(30)


def _control_loop(
    settings: Settings, access: StoreAccess, audit: AuditLog, bus: Bus, given: Controller | None
) -> ControlLoop | None:
    """The control loop: around the given controller, else one built from the control file
    (built here, not at start-up, so a bad file fails ``create_app`` with its message)."""
    controller = given
    if controller is None and settings.control_file is not None:
        controller = build_controller(
            settings.control_file,
            audit=audit,
            scenario_dir=os.environ.get("CITYTWIN_SCENARIO_DIR") or "scenarios",
            bus=bus,
        )
    if controller is None:
        return None

    def catalogue() -> pd.DataFrame:
        with access.lock:
            return Twin(access.store()).catalogue()

    return ControlLoop(controller, catalogue)


def _audit_path(settings: Settings, store: Store | None) -> Path:
    """The configured audit log; with an injected store and none configured, an ephemeral one
    (the caller owns the store, and settings.store_url does not describe it)."""
    if store is not None and settings.audit_log is None:
        return audit_log_path(settings.model_copy(update={"store_url": "memory://"}))
    return audit_log_path(settings)


def _opener(settings: Settings) -> Callable[[], Store]:
    def open_configured() -> Store:
        from citytwin.store import open_store  # the registry imports the backend lazily

        return open_store(settings.store_url)

    return open_configured
