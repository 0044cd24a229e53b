"""One load-test run: start the topology, register, publish, measure, count, compare with COPY.

:func:`run_load` is what ``bench/load.py`` and ``tests/bench/test_load_smoke.py`` run; it returns
a :class:`LoadResult` and prints progress only (the report is ``_load_report.py``'s).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import os
import queue
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from _load_city import PERIOD, SIM_EPOCH, observations_per_round
from _load_probe import LatencyProber, MemorySampler, MemorySeries, memory_trend
from _load_publish import PublishPlan, RoundReport, run_publisher
from _load_services import Topology, connect_store
from _proc import HOST

DRAIN_TIMEOUT_S = 600.0
PROBE_GIVE_UP_S = 120.0  # a sample not readable this long after its publish counts as unseen
BASELINE_ROWS = 2_000_000
WARM_UP_S = 120.0  # memory after this long counts for the trend (quick runs: a third)


@dataclass
class LoadResult:
    """Everything a run measured; see ``bench/load.py`` for what each figure means."""

    sensors: int
    per_round: int
    rate: float | None
    registration_s: float = 0.0
    datastreams: int = 0
    rounds: int = 0
    throttled_rounds: int = 0
    publish_s: float = 0.0
    ingest_s: float = 0.0
    offered_obs_s: float = 0.0
    ingested_obs_s: float = 0.0
    compression: float = 0.0
    latency_p50_s: float = float("nan")
    latency_p95_s: float = float("nan")
    latency_max_s: float = float("nan")
    samples: int = 0
    latencies_s: list[float] = field(default_factory=list)  # every sample seen, sorted
    # (s since the first timed round, latency s) of each sample seen, in publish order
    latency_series: list[tuple[float, float]] = field(default_factory=list)
    round_starts_s: list[float] = field(default_factory=list)  # s since the first timed round
    unseen: int = 0
    probe_errors: list[str] = field(default_factory=list)  # the first few
    probe_error_count: int = 0
    memory: MemorySeries | None = None
    memory_trend: dict[str, tuple[float, float]] = field(default_factory=dict)
    warm_up_s: float = WARM_UP_S
    timed_from_s: float = 0.0  # when the timed run began, on the memory series' time axis
    published: int = 0
    stored: int = 0
    lost: int = 0
    extra: int = 0
    duplicates: int = 0
    quarantined: int = 0
    ingest_summary: dict[str, int] = field(default_factory=dict)
    baseline_rows: int = 0
    baseline_obs_s: float = 0.0
    load_average: tuple[float, float] = (0.0, 0.0)  # the machine's 1-minute load, start and end


def _mosquitto_pid(config_dir: Path) -> int:
    """The pid of the mosquitto whose configuration lives in ``config_dir``."""
    wanted = str(config_dir / "mosquitto.conf")
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                command = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if wanted.encode() in command:
                return int(entry)
    raise RuntimeError(f"no mosquitto process runs {wanted}")


def _count(connection: psycopg.Connection[tuple[Any, ...]], sql: str) -> int:
    row = connection.execute(sql).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _wait_registered(topology: Topology, per_round: int, started: float) -> tuple[float, int]:
    """Wait until round 0 is stored whole; (seconds from its first publish, datastreams)."""
    with topology.connect() as connection:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while _count(connection, "SELECT count(*) FROM observations") < per_round:
            if time.monotonic() > deadline:
                raise RuntimeError("round 0 (registration) was not stored within 10 minutes")
            time.sleep(0.1)
        elapsed = time.time() - started
        return elapsed, _count(connection, "SELECT count(*) FROM datastreams")


def _wait_drained(topology: Topology, rounds: int, per_round: int) -> float:
    """Wait until the last round's observations are all stored; the wall time when they were."""
    last = SIM_EPOCH + rounds * PERIOD
    sql = f"SELECT count(*) FROM observations WHERE phenomenon_time = '{last:%Y-%m-%d %H:%M:%S}'"
    with topology.connect() as connection:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while _count(connection, sql) < per_round and time.monotonic() < deadline:
            time.sleep(0.05)
        return time.time()


def _count_rounds(topology: Topology, rounds: int, per_round: int) -> tuple[int, int, int]:
    """(stored, lost, extra) over rounds 0..``rounds`` from PostgreSQL's own count per time."""
    with topology.connect() as connection:
        rows = connection.execute(
            "SELECT phenomenon_time, count(*) FROM observations GROUP BY 1"
        ).fetchall()
    expected = {SIM_EPOCH.replace(tzinfo=None) + k * PERIOD for k in range(rounds + 1)}
    counts: dict[object, int] = {moment: int(n) for moment, n in rows}
    stored = sum(counts.values())
    lost = sum(max(0, per_round - counts.get(moment, 0)) for moment in expected)
    extra = sum(n for moment, n in counts.items() if moment not in expected) + sum(
        max(0, counts.get(moment, 0) - per_round) for moment in expected
    )
    return stored, lost, extra


def copy_baseline(store_url: str, *, limit: int = BASELINE_ROWS) -> tuple[int, float]:
    """COPY (binary) up to ``limit`` stored observations into a plain unindexed table on the
    same server; (rows, seconds of the COPY in)."""
    with connect_store(store_url) as connection:
        data = bytearray()
        out = "COPY (SELECT datastream_id, phenomenon_time, result, quality FROM observations"
        with connection.cursor().copy(f"{out} LIMIT {int(limit)}) TO STDOUT (FORMAT BINARY)") as c:
            for chunk in c:
                data += chunk
        connection.execute(
            "CREATE TABLE load_baseline (datastream_id bigint NOT NULL, phenomenon_time "
            "timestamp NOT NULL, result double precision, quality integer NOT NULL DEFAULT 0)"
        )
        started = time.perf_counter()
        with connection.cursor().copy("COPY load_baseline FROM STDIN (FORMAT BINARY)") as c:
            c.write(bytes(data))
        elapsed = time.perf_counter() - started
        rows = _count(connection, "SELECT count(*) FROM load_baseline")
        connection.execute("DROP TABLE load_baseline")
    return rows, elapsed


