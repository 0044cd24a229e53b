"""Evaluate a :class:`~citytwin.control.rules.Rule` over readings: windows, hysteresis, cooldown.

The engine is pure (frames in, events out) and incremental: :func:`evaluate` returns a
:class:`RuleState` holding each scope's alarm state and the readings of windows that are not yet
closed, so feeding a stream batch by batch gives the same events as feeding it all at once.

Method: readings are averaged per scope and timestamp (the scope's value is the mean over its
sensors), bucketed into tumbling windows aligned to the UTC epoch, reduced with the rule's
statistic, then run through a two-threshold (Schmitt-trigger) state machine with an N-window
persistence filter — the standard alarm-management practice of deadband plus on-delay
(ANSI/ISA-18.2-2016, §10.5 "alarm deadband" and "on-delay"). The state machine steps through
windows in order but is vectorised across scopes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from citytwin.control.rules import AlertAction, Rule, ScenarioAction, TaskAction
from citytwin.errors import ValidationError

logger = logging.getLogger(__name__)

LOCAL_TZ = "Asia/Seoul"
READING_COLUMNS = ("scope_key", "time", "value")
EVENT_COLUMNS = ("scope", "window_end", "kind", "value")


def _empty_scopes() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "active": pd.Series(dtype=bool),
            "streak": pd.Series(dtype="int64"),
            "last_fired": pd.Series(dtype="datetime64[ns, UTC]"),
        }
    )


def _empty_readings() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "scope_key": pd.Series(dtype=object),
            "time": pd.Series(dtype="datetime64[ns, UTC]"),
            "value": pd.Series(dtype="float64"),
        }
    )


@dataclass(frozen=True)
class RuleState:
    """What one rule remembers between batches.

    ``scopes``: per scope, whether the alarm is on, the current run of windows meeting the on
    condition and when it last fired. ``pending``: readings of windows not yet closed.
    ``watermark``: end of the last window evaluated (later batches start there).
    """

    scopes: pd.DataFrame = field(default_factory=_empty_scopes)
    pending: pd.DataFrame = field(default_factory=_empty_readings)
    watermark: pd.Timestamp | None = None


def _validate_readings(readings: pd.DataFrame) -> pd.DataFrame:
    problems = [f"missing column {c!r}" for c in READING_COLUMNS if c not in readings.columns]
    if not problems and not isinstance(readings["time"].dtype, pd.DatetimeTZDtype):
        problems.append(f"column 'time' must be tz-aware datetimes, got {readings['time'].dtype}")
    if not problems and not pd.api.types.is_numeric_dtype(readings["value"]):
        problems.append(f"column 'value' must be numeric, got {readings['value'].dtype}")
    if problems:
        raise ValidationError("readings: " + "; ".join(problems) + f"; expected {READING_COLUMNS}")
    frame = readings.loc[:, list(READING_COLUMNS)].copy()
    frame["scope_key"] = frame["scope_key"].astype(str).astype(object)
    frame["time"] = frame["time"].dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    frame["value"] = frame["value"].astype("float64")
    return frame.dropna(subset=["value"])


def _split_closed(
    frame: pd.DataFrame, window: pd.Timedelta, until: pd.Timestamp | None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp | None]:
    """Readings of closed windows, readings of open windows, and the new watermark."""
    starts = frame["time"].dt.floor(window)
    if until is None:
        end = starts.max() + window if len(frame) else None
        return frame.assign(start=starts), _empty_readings(), end
    cut = pd.Timestamp(until).tz_convert("UTC").floor(window)
    closed = (starts + window) <= cut
    return frame[closed].assign(start=starts[closed]), frame[~closed], cut


def _window_values(closed: pd.DataFrame, statistic: str) -> pd.DataFrame:
    """Windows × scopes table of the statistic of the scope mean."""
    per_time = closed.groupby(["scope_key", "time", "start"], sort=False)["value"].mean()
    per_window = per_time.groupby(level=["start", "scope_key"]).agg(statistic)
    return per_window.unstack("scope_key")


def _in_active_hours(starts: pd.DatetimeIndex, hours: tuple[int, int] | None) -> np.ndarray:
    if hours is None:
        return np.ones(len(starts), dtype=bool)
    local = starts.tz_convert(LOCAL_TZ)
    minute = np.asarray(local.hour * 60 + local.minute)
    begin, end = hours
    inside = (
        (minute >= begin) & (minute < end) if begin < end else (minute >= begin) | (minute < end)
    )
    return np.asarray(inside, dtype=bool)


def _step_all(
    rule: Rule, values: np.ndarray, starts: pd.DatetimeIndex, scopes: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Run the hysteresis/persistence/cooldown machine; fired and cleared masks per window."""
    when = rule.when
    above = when.on.direction == "above"
    sign = 1.0 if above else -1.0
    on_level, off_level = sign * when.on.value, sign * when.off_value
    ends = (starts + when.window).as_unit("ns").asi8
    in_hours = _in_active_hours(starts, when.active_hours)
    active = scopes["active"].to_numpy(dtype=bool).copy()
    streak = scopes["streak"].to_numpy(dtype=np.int64).copy()
    fired_at = pd.DatetimeIndex(pd.to_datetime(scopes["last_fired"], utc=True)).as_unit("ns")
    has_fired = ~np.asarray(fired_at.isna())
    last = np.where(has_fired, fired_at.asi8, 0)
    fired = np.zeros(values.shape, dtype=bool)
    cleared = np.zeros(values.shape, dtype=bool)
    cooldown = rule.cooldown
    for i in range(values.shape[0]):
        signed = sign * values[i]
        with np.errstate(invalid="ignore"):
            on_cond, off_cond = signed > on_level, signed < off_level
        cleared[i] = active & off_cond
        streak = np.where(active, 0, np.where(on_cond, streak + 1, 0))
        cooled = ~has_fired | (ends[i] - last >= cooldown.value)
        fired[i] = ~active & (streak >= when.for_windows) & in_hours[i] & cooled
        active = (active & ~cleared[i]) | fired[i]
        last = np.where(fired[i], ends[i], last)
        has_fired |= fired[i]
        streak = np.where(active, 0, streak)
    nat = np.iinfo(np.int64).min  # NumPy's NaT bit pattern
    stamps = np.where(has_fired, last, nat).astype(np.int64).view("datetime64[ns]")
    last_fired = pd.DatetimeIndex(stamps).tz_localize("UTC")
    state = pd.DataFrame(
        {"active": active, "streak": streak, "last_fired": last_fired.as_unit("ns")},
        index=scopes.index,
    )
    return fired, cleared, state


