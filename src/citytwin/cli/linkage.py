"""``citytwin linkage`` — the CPS linkage table (연계테이블) of the service catalog.

::

    citytwin linkage --format md --lang ko          # the shipped catalog, no data check
    citytwin linkage --store duckdb:///city.duckdb --format html --out linkage.html
    citytwin linkage --catalog my.yaml --control control.yaml --check   # exit 1 on a bad name

The catalog defaults to the bundled one (``services/presets/catalog.yaml``) and the control file
to the demo's (``control/presets/demo.yaml``), which the bundled catalog is written against.
Without ``--store`` (or ``$CITYTWIN_STORE_URL``) the table does not look at data: feeds, properties
and layers are shown as "not checked".
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from citytwin.cli._shared import domain_errors, err_console


class Format(StrEnum):
    md = "md"
    csv = "csv"
    html = "html"
    json = "json"


class Lang(StrEnum):
    ko = "ko"
    en = "en"


def linkage(
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.md,
    lang: Annotated[Lang, typer.Option("--lang", help="Labels: Korean or English.")] = Lang.en,
    catalog: Annotated[
        Path | None,
        typer.Option("--catalog", help="Service catalog YAML (default: the bundled one)."),
    ] = None,
    control: Annotated[
        Path | None,
        typer.Option("--control", help="Control file with rules and actuators (default: demo)."),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store", "-s", help="Store URL to show data flowing. Env: CITYTWIN_STORE_URL."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here, not stdout.")] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1, listing them, if the catalog names unknowns.")
    ] = False,
) -> None:
    """The CPS linkage table: each service × the seven CPS functions, with status and gaps."""
    from citytwin.control.config import load_control
    from citytwin.services.catalog import (
        DEFAULT_CATALOG,
        DEMO_CONTROL,
        Configuration,
        check_catalog,
        load_catalog,
    )
    from citytwin.services.linkage import linkage_table
    from citytwin.services.linkage_render import render
    from citytwin.store import open_store

    url = store or os.environ.get("CITYTWIN_STORE_URL")
    with domain_errors():
        services = load_catalog(catalog or DEFAULT_CATALOG)
        rules = load_control(control or DEMO_CONTROL)
        opened = open_store(url) if url else None
        try:
            configuration = Configuration.gather(store=opened, control=rules)
            problems = check_catalog(services, configuration)
            table = linkage_table(services, configuration, store=opened, lang=lang.value)
        finally:
            if opened is not None:
                opened.close()
    if check and problems:
        for problem in problems:
            err_console.print(f"[red]problem:[/red] {escape(str(problem))}", highlight=False)
        raise typer.Exit(1)
    text = render(table, format.value)
    if out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    out.write_text(text, encoding="utf-8")
    missing = len(table.unexplained())
    err_console.print(f"{len(table.rows)} services, {missing} unexplained gaps → {out}")
