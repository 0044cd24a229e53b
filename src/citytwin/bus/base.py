"""The bus contract: publish what was stored, let live consumers subscribe to it.

The ingest pipeline runs in worker threads and publishes synchronously; consumers (WebSocket
connections, the twin) read asynchronously. A bus therefore has a *sync* ``publish`` that must
never block on a slow consumer, and a ``subscribe`` that returns an async iterator bound to the
caller's event loop.

Topics are ``/``-separated levels (``observations/sdot``). Patterns follow MQTT, so the
in-process bus and a broker (mosquitto) agree: ``+`` matches one level, ``#`` (last) matches
any number of remaining levels, including none.

>>> topic_matches("observations/#", "observations/sdot")
True
>>> topic_matches("observations/+", "observations/sdot/raw")
False
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar, Self

from citytwin.store.base import ObservationFrame

# A frame of stored observations, or a small JSON-like message (commands, notices).
Message = ObservationFrame | Mapping[str, object]

OBSERVATIONS = "observations"


def observations_topic(feed: str) -> str:
    """The topic on which the pipeline announces observations stored from one feed."""
    return f"{OBSERVATIONS}/{feed}"


def check_pattern(pattern: str) -> str:
    """Validate an MQTT-style pattern: ``#`` only as the last level, wildcards alone in a level."""
    levels = pattern.split("/")
    for position, level in enumerate(levels):
        if ("#" in level or "+" in level) and len(level) != 1:
            raise ValueError(f"pattern {pattern!r}: level {level!r} mixes a wildcard with text")
        if level == "#" and position != len(levels) - 1:
            raise ValueError(f"pattern {pattern!r}: '#' must be the last level")
    return pattern


def topic_matches(pattern: str, topic: str) -> bool:
    """True when ``topic`` matches the MQTT-style ``pattern``."""
    wanted, levels = pattern.split("/"), topic.split("/")
    for position, level in enumerate(wanted):
        if level == "#":
            return True
        if position >= len(levels) or (level != "+" and level != levels[position]):
            return False
    return len(wanted) == len(levels)


class Subscription(ABC):
    """Messages matching one pattern, as an async iterator; ends when closed or the bus closes."""

    pattern: str

    @property
    @abstractmethod
    def dropped(self) -> int:
        """Messages lost to the overflow policy so far (0 for a lossless bus)."""

    @abstractmethod
    def close(self) -> None:
        """Stop receiving; the iterator ends after the messages already queued. Idempotent."""

    @abstractmethod
    async def __anext__(self) -> tuple[str, Message]:
        """The next (topic, message); waits for one."""

    def __aiter__(self) -> Self:
        return self


class Bus(ABC):
    """The contract. Implementations: ``memory`` (:class:`~citytwin.bus.memory.InProcessBus`)."""

    name: ClassVar[str]
    distributed: ClassVar[bool] = False  # reaches subscribers in other processes
    retains: ClassVar[bool] = False  # a new subscriber receives messages published before it
    lossy: ClassVar[bool] = False  # may drop messages for a slow subscriber (see ``dropped``)

    @abstractmethod
    def publish(self, topic: str, message: Message) -> None:
        """Deliver to every matching subscriber; callable from any thread, never blocks."""

    @abstractmethod
    def subscribe(self, pattern: str, *, maxsize: int | None = None) -> Subscription:
        """Subscribe from a running event loop; ``maxsize`` bounds this subscriber's queue."""

    @abstractmethod
    def close(self) -> None:
        """End every subscription and refuse further subscribers. Idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
