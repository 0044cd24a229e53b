"""Alerts: what the control loop tells people, and where it tells them.

An :class:`Alert` is one sentence for a person plus the facts behind it (rule, scope, task). The
controller keeps the latest alerts in memory (the API and the dashboard read them), writes each to
the log, and hands each to its sinks: :class:`WebhookSink` posts it as JSON (stdlib HTTP, in a
background thread, so a slow receiver never stalls the control loop), and the server adds a sink
that publishes it on the bus (``alerts/<kind>``) for WebSocket clients.

Kinds: ``fired``/``cleared`` (a rule's alarm), ``approval_needed``, ``check_failed`` (the
simulate-before-act check refused a task), ``rate_limited``, ``unroutable`` (no actuator entry
matches), ``task_failed``, ``task_expired``, ``dry_run`` (what would have been sent),
``scenario``, ``override``.

>>> alert = Alert.now("fired", "PM2.5 80 µg/m³ in 1111051", rule="pm", scope="1111051")
>>> alert.to_dict()["kind"], alert.to_dict()["rule"]
('fired', 'pm')
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

logger = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 5.0
_LEVELS = {
    "task_failed": logging.ERROR,
    "task_expired": logging.ERROR,
    "check_failed": logging.WARNING,
}


@dataclass(frozen=True, slots=True)
class Alert:
    """One message for people, with what it is about."""

    at: datetime
    kind: str
    message: str
    rule: str | None = None
    scope: str | None = None
    task_id: str | None = None

    @classmethod
    def now(cls, kind: str, message: str, **about: str | None) -> Alert:
        return cls(datetime.now(UTC), kind, message, **about)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON (time as ISO 8601 UTC)."""
        return {**asdict(self), "at": self.at.isoformat()}


AlertSink = Callable[[Alert], None]


def log_alert(alert: Alert) -> None:
    """The default sink: one log line, at a level that fits the kind."""
    logger.log(_LEVELS.get(alert.kind, logging.INFO), "alert %s: %s", alert.kind, alert.message)


class WebhookSink:
    """POST every alert as JSON to ``url`` from a background thread; failures are logged.

    The queue is bounded: when the receiver is down for long, the oldest undelivered alerts are
    dropped with a warning rather than growing memory without end.
    """

    def __init__(self, url: str, *, maxsize: int = 1000) -> None:
        self.url = url
        self._queue: queue.Queue[Alert | None] = queue.Queue(maxsize)
        self._thread = threading.Thread(target=self._run, name="citytwin-webhook", daemon=True)
        self._thread.start()

    def __call__(self, alert: Alert) -> None:
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            logger.warning("webhook %s: queue full; alert dropped: %s", self.url, alert.message)

    def _run(self) -> None:
        while (alert := self._queue.get()) is not None:
            body = json.dumps(alert.to_dict(), ensure_ascii=False).encode()
            request = urllib.request.Request(
                self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
                    response.read()
            except (urllib.error.URLError, OSError) as exc:
                logger.warning("webhook %s: alert not delivered: %s", self.url, exc)

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (up to ``timeout_s``), then stop."""
        self._queue.put(None)
        self._thread.join(timeout_s)
