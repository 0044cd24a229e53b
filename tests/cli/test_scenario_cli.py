"""``citytwin scenario …`` end to end on SiouxFalls: the acceptance of issue 6, item 5.

A road-closure scenario runs from a YAML file, is stored with provenance, re-runs to the same
result sha256 and compares with its baseline (table, deltas CSV, difference map).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from citytwin.cli.scenario import scenario_app

runner = CliRunner()
app = typer.Typer()
app.add_typer(scenario_app, name="scenario")

CLOSURE = """\
name: close-10-16
model: assignment
description: both directions of link 10-16 closed for road works
base:
  network: {network}
changes:
  - close: [[10, 16], [16, 10]]
parameters:
  gap: 1.0e-4
seed: 1
"""


@pytest.fixture
def closure_file(shared_data: Path, tmp_path: Path) -> Path:
    path = tmp_path / "close.yaml"
    path.write_text(CLOSURE.format(network=shared_data / "tntp" / "SiouxFalls"))
    return path


def test_closure_runs_is_stored_reruns_identical_and_compares(
    closure_file: Path, tmp_path: Path, shared_data: Path
) -> None:
    registry = tmp_path / "registry"
    ran = runner.invoke(app, ["scenario", "run", str(closure_file), "--dir", str(registry)])
    assert ran.exit_code == 0, ran.output
    assert "close-10-16.1" in ran.output
    assert "tstt" in ran.output
    run_folder = registry / "close-10-16" / "runs" / "close-10-16.1"
    provenance = json.loads((run_folder / "provenance.json").read_text())
    assert provenance["spec"]["changes"] == [{"close": [[10, 16], [16, 10]]}]
    links = pd.read_csv(run_folder / "links.csv")
    assert not ((links["from"] == 10) & (links["to"] == 16)).any()

    again = runner.invoke(app, ["scenario", "rerun", "close-10-16.1", "--dir", str(registry)])
    assert again.exit_code == 0, again.output
    assert "identical" in again.output
    assert provenance["result_sha256"] in again.output.replace("\n", "")

    out = tmp_path / "compare"
    compared = runner.invoke(
        app, ["scenario", "compare", "close-10-16", "--dir", str(registry), "--out", str(out)]
    )
    assert compared.exit_code == 0, compared.output
    summary = json.loads((out / "summary.json").read_text())
    deltas = pd.read_csv(out / "deltas.csv")
    assert summary["tstt_change"] > 0  # losing a road can only slow the network down here
    assert summary["links_closed"] == 2
    assert len(deltas) == 76
    baseline = pd.read_csv(shared_data / "tntp" / "SiouxFalls" / "SiouxFalls_flow.tntp",
                           sep=r"\s+")  # fmt: skip
    flow_10_16 = baseline.query("From == 10 and To == 16")["Volume"].iloc[0]
    closed = deltas.query("`from` == 10 and to == 16")["volume_change"].iloc[0]
    assert closed == pytest.approx(-flow_10_16, rel=0.02)  # TNTP's best-known equilibrium
    with Image.open(out / "difference.png") as picture:
        assert picture.size == (1200, 1000)


def test_list_and_unknown_names(closure_file: Path, tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    assert (
        runner.invoke(app, ["scenario", "run", str(closure_file), "-d", str(registry)]).exit_code
        == 0
    )
    listed = runner.invoke(app, ["scenario", "list", "--dir", str(registry)])
    assert listed.exit_code == 0
    assert "close-10-16" in listed.output
    missing = runner.invoke(app, ["scenario", "compare", "nope", "--dir", str(registry)])
    assert missing.exit_code == 2
    assert "scenario 'nope' not found" in missing.output


def test_a_bad_spec_names_the_field(tmp_path: Path, closure_file: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(closure_file.read_text().replace("gap: 1.0e-4", "gap: 2"))
    result = runner.invoke(app, ["scenario", "run", str(bad), "--dir", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "parameters.gap" in result.output


def test_registry_from_environment(
    closure_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CITYTWIN_SCENARIO_DIR", str(tmp_path / "from-env"))
    assert runner.invoke(app, ["scenario", "run", str(closure_file)]).exit_code == 0
    assert (tmp_path / "from-env" / "close-10-16" / "scenario.yaml").is_file()
