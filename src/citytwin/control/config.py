"""The control configuration: rules, the actuators they may drive, and the global switches.

One YAML file (``citytwin control check control.yaml`` validates it)::

    dry_run: false              # global: decide and record, send nothing
    actuators:
      - match: "spray-truck:*"  # actuator ids (fnmatch pattern); first match wins
        url: mqtt://127.0.0.1:1883/citytwin/tasks
        name: Road water-spray trucks
        commands:               # published as SensorThings TaskingCapabilities
          spray:
            description: Wash the roads of the dong
            parameters: {minutes: {type: integer, unit: min, required: true}}
        rate_limit: 2/h         # at most 2 tasks sent per hour to each matching actuator
        ack_timeout: 30s        # re-send after 30 s without acknowledgement ...
        max_attempts: 3         # ... up to 3 sends in all
        expires: 15min          # and give up 15 minutes after creation
    rules:                      # a list of rules (see rules.py), or a path to a rules file
      - name: dong-pm25-high
        ...

Every actuator id a rule can produce must match an actuator entry, or the task is refused with a
reason (recorded, alerted) rather than sent nowhere. ``url`` is an actuator URL
(:func:`~citytwin.control.base.open_actuator`); the actuator id is passed as its ``id`` query
parameter, so one entry serves a whole fleet (``spray-truck:*``).

>>> config = parse_control({"actuators": [{"match": "spray-truck:*", "url": "log://trucks",
...     "rate_limit": "2/h"}], "rules": []})
>>> spec = config.actuator_for("spray-truck:1111051")
>>> spec.rate_limit, spec.url_for("spray-truck:1111051")
(RateLimit(tasks=2, period=Timedelta('0 days 01:00:00')), 'log://trucks?id=spray-truck%3A1111051')
"""

from __future__ import annotations

import fnmatch
import logging
import re
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pandas as pd
import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from citytwin.control.rules import Rule, load_rules, parse_duration, parse_rule
from citytwin.errors import ValidationError

logger = logging.getLogger(__name__)

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*\s*[a-z]+)\s*$")
_PERIOD_WORDS = {"s": "1s", "min": "1min", "m": "1min", "h": "1h", "d": "1D"}


class RateLimit(NamedTuple):
    """At most ``tasks`` tasks sent per ``period`` to one actuator."""

    tasks: int
    period: pd.Timedelta


def parse_rate(text: str) -> RateLimit:
    """``"2/h"``, ``"10/15min"``, ``"1/d"`` → :class:`RateLimit`.

    >>> parse_rate("10/15min")
    RateLimit(tasks=10, period=Timedelta('0 days 00:15:00'))
    """
    match = _RATE.match(str(text))
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"rate limit {text!r}: expected COUNT/PERIOD, e.g. '2/h' or '10/15min'")
    period = match.group(2).replace(" ", "")
    return RateLimit(int(match.group(1)), parse_duration(_PERIOD_WORDS.get(period, period)))


class ParameterSpec(BaseModel):
    """One tasking parameter of a command (published in the SensorThings TaskingCapability)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["number", "integer", "text", "boolean"] = "number"
    unit: str | None = None  # UCUM code, e.g. "min"
    description: str = ""
    required: bool = False


class CommandSpec(BaseModel):
    """A command an actuator understands, with its parameters (none declared: any accepted)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    parameters: dict[str, ParameterSpec] = Field(default_factory=dict)


class ActuatorSpec(BaseModel):
    """Where tasks for matching actuator ids go, and how they are delivered."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    match: str = Field(min_length=1)
    url: str = Field(min_length=1)
    name: str = ""
    description: str = ""
    commands: dict[str, CommandSpec] = Field(default_factory=dict)
    rate_limit: RateLimit | None = None
    ack_timeout: pd.Timedelta = pd.Timedelta(seconds=30)
    max_attempts: int = Field(3, ge=1)
    expires: pd.Timedelta = pd.Timedelta(minutes=15)

    @field_validator("rate_limit", mode="before")
    @classmethod
    def _rate(cls, value: Any) -> RateLimit | None:
        return value if value is None or isinstance(value, RateLimit) else parse_rate(value)

    @field_validator("ack_timeout", "expires", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> pd.Timedelta:
        return value if isinstance(value, pd.Timedelta) else parse_duration(str(value))

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError(
                f"{value!r} is not an actuator URL; expected e.g. log://name or mqtt://host:1883/prefix"
            )
        return value

    def matches(self, actuator_id: str) -> bool:
        return fnmatch.fnmatchcase(actuator_id, self.match)

    def url_for(self, actuator_id: str) -> str:
        """The URL that opens this actuator: ``url`` with ``id=<actuator_id>`` set."""
        parts = urlsplit(self.url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "id"]
        query.append(("id", actuator_id))
        return urlunsplit(parts._replace(query=urlencode(query)))


class ControlConfig(BaseModel):
    """Rules, actuators and the global dry-run switch, validated together."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    dry_run: bool = False
    actuators: list[ActuatorSpec] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)

    def actuator_for(self, actuator_id: str) -> ActuatorSpec | None:
        """The first actuator entry whose pattern matches ``actuator_id``."""
        return next((spec for spec in self.actuators if spec.matches(actuator_id)), None)

    def rule(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        known = ", ".join(r.name for r in self.rules) or "none"
        raise ValidationError(f"rule {name!r}: no such rule; configured: {known}")


def rules_path(rules: str, base_dir: Path | None) -> Path:
    """Where ``rules: <path>`` of a control file points: relative to the control file's folder."""
    return Path(rules) if base_dir is None or Path(rules).is_absolute() else base_dir / rules


def parse_control(
    data: Any, *, source: str = "<control>", base_dir: Path | None = None
) -> ControlConfig:
    """A :class:`ControlConfig` from a mapping; every problem names its position."""
    if not isinstance(data, dict):
        raise ValidationError(f"{source}: expected a mapping with actuators and rules")
    data = dict(data)
    rules = data.pop("rules", [])
    if isinstance(rules, str):
        parsed = load_rules(rules_path(rules, base_dir))
    elif isinstance(rules, list):
        parsed = [
            parse_rule(item, position=f"{source}: rules[{i}]") for i, item in enumerate(rules)
        ]
    else:
        raise ValidationError(f"{source}: rules: expected a list of rules or a file path")
    try:
        config = ControlConfig.model_validate({**data, "rules": parsed})
    except pydantic.ValidationError as error:
        problems = []
        for item in error.errors():
            where = ".".join(str(part) for part in item["loc"])
            problems.append(f"{where}: {str(item['msg']).removeprefix('Value error, ')}")
        raise ValidationError(f"{source}: " + "; ".join(problems)) from None
    names = [rule.name for rule in config.rules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValidationError(f"{source}: duplicate rule names {duplicates}; names must be unique")
    return config


def load_control(path: str | Path) -> ControlConfig:
    """The control configuration in a YAML file (see the module docstring)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ValidationError(f"{path}: cannot read the control configuration: {error}") from None
    config = parse_control(data, source=str(path), base_dir=path.parent)
    logger.info("%s: %d rules, %d actuator entries", path, len(config.rules), len(config.actuators))
    return config
