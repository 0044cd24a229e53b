"""``InProcessBus``: the embedded default and the fake, for one process (no broker needed).

Publishing is thread-safe and never blocks: the ingest pipeline publishes from worker threads,
subscribers consume in an asyncio event loop.

How a message crosses from a thread to the loop: each subscription keeps a bounded deque behind a
``threading.Lock``; ``publish`` appends under the lock and, only when no wake-up is pending yet,
schedules one with ``loop.call_soon_threadsafe``. So a burst of publishes costs one loop callback,
and memory stays bounded even while the loop is busy.

Overflow policy — **drop-oldest, counted**: when a subscriber's queue is full, the oldest queued
message is discarded and :attr:`MemorySubscription.dropped` grows by one. A live view prefers the
newest state, and the ingest must never wait for a slow browser. Nothing is lost for good: every
observation is in the store, which a consumer that sees ``dropped`` grow can re-read.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from typing import ClassVar

from citytwin.bus.base import Bus, Message, Subscription, check_pattern, topic_matches

logger = logging.getLogger(__name__)

DEFAULT_MAXSIZE = 256


class MemorySubscription(Subscription):
    """One subscriber's bounded queue, bound to the event loop it was created in."""

    def __init__(
        self, bus: InProcessBus, pattern: str, loop: asyncio.AbstractEventLoop, maxsize: int
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.pattern = pattern
        self.maxsize = maxsize
        self._bus = bus
        self._loop = loop
        self._queue: deque[tuple[str, Message]] = deque()
        self._lock = threading.Lock()
        self._ready = asyncio.Event()
        self._wake_pending = False
        self._closed = False
        self._dropped = 0

    @property
    def dropped(self) -> int:
        return self._dropped

    def offer(self, topic: str, message: Message) -> None:
        """Queue a message (any thread); drop the oldest when full."""
        with self._lock:
            if self._closed:
                return
            if len(self._queue) >= self.maxsize:
                self._queue.popleft()
                self._dropped += 1
            self._queue.append((topic, message))
        self._schedule_wake()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._bus.forget(self)
        self._schedule_wake()

    async def __anext__(self) -> tuple[str, Message]:
        while True:
            with self._lock:
                if self._queue:
                    return self._queue.popleft()
                if self._closed:
                    raise StopAsyncIteration
                self._ready.clear()
            await self._ready.wait()

    def _schedule_wake(self) -> None:
        with self._lock:
            if self._wake_pending:
                return
            self._wake_pending = True
        try:
            self._loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the subscriber's loop is closed: nobody will read again
            with self._lock:
                self._closed = True
                self._queue.clear()
            self._bus.forget(self)

    def _wake(self) -> None:
        with self._lock:
            self._wake_pending = False
        self._ready.set()


class InProcessBus(Bus):
    """Delivers in-process to asyncio subscribers; see the module docstring for the policy.

    >>> bus = InProcessBus()
    >>> bus.publish("observations/sdot", {"note": "nobody listens yet"})  # a no-op, never blocks
    >>> bus.close()
    """

    name: ClassVar[str] = "memory"
    lossy: ClassVar[bool] = True

    def __init__(self, *, maxsize: int = DEFAULT_MAXSIZE) -> None:
        self.maxsize = maxsize
        self._subscriptions: list[MemorySubscription] = []
        self._lock = threading.Lock()
        self._closed = False

    def publish(self, topic: str, message: Message) -> None:
        with self._lock:
            targets = [s for s in self._subscriptions if topic_matches(s.pattern, topic)]
        for subscription in targets:
            subscription.offer(topic, message)

    def subscribe(self, pattern: str, *, maxsize: int | None = None) -> MemorySubscription:
        loop = asyncio.get_running_loop()
        subscription = MemorySubscription(
            self, check_pattern(pattern), loop, maxsize or self.maxsize
        )
        with self._lock:
            if self._closed:
                raise RuntimeError("the bus is closed")
            self._subscriptions.append(subscription)
        return subscription

    def forget(self, subscription: MemorySubscription) -> None:
        """Remove a closed subscription (its ``close`` calls this)."""
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            subscription.close()

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open (for tests and health checks)."""
        with self._lock:
            return len(self._subscriptions)
