"""PostgreSQL ingest benchmark: the store's ``write_observations`` vs a plain ``COPY``.

Starts a throwaway PostgreSQL 15 + PostGIS server (``scripts/postgres.sh``, durability off as in
the tests, so both sides skip fsync alike), builds one observation frame — ``--datastreams``
sensors every 30 minutes for ``--rows`` rows in total, crossing a month boundary — and measures
on it, in the same run:

- **citytwin**: ``PostgresStore.write_observations(frame)`` into a fresh schema — monthly
  partitions created on demand, binary COPY into the staging table, ``INSERT … ON CONFLICT DO
  NOTHING`` into the partitioned table with its primary key and BRIN index;
- **baseline**: the same rows, encoded the same way, ``COPY … (FORMAT BINARY)`` into a plain
  unindexed, unpartitioned table: the fastest a client can put rows into PostgreSQL;
- **reference**: the same ``COPY`` straight into a partitioned table with the store's indexes
  (no staging, no idempotence: a repeated row would abort it) — how much is the indexes;
- **rewrite**: ``write_observations`` of the same frame again (every row a duplicate).

Each is run ``--repeat`` times on a fresh schema; the best time counts. Results also go to
``bench/out/pg_ingest.json``.

Usage: ``python bench/pg_ingest.py [--rows 1000000] [--datastreams 500] [--repeat 2]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg

from citytwin.store import ObservationFrame, WriteResult
from citytwin.store.base import to_micros
from citytwin.store.postgres import PostgresStore
from citytwin.store.postgres_sql import encode_copy, observation_columns

OUT = Path(__file__).parent / "out"
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "postgres.sh"
TABLE = """(datastream_id bigint NOT NULL, phenomenon_time timestamp NOT NULL,
    result double precision, quality integer NOT NULL DEFAULT 0)"""


def make_frame(rows: int, datastreams: int) -> ObservationFrame:
    """``datastreams`` sensors reporting every 30 minutes from 2020-03-20, grouped by sensor
    (what the ingest pipeline hands the store)."""
    per_stream = -(-rows // datastreams)
    start = to_micros(datetime(2020, 3, 20, tzinfo=UTC))
    times = start + np.arange(per_stream, dtype=np.int64) * 1_800_000_000
    rng = np.random.default_rng(9)
    return ObservationFrame.from_arrays(
        np.repeat(np.arange(1, datastreams + 1, dtype=np.int64), per_stream)[:rows],
        np.tile(times, datastreams)[:rows],
        rng.normal(25.0, 8.0, per_stream * datastreams)[:rows],
        np.zeros(rows, np.int32),
    )


def timed(repeat: int, run: Callable[[str], object], fresh: Callable[[], str]) -> float:
    """Best wall time of ``repeat`` runs, each given a fresh schema."""
    times = []
    for _ in range(repeat):
        schema = fresh()
        start = time.perf_counter()
        run(schema)
        times.append(time.perf_counter() - start)
    return min(times)


class Runs:
    """The measured operations, each on a given schema of one server."""

    def __init__(self, url: str, frame: ObservationFrame) -> None:
        self.url, self.frame, self.n = url, frame, len(frame)
        self._admin = psycopg.connect(url, autocommit=True)
        self._schemas = 0

    def fresh(self) -> str:
        self._schemas += 1
        self._admin.execute(f"CREATE SCHEMA bench_{self._schemas}")
        return f"bench_{self._schemas}"

    def citytwin(self, schema: str) -> None:
        with PostgresStore(f"{self.url}?schema={schema}") as store:
            assert store.write_observations(self.frame) == WriteResult(self.n, 0)

    def plain_copy(self, schema: str, *, into: str = "plain") -> None:
        with psycopg.connect(self.url, autocommit=True) as con:
            con.execute(f"SET search_path = {schema}, public")
            if into == "plain":
                con.execute(f"CREATE TABLE plain {TABLE}")
            with (
                con.transaction(),
                con.cursor().copy(f"COPY {into} FROM STDIN (FORMAT BINARY)") as copy,
            ):
                copy.write(encode_copy(observation_columns(self.frame)))

    def indexed_copy(self, schema: str) -> None:
        with PostgresStore(f"{self.url}?schema={schema}") as store:  # tables and partitions
            store.write_observations(self.frame.take(np.array([0, self.n - 1])))
            store.delete_observations(datastream_ids=self.frame.datastream_id[[0, -1]].tolist())
        self.plain_copy(schema, into="observations")

    def rewrite(self, schema: str) -> None:
        with PostgresStore(f"{self.url}?schema={schema}") as store:
            assert store.write_observations(self.frame) == WriteResult(0, self.n)

    def measure(self, repeat: int) -> dict[str, float]:
        """Best seconds of each operation."""
        seconds = {
            "citytwin": timed(repeat, self.citytwin, self.fresh),
            "baseline": timed(repeat, self.plain_copy, self.fresh),
            "reference": timed(repeat, self.indexed_copy, self.fresh),
        }
        written = self.fresh()
        self.citytwin(written)
        seconds["rewrite"] = timed(repeat, self.rewrite, lambda: written)
        self._admin.close()
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--datastreams", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    frame = make_frame(args.rows, args.datastreams)
    n = len(frame)
    directory = tempfile.mkdtemp(prefix="citytwin-pgbench.", dir="/tmp")
    started = subprocess.run(
        ["bash", str(SCRIPT), "start", directory], capture_output=True, text=True, check=False
    )
    if started.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        raise SystemExit(f"cannot start PostgreSQL: {started.stderr.strip()}")
    try:
        print(f"{n:,} observations of {args.datastreams} datastreams, server in {directory}")
        seconds = Runs(started.stdout.strip().splitlines()[-1], frame).measure(args.repeat)
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", directory], check=False)
        shutil.rmtree(directory, ignore_errors=True)
    rate = {name: n / s for name, s in seconds.items()}
    labels = {
        "citytwin": "citytwin write_observations  ",
        "baseline": "baseline COPY, plain table   ",
        "reference": "reference COPY, indexed table",
        "rewrite": "rewrite (all duplicates)     ",
    }
    for name, label in labels.items():
        print(f"{label} : {seconds[name]:6.2f} s  {rate[name]:12,.0f} obs/s")
    print(f"ratio citytwin / baseline     : {rate['citytwin'] / rate['baseline']:6.2f}")
    print(f"ratio citytwin / reference    : {rate['citytwin'] / rate['reference']:6.2f}")
    OUT.mkdir(exist_ok=True)
    summary = {
        "observations": n,
        **{f"{name}_s": s for name, s in seconds.items()},
        **{f"{name}_obs_per_s": r for name, r in rate.items()},
        "ratio_vs_baseline": rate["citytwin"] / rate["baseline"],
        "ratio_vs_reference": rate["citytwin"] / rate["reference"],
    }
    (OUT / "pg_ingest.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
