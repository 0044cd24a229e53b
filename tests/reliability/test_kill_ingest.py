"""``kill -9`` of ``citytwin ingest`` mid-run, then the same command again: the store ends with
exactly the observations a clean single run gives — none lost, none doubled.

Why this holds (see docs/reliability.md): each frame of observations is written in one DuckDB
transaction, so a killed process leaves whole frames or nothing (DuckDB replays its WAL and drops
the uncommitted blocks on the next open); the replay re-reads every file and the store skips the
(datastream, phenomenon time) identities it already holds.

The kill is placed by watching the store file grow (the process holds DuckDB's file lock, so the
test cannot query it meanwhile): once it reaches a given share of the size a clean run ends with,
the process is somewhere in the middle of its batches — reading, checking or writing one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from citytwin.store import open_store

FILES = 6
KILL_AT = (0.3, 0.65)  # shares of a clean run's final store size at which to SIGKILL
RUN_TIMEOUT_S = 40.0


@pytest.fixture(scope="module")
def sdot_folder(sdot_days: Callable[[int], Path]) -> Path:
    """Six emulated S-DoT days (tests/conftest.py)."""
    return sdot_days(FILES)


def _command(folder: Path, store: Path) -> list[str]:
    return [sys.executable, "-m", "citytwin.cli", "ingest", "sdot", str(folder),
            "--store", f"duckdb:///{store}"]  # fmt: skip


def _run(folder: Path, store: Path, log: Path) -> None:
    """One complete run of the command; it must succeed."""
    with log.open("ab") as out:
        done = subprocess.run(
            _command(folder, store), stdout=out, stderr=out, timeout=RUN_TIMEOUT_S, check=False
        )
    assert done.returncode == 0, log.read_text(errors="replace")[-2000:]


def _store_bytes(store: Path) -> int:
    files = (store, store.with_name(store.name + ".wal"))
    return sum(f.stat().st_size for f in files if f.exists())


def _run_and_kill(folder: Path, store: Path, log: Path, at_bytes: int) -> None:
    """Start the command and SIGKILL it once the store holds ``at_bytes``."""
    with log.open("ab") as out:
        process = subprocess.Popen(_command(folder, store), stdout=out, stderr=out)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        try:
            while _store_bytes(store) < at_bytes and process.poll() is None:
                assert time.monotonic() < deadline, "the ingest made no progress"
                time.sleep(0.005)
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    assert process.returncode == -signal.SIGKILL, (
        f"the ingest ended (code {process.returncode}) before the store reached {at_bytes:,} "
        "bytes: the input is too small to be killed mid-run"
    )


def _stored(store: Path) -> int:
    """Observations in the store, opened as citytwin opens it (a killed run's WAL replays)."""
    with open_store(f"duckdb:///{store}") as opened:
        return sum(row.observations for row in opened.stats())


def _whole_files(store: Path) -> set[int]:
    """Observation counts of the first 0, 1, 2 … files: each file is one day and one frame
    (one transaction), so a store holding whole frames only holds one of these counts."""
    con = duckdb.connect(str(store), read_only=True)
    try:
        rows = con.execute(
            "SELECT phenomenon_time::DATE AS day, count(*) FROM observations "
            "GROUP BY day ORDER BY day"
        ).fetchall()
    finally:
        con.close()
    per_file = [int(count) for _, count in rows]
    assert len(per_file) == FILES
    return {sum(per_file[:n]) for n in range(FILES + 1)}


def _compare(clean: Path, replayed: Path) -> dict[str, int]:
    """Counts that differ between the two stores, computed by DuckDB over both files at once:
    rows (all four columns) only in one of them, and repeated identities in the replayed one."""
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{clean}' AS clean (READ_ONLY)")
        con.execute(f"ATTACH '{replayed}' AS replayed (READ_ONLY)")
        counts = {
            "lost": "FROM clean.observations EXCEPT ALL FROM replayed.observations",
            "extra": "FROM replayed.observations EXCEPT ALL FROM clean.observations",
            "doubled": "SELECT datastream_id, phenomenon_time FROM replayed.observations "
            "GROUP BY ALL HAVING count(*) > 1",
            # ALL: a replayed file's rejected lines are not quarantined a second time
            "quarantine_lost": "SELECT source, line, reason FROM clean.quarantine "
            "EXCEPT ALL SELECT source, line, reason FROM replayed.quarantine",
            "quarantine_extra": "SELECT source, line, reason FROM replayed.quarantine "
            "EXCEPT ALL SELECT source, line, reason FROM clean.quarantine",
        }
        out = {}
        for name, sql in counts.items():
            row = con.execute(f"SELECT count(*) FROM ({sql})").fetchone()
            out[name] = int(row[0]) if row else -1
        return out
    finally:
        con.close()


@pytest.mark.timeout(120)
def test_kill9_mid_ingest_then_replay_loses_and_doubles_nothing(
    sdot_folder: Path, tmp_path: Path
) -> None:
    log = tmp_path / "ingest.log"
    clean = tmp_path / "clean.duckdb"
    _run(sdot_folder, clean, log)
    total, final_bytes = _stored(clean), _store_bytes(clean)

    store = tmp_path / "killed.duckdb"
    after_kill = []
    for share in KILL_AT:
        _run_and_kill(sdot_folder, store, log, int(share * final_bytes))
        after_kill.append(_stored(store))
    _run(sdot_folder, store, log)

    assert total > 1_000_000  # 6 files × 200 sensors × 180 rows × ~20 values
    assert after_kill[0] <= after_kill[1] < total, (after_kill, total)
    # a kill mid-batch leaves the batch it interrupted out entirely, and every earlier one in
    assert set(after_kill) <= _whole_files(clean), after_kill
    assert _stored(store) == total
    assert _compare(clean, store) == dict.fromkeys(
        ["lost", "extra", "doubled", "quarantine_lost", "quarantine_extra"], 0
    )
