"""Simulate before acting: a task's declared check runs a traffic scenario before the task is sent.

A rule's task may carry ``check: {scenario: evening-peak, max_tstt_increase_pct: 5}``
(:class:`~citytwin.control.rules.CheckSpec`). Before the task goes to its actuator, the named
scenario is loaded from the scenario registry, the task's own change is added to it, both the
*base* and the *variant* are assigned to user equilibrium, and the task passes only when total
system travel time ``TSTT = Σ volume · time`` (Sheffi 1985, *Urban Transportation Networks*,
ch. 3) rises by at most the limit. What is compared:

- the task describes a change (a signal-plan task with parameters ``{"links": [[a, b], ...],
  "factor": f}`` is a capacity change on those links): base = the scenario as stored, with its own
  changes (the conditions to test under, e.g. more demand); variant = base + the task's change;
- the task describes none: the scenario's own changes are the action; base = its baseline (no
  changes), variant = the scenario — the registry's usual comparison.

This is the one control module that runs simulations, so it imports
:mod:`citytwin.services.scenarios` (the registry on disk) and the scenario adapters; the runs stay
in memory (a check does not add runs to the registry). The base result is cached per base spec
sha256 and input files, since checks run on the control path.

A check never raises: a missing scenario, a model without TSTT (a plume), an invalid task change,
a failing or non-converged run all give ``passed=False`` with a sentence saying why — a broken
check blocks the action instead of crashing the control loop — and the exception is logged.

>>> import tempfile
>>> from citytwin.control.rules import CheckSpec
>>> checker = ScenarioChecker(Path(tempfile.mkdtemp()))
>>> result = checker(CheckSpec(scenario="evening-peak"), {"links": [[15, 10]], "factor": 0.8})
>>> result.passed, result.figures
(False, {'limit_pct': 5.0})
>>> result.detail  # doctest: +ELLIPSIS
"check scenario 'evening-peak' cannot be used: scenario 'evening-peak' not found in ..."
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from citytwin.control.rules import CheckSpec
from citytwin.errors import CitytwinError
from citytwin.services.scenarios import get_scenario
from citytwin.simulate.scenario import Scenario, ScenarioResult, get_adapter, load_scenario

logger = logging.getLogger(__name__)

#: Base results kept per checker (one per scenario and input version).
CACHE_SIZE = 16
Runner = Callable[[Scenario], ScenarioResult]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: passed or not, the figures behind it and a readable sentence.

    ``figures`` holds ``base_tstt``, ``variant_tstt``, ``increase_pct`` and ``limit_pct`` when the
    simulation ran (only ``limit_pct`` when it could not); ``spec_sha256`` is the sha256 of the
    variant spec that was simulated (empty when none was).
    """

    passed: bool
    scenario: str
    figures: dict[str, float]
    detail: str
    spec_sha256: str = ""

    def to_dict(self) -> dict[str, object]:
        """Plain JSON for the audit log.

        >>> CheckResult(True, "peak", {"limit_pct": 5.0}, "ok").to_dict()["figures"]
        {'limit_pct': 5.0}
        """
        return {
            "passed": self.passed, "scenario": self.scenario, "figures": dict(self.figures),
            "detail": self.detail, "spec_sha256": self.spec_sha256,
        }  # fmt: skip


class Checker(Protocol):
    """Anything that decides whether a task may be sent: ``checker(spec, task_parameters)``."""

    def __call__(self, spec: CheckSpec, task_parameters: Mapping[str, object]) -> CheckResult:
        """The outcome of ``spec`` for a task with these parameters (never raises)."""
        ...


class _Blocked(Exception):
    """A check that cannot pass, with the sentence that says why."""


def task_change(task_parameters: Mapping[str, object]) -> dict[str, object] | None:
    """The scenario change a task's parameters describe, or None when they describe none.

    ``{"links": [[a, b], ...], "factor": f}`` (a signal plan giving those links a share ``f`` of
    their capacity) is ``{"capacity": {"links": ..., "factor": f}}``; it is validated with the
    scenario it joins.

    >>> task_change({"links": [[15, 10]], "factor": 0.8, "plan": "B"})
    {'capacity': {'links': [[15, 10]], 'factor': 0.8}}
    >>> task_change({"plan": "B"}) is None
    True
    """
    if "links" not in task_parameters and "factor" not in task_parameters:
        return None
    keys = ("links", "factor")
    return {"capacity": {k: task_parameters[k] for k in keys if k in task_parameters}}


