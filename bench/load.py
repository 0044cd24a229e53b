"""Load test: 10× Seoul's S-DoT network through the production topology, time-compressed.

11,000 devices × 17 values every 2 minutes (187,000 observations per round; Seoul's S-DoT has
about 1,100 sensors) flow through what a city would run (see ``_load_services.py``):

    publisher (QoS 1) → mosquitto → ``citytwin ingest mqtt`` → PostgreSQL ← ``citytwin serve``

The devices register themselves: round 0 is published first and ``citytwin ingest mqtt``
creates their 11,000 Things and 187,000 Datastreams (auto-registration, as a new device is met in
production); the timed run starts once round 0 is stored. Simulated time is compressed: by
default (``--rate auto``) each round is published at once, as soon as the round before it is
stored (``--backlog B``: B rounds earlier), so the wall clock carries as many 2-minute rounds as
the machine sustains; ``--rate N`` offers N observations/s instead (open loop), each round's
messages spread evenly over its interval as unsynchronised devices send them (``--burst``: at
once). The report gives

- offered and ingested observations/s (and the compression: simulated time / wall time);
- ingest-to-queryable latency p50/p95: sampled observations, from the publish call to the moment
  ``GET /v1.1/Datastreams(id)/Observations?$orderby=phenomenonTime desc&$top=1`` returns them;
- resident memory of the ingest, the server and the broker every ``--sample-every`` s, with the
  slope after warm-up (flat = a few % at most);
- losses: observations stored per round (SQL on PostgreSQL) against those published — 0 lost
  and 0 extra expected — and the ingest's duplicate count (0 expected: nothing redelivered);
- a same-run baseline: the same stored observations ``COPY``-ed (binary) into a plain unindexed
  table on the same server, the fastest a client can put them into PostgreSQL.

Results also go to ``bench/out/load.json``; the exit status is 1 on any loss or duplicate, and
on a server error or a sample never readable.

Usage: ``python bench/load.py [--minutes 10] [--sensors 11000] [--rate auto|OBS_PER_S] [--quick]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from _load_city import SENSORS_10X, observations_per_round, rate_10x
from _load_publish import PublishPlan
from _load_report import print_report
from _load_run import LoadResult, run_load

OUT = Path(__file__).parent / "out"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="timed run (default 10)")
    parser.add_argument("--sensors", type=int, default=SENSORS_10X, help="devices (17 values)")
    parser.add_argument(
        "--rate",
        default="auto",
        help="observations/s offered, or 'auto': as fast as the ingest sustains (default)",
    )
    parser.add_argument(
        "--backlog", type=int, default=0, help="auto: rounds queued beyond the one in flight"
    )
    parser.add_argument(
        "--burst", action="store_true", help="--rate N: send each round at once, not spread"
    )
    parser.add_argument("--samples", type=int, default=3, help="latency samples per round")
    parser.add_argument("--sample-every", type=float, default=10.0, help="memory period (s)")
    parser.add_argument("--quick", action="store_true", help="1 minute, 1,100 devices")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.sensors = 1.0, 1_100
    if args.rate != "auto":
        args.rate = float(args.rate)
        if args.rate <= 0:
            parser.error(f"--rate {args.rate}: expected a positive number or 'auto'")
    return args


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds: every service started is stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    rate = None if args.rate == "auto" else float(args.rate)
    per_round = observations_per_round(args.sensors)
    print(
        f"{args.sensors:,} devices × 17 values = {per_round:,} observations per 2-minute round "
        f"(10× S-DoT real time = {rate_10x():,.0f} obs/s); {args.minutes:g} min, rate "
        f"{'auto' if rate is None else f'{rate:,.0f} obs/s'}",
        flush=True,
    )
    plan = PublishPlan(
        broker_url="",
        store_url="",
        sensors=args.sensors,
        duration_s=args.minutes * 60.0,
        rate=rate,
        backlog=args.backlog,
        samples_per_round=args.samples,
        burst=args.burst,
    )
    result = run_load(plan, sample_every_s=args.sample_every, keep=args.keep)
    print_report(result)
    OUT.mkdir(exist_ok=True)
    (OUT / "load.json").write_text(json.dumps(_jsonable(asdict(result)), indent=2) + "\n")
    if result.lost or result.extra or result.duplicates:
        print("LOSS: stored observations differ from what was published", file=sys.stderr)
        return 1
    if result.probe_error_count or result.unseen:
        print("the server failed requests or samples stayed unreadable", file=sys.stderr)
        return 1
    return 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


if __name__ == "__main__":
    multiprocessing.set_start_method("spawn")
    started = time.perf_counter()
    code = main()
    print(f"(load test took {time.perf_counter() - started:,.0f} s)")
    sys.exit(code)


__all__ = ["LoadResult", "main", "parse_args"]
