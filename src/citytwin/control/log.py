"""The logging fake actuator: records and logs every delivery, acknowledges as told.

``ack`` selects the behaviour tests need to drive the task life cycle:

- ``"always"`` — acknowledge every delivery at once (the happy path);
- ``"never"`` — never answer (drives retries, then expiry);
- ``"reject"`` — answer every delivery with a negative acknowledgement;
- an integer *n* — stay silent for the first *n - 1* deliveries of a task, acknowledge the *n*-th.

>>> acks = []
>>> actuator = LogActuator("pump-1", ack=2, on_ack=lambda *answer: acks.append(answer))
>>> actuator.ack_mode
2
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import ClassVar, Literal, Self
from urllib.parse import parse_qs, urlparse

from citytwin.control.base import AckCallback, Actuator
from citytwin.control.tasks import Task
from citytwin.errors import ConfigurationError

logger = logging.getLogger(__name__)

AckMode = Literal["always", "never", "reject"] | int


class LogActuator(Actuator):
    """Records each delivered payload in :attr:`sent` and logs it; never touches a device."""

    kind: ClassVar[str] = "log"
    acknowledges: ClassVar[bool] = True

    def __init__(
        self, id: str = "log", *, ack: AckMode = "always", on_ack: AckCallback | None = None
    ) -> None:
        super().__init__(id, on_ack=on_ack)
        self.ack_mode = _check_mode(ack, where=f"actuator {id!r}")
        self.sent: list[dict[str, object]] = []
        self._deliveries: Counter[str] = Counter()

    @classmethod
    def from_url(cls, url: str, *, on_ack: AckCallback | None = None) -> Self:
        """``log://name?ack=always|never|reject|N`` (``?id=`` names it when the name is no host)."""
        parts = urlparse(url)
        query = parse_qs(parts.query)
        raw = query.get("ack", ["always"])[-1]
        ack = _check_mode(int(raw) if raw.isdigit() else raw, where=url)
        return cls(query.get("id", [parts.netloc or "log"])[-1], ack=ack, on_ack=on_ack)

    def send(self, task: Task) -> None:
        """Record the payload, log it, and acknowledge according to :attr:`ack_mode`."""
        payload = task.payload()
        self.sent.append(payload)
        self._deliveries[task.id] += 1
        logger.info("actuator %s: deliver %s", self.id, payload)
        answer = self._answer(self._deliveries[task.id])
        if answer is not None and self.on_ack is not None:
            self.on_ack(task.id, answer, f"{self.id}: {'ok' if answer else 'refused'}")

    def _answer(self, delivery: int) -> bool | None:
        if self.ack_mode == "always":
            return True
        if self.ack_mode == "reject":
            return False
        if isinstance(self.ack_mode, int) and delivery >= self.ack_mode:
            return True
        return None


def _check_mode(ack: object, *, where: str) -> AckMode:
    if ack == "always" or ack == "never" or ack == "reject":
        return ack
    if isinstance(ack, int) and not isinstance(ack, bool) and ack >= 1:
        return ack
    expected = "'always', 'never', 'reject' or an integer N >= 1"
    raise ConfigurationError(f"{where}: ack={ack!r}; expected {expected}")
