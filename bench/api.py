"""HTTP benchmarks of the SensorThings API against a real uvicorn server, each with a baseline.

Every server runs in its own process (``bench/_server.py``: 127.0.0.1, one uvicorn worker,
asyncio loop, h11, no access log) over a DuckDB file store; the load comes from a lean asyncio
HTTP/1.1 client with keep-alive connections in this process. Request bodies are encoded before
the clock starts: the figures are the server's, not the client's JSON encoder's.

1. **dataArray ingest** (goal ≥ 50,000 obs/s): ``POST /v1.1/CreateObservations`` (OGC 18-088
   §14.3) carrying ``--observations`` rows for ``--datastreams`` datastreams created beforehand by
   POST, ``--batch`` rows per request in blocks of ``--rows-per-block`` rows per datastream, from
   ``--connections`` concurrent connections. Baseline: the same batches as ``ObservationFrame``s
   through ``store.write_observations`` in-process on a fresh DuckDB file (what HTTP + JSON +
   validation cost on top of the store). The stored count must equal what was sent (exit 1 if
   not: correctness, not timing).
2. **single-Observation POST** (goal ratio ≥ 0.5): ``--posts`` ``POST
   /v1.1/Datastreams(id)/Observations`` with distinct phenomenonTimes, once per count of
   ``--post-connections`` keep-alive connections (8 and 32 by default: the server writes all
   requests waiting at a time in one transaction, so how many clients post at once matters), in
   requests/s. Baseline: a bare FastAPI app with one ``POST /echo`` route that parses the same
   JSON body and answers 201, on the same uvicorn settings, driven by the same client. Every
   answer must be a 201 (exit 1 if not).
3. **latest-state query** (goal p95 ≤ 20 ms): a store with ``--latest-datastreams`` datastreams
   (registered through ``store.register``) and ``--per-datastream`` observations each; then
   ``--queries`` sequential ``GET /v1.1/Datastreams(id)/Observations?$top=1&$orderby=phenomenonTime
   desc`` for random datastreams, p50/p95/p99 latency. Baseline: ``store.latest([id])`` in-process
   on the same store file for the same ids. Every answer must match the baseline's (exit 1 if not).

Throughputs are the best of ``--repeat`` runs; latencies are over all queries after a warm-up.
Server CPU is read from ``/proc`` to show whether the server (not the client) is saturated.
Results go to ``bench/out/api.json``; ``--quick`` is a smoke run of a few seconds.

Usage: ``python bench/api.py [--quick] [--observations 500000] [--latest-datastreams 100000]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from _server import Response, Server, request_bytes, run_server, send_all
from citytwin.model.sensing import Datastream, Entity, ObservedProperty, Sensor, Thing
from citytwin.model.sensing import UnitOfMeasurement as Unit
from citytwin.store.base import ObservationFrame
from citytwin.store.duckdb_ import DuckDBStore

OUT = Path(__file__).parent / "out"
T0_US = int(datetime(2026, 3, 15, tzinfo=UTC).timestamp() * 1_000_000)
MINUTE_US = 60_000_000
GOAL_INGEST = 50_000.0  # obs/s
GOAL_POST_RATIO = 0.5
GOAL_P95_MS = 20.0
CELSIUS = {"name": "degree Celsius", "symbol": "°C", "definition": "http://unitsofmeasure.org/"}


def store_url(path: Path) -> str:
    """``duckdb:///`` + an absolute path gives the four slashes an absolute path needs."""
    return f"duckdb:///{path.resolve()}"


def best_of(repeat: int, run: Callable[[int], float]) -> float:
    """Best (smallest) of ``repeat`` timed runs; ``run`` gets the attempt number."""
    return min(run(attempt) for attempt in range(repeat))


def check(ok: bool, message: str) -> None:
    """A correctness failure ends the benchmark with exit code 1 (timings are never checked)."""
    if not ok:
        print(f"FAILED: {message}", file=sys.stderr)
        raise SystemExit(1)


# -- setup over HTTP ----------------------------------------------------------------------------
def post_json(server: Server, path: str, body: Any) -> Any:
    (response,) = send_all(
        server.port,
        [request_bytes("POST", path, server.port, json.dumps(body).encode())],
        connections=1,
    )
    check(response.status == 201, f"POST {path}: {response.status} {response.body[:300]!r}")
    return json.loads(response.body)


