"""What every ``citytwin`` command shares: consoles, the ``--store`` option, error handling."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from citytwin.config import Settings
from citytwin.errors import CitytwinError

console = Console()
err_console = Console(stderr=True)
cli_state: dict[str, Any] = {"debug": False}

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        "-s",
        help="Store URL: duckdb:///path/city.duckdb (default), postgresql://user@host/db, "
        "memory://. Env: CITYTWIN_STORE_URL.",
        show_default=False,
    ),
]


def settings_for(store: str | None, **overrides: object) -> Settings:
    return Settings.from_env(store_url=store, **overrides)


@contextmanager
def domain_errors() -> Iterator[None]:
    """A domain error inside a command: one red line and exit code 2, never a traceback."""
    try:
        yield
    except CitytwinError as exc:
        if cli_state["debug"]:
            raise
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def summary_table(title: str, columns: list[str], right: tuple[str, ...] = ()) -> Table:
    """A summary table; cells fold rather than truncate, so narrow terminals lose nothing."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold", justify="right" if column in right else "left")
    return table


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )
