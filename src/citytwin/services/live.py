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
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime, timedelta
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


class RealTimeStepper:
    """Step a live city in a background thread without ever running ahead of the wall clock.

    First the last ``backfill`` of history, in ``backfill_step`` steps as fast as ``step`` allows
    (so windows and charts have data at once), then one step every ``interval_s`` stamped with
    the wall clock (QC flags readings more than 5 minutes in the future). ``step`` is
    :meth:`LocalCity.step` or :meth:`~citytwin.emulator.live_mqtt.LiveCityRunner.publish_step`;
    an error in it is logged, kept in :attr:`error` and ends the run.

    >>> seen: list[datetime] = []
    >>> clock = lambda: datetime(2026, 5, 1, 9, 5, tzinfo=UTC)
    >>> stepper = RealTimeStepper(seen.append, backfill=timedelta(minutes=4), clock=clock,
    ...                           interval_s=0.01).start()
    >>> stepper.wait_steps(3, timeout_s=5.0)
    True
    >>> stepper.stop()
    >>> [f"{t:%H:%M}" for t in seen]  # the clock stood still: no step stamped 09:05 twice
    ['09:02', '09:04', '09:05']
    """

    def __init__(
        self,
        step: Callable[[datetime], object],
        *,
        backfill: timedelta = timedelta(hours=1),
        backfill_step: timedelta = timedelta(minutes=2),
        interval_s: float = 15.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._step, self.backfill, self.backfill_step = step, backfill, backfill_step
        self.interval_s = interval_s
        self._clock = clock or (lambda: datetime.now(UTC).replace(microsecond=0))
        self.steps = 0
        self.last: datetime | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._stepped = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="citytwin-live-steps", daemon=True)

    def backfill_moments(self, now: datetime) -> list[datetime]:
        """The back-fill: ``backfill_step`` boundaries after ``now - backfill``, then ``now``."""
        start, step = now - self.backfill, self.backfill_step
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        first = epoch + ((start - epoch) // step + 1) * step
        count = max(0, -(-(now - first) // step))
        return [first + k * step for k in range(count)] + [now]

    def start(self) -> Self:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for moment in self.backfill_moments(self._clock()):
                if self._stop.is_set():
                    return
                self._do(moment)
            while not self._stop.wait(self.interval_s):
                self._do(self._clock())
        except Exception as exc:  # the thread must not die silently: the CLI reports it
            logger.exception("live city: stepping stopped")
            self.error = exc

    def _do(self, moment: datetime) -> None:
        if self.last is not None and moment <= self.last:
            return  # a clock that did not move (or moved back): never send a moment twice
        self._step(moment)
        with self._stepped:
            self.steps, self.last = self.steps + 1, moment
            self._stepped.notify_all()

    def wait_steps(self, count: int, *, timeout_s: float) -> bool:
        """Wait until ``count`` steps are done (True) or ``timeout_s`` passed (False)."""
        with self._stepped:
            return self._stepped.wait_for(lambda: self.steps >= count, timeout_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop after the current step (idempotent)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
