"""``citytwin control check`` and ``dry-run``: the shipped control file is valid, bad files are
named, and a replay on the demo day finds exactly the firings an independent count finds."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from citytwin.cli import app
from citytwin.store import open_store
from citytwin.twin.state import SUSPECT, Twin

runner = CliRunner()
PRESET = resources.files("citytwin.control") / "presets" / "demo.yaml"


def test_check_lists_the_shipped_rules_and_actuators() -> None:
    result = runner.invoke(app, ["control", "check", str(PRESET)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    for name in ("dong-pm25-high", "night-noise", "heat-wave", "spray-truck:*", "signal:*"):
        assert name in result.output
    assert "mean pm25 per dong / 1h above 75 (off 50) × 2" in result.output


def test_check_names_the_rule_and_field_of_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "control.yaml"
    bad.write_text(
        "actuators: [{match: 'x:*', url: 'log://x', rate_limit: 'lots'}]\n"
        "rules: [{name: hot, when: {property: air_temp, window: 1h, on: {above: 33}}}]\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["control", "check", str(bad)])
    assert result.exit_code == 2
    assert "rule 'hot': when.property: unknown property 'air_temp'" in result.output
    bad.write_text("actuators: [{match: 'x:*', url: 'log://x', rate_limit: 'lots'}]\n")
    result = runner.invoke(app, ["control", "check", str(bad)])
    assert result.exit_code == 2
    assert "actuators.0.rate_limit" in result.output
    assert "expected COUNT/PERIOD" in result.output


def independent_firings(store_url: str, threshold: float) -> list[tuple[str, pd.Timestamp]]:
    """Per dong: hourly means of unflagged PM2.5; a firing wherever the mean crosses above."""
    with open_store(store_url) as store:
        catalogue = Twin(store).catalogue()
        streams = catalogue[catalogue["observed_property"] == "pm25"]
        frame = store.observations(datastream_ids=streams["datastream_id"].tolist())
    dong = dict(zip(streams["datastream_id"], streams["dong_code"], strict=True))
    good = (frame.quality & SUSPECT) == 0
    # the rule averages per scope and timestamp first, then over the window
    per_time = pd.DataFrame({
        "dong": [dong[i] for i in frame.datastream_id[good]],
        "time": pd.to_datetime(frame.phenomenon_time[good], unit="us", utc=True),
        "value": frame.result[good],
    }).groupby(["dong", "time"])["value"].mean().reset_index()  # fmt: skip
    per_time["hour"] = per_time["time"].dt.floor("h")
    hourly = per_time.groupby(["dong", "hour"])["value"].mean().unstack("dong").sort_index()
    firings = []
    for code in hourly.columns:
        above = (hourly[code] > threshold).to_numpy()
        crossing = above & ~np.concatenate([[False], above[:-1]])
        firings += [(str(code), end) for end in hourly.index[crossing] + pd.Timedelta(hours=1)]
    return sorted(firings)


def test_dry_run_on_the_demo_day_matches_an_independent_count(
    demo_store: str, tmp_path: Path
) -> None:
    with open_store(demo_store) as store:
        catalogue = Twin(store).catalogue()
        ids = catalogue.loc[catalogue["observed_property"] == "pm25", "datastream_id"].tolist()
        values = store.observations(datastream_ids=ids)
    clean = values.result[(values.quality & SUSPECT) == 0]
    threshold = float(np.round(np.percentile(clean, 75), 1))  # crossed now and then by some dong
    control = tmp_path / "control.yaml"
    control.write_text(
        "actuators: [{match: 'spray-truck:*', url: 'log://trucks'}]\n"
        "rules:\n"
        "  - name: pm\n"
        f"    when: {{property: pm25, scope: dong, window: 1h, on: {{above: {threshold}}}}}\n"
        "    actions: [{task: {actuator: 'spray-truck:{dong}', command: spray}}]\n",
        encoding="utf-8",
    )
    args = ["control", "dry-run", str(control), "--store", demo_store, "--json",
            "--start", "2020-03-15T00:00+09:00", "--end", "2020-03-16T00:00+09:00"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    fired = sorted(
        (e["scope"], pd.Timestamp(e["window_end"])) for e in events if e["kind"] == "fired"
    )
    expected = independent_firings(demo_store, threshold)
    assert len(expected) > 0
    assert fired == expected
    first = next(e for e in events if e["kind"] == "fired")
    assert first["actions"] == f"task spray-truck:{first['scope']} spray (approval required)"