def _publish_and_probe(
    topology: Topology, plan: PublishPlan, result: LoadResult, sampler: MemorySampler
) -> tuple[list[RoundReport], LatencyProber, float]:
    """Run the publisher process; probe every sample; return its rounds, the prober and when
    the last round was stored."""
    context = multiprocessing.get_context("spawn")
    reports: multiprocessing.queues.Queue[RoundReport | None] = context.Queue()
    go, stop = context.Event(), context.Event()
    publisher = context.Process(target=run_publisher, args=(plan, reports, go, stop), daemon=True)
    publisher.start()
    assert publisher.pid is not None
    sampler.groups["publisher"] = publisher.pid
    sampler.series.groups = tuple(sampler.groups)
    sampler.start()
    try:
        first = reports.get(timeout=DRAIN_TIMEOUT_S)
        assert first is not None, "the publisher ended before round 0"
        result.registration_s, result.datastreams = _wait_registered(
            topology, result.per_round, first.started
        )
        print(f"registered {result.datastreams:,} datastreams in {result.registration_s:.1f} s")
        prober = LatencyProber(HOST, topology.server_port, give_up_s=PROBE_GIVE_UP_S)
        result.timed_from_s = sampler.elapsed()
        go.set()
        timed: list[RoundReport] = []
        while (report := reports.get(timeout=plan.duration_s + DRAIN_TIMEOUT_S)) is not None:
            timed.append(report)
            for stream, _, published in report.samples:
                prober.submit(stream, report.time_us, published)
            if report.number % 10 == 0:
                print(f"  round {report.number} published", flush=True)
        publisher.join(60)
    except (queue.Empty, BaseException):
        stop.set()
        publisher.join(30)
        raise
    drained = _wait_drained(topology, len(timed), result.per_round)
    return timed, prober, drained


def run_load(
    plan: PublishPlan,
    *,
    sample_every_s: float = 10.0,
    keep: bool = False,
    postgres_url: str | None = None,
) -> LoadResult:
    """Start everything, register the devices, publish for ``plan.duration_s``, measure, count
    (on a fresh schema of ``postgres_url`` if given, else on a PostgreSQL of its own)."""
    per_round = observations_per_round(plan.sensors)
    result = LoadResult(plan.sensors, per_round, plan.rate)
    result.warm_up_s = min(WARM_UP_S, plan.duration_s / 3)
    start_load = os.getloadavg()[0]
    with Topology(keep=keep, postgres_url=postgres_url) as topology:
        assert topology.ingest is not None
        assert topology.server is not None
        plan = replace(plan, broker_url=topology.broker.url, store_url=topology.store_url)
        pids = {
            "ingest": topology.ingest.pid,
            "server": topology.server.pid,
            "mosquitto": _mosquitto_pid(topology.broker.directory),
        }
        postmaster = topology.postmaster_pid()
        groups = {"postgres": postmaster} if postmaster else {}  # + the publisher, once started
        sampler = MemorySampler(pids, groups=groups, interval_s=sample_every_s)
        timed, prober, drained = _publish_and_probe(topology, plan, result, sampler)
        prober.finish()
        result.memory = sampler.stop()
        result.load_average = (start_load, os.getloadavg()[0])
        result.ingest_summary = topology.stop_ingest()
        result.stored, result.lost, result.extra = _count_rounds(topology, len(timed), per_round)
        result.baseline_rows, seconds = copy_baseline(topology.store_url)
        result.baseline_obs_s = result.baseline_rows / seconds if seconds else 0.0
        if keep:
            print(f"scratch kept in {topology.scratch}")
    _summarise(result, timed, prober, drained)
    return result


def _summarise(
    result: LoadResult, timed: list[RoundReport], prober: LatencyProber, drained: float
) -> None:
    result.rounds = len(timed)
    result.published = (len(timed) + 1) * result.per_round
    result.throttled_rounds = sum(r.throttled for r in timed)
    if timed:
        result.publish_s = timed[-1].finished - timed[0].started
        result.ingest_s = drained - timed[0].started
        timed_obs = len(timed) * result.per_round
        result.offered_obs_s = timed_obs / result.publish_s if result.publish_s else 0.0
        result.ingested_obs_s = timed_obs / result.ingest_s if result.ingest_s else 0.0
        result.compression = len(timed) * PERIOD.total_seconds() / result.ingest_s
    latencies = prober.latencies()
    result.latencies_s = sorted(latencies.tolist())
    if timed:
        origin = timed[0].started
        result.round_starts_s = [r.started - origin for r in timed]
        result.latency_series = [
            (p.published - origin, p.latency_s) for p in prober.probes if p.latency_s is not None
        ]
    result.samples, result.unseen = len(prober.probes), prober.unseen
    result.probe_errors = prober.errors
    result.probe_error_count = prober.error_count
    if latencies.size:
        p50, p95 = np.percentile(latencies, [50, 95])
        result.latency_p50_s, result.latency_p95_s = float(p50), float(p95)
        result.latency_max_s = float(latencies.max())
    result.duplicates = result.ingest_summary.get("duplicates", 0)
    result.quarantined = result.ingest_summary.get("quarantined", 0)
    if result.memory is not None:
        for column, name in enumerate(result.memory.names):
            rss = [row[column] for row in result.memory.rss]
            result.memory_trend[name] = memory_trend(
                result.memory.times, rss, after_s=result.timed_from_s + result.warm_up_s
            )
