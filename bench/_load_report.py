"""The load test's printed report: figures, the same-run COPY baseline, ratios, memory series."""

from __future__ import annotations

import math
import os

import numpy as np

from _load_city import rate_10x
from _load_run import LoadResult


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:,.0f} ms"


def print_report(result: LoadResult) -> None:
    """Print every figure of ``result`` (see ``bench/load.py``)."""
    _print_throughput(result)
    _print_latency(result)
    _print_minutes(result)
    _print_memory(result)
    _print_losses(result)


def _print_throughput(result: LoadResult) -> None:
    print(
        f"registration (round 0, auto)  : {result.datastreams:,} datastreams, "
        f"{result.per_round:,} observations in {result.registration_s:,.1f} s"
    )
    print(
        f"machine load (1-min average)  : {result.load_average[0]:.1f} at start, "
        f"{result.load_average[1]:.1f} at end, on {os.cpu_count()} cores"
    )
    print(
        f"timed rounds                  : {result.rounds} × {result.per_round:,} observations"
        f" ({result.throttled_rounds} waited for a backlog guard)"
    )
    target = "auto" if result.rate is None else f"{result.rate:,.0f}"
    print(
        f"offered (target {target:>8})    : {result.offered_obs_s:12,.0f} obs/s over "
        f"{result.publish_s:,.0f} s"
    )
    print(
        f"ingested and queryable        : {result.ingested_obs_s:12,.0f} obs/s over "
        f"{result.ingest_s:,.0f} s = {result.ingested_obs_s / rate_10x():,.1f}× the 10× "
        f"S-DoT real-time rate; simulated time ×{result.compression:,.1f}"
    )
    print(
        f"baseline plain COPY (same obs): {result.baseline_obs_s:12,.0f} obs/s "
        f"({result.baseline_rows:,} rows into an unindexed table, same server)"
    )
    ratio = result.ingested_obs_s / result.baseline_obs_s if result.baseline_obs_s else math.nan
    print(f"ratio ingest / COPY           : {ratio:12.2f}")
    if result.offered_obs_s:
        share = result.ingested_obs_s / result.offered_obs_s
        print(f"ratio ingested / offered      : {share:12.2f}")


def _print_latency(result: LoadResult) -> None:
    print(
        f"ingest-to-queryable latency   : p50 {_ms(result.latency_p50_s)}, p95 "
        f"{_ms(result.latency_p95_s)}, max {_ms(result.latency_max_s)} "
        f"({result.samples - result.unseen} of {result.samples} samples seen)"
    )
    if result.probe_error_count:
        print(f"  SERVER ERRORS: {result.probe_error_count:,} failed probe requests, e.g.")
    for error in result.probe_errors[:5]:
        print(f"  probe error: {error}")


def _print_minutes(result: LoadResult) -> None:
    """Per minute of the timed run: observations/s published and latency, to show whether the
    rate holds as the tables grow."""
    if not result.round_starts_s:
        return
    starts = np.asarray(result.round_starts_s)
    series = np.asarray(result.latency_series or [(0.0, math.nan)])
    print("  minute   published obs/s   latency p50     p95")
    for minute in range(int(starts[-1] // 60) + 1):
        rounds = np.count_nonzero((starts // 60) == minute)
        seen = series[(series[:, 0] // 60) == minute, 1]
        p50, p95 = np.percentile(seen, [50, 95]) if seen.size else (math.nan, math.nan)
        rate = rounds * result.per_round / 60.0
        print(f"  {minute:6d}   {rate:15,.0f}   {_ms(p50):>11} {_ms(p95):>9}")


def _print_memory(result: LoadResult) -> None:
    series = result.memory
    if series is None:
        return
    print(
        f"resident memory (MiB) every ~{_period(series.times):.0f} s; timed run from "
        f"{result.timed_from_s:.0f} s, warm-up {result.warm_up_s:.0f} s:"
    )
    print("   t (s)  " + "  ".join(f"{name:>9}" for name in series.names))
    for at, row in zip(series.times, series.rss, strict=True):
        print(f"  {at:6.0f}  " + "  ".join(f"{value:9.1f}" for value in row))
    for name, (slope, growth) in result.memory_trend.items():
        verdict = "flat" if abs(growth) < 5 else "GROWING" if growth > 0 else "shrinking"
        print(f"  {name:<10} after warm-up: {slope:+.2f} MiB/min, {growth:+.1f} % → {verdict}")
    if series.cpu and len(series.cpu) > 1:
        names = (*series.names, *series.groups)
        columns = [[row[k] for row in series.cpu] for k in range(len(names))]
        shares = [_cpu_share(series.times, column) for column in columns]
        print(
            "  CPU over the run: "
            + ", ".join(
                f"{name} {share:.0%} of a core" for name, share in zip(names, shares, strict=True)
            )
        )


def _cpu_share(times: list[float], cpu: list[float]) -> float:
    """CPU seconds per second between the first and the last sample the process was alive."""
    alive = [(t, c) for t, c in zip(times, cpu, strict=True) if math.isfinite(c)]
    if len(alive) < 2 or alive[-1][0] <= alive[0][0]:
        return math.nan
    return (alive[-1][1] - alive[0][1]) / (alive[-1][0] - alive[0][0])


def _period(times: list[float]) -> float:
    return (times[-1] - times[0]) / max(1, len(times) - 1) if len(times) > 1 else 0.0


def _print_losses(result: LoadResult) -> None:
    summary = {key: f"{value:,}" for key, value in result.ingest_summary.items()}
    print(
        f"published / stored            : {result.published:,} / {result.stored:,} "
        f"observations (SQL count per round on PostgreSQL)"
    )
    print(
        f"lost / extra / duplicates     : {result.lost:,} / {result.extra:,} / "
        f"{result.duplicates:,} (0 / 0 / 0 expected); quarantined {result.quarantined:,}"
    )
    print(
        "ingest summary                : "
        + ", ".join(f"{key} {value}" for key, value in summary.items())
    )
