"""Rollup benchmark: district × hour means over a month of S-DoT-scale observations in the lake.

Full scale is one month of Seoul's S-DoT network: 1,100 sensors × 17 values every 2 minutes
(792,000 rows per day and property, ≈ 404 M observations in 30 days) over 425 dongs. The data are
generated straight into the lake's layout (``date=…/property=…/part-0.parquet`` plus
``_datastreams.parquet``), vectorised, seeded: values quantised to 0.1 like the feed's, 1 % of
rows flagged SPIKE (left out by the rollup, as ``Twin.rollup`` leaves out suspect values).

In the same run on the same files:

- **citytwin** :func:`citytwin.store.lake_dask.rollup` ``by="thing.dong_code", bucket="hour"``
  on a ``dask.distributed`` LocalCluster (in-process, one worker with a thread per core; started
  before the clock, as a production cluster is already running);
- **baseline** a hand-written DuckDB SQL query over the same Parquet files (``read_parquet`` with
  hive partitioning, a join to the datastream table, ``time_bucket``, ``GROUP BY``).

Both answers are compared (same rows, counts equal, means to 1e-9). Each timing is the best of
``--repeat`` runs. The goals (issue 9): ≤ 10 s and ≤ 1.5 × DuckDB. ``--days`` scales the month
down when the machine cannot hold it (stated in the output with the full-scale figure it stands
for); results go to ``bench/out/rollup.json``.

Usage: ``python bench/rollup.py [--days 30] [--repeat 1] [--keep DIR]`` (the full month takes
~2.5 min and ~0.6 GiB of disk on 2 cores; ``--keep`` reuses generated data)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client, LocalCluster

from _timing import best_of
from citytwin.model.quality import Flag
from citytwin.store.lake import DIMENSION_SCHEMA, DIMENSIONS
from citytwin.store.lake_dask import rollup
from citytwin.twin.state import SUSPECT

SENSORS = 1_100
PROPERTIES = 17
DONGS = 425
READINGS_PER_DAY = 24 * 30  # every 2 minutes
FULL_DAYS = 30
DAY0 = datetime(2020, 3, 1, tzinfo=UTC)

BASELINE_SQL = """
WITH dongs AS (
    SELECT datastream_id, json_extract_string(thing_properties, '$.dong_code') AS dong
    FROM read_parquet($dimensions)
)
SELECT dongs.dong AS "group", o.property AS observed_property,
       time_bucket(INTERVAL 1 HOUR, o.phenomenon_time) AS bucket,
       avg(o.result) AS mean, min(o.result) AS min, max(o.result) AS max, count(*) AS count
