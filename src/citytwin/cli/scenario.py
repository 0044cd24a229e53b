"""``citytwin scenario …`` — versioned what-if scenarios: run, list, rerun, compare.

Scenarios and their runs live in a registry folder: ``--dir``, else ``$CITYTWIN_SCENARIO_DIR``,
else ``scenarios/`` in the working folder (see docs/scenarios.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from citytwin.cli._shared import console, domain_errors, err_console, summary_table
from citytwin.errors import ValidationError

scenario_app = typer.Typer(
    help="Versioned what-if scenarios: run from YAML, list, rerun to verify, compare.",
    no_args_is_help=True,
)

DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        "-d",
        help="Scenario registry folder (default: $CITYTWIN_SCENARIO_DIR or ./scenarios).",
        show_default=False,
    ),
]


def registry_dir(option: Path | None) -> Path:
    """``--dir``, else ``$CITYTWIN_SCENARIO_DIR``, else ``scenarios/`` here."""
    return option or Path(os.environ.get("CITYTWIN_SCENARIO_DIR") or "scenarios")


def _figure(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.6g}" if abs(value) < 1e-2 else f"{value:,.2f}"
    return str(value)


@scenario_app.command("run")
def run_(
    file: Annotated[Path, typer.Argument(help="Scenario YAML (or JSON) file.")],
    dir: DirOption = None,
) -> None:
    """Create (or update) the scenario from FILE, run it and store the run with provenance.

    The baseline (the same base and parameters without the changes) is run and stored once.
    Relative paths in the file are taken relative to the file's folder.
    """
    from citytwin.services import scenarios

    root = registry_dir(dir)
    with domain_errors():
        if not file.is_file():
            raise ValidationError(f"scenario file {file}: no such file")
        scenario = scenarios.create(
            root, file.read_text(encoding="utf-8"), base_dir=file.resolve().parent
        )
        with err_console.status(f"running {scenario.name} …", spinner="dots"):
            record = scenarios.run(root, scenario.name)
    table = summary_table(f"scenario {scenario.name} ({scenario.model})", ["figure", "value"],
                          right=("value",))  # fmt: skip
    for key, value in record.summary.items():
        table.add_row(key, _figure(value))
    table.add_row("run id", record.run_id)
    table.add_row("baseline", record.baseline_id or "-")
    table.add_row("result sha256", record.result_sha256[:16] + "…")
    console.print(table)
    console.print(f"stored in {record.folder}")


@scenario_app.command("list")
def list_(dir: DirOption = None) -> None:
    """The stored scenarios with their model, number of runs and latest run."""
    from citytwin.services import scenarios

    root = registry_dir(dir)
    with domain_errors():
        rows = scenarios.list_scenarios(root)
    if not rows:
        console.print(f"no scenarios in {root}")
        return
    columns = ["name", "model", "changes", "runs", "latest", "description"]
    table = summary_table(f"scenarios in {root}", columns, right=("changes", "runs"))
    for row in rows:
        table.add_row(row["name"], row["model"], str(row["changes"]), str(row["runs"]),
                      row["latest_run"] or "-", row["description"])  # fmt: skip
    console.print(table)


@scenario_app.command("rerun")
def rerun(
    run_id: Annotated[str, typer.Argument(help="Run id, e.g. closure.1 or _baseline.<key>.")],
    dir: DirOption = None,
) -> None:
    """Run a stored run again and check every result file is bit-identical (exit 1 if not)."""
    from citytwin.services import scenarios

    with domain_errors(), err_console.status(f"re-running {run_id} …", spinner="dots"):
        check = scenarios.rerun(registry_dir(dir), run_id)
    if check.inputs_changed:
        err_console.print(f"[yellow]inputs changed since the run:[/yellow] "
                          f"{', '.join(check.inputs_changed)}")  # fmt: skip
    if not check.identical:
        err_console.print(
            f"[red]differs:[/red] {', '.join(check.differing)} (result sha256 "
            f"{check.stored_sha256[:16]}… stored, {check.rerun_sha256[:16]}… now)"
        )
        raise typer.Exit(1)
    console.print(f"identical: {run_id} result sha256 {check.stored_sha256}")


@scenario_app.command("compare")
def compare(
    a: Annotated[str, typer.Argument(help="Scenario name (its latest run) or run id.")],
    b: Annotated[
        str | None,
        typer.Argument(help="Scenario name or run id to compare with (default: A's baseline)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Folder for deltas.csv, summary.json, difference.png.",
            show_default="compare-<A>",
        ),
    ] = None,
    dir: DirOption = None,
) -> None:
    """Deltas of A against B: a table of headline changes, the per-row CSV and a difference map."""
    from citytwin.services import scenarios

    root = registry_dir(dir)
    with domain_errors():
        comparison = scenarios.compare(root, a, b)
        written = scenarios.write_comparison(comparison, out or Path(f"compare-{a}"))
    table = summary_table(f"{comparison.a} against {comparison.b}", ["figure", "value"],
                          right=("value",))  # fmt: skip
    for key, value in comparison.result.summary.items():
        table.add_row(key, _figure(value))
    console.print(table)
    for kind, path in written.items():
        console.print(f"{kind}: {path}")
