"""The live city in this process: the embedded default's physical side, no broker needed.

:class:`LocalCity` steps a :class:`~citytwin.emulator.live.LiveCity` and ingests each step's
device messages exactly as ``citytwin ingest mqtt`` would — the same message validation
(:func:`~citytwin.mqtt.messages.parse_message`), the same Things (``mqtt:<device>``), QC and
store writes, the same announcements on the bus — and attaches the city for
``emulated://<name>`` actuators (:mod:`citytwin.control.emulated`), whose tasks act on it at its
emulated time. So the control loop closes in one process on the embedded DuckDB, and the same
rules and control file run against the MQTT deployment by changing only the actuator URLs.

>>> from citytwin.emulator.live import LiveCity, LiveSensor
>>> from citytwin.store import open_store
>>> city = LiveCity([LiveSensor("s1", 127.0, 37.5, "99010", "9901001", "가온동")], seed=1)
>>> with open_store("memory://") as store, LocalCity(city, store, name="doc") as local:
...     local.step(datetime(2026, 5, 1, 9, tzinfo=UTC)).stored
5
"""

from __future__ import annotations

import json
import logging
import threading
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from citytwin.bus.base import Bus
from citytwin.control.emulated import attach_city, detach_city
from citytwin.emulator.live import LiveCity
from citytwin.ingest.pipeline import FeedSummary, Ingestor
from citytwin.mqtt.messages import BadMessage, DeviceBook, build_batch, parse_message
from citytwin.store.base import Store

logger = logging.getLogger(__name__)

SOURCE = "live://"


class LocalCity:
    """Step a live city into a store (and bus) in this process; see the module docstring.

    ``store_lock`` is held around store writes (the server passes its store lock); ``traffic``
    also ingests the road links' ``link_speed`` readings.
    """

    def __init__(
        self,
        city: LiveCity,
        store: Store,
        *,
        bus: Bus | None = None,
        name: str = "demo",
        store_lock: AbstractContextManager[object] | None = None,
        traffic: bool = False,
    ) -> None:
        self.city, self.name, self.traffic = city, name, traffic
        self.lock = threading.Lock()  # guards the city: stepping here, tasks from the controller
        self.now: datetime | None = None
        self._store_lock = store_lock or nullcontext()
        self._ingestor = Ingestor(store, bus=bus)
        self._book = DeviceBook()
        self._count = 0
        attach_city(name, city, lock=self.lock, clock=self._clock)

    def _clock(self) -> datetime:
        return self.now or datetime.now(UTC)

    def step(self, moment: datetime) -> FeedSummary:
        """Ingest every reading of the city at ``moment``; tasks after this act at ``moment``."""
        with self.lock:
            messages = self.city.step(moment)
            if self.traffic:
                messages += self.city.link_speeds(moment)
            self.now = moment
        good, raw = [], {}
        for message in messages:
            self._count += 1
            payload = json.dumps(message, ensure_ascii=False).encode()
            parsed = parse_message(payload)
            if isinstance(parsed, BadMessage):  # the emulator's own bug: say so, keep the rest
                logger.error("live city %s: bad reading %s: %s", self.name, message, parsed.reason)
                continue
            good.append((self._count, parsed))
            raw[self._count] = payload
        batch = build_batch(good, self._book, source=f"{SOURCE}{self.name}", raw=raw)
        with self._store_lock:
            return self._ingestor.write(batch)

    def close(self) -> None:
        """Detach the city from ``emulated://`` actuators (idempotent)."""
        detach_city(self.name)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
