"""Declarative rules: validation on load, hysteresis, persistence, cooldown, active hours,
incremental evaluation and dry runs. Expected values come from independent numpy computations on
the generated series, not from the engine's own output."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from citytwin.control.rule_engine import RuleState, dry_run, evaluate
from citytwin.control.rules import Rule, load_rules, parse_rule
from citytwin.errors import ValidationError

T0 = pd.Timestamp("2026-11-02 00:00", tz="UTC")


def pm_rule(**when: Any) -> Rule:
    base: dict[str, Any] = {"property": "pm25", "window": "1h", "on": {"above": 75}}
    cooldown = when.pop("cooldown", None)
    data: dict[str, Any] = {"name": "pm", "when": base | when}
    if cooldown is not None:
        data["cooldown"] = cooldown
    return parse_rule(data)


def hourly(values: Sequence[float] | np.ndarray, *, start: pd.Timestamp = T0) -> pd.DataFrame:
    times = pd.date_range(start, periods=len(values), freq="h")
    return pd.DataFrame({"scope_key": "s1", "time": times, "value": np.asarray(values, float)})


def fired_ends(events: pd.DataFrame) -> list[pd.Timestamp]:
    return list(events.loc[events["kind"] == "fired", "window_end"])


def test_yaml_rule_with_on_off_keys_loads(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "- name: pm25-dong\n"
        "  when: {property: pm25, scope: dong, window: 1h, on: {above: 75},\n"
        "         off: {below: 60}, for: 2, unit: µg/m³, active_hours: '07:00-22:00'}\n"
        "  cooldown: 3h\n"
        "  actions:\n"
        "    - alert: {message: 'PM2.5 {value:.0f} in {dong}'}\n"
        "    - task: {actuator: 'spray-truck:{dong}', command: spray, approval: required,\n"
        "             check: {scenario: rush-hour, max_tstt_increase_pct: 5}}\n"
        "- name: night-noise\n"
        "  when: {property: noise, window: 1h, on: {above: 55}, active_hours: '22:00-07:00'}\n",
        encoding="utf-8",
    )
    first, second = load_rules(path)
    assert (first.when.on.value, first.when.off_value, first.when.for_windows) == (75, 60, 2)
    assert first.when.active_hours == (7 * 60, 22 * 60)
    assert first.cooldown == pd.Timedelta(hours=3)
    assert second.when.active_hours == (22 * 60, 7 * 60)


def test_hysteresis_fires_once_on_noisy_crossing() -> None:
    rng = np.random.default_rng(7)
    noisy = 75 + rng.uniform(-6, 6, 24)
    noisy[noisy == 75] = 76
    values = np.concatenate([np.full(6, 40.0), noisy, np.full(6, 40.0)])
    with_band = evaluate(pm_rule(off={"below": 60}), hourly(values))[0]
    without = evaluate(pm_rule(), hourly(values))[0]
    above = values > 75
    up_crossings = int(np.sum(above[1:] & ~above[:-1]) + above[0])
    assert up_crossings > 3  # the noise really does cross the threshold repeatedly
    assert (with_band["kind"] == "fired").sum() == 1
    assert (with_band["kind"] == "cleared").sum() == 1
    assert (without["kind"] == "fired").sum() == up_crossings


def test_for_two_needs_two_consecutive_windows() -> None:
    events = evaluate(pm_rule(**{"for": 2}), hourly([80, 50, 80, 80, 50]))[0]
    assert fired_ends(events) == [T0 + pd.Timedelta(hours=4)]  # end of the 4th hour


def test_cooldown_suppresses_refire() -> None:
    values = [80, 50, 80, 80, 80, 80]
    free = evaluate(pm_rule(), hourly(values))[0]
    cooled = evaluate(pm_rule(cooldown="3h"), hourly(values))[0]
    assert fired_ends(free) == [T0 + pd.Timedelta(hours=1), T0 + pd.Timedelta(hours=3)]
    # second firing waits until 3 h after the first (end of hour 1 + 3 h)
    assert fired_ends(cooled) == [T0 + pd.Timedelta(hours=1), T0 + pd.Timedelta(hours=4)]


def test_active_hours_suppress_night_firing() -> None:
    start = pd.Timestamp("2026-11-02 22:00", tz="Asia/Seoul").tz_convert("UTC")
    readings = hourly(np.full(12, 90.0), start=start)  # 22:00 .. 09:00 KST, always high
    night = evaluate(pm_rule(active_hours="07:00-22:00"), readings)[0]
    always = evaluate(pm_rule(), readings)[0]
    assert fired_ends(always) == [start + pd.Timedelta(hours=1)]
    (first,) = fired_ends(night)
    local = first.tz_convert("Asia/Seoul")
    assert (local.hour, local.day) == (8, 3)  # the 07:00–08:00 KST window is the first allowed


def synthetic_dongs(seed: int) -> pd.DataFrame:
    """Ten-minute readings of three sensors in each of two dongs for three days."""
    rng = np.random.default_rng(seed)
    times = pd.date_range(T0, periods=6 * 24 * 3, freq="10min")
    hours = np.arange(len(times)) / 6
    frames = []
    for dong, phase in (("Jongno", 0.0), ("Jung", 5.0)):
        for sensor in range(3):
            level = (
                65 + 25 * np.sin(2 * np.pi * (hours - phase) / 24) + rng.normal(0, 6, len(times))
            )
            frames.append(pd.DataFrame({"scope_key": dong, "time": times, "value": level}))
            del sensor
    return pd.concat(frames, ignore_index=True).sort_values("time", ignore_index=True)


def test_incremental_equals_batch() -> None:
    rule = pm_rule(
        scope="dong", off={"below": 60}, cooldown="2h", active_hours="07:00-22:00", **{"for": 2}
    )
    readings = synthetic_dongs(3)
    batch, _ = evaluate(rule, readings)
    cuts = [T0 + pd.Timedelta(minutes=m) for m in (95, 1234, 2500)]  # mid-window cuts
    state, parts = RuleState(), []
    for lo, hi in zip([T0 - pd.Timedelta(1, "D"), *cuts], [*cuts, None], strict=True):
        chunk = readings[(readings["time"] >= lo) & ((readings["time"] < hi) if hi else True)]
        events, state = evaluate(rule, chunk, state=state, until=hi)
        parts.append(events)
    stream = pd.concat(parts, ignore_index=True)
    assert len(batch) > 4
    pd.testing.assert_frame_equal(stream, batch, check_dtype=False)


def test_dong_value_is_mean_over_its_sensors() -> None:
    readings = synthetic_dongs(5)
    events, _ = evaluate(pm_rule(scope="dong", off={"below": 60}), readings)
    row = events[events["kind"] == "fired"].iloc[0]
    start = row["window_end"] - pd.Timedelta(hours=1)
    inside = readings[
        (readings["scope_key"] == row["scope"])
        & (readings["time"] >= start)
        & (readings["time"] < row["window_end"])
    ]
    assert row["value"] == pytest.approx(inside["value"].mean())
    assert row["value"] > 75


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ({"property": "pm2.5"}, "unknown property 'pm2.5'; did you mean pm25"),
        ({"property": "xyzzy"}, "see `citytwin vocabulary`"),
        ({"unit": "mg/m3"}, "unit mismatch: 'mg/m3' given, but pm25 is measured in 'µg/m³'"),
        ({"on": {"above": 2000}}, "on threshold 2000 is outside the valid range of pm25 [0, 1500]"),
        (
            {"off": {"above": 80}},
            "inverted hysteresis: off threshold 80 must be <= on threshold 75",
        ),
        ({"window": "soon"}, "when.window: 'soon' is not a duration"),
        ({"tresh": 3}, "when.tresh: Extra inputs are not permitted"),
    ],
)
def test_validation_errors_name_rule_and_field(when: dict[str, Any], expected: str) -> None:
    base = {"property": "pm25", "window": "1h", "on": {"above": 75}}
    with pytest.raises(ValidationError) as info:
        parse_rule({"name": "bad-rule", "when": base | when})
    assert str(info.value).startswith("rule 'bad-rule': ")
    assert expected in str(info.value)


def test_unit_accepts_symbol_or_ucum_and_link_speed_below() -> None:
    rule = parse_rule(
        {
            "name": "jam",
            "when": {
                "property": "link_speed",
                "window": "15min",
                "unit": "km/h",
                "on": {"below": 10},
            },
        }
    )
    assert pm_rule(unit="ug/m3").when.unit == "ug/m3"
    times = pd.date_range(T0, periods=8, freq="5min")
    speeds = pd.DataFrame({"scope_key": "L1", "time": times, "value": [30, 25, 8, 7, 6, 9, 5, 4]})
    events, _ = evaluate(rule, speeds)
    # windows of 15 min: means 21, 7, 6.67 -> fires at end of the second window only
    assert fired_ends(events) == [T0 + pd.Timedelta(minutes=30)]


def test_duplicate_names_and_bad_actions_rejected() -> None:
    one = "{name: a, when: {property: noise, window: 1h, on: {above: 55}}}"
    with pytest.raises(ValidationError, match=r"duplicate rule names \['a'\]"):
        load_rules(f"- {one}\n- {one}\n")
    with pytest.raises(ValidationError, match=r"actions\.0: an action is exactly one of"):
        load_rules(
            "{name: a, when: {property: noise, window: 1h, on: {above: 55}}, actions: [{x: 1}]}"
        )
    with pytest.raises(ValidationError, match=r"actuator 'truck:\{gu\}' uses \['gu'\]"):
        load_rules(
            "{name: a, when: {property: pm25, scope: dong, window: 1h, on: {above: 75}},"
            " actions: [{task: {actuator: 'truck:{gu}', command: go}}]}"
        )


def test_dry_run_counts_a_week_of_hourly_data() -> None:
    hours = np.arange(24 * 7)
    values = 60 + 30 * np.sin(2 * np.pi * (hours - 6) / 24)  # peak 90 at 12:00 UTC daily
    rule = parse_rule(
        {
            "name": "pm",
            "when": {"property": "pm25", "window": "1h", "on": {"above": 75}, "off": {"below": 60}},
            "actions": [{"alert": {"message": "PM2.5 {value:.0f} at {scope}"}}],
        }
    )
    report = dry_run(rule, hourly(values))
    above = values > 75
    days_over = int(np.sum(above[1:] & ~above[:-1]))
    below = values < 60
    drops = int(np.sum(below[1:] & ~below[:-1]))
    fired = report[report["kind"] == "fired"]
    assert days_over == 7
    assert len(fired) == days_over
    assert (report["kind"] == "cleared").sum() == drops
    assert fired["count"].tolist() == list(range(1, 8))
    assert fired["actions"].iloc[0] == f"alert PM2.5 {fired['value'].iloc[0]:.0f} at s1"


def test_leq_averages_sound_levels_as_energies() -> None:
    """Two sensors at 50 and 60 dB: arithmetic mean 55.0 (not above 55), energetic mean
    10·log10((10^5 + 10^6) / 2) = 57.4 dB (above): only the leq rule fires."""
    times = pd.date_range(T0, periods=2, freq="30min")
    readings = pd.DataFrame(
        {"scope_key": "9901001", "time": times.repeat(2), "value": [50.0, 60.0, 50.0, 60.0]}
    )
    when: dict[str, Any] = {"property": "noise", "scope": "dong", "window": "1h"}
    fired = {}
    for statistic in ("mean", "leq"):
        rule = parse_rule(
            {"name": "night", "when": when | {"statistic": statistic, "on": {"above": 55}}}
        )
        events, _ = evaluate(rule, readings)
        fired[statistic] = events["value"].tolist()
    expected = 10 * np.log10((10**5 + 10**6) / 2)
    assert fired["mean"] == []
    assert fired["leq"] == pytest.approx([expected], abs=1e-9)
    with pytest.raises(ValidationError, match=r"'leq' .* is for sound levels in dB"):
        parse_rule({"name": "x", "when": when | {"property": "pm25", "statistic": "leq",
                                                 "on": {"above": 55}}})  # fmt: skip


def test_a_rules_json_parses_back_to_the_rule() -> None:
    """What GET /control/rules and the audit log write (the rule's JSON) must be accepted by
    PUT /control/rules and by the restore at start-up: zero cooldown and active hours too."""
    from citytwin.control.config import load_control

    preset = Path(__file__).parents[2] / "src" / "citytwin" / "control" / "presets" / "demo.yaml"
    rules = [*load_control(preset).rules, pm_rule(active_hours="22:00-06:30")]
    assert any(r.when.active_hours for r in rules)
    assert any(not r.cooldown for r in rules)
    for rule in rules:
        written = rule.model_dump(mode="json", by_alias=True)
        assert parse_rule(written) == rule, written
    assert rules[-1].model_dump(mode="json")["when"]["active_hours"] == "22:00-06:30"
    with pytest.raises(ValidationError, match="must be positive"):
        parse_rule({**rules[0].model_dump(mode="json", by_alias=True), "cooldown": "-1h"})
