"""Issue 7's acceptance, end to end over a real mosquitto and a real HTTP server.

The live city publishes S-DoT-like readings over MQTT; the server ingests them (its durable MQTT
subscriber), the control loop evaluates the demo's fine-dust rule, and tasks go back to the city's
actuators over MQTT. One dong gets a pollution episode: the rule fires once, the spray task waits
for approval, a public key is refused (403, recorded), an operator approves with the CLI, the
truck acknowledges and acts, and the dong's PM2.5 falls in the readings that follow. The message
sign of the same rule never answers: it is retried, expires, and the alert names the rule. At the
end the audit log verifies, and one edited byte makes ``citytwin audit verify`` name the entry.
"""

from __future__ import annotations

import copy
import json
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI
from typer.testing import CliRunner

from citytwin.api import create_app
from citytwin.cli import app as cli
from citytwin.config import Settings
from citytwin.control.audit import AuditLog
from citytwin.emulator.live import LiveCity
from citytwin.emulator.live_mqtt import LiveCityRunner
from citytwin.emulator.processes import KST
from citytwin.mqtt.broker import Mosquitto
from citytwin.store import open_store
from citytwin.twin.state import Twin

KEYS = ("ops-71=operator@op-kim", "pub-72=public@viewer")
START = datetime(2026, 5, 12, 9, 0, tzinfo=KST)
STEP = timedelta(minutes=2)
EPISODE_START = START + timedelta(minutes=10)
WAIT_S = 15.0


def control_file(folder: Path, broker: str) -> Path:
    path = folder / "control.yaml"
    path.write_text(
        f"""
actuators:
  - match: "spray-truck:*"
    url: {broker}/citytwin/tasks
    ack_timeout: 5s
    expires: 10min
  - match: "vms:*"
    url: {broker}/citytwin/tasks
    ack_timeout: 1s
    max_attempts: 2
    expires: 10min
rules:
  - name: dong-pm25-high
    department: environment
    when: {{property: pm25, scope: dong, window: 10min, on: {{above: 75}}, off: {{below: 50}},
           for: 2}}
    cooldown: 2h
    actions:
      - alert: {{message: "PM2.5 {{value:.0f}} in {{dong}}"}}
      - task: {{actuator: "spray-truck:{{dong}}", command: spray, parameters: {{minutes: 60}}}}
      - task: {{actuator: "vms:{{dong}}", command: show, approval: none,
               parameters: {{text: "fine dust: wear a mask"}}}}
""",
        encoding="utf-8",
    )
    return path


