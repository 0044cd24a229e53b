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
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from citytwin.control.rules import AlertAction, Rule, ScenarioAction, TaskAction
from citytwin.errors import ValidationError

logger = logging.getLogger(__name__)

LOCAL_TZ = "Asia/Seoul"
READING_COLUMNS = ("scope_key", "time", "value")
EVENT_COLUMNS = ("scope", "window_end", "kind", "value")


_NAT = np.iinfo(np.int64).min  # NumPy's NaT bit pattern: "never fired"
_NO_KEYS: NDArray[np.object_] = np.empty(0, dtype=object)
_NO_INTS: NDArray[np.int64] = np.empty(0, dtype=np.int64)
_NO_FLOATS: NDArray[np.float64] = np.empty(0, dtype=np.float64)


@dataclass(frozen=True)
class RuleState:
    """What one rule remembers between batches (numpy arrays: a batch of one reading must cost
    microseconds, not the milliseconds of a pandas round trip — the control loop's latency).

    Per scope (``keys``, sorted): whether the alarm is on, the current run of windows meeting the
    on condition, and when it last fired (ns since the epoch, :data:`_NAT` for never). Readings of
    windows not yet closed wait in ``pending_*``. ``watermark``: end of the last window evaluated
    (later batches start there). :attr:`scopes` and :attr:`pending` show them as frames.
    """

    keys: NDArray[np.object_] = field(default_factory=lambda: _NO_KEYS)
    active: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, bool))
    streak: NDArray[np.int64] = field(default_factory=lambda: _NO_INTS)
    last_fired: NDArray[np.int64] = field(default_factory=lambda: _NO_INTS)
    pending_keys: NDArray[np.object_] = field(default_factory=lambda: _NO_KEYS)
    pending_time: NDArray[np.int64] = field(default_factory=lambda: _NO_INTS)
    pending_value: NDArray[np.float64] = field(default_factory=lambda: _NO_FLOATS)
    watermark: pd.Timestamp | None = None

    @property
    def scopes(self) -> pd.DataFrame:
        """Per scope: active, streak, last_fired (a frame, for people and tests)."""
        fired = pd.DatetimeIndex(self.last_fired.view("datetime64[ns]")).tz_localize("UTC")
        return pd.DataFrame(
            {"active": self.active, "streak": self.streak, "last_fired": fired},
            index=pd.Index(self.keys, dtype=object),
        )

    @property
    def pending(self) -> pd.DataFrame:
        """The readings of windows not yet closed."""
        times = pd.DatetimeIndex(self.pending_time.view("datetime64[ns]")).tz_localize("UTC")
        return pd.DataFrame(
            {"scope_key": self.pending_keys, "time": times, "value": self.pending_value}
        )


@dataclass(frozen=True)
class ReadingArrays:
    """Readings as arrays: scope key, time (ns since the epoch, UTC), value."""

    keys: NDArray[np.object_]
    time: NDArray[np.int64]
    value: NDArray[np.float64]

    def take(self, mask: NDArray[np.bool_]) -> ReadingArrays:
        return ReadingArrays(self.keys[mask], self.time[mask], self.value[mask])


def _validate_readings(readings: pd.DataFrame) -> ReadingArrays:
    problems = [f"missing column {c!r}" for c in READING_COLUMNS if c not in readings.columns]
    if not problems and not isinstance(readings["time"].dtype, pd.DatetimeTZDtype):
        problems.append(f"column 'time' must be tz-aware datetimes, got {readings['time'].dtype}")
    if not problems and not pd.api.types.is_numeric_dtype(readings["value"]):
        problems.append(f"column 'value' must be numeric, got {readings['value'].dtype}")
    if problems:
        raise ValidationError("readings: " + "; ".join(problems) + f"; expected {READING_COLUMNS}")
    times = pd.DatetimeIndex(readings["time"]).tz_convert("UTC").as_unit("ns").asi8
    keys = np.asarray(readings["scope_key"].astype(str), dtype=object)
    batch = ReadingArrays(keys, np.asarray(times, np.int64), readings["value"].to_numpy(np.float64))
    return batch.take(~np.isnan(batch.value))


