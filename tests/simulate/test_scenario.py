"""Scenarios: spec validation, the assignment adapter, and the on-disk registry with reruns."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from citytwin.errors import ValidationError
from citytwin.services import scenarios
from citytwin.simulate.scenario import MODELS, get_adapter, load_scenario


def _spec(network: Path, changes: list[object], name: str = "closure") -> dict[str, object]:
    return {
        "name": name, "model": "assignment", "base": {"network": str(network)},
        "changes": changes, "parameters": {"gap": 1e-4}, "seed": 7,
    }  # fmt: skip


@pytest.fixture
def sioux(shared_data: Path) -> Path:
    return shared_data / "tntp" / "SiouxFalls"


def test_unknown_model_lists_the_valid_ones() -> None:
    with pytest.raises(ValidationError, match=r"'traffic'.*expected one of assignment, plume"):
        load_scenario({"name": "x", "model": "traffic", "base": {}})
    assert sorted(MODELS) == ["assignment", "plume"]


def test_every_bad_field_is_named_by_its_position(sioux: Path) -> None:
    spec = _spec(sioux, [
        {"close": [[10, 16]]}, {"capacity": {"links": [[1, 2]], "factor": 0}},
        {"close": [[1, 2]], "demand": {"factor": 2}}, {"widen": [[1, 2]]},
    ])  # fmt: skip
    spec["parameters"] = {"gap": 1e-4, "algorithm": "magic"}
    with pytest.raises(ValidationError) as caught:
        load_scenario(spec)
    message = str(caught.value)
    assert "changes[1].capacity.factor: Input should be greater than 0" in message
    assert "changes[2]: Value error, expected exactly one of close" in message
    assert "changes[3].widen: Extra inputs are not permitted" in message
    assert "parameters.algorithm: Input should be 'bfw', 'cfw' or 'fw'" in message
    assert "changes[0]" not in message


def test_yaml_errors_name_the_line() -> None:
    with pytest.raises(ValidationError, match="line 2"):
        load_scenario("name: x\nmodel: [assignment\n")


def test_an_unknown_link_is_named_with_its_change(sioux: Path) -> None:
    scenario = load_scenario(_spec(sioux, [{"demand": {"factor": 1.1}}, {"close": [[1, 99]]}]))
    with pytest.raises(ValidationError, match=r"changes\[1\]\.close: .*no link 1-99"):
        get_adapter("assignment").run(scenario)


def test_closing_the_braess_link_cuts_travel_time(shared_data: Path) -> None:
    """Braess (1968): 6 trips cost 92 each with link 3→4 and 83 each without it."""
    spec = _spec(shared_data / "tntp" / "Braess-Example", [{"close": [[3, 4]]}])
    spec["parameters"] = {"gap": 1e-10}
    scenario = load_scenario(spec)
    adapter = get_adapter("assignment")
    variant, base = adapter.run(scenario), adapter.run(scenario.baseline())
    comparison = adapter.compare(variant, base)
    assert comparison.summary["tstt_base"] == pytest.approx(6 * 92, rel=1e-6)
    assert comparison.summary["tstt_variant"] == pytest.approx(6 * 83, rel=1e-6)
    assert comparison.summary["links_closed"] == 1
    closed = comparison.table.query("`from` == '3' and to == '4'").iloc[0]
    assert closed["volume_change"] == pytest.approx(-2.0, abs=1e-4)


def test_registry_stores_reruns_and_compares(sioux: Path, tmp_path: Path) -> None:
    root = tmp_path / "registry"
    scenarios.create(root, _spec(sioux, [{"close": [[10, 16], [16, 10]]}]))
    record = scenarios.run(root, "closure")
    assert record.run_id == "closure.1"
    assert record.baseline_id is not None
    assert record.baseline_id.startswith("_baseline.")
    provenance = json.loads((record.folder / "provenance.json").read_text())
    links = pd.read_csv(record.folder / "links.csv")
    assert len(links) == 76 - 2  # SiouxFalls_net.tntp has 76 links
    assert provenance["seed"] == 7
    assert provenance["versions"]["numpy"]
    assert set(provenance["inputs"]) == {str(sioux / "SiouxFalls_net.tntp"),
                                         str(sioux / "SiouxFalls_trips.tntp")}  # fmt: skip
    assert record.summary["tstt"] == pytest.approx((links["volume"] * links["time"]).sum())
    check = scenarios.rerun(root, record.run_id)
    assert check.identical
    assert check.rerun_sha256 == record.result_sha256
    assert scenarios.rerun(root, record.baseline_id).identical
    comparison = scenarios.compare(root, "closure")
    assert comparison.b == record.baseline_id
    tstt_change = comparison.result.summary["tstt_change"]
    assert isinstance(tstt_change, float)
    assert tstt_change > 0
    base = pd.read_csv(root / "_baselines" / record.baseline_id.split(".")[1] / "links.csv")
    closed = comparison.result.table.query("`from` == '10' and to == '16'").iloc[0]
    assert closed["volume_change"] == pytest.approx(
        -base.query("`from` == 10 and to == 16")["volume"].iloc[0]
    )


def test_baseline_is_shared_and_rerun_detects_changed_input(sioux: Path, tmp_path: Path) -> None:
    data = tmp_path / "SiouxFalls"
    shutil.copytree(sioux, data)
    root = tmp_path / "registry"
    scenarios.create(root, _spec(data, [{"close": [[10, 16]]}], name="one"))
    scenarios.create(root, _spec(data, [{"capacity": {"links": [[10, 16]], "factor": 0.5}}],
                                 name="two"))  # fmt: skip
    first, second = scenarios.run(root, "one"), scenarios.run(root, "two")
    assert first.baseline_id == second.baseline_id
    assert len(list((root / "_baselines").iterdir())) == 1
    assert [row["name"] for row in scenarios.list_scenarios(root)] == ["one", "two"]
    trips = data / "SiouxFalls_trips.tntp"
    text = trips.read_text().replace("2 :    100.0;", "2 :    200.0;", 1)  # 1→2: 100 more trips
    trips.write_text(text.replace("360600.0", "360700.0"))
    check = scenarios.rerun(root, first.run_id)
    assert not check.identical
    assert check.differing == ("links.csv",)
    assert check.inputs_changed == (str(trips),)


def test_unknown_scenario_and_run_are_named(tmp_path: Path) -> None:
    with pytest.raises(scenarios.ScenarioNotFoundError, match="scenario 'nope' not found"):
        scenarios.compare(tmp_path, "nope")
    with pytest.raises(ValidationError, match=r"run id '\.\./etc'"):
        scenarios.rerun(tmp_path, "../etc")


def test_plume_scenario_scales_with_rate_over_wind_speed(tmp_path: Path) -> None:
    """Gaussian plume: C ∝ q/u (Turner 1970), so 4× the release at 2/3 of the wind is 6× peak."""
    spec = {
        "name": "bigger-leak", "model": "plume",
        "base": {"bounds": [0, -1000, 3000, 1000], "cell": 50, "source": [0, 0]},
        "parameters": {"substance": "chlorine", "q": 10, "wind_speed": 3, "wind_direction": 270},
        "changes": [{"release": {"q": 40}}, {"wind": {"speed": 2}}],
    }  # fmt: skip
    root = tmp_path / "registry"
    scenarios.create(root, spec)
    record = scenarios.run(root, "bigger-leak")
    assert scenarios.rerun(root, record.run_id).identical
    comparison = scenarios.compare(root, "bigger-leak")
    peak_base = float(comparison.result.summary["peak_base_g_m3"] or 0)
    peak_variant = float(comparison.result.summary["peak_variant_g_m3"] or 0)
    assert peak_variant == pytest.approx(6 * peak_base, rel=1e-5)
    assert list(comparison.result.table["level"]) == ["AEGL-1", "AEGL-2", "AEGL-3"]
    areas = comparison.result.table["area_change_m2"]
    assert (areas >= 0).all()
    assert (areas.to_numpy() == comparison.result.table["cells_change"].to_numpy() * 50**2).all()
    assert (scenarios.write_comparison(comparison, tmp_path / "cmp")["picture"]).is_file()


def test_plume_spec_errors_are_named() -> None:
    spec = {
        "name": "x", "model": "plume",
        "base": {"bounds": [0, 0, -1, 1], "cell": 10, "source": [0, 0]},
        "parameters": {"substance": "unobtainium", "q": 1, "wind_speed": 0, "wind_direction": 90},
        "changes": [{"wind": {"direction": 400}}],
    }  # fmt: skip
    with pytest.raises(ValidationError) as caught:
        load_scenario(spec)
    message = str(caught.value)
    assert "base: Value error, bounds" in message
    assert "parameters.wind_speed: Input should be greater than 0" in message
    assert "changes[0].wind.direction" in message
