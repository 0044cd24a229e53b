"""The CPS linkage table (연계테이블): each service × the seven CPS functions, what exists and how
it is doing — generated from the catalog, the configuration and (optionally) the store.

A cell lists the service's references for one function with a status each:

- ``ok`` — it exists (and, for feeds, observed properties and layers, the store holds data:
  "data flowing", with the newest observation time);
- ``no_data`` — it exists but the store holds nothing of it yet;
- ``unchecked`` — it exists; no store was given to see whether data flows;
- ``missing`` — it is named but not configured (see
  :func:`~citytwin.services.catalog.check_catalog`), or the function is empty and no gap
  explains why;
- ``gap`` — the function is empty and the catalog explains why (an *explained* gap).

The cell's status is its worst item's. Labels are Korean (``lang="ko"``) or English; the table is
plain data (:func:`as_dict`, :func:`to_json`) and :mod:`citytwin.services.linkage_render` draws it
as Markdown, CSV and HTML. The function names follow the Seoul Institute report
(seeds/002: 현실문제, 현실데이터, 현실모델링, 데이터전달, 가상모델(가상화), 의사결정, 자율제어).

>>> from citytwin.services.catalog import DEFAULT_CATALOG, Configuration, load_catalog
>>> table = linkage_table(load_catalog(DEFAULT_CATALOG), Configuration.gather(), lang="ko")
>>> table.rows[0].cells[0].label, table.rows[0].cells[1].status
('현실문제', 'unchecked')
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import pandas as pd

from citytwin.errors import ValidationError
from citytwin.services.catalog import (
    FUNCTIONS,
    Catalog,
    Configuration,
    Function,
    Labels,
    Service,
    labels_of,
)
from citytwin.store.base import Store, from_micros

logger = logging.getLogger(__name__)

Lang = Literal["ko", "en"]
Status = Literal["ok", "no_data", "unchecked", "missing", "gap"]
LANGS: tuple[Lang, ...] = ("ko", "en")
_SEVERITY: dict[Status, int] = {"ok": 0, "gap": 0, "unchecked": 1, "no_data": 2, "missing": 3}
_OBSERVED = ("feeds", "properties", "layers")  # references whose data the store can show

FUNCTION_LABELS: dict[Function, Labels] = {
    "problem": Labels(ko="현실문제", en="Real problem"),
    "real_data": Labels(ko="현실데이터", en="Real data"),
    "real_modelling": Labels(ko="현실모델링", en="Real modelling"),
    "data_transfer": Labels(ko="데이터전달", en="Data transfer"),
    "virtual_model": Labels(ko="가상모델(가상화)", en="Virtual model"),
    "decision_making": Labels(ko="의사결정", en="Decision-making"),
    "autonomous_control": Labels(ko="자율제어", en="Autonomous control"),
}
STATUS_LABELS: dict[Status, Labels] = {
    "ok": Labels(ko="정상", en="ok"),
    "no_data": Labels(ko="자료 없음", en="no data yet"),
    "unchecked": Labels(ko="미확인(저장소 없음)", en="not checked (no store)"),
    "missing": Labels(ko="누락", en="missing"),
    "gap": Labels(ko="설명된 공백", en="explained gap"),
}
HEADERS: dict[str, Labels] = {
    "title": Labels(ko="사이버물리시스템 연계테이블", en="CPS linkage table"),
    "department": Labels(ko="부서", en="Department"),
    "service": Labels(ko="서비스", en="Service"),
    "function": Labels(ko="기능", en="Function"),
    "status": Labels(ko="상태", en="Status"),
    "items": Labels(ko="구성 요소", en="Items"),
    "last": Labels(ko="최근 관측", en="last observation"),
    "note": Labels(ko="비고", en="Note"),
    "unexplained": Labels(ko="설명 없는 공백", en="nothing configured and no gap explained"),
}
FIELD_LABELS: dict[str, Labels] = {
    "feeds": Labels(ko="피드", en="feeds"),
    "properties": Labels(ko="관측항목", en="properties"),
    "layers": Labels(ko="레이어", en="layers"),
    "protocols": Labels(ko="프로토콜", en="protocols"),
    "views": Labels(ko="뷰", en="views"),
    "analyses": Labels(ko="분석", en="analyses"),
    "simulations": Labels(ko="시뮬레이션", en="simulations"),
    "rules": Labels(ko="규칙", en="rules"),
    "actuators": Labels(ko="구동기", en="actuators"),
}


@dataclass(frozen=True)
class DataState:
    """What the store holds: newest observation per feed and per observed property, layer sizes."""

    feeds: dict[str, datetime]
    properties: dict[str, datetime]
    layers: dict[str, int]


@dataclass(frozen=True)
class Item:
    """One reference of a cell: the catalog field, its name, display label and status."""

    field: str
    name: str
    label: str
    status: Status
    last_observation: datetime | None = None


@dataclass(frozen=True)
class Cell:
    """One service × function: its items, overall status, newest observation and note."""

    function: Function
    label: str
    status: Status
    items: tuple[Item, ...]
    last_observation: datetime | None
    note: str


@dataclass(frozen=True)
class Row:
    """One service with its department and its seven cells (in :data:`FUNCTIONS` order)."""

    service: str
    name: str
    department: str
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class LinkageTable:
    """The linkage table in one language; ``store_checked`` tells whether data was looked at."""

    lang: Lang
    rows: tuple[Row, ...]
    store_checked: bool

    def unexplained(self) -> list[tuple[str, Function]]:
        """(service, function) of every ``missing`` cell: the gaps nobody explained."""
        return [
            (r.service, c.function) for r in self.rows for c in r.cells if c.status == "missing"
        ]


def observe_store(store: Store) -> DataState:
    """Read what the store holds, cheaply: one read of Things, Datastreams and properties, one
    :meth:`~citytwin.store.base.Store.latest` (newest observation of each datastream)."""
    from citytwin.auth import feed_of
    from citytwin.model.sensing import Datastream, ObservedProperty, Thing

    feeds = {t.id: feed_of(t.key) for t in store.entities(Thing)}
    named = {p.id: p.name for p in store.entities(ObservedProperty)}
    streams = pd.DataFrame(
        [
            (
                d.id,
                feeds.get(d.thing_id),
                d.properties.get("observedProperty") or named.get(d.observed_property_id),
            )
            for d in store.entities(Datastream)
        ],
        columns=["datastream_id", "feed", "property"],
    )
    frame = store.latest()
    newest = pd.DataFrame({"datastream_id": frame.datastream_id, "time": frame.phenomenon_time})
    merged = streams.merge(newest, on="datastream_id")
    return DataState(_newest(merged, "feed"), _newest(merged, "property"), store.layers())


def _newest(frame: pd.DataFrame, key: str) -> dict[str, datetime]:
    times = frame.dropna(subset=[key]).groupby(key)["time"].max()
    return {str(name): from_micros(int(micros)) for name, micros in times.items()}


def linkage_table(
    catalog: Catalog,
    configuration: Configuration,
    *,
    store: Store | None = None,
    lang: Lang = "en",
) -> LinkageTable:
    """The linkage table of ``catalog`` against ``configuration`` (and the data in ``store``)."""
    if lang not in LANGS:
        raise ValidationError(f"lang {lang!r}: expected one of {', '.join(LANGS)}")
    state = observe_store(store) if store is not None else None
    rows = tuple(_row(catalog, service, configuration, state, lang) for service in catalog.services)
    table = LinkageTable(lang, rows, state is not None)
    logger.info(
        "linkage table: %d services, %d unexplained gaps", len(rows), len(table.unexplained())
    )
    return table


def _row(
    catalog: Catalog,
    service: Service,
    configuration: Configuration,
    state: DataState | None,
    lang: Lang,
) -> Row:
    cells = tuple(_cell(service, f, configuration, state, lang) for f in FUNCTIONS)
    return Row(service.id, service.name.text(lang), catalog.department_label(service, lang), cells)


def _cell(
    service: Service,
    function: Function,
    configuration: Configuration,
    state: DataState | None,
    lang: Lang,
) -> Cell:
    label = FUNCTION_LABELS[function].text(lang)
    if function == "problem":
        return Cell(function, label, "ok", (), None, service.problem.text(lang))
    items = tuple(
        _item(field_name, name, configuration, state, lang)
        for field_name, names in service.references(function).items()
        for name in names
    )
    gap = service.gap(function)
    note = gap.reason.text(lang) if gap is not None else ""
    if not items:
        status: Status = "gap" if gap is not None else "missing"
        return Cell(function, label, status, (), None, note or HEADERS["unexplained"].text(lang))
    worst = max((item.status for item in items), key=_SEVERITY.__getitem__)
    times = [
        item.last_observation for item in items if item.field == "feeds" and item.last_observation
    ]
    return Cell(function, label, worst, items, max(times, default=None), note)


def _item(
    field_name: str, name: str, configuration: Configuration, state: DataState | None, lang: Lang
) -> Item:
    labels = labels_of(field_name)
    label = labels[name].text(lang) if name in labels else name
    if not configuration.exists(field_name, name):
        return Item(field_name, name, label, "missing")
    if field_name not in _OBSERVED:
        return Item(field_name, name, label, "ok")
    if state is None:
        return Item(field_name, name, label, "unchecked")
    if field_name == "layers":
        return Item(field_name, name, label, "ok" if state.layers.get(name, 0) > 0 else "no_data")
    last = (state.feeds if field_name == "feeds" else state.properties).get(name)
    return Item(field_name, name, label, "ok" if last is not None else "no_data", last)


# -- plain data ---------------------------------------------------------------------------------
def as_dict(table: LinkageTable) -> dict[str, Any]:
    """The table as plain JSON-ready data (times as ISO 8601 UTC)."""
    lang = table.lang
    return {
        "lang": lang,
        "title": HEADERS["title"].text(lang),
        "store_checked": table.store_checked,
        "functions": [{"key": f, "label": FUNCTION_LABELS[f].text(lang)} for f in FUNCTIONS],
        "statuses": {key: value.text(lang) for key, value in STATUS_LABELS.items()},
        "rows": [
            {
                "service": row.service,
                "name": row.name,
                "department": row.department,
                "cells": [_cell_dict(cell, lang) for cell in row.cells],
            }
            for row in table.rows
        ],
    }


def _cell_dict(cell: Cell, lang: Lang) -> dict[str, Any]:
    return {
        "function": cell.function,
        "label": cell.label,
        "status": cell.status,
        "status_label": STATUS_LABELS[cell.status].text(lang),
        "items": [
            {
                "field": item.field,
                "name": item.name,
                "label": item.label,
                "status": item.status,
                "last_observation": _iso(item.last_observation),
            }
            for item in cell.items
        ],
        "last_observation": _iso(cell.last_observation),
        "note": cell.note,
    }


def to_json(table: LinkageTable) -> str:
    """The table as JSON text (UTF-8, Korean kept readable)."""
    return json.dumps(as_dict(table), ensure_ascii=False, indent=2)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


__all__ = [
    "FIELD_LABELS",
    "FUNCTION_LABELS",
    "HEADERS",
    "STATUS_LABELS",
    "Cell",
    "DataState",
    "Item",
    "Lang",
    "LinkageTable",
    "Row",
    "Status",
    "as_dict",
    "linkage_table",
    "observe_store",
    "to_json",
]
