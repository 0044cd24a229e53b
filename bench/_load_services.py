"""The load test's production topology on loopback, and what it measures of the processes.

::

    publisher ──MQTT QoS 1──► mosquitto ──► citytwin ingest mqtt ──► PostgreSQL ◄── citytwin serve
    (emulator)                (persistence)   (own process, COPY)     + PostGIS       (uvicorn)

Every service is a real process started here: a throwaway PostgreSQL 15 + PostGIS
(``scripts/postgres.sh``), citytwin's own mosquitto (:class:`~citytwin.mqtt.broker.Mosquitto`),
the ingest and the server as their CLI commands (``python -m citytwin.cli ingest mqtt`` and
``python -m citytwin.cli serve``). :class:`Topology` starts them in that order and stops them in
reverse; :func:`rss_mb` reads a process's resident memory for the memory series.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from _proc import HOST, free_port
from citytwin.mqtt.broker import Mosquitto
from citytwin.mqtt.ingest import MqttSummary

REPO = Path(__file__).resolve().parents[1]
PG_SCRIPT = REPO / "scripts" / "postgres.sh"
INGEST_CLIENT_ID = "citytwin-load-ingest"


def rss_mb(pid: int) -> float:
    """Resident set size of process ``pid`` in MiB (``VmRSS`` of ``/proc/PID/status``)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def start_postgres(directory: Path) -> str:
    """Start a throwaway PostgreSQL + PostGIS in ``directory``; return its URL."""
    done = subprocess.run(
        ["bash", str(PG_SCRIPT), "start", str(directory)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/postgres.sh start failed: {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1]


def stop_postgres(directory: Path) -> None:
    subprocess.run(
        ["bash", str(PG_SCRIPT), "stop", str(directory)],
        capture_output=True,
        timeout=120,
        check=False,
    )


def connect_store(store_url: str) -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection to a citytwin store URL; its ``?schema=NAME`` (citytwin's own
    parameter, unknown to libpq) becomes the search path."""
    parts = urlsplit(store_url)
    query = parse_qsl(parts.query)
    schema = dict(query).get("schema")
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    connection = psycopg.connect(urlunsplit(parts._replace(query=rest)), autocommit=True)
    if schema:
        connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    return connection


def _wait_listening(process: subprocess.Popen[bytes], port: int, what: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}: {log.read_text()[-800:]}")
        with suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {HOST}:{port} within 60 s")


def _stop(process: subprocess.Popen[bytes] | None, timeout: float = 60.0) -> int | None:
    """SIGINT (a clean stop: the ingest flushes and prints its summary), SIGKILL if it hangs."""
    if process is None or process.poll() is not None:
        return None if process is None else process.returncode
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


class Topology:
    """PostgreSQL, mosquitto, ``citytwin ingest mqtt`` and ``citytwin serve``, started in order.

    ``scratch`` holds everything (database, broker persistence, logs); it is removed on exit
    unless ``keep`` is set. ``autosave_s`` is the broker's persistence period (see
    ``bench/mqtt.py``: saving on every change caps mosquitto at a few hundred messages/s).
    With ``postgres_url`` (a running server, e.g. the tests' one) the store is a fresh schema
    on it, dropped on exit, instead of a server of its own.
    """

    def __init__(
        self, *, autosave_s: int = 10, keep: bool = False, postgres_url: str | None = None
    ) -> None:
        # in /tmp itself: the server runs as the postgres OS user, which must reach it
        self.scratch = Path(tempfile.mkdtemp(prefix="citytwin-load.", dir="/tmp"))
        os.chmod(self.scratch, 0o755)
        self.keep = keep
        self.broker = Mosquitto(self.scratch / "broker", autosave_s=autosave_s)
        self.postgres_url = postgres_url
        self.schema = f"load_{uuid.uuid4().hex[:12]}" if postgres_url else None
        self.store_url = f"{postgres_url}?schema={self.schema}" if postgres_url else ""
        self.server_port = free_port()
        self.ingest: subprocess.Popen[bytes] | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self._logs: list[IO[bytes]] = []

    @property
    def api_root(self) -> str:
        return f"http://{HOST}:{self.server_port}"

    def __enter__(self) -> Self:
        try:
            if self.postgres_url is None:
                self.store_url = start_postgres(self.scratch / "pg")
            self.broker.start()
            self.ingest = self._spawn("ingest", self.ingest_command())
            self.server = self._spawn("server", self.serve_command())
            _wait_listening(self.server, self.server_port, "citytwin serve", self.log("server"))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def ingest_command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "citytwin.cli",
            "ingest",
            "mqtt",
            "--store",
            self.store_url,
            "--broker",
            self.broker.url,
            "--topic",
            "devices/#",
            "--client-id",
            INGEST_CLIENT_ID,
        ]

    def serve_command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "citytwin.cli",
            "serve",
            "--store",
            self.store_url,
            "--host",
            HOST,
            "--port",
            str(self.server_port),
        ]

    def log(self, name: str) -> Path:
        return self.scratch / f"{name}.log"

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        out = self.log(name).open("wb")
        self._logs.append(out)
        # a wide terminal: the ingest's summary table must not wrap (it is parsed at the end)
        env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )

    def stop_ingest(self) -> dict[str, int]:
        """Stop the ingest cleanly and return the counts of its summary table."""
        _stop(self.ingest)
        return parse_summary(self.log("ingest").read_text(errors="replace"))

    def connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        return connect_store(self.store_url)

    def postmaster_pid(self) -> int | None:
        """The PostgreSQL server's pid when this topology started it."""
        if self.postgres_url is not None:
            return None
        return int((self.scratch / "pg" / "data" / "postmaster.pid").read_text().split()[0])

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        _stop(self.server)
        _stop(self.ingest)
        self.broker.stop()
        if self.postgres_url is None:
            stop_postgres(self.scratch / "pg")
        elif self.schema is not None:
            with suppress(psycopg.Error), psycopg.connect(self.postgres_url) as connection:
                connection.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema))
                )
        for out in self._logs:
            out.close()
        if not self.keep:
            shutil.rmtree(self.scratch, ignore_errors=True)


SUMMARY_COUNTS = MqttSummary.COUNTS  # the columns of the summary table it parses


def parse_summary(text: str) -> dict[str, int]:
    """The counts of the last ``mqtt ingest summary`` table in a ``citytwin ingest mqtt`` log.

    >>> parse_summary("│ 1,100 │ 1,100 │ 18,700 │ 0 │ 3 │ 0 │ 0 │ 9,000 │")["stored"]
    18700
    """
    rows = [
        line
        for line in text.splitlines()
        if len(re.findall(r"\d[\d,]*", line)) >= len(SUMMARY_COUNTS) and "│" in line
    ]
    if not rows:
        raise RuntimeError(f"no ingest summary in the log: {text[-600:]}")
    numbers = [int(n.replace(",", "")) for n in re.findall(r"\d[\d,]*", rows[-1])]
    return dict(zip(SUMMARY_COUNTS, numbers, strict=False))
