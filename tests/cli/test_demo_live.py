"""``citytwin demo`` serving: the live city arrives, the episode makes a spray task, the
operator's approval makes the emulated truck act, and Ctrl-C stops everything cleanly."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from citytwin.cli.demo import demo_control
from citytwin.control.config import load_control
from citytwin.emulator.live import LiveCity

SENSORS = 60
DEADLINE_S = 300.0  # generous: the build alone takes ~40 s on a busy 2-core machine
Demo = tuple[str, dict[str, str], "subprocess.Popen[str]", Callable[[], str]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def call(url: str, method: str = "GET", token: str | None = None, body: Any = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = DEADLINE_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen"
        time.sleep(0.5)


@pytest.fixture
def running_demo(tmp_path: Path) -> Iterator[Demo]:
    """The live demo in a subprocess: its root URL, its printed lines (key → value), itself and
    ``rest()``, the lines it printed after serving (call once it has exited)."""
    port = free_port()
    # the episode began 10 min ago: the back-filled windows already show it (no 5-min wait)
    args = [sys.executable, "-m", "citytwin.cli", "demo", "--out", str(tmp_path / "out"),
            "--sensors", str(SENSORS), "--buildings", "200", "--port", str(port),
            "--episode-after", "-600", "--step-seconds", "1",
            "--backfill-minutes", "20"]  # fmt: skip
    env = {**os.environ, "COLUMNS": "250", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None

    def read() -> None:
        for line in process.stdout or []:
            lines.put(line)

    reader = threading.Thread(target=read)
    reader.start()
    printed: dict[str, str] = {}
    seen: list[str] = []
    try:
        while "Ctrl-C to stop" not in seen[-1:]:
            try:
                line = lines.get(timeout=DEADLINE_S).strip()
            except queue.Empty:
                pytest.fail("the demo never said it was serving:\n" + "\n".join(seen))
            seen.append(line)
            assert process.poll() is None, "the demo exited:\n" + "\n".join(seen)
            key, _, value = line.partition(": ")
            printed[key] = value
        printed["output"] = "\n".join(seen)

        def rest() -> str:
            reader.join(10)
            return "".join(lines.get_nowait() for _ in range(lines.qsize()))

        yield f"http://127.0.0.1:{port}", printed, process, rest
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        process.wait(60)
        reader.join(10)
        process.stdout.close()


def test_the_demo_serves_the_live_loop_and_stops_on_ctrl_c(
    running_demo: Demo,
) -> None:
    root, printed, process, rest = running_demo
    assert f"dashboard {root}/ui/" in printed["output"]
    # the episode's dong, computed independently: the dong with most live sensors
    city = LiveCity.demo(seed=0, sensors=SENSORS, traffic=False)
    dong = Counter(s.dong_code for s in city.sensors).most_common(1)[0][0]
    assert f"dong {city.dongs[dong]} ({dong})" in printed["output"]

    status = call(f"{root}/control")
    assert status["rules"][0] == "dong-pm25-demo"
    first = wait_for(lambda: call(f"{root}/control")["watermark"], "a first live reading")
    wait_for(lambda: call(f"{root}/control")["watermark"] > first, "the watermark advancing")
    sensors = call(f"{root}/twin/sensors")["features"]
    live = {
        f["properties"]["thing"] for f in sensors if f["properties"]["thing"].startswith("mqtt:")
    }
    assert live == {f"mqtt:{s.id}" for s in city.sensors}

    waiting = wait_for(
        lambda: call(f"{root}/control/tasks?state=awaiting_approval"), "a task awaiting approval"
    )
    (task,) = [t for t in waiting if t["command"] == "spray"]
    assert (task["actuator"], task["rule"]) == (f"spray-truck:{dong}", "dong-pm25-demo")
    approved = call(f"{root}/control/tasks/{task['id']}/approve", "POST",
                    printed["operator token"], {"reason": "dust on CCTV"})  # fmt: skip
    assert any(step["actor"] == "demo-operator" for step in approved["history"])  # the printed key
    done = wait_for(
        lambda: (t := call(f"{root}/control/tasks/{task['id']}"))["state"] == "done" and t,
        "the truck's report",
    )
    assert done["detail"].startswith(f"sprayed dong {dong}")

    process.send_signal(signal.SIGINT)
    assert process.wait(60) == 0
    assert "stopped: live city, server and store closed" in rest()


def test_the_demo_control_file_puts_the_preset_on_the_live_city(tmp_path: Path) -> None:
    local = load_control(demo_control(tmp_path / "local.yaml", mqtt=None))
    broker = load_control(demo_control(tmp_path / "mqtt.yaml", mqtt="mqtt://10.0.0.5:1884"))
    assert {a.url for a in local.actuators} == {"emulated://demo"}
    assert {a.url for a in broker.actuators} == {"mqtt://10.0.0.5:1884/citytwin/tasks"}
    quick = local.rules[0]
    assert quick.name == "dong-pm25-demo"
    assert quick.when.window.total_seconds() == 300
    # the rest of the preset is untouched: its four rules follow the demo one
    assert [r.name for r in local.rules[1:]] == ["dong-pm25-high", "night-noise", "heat-wave"]
