"""Retry a store call that met a lost server: bounded, with exponential backoff, logged.

A production store (PostgreSQL) can go away for a moment — a restart, a failover, an idle
timeout — and come back. Its call then fails with a
:class:`~citytwin.errors.StoreUnavailableError`; the store reconnects on its next call. Every write
the ingest makes is idempotent (an observation's identity is its datastream and phenomenon
time, entities are upserted, a quarantine write is one transaction), so the ingest simply makes
the same call again after a pause, up to :attr:`RetryPolicy.attempts` times, and then stops with
a :class:`StoreUnavailableError` naming the store and the batch. Any other error (a bad value, an
identity conflict, DuckDB's errors) is raised at once: retrying cannot fix it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from citytwin.config import redact
from citytwin.errors import StoreError, StoreUnavailableError
from citytwin.store.base import Store

logger = logging.getLogger(__name__)
R = TypeVar("R")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed store call is made again.

    The defaults wait 0.2, 0.4, 0.8, 1.6, 3.2, 5 and 5 s between eight tries (about 16 s in
    all): longer than a PostgreSQL restart or a managed failover's switch-over, short enough
    that an ingest facing a dead server fails within a minute.

    >>> list(RetryPolicy(attempts=4, backoff_min_s=0.5, backoff_max_s=1.5).delays())
    [0.5, 1.0, 1.5]
    """

    attempts: int = 8
    backoff_min_s: float = 0.2
    backoff_max_s: float = 5.0

    def delays(self) -> Iterator[float]:
        """The pauses before the second, third … try (``attempts - 1`` of them)."""
        delay = self.backoff_min_s
        for _ in range(max(self.attempts - 1, 0)):
            yield min(delay, self.backoff_max_s)
            delay *= 2


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is a store error that a later try may not meet (a lost server).

    >>> is_transient(StoreError("refused")), is_transient(StoreUnavailableError("gone"))
    (False, True)
    """
    return isinstance(error, StoreUnavailableError)


def store_name(store: Store) -> str:
    """The store's URL without its password (its class name when it has no URL)."""
    url = getattr(store, "url", None)
    return redact(url) if isinstance(url, str) else type(store).__name__


def call_with_retry(
    call: Callable[[], R],
    *,
    store: Store,
    what: str,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> R:
    """``call()``; after a transient store error, pause and call again, at most
    ``policy.attempts`` times in all. ``what`` names the work (the batch) in logs and errors.

    Raises
    ------
    StoreUnavailableError
        When the last try failed too; it names the store (password redacted), the work and the
        last error.
    """
    policy = policy or RetryPolicy()
    delays = policy.delays()
    for attempt in range(1, policy.attempts + 1):
        try:
            return call()
        except StoreError as exc:
            if not is_transient(exc):
                raise
            delay = next(delays, None)
            if delay is None:
                raise StoreUnavailableError(
                    f"store {store_name(store)} still unavailable after {attempt} tries "
                    f"(about {_total(policy):.0f} s) while {what}: {exc}; nothing of this "
                    "batch is lost — run the same ingest again once the store is back, it "
                    "skips what is already stored"
                ) from exc
            logger.warning(
                "store %s failed while %s (try %d of %d): %s; retrying in %.1f s",
                store_name(store), what, attempt, policy.attempts, exc, delay,
            )  # fmt: skip
            sleep(delay)
    raise StoreUnavailableError(f"store {store_name(store)}: no try allowed while {what}")


def _total(policy: RetryPolicy) -> float:
    return sum(policy.delays())
