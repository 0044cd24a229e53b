"""PostgreSQL restarted (``pg_ctl restart -m fast``) twice while ``citytwin ingest sdot`` writes
into it: the ingest retries the batch the restart broke and finishes, and the store then holds
exactly the observations a clean run stores — none lost, none doubled.

Why this holds (see docs/postgres.md, "Restarts and retries"): a fast restart ends every session
and rolls back its open transaction, so a frame is in the store whole or not at all; the store
reports the lost session as a transient ``StoreError`` and reconnects on its next call; the
ingest pipeline makes the same idempotent call again with backoff (``citytwin.ingest.retry``).

The test has its own throwaway server (scripts/postgres.sh in a temporary directory): restarting
the session's shared one would break the other tests' connections.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from citytwin.errors import StoreUnavailableError
from citytwin.ingest import read_feed
from citytwin.ingest.base import FeedBatch
from citytwin.ingest.pipeline import Ingestor, ingest
from citytwin.ingest.retry import RetryPolicy, is_transient
from citytwin.store.base import ObservationFrame, WriteResult
from citytwin.store.memory import MemoryStore
from citytwin.store.postgres import SessionLostError

REPO = Path(__file__).resolve().parents[2]
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
FILES = 4
RESTART_AT = (0.3, 0.65)  # shares of a clean run's observations at which the server restarts
RUN_TIMEOUT_S = 90.0


def _postgres_sh(command: str, directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "postgres.sh"), command, str(directory)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Path]]:
    """(URL, directory) of a PostgreSQL server of this module's own."""
    directory = Path(tempfile.mkdtemp(prefix="citytwin-pgr.", dir="/tmp"))  # see conftest
    started = _postgres_sh("start", directory)
    if started.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        reason = f"cannot start PostgreSQL: {started.stderr.strip()}"
        if started.returncode in (3, 4) and not IN_CI:  # binaries or PostGIS missing
            pytest.skip(reason)
        pytest.fail(reason)
    try:
        yield started.stdout.strip().splitlines()[-1], directory
    finally:
        _postgres_sh("stop", directory)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def sdot_folder(sdot_days: Callable[[int], Path]) -> Path:
    """Four emulated S-DoT days (tests/conftest.py)."""
    return sdot_days(FILES)


