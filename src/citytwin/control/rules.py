"""Declarative control rules: what to watch, when it counts as an alarm, and what to do about it.

A rule is written in YAML and validated when it is loaded, so that a typo or an impossible
threshold is a clear error at start-up instead of a rule that silently never fires::

    name: pm25-dong-alert
    when:
      property: pm25          # a vocabulary key (``citytwin vocabulary`` lists them)
      scope: dong             # sensor | dong | gu: value = mean over the scope's sensors
      statistic: mean         # mean | max | min | leq (energetic mean, for dB) over the window
      window: 1h
      on: {above: 75}         # fire when the window value is above 75 µg/m³ ...
      off: {below: 60}        # ... and clear only once it falls below 60 (hysteresis)
      for: 2                  # for two consecutive windows
      unit: µg/m³             # optional; must be the vocabulary unit (symbol or UCUM code)
      active_hours: 07:00-22:00   # KST
    cooldown: 3h
    actions:
      - alert: {message: "PM2.5 {value:.0f} µg/m³ in {scope}"}
      - task: {actuator: "spray-truck:{scope}", command: spray, approval: required}

Only the threshold *value* of ``off`` matters (``off: {below: 60}`` and ``off: {above: 60}`` both
clear an ``above`` rule once the value drops under 60); it must lie on the non-firing side of
``on``. Evaluation lives in :mod:`citytwin.control.rule_engine`.
"""

from __future__ import annotations

import builtins
import difflib
import logging
import re
import string
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from citytwin.errors import ValidationError
from citytwin.model.vocabulary import get_property, property_keys

logger = logging.getLogger(__name__)

Scope = Literal["sensor", "dong", "gu"]
_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)\s*-\s*([01]\d|2[0-4]):([0-5]\d)$")


def _is_zero(text: str) -> bool:
    try:
        return bool(pd.Timedelta(text.strip()) == pd.Timedelta(0))
    except ValueError:
        return False


def parse_duration(text: str) -> pd.Timedelta:
    """A positive duration from ``"1h"``, ``"15min"``, ``"90s"``, ``"2d"`` or ISO-8601 ``"PT1H"``.

    >>> parse_duration("15min"), parse_duration("7d")
    (Timedelta('0 days 00:15:00'), Timedelta('7 days 00:00:00'))
    """
    # pandas 3 deprecates the lower-case day unit: "7d" → "7D"
    normalised = re.sub(r"(?<=\d)\s*d(?![a-z])", "D", str(text).strip())
    try:
        value = pd.Timedelta(normalised)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a duration; expected e.g. '1h', '15min', 'PT1H'"
        ) from None
    if pd.isna(value) or value <= pd.Timedelta(0):
        raise ValueError(f"duration {text!r} must be positive")
    return value


def format_duration(value: pd.Timedelta) -> str:
    """The short form :func:`parse_duration` reads back: ``1h``, ``15min``, ``1h30min``, ``2d``.

    >>> format_duration(pd.Timedelta(minutes=90)), format_duration(pd.Timedelta(seconds=30))
    ('1h30min', '30s')
    """
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Threshold(_Strict):
    """One side of a comparison: exactly one of ``above`` / ``below``."""

    above: float | None = None
    below: float | None = None

    @pydantic.model_validator(mode="after")
    def _exactly_one(self) -> Threshold:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of 'above' or 'below'")
        return self

    @property
    def value(self) -> float:
        """The threshold number."""
        return self.above if self.above is not None else float(self.below)  # type: ignore[arg-type]

    @property
    def direction(self) -> Literal["above", "below"]:
        """Which way the comparison goes."""
        return "above" if self.above is not None else "below"


class Condition(_Strict):
    """The ``when`` block: property, aggregation, window and thresholds."""

    property: str
    scope: Scope = "sensor"
    statistic: Literal["mean", "max", "min", "leq"] = "mean"  # leq: energetic mean, dB only
    window: pd.Timedelta
    on: Threshold
    off: Threshold | None = None
    for_windows: int = Field(1, ge=1, alias="for")
    unit: str | None = None
    active_hours: tuple[int, int] | None = None  # minutes after local midnight: [start, end)

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _yaml_booleans(cls, data: Any) -> Any:
        # YAML 1.1 reads the bare keys `on:` and `off:` as booleans True and False.
        if isinstance(data, dict):
            names = {True: "on", False: "off"}
            return {names.get(k, k) if isinstance(k, bool) else k: v for k, v in data.items()}
        return data

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, value: Any) -> pd.Timedelta:
        return value if isinstance(value, pd.Timedelta) else parse_duration(str(value))

    @field_validator("property")
    @classmethod
    def _known_property(cls, key: str) -> str:
        if key not in property_keys():
            close = difflib.get_close_matches(key, property_keys(), n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ValueError(
                f"unknown property {key!r}; {hint}(all keys: see `citytwin vocabulary`)"
            )
        return key

    @field_validator("active_hours", mode="before")
    @classmethod
    def _hours(cls, value: Any) -> tuple[int, int] | None:
        if value is None or isinstance(value, tuple):
            return value
        match = _HOURS.match(str(value).strip())
        if match is None:
            raise ValueError(f"{value!r} is not 'HH:MM-HH:MM' (local KST time)")
        h0, m0, h1, m1 = (int(g) for g in match.groups())
        start, end = h0 * 60 + m0, h1 * 60 + m1
        if start == end or end > 24 * 60:
            raise ValueError(f"{value!r} is an empty or invalid interval")
        return start, end

    @pydantic.field_serializer("active_hours")
    def _hours_text(self, value: tuple[int, int] | None) -> str | None:
        """Written as it is read ("22:00-06:00"), so a rule's JSON parses back to the rule."""
        if value is None:
            return None
        (h0, m0), (h1, m1) = divmod(value[0], 60), divmod(value[1], 60)
        return f"{h0:02d}:{m0:02d}-{h1:02d}:{m1:02d}"

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> Condition:
        spec = get_property(self.property)
        if self.unit is not None and self.unit not in (spec.unit.symbol, spec.unit.ucum):
            raise ValueError(
                f"unit mismatch: {self.unit!r} given, but {self.property} is measured in "
                f"{spec.unit.symbol!r} (UCUM {spec.unit.ucum!r})"
            )
        for side, threshold in (("on", self.on), ("off", self.off)):
            if threshold is not None and not spec.valid_min <= threshold.value <= spec.valid_max:
                raise ValueError(
                    f"{side} threshold {threshold.value:g} is outside the valid range of "
                    f"{self.property} [{spec.valid_min:g}, {spec.valid_max:g}] {spec.unit.symbol}"
                )
        if self.statistic == "leq" and spec.unit.symbol not in ("dB", "dB(A)"):
            raise ValueError(
                f"statistic 'leq' (energetic mean) is for sound levels in dB; {self.property} "
                f"is in {spec.unit.symbol!r}: use mean, max or min"
            )
        off = self.off_value
        if (self.on.direction == "above" and off > self.on.value) or (
            self.on.direction == "below" and off < self.on.value
        ):
            need = "<=" if self.on.direction == "above" else ">="
            raise ValueError(
                f"inverted hysteresis: off threshold {off:g} must be {need} on threshold "
                f"{self.on.value:g} for an {self.on.direction!r} rule"
            )
        return self

    @builtins.property  # the field `property` shadows the builtin inside this class
    def off_value(self) -> float:
        """The clearing threshold (defaults to the firing threshold: no hysteresis)."""
        return self.on.value if self.off is None else self.off.value


class AlertSpec(_Strict):
    """Log (and optionally post to a webhook) a message; ``{scope}``/``{value}`` are filled in."""

    message: str
    webhook: pydantic.HttpUrl | None = None


class CheckSpec(_Strict):
    """Run a traffic scenario before sending a task; refuse if travel time rises too much."""

    scenario: str
    max_tstt_increase_pct: float = Field(5.0, ge=0)


class TaskSpec(_Strict):
    """Send a command to an actuator (an id, or a pattern with ``{scope}``/``{sensor|dong|gu}``).

    ``ack_timeout``, ``max_attempts`` and ``expires`` override the actuator's delivery defaults
    (:class:`~citytwin.control.config.ActuatorSpec`).
    """

    actuator: str
    command: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    approval: Literal["required", "none"] = "required"
    check: CheckSpec | None = None
    ack_timeout: pd.Timedelta | None = None
    max_attempts: int | None = Field(None, ge=1)
    expires: pd.Timedelta | None = None

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @field_validator("ack_timeout", "expires", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> pd.Timedelta | None:
        if value is None or isinstance(value, pd.Timedelta):
            return value
        return parse_duration(str(value))


class ScenarioSpec(_Strict):
    """Run a named what-if scenario."""

    name: str


class AlertAction(_Strict):
    alert: AlertSpec


class TaskAction(_Strict):
    task: TaskSpec


class ScenarioAction(_Strict):
    scenario: ScenarioSpec


def _action_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        keys = set(value) & {"alert", "task", "scenario"}
        return keys.pop() if len(keys) == 1 and len(value) == 1 else None
    return next((k for k in ("alert", "task", "scenario") if hasattr(value, k)), None)


Action = Annotated[
    Annotated[AlertAction, Tag("alert")]
    | Annotated[TaskAction, Tag("task")]
    | Annotated[ScenarioAction, Tag("scenario")],
    Discriminator(
        _action_kind,
        custom_error_type="action_kind",
        custom_error_message=(
            "an action is exactly one of {alert: ...}, {task: ...}, {scenario: ...}"
        ),
    ),
]


class Rule(_Strict):
    """A validated control rule (see the module docstring for the YAML form)."""

    name: str = Field(min_length=1)
    description: str = ""
    when: Condition
    cooldown: pd.Timedelta = pd.Timedelta(0)
    actions: list[Action] = Field(default_factory=list)
    dry_run: bool = False  # decide and record, but send nothing (per-rule dry run)
    department: str | None = None  # the department that owns the rule (roles: writers edit own)

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @field_validator("cooldown", mode="before")
    @classmethod
    def _cooldown(cls, value: Any) -> pd.Timedelta:
        if value in (None, 0, "0"):
            return pd.Timedelta(0)
        if isinstance(value, pd.Timedelta):
            return value
        try:
            return parse_duration(str(value))
        except ValueError:  # a zero duration ("0s", or "PT0S" as the rule's JSON writes it)
            if _is_zero(str(value)):
                return pd.Timedelta(0)
            raise

    @pydantic.model_validator(mode="after")
    def _placeholders(self) -> Rule:
        allowed = {"scope", self.when.scope}
        for action in self.actions:
            if isinstance(action, TaskAction):
                names = {f for _, f, _, _ in string.Formatter().parse(action.task.actuator) if f}
                if names - allowed:
                    raise ValueError(
                        f"actuator {action.task.actuator!r} uses {sorted(names - allowed)}; "
                        f"a {self.when.scope}-scoped rule may use {sorted(allowed)}"
                    )
        return self


def _describe(rule_name: str, error: pydantic.ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"] if part not in ("function-after",))
        message = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{where or '<rule>'}: {message}")
    return f"rule {rule_name!r}: " + "; ".join(problems)


def parse_rule(data: dict[str, Any], *, position: str = "rule") -> Rule:
    """One rule from a mapping; errors name the rule and the field.

    >>> rule = parse_rule({"name": "hot", "when": {"property": "air_temperature",
    ...     "window": "1h", "on": {"above": 33}}})
    >>> rule.when.window, rule.when.off_value
    (Timedelta('0 days 01:00:00'), 33.0)
    """
    if not isinstance(data, dict):
        raise ValidationError(f"{position}: expected a mapping, got {type(data).__name__}")
    name = str(data.get("name", position))
    try:
        return Rule.model_validate(data)
    except pydantic.ValidationError as error:
        raise ValidationError(_describe(name, error)) from None


def load_rules(source: str | Path) -> list[Rule]:
    """Rules from a YAML file path or YAML text (a list of rules, or one rule).

    >>> [r.name for r in load_rules('''
    ... - {name: a, when: {property: noise, window: 1h, on: {above: 55}}}
    ... - {name: b, when: {property: link_speed, window: 15min, on: {below: 10}}}
    ... ''')]
    ['a', 'b']
    """
    is_path = isinstance(source, Path) or (
        "\n" not in source and source.endswith((".yaml", ".yml"))
    )
    label = str(source) if is_path else "<text>"
    try:
        text = Path(source).read_text(encoding="utf-8") if is_path else str(source)
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as error:
        raise ValidationError(f"{label}: cannot read rules: {error}") from None
    items = data if isinstance(data, list) else [data]
    rules = [parse_rule(item, position=f"{label}[{i}]") for i, item in enumerate(items)]
    names = [rule.name for rule in rules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValidationError(f"{label}: duplicate rule names {duplicates}; names must be unique")
    logger.debug("loaded %d rules from %s", len(rules), label)
    return rules
