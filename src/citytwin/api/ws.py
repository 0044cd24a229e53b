"""Live observations over WebSocket.

``/ws/observations?property=pm25&bbox=minLon,minLat,maxLon,maxLat``: each observation the pipeline
stores (announced on the bus, see :class:`citytwin.ingest.pipeline.Ingestor`) is sent as one JSON
text message::

    {"datastream": 42, "thing": "sdot:V02Q1940612", "observedProperty": "pm25",
     "phenomenonTime": "2020-03-14T15:00:00+00:00", "result": 12.0, "resultQuality": [],
     "lon": 126.9, "lat": 37.5}

Both filters are optional and applied here, on the server, against the Twin catalogue, which each
connection loads once and reloads only when a datastream it has not seen appears. A parameter the
server cannot use closes the connection with code 1008 (policy violation) and a reason that
names the parameter. The connection is accepted first so that the reason reaches the client
(a close before the handshake is only an HTTP 403 to a browser).

A slow client loses the oldest frames, never delays the ingest (the bus's drop-oldest policy);
the store keeps everything for a client that wants to catch up.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated

import anyio
import numpy as np
import pandas as pd
from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect, status
from starlette.concurrency import run_in_threadpool

from citytwin.api.errors import InvalidParameterError
from citytwin.api.features import BBox, parse_bbox
from citytwin.api.sta import StoreAccess
from citytwin.bus.base import OBSERVATIONS, Bus, Subscription
from citytwin.errors import ValidationError
from citytwin.model.quality import flag_names
from citytwin.model.vocabulary import get_property
from citytwin.store.base import ObservationFrame, from_micros
from citytwin.twin import Twin

MAX_REASON_BYTES = 123  # RFC 6455 §5.5: a control frame's payload is at most 125 bytes
QUEUE_FRAMES = 64  # frames buffered per connection before the oldest is dropped

Place = tuple[str | None, str, float | None, float | None]  # thing, property, lon, lat


@dataclass
class ObservationFilter:
    """Which datastreams a connection wants, resolved against a cached catalogue."""

    load_catalogue: Callable[[], pd.DataFrame]
    observed_property: str | None = None
    bbox: BBox | None = None
    wanted: dict[int, Place] = field(default_factory=dict)
    known: set[int] = field(default_factory=set)

    def refresh(self) -> None:
        """Reload the catalogue (blocking: call from a worker thread)."""
        catalogue = self.load_catalogue()
        self.known = {int(i) for i in catalogue["datastream_id"]}
        if self.observed_property is not None:
            catalogue = catalogue[catalogue["observed_property"] == self.observed_property]
        if self.bbox is not None:
            west, south, east, north = self.bbox
            inside = catalogue["lon"].between(west, east) & catalogue["lat"].between(south, north)
            catalogue = catalogue[inside]
        ids = catalogue["datastream_id"].to_numpy(np.int64)
        things = catalogue["thing"].tolist()
        properties = catalogue["observed_property"].tolist()
        lons = catalogue["lon"].to_numpy(np.float64)
        lats = catalogue["lat"].to_numpy(np.float64)
        self.wanted = {
            int(ids[i]): (
                None if things[i] is None else str(things[i]),
                str(properties[i]),
                _number(lons[i]),
                _number(lats[i]),
            )
            for i in range(len(ids))
        }

    def needs_refresh(self, frame: ObservationFrame) -> bool:
        """True when the frame names a datastream the cached catalogue has not seen."""
        unseen = set(np.unique(frame.datastream_id).tolist()) - self.known
        self.known |= unseen  # reload once per new datastream, not once per frame
        return bool(unseen)

    def messages(self, frame: ObservationFrame) -> list[dict[str, object]]:
        """The JSON messages of the frame's observations that pass the filter."""
        keep = np.isin(frame.datastream_id, np.fromiter(self.wanted, np.int64, len(self.wanted)))
        out: list[dict[str, object]] = []
        for row in np.flatnonzero(keep):
            datastream = int(frame.datastream_id[row])
            thing, observed_property, lon, lat = self.wanted[datastream]
            out.append(
                {
                    "datastream": datastream,
                    "thing": thing,
                    "observedProperty": observed_property,
                    "phenomenonTime": from_micros(int(frame.phenomenon_time[row])).isoformat(),
                    "result": _number(frame.result[row]),
                    "resultQuality": flag_names(int(frame.quality[row])),
                    "lon": lon,
                    "lat": lat,
                }
            )
        return out


def _number(value: float) -> float | None:
    """A JSON-safe float: NaN (unknown position, missing value) becomes null."""
    number = float(value)
    return None if math.isnan(number) else number


def parse_property(value: str | None) -> str | None:
    """An observed-property key of the vocabulary, or ``None`` when absent."""
    if value is None:
        return None
    try:
        return get_property(value).key
    except ValidationError:
        raise InvalidParameterError("property", f"unknown observed property {value!r}") from None


def _reason(error: InvalidParameterError) -> str:
    return str(error).encode()[:MAX_REASON_BYTES].decode(errors="ignore")


def create_router() -> APIRouter:
    router = APIRouter()

    @router.websocket("/ws/observations")
    async def stream_observations(
        websocket: WebSocket,
        observed_property: Annotated[str | None, Query(alias="property")] = None,
        bbox: str | None = None,
    ) -> None:
        try:
            wanted = ObservationFilter(
                _catalogue_loader(websocket.app.state.store_access),
                observed_property=parse_property(observed_property),
                bbox=parse_bbox(bbox),
            )
        except InvalidParameterError as error:
            await websocket.accept()
            await websocket.close(code=status.WS_1008_POLICY_VIOLATION, reason=_reason(error))
            return
        bus: Bus = websocket.app.state.bus
        # subscribe before accepting: once the client is connected, nothing stored is missed
        subscription = bus.subscribe(f"{OBSERVATIONS}/#", maxsize=QUEUE_FRAMES)
        try:
            await run_in_threadpool(wanted.refresh)
            await websocket.accept()
            await _until_either(
                partial(_forward, websocket, subscription, wanted),
                partial(_disconnected, websocket),
            )
        except* WebSocketDisconnect:
            pass  # the client left while a message was on its way
        finally:
            subscription.close()

    return router


def _catalogue_loader(access: StoreAccess) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        with access.lock:
            return Twin(access.store()).catalogue()

    return load


async def _forward(
    websocket: WebSocket, subscription: Subscription, wanted: ObservationFilter
) -> None:
    async for _topic, message in subscription:
        if not isinstance(message, ObservationFrame):
            continue
        if wanted.needs_refresh(message):
            await run_in_threadpool(wanted.refresh)
        for observation in wanted.messages(message):
            await websocket.send_json(observation)
    await websocket.close()  # the bus closed: the server is shutting down


async def _disconnected(websocket: WebSocket) -> None:
    """Return when the client goes away (clients send nothing we act on)."""
    try:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass
    except WebSocketDisconnect:
        pass


async def _until_either(*work: Callable[[], Awaitable[None]]) -> None:
    """Run tasks until the first finishes, then cancel the others (an error propagates)."""
    async with anyio.create_task_group() as group:

        async def run_then_stop(job: Callable[[], Awaitable[None]]) -> None:
            await job()
            group.cancel_scope.cancel()

        for job in work:
            group.start_soon(run_then_stop, job)