def _events(
    values: np.ndarray, fired: np.ndarray, cleared: np.ndarray, ends: pd.DatetimeIndex, scopes: Any
) -> pd.DataFrame:
    parts = []
    for kind, mask in (("fired", fired), ("cleared", cleared)):
        rows, cols = np.nonzero(mask)
        parts.append(
            pd.DataFrame(
                {
                    "scope": np.asarray(scopes, dtype=object)[cols],
                    "window_end": ends[rows],
                    "kind": kind,
                    "value": values[rows, cols],
                }
            )
        )
    events = pd.concat(parts, ignore_index=True)
    return events.sort_values(["window_end", "scope", "kind"], kind="stable", ignore_index=True)


def evaluate(
    rule: Rule,
    readings: pd.DataFrame,
    *,
    state: RuleState | None = None,
    until: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, RuleState]:
    """Fired/cleared events of ``rule`` over ``readings`` (columns scope_key, time, value).

    ``until`` is the stream's watermark: only windows ending at or before it are evaluated, the
    rest wait in the returned state for the next batch. Without it every window present is
    treated as complete (batch / history mode). Readings older than the state's watermark arrive
    too late and are dropped (logged). Method: see the module docstring (ISA-18.2 deadband and
    on-delay).

    >>> from citytwin.control.rules import parse_rule
    >>> rule = parse_rule({"name": "pm", "when": {"property": "pm25", "window": "1h",
    ...     "on": {"above": 75}, "off": {"below": 60}}})
    >>> t = pd.date_range("2026-01-01", periods=4, freq="h", tz="UTC")
    >>> readings = pd.DataFrame({"scope_key": "s1", "time": t, "value": [50, 80, 70, 55]})
    >>> events, state = evaluate(rule, readings)
    >>> events[["kind", "value"]].values.tolist()
    [['fired', 80.0], ['cleared', 55.0]]
    """
    state = state or RuleState()
    frame = pd.concat([state.pending, _validate_readings(readings)], ignore_index=True)
    if state.watermark is not None:
        late = frame["time"] < state.watermark
        if late.any():
            logger.warning("rule %s: dropped %d late readings", rule.name, int(late.sum()))
        frame = frame[~late]
    closed, pending, watermark = _split_closed(frame, rule.when.window, until)
    watermark = watermark if watermark is not None else state.watermark
    table = _window_values(closed, rule.when.statistic) if len(closed) else pd.DataFrame()
    scope_index = state.scopes.index.union(pd.Index(table.columns, dtype=object)).sort_values()
    scopes = state.scopes.reindex(scope_index)
    scopes = scopes.fillna({"active": False, "streak": 0}).astype(
        {"active": bool, "streak": "int64"}
    )
    first = (
        state.watermark
        if state.watermark is not None
        else (table.index.min() if len(table) else None)
    )
    if first is None or watermark is None or watermark <= first:
        return pd.DataFrame(columns=list(EVENT_COLUMNS)), RuleState(scopes, pending, watermark)
    starts = pd.date_range(first, watermark - rule.when.window, freq=rule.when.window)
    values = table.reindex(index=starts, columns=scope_index).to_numpy(dtype=float)
    fired, cleared, new_scopes = _step_all(rule, values, starts, scopes)
    events = _events(values, fired, cleared, starts + rule.when.window, scope_index)
    return events, RuleState(new_scopes, pending.reset_index(drop=True), watermark)