FROM read_parquet($files, hive_partitioning = true) o JOIN dongs USING (datastream_id)
WHERE (o.quality & $suspect) = 0 AND dongs.dong IS NOT NULL
GROUP BY ALL ORDER BY ALL
"""


def generate(root: Path, days: int) -> int:
    """Write ``days`` of S-DoT-scale observations into a lake at ``root``; return the rows."""
    rng = np.random.default_rng(2020)
    ids = np.sort(rng.choice(2**62, SENSORS * PROPERTIES, replace=False)).astype(np.int64)
    dong = rng.integers(0, DONGS, SENSORS)
    names = [f"p{k:02d}" for k in range(PROPERTIES)]
    sensor_of = rng.permutation(SENSORS * PROPERTIES) % SENSORS  # stream → its sensor
    prop_of = np.arange(SENSORS * PROPERTIES) // SENSORS  # stream → its property
    dimensions = pa.table(
        {
            "datastream_id": ids,
            "observed_property": [names[p] for p in prop_of],
            "feed": ["sdot"] * len(ids),
            "thing_id": sensor_of.astype(np.int64),
            "thing_properties": [
                json.dumps({"dong_code": str(1_100_000 + int(dong[s]))}) for s in sensor_of
            ],
        },
        schema=DIMENSION_SCHEMA,
    )
    pq.write_table(dimensions, root / DIMENSIONS)
    offsets = np.arange(READINGS_PER_DAY, dtype=np.int64) * 120_000_000
    for day in range(days):
        start_us = int((DAY0 + timedelta(days=day)).timestamp() * 1e6)
        for p, name in enumerate(names):
            streams = ids[prop_of == p]  # ascending: rows ordered by (datastream, time)
            _write_part(root, DAY0 + timedelta(days=day), name, streams, start_us + offsets, rng)
    return days * PROPERTIES * SENSORS * READINGS_PER_DAY


def _write_part(
    root: Path,
    day: datetime,
    name: str,
    streams: np.ndarray,
    times: np.ndarray,
    rng: np.random.Generator,
) -> None:
    rows = len(streams) * len(times)
    values = np.round(rng.normal(30.0, 8.0, rows), 1)
    quality = np.where(rng.random(rows) < 0.01, int(Flag.SPIKE), 0).astype(np.int32)
    table = pa.table(
        {
            "datastream_id": np.repeat(streams, len(times)),
            "phenomenon_time": pa.array(np.tile(times, len(streams))).cast(pa.timestamp("us")),
            "result": values,
            "quality": quality,
        }
    )
    directory = root / f"date={day:%Y-%m-%d}" / f"property={name}"
    directory.mkdir(parents=True)
    pq.write_table(table, directory / "part-0.parquet")


def duckdb_rollup(root: Path) -> pa.Table:
    """The hand-written baseline: one SQL query over the same Parquet files."""
    with duckdb.connect() as connection:
        params = {
            "dimensions": str(root / DIMENSIONS),
            "files": str(root / "date=*" / "property=*" / "*.parquet"),
            "suspect": SUSPECT,
        }
        return connection.execute(BASELINE_SQL, params).to_arrow_table()


def compare(ours: pa.Table, theirs: pa.Table) -> float:
    """Largest relative difference of the means; raises if rows or counts differ."""
    if ours.num_rows != theirs.num_rows:
        raise SystemExit(f"row counts differ: dask {ours.num_rows:,}, duckdb {theirs.num_rows:,}")
    for name in ("group", "observed_property", "count"):
        if not ours[name].equals(theirs[name].cast(ours[name].type)):
            raise SystemExit(f"column {name} differs between dask and duckdb")
    a, b = ours["mean"].to_numpy(), theirs["mean"].to_numpy()
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=int(os.environ.get("ROLLUP_DAYS", FULL_DAYS)))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="Generate into (or reuse) this directory.")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="citytwin-lake-"))
    rows = args.days * PROPERTIES * SENSORS * READINGS_PER_DAY
    try:
        started = time.perf_counter()
        generated: float | None = None
        if not (root / DIMENSIONS).exists():
            root.mkdir(parents=True, exist_ok=True)
            generate(root, args.days)
            generated = time.perf_counter() - started
        size = sum(f.stat().st_size for f in root.rglob("*.parquet"))
        _report_scale(args.days, rows, size, generated)
        _run(root, args, rows)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


def _report_scale(days: int, rows: int, size: int, generated: float | None) -> None:
    full = FULL_DAYS * PROPERTIES * SENSORS * READINGS_PER_DAY
    print(f"S-DoT scale: {SENSORS:,} sensors × {PROPERTIES} values every 2 min, {DONGS} dongs")
    print(
        f"data: {days} day(s) = {rows:,} observations ({rows / full:.0%} of the full month's "
        f"{full:,}); {size / 2**20:,.0f} MiB of Parquet, "
        + ("reused (--keep)" if generated is None else f"generated in {generated:.1f} s")
    )
    if days < FULL_DAYS:
        print(
            f"scaled down from {FULL_DAYS} days ({os.cpu_count()} cores here); full-scale "
            f"figures below are extrapolated ×{FULL_DAYS / days:.2f}"
        )


def _run(root: Path, args: argparse.Namespace, rows: int) -> None:
    started = time.perf_counter()
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=os.cpu_count() or 1,
            processes=False,
            dashboard_address="127.0.0.1:0",
        ) as cluster,  # type: ignore[no-untyped-call]
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        print(f"dask LocalCluster started in {time.perf_counter() - started:.1f} s (not timed)")

        def ours() -> pa.Table:
            return rollup(root, by="thing.dong_code", exclude_flags=SUSPECT, scheduler=client)

        dask_s, dask_table = best_of(args.repeat, ours, "dask rollup")
    duck_s, duck_table = best_of(args.repeat, lambda: duckdb_rollup(root), "duckdb SQL")
    error = compare(dask_table, duck_table)
    ratio = dask_s / duck_s
    scale = FULL_DAYS / args.days
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"district × hour rollup: {dask_table.num_rows:,} rows; means agree to {error:.1e}")
    print(f"  machine load average (1, 5, 15 min) during the run: {load} on {os.cpu_count()} cores")
    print(f"  citytwin dask : {dask_s:6.2f} s  ({rows / dask_s / 1e6:,.0f} M obs/s)")
    print(f"  duckdb SQL    : {duck_s:6.2f} s  ({rows / duck_s / 1e6:,.0f} M obs/s)")
    print(f"  ratio dask/duckdb: {ratio:.2f}× (goal ≤ 1.5×: {'met' if ratio <= 1.5 else 'MISSED'})")
    full = dask_s * scale
    what = "full month" if scale == 1 else f"full month (×{scale:.2f}, linear)"
    print(
        f"  {what}: dask {full:.1f} s, duckdb {duck_s * scale:.1f} s "
        f"(goal ≤ 10 s: {'met' if full <= 10 else 'MISSED'})"
    )
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    summary = {
        "days": args.days,
        "observations": rows,
        "dask_s": dask_s,
        "duckdb_s": duck_s,
        "ratio": ratio,
        "full_month_dask_s_extrapolated": full,
        "rows": dask_table.num_rows,
        "max_relative_mean_error": error,
        "cores": os.cpu_count(),
    }
    (out / "rollup.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(f"results: {out / 'rollup.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