def call(root: str, method: str, path: str, token: str | None = None, body: Any = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(root + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def watermark(root: str) -> pd.Timestamp | None:
    mark = call(root, "GET", "/control")[1]["watermark"]
    return None if mark is None else pd.Timestamp(mark)


def step_until_seen(runner: LiveCityRunner, root: str, moment: datetime) -> None:
    """Publish the readings at ``moment`` and wait until the control loop has seen them."""
    runner.publish_step(moment)
    wait_for(lambda: (watermark(root) or pd.Timestamp(0, tz="UTC")) >= moment, f"{moment}")


def dong_pm25(app: FastAPI, dong: str) -> pd.Series:
    """The dong's mean PM2.5 per reading time, from the twin's store."""
    access = app.state.store_access
    with access.lock:
        store = access.store()
        catalogue = Twin(store).catalogue()
        mine = catalogue[
            (catalogue["observed_property"] == "pm25") & (catalogue["dong_code"] == dong)
        ]
        frame = store.observations(datastream_ids=mine["datastream_id"].tolist())
    times = pd.to_datetime(frame.phenomenon_time, unit="us", utc=True)
    return pd.Series(frame.result, index=times).groupby(level=0).mean()


def expected_pm25(city: LiveCity, dong: str, moments: list[datetime]) -> pd.Series:
    """The same dong in an identical city that nobody sprayed (the counterfactual)."""
    means = []
    for moment in moments:
        values = [
            m["values"]["pm25"] for m in city.step(moment) if m["properties"]["dong_code"] == dong
        ]
        means.append(float(np.mean(values)))
    return pd.Series(means, index=pd.DatetimeIndex(moments).tz_convert("UTC"))


def test_the_loop_closes_over_mqtt(
    broker: Mosquitto, serve: Callable[[Any], AbstractContextManager[str]], tmp_path: Path
) -> None:
    city = LiveCity.demo(seed=5, sensors=60, traffic=False)
    dong = Counter(s.dong_code for s in city.sensors).most_common(1)[0][0]
    city.raise_pm(dong, start=EPISODE_START, duration=timedelta(hours=3), add=120.0)
    untouched = copy.deepcopy(city)
    audit_path = tmp_path / "audit.jsonl"
    settings = Settings(
        store_url="memory://", mqtt_url=broker.url, mqtt_ingest_topics=("citytwin/devices/#",),
        api_tokens=KEYS, control_file=str(control_file(tmp_path, broker.url)),
        audit_log=str(audit_path),
    )  # fmt: skip
    with open_store("memory://") as store:
        app = create_app(settings, store=store)
        with (
            serve(app) as root,
            LiveCityRunner(city, broker.url, traffic=False, unresponsive=[f"vms:{dong}"]) as runner,
        ):
            wait_for(lambda: app.state.mqtt_ingest.ingest.connected, "the server's subscriber")
            moment = START
            while not call(root, "GET", "/control/tasks?state=awaiting_approval")[1]:
                assert moment < START + timedelta(minutes=40), (
                    f"the rule never fired: {call(root, 'GET', '/control')[1]}"
                )
                step_until_seen(runner, root, moment)
                moment += STEP
            # two 10-minute windows over 75 after the episode starts at 09:10: fires at 09:30
            (task,) = call(root, "GET", "/control/tasks?state=awaiting_approval")[1]
            assert (task["actuator"], task["rule"]) == (f"spray-truck:{dong}", "dong-pm25-high")
            assert pd.Timestamp(task["windowEnd"]) == pd.Timestamp(START + timedelta(minutes=30))

            status, refused = call(root, "POST", f"/control/tasks/{task['id']}/approve", "pub-72",
                                   {"reason": "I am the public"})  # fmt: skip
            assert status == 403
            assert "needs role" in refused["message"]
            args = ["control", "approve", task["id"], "--reason", "dust on CCTV",
                    "--api", root, "--token", "ops-71"]  # fmt: skip
            approved = CliRunner().invoke(cli, args)
            assert approved.exit_code == 0, approved.output
            sprayed_at = runner.now
            assert sprayed_at is not None
            wait_for(
                lambda: call(root, "GET", f"/control/tasks/{task['id']}")[1]["state"] == "done",
                "the truck's report",
            )

            after = [sprayed_at + STEP * k for k in range(1, 6)]
            for moment in after:
                step_until_seen(runner, root, moment)
            wait_for(
                lambda: any(a["kind"] == "task_expired"
                            for a in call(root, "GET", "/control/alerts")[1]),
                "the silent sign's expiry",
            )  # fmt: skip
            alerts = call(root, "GET", "/control/alerts")[1]
            tasks = call(root, "GET", "/control/tasks")[1]
            observed = dong_pm25(app, dong)

    # the rule fired once; one spray task, done, approved by the operator
    fired = [a for a in alerts if a["kind"] == "fired"]
    assert [(a["rule"], a["scope"]) for a in fired] == [("dong-pm25-high", dong)]
    states = sorted((t["command"], t["state"]) for t in tasks)
    assert states == [("show", "expired"), ("spray", "done")]
    spray = next(t for t in tasks if t["command"] == "spray")
    assert ("approved", "op-kim") in [(h["to"], h["actor"]) for h in spray["history"]]
    expired = next(a for a in alerts if a["kind"] == "task_expired")
    assert expired["rule"] == "dong-pm25-high"
    assert "no acknowledgement after 2 attempt(s)" in expired["message"]

    # PM2.5 falls: below the readings just before, and ~20 % below the unsprayed city
    later = pd.DatetimeIndex(after).tz_convert("UTC")
    before = observed[observed.index < pd.Timestamp(sprayed_at)].tail(5).mean()
    assert observed.loc[later].mean() < 0.9 * before
    counterfactual = expected_pm25(untouched, dong, after)
    ratio = observed.loc[later] / counterfactual
    assert ratio.max() < 0.85
    assert ratio.min() > 0.75

    # the audit holds the whole chain, verifies, and names an edited entry
    entries = AuditLog(audit_path).entries()
    kinds = [e.kind for e in entries]
    assert kinds.count("rule.fired") == 1
    assert {"task.awaiting_approval", "task.approved", "task.sent", "task.acknowledged",
            "task.done", "task.expired", "access.denied"} <= set(kinds)  # fmt: skip
    verify = CliRunner().invoke(cli, ["audit", "verify", str(audit_path)])
    assert verify.exit_code == 0, verify.output
    raw = bytearray(audit_path.read_bytes())
    target = next(e for e in entries if e.kind == "task.approved" and e.actor == "op-kim")
    line_start = raw.rfind(b"\n", 0, raw.index(target.hash.encode())) + 1
    position = raw.index(b"op-kim", line_start)
    raw[position] = ord("x")  # op-kim -> xp-kim: who approved is rewritten
    audit_path.write_bytes(bytes(raw))
    broken = CliRunner().invoke(cli, ["audit", "verify", str(audit_path)])
    assert broken.exit_code == 1
    assert f"entry {target.seq}" in broken.output
