"""The load test's device side: one process publishing every device's message, round by round.

Round 0 registers the devices (``citytwin ingest mqtt`` creates the Things, Locations and
Datastreams of devices it has not seen); the timed rounds follow once the driver sets ``go``.
Simulated time is compressed: round k carries phenomenon time ``SIM_EPOCH + 2 min × k`` and is
published when the pace allows —

- a fixed ``rate`` (observations/s offered): round k is due ``k × per_round / rate`` seconds after
  the first timed round (open loop: a slow ingest builds a queue in the broker), and its messages
  are spread evenly over that interval, as devices that are not synchronised report (``burst``
  sends each round at once instead);
- ``rate=None`` (auto): as fast as the ingest sustains — round k waits until round
  ``k − 1 − backlog`` is stored (its last message's datastream is read from PostgreSQL, an index
  lookup), so at most ``backlog`` rounds queue in the broker while the ingest works.

Either way a round also waits when ``max_backlog`` rounds are queued (a guard against filling the
broker's memory when a fixed rate is far above what the machine sustains); such waits are counted.
For latency, a few random (device, property) pairs per round are recorded with the wall time at
which their message was handed to the MQTT client.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import multiprocessing.synchronize
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from _load_city import (
    PERIOD,
    PROPERTIES,
    SIM_EPOCH,
    datastream_id,
    device_id,
    make_city,
    observations_per_round,
    round_messages,
)
from _load_services import connect_store
from citytwin.mqtt.publish import Publisher

CLIENT_ID = "citytwin-load-publisher"
WINDOW = 20_000  # paho's message ids wrap at 65,535: wait for PUBACKs every WINDOW messages
ACK_TIMEOUT_S = 300.0
PACE_EVERY = 50  # spread rounds: sleep until due every this many messages
SPREAD_SHARE = 0.95  # of a round's interval: the rest absorbs the wait for the last PUBACKs


@dataclass(frozen=True)
class PublishPlan:
    """What to publish and how fast (see the module docstring)."""

    broker_url: str
    store_url: str
    sensors: int
    duration_s: float
    rate: float | None = None
    backlog: int = 0
    max_backlog: int = 30
    samples_per_round: int = 3
    seed: int = 0
    burst: bool = False


@dataclass
class RoundReport:
    """One published round: when it went out and which messages were sampled for latency."""

    number: int
    time_us: int
    started: float
    finished: float
    messages: int
    throttled: bool
    samples: list[tuple[int, str, float]] = field(default_factory=list)  # (datastream, time)


def round_of(moment: datetime) -> int:
    """The round number of a phenomenon time."""
    return int((moment - SIM_EPOCH) // PERIOD)


class _StoredRounds:
    """The last round fully stored, read from PostgreSQL: the last device's last datastream
    (devices are published in order, so its message is the round's last)."""

    def __init__(self, plan: PublishPlan) -> None:
        self.connection = connect_store(plan.store_url)
        self.stream = datastream_id(device_id(plan.sensors - 1), PROPERTIES[-1])

    def last(self) -> int:
        row = self.connection.execute(
            "SELECT max(phenomenon_time) FROM observations WHERE datastream_id = %s",
            [self.stream],
        ).fetchone()
        if row is None or row[0] is None:
            return -1
        moment: datetime = row[0].replace(tzinfo=SIM_EPOCH.tzinfo)
        return round_of(moment)

    def wait_for(self, number: int, stop: multiprocessing.synchronize.Event) -> bool:
        """Wait until round ``number`` is stored; True if that took any waiting."""
        waited = False
        while self.last() < number and not stop.is_set():
            waited = True
            time.sleep(0.02)
        return waited


def _publish_round(
    publisher: Publisher,
    plan: PublishPlan,
    city: Any,
    number: int,
    rng: np.random.Generator,
    *,
    spread_s: float = 0.0,
) -> RoundReport:
    """Publish one round, its messages ``spread_s`` apart in all (0: as fast as possible)."""
    messages = round_messages(city, SIM_EPOCH, round_number=number, seed=plan.seed)
    sampled = {
        int(i): str(rng.choice(PROPERTIES))
        for i in rng.choice(
            len(messages), size=min(plan.samples_per_round, len(messages)), replace=False
        )
    }
    time_us = int((SIM_EPOCH + number * PERIOD).timestamp() * 1_000_000)
    report = RoundReport(number, time_us, time.time(), 0.0, len(messages), False)
    gap = spread_s / len(messages)
    for index, (topic, payload) in enumerate(messages):
        if gap and index % PACE_EVERY == 0:
            time.sleep(max(0.0, report.started + index * gap - time.time()))
        if index in sampled:
            stream = datastream_id(device_id(index), sampled[index])
            report.samples.append((stream, sampled[index], time.time()))
        publisher.publish(topic, payload)
        if (index + 1) % WINDOW == 0:
            publisher.wait_acked(ACK_TIMEOUT_S)
    publisher.wait_acked(ACK_TIMEOUT_S)
    report.finished = time.time()
    return report


def run_publisher(
    plan: PublishPlan,
    reports: multiprocessing.queues.Queue[RoundReport | None],
    go: multiprocessing.synchronize.Event,
    stop: multiprocessing.synchronize.Event,
) -> None:
    """Publish round 0, wait for ``go``, then timed rounds for ``plan.duration_s``; a ``None``
    on ``reports`` ends the stream."""
    city = make_city(plan.sensors, seed=plan.seed)
    rng = np.random.default_rng(plan.seed)
    stored = _StoredRounds(plan)
    per_round = observations_per_round(plan.sensors)
    spread_s = 0.0 if plan.rate is None or plan.burst else SPREAD_SHARE * per_round / plan.rate
    with Publisher(plan.broker_url, client_id=CLIENT_ID) as publisher:
        reports.put(_publish_round(publisher, plan, city, 0, rng))
        go.wait()
        first = time.time()
        number = 1
        while not stop.is_set() and time.time() - first < plan.duration_s:
            throttled = stored.wait_for(number - 1 - plan.max_backlog, stop)
            if plan.rate is None:
                stored.wait_for(number - 1 - plan.backlog, stop)
            else:
                due = first + (number - 1) * per_round / plan.rate
                stop.wait(max(0.0, due - time.time()))
            if stop.is_set() or time.time() - first >= plan.duration_s:
                break
            report = _publish_round(publisher, plan, city, number, rng, spread_s=spread_s)
            report.throttled = throttled
            reports.put(report)
            number += 1
    reports.put(None)