def _restart(directory: Path) -> None:
    """``pg_ctl restart -m fast``: every session ends, open transactions roll back. The server
    keeps its port and options (postmaster.opts); its output goes to the log, never to a pipe
    this test would wait on."""
    subprocess.run(
        ["runuser", "-u", "postgres", "--"] * (os.getuid() == 0)
        + [str(PG_BIN / "pg_ctl"), "-D", str(directory / "data"), "-l",
           str(directory / "server.log"), "-m", "fast", "-w", "-t", "60", "restart"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=90, check=True,
    )  # fmt: skip


def _command(folder: Path, url: str) -> list[str]:
    return [sys.executable, "-m", "citytwin.cli", "ingest", "sdot", str(folder), "--store", url]


def _count(url: str, schema: str) -> int:
    """Observations in ``schema`` (0 before the ingest created it); -1 while the server is
    restarting."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as con:
            if _scalar(con, f"SELECT to_regclass('{schema}.observations') IS NULL"):
                return 0
            return int(str(_scalar(con, f"SELECT count(*) FROM {schema}.observations")))
    except psycopg.OperationalError:
        return -1


def _scalar(con: psycopg.Connection[tuple[object, ...]], query: str) -> object:
    row = con.execute(query.encode()).fetchone()  # the test's own fixed SQL
    assert row is not None
    return row[0]


def _ingest_with_restarts(folder: Path, url: str, directory: Path, at: list[int]) -> str:
    """Run the ingest into schema ``restarted``, restarting the server once the schema holds
    each count of ``at``; return the command's output (it must succeed)."""
    process = subprocess.Popen(
        _command(folder, f"{url}?schema=restarted"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        for mark in at:
            while _count(url, "restarted") < mark:
                assert process.poll() is None, f"ended before {mark:,} observations were stored"
                assert time.monotonic() < deadline, "the ingest made no progress"
                time.sleep(0.05)
            _restart(directory)
        output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 0, output[-3000:]
    return output


def _differences(url: str) -> dict[str, int]:
    """Rows (all columns) only in one schema, and repeated identities, between the clean run's
    schema and the restarted run's."""
    queries = {
        "lost": "SELECT * FROM clean.observations EXCEPT ALL SELECT * FROM restarted.observations",
        "extra": "SELECT * FROM restarted.observations EXCEPT ALL SELECT * FROM clean.observations",
        "doubled": "SELECT datastream_id, phenomenon_time FROM restarted.observations "
        "GROUP BY 1, 2 HAVING count(*) > 1",
        "quarantine_lost": "SELECT source, line, reason FROM clean.quarantine "
        "EXCEPT ALL SELECT source, line, reason FROM restarted.quarantine",
        "quarantine_extra": "SELECT source, line, reason FROM restarted.quarantine "
        "EXCEPT ALL SELECT source, line, reason FROM clean.quarantine",
        "things_differ": "(SELECT id, doc::text FROM clean.things EXCEPT SELECT id, doc::text FROM "
        "restarted.things) UNION ALL (SELECT id, doc::text FROM restarted.things EXCEPT "
        "SELECT id, doc::text FROM clean.things)",
    }
    with psycopg.connect(url, autocommit=True) as con:
        return {
            name: int(str(_scalar(con, f"SELECT count(*) FROM ({query}) q")))
            for name, query in queries.items()
        }


@pytest.mark.timeout(300)
def test_postgres_restarts_mid_ingest_lose_and_double_nothing(
    server: tuple[str, Path], sdot_folder: Path
) -> None:
    url, directory = server
    clean = subprocess.run(
        _command(sdot_folder, f"{url}?schema=clean"), capture_output=True, text=True,
        timeout=RUN_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert clean.returncode == 0, clean.stderr[-3000:]
    total = _count(url, "clean")
    assert total > 600_000  # 4 files × 200 sensors × 180 rows × ~20 values

    output = _ingest_with_restarts(
        sdot_folder, url, directory, [int(share * total) for share in RESTART_AT]
    )

    retries = [line for line in output.splitlines() if "retrying in" in line]
    assert retries, output[-3000:]  # the restarts hit the ingest: it retried, then finished
    assert "citytwin?schema=restarted failed while writing" in retries[0]
    assert "(try 1 of 8)" in retries[0]
    assert _count(url, "restarted") == total
    assert _differences(url) == dict.fromkeys(
        ["lost", "extra", "doubled", "quarantine_lost", "quarantine_extra", "things_differ"], 0
    )


class _FlakyStore(MemoryStore):
    """A memory store whose observation writes lose the session ``failures`` times first, as a
    PostgreSQL store does while its server restarts."""

    url = "postgresql://city:secret@db.example:5432/twin"

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def write_observations(self, frame: ObservationFrame) -> WriteResult:
        if self.failures > 0:
            self.failures -= 1
            raise SessionLostError("server closed the connection unexpectedly")
        return super().write_observations(frame)


def _one_day(folder: Path) -> list[FeedBatch]:
    return list(read_feed("sdot", str(sorted(folder.iterdir())[0])))


def test_a_lost_session_is_retried_then_reported_with_store_and_batch(
    sdot_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    batches = _one_day(sdot_folder)
    fast = RetryPolicy(attempts=3, backoff_min_s=0.01, backoff_max_s=0.02)
    clean = MemoryStore()
    expected = ingest(batches, clean).feeds["sdot"]

    flaky = _FlakyStore(failures=2)  # the third try of the first frame succeeds
    with caplog.at_level(logging.WARNING, logger="citytwin.ingest.retry"):
        report = ingest(batches, flaky, ingestor=Ingestor(flaky, retry=fast)).feeds["sdot"]
    assert (report.stored, report.quarantined) == (expected.stored, expected.quarantined)
    assert len(flaky.observations()) == len(clean.observations()) > 100_000
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert "try 1 of 3" in warnings[0]
    assert "retrying in 0.0 s" in warnings[0]
    assert "postgresql://city:***@db.example:5432/twin" in warnings[0]

    gone = _FlakyStore(failures=3)  # still down after the last try: a clear error, no hang
    with pytest.raises(StoreUnavailableError) as raised:
        ingest(batches, gone, ingestor=Ingestor(gone, retry=fast))
    message = str(raised.value)
    assert "store postgresql://city:***@db.example:5432/twin still unavailable after 3" in message
    assert "secret" not in message
    assert f"from {batches[0].source}" in message
    assert "observations (2020-03-" in message
    assert is_transient(raised.value)
    assert not gone.observations().datastream_id.size
