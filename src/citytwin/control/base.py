"""The actuator contract: deliver a task to a device, report acknowledgements back.

An actuator is the SensorThings *Actuator* behind a *TaskingCapability* (OGC 17-079r1). It only
delivers: the task's life cycle stays in :class:`~citytwin.control.tasks.TaskBook`. Delivery must
not block long (publish and return); an acknowledgement arrives later through the ``on_ack``
callback the actuator was given, as ``on_ack(task_id, ok, detail)``. Record the move first
(``TaskBook.mark_sent`` or ``TaskBook.due_retries``), then call :meth:`Actuator.send`: a fast
actuator may acknowledge before ``send`` returns.

Actuators are chosen by URL through a lazy registry: ``log://name?ack=never`` (the fake),
``mqtt://host:port/topic-prefix?id=name`` (the MQTT actuator, :mod:`citytwin.control.mqtt_`) and
``emulated://city?id=name`` (a live city emulator in this process, :mod:`.emulated`).
An unknown scheme lists the valid ones.

>>> with open_actuator("log://pump-1?ack=always") as actuator:
...     actuator.id, actuator.kind, actuator.acknowledges
('pump-1', 'log', True)
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from types import TracebackType
from typing import ClassVar, Protocol, Self
from urllib.parse import urlparse

from citytwin.control.tasks import Task
from citytwin.errors import UnknownBackendError


class AckCallback(Protocol):
    """``on_ack(task_id, ok, detail, done=False)``: an actuator's answer to one task.

    ``done`` marks the final report (the action is finished: the task is done or failed);
    without it a positive answer only acknowledges receipt.
    """

    def __call__(self, task_id: str, ok: bool, detail: str, /, done: bool = False) -> None: ...


# scheme -> "module:Class"; imported only when asked for, so no client connects at import time
ACTUATORS: dict[str, str] = {
    "log": "citytwin.control.log:LogActuator",
    "mqtt": "citytwin.control.mqtt_:MqttActuator",
    "emulated": "citytwin.control.emulated:EmulatedActuator",
}


class Actuator(ABC):
    """The contract. Implementations: ``log://`` (the fake) and ``mqtt://`` (MQTT, QoS 1)."""

    kind: ClassVar[str]
    acknowledges: ClassVar[bool] = False  # reports acknowledgements through on_ack

    def __init__(self, id: str, *, on_ack: AckCallback | None = None) -> None:
        self.id = id
        self.on_ack = on_ack

    @classmethod
    @abstractmethod
    def from_url(cls, url: str, *, on_ack: AckCallback | None = None) -> Self:
        """Open the actuator a URL names (the registry calls this)."""

    @abstractmethod
    def send(self, task: Task) -> None:
        """Deliver one attempt of ``task`` (its :meth:`~Task.payload`); return quickly."""

    def close(self) -> None:  # noqa: B027 - most actuators hold nothing to release
        """Release connections. Idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def open_actuator(url: str, *, on_ack: AckCallback | None = None) -> Actuator:
    """Open the actuator a URL names, e.g. ``log://name?ack=never``."""
    scheme = urlparse(url).scheme
    try:
        target = ACTUATORS[scheme]
    except KeyError:
        raise UnknownBackendError("actuator scheme", scheme or url, list(ACTUATORS)) from None
    module_name, class_name = target.split(":")
    cls: type[Actuator] = getattr(importlib.import_module(module_name), class_name)
    return cls.from_url(url, on_ack=on_ack)