def create_datastreams(server: Server, count: int, *, per_thing: int = 10) -> list[int]:
    """A Sensor, an ObservedProperty, Things and ``count`` Datastreams, each by POST."""
    sensor = post_json(server, "/v1.1/Sensors", {"name": "bench sensor"})["@iot.id"]
    prop = post_json(
        server, "/v1.1/ObservedProperties", {"name": "t", "definition": "https://example.org/t"}
    )["@iot.id"]
    ids: list[int] = []
    thing = 0
    for i in range(count):
        if i % per_thing == 0:
            thing = post_json(server, "/v1.1/Things", {"name": f"bench thing {i}"})["@iot.id"]
        body = {
            "name": f"bench datastream {i}",
            "unitOfMeasurement": CELSIUS,
            "Thing": {"@iot.id": thing},
            "Sensor": {"@iot.id": sensor},
            "ObservedProperty": {"@iot.id": prop},
        }
        ids.append(post_json(server, "/v1.1/Datastreams", body)["@iot.id"])
    return ids


# -- 1. dataArray ingest ------------------------------------------------------------------------
@dataclass(frozen=True)
class Batch:
    """One request's worth of observations: blocks of (datastream, times µs, results)."""

    blocks: list[tuple[int, NDArray[np.int64], NDArray[np.float64]]]

    def body(self) -> bytes:
        return json.dumps(
            [
                {
                    "Datastream": {"@iot.id": ds},
                    "components": ["phenomenonTime", "result"],
                    "dataArray": [
                        [t, r] for t, r in zip(_iso(times), results.tolist(), strict=True)
                    ],
                }
                for ds, times, results in self.blocks
            ]
        ).encode()

    def frame(self) -> ObservationFrame:
        return ObservationFrame.from_arrays(
            np.concatenate([np.full(len(t), ds, np.int64) for ds, t, _ in self.blocks]),
            np.concatenate([t for _, t, _ in self.blocks]),
            np.concatenate([r for _, _, r in self.blocks]),
        )

    def __len__(self) -> int:
        return sum(len(t) for _, t, _ in self.blocks)


def _iso(times: NDArray[np.int64]) -> list[str]:
    return [f"{s}Z" for s in np.datetime_as_string(times.astype("datetime64[us]"), unit="s")]


