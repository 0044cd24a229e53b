"""``citytwin control …`` — check a control file, dry-run it on history, act on a running server.

Offline (files and the store):

- ``citytwin control check FILE`` — validate rules and actuator entries; list them;
- ``citytwin control dry-run FILE [--since 7d | --start … --end …] [--rule NAME]`` — what the
  rules would have done on the stored history ("what would this rule have done last week?").

Online (the server's ``/control`` API; ``--api`` or ``$CITYTWIN_API_URL``, default
http://127.0.0.1:8000, and ``--token`` or ``$CITYTWIN_API_TOKEN``):

- ``citytwin control tasks [--state awaiting_approval]``;
- ``citytwin control approve TASK --reason "…"`` and ``citytwin control reject TASK --reason "…"``;
- ``citytwin control override ACTUATOR --reason "…" [--resume]``.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import pandas as pd
import typer
from rich.markup import escape

from citytwin.cli._shared import StoreOption, console, domain_errors, err_console, summary_table
from citytwin.cli.analyze import parse_time, store_work
from citytwin.control.config import load_control
from citytwin.control.rules import format_duration as span
from citytwin.control.rules import parse_duration
from citytwin.errors import ValidationError

control_app = typer.Typer(
    help="Autonomous control: check rules, dry-run them on history, approve or reject tasks.",
    no_args_is_help=True,
)

FileArgument = Annotated[Path, typer.Argument(help="Control file (YAML: actuators and rules).")]
ApiOption = Annotated[
    str | None,
    typer.Option("--api", help="Server root URL. Env: CITYTWIN_API_URL.", show_default=False),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token", help="Bearer token (operator or admin). Env: CITYTWIN_API_TOKEN.",
        show_default=False,
    ),
]  # fmt: skip
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log).")]
DEFAULT_API = "http://127.0.0.1:8000"
TIMEOUT_S = 30.0


@control_app.command("check")
def check(file: FileArgument) -> None:
    """Validate a control file; list its rules and actuator entries."""
    with domain_errors():
        config = load_control(file)
    rules = summary_table(f"{len(config.rules)} rules", ["rule", "when", "actions", "mode"])
    for rule in config.rules:
        when = rule.when
        condition = f"{when.statistic} {when.property} per {when.scope} / {span(when.window)} "
        condition += (
            f"{when.on.direction} {when.on.value:g} (off {when.off_value:g}) × {when.for_windows}"
        )
        actions = ", ".join(type(a).__name__.removesuffix("Action").lower() for a in rule.actions)
        rules.add_row(rule.name, condition, actions or "-", "dry run" if rule.dry_run else "live")
    console.print(rules)
    actuators = summary_table("actuator entries", ["match", "url", "rate limit", "delivery"])
    for spec in config.actuators:
        rate = spec.rate_limit
        limit = f"{rate.tasks}/{span(rate.period)}" if rate else "-"
        delivery = (
            f"ack {span(spec.ack_timeout)} × {spec.max_attempts}, expires {span(spec.expires)}"
        )
        actuators.add_row(spec.match, spec.url, limit, delivery)
    console.print(actuators)
    if config.dry_run:
        console.print("[yellow]global dry run: no task will be sent[/yellow]")


@control_app.command("dry-run")
def dry_run_command(
    file: FileArgument,
    store: StoreOption = None,
    since: Annotated[str, typer.Option(help="How far back from --end, e.g. 7d, 24h.")] = "7d",
    start: Annotated[str | None, typer.Option(help="Start (ISO 8601 with zone).")] = None,
    end: Annotated[str | None, typer.Option(help="End (ISO 8601 with zone; default now).")] = None,
    rule: Annotated[str | None, typer.Option(help="Only this rule.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Events as JSON lines.")] = False,
) -> None:
    """What the rules would have done on the stored history (nothing is sent)."""
    from citytwin.services.control import history_dry_run

    with domain_errors():
        config = load_control(file)
        if rule is not None:
            config = config.model_copy(update={"rules": [config.rule(rule)]})
        until = parse_time(end, "--end") or datetime.now(UTC)
        try:
            back = parse_duration(since)
        except ValueError as exc:
            raise ValidationError(f"--since: {exc}") from None
        begin = parse_time(start, "--start") or until - back.to_pytimedelta()
    with store_work(store, "replaying history") as opened, domain_errors():
        results = history_dry_run(config, opened, start=begin, end=until)
    for name, events in results.items():
        _show_events(name, events, as_json=as_json)


def _show_events(name: str, events: pd.DataFrame, *, as_json: bool) -> None:
    if as_json:
        for record in events.to_dict(orient="records"):
            end = pd.Timestamp(record["window_end"]).isoformat()
            line = {"rule": name, **record, "window_end": end}
            typer.echo(json.dumps(line, ensure_ascii=False, default=str))
        return
    fired = int((events["kind"] == "fired").sum()) if len(events) else 0
    table = summary_table(
        f"{name}: {fired} firings", ["window end", "scope", "event", "value", "actions"]
    )
    columns = ("window_end", "scope", "kind", "value", "actions")
    for end, scope, kind, value, actions in zip(*(events[c] for c in columns), strict=True):
        table.add_row(str(end), str(scope), str(kind), f"{value:.1f}", str(actions))
    console.print(table)


# -- the server's /control API -----------------------------------------------------------------
def _call(api: str | None, token: str | None, method: str, path: str, body: Any = None) -> Any:
    root = (api or os.environ.get("CITYTWIN_API_URL") or DEFAULT_API).rstrip("/")
    token = token or os.environ.get("CITYTWIN_API_TOKEN")
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(f"{root}{path}", data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        raise ValidationError(f"{method} {root}{path}: {error.code} {_message(error)}") from None
    except (urllib.error.URLError, OSError) as error:
        raise ValidationError(
            f"{root}: cannot reach the server ({error}); is it running?"
        ) from None


def _message(error: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(error.read())
    except ValueError:
        return str(error.reason)
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body)
    return str(body)


@control_app.command("tasks")
def tasks(
    state: Annotated[
        str | None, typer.Option(help="e.g. awaiting_approval (comma-separated).")
    ] = None,
    api: ApiOption = None,
    token: TokenOption = None,
) -> None:
    """Tasks on the running server, newest first."""
    query = f"?state={quote(state)}" if state else ""
    with domain_errors():
        found = _call(api, token, "GET", f"/control/tasks{query}")
    table = summary_table(
        f"{len(found)} tasks", ["id", "state", "actuator", "command", "rule", "created"]
    )
    for task in found:
        table.add_row(task["id"], task["state"], task["actuator"], task["command"],
                      task["rule"] or "(person)", task["createdAt"])  # fmt: skip
    console.print(table)


def _decide(verb: str, task: str, reason: str, api: str | None, token: str | None) -> None:
    with domain_errors():
        answer = _call(
            api, token, "POST", f"/control/tasks/{quote(task)}/{verb}", {"reason": reason}
        )
    console.print(f"task {escape(answer['id'])}: {answer['state']}")


@control_app.command("approve")
def approve(
    task: Annotated[str, typer.Argument(help="Task id.")],
    reason: ReasonOption,
    api: ApiOption = None,
    token: TokenOption = None,
) -> None:
    """Approve a task awaiting approval (it is sent at once)."""
    _decide("approve", task, reason, api, token)


@control_app.command("reject")
def reject(
    task: Annotated[str, typer.Argument(help="Task id.")],
    reason: ReasonOption,
    api: ApiOption = None,
    token: TokenOption = None,
) -> None:
    """Reject a task awaiting approval."""
    _decide("reject", task, reason, api, token)


@control_app.command("override")
def override(
    actuator: Annotated[str, typer.Argument(help="Actuator id or pattern (spray-truck:*).")],
    reason: ReasonOption,
    resume: Annotated[bool, typer.Option("--resume", help="End the override.")] = False,
    api: ApiOption = None,
    token: TokenOption = None,
) -> None:
    """Suspend automation for an actuator (its tasks then wait for a person), or resume it."""
    body = {"active": not resume, "reason": reason}
    with domain_errors():
        _call(api, token, "POST", f"/control/actuators/{quote(actuator, safe='')}/override", body)
    verb = "resumed" if resume else "suspended"
    console.print(f"automation {verb} for {escape(actuator)}")
    if not resume:
        err_console.print("tasks for it now wait for approval; end with --resume")
