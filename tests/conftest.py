"""Shared fixtures: paths to the real reference data, the CI rule that a skip is a failure, and
throwaway services on loopback (mosquitto, uvicorn, PostgreSQL + PostGIS via scripts/postgres.sh:
one server per session, a fresh schema per test)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn
from hypothesis import settings

from citytwin.errors import ConfigurationError
from citytwin.mqtt.broker import Mosquitto, find_mosquitto

# CI runs the same examples every time (a red CI must be reproducible); locally each run explores
# new ones. `pytest --hypothesis-seed=N` reproduces a local find.
settings.register_profile("ci", derandomize=True, print_blob=True)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
if IN_CI:
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: real public reference data (see its PROVENANCE.md)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA}")
    return SHARED_DATA


@contextmanager
def _serving(app: Any) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn exited while starting"
        assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh mosquitto on a free loopback port, stopped afterwards (without the binary the test
    skips locally, and so fails in CI)."""
    try:
        find_mosquitto()
    except ConfigurationError as exc:
        pytest.skip(str(exc))
    with Mosquitto(tmp_path / "broker") as running:
        yield running


@pytest.fixture(scope="session")
def serve() -> Callable[[Any], AbstractContextManager[str]]:
    """``with serve(app) as root:`` serves an ASGI app over real HTTP on a free loopback port
    (uvicorn in a thread) and stops it on exit; ``root`` is ``http://127.0.0.1:<port>``."""
    return _serving


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """URL of a small demo city store (150 sensors, a day of readings, bound to districts),
    built once per test session by ``citytwin demo``; tests only read it."""
    from typer.testing import CliRunner

    from citytwin.cli import app

    out = tmp_path_factory.mktemp("demo")
    args = ["demo", "--no-serve", "--out", str(out), "--sensors", "150", "--buildings", "500"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return f"duckdb:///{out / 'city.duckdb'}"


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a failed test: a missing server or file must not pass quietly."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if IN_CI and skipped and exitstatus == 0 and reporter is not None:
        reporter.write_line(f"CI: {len(skipped)} test(s) skipped; a skip fails in CI", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# -- PostgreSQL + PostGIS ---------------------------------------------------------------

PG_SCRIPT = REPO / "scripts" / "postgres.sh"
PG_MISSING = {3: "PostgreSQL server binaries", 4: "PostGIS"}  # exit codes of scripts/postgres.sh


def _pg(command: str, directory: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(PG_SCRIPT), command, directory],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a PostgreSQL 15 server with PostGIS on a free loopback port, for this session."""
    # in /tmp itself: the server runs as the postgres OS user, which cannot enter pytest's
    # per-user temporary directory, and a unix socket path must stay under 108 bytes
    directory = tempfile.mkdtemp(prefix="citytwin-pg.", dir="/tmp")
    started = _pg("start", directory)
    if started.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        reason = f"cannot start PostgreSQL: {started.stderr.strip()}"
        if started.returncode in PG_MISSING and not IN_CI:
            pytest.skip(f"{PG_MISSING[started.returncode]} missing; {reason}")
        pytest.fail(reason)
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        _pg("stop", directory)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres_schema_url(postgres_url: str) -> Iterator[str]:
    """A store URL on the session server naming a fresh schema, dropped after the test."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    yield f"{postgres_url}?schema={schema}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


# -- emulated feeds -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def sdot_days(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Path]:
    """``sdot_days(n)``: a folder of ``n`` emulated S-DoT 2020-format days (200 sensors, 6 hours
    of 2-minute rows each, with the emulator's faults: bad cells, gaps, duplicates; about 0.2 M
    observations a day), written once per session for each ``n``."""
    from datetime import datetime

    from citytwin.emulator import load_sites, write_sdot_2020

    folders: dict[int, Path] = {}

    def make(days: int) -> Path:
        if days not in folders:
            folder = tmp_path_factory.mktemp(f"sdot{days}")
            sites = load_sites(None, 200, seed=3)
            for day in range(days):
                write_sdot_2020(
                    folder / f"ALLDATA_202003{10 + day}.csv", sites, datetime(2020, 3, 10 + day),
                    6, seed=day,
                )  # fmt: skip
            folders[days] = folder
        return folders[days]

    return make
