"""Buses, chosen by name through a lazy registry (argument > embedded default).

>>> with open_bus("memory") as bus:
...     type(bus).__name__
'InProcessBus'
"""

from __future__ import annotations

import importlib

from citytwin.bus.base import (
    OBSERVATIONS,
    Bus,
    Message,
    Subscription,
    observations_topic,
    topic_matches,
)
from citytwin.errors import UnknownBackendError

DEFAULT_BUS = "memory"

# name -> "module:Class"; imported only when asked for, so no client connects at import time
BUSES: dict[str, str] = {
    "memory": "citytwin.bus.memory:InProcessBus",
}


def open_bus(name: str | None = None) -> Bus:
    """Open the bus a name selects; an unknown name lists the valid ones."""
    name = name or DEFAULT_BUS
    try:
        target = BUSES[name]
    except KeyError:
        raise UnknownBackendError("bus", name, list(BUSES)) from None
    module_name, class_name = target.split(":")
    cls: type[Bus] = getattr(importlib.import_module(module_name), class_name)
    return cls()


__all__ = [
    "BUSES",
    "OBSERVATIONS",
    "Bus",
    "Message",
    "Subscription",
    "observations_topic",
    "open_bus",
    "topic_matches",
]
