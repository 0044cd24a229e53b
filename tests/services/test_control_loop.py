"""The control loop's plumbing: stored frames become scoped readings (QC faults left out, new
devices picked up), and a controller built from a control file runs the real simulate-before-act
check — a signal plan that would jam SiouxFalls is refused with the assignment's own figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from citytwin.control.audit import AuditLog
from citytwin.control.tasks import TaskState
from citytwin.model.quality import Flag
from citytwin.services import scenarios
from citytwin.services.control import ControlLoop, build_controller
from citytwin.simulate import assignment_whatif as whatif
from citytwin.simulate.assignment import assign, load_tntp_case
from citytwin.store.base import ObservationFrame

T0 = pd.Timestamp("2026-06-01 09:00", tz="UTC")
MINUTE_US = 60_000_000
GAP = 1e-4


def catalogue(rows: list[tuple[int, str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"datastream_id": d, "observed_property": p, "thing": t, "dong_code": dong,
          "gu_code": dong[:5]} for d, p, t, dong in rows]
    )  # fmt: skip


def frame(
    ids: list[int], minutes: list[int], values: list[float], quality: list[int]
) -> ObservationFrame:
    times = [T0.value // 1000 + m * MINUTE_US for m in minutes]
    return ObservationFrame.from_arrays(ids, times, values, quality)


def control_file(folder: Path, body: str) -> Path:
    path = folder / "control.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def test_frames_become_scoped_readings_without_faults(tmp_path: Path) -> None:
    path = control_file(tmp_path, """
actuators: [{match: "truck:*", url: "log://trucks"}]
rules:
  - name: pm
    when: {property: pm25, scope: dong, window: 10min, on: {above: 75}}
    actions: [{task: {actuator: "truck:{dong}", command: spray}}]
""")  # fmt: skip
    known = [(1, "pm25", "mqtt:a", "1111051"), (2, "pm25", "mqtt:b", "1111051")]
    devices = list(known)
    calls = []

    def read_catalogue() -> pd.DataFrame:
        calls.append(len(devices))
        return catalogue(devices)

    loop = ControlLoop(build_controller(path, audit=None), read_catalogue, refresh_interval_s=0)
    loop.refresh()
    # sensor b reads 500 but QC flagged it a spike: the dong mean must be a's 80, not 290
    first = frame([1, 2], [0, 0], [80.0, 500.0], [0, int(Flag.SPIKE)])
    readings = loop.readings(first)
    assert readings[["sensor", "dong", "value"]].values.tolist() == [["mqtt:a", "1111051", 80.0]]
    assert loop.handle(first) == []  # the window is still open
    assert (loop.stats.suspect, loop.stats.unknown) == (2, 0)
    devices.append((3, "pm25", "mqtt:c", "1111052"))  # a new device appears
    alerts = loop.handle(frame([1, 3], [10, 10], [90.0, 20.0], [0, 0]))
    assert calls == [2, 3]  # the unknown datastream 3 made the loop re-read the catalogue
    kinds = [(a.kind, a.scope) for a in alerts]
    assert kinds == [("fired", "1111051"), ("approval_needed", "1111051")]
    assert alerts[0].message == "rule pm fired in 1111051: 80.0"  # not (80 + 500) / 2
    assert loop.stats.readings == 3  # a at 0 and 10 min, c at 10 min


def test_a_signal_plan_that_jams_the_network_is_refused(tmp_path: Path, shared_data: Path) -> None:
    sioux = shared_data / "tntp" / "SiouxFalls"
    root = tmp_path / "scenarios"
    scenarios.create(root, {"name": "peak", "model": "assignment", "base": {"network": str(sioux)},
                            "changes": [], "parameters": {"gap": GAP}})  # fmt: skip
    path = control_file(tmp_path, """
actuators: [{match: "signal:*", url: "log://signals"}]
rules:
  - name: jam
    when: {property: link_speed, scope: sensor, window: 15min, on: {below: 10}}
    actions:
      - task: {actuator: "signal:{sensor}", command: signal_plan, approval: none,
               parameters: {links: [["10", "15"]], factor: 0.5},
               check: {scenario: peak, max_tstt_increase_pct: 2}}
""")  # fmt: skip
    audit = AuditLog(tmp_path / "audit.jsonl")
    controller = build_controller(path, audit=audit, scenario_dir=root)
    times = [T0, T0 + pd.Timedelta(minutes=15)]
    alerts = controller.observe(pd.DataFrame({"property": "link_speed", "sensor": "link-10-15",
                                              "dong": None, "gu": None, "time": times,
                                              "value": [6.0, 30.0]}))  # fmt: skip
    (task,) = controller.tasks()
    assert task.state is TaskState.REJECTED
    assert alerts[-1].kind == "check_failed"
    network, demand = load_tntp_case(sioux)
    base = assign(network, demand, gap=GAP)
    cut = assign(whatif.with_capacity(network, [("10", "15")], factor=0.5), demand, gap=GAP)
    expected = 100 * (cut.tstt - base.tstt) / base.tstt
    check = next(e for e in audit.entries() if e.kind == "task.check")
    figures = check.payload["figures"]
    assert isinstance(figures, dict)
    assert np.isclose(figures["increase_pct"], expected, rtol=1e-7)
    assert expected > 2
    assert f"{expected:.1f} %" in alerts[-1].message
