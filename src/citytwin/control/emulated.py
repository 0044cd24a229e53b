"""The in-process actuator: tasks go straight to a live city emulator in this process.

The embedded default runs without a broker: :class:`~citytwin.services.live.LocalCity` attaches
its :class:`~citytwin.emulator.live.LiveCity` under a name, and ``emulated://<name>?id=<actuator
id>`` actuators deliver each task to it — the same :meth:`LiveCity.apply` the MQTT runner calls,
answered the same way: a receipt, then the final report (``done``), or a refusal. Delivery holds
the city's lock; the answers go to ``on_ack`` at once (the controller queues them for its next
pump). Nothing is sent when no city is attached under the name: the actuator cannot be opened,
and the controller fails the task with that reason.

>>> from citytwin.emulator.live import LiveCity, LiveSensor
>>> city = LiveCity([LiveSensor("s1", 127.0, 37.5, "99010", "9901001", "가온동")], seed=1)
>>> attach_city("doc", city)
>>> open_emulated = EmulatedActuator.from_url("emulated://doc?id=spray-truck:9901001")
>>> open_emulated.id, open_emulated.city is city
('spray-truck:9901001', True)
>>> detach_city("doc")
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import ClassVar, NamedTuple, Self
from urllib.parse import parse_qs, urlsplit

from citytwin.control.base import AckCallback, Actuator
from citytwin.control.tasks import Task
from citytwin.emulator.live import LiveCity
from citytwin.errors import ConfigurationError

logger = logging.getLogger(__name__)


class _Attached(NamedTuple):
    city: LiveCity
    lock: threading.Lock
    clock: Callable[[], datetime]


_CITIES: dict[str, _Attached] = {}
_REGISTRY_LOCK = threading.Lock()


def attach_city(
    name: str,
    city: LiveCity,
    *,
    lock: threading.Lock | None = None,
    clock: Callable[[], datetime] | None = None,
) -> None:
    """Make ``city`` reachable as ``emulated://<name>``; ``clock`` gives its emulated time
    (default: now), ``lock`` guards it against the thread that steps it."""
    with _REGISTRY_LOCK:
        _CITIES[name] = _Attached(
            city, lock or threading.Lock(), clock or (lambda: datetime.now(UTC))
        )


def detach_city(name: str) -> None:
    """Forget the city attached under ``name`` (idempotent)."""
    with _REGISTRY_LOCK:
        _CITIES.pop(name, None)


class EmulatedActuator(Actuator):
    """Applies each task to an attached :class:`LiveCity` and answers like its MQTT runner."""

    kind: ClassVar[str] = "emulated"
    acknowledges: ClassVar[bool] = True

    def __init__(self, name: str, id: str, *, on_ack: AckCallback | None = None) -> None:
        super().__init__(id, on_ack=on_ack)
        with _REGISTRY_LOCK:
            attached = _CITIES.get(name)
        if attached is None:
            known = ", ".join(sorted(_CITIES)) or "none"
            raise ConfigurationError(
                f"actuator {id!r}: no live city attached as {name!r} (attached: {known})"
            )
        self.city, self._lock, self._clock = attached

    @classmethod
    def from_url(cls, url: str, *, on_ack: AckCallback | None = None) -> Self:
        """``emulated://<city name>?id=<actuator id>``."""
        parts = urlsplit(url)
        ids = parse_qs(parts.query).get("id", [])
        if not parts.netloc or not ids:
            raise ConfigurationError(f"actuator URL {url!r}: expected emulated://<city>?id=<id>")
        return cls(parts.netloc, ids[-1], on_ack=on_ack)

    def send(self, task: Task) -> None:
        with self._lock:
            ok, detail = self.city.apply(task.payload(), at=self._clock(), actuator=self.id)
        logger.info("actuator %s: task %s -> %s (%s)", self.id, task.id, ok, detail)
        if self.on_ack is None:
            return
        if ok:
            self.on_ack(task.id, True, "received")
        self.on_ack(task.id, ok, detail, done=True)
