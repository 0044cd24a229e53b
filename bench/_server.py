"""Benchmark plumbing: a uvicorn server in its own process and a lean keep-alive HTTP client.

The server runs in a subprocess so that the load generator and the server do not share a GIL.
Every server, citytwin or the bare baseline, is started by :func:`run_server` with the same
uvicorn settings (127.0.0.1, one worker, asyncio loop, h11, no access log), so the two differ only
in the application.

The client is a minimal HTTP/1.1 client on asyncio streams (``Content-Length`` bodies, one request
in flight per connection): a few tens of microseconds per request, so that the client is not what
limits the figures (``httpx2`` costs several hundred microseconds per request in the client).

Run as a program to serve: ``python bench/_server.py {citytwin,echo} --port P [--store-url U]``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Body, FastAPI
from fastapi.responses import JSONResponse

from _proc import HOST, cpu_seconds, free_port

TOKEN = "bench"
UVICORN_OPTIONS: dict[str, Any] = {
    "host": HOST,
    "workers": 1,
    "loop": "asyncio",
    "http": "h11",
    "log_level": "warning",
    "access_log": False,
}


# -- server side --------------------------------------------------------------------------------
def echo_app() -> FastAPI:
    """The baseline: a bare FastAPI app whose one route parses a JSON body and returns it, 201.

    The route is a plain ``def`` like citytwin's write routes, so both pay the same threadpool
    dispatch; FastAPI parses the body as JSON, as citytwin's ``json_body`` dependency does.
    """
    app = FastAPI()

    @app.post("/echo", status_code=201)
    def echo(body: Annotated[dict[str, Any], Body()]) -> JSONResponse:
        return JSONResponse(body, status_code=201)

    return app


def citytwin_app(store_url: str) -> FastAPI:
    from citytwin.api import create_app
    from citytwin.config import Settings

    return create_app(Settings(store_url=store_url, api_tokens=(TOKEN,)))


def _serve_main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="serve one benchmark app")
    parser.add_argument("app", choices=["citytwin", "echo"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store-url", default="duckdb://")
    args = parser.parse_args()
    app = echo_app() if args.app == "echo" else citytwin_app(args.store_url)
    uvicorn.run(app, port=args.port, **UVICORN_OPTIONS)


# -- server process -----------------------------------------------------------------------------
@dataclass
class Server:
    """A running server subprocess."""

    process: subprocess.Popen[bytes]
    port: int

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process (all its threads) has used so far."""
        return cpu_seconds(self.process.pid)


@contextmanager
def run_server(
    app: str, *, store_url: str = "duckdb://", timeout: float = 60.0
) -> Iterator[Server]:
    """Start ``app`` in a subprocess, wait until it accepts connections, stop it afterwards."""
    port = free_port()
    command = [sys.executable, __file__, app, "--port", str(port), "--store-url", store_url]
    process = subprocess.Popen(command)
    try:
        _wait_until_listening(process, port, timeout)
        yield Server(process, port)
    finally:
        process.send_signal(signal.SIGINT)  # uvicorn shuts down cleanly, the store is closed
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode} before listening")
        with suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {HOST}:{port} within {timeout:.0f} s")


# -- client side --------------------------------------------------------------------------------
def request_bytes(method: str, path: str, port: int, body: bytes | None = None) -> bytes:
    """One HTTP/1.1 request, authorised with the bench token, ready to write to a socket."""
    head = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}", f"Authorization: Bearer {TOKEN}"]
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    seconds: float  # from writing the request to reading the last byte of the response


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> Response:
    start = time.perf_counter()
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
    body = await reader.readexactly(length)
    return Response(int(head[9:12]), body, time.perf_counter() - start)


async def _drive(port: int, requests: Sequence[bytes], connections: int) -> list[Response]:
    responses: list[Response | None] = [None] * len(requests)
    cursor = iter(range(len(requests)))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(HOST, port, limit=2**26)
        try:
            for index in cursor:  # shared iterator: each request is sent exactly once
                responses[index] = await _exchange(reader, writer, requests[index])
        finally:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()

    await asyncio.gather(*(worker() for _ in range(min(connections, len(requests)))))
    return [r for r in responses if r is not None]


def send_all(port: int, requests: Sequence[bytes], *, connections: int) -> list[Response]:
    """Send every request over ``connections`` keep-alive connections; responses in order."""
    return asyncio.run(_drive(port, requests, connections))


if __name__ == "__main__":
    _serve_main()
