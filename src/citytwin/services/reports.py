"""File-to-files analyses a department runs on its own tables: traffic patterns from TOPIS
link-speed files and the gentrification stage of every dong from a per-dong panel.

Each writes a folder of data (CSV, GeoJSON) and pictures (PNG) and returns what it wrote; link
and district geometry come from the store's city layers when it has them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import pandas as pd

from citytwin.analysis.gentrification import gentrification_index, indicator_panel
from citytwin.analysis.gentrification_mapping import load_mapping
from citytwin.analysis.gentrification_maps import (
    gentrification_geojson,
    render_gentrification_map,
)
from citytwin.analysis.topis_files import read_topis
from citytwin.analysis.traffic import congestion_index, recurring_bottlenecks
from citytwin.analysis.traffic_maps import (
    congestion_layer,
    render_congestion_map,
    render_hour_weekday_heatmap,
)
from citytwin.space.crs import DEFAULT_CITY_CRS
from citytwin.space.layers import to_frame
from citytwin.store.base import Store
from citytwin.twin.fields import district_outlines

logger = logging.getLogger(__name__)
ROAD_LINKS = "road_links"


@dataclass
class Report:
    """What an analysis wrote (name → path) and the counts worth printing."""

    written: dict[str, Path] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def traffic_report(
    paths: Sequence[str | Path],
    out: Path,
    *,
    store: Store | None = None,
    weekday: str = "Mon",
    hour: int = 8,
) -> Report:
    """Congestion index per link × weekday × hour, recurring bottlenecks, the network's
    hour × weekday heatmap and — when the store holds the links — a map layer of one hour."""
    out.mkdir(parents=True, exist_ok=True)
    long = read_topis([str(p) for p in paths])
    report = Report(counts={"readings": len(long), "links": int(long["link_id"].nunique())})
    rejects = long.attrs.get("rejects", [])
    report.counts["rejected rows"] = len(rejects)
    report.notes += [f"{r.source}:{r.line}: {r.reason}" for r in rejects[:20]]
    index = congestion_index(long)
    bottlenecks = recurring_bottlenecks(index)
    report.counts["recurring bottlenecks"] = len(bottlenecks)
    report.written["congestion"] = _csv(index, out / "congestion_index.csv.gz")
    report.written["bottlenecks"] = _csv(bottlenecks, out / "recurring_bottlenecks.csv")
    report.written["heatmap"] = render_hour_weekday_heatmap(out / "hour_weekday.png", index)
    links = _store_links(store, set(long["link_id"].astype(str)))
    if links is None:
        report.notes.append("no road links in the store match these files: no map layer")
        return report
    layer = congestion_layer(index, links, weekday=weekday, hour=hour)
    report.written["layer"] = _json(layer, out / f"congestion_{weekday}_{hour:02d}h.geojson")
    report.written["map"] = render_congestion_map(
        out / f"congestion_{weekday}_{hour:02d}h.png", index, links, weekday=weekday, hour=hour
    )
    return report


def gentrification_report(
    table: Path | pd.DataFrame,
    out: Path,
    *,
    mapping: str | Path = "demo",
    store: Store | None = None,
    districts: gpd.GeoDataFrame | None = None,
) -> Report:
    """Indicator panel, composite index and stage per dong; a stage map and GeoJSON when dong
    polygons are given or in the store."""
    out.mkdir(parents=True, exist_ok=True)
    chosen = load_mapping(mapping)
    frame = table if isinstance(table, pd.DataFrame) else _read_table(table, chosen.dong)
    panel = indicator_panel(frame, chosen)
    result = gentrification_index(panel)
    report = Report(counts={"dongs": len(result)})
    for name, count in result["stage_name"].value_counts().items():
        report.counts[f"stage {name}"] = int(count)
    scores = result.drop(columns=[c for c in result.columns if c in panel.columns])
    report.written["index"] = _csv(panel.join(scores), out / "gentrification_index.csv")
    if districts is None and store is not None:
        districts = district_outlines(store, level="dong")
    if districts is None:
        report.notes.append("no dong polygons: no stage map")
        return report
    report.written["map"] = render_gentrification_map(out / "gentrification.png", districts, result)
    report.written["geojson"] = _json(
        gentrification_geojson(districts, result), out / "gentrification.geojson"
    )
    return report


def _read_table(path: Path, code_column: str) -> pd.DataFrame:
    """A per-dong table from CSV (UTF-8 or CP949) or Excel; dong codes stay text."""
    types = {code_column: str}
    if path.suffix.lower() in (".xlsx", ".xls"):
        return pd.read_excel(path, dtype=types)
    try:
        return pd.read_csv(path, dtype=types, encoding="utf-8-sig")
    except UnicodeDecodeError:
        return pd.read_csv(path, dtype=types, encoding="cp949")


def _store_links(store: Store | None, wanted: set[str]) -> gpd.GeoDataFrame | None:
    if store is None or not store.layers().get(ROAD_LINKS):
        return None
    links = to_frame(store.features(ROAD_LINKS), crs=DEFAULT_CITY_CRS)
    if "link_id" not in links.columns:
        return None
    links["link_id"] = links["link_id"].astype(str)
    links = links[links["link_id"].isin(wanted)]
    return links.reset_index(drop=True) if len(links) else None


def _csv(frame: pd.DataFrame, path: Path) -> Path:
    """UTF-8 with BOM (Excel opens Korean text right); ``.gz`` compresses (by the suffix)."""
    frame.to_csv(path, index=not isinstance(frame.index, pd.RangeIndex), encoding="utf-8-sig")
    return path


def _json(document: dict[str, object], path: Path) -> Path:
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path
