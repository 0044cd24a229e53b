"""A mosquitto broker of citytwin's own, on loopback, with persistence.

The Debian package ``mosquitto`` provides the binary (``scripts/system-deps.sh mosquitto``
installs it; ``make test`` does so). :class:`Mosquitto` writes a configuration into a directory
of its own, starts the broker there and can stop, kill and restart it — the tests use that to
take the broker away mid-stream. Persistence is on, so QoS 1 messages queued for a durable
(persistent-session) subscriber survive a restart. By default it is written on every change:
even a SIGKILL loses nothing acknowledged, but mosquitto rewrites its whole state each time, which
caps a building queue at a few hundred messages/s. ``autosave_s=N`` saves every N seconds instead
(tens of thousands of messages/s; a SIGKILL may then lose the last N seconds, a normal stop saves
everything)::

    with Mosquitto(tmp_path) as broker:
        print(broker.url)          # mqtt://127.0.0.1:<free port>
        broker.restart()           # same port, same persisted sessions and queues

>>> parse_broker_url("mqtt://127.0.0.1:1884")
BrokerAddress(host='127.0.0.1', port=1884)
>>> parse_broker_url("localhost")
BrokerAddress(host='localhost', port=1883)
"""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import NamedTuple, Self
from urllib.parse import urlsplit

from citytwin.errors import ConfigurationError

DEFAULT_PORT = 1883
START_TIMEOUT_S = 10.0
# a queued-message limit high enough that a durable subscriber away during a restart loses nothing
# at benchmark rates (mosquitto's default of 1000 would drop QoS 1 messages beyond it)
MAX_QUEUED = 10_000_000


class BrokerAddress(NamedTuple):
    host: str
    port: int


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://host[:port]`` (or a bare ``host[:port]``) → host and port; names the bad part."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme != "mqtt":
        raise ConfigurationError(
            f"broker URL {url!r}: scheme {parts.scheme!r} is not supported; expected "
            "mqtt://host:port (TLS brokers are not supported yet)"
        )
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ConfigurationError(
            f"broker URL {url!r}: the port is not a number in 1..65535"
        ) from None
    if not parts.hostname:
        raise ConfigurationError(f"broker URL {url!r}: no host; expected mqtt://host:port")
    return BrokerAddress(parts.hostname, port)


def find_mosquitto() -> str:
    """Path of the mosquitto binary; a clear error saying how to install it otherwise."""
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).is_file():
            return candidate
    raise ConfigurationError(
        "mosquitto is not installed; install the Debian package with "
        "'bash scripts/system-deps.sh mosquitto' (or 'apt-get install mosquitto')"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class Mosquitto:
    """A mosquitto process with its configuration, persistence and log under ``directory``."""

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        autosave_s: int = 0,
    ):
        if autosave_s < 0:
            raise ConfigurationError(f"autosave_s={autosave_s}: expected 0 (every change) or more")
        self.directory = Path(directory)
        self.host = host
        self.port = port or free_port(host)
        self.autosave_s = autosave_s
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "mosquitto.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def config(self) -> str:
        """The configuration file's text (loopback only; anonymous clients allowed on it)."""
        return "\n".join(
            [
                f"listener {self.port} {self.host}",
                "allow_anonymous true",
                # run as whoever started it: as root, mosquitto would switch to the user
                # 'mosquitto', who cannot write this directory (a 0700 temporary one in tests)
                f"user {getpass.getuser()}",
                "persistence true",
                f"persistence_location {self.directory}/",
                # interval counts changes when autosave_on_changes is true, seconds otherwise
                f"autosave_interval {self.autosave_s or 1}",
                f"autosave_on_changes {'false' if self.autosave_s else 'true'}",
                f"max_queued_messages {MAX_QUEUED}",
                "max_inflight_messages 1000",
                "persistent_client_expiration 1d",
                f"log_dest file {self.log_path}",
                "log_type error",
                "log_type warning",
                "",
            ]
        )

    def start(self) -> Self:
        """Start the broker and wait until it accepts connections."""
        if self.running:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "mosquitto.conf"
        conf.write_text(self.config())
        self._process = subprocess.Popen(
            [find_mosquitto(), "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _listening(self.host, self.port):
            if self._process.poll() is not None:
                err = (
                    self._process.stderr.read().decode(errors="replace")
                    if self._process.stderr
                    else ""
                )
                raise ConfigurationError(
                    f"mosquitto exited with code {self._process.returncode} on port {self.port}: "
                    f"{err.strip() or self._log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise ConfigurationError(
                    f"mosquitto did not listen on {self.host}:{self.port} within "
                    f"{START_TIMEOUT_S:.0f} s; log: {self._log_tail()}"
                )
            time.sleep(0.02)
        return self

    def stop(self, *, kill: bool = False) -> None:
        """Terminate (persistence saved) or, with ``kill``, SIGKILL the broker. Idempotent."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()

    def restart(self, *, kill: bool = False, pause_s: float = 0.0) -> None:
        """Stop (or kill) and start again on the same port with the same persistence."""
        self.stop(kill=kill)
        time.sleep(pause_s)
        self.start()

    def _log_tail(self, lines: int = 5) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
