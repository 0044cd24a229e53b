"""Simulate-before-act checks on the real SiouxFalls network, against independent assignments."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from citytwin.control.checks import Checker, CheckResult, ScenarioChecker, task_change
from citytwin.control.rules import CheckSpec
from citytwin.services import scenarios
from citytwin.simulate import assignment_whatif as whatif
from citytwin.simulate.assignment import AssignmentResult, assign, load_tntp_case
from citytwin.simulate.scenario import Scenario, ScenarioResult, get_adapter

GAP = 1e-4


@pytest.fixture(scope="module")
def sioux(shared_data: Path) -> Path:
    return shared_data / "tntp" / "SiouxFalls"


@pytest.fixture(scope="module")
def base_run(sioux: Path) -> AssignmentResult:
    """The user equilibrium of the unchanged network, computed without the scenario machinery."""
    network, demand = load_tntp_case(sioux)
    return assign(network, demand, gap=GAP)


@pytest.fixture(scope="module")
def busiest(base_run: AssignmentResult) -> tuple[str, str]:
    """The link carrying the most traffic at equilibrium (from, to)."""
    tail, head = base_run.network.link_labels()
    i = int(np.argmax(base_run.volume))
    return str(tail[i]), str(head[i])


def _registry(root: Path, sioux: Path, name: str, changes: list[object]) -> Path:
    scenarios.create(root, {
        "name": name, "model": "assignment", "base": {"network": str(sioux)},
        "changes": changes, "parameters": {"gap": GAP},
    })  # fmt: skip
    return root


def _increase(base: AssignmentResult, variant: AssignmentResult) -> float:
    return 100.0 * (variant.tstt - base.tstt) / base.tstt


def _with_capacity(sioux: Path, link: tuple[str, str], factor: float) -> AssignmentResult:
    network, demand = load_tntp_case(sioux)
    return assign(whatif.with_capacity(network, [link], factor=factor), demand, gap=GAP)


def test_a_capacity_cut_on_the_busiest_link_is_blocked(
    sioux: Path, tmp_path: Path, base_run: AssignmentResult, busiest: tuple[str, str]
) -> None:
    variant = _with_capacity(sioux, busiest, 0.5)
    expected = _increase(base_run, variant)
    assert expected > 2.0  # halving the busiest link's capacity costs the whole network
    checker: Checker = ScenarioChecker(_registry(tmp_path, sioux, "peak", []))
    result = checker(CheckSpec(scenario="peak", max_tstt_increase_pct=2.0),
                     {"links": [list(busiest)], "factor": 0.5, "plan": "B"})  # fmt: skip
    assert not result.passed
    assert result.figures["base_tstt"] == pytest.approx(base_run.tstt, rel=1e-9)
    assert result.figures["variant_tstt"] == pytest.approx(variant.tstt, rel=1e-9)
    assert result.figures["increase_pct"] == pytest.approx(expected, rel=1e-7)
    assert result.figures["limit_pct"] == 2.0
    assert f"raises total system travel time by {expected:.1f} % (limit 2 %)" in result.detail
    assert f"{busiest[0]}-{busiest[1]}" in result.detail
    assert "blocked" in result.detail
    assert len(result.spec_sha256) == 64
    assert json.loads(json.dumps(result.to_dict())) == {
        "passed": False, "scenario": "peak", "figures": result.figures, "detail": result.detail,
        "spec_sha256": result.spec_sha256,
    }  # fmt: skip


def test_a_mild_change_passes_a_generous_limit(
    sioux: Path, tmp_path: Path, base_run: AssignmentResult, busiest: tuple[str, str]
) -> None:
    expected = _increase(base_run, _with_capacity(sioux, busiest, 0.9))
    assert 0 < expected < 5.0
    checker = ScenarioChecker(_registry(tmp_path, sioux, "peak", []))
    result = checker(CheckSpec(scenario="peak", max_tstt_increase_pct=5.0),
                     {"links": [list(busiest)], "factor": 0.9})  # fmt: skip
    assert result.passed
    assert result.figures["increase_pct"] == pytest.approx(expected, rel=1e-7)
    assert result.detail.endswith(f"by {expected:.1f} % (limit 5 %): passes")


def test_the_scenarios_changes_are_the_conditions_and_the_base_is_cached(
    sioux: Path, tmp_path: Path, busiest: tuple[str, str]
) -> None:
    """With more demand in the scenario, the task's change is judged against that heavier base."""
    network, demand = load_tntp_case(sioux)
    heavy = whatif.scale_demand(demand, factor=1.1)
    base = assign(network, heavy, gap=GAP)
    cut = assign(whatif.with_capacity(network, [busiest], factor=0.7), heavy, gap=GAP)
    runs: list[Scenario] = []

    def counting(scenario: Scenario) -> ScenarioResult:
        runs.append(scenario)
        return get_adapter(scenario.model).run(scenario)

    root = _registry(tmp_path, sioux, "busy", [{"demand": {"factor": 1.1}}])
    checker = ScenarioChecker(root, run=counting)
    spec = CheckSpec(scenario="busy", max_tstt_increase_pct=50)
    first = checker(spec, {"links": [list(busiest)], "factor": 0.7})
    second = checker(spec, {"links": [list(busiest)], "factor": 0.7})
    assert first.figures["base_tstt"] == pytest.approx(base.tstt, rel=1e-9)
    assert first.figures["increase_pct"] == pytest.approx(_increase(base, cut), rel=1e-7)
    assert second == first
    assert [len(s.changes) for s in runs] == [1, 2, 2]  # base once, the variant each time


