"""``citytwin audit …`` — check and read the hash-chained audit log of control decisions.

The log file is the FILE argument, else the settings' (:func:`citytwin.config.audit_log_path`:
``$CITYTWIN_AUDIT_LOG``, else next to the store file of ``$CITYTWIN_STORE_URL`` as
``NAME.audit.jsonl``, else ``audit.jsonl`` in the working folder).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from citytwin.cli._shared import console, domain_errors, err_console, summary_table
from citytwin.config import Settings, audit_log_path
from citytwin.control.audit import AuditLog
from citytwin.errors import ValidationError

audit_app = typer.Typer(
    help="The tamper-evident audit log of control decisions: verify the chain, show entries.",
    no_args_is_help=True,
)

FileArgument = Annotated[
    Path | None,
    typer.Argument(
        help="Audit log (default: $CITYTWIN_AUDIT_LOG, else next to the store file).",
        show_default=False,
    ),
]


def audit_path(argument: Path | None) -> Path:
    """FILE, else the settings' audit log (``$CITYTWIN_AUDIT_LOG``, else beside the store)."""
    return argument or audit_log_path(Settings.from_env())


def _existing_log(argument: Path | None) -> AuditLog:
    path = audit_path(argument)
    if not path.is_file():
        raise ValidationError(f"no audit log at {path}; expected a JSON Lines file")
    return AuditLog(path)


def _parse_head(text: str) -> tuple[int, str]:
    count, _, digest = text.partition(":")
    if not count.isdigit() or len(digest) != 64:
        raise ValidationError(f"--expect {text!r}: expected COUNT:HASH (a 64-digit sha256)")
    return int(count), digest.lower()


@audit_app.command("verify")
def verify(
    file: FileArgument = None,
    expect: Annotated[
        str | None,
        typer.Option(
            "--expect",
            help="A head recorded earlier, COUNT:HASH; also detects entries lost from the end.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Walk the hash chain; exit 1 naming the first edited, deleted or reordered entry."""
    with domain_errors():
        log = _existing_log(file)
        report = log.verify(expected_head=_parse_head(expect) if expect else None)
    if report.ok:
        console.print(escape(report.message), soft_wrap=True)
        return
    err_console.print(
        f"[red]audit log {escape(str(log.path))} is broken:[/red] {escape(report.message)}",
        soft_wrap=True,
    )
    raise typer.Exit(1)


@audit_app.command("show")
def show(
    file: FileArgument = None,
    last: Annotated[
        int | None,
        typer.Option("--last", "-n", min=1, help="Only the newest N entries.", show_default=False),
    ] = None,
) -> None:
    """Print the entries as a table (oldest first)."""
    with domain_errors():
        log = _existing_log(file)
        entries = log.entries()
    shown = entries[-last:] if last else entries
    table = summary_table(
        f"{log.path} — {len(shown)} of {len(entries)} entries",
        ["seq", "time (UTC)", "kind", "actor", "subject", "payload"],
        right=("seq",),
    )
    for entry in shown:
        subject = ", ".join(f"{key}={value}" for key, value in sorted(entry.subject.items()))
        payload = json.dumps(entry.payload, sort_keys=True, ensure_ascii=False)
        cells = (entry.time[:19].replace("T", " "), entry.kind, entry.actor, subject, payload)
        table.add_row(str(entry.seq), *(escape(cell) for cell in cells))
    console.print(table)
