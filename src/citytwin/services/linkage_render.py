"""Renderers of the linkage table: Markdown, CSV, a self-contained HTML page, and JSON.

The wide formats (Markdown, HTML) show one row per service — department, service, then the seven
CPS functions of the Seoul Institute report — with each cell's status, items (grouped by catalog
field), newest observation and note; HTML colours cells by status with inline CSS and loads
nothing external. CSV is long: one line per service and function, easy to filter and pivot.

>>> from citytwin.services.catalog import DEFAULT_CATALOG, Configuration, load_catalog
>>> from citytwin.services.linkage import linkage_table
>>> table = linkage_table(load_catalog(DEFAULT_CATALOG), Configuration.gather())
>>> render(table, "md").splitlines()[0]
'# CPS linkage table'
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Callable
from datetime import datetime

from citytwin.errors import ValidationError
from citytwin.services.catalog import FUNCTIONS
from citytwin.services.linkage import (
    FIELD_LABELS,
    FUNCTION_LABELS,
    HEADERS,
    STATUS_LABELS,
    Cell,
    Item,
    Lang,
    LinkageTable,
    Row,
    Status,
    to_json,
)

NL = "\n"
COLOURS: dict[Status, str] = {
    "ok": "#d9f0d3",
    "no_data": "#fee8c8",
    "unchecked": "#eeeeee",
    "missing": "#f4a6a6",
    "gap": "#dbe9f6",
}


def to_csv(table: LinkageTable) -> str:
    """One line per service and function (a long table: easy to filter and pivot)."""
    lang = table.lang
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["service", HEADERS["service"].text(lang), HEADERS["department"].text(lang), "function",
         HEADERS["function"].text(lang), "status", HEADERS["status"].text(lang),
         HEADERS["items"].text(lang), "last_observation", HEADERS["note"].text(lang)]
    )  # fmt: skip
    for row in table.rows:
        for cell in row.cells:
            writer.writerow(
                [row.service, row.name, row.department, cell.function, cell.label, cell.status,
                 STATUS_LABELS[cell.status].text(lang), _items_text(cell, lang),
                 _iso(cell.last_observation) or "", cell.note]
            )  # fmt: skip
    return out.getvalue()


def to_markdown(table: LinkageTable) -> str:
    """A Markdown table (department, service, then the seven functions) and a legend."""
    lang = table.lang
    head = [HEADERS["department"].text(lang), HEADERS["service"].text(lang)]
    head += [FUNCTION_LABELS[f].text(lang) for f in FUNCTIONS]
    lines = [f"# {HEADERS['title'].text(lang)}", "", _md_row(head), _md_row(["---"] * len(head))]
    for row in table.rows:
        lines.append(
            _md_row(
                [row.department, row.name]
                + [_cell_text(c, lang).replace(NL, "<br>") for c in row.cells]
            )
        )
    legend = ", ".join(f"**{v.text(lang)}**" for v in STATUS_LABELS.values())
    return "\n".join([*lines, "", f"{HEADERS['status'].text(lang)}: {legend}", ""])


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"


def to_html(table: LinkageTable) -> str:
    """A self-contained HTML page: the table with status colours, inline CSS, nothing external."""
    lang = table.lang
    title = html.escape(HEADERS["title"].text(lang))
    head = [HEADERS["department"].text(lang), HEADERS["service"].text(lang)]
    head += [FUNCTION_LABELS[f].text(lang) for f in FUNCTIONS]
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "\n".join(_html_row(row, lang) for row in table.rows)
    legend = " ".join(
        f'<span class="{s}">{html.escape(v.text(lang))}</span>' for s, v in STATUS_LABELS.items()
    )
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>\n{_css()}\n</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
        f"<table>\n<thead><tr>{header}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>\n"
        f'<p class="legend">{legend}</p>\n</body>\n</html>\n'
    )


def _html_row(row: Row, lang: Lang) -> str:
    cells = "".join(
        f'<td class="{c.status}" title="{html.escape(STATUS_LABELS[c.status].text(lang))}">'
        f"{'<br>'.join(html.escape(part) for part in _cell_text(c, lang).split(NL))}</td>"
        for c in row.cells
    )
    return (
        f'<tr id="{html.escape(row.service)}"><td>{html.escape(row.department)}</td>'
        f"<th>{html.escape(row.name)}</th>{cells}</tr>"
    )


def _css() -> str:
    colours = "\n".join(f"td.{s}, span.{s} {{ background: {c}; }}" for s, c in COLOURS.items())
    return (
        "body { font-family: sans-serif; margin: 1.5em; }\n"
        "table { border-collapse: collapse; font-size: 0.85em; }\n"
        "th, td { border: 1px solid #999; padding: 0.3em 0.5em; vertical-align: top; }\n"
        "thead th { background: #444; color: #fff; }\n"
        ".legend span { padding: 0.1em 0.5em; margin-right: 0.5em; }\n" + colours
    )


def _cell_text(cell: Cell, lang: Lang) -> str:
    """What a wide table shows in a cell: status, items, newest observation, note."""
    if cell.function == "problem":
        return cell.note
    parts = [f"[{STATUS_LABELS[cell.status].text(lang)}]"]
    if cell.items:
        parts.append(_items_text(cell, lang, NL))
    if cell.last_observation is not None:
        parts.append(f"{HEADERS['last'].text(lang)}: {_human(cell.last_observation)}")
    if cell.note:
        parts.append(cell.note)
    return NL.join(parts)


def _items_text(cell: Cell, lang: Lang, separator: str = "; ") -> str:
    """The items grouped by catalog field: ``feeds: sdot, kma; properties: pm25``."""
    fields = dict.fromkeys(item.field for item in cell.items)
    return separator.join(
        f"{FIELD_LABELS[name].text(lang)}: "
        + ", ".join(_item_text(item, lang) for item in cell.items if item.field == name)
        for name in fields
    )


def _item_text(item: Item, lang: Lang) -> str:
    if item.status == "ok":
        return item.label
    return f"{item.label} ({STATUS_LABELS[item.status].text(lang)})"


def _human(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


RENDERERS: dict[str, Callable[[LinkageTable], str]] = {
    "md": to_markdown,
    "csv": to_csv,
    "html": to_html,
    "json": to_json,
}
MEDIA_TYPES = {
    "md": "text/markdown; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "json": "application/json",
}


def render(table: LinkageTable, format: str) -> str:
    """The table in one of :data:`RENDERERS`' formats (``md``, ``csv``, ``html``, ``json``)."""
    if format not in RENDERERS:
        raise ValidationError(f"format {format!r}: expected one of {', '.join(RENDERERS)}")
    return RENDERERS[format](table)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


__all__ = [
    "COLOURS",
    "MEDIA_TYPES",
    "RENDERERS",
    "render",
    "to_csv",
    "to_html",
    "to_json",
    "to_markdown",
]
