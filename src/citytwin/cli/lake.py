"""``citytwin lake …`` — the store's history as a Parquet lake; rollups and maps over it on Dask.

``export`` copies observations (whole UTC days) out of the store; ``rollup`` aggregates the lake
per district (or datastream, property) and hour or day; ``krige`` maps one property per hour.
``--scheduler tcp://host:8786`` runs on a Dask cluster whose workers see the lake at the same
path; without it a local in-process cluster is started.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from citytwin.cli._shared import (
    StoreOption,
    console,
    domain_errors,
    err_console,
    settings_for,
    summary_table,
)
from citytwin.cli.analyze import parse_time
from citytwin.errors import ValidationError

if TYPE_CHECKING:
    import pyarrow as pa

lake_app = typer.Typer(
    help="Parquet lake of the store's history; rollups and hourly maps over it on Dask.",
    no_args_is_help=True,
)

LakeArgument = Annotated[Path, typer.Argument(help="Lake directory (from `citytwin lake export`).")]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since", help="ISO 8601 start with a zone (2020-03-01T00:00Z).", show_default=False
    ),
]
UntilOption = Annotated[
    str | None,
    typer.Option("--until", help="ISO 8601 end (exclusive) with a zone.", show_default=False),
]
SchedulerOption = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Dask scheduler address (tcp://host:8786); default: a local in-process cluster.",
        envvar="CITYTWIN_DASK_SCHEDULER",
        show_default=False,
    ),
]


@contextmanager
def _steps(what: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr (nothing when piped), advanced by ``(done, total)`` calls."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(
        *columns,
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    ) as bar:
        task = bar.add_task(what, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


@lake_app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="Lake directory (created).")],
    since: SinceOption = None,
    until: UntilOption = None,
    store: StoreOption = None,
) -> None:
    """Export the store's observations to the lake, whole UTC days; re-exporting a day replaces
    it (never duplicates)."""
    from citytwin.store import open_store
    from citytwin.store.lake import export_lake

    started = time.perf_counter()
    with (
        domain_errors(),
        open_store(settings_for(store).store_url) as opened,
        _steps("exporting days") as advance,
    ):
        report = export_lake(
            opened,
            out,
            start=parse_time(since, "--since"),
            end=parse_time(until, "--until"),
            progress=advance,
        )
    console.print(
        f"{report.root}: {report.rows:,} observations over {report.days} day(s) in "
        f"{report.partitions:,} file(s), {report.removed:,} stale file(s) removed, "
        f"{report.datastreams:,} datastreams ({time.perf_counter() - started:.1f} s)"
    )


@lake_app.command("rollup")
def rollup(
    lake: LakeArgument,
    by: Annotated[
        str, typer.Option(help="thing.<name> (thing.dong_code, thing.gu_code), datastream, …")
    ] = "thing.dong_code",
    bucket: Annotated[str, typer.Option(help="hour or day.")] = "hour",
    observed_property: Annotated[
        str | None, typer.Option("--property", "-p", help="Only this observed property.")
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    keep_suspect: Annotated[
        bool, typer.Option(help="Keep readings QC flagged as suspect (left out by default).")
    ] = False,
    scheduler: SchedulerOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the table: .parquet or .csv.")
    ] = None,
) -> None:
    """Mean, min, max and count per group, property and time bucket, computed on Dask."""
    from citytwin.store.lake_dask import rollup as run_rollup
    from citytwin.twin.state import SUSPECT

    started = time.perf_counter()
    with domain_errors():
        if out is not None and out.suffix.lower() not in (".parquet", ".csv"):
            raise ValidationError(
                f"--out {out}: unknown suffix {out.suffix!r}; expected .parquet or .csv"
            )
        with err_console.status("rolling up on Dask …") if err_console.is_terminal else _nothing():
            table = run_rollup(
                lake,
                by=by,
                bucket=bucket,
                observed_property=observed_property,
                start=parse_time(since, "--since"),
                end=parse_time(until, "--until"),
                exclude_flags=0 if keep_suspect else SUSPECT,
                scheduler=scheduler,
            )
    seconds = time.perf_counter() - started
    if out is not None:
        _write_table(table, out)
    _print_rollup(table, f"{lake} by {by} and {bucket}", seconds, out)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _write_table(table: pa.Table, out: Path) -> None:
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    if out.suffix.lower() == ".csv":
        pcsv.write_csv(table, out)
    else:
        pq.write_table(table, out)


def _print_rollup(table: pa.Table, title: str, seconds: float, out: Path | None) -> None:
    shown = summary_table(
        title,
        ["group", "property", "bucket (UTC)", "mean", "max", "count"],
        ("mean", "max", "count"),
    )
    for row in table.slice(0, 20).to_pylist():
        cells = [f"{row['mean']:.2f}", f"{row['max']:.2f}", f"{row['count']:,}"]
        shown.add_row(
            str(row["group"]),
            str(row["observed_property"]),
            f"{row['bucket']:%Y-%m-%d %H:%M}",
            *cells,
        )
    console.print(shown)
    where = f" → {out}" if out is not None else ""
    console.print(f"{table.num_rows:,} rows in {seconds:.1f} s{where}")


@lake_app.command("krige")
def krige(
    lake: LakeArgument,
    observed_property: Annotated[
        str, typer.Option("--property", "-p", help="Observed property key.")
    ],
    since: Annotated[str, typer.Option("--since", help="ISO 8601 start with a zone.")],
    until: Annotated[str, typer.Option("--until", help="ISO 8601 end (exclusive) with a zone.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for one GeoTIFF per hour.")
    ] = Path("maps"),
    cell: Annotated[float, typer.Option(min=1.0, help="Grid cell size in metres.")] = 100.0,
    model: Annotated[str, typer.Option(help="Variogram: auto, spherical, exponential, …")] = "auto",
    scheduler: SchedulerOption = None,
    store: StoreOption = None,
) -> None:
    """One kriging map per hour over a period, computed on Dask workers from the lake (the
    store supplies the sensors' catalogue and district outlines)."""
    from citytwin.store import open_store
    from citytwin.store.lake_kriging import MapOptions, kriging_batch

    with (
        domain_errors(),
        open_store(settings_for(store).store_url) as opened,
        _steps(f"kriging {observed_property}") as advance,
    ):
        batch = kriging_batch(
            lake,
            opened,
            observed_property=observed_property,
            start=_required_time(since, "--since"),
            end=_required_time(until, "--until"),
            options=MapOptions(cell=cell, model=model),
            out=out,
            scheduler=scheduler,
            progress=advance,
        )
    console.print(
        f"{out}: {len(batch.written):,} of {len(batch.hours):,} hourly {observed_property} maps; "
        f"{len(batch.skipped):,} hour(s) without usable readings"
    )


def _required_time(text: str, option: str) -> datetime:
    moment = parse_time(text, option)
    if moment is None:  # parse_time returns None only for None, which typer never passes here
        raise ValidationError(f"{option}: expected an ISO 8601 time")
    return moment