def _split_closed(
    batch: ReadingArrays, window: int, until: int | None
) -> tuple[ReadingArrays, ReadingArrays, int | None]:
    """Readings of closed windows, readings of open windows, and the new watermark (ns)."""
    starts = batch.time // window * window
    if until is None:
        end = int(starts.max()) + window if len(starts) else None
        return batch, batch.take(np.zeros(len(starts), bool)), end
    cut = until // window * window
    closed = starts + window <= cut
    return batch.take(closed), batch.take(~closed), cut


def _window_values(
    closed: ReadingArrays, window: int, statistic: str
) -> tuple[NDArray[np.object_], NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Per (scope, window) the statistic of the scope mean: scope names, and per cell the scope's
    position among them, the window start and the value."""
    names, scope = np.unique(closed.keys, return_inverse=True)
    energetic = statistic == "leq"  # sound levels add as energies (ISO 1996-1): 10^(L/10)
    level = 10.0 ** (closed.value / 10.0) if energetic else closed.value
    instants, instant = np.unique(closed.time, return_inverse=True)
    pairs, pair = np.unique(scope * len(instants) + instant, return_inverse=True)
    mean = np.bincount(pair, level) / np.bincount(pair)  # the scope's mean per instant
    pair_scope, pair_time = pairs // len(instants), instants[pairs % len(instants)]
    starts, start = np.unique(pair_time // window * window, return_inverse=True)
    cells, cell = np.unique(pair_scope * len(starts) + start, return_inverse=True)
    if statistic in ("mean", "leq"):
        value = np.bincount(cell, mean) / np.bincount(cell)
    else:
        reduce = np.maximum if statistic == "max" else np.minimum
        value = np.full(len(cells), -np.inf if statistic == "max" else np.inf)
        reduce.at(value, cell, mean)
    if energetic:
        value = 10.0 * np.log10(value)
    return names, cells // len(starts), starts[cells % len(starts)], value


def _in_active_hours(starts: NDArray[np.int64], hours: tuple[int, int] | None) -> np.ndarray:
    if hours is None:
        return np.ones(len(starts), dtype=bool)
    local = pd.DatetimeIndex(starts.view("datetime64[ns]")).tz_localize("UTC").tz_convert(LOCAL_TZ)
    minute = np.asarray(local.hour * 60 + local.minute)
    begin, end = hours
    inside = (
        (minute >= begin) & (minute < end) if begin < end else (minute >= begin) | (minute < end)
    )
    return np.asarray(inside, dtype=bool)


@dataclass
class _Scopes:
    """The alarm state of every scope, stepped window by window."""

    active: NDArray[np.bool_]
    streak: NDArray[np.int64]
    last: NDArray[np.int64]


def _step_all(
    rule: Rule, values: np.ndarray, starts: NDArray[np.int64], scopes: _Scopes
) -> tuple[np.ndarray, np.ndarray]:
    """Run the hysteresis/persistence/cooldown machine; fired and cleared masks per window."""
    when = rule.when
    sign = 1.0 if when.on.direction == "above" else -1.0
    on_level, off_level = sign * when.on.value, sign * when.off_value
    ends = starts + when.window.value
    in_hours = _in_active_hours(starts, when.active_hours)
    active, streak, last = scopes.active.copy(), scopes.streak.copy(), scopes.last.copy()
    fired = np.zeros(values.shape, dtype=bool)
    cleared = np.zeros(values.shape, dtype=bool)
    cooldown = rule.cooldown.value
    for i in range(values.shape[0]):
        signed = sign * values[i]
        with np.errstate(invalid="ignore"):
            on_cond, off_cond = signed > on_level, signed < off_level
        cleared[i] = active & off_cond
        streak = np.where(active, 0, np.where(on_cond, streak + 1, 0))
        cooled = (last == _NAT) | (ends[i] - last >= cooldown)
        fired[i] = ~active & (streak >= when.for_windows) & in_hours[i] & cooled
        active = (active & ~cleared[i]) | fired[i]
        last = np.where(fired[i], ends[i], last)
        streak = np.where(active, 0, streak)
    scopes.active, scopes.streak, scopes.last = active, streak, last
    return fired, cleared


def _events(
    values: np.ndarray,
    fired: np.ndarray,
    cleared: np.ndarray,
    ends: NDArray[np.int64],
    keys: NDArray[np.object_],
) -> pd.DataFrame:
    if not fired.any() and not cleared.any():
        return pd.DataFrame(columns=list(EVENT_COLUMNS))
    parts = []
    for kind, mask in (("fired", fired), ("cleared", cleared)):
        rows, cols = np.nonzero(mask)
        stamps = pd.DatetimeIndex(ends[rows].view("datetime64[ns]")).tz_localize("UTC")
        columns = {"scope": keys[cols], "window_end": stamps, "kind": kind}
        parts.append(pd.DataFrame({**columns, "value": values[rows, cols]}))
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
    limit = None if until is None else int(pd.Timestamp(until).tz_convert("UTC").value)
    return advance(rule, _validate_readings(readings), state=state or RuleState(), until=limit)


def advance(
    rule: Rule, batch: ReadingArrays, *, state: RuleState, until: int | None
) -> tuple[pd.DataFrame, RuleState]:
    """:func:`evaluate` on arrays (``until`` in ns since the epoch): the controller's hot path."""
    window = int(rule.when.window.value)
    batch = ReadingArrays(
        np.concatenate([state.pending_keys, batch.keys]),
        np.concatenate([state.pending_time, batch.time]),
        np.concatenate([state.pending_value, batch.value]),
    )
    if state.watermark is not None:
        late = batch.time < state.watermark.value
        if late.any():
            logger.warning("rule %s: dropped %d late readings", rule.name, int(late.sum()))
            batch = batch.take(~late)
    closed, pending, cut = _split_closed(batch, window, until)
    watermark = state.watermark if cut is None else pd.Timestamp(cut, tz="UTC")
    names, cell_scope, cell_start, cell_value = (
        _window_values(closed, window, rule.when.statistic)
        if len(closed.time)
        else (_NO_KEYS, _NO_INTS, _NO_INTS, _NO_FLOATS)
    )
    keys = np.union1d(state.keys, names).astype(object) if len(names) else state.keys
    at = np.searchsorted(keys, state.keys)
    scopes = _Scopes(
        np.zeros(len(keys), bool), np.zeros(len(keys), np.int64), np.full(len(keys), _NAT)
    )
    scopes.active[at] = state.active
    scopes.streak[at] = state.streak
    scopes.last[at] = state.last_fired
    first = (
        state.watermark.value
        if state.watermark is not None
        else (int(cell_start.min()) if len(cell_start) else None)
    )
    new_state = RuleState(
        keys, scopes.active, scopes.streak, scopes.last,
        pending.keys, pending.time, pending.value, watermark,
    )  # fmt: skip
    if first is None or watermark is None or watermark.value <= first:
        return pd.DataFrame(columns=list(EVENT_COLUMNS)), new_state
    starts = np.arange(first, watermark.value, window, dtype=np.int64)
    values = np.full((len(starts), len(keys)), np.nan)
    row = (cell_start - first) // window
    inside = (row >= 0) & (row < len(starts))
    values[row[inside], np.searchsorted(keys, names[cell_scope[inside]])] = cell_value[inside]
    fired, cleared = _step_all(rule, values, starts, scopes)
    events = _events(values, fired, cleared, starts + window, keys)
    stepped = replace(new_state, active=scopes.active, streak=scopes.streak)
    return events, replace(stepped, last_fired=scopes.last)


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