def make_batches(
    datastreams: Sequence[int], observations: int, *, batch: int, rows_per_block: int
) -> list[Batch]:
    """``observations`` rows spread evenly over ``datastreams``, one minute apart, in batches."""
    per_stream = observations // len(datastreams)
    blocks_per_batch = max(1, batch // rows_per_block)
    rng = np.random.default_rng(1808)
    blocks = []
    for first in range(0, per_stream, rows_per_block):
        minutes = np.arange(first, min(first + rows_per_block, per_stream), dtype=np.int64)
        for ds in datastreams:
            results = np.round(rng.normal(15.0, 8.0, len(minutes)), 2)
            blocks.append((ds, T0_US + minutes * MINUTE_US, results))
    return [
        Batch(blocks[i : i + blocks_per_batch]) for i in range(0, len(blocks), blocks_per_batch)
    ]


def bench_ingest(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    def over_http(attempt: int) -> float:
        db = scratch / f"ingest-http-{attempt}.duckdb"
        with run_server("citytwin", store_url=store_url(db)) as server:
            datastreams = create_datastreams(server, args.datastreams)
            batches = make_batches(
                datastreams, args.observations, batch=args.batch, rows_per_block=args.rows_per_block
            )
            sent = sum(len(b) for b in batches)
            requests = [
                request_bytes("POST", "/v1.1/CreateObservations", server.port, b.body())
                for b in batches
            ]
            mb = sum(len(r) for r in requests) / 1e6
            cpu = server.cpu_seconds()
            start = time.perf_counter()
            responses = send_all(server.port, requests, connections=args.connections)
            seconds = time.perf_counter() - start
            cpu = server.cpu_seconds() - cpu
        bad = [r for r in responses if r.status != 201]
        check(not bad, f"CreateObservations answered {bad[:1]}")
        errors = sum(json.loads(r.body).count("error") for r in responses)
        with DuckDBStore(db) as store:
            stored = _count(store)
        print(
            f"  HTTP run {attempt + 1}: {sent:,} obs in {len(requests)} requests ({mb:.0f} MB "
            f"JSON) in {seconds:.2f} s → {sent / seconds:,.0f} obs/s; server CPU "
            f"{cpu / seconds:.0%} of one core; stored {stored:,}, 'error' links {errors}"
        )
        check(stored == sent and errors == 0, f"stored {stored:,} of {sent:,} sent")
        results["sent"], results["stored"], results["requests"] = sent, stored, len(requests)
        results["server_cpu_share"] = cpu / seconds
        return seconds

    def in_process(attempt: int) -> float:
        datastreams = list(range(1, args.datastreams + 1))
        frames = [
            b.frame()
            for b in make_batches(
                datastreams, args.observations, batch=args.batch, rows_per_block=args.rows_per_block
            )
        ]
        sent = sum(len(f) for f in frames)
        with DuckDBStore(scratch / f"ingest-store-{attempt}.duckdb") as store:
            start = time.perf_counter()
            for frame in frames:
                store.write_observations(frame)
            seconds = time.perf_counter() - start
            stored = _count(store)
        check(stored == sent, f"baseline stored {stored:,} of {sent:,}")
        return seconds

    results: dict[str, Any] = {}
    print(
        f"1. dataArray ingest: {args.datastreams} datastreams, {args.observations:,} obs, "
        f"{args.batch:,} obs/request in blocks of {args.rows_per_block:,}, "
        f"{args.connections} connections"
    )
    ours = best_of(args.repeat, over_http)
    baseline = best_of(args.repeat, in_process)
    rate, base_rate = results["sent"] / ours, results["sent"] / baseline
    print(f"  citytwin POST CreateObservations : {rate:12,.0f} obs/s  (goal ≥ {GOAL_INGEST:,.0f})")
    print(
        f"  baseline store.write_observations: {base_rate:12,.0f} obs/s  (in-process, same batches)"
    )
    print(f"  ratio HTTP / in-process          : {rate / base_rate:12.3f}")
    return {
        **results,
        "http_seconds": ours,
        "http_obs_per_s": rate,
        "baseline_seconds": baseline,
        "baseline_obs_per_s": base_rate,
        "ratio": rate / base_rate,
        "goal_obs_per_s": GOAL_INGEST,
        "goal_met": rate >= GOAL_INGEST,
    }


def _count(store: DuckDBStore) -> int:
    row = store.connection.execute("SELECT count(*) FROM observations").fetchone()
    return int(row[0]) if row else 0


# -- 2. single-Observation POST -----------------------------------------------------------------
def post_bodies(datastreams: Sequence[int], count: int, offset: int) -> list[tuple[int, bytes]]:
    """``count`` single observations cycling over ``datastreams``, each at its own instant."""
    out = []
    for i in range(offset, offset + count):
        when = _iso(np.asarray([T0_US + (i // len(datastreams)) * 1_000_000], np.int64))[0]
        body = {"phenomenonTime": when, "result": round(i * 0.01, 2)}
        out.append((datastreams[i % len(datastreams)], json.dumps(body).encode()))
    return out


def timed_posts(server: Server, requests: list[bytes], connections: int) -> tuple[float, float]:
    """Seconds for all requests and the server's CPU share; every answer must be a 201."""
    cpu = server.cpu_seconds()
    start = time.perf_counter()
    responses = send_all(server.port, requests, connections=connections)
    seconds = time.perf_counter() - start
    cpu = server.cpu_seconds() - cpu
    bad = [r for r in responses if r.status != 201]
    check(not bad and len(responses) == len(requests), f"POST answered {bad[:1]}")
    return seconds, cpu / seconds


def bench_posts(args: argparse.Namespace, scratch: Path, k: int) -> dict[str, Any]:
    n = args.posts
    print(f"2. single-Observation POST: {n:,} requests × {args.repeat}, {k} connections")
    shares: dict[str, float] = {}
    with run_server("citytwin", store_url=store_url(scratch / f"posts{k}.duckdb")) as server:
        datastreams = create_datastreams(server, 10)
        send_all(server.port, _post_requests(server, datastreams, 50, 0), connections=k)

        def citytwin(attempt: int) -> float:
            requests = _post_requests(server, datastreams, n, 50 + attempt * n)
            seconds, shares["citytwin"] = timed_posts(server, requests, k)
            return seconds

        ours = best_of(args.repeat, citytwin)
    with run_server("echo") as server:
        bodies = [b for _, b in post_bodies(datastreams, n, 0)]
        requests = [request_bytes("POST", "/echo", server.port, b) for b in bodies]
        send_all(server.port, requests[:50], connections=k)

        def echo(attempt: int) -> float:
            seconds, shares["echo"] = timed_posts(server, requests, k)
            return seconds

        baseline = best_of(args.repeat, echo)
    rate, base_rate = n / ours, n / baseline
    print(
        f"  citytwin POST Datastreams(id)/Observations: {rate:8,.0f} req/s  "
        f"(server CPU {shares['citytwin']:.0%} of one core)"
    )
    print(
        f"  baseline bare FastAPI POST /echo          : {base_rate:8,.0f} req/s  "
        f"(server CPU {shares['echo']:.0%} of one core)"
    )
    print(f"  ratio citytwin / bare                     : {rate / base_rate:8.3f}  (goal ≥ 0.5)")
    return {
        "requests": n,
        "connections": k,
        "citytwin_req_per_s": rate,
        "baseline_req_per_s": base_rate,
        "ratio": rate / base_rate,
        "citytwin_server_cpu_share": shares["citytwin"],
        "baseline_server_cpu_share": shares["echo"],
        "goal_ratio": GOAL_POST_RATIO,
        "goal_met": rate / base_rate >= GOAL_POST_RATIO,
    }


def _post_requests(server: Server, datastreams: list[int], n: int, offset: int) -> list[bytes]:
    return [
        request_bytes("POST", f"/v1.1/Datastreams({ds})/Observations", server.port, body)
        for ds, body in post_bodies(datastreams, n, offset)
    ]


# -- 3. latest-state query ----------------------------------------------------------------------
def build_city(path: Path, datastreams: int, per_datastream: int) -> list[int]:
    """Things (10 datastreams each), one Sensor and ObservedProperty, ``datastreams`` Datastreams
    registered with ``store.register``, and ``per_datastream`` observations each (10 min apart)."""
    sensor = Sensor(key="bench:sensor", name="bench sensor")
    prop = ObservedProperty(key="bench:t", name="t", definition="https://example.org/t")
    unit = Unit(**CELSIUS)
    things = [Thing(key=f"bench:thing{i}", name=f"thing {i}") for i in range(datastreams // 10)]
    streams = [
        Datastream(
            key=f"bench:thing{i // 10}/ds{i % 10}",
            name=f"datastream {i}",
            unit_of_measurement=unit,
            thing_id=things[i // 10].id or 0,
            sensor_id=sensor.id or 0,
            observed_property_id=prop.id or 0,
        )
        for i in range(len(things) * 10)
    ]
    ids = np.asarray([d.id for d in streams], np.int64)
    steps = np.arange(per_datastream, dtype=np.int64) * 10 * MINUTE_US
    frame = ObservationFrame.from_arrays(
        np.repeat(ids, per_datastream),
        np.tile(T0_US + steps, len(ids)),
        np.round(np.random.default_rng(7).normal(15.0, 8.0, len(ids) * per_datastream), 2),
    )
    entities: list[Entity] = [sensor, prop, *things, *streams]
    with DuckDBStore(path) as store:
        store.register(entities)
        store.write_observations(frame)
    listed: list[int] = ids.tolist()
    return listed


def percentiles(seconds: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {f"p{q}_ms": float(np.percentile(ms, q)) for q in (50, 95, 99)} | {
        "mean_ms": float(ms.mean())
    }


def bench_latest(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    n = args.latest_datastreams
    print(f"3. latest-state query: {n:,} datastreams × {args.per_datastream} observations")
    db = scratch / "latest.duckdb"
    start = time.perf_counter()
    ids = build_city(db, n, args.per_datastream)
    setup = time.perf_counter() - start
    print(f"  setup (entities + {len(ids) * args.per_datastream:,} observations): {setup:.1f} s")
    rng = random.Random(95)
    sample = [rng.choice(ids) for _ in range(args.queries + args.warmup)]
    with DuckDBStore(db) as store:
        expected, base_times = [], []
        for ds in sample:
            begin = time.perf_counter()
            frame = store.latest([ds])
            base_times.append(time.perf_counter() - begin)
            expected.append((int(frame.phenomenon_time[0]), float(frame.result[0])))
    path = "/v1.1/Datastreams({})/Observations?$top=1&$orderby=phenomenonTime%20desc"
    with run_server("citytwin", store_url=store_url(db)) as server:
        requests = [request_bytes("GET", path.format(ds), server.port) for ds in sample]
        responses = send_all(server.port, requests, connections=1)  # one at a time: latency
    _check_latest(responses, expected)
    ours = percentiles([r.seconds for r in responses[args.warmup :]])
    base = percentiles(base_times[args.warmup :])
    print(
        f"  citytwin GET …/Observations?$top=1&$orderby=phenomenonTime desc: "
        f"p50 {ours['p50_ms']:6.2f}  p95 {ours['p95_ms']:6.2f}  p99 {ours['p99_ms']:6.2f} ms  "
        f"(goal p95 ≤ {GOAL_P95_MS:.0f} ms)"
    )
    print(
        f"  baseline store.latest([id]) in-process                         : "
        f"p50 {base['p50_ms']:6.2f}  p95 {base['p95_ms']:6.2f}  p99 {base['p99_ms']:6.2f} ms"
    )
    print(f"  ratio p95 baseline / citytwin: {base['p95_ms'] / ours['p95_ms']:.3f}")
    return {
        "datastreams": len(ids),
        "observations": len(ids) * args.per_datastream,
        "setup_seconds": setup,
        "queries": args.queries,
        "http": ours,
        "baseline": base,
        "ratio_p95_baseline_over_http": base["p95_ms"] / ours["p95_ms"],
        "goal_p95_ms": GOAL_P95_MS,
        "goal_met": ours["p95_ms"] <= GOAL_P95_MS,
    }


def _check_latest(responses: list[Response], expected: list[tuple[int, float]]) -> None:
    for response, (t_us, result) in zip(responses, expected, strict=True):
        check(response.status == 200, f"latest query answered {response.status}")
        (obs,) = json.loads(response.body)["value"]
        when = datetime.fromisoformat(obs["phenomenonTime"].replace("Z", "+00:00"))
        got = (round(when.timestamp() * 1_000_000), float(obs["result"]))
        check(got == (t_us, result), f"latest over HTTP {got} differs from store.latest {t_us}")


# -- main ---------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run with small sizes")
    parser.add_argument("--only", choices=["ingest", "posts", "latest"], action="append")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--datastreams", type=int, default=100)
    parser.add_argument("--observations", type=int, default=500_000)
    parser.add_argument("--batch", type=int, default=10_000, help="observations per request")
    parser.add_argument("--rows-per-block", type=int, default=1_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--posts", type=int, default=2_000)
    parser.add_argument(
        "--post-connections",
        type=int,
        nargs="+",
        default=[8, 32],
        help="concurrent keep-alive clients, one run each (group commit batches what they send)",
    )
    parser.add_argument("--latest-datastreams", type=int, default=100_000)
    parser.add_argument("--per-datastream", type=int, default=10)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.datastreams, args.observations, args.posts = 1, 20, 40_000, 200
        args.latest_datastreams, args.queries, args.warmup = 2_000, 100, 20
    return args


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    args = parse_args()
    parts = args.only or ["ingest", "posts", "latest"]
    scratch = Path(tempfile.mkdtemp(prefix="citytwin-bench-api-"))
    results: dict[str, Any] = {"when": datetime.now(UTC).isoformat(timespec="seconds")}
    results["cpus"], results["quick"] = os.cpu_count(), args.quick
    results["load_average_before"] = os.getloadavg()
    print(f"{os.cpu_count()} CPUs, load average {_load()} (other processes skew every figure)")
    try:
        if "ingest" in parts:
            results["ingest"] = bench_ingest(args, scratch)
        if "posts" in parts:
            results["posts"] = [bench_posts(args, scratch, k) for k in args.post_connections]
        if "latest" in parts:
            results["latest"] = bench_latest(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results["load_average_after"] = os.getloadavg()
    print(f"load average after: {_load()}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "api.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