def test_without_a_task_change_the_scenario_is_judged_against_its_baseline(
    sioux: Path, tmp_path: Path, base_run: AssignmentResult, busiest: tuple[str, str]
) -> None:
    expected = _increase(base_run, _with_capacity(sioux, busiest, 0.5))
    change = {"capacity": {"links": [list(busiest)], "factor": 0.5}}
    checker = ScenarioChecker(_registry(tmp_path, sioux, "plan-b", [change]))
    result = checker(CheckSpec(scenario="plan-b", max_tstt_increase_pct=50), {"plan": "B"})
    assert task_change({"plan": "B"}) is None
    assert result.passed
    assert result.figures["increase_pct"] == pytest.approx(expected, rel=1e-7)
    assert result.detail.startswith("scenario 'plan-b' raises total system travel time")


def test_a_missing_scenario_blocks_with_its_name(tmp_path: Path) -> None:
    result = ScenarioChecker(tmp_path)(CheckSpec(scenario="rush-hour"), {"factor": 0.8})
    assert result == CheckResult(False, "rush-hour", {"limit_pct": 5.0}, result.detail)
    assert "'rush-hour' not found" in result.detail


def test_a_plume_scenario_has_no_travel_time(tmp_path: Path) -> None:
    scenarios.create(tmp_path, {
        "name": "leak", "model": "plume",
        "base": {"bounds": [0, -500, 1000, 500], "cell": 100, "source": [0, 0]},
        "parameters": {"substance": "chlorine", "q": 10, "wind_speed": 3, "wind_direction": 270},
    })  # fmt: skip
    result = ScenarioChecker(tmp_path)(CheckSpec(scenario="leak"), {"links": [[1, 2]], "factor": 1})
    assert not result.passed
    assert "'leak' (model plume) has no total system travel time" in result.detail


def test_a_bad_task_change_blocks_and_names_the_problem(sioux: Path, tmp_path: Path) -> None:
    checker = ScenarioChecker(_registry(tmp_path, sioux, "peak", []))
    zero = checker(CheckSpec(scenario="peak"), {"links": [[1, 2]], "factor": 0})
    assert not zero.passed
    assert "changes[0].capacity.factor: Input should be greater than 0" in zero.detail
    unknown = checker(CheckSpec(scenario="peak"), {"links": [[1, 99]], "factor": 0.5})
    assert not unknown.passed
    assert "1-99" in unknown.detail


def test_a_crashing_run_blocks_and_is_logged(
    sioux: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(scenario: Scenario) -> ScenarioResult:
        raise RuntimeError("solver exploded")

    checker = ScenarioChecker(_registry(tmp_path, sioux, "peak", []), run=broken)
    with caplog.at_level(logging.ERROR, logger="citytwin.control.checks"):
        result = checker(CheckSpec(scenario="peak"), {"links": [[1, 2]], "factor": 0.5})
    assert not result.passed
    assert result.detail == "check scenario 'peak' failed to run: RuntimeError: solver exploded"
    assert caplog.records[-1].exc_info is not None
