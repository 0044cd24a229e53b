"""Where the ingest benchmark's time goes: the same run with parts of the pipeline switched off.

A diagnostic beside ``bench/ingest.py`` (not part of ``make bench``): on the same generated
S-DoT file, in the same run, the paths take turns (best of ``--repeat``):

- **baseline**: DuckDB's ``CREATE TABLE … AS SELECT * FROM read_csv(FILE)``, as in ingest.py;
- **citytwin**: ``ingest_paths("sdot", …)``, what ``citytwin ingest sdot`` runs;
- **without QC**: the same with every quality flag 0 and no check computed;
- **without QC and registration**: … and no SensorThings entity written either.

The last two are not products (an ingest must check and register): they bound what making QC
and registration cheaper can buy against the goal of 0.5 × the baseline. They patch the two
pipeline functions for the duration of their run only.

Usage: ``python bench/ingest_ablation.py [--hours 16] [--sensors 1100] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
from numpy.typing import NDArray

from citytwin.config import Settings
from citytwin.emulator.feeds import load_sites, write_sdot_2020
from citytwin.ingest import pipeline
from citytwin.ingest.base import Readings
from citytwin.ingest.runner import ingest_paths
from ingest import best_of


def _no_flags(readings: Readings, *, now_us: int) -> Iterator[tuple[str, NDArray[np.int32]]]:
    for key in readings.values:
        yield key, np.zeros(len(readings), np.int32)


@contextmanager
def _patched(**replace: Any) -> Iterator[None]:
    """Replace attributes of :mod:`citytwin.ingest.pipeline` (dotted for nested) meanwhile."""
    saved = []
    for name, value in replace.items():
        owner: Any = pipeline
        *path, attr = name.split("__")
        for part in path:
            owner = getattr(owner, part)
        saved.append((owner, attr, getattr(owner, attr)))
        setattr(owner, attr, value)
    try:
        yield
    finally:
        for owner, attr, value in reversed(saved):
            setattr(owner, attr, value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=1100)
    parser.add_argument("--hours", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="citytwin-ablation-"))
    try:
        csv_path = scratch / "ALLDATA_bench.csv"
        sites = load_sites(None, args.sensors, seed=1)
        written = write_sdot_2020(csv_path, sites, datetime(2020, 3, 15, tzinfo=UTC), args.hours)
        print(f"{written.values:,} readings in {csv_path.stat().st_size / 1e6:.0f} MB")

        def citytwin(patch: Callable[[], AbstractContextManager[None]]) -> Callable[[Path], None]:
            def run(db: Path) -> None:
                with patch():
                    ingest_paths("sdot", [str(csv_path)], Settings(store_url=f"duckdb:///{db}"))

            return run

        def baseline(db: Path) -> None:
            with duckdb.connect(str(db)) as con:
                con.execute("CREATE TABLE raw AS SELECT * FROM read_csv(?)", [str(csv_path)])

        paths: dict[str, Callable[[Path], None]] = {
            "baseline DuckDB read_csv→table": baseline,
            "citytwin ingest sdot": citytwin(nullcontext),
            "… without QC": citytwin(lambda: _patched(quality_by_property=_no_flags)),
            "… without QC and registration": citytwin(
                lambda: _patched(
                    quality_by_property=_no_flags, Ingestor__register=lambda self, batch: None
                )
            ),
        }
        times = best_of(args.repeat, list(paths.values()), scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for name, spent in zip(paths, times, strict=True):
        print(f"{name:32s}: {spent:6.2f} s  ratio {times[0] / spent:5.2f}")


if __name__ == "__main__":
    main()
