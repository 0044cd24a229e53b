"""The service catalog: the shipped one names only what exists; an unknown name is a problem
naming the service, the field and the name; a malformed file says where."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from citytwin.control.config import load_control, parse_control
from citytwin.errors import ValidationError
from citytwin.ingest import FEEDS
from citytwin.services.catalog import (
    DEFAULT_CATALOG,
    DEMO_CONTROL,
    Configuration,
    available_models,
    check_catalog,
    load_catalog,
)

# the list of services (id -> department keys) and the models its text names
SHIPPED = {
    "fine-dust": ("environment",),
    "heat-wave": ("health", "environment"),
    "congestion": ("transport",),
    "chemical-accident": ("disaster-safety",),
    "building-review": ("urban-planning",),
    "noise-complaints": ("environment",),
}
ANALYSES = {"map", "hotspots", "anomalies", "noise", "forecast", "traffic", "gentrification",
            "backtest"}  # fmt: skip
SIMULATIONS = {"assignment", "city-traffic", "release", "sunlight", "flood"}


@pytest.fixture(scope="module")
def configuration() -> Configuration:
    return Configuration.gather(control=load_control(DEMO_CONTROL))


def shipped_yaml() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DEFAULT_CATALOG.read_text(encoding="utf-8"))
    return data


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def with_reference(tmp_path: Path, field: str, name: str) -> Path:
    """The shipped catalog with ``name`` added to the fine-dust service's ``field``."""
    data = shipped_yaml()
    service = data["services"][0]
    service[field] = [*service.get(field, []), name]
    return write(tmp_path, data)


def test_shipped_catalog_has_the_six_services_and_checks_clean(
    configuration: Configuration,
) -> None:
    catalog = load_catalog(DEFAULT_CATALOG)
    assert {s.id: s.department for s in catalog.services} == SHIPPED
    assert check_catalog(catalog, configuration) == []
    assert catalog.departments["environment"].ko == "환경"


def _commands(app: Any) -> set[str]:
    return {
        info.name or info.callback.__name__.lower().replace("_", "-")
        for info in app.registered_commands
    }


def test_models_are_the_command_line_and_the_scenario_registry() -> None:
    from citytwin.cli.analyze import analyze_app
    from citytwin.cli.simulate import simulate_app

    models = available_models()
    assert models["analysis"] == ANALYSES == _commands(analyze_app)
    assert models["simulation"] == SIMULATIONS | {"plume"}  # + the scenario models
    assert _commands(simulate_app) == SIMULATIONS


def test_deleting_a_feed_fails_the_check_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(FEEDS, "sdot")
    configuration = Configuration.gather(control=load_control(DEMO_CONTROL))
    problems = check_catalog(load_catalog(DEFAULT_CATALOG), configuration)
    users = {s["id"] for s in shipped_yaml()["services"] if "sdot" in s.get("feeds", [])}
    assert {p.service for p in problems} == users
    assert {(p.field, p.name) for p in problems} == {("feeds", "sdot")}
    assert all("'sdot'" in str(p) for p in problems)


@pytest.mark.parametrize(
    ("field", "name", "what"),
    [
        ("feeds", "citydata", "unknown feed"),
        ("properties", "pm1", "unknown observed property"),
        ("layers", "parks", "unknown layer"),
        ("analyses", "kriging-3d", "unknown analysis"),
        ("simulations", "tsunami", "unknown simulation"),
        ("rules", "flood-alert", "unknown rule"),
        ("actuators", "siren:{gu}", "unknown actuator"),
        ("protocols", "coap", "unknown protocol"),
        ("views", "vr", "unknown twin view"),
    ],
)
def test_an_unknown_name_is_a_problem_naming_service_field_and_name(
    tmp_path: Path, configuration: Configuration, field: str, name: str, what: str
) -> None:
    problems = check_catalog(load_catalog(with_reference(tmp_path, field, name)), configuration)
    assert len(problems) == 1
    (problem,) = problems
    assert (problem.service, problem.field, problem.name) == ("fine-dust", field, name)
    assert f"{what} {name!r}" in str(problem)
    assert "fine-dust" in str(problem)


def test_actuators_match_the_control_files_patterns(configuration: Configuration) -> None:
    assert configuration.exists("actuators", "spray-truck:1111051")
    assert not configuration.exists("actuators", "spray:1111051")


def test_without_a_control_file_rules_and_actuators_do_not_exist() -> None:
    problems = check_catalog(load_catalog(DEFAULT_CATALOG), Configuration.gather())
    named = {(p.field, p.name) for p in problems}
    data = shipped_yaml()["services"]
    expected = {("rules", r) for s in data for r in s.get("rules", [])}
    expected |= {("actuators", a) for s in data for a in s.get("actuators", [])}
    assert named == expected
    assert all("no control file configured" in str(p) for p in problems)


def test_a_rule_dropped_from_the_control_file_is_named() -> None:
    demo = yaml.safe_load(DEMO_CONTROL.read_text(encoding="utf-8"))
    demo["rules"] = [r for r in demo["rules"] if r["name"] != "heat-wave"]
    configuration = Configuration.gather(control=parse_control(demo))
    problems = check_catalog(load_catalog(DEFAULT_CATALOG), configuration)
    assert [(p.service, p.field, p.name) for p in problems] == [("heat-wave", "rules", "heat-wave")]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s.update(department="police"), "services[0] (id 'fine-dust'): department"),
        (lambda s: s.update(feed=["sdot"]), "services[0] (id 'fine-dust'): feed: Extra inputs"),
        (lambda s: s.pop("name"), "services[0] (id 'fine-dust'): name: Field required"),
        (lambda s: s.update(gaps=[{"function": "magic", "reason": {"ko": "k", "en": "e"}}]),
         "services[0] (id 'fine-dust'): gaps.0.function"),
        (lambda s: s.update(id="heat-wave"), "services[1] (id 'heat-wave'): id: duplicate"),
    ],
)  # fmt: skip
def test_a_malformed_catalog_names_file_service_and_field(
    tmp_path: Path, change: Any, expected: str
) -> None:
    data = shipped_yaml()
    change(data["services"][0])
    path = write(tmp_path, data)
    with pytest.raises(ValidationError) as raised:
        load_catalog(path)
    assert str(raised.value).startswith(str(path))
    assert expected in str(raised.value)


def test_an_unreadable_catalog_is_a_validation_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot read the service catalog"):
        load_catalog(tmp_path / "absent.yaml")