@dataclass
class ScenarioChecker:
    """Checks tasks against the scenarios of the registry folder ``root`` (see module docstring).

    ``run`` runs one scenario in memory (default: its model's adapter); pass another to count or
    stub runs.
    """

    root: Path
    run: Runner | None = None
    _cache: OrderedDict[str, ScenarioResult] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, spec: CheckSpec, task_parameters: Mapping[str, object]) -> CheckResult:
        """Run the check ``spec`` for a task with ``task_parameters``; never raises."""
        limit = float(spec.max_tstt_increase_pct)
        try:
            return self._check(spec, task_parameters)
        except _Blocked as blocked:
            logger.warning("check %s blocks the task: %s", spec.scenario, blocked)
            return CheckResult(False, spec.scenario, {"limit_pct": limit}, str(blocked))
        except Exception as exc:  # a broken check must block the action, not the control loop
            logger.exception("check scenario %r failed", spec.scenario)
            detail = f"check scenario {spec.scenario!r} failed to run: {_reason(exc)}"
            return CheckResult(False, spec.scenario, {"limit_pct": limit}, detail)

    def _check(self, spec: CheckSpec, task_parameters: Mapping[str, object]) -> CheckResult:
        name, limit = spec.scenario, float(spec.max_tstt_increase_pct)
        scenario, change = self._load(name), task_change(task_parameters)
        # the base runs first: a model without TSTT is named as such, not as a bad change
        base = scenario if change is not None else scenario.baseline()
        base_tstt = _tstt(self._base_result(base), name)
        variant = scenario if change is None else _with_change(scenario, change)
        variant_tstt = _tstt(self._run(variant), name)
        increase = 100.0 * (variant_tstt - base_tstt) / base_tstt
        figures = {
            "base_tstt": base_tstt, "variant_tstt": variant_tstt, "increase_pct": increase,
            "limit_pct": limit,
        }  # fmt: skip
        passed = increase <= limit
        detail = _sentence(name, change, increase, limit, passed)
        logger.info("check %s: %s", name, detail)
        return CheckResult(passed, name, figures, detail, variant.sha256())

    def _load(self, name: str) -> Scenario:
        try:
            return get_scenario(self.root, name)
        except CitytwinError as exc:
            raise _Blocked(f"check scenario {name!r} cannot be used: {exc}") from exc

    def _base_result(self, base: Scenario) -> ScenarioResult:
        """The result of ``base``, run once per spec and input-file version."""
        key = _cache_key(base)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        result = self._run(base)
        with self._lock:
            self._cache[key] = result
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return result

    def _run(self, scenario: Scenario) -> ScenarioResult:
        if self.run is not None:
            return self.run(scenario)
        return get_adapter(scenario.model).run(scenario)


def _cache_key(scenario: Scenario) -> str:
    """Spec sha256 plus size and mtime of every input: an edited network file is a new key."""
    stats = [
        f"{path}:{stat.st_size}:{stat.st_mtime_ns}"
        for path in sorted(get_adapter(scenario.model).inputs(scenario))
        for stat in [path.stat()]
    ]
    return "|".join([scenario.sha256(), *stats])


def _with_change(scenario: Scenario, change: dict[str, object]) -> Scenario:
    """``scenario`` with the task's change appended, validated as a whole."""
    data = scenario.model_dump(mode="json")
    data["changes"] = [*data["changes"], change]
    position = f"changes[{len(data['changes']) - 1}]"
    try:
        return load_scenario(data, source="scenario")
    except CitytwinError as exc:
        raise _Blocked(
            f"check scenario {scenario.name!r} cannot take the task's change ({position}): {exc}"
        ) from exc


def _tstt(result: ScenarioResult, name: str) -> float:
    """TSTT of a run; a model without it, or a run that did not converge, blocks the check."""
    summary = result.summary
    value = summary.get("tstt")
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _Blocked(
            f"check scenario {name!r} (model {result.model}) has no total system travel time; "
            "a travel-time check needs an assignment scenario"
        )
    if summary.get("converged") is False:
        raise _Blocked(
            f"check scenario {name!r}: an assignment did not converge (relative gap "
            f"{summary.get('relative_gap')}), so its travel time cannot be trusted"
        )
    if not value > 0:
        raise _Blocked(f"check scenario {name!r}: total system travel time is {value}")
    return float(value)


def _sentence(
    name: str, change: dict[str, object] | None, increase: float, limit: float, passed: bool
) -> str:
    """One sentence for an alert: ``… raises total system travel time by 7.2 % (limit 5 %)``."""
    subject = f"scenario {name!r}"
    capacity = change.get("capacity") if change else None
    if isinstance(capacity, dict):  # validated by then: a list of (from, to) pairs and a factor
        links = ", ".join("-".join(str(node) for node in pair) for pair in capacity["links"])
        subject = f"capacity × {capacity['factor']} on {links} in {subject}"
    verb = "raises" if increase >= 0 else "lowers"
    verdict = "passes" if passed else "blocked"
    return (
        f"{subject} {verb} total system travel time by {abs(increase):.1f} % "
        f"(limit {limit:g} %): {verdict}"
    )


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
