"""What the load test measures while it runs: ingest-to-queryable latency and process memory.

Latency: for each sampled observation, a worker asks the server, as a dashboard would,
``GET /v1.1/Datastreams(id)/Observations?$orderby=phenomenonTime desc&$top=1`` every
``poll_s`` until the answer carries the sampled phenomenon time (or a later one); the latency is
that moment minus the wall time the message was handed to the MQTT client. The resolution is
the polling period (50 ms by default: a few requests/s per sample, not enough to load the server).

Memory: :class:`MemorySampler` reads the resident set size of each named process every
``interval_s`` (the series the report prints, with its slope after warm-up).
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from _load_services import rss_mb
from _proc import cpu_seconds

MAX_ERRORS_KEPT = 20
GIVE_UP_AFTER_ERRORS = 20  # a probe that fails this many times in a row stops (counted unseen)
PATH = (
    "/v1.1/Datastreams({stream})/Observations"
    "?$orderby=phenomenonTime%20desc&$top=1&$select=phenomenonTime"
)


@dataclass
class Probe:
    """One sampled observation and what became of it."""

    stream: int
    time_us: int
    published: float
    latency_s: float | None = None
    requests: int = 0


def _latest_us(body: bytes) -> int | None:
    values = json.loads(body).get("value") or []
    if not values:
        return None
    moment = datetime.fromisoformat(values[0]["phenomenonTime"].split("/")[-1])
    return int(moment.astimezone(UTC).timestamp() * 1_000_000)


class LatencyProber:
    """Polls the server for sampled observations on ``workers`` keep-alive connections."""

    def __init__(
        self, host: str, port: int, *, workers: int = 6, poll_s: float = 0.05, give_up_s: float
    ) -> None:
        self.host, self.port = host, port
        self.poll_s, self.give_up_s = poll_s, give_up_s
        self.probes: list[Probe] = []
        self.errors: list[str] = []  # the first MAX_ERRORS_KEPT
        self.error_count = 0
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="load-probe")
        self._futures: list[Future[None]] = []
        self._connections: list[http.client.HTTPConnection] = []

    def submit(self, stream: int, time_us: int, published: float) -> None:
        probe = Probe(stream, time_us, published)
        self.probes.append(probe)
        self._futures.append(self._pool.submit(self._run, probe))

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = http.client.HTTPConnection(
                self.host, self.port, timeout=30
            )
            self._connections.append(connection)
        return connection

    def _get(self, path: str) -> tuple[int, bytes]:
        connection = self._connection()
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            connection.close()  # reconnects on the next request
            raise

    def _error(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(message)

    def _run(self, probe: Probe) -> None:
        path = PATH.format(stream=probe.stream)
        deadline = probe.published + self.give_up_s
        failures = 0
        while time.time() < deadline and failures < GIVE_UP_AFTER_ERRORS:
            try:
                status, body = self._get(path)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                continue  # the server closed an idle keep-alive connection: ask again at once
            except (OSError, http.client.HTTPException) as exc:
                failures += 1
                self._error(f"{path}: {exc}")
                time.sleep(self.poll_s)
                continue
            probe.requests += 1
            if status == 200:
                failures = 0
                latest = _latest_us(body)
                if latest is not None and latest >= probe.time_us:
                    probe.latency_s = time.time() - probe.published
                    return
            elif status != 404:  # 404: the datastream is not registered yet
                failures += 1
                self._error(f"{path}: HTTP {status} {body[:200]!r}")
            time.sleep(self.poll_s)

    def finish(self) -> None:
        """Wait for every probe (each ends when seen or after ``give_up_s``)."""
        for future in self._futures:
            future.result()
        self._pool.shutdown()
        for connection in self._connections:
            connection.close()

    def latencies(self) -> np.ndarray[tuple[int], np.dtype[np.float64]]:
        return np.array([p.latency_s for p in self.probes if p.latency_s is not None], np.float64)

    @property
    def unseen(self) -> int:
        return sum(p.latency_s is None for p in self.probes)


@dataclass
class MemorySeries:
    """RSS (MiB) and CPU seconds of each process at each sample time (s since start)."""

    names: tuple[str, ...]
    groups: tuple[str, ...] = ()  # CPU only, after the names' columns
    times: list[float] = field(default_factory=list)
    rss: list[list[float]] = field(default_factory=list)
    cpu: list[list[float]] = field(default_factory=list)


def children(parent: int) -> list[int]:
    """``parent`` and its direct children (a PostgreSQL server's backends)."""
    found = [parent]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry))
    return found


def group_cpu_seconds(parent: int) -> float:
    """CPU seconds of ``parent`` and its children alive now (backends that ended are missed);
    NaN once ``parent`` is gone."""
    if not Path(f"/proc/{parent}").exists():
        return float("nan")
    total = 0.0
    for pid in children(parent):
        with suppress(OSError):
            total += cpu_seconds(pid)
    return total


class MemorySampler:
    """A thread sampling ``/proc`` every ``interval_s``: memory and CPU of each of ``pids``
    (name → pid), CPU only of each process group in ``groups`` (name → parent pid)."""

    def __init__(
        self,
        pids: dict[str, int],
        *,
        groups: dict[str, int] | None = None,
        interval_s: float = 10.0,
    ) -> None:
        self.pids = pids
        self.groups = groups or {}
        self.interval_s = interval_s
        self.series = MemorySeries(tuple(pids), tuple(self.groups))
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-memory", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def elapsed(self) -> float:
        """Seconds since the sampler was made (the time axis of the series)."""
        return time.monotonic() - self._start

    def sample(self) -> None:
        rss, cpu = [], []
        for pid in self.pids.values():
            try:
                rss.append(rss_mb(pid))
                cpu.append(cpu_seconds(pid))
            except OSError:  # the process is gone
                rss.append(float("nan"))
                cpu.append(float("nan"))
        for parent in self.groups.values():
            cpu.append(group_cpu_seconds(parent))
        self.series.times.append(time.monotonic() - self._start)
        self.series.rss.append(rss)
        self.series.cpu.append(cpu)

    def _run(self) -> None:
        self.sample()
        while not self._stop.wait(self.interval_s):
            self.sample()

    def stop(self) -> MemorySeries:
        self._stop.set()
        self._thread.join()
        self.sample()
        return self.series


def memory_trend(times: list[float], rss: list[float], *, after_s: float) -> tuple[float, float]:
    """Growth after warm-up: (MiB per minute from a least-squares line, % from the first sample
    after ``after_s`` to the last).

    >>> memory_trend([0, 60, 120, 180], [50, 100, 100, 101], after_s=60)
    (0.5, 1.0)
    """
    t = np.asarray(times, np.float64)
    r = np.asarray(rss, np.float64)
    keep = (t >= after_s) & np.isfinite(r)
    if keep.sum() < 2:
        return float("nan"), float("nan")
    slope = float(np.polyfit(t[keep] / 60.0, r[keep], 1)[0])
    first, last = r[keep][0], r[keep][-1]
    return round(slope, 3), round(float((last - first) / first * 100.0), 3)