def _fill(template: str, context: dict[str, Any]) -> str:
    try:
        return template.format(**context)
    except (KeyError, IndexError, ValueError):
        return template


def describe_actions(rule: Rule, scope: str, value: float) -> list[str]:
    """What the rule's actions would do for one firing, with placeholders filled in.

    >>> from citytwin.control.rules import parse_rule
    >>> rule = parse_rule({"name": "pm", "when": {"property": "pm25", "scope": "dong",
    ...     "window": "1h", "on": {"above": 75}},
    ...     "actions": [{"task": {"actuator": "spray-truck:{dong}", "command": "spray"}}]})
    >>> describe_actions(rule, "Jongno", 80.0)
    ['task spray-truck:Jongno spray (approval required)']
    """
    context = {"scope": scope, rule.when.scope: scope, "value": value, "rule": rule.name}
    out = []
    for action in rule.actions:
        if isinstance(action, AlertAction):
            out.append("alert " + _fill(action.alert.message, context))
        elif isinstance(action, TaskAction):
            task = action.task
            out.append(
                f"task {_fill(task.actuator, context)} {task.command} (approval {task.approval})"
            )
        elif isinstance(action, ScenarioAction):
            out.append(f"scenario {action.scenario.name}")
    return out


def dry_run(rule: Rule, history: pd.DataFrame) -> pd.DataFrame:
    """What ``rule`` would have done over ``history``: its events, a running count per scope and
    kind, and the actions each firing would have triggered ("what would it have done last week?").

    >>> from citytwin.control.rules import parse_rule
    >>> rule = parse_rule({"name": "jam", "when": {"property": "link_speed",
    ...     "window": "15min", "on": {"below": 10}}, "actions": [{"scenario": {"name": "detour"}}]})
    >>> t = pd.date_range("2026-01-05 08:00", periods=4, freq="15min", tz="UTC")
    >>> history = pd.DataFrame({"scope_key": "L1", "time": t, "value": [30, 8, 25, 5]})
    >>> dry_run(rule, history)[["kind", "count", "actions"]].values.tolist()
    [['fired', 1, 'scenario detour'], ['cleared', 1, ''], ['fired', 2, 'scenario detour']]
    """
    events, _ = evaluate(rule, history)
    events["count"] = events.groupby(["scope", "kind"]).cumcount().astype("int64") + 1
    fired = (events["kind"] == "fired").to_numpy()
    events["actions"] = [
        "; ".join(describe_actions(rule, str(s), float(v))) if f else ""
        for s, v, f in zip(events["scope"], events["value"], fired, strict=True)
    ]
    return events
