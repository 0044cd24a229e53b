"""TNTP networks (Transportation Networks for Research, github.com/bstabler/TransportationNetworks).

A ``_net.tntp`` file is a metadata header and a ``;``-terminated table of directed links; a
``_node.tntp`` file gives node coordinates. Units and the meaning of each column are documented on
the public entry point :func:`citytwin.space.roads.load_tntp_network`.
"""

from __future__ import annotations

import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from numpy.typing import NDArray

from citytwin.errors import FeedError

_TNTP_FIELDS = ("init_node", "term_node", "capacity", "length", "free_flow_time", "b", "power",
                "speed", "toll", "link_type")  # fmt: skip
_TNTP_REQUIRED = ("NUMBER OF NODES", "NUMBER OF LINKS", "FIRST THRU NODE")

#: What :func:`read_tntp_network` returns: nodes, links, ``(where, what)`` problems, the first thru
#: node and the number of zones (None when the header does not give it).
TntpFrames = tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, list[tuple[str, str]], int, int | None]


def read_tntp_network(
    path: str | Path,
    *,
    node_path: str | Path | None = None,
    crs: str | None = None,
    length_to_m: float = 1.0,
    speed_to_kmh: float = 1.0,
) -> TntpFrames:
    """Nodes, links and header values of a TNTP ``_net.tntp`` file (and its ``_node.tntp``).

    See :func:`citytwin.space.roads.load_tntp_network` for the parameters and the checks.
    """
    source = str(path)
    lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    meta, first_row = _tntp_metadata(lines, source)
    table = _tntp_links(lines, first_row, source, meta)
    n_nodes = meta["NUMBER OF NODES"]
    node_path = node_path or _sibling_node_file(Path(path))
    xy = _tntp_nodes(Path(node_path), n_nodes) if node_path else {}
    node_ids = [str(i) for i in range(1, n_nodes + 1)]
    points = np.array([shapely.Point(xy[i]) if i in xy else None for i in range(1, n_nodes + 1)])
    nodes = gpd.GeoDataFrame({"node_id": node_ids}, geometry=points, crs=crs)
    links = _tntp_link_frame(table, xy, length_to_m, speed_to_kmh, crs)
    problems = [] if xy else [(source, "no node coordinates; geometry is empty")]
    return nodes, links, problems, meta["FIRST THRU NODE"], meta.get("NUMBER OF ZONES")


def _tntp_metadata(lines: list[str], source: str) -> tuple[dict[str, int], int]:
    """``<KEY> value`` items up to ``<END OF METADATA>``; returns them and the next line index."""
    meta: dict[str, int] = {}
    for i, line in enumerate(lines):
        match = re.match(r"\s*<([^>]+)>\s*(.*)", line)
        if match is None:
            continue
        key, value = match.group(1).strip().upper(), match.group(2).strip()
        if key == "END OF METADATA":
            absent = [k for k in _TNTP_REQUIRED if k not in meta]
            if absent:
                raise FeedError(source, f"metadata lacks <{'>, <'.join(absent)}>", line=i + 1)
            return meta, i + 1
        if key.startswith("NUMBER OF") or key == "FIRST THRU NODE":
            try:
                meta[key] = int(float(value.split()[0]))
            except (ValueError, IndexError):
                raise FeedError(
                    source, f"<{key}> needs a number, got {value!r}", line=i + 1
                ) from None
    raise FeedError(
        source, "no <END OF METADATA> line; expected a TNTP metadata header", line=len(lines)
    )


def _tntp_links(
    lines: list[str], first: int, source: str, meta: dict[str, int]
) -> NDArray[np.float64]:
    """The link table as an (n, 10) float array in file order, checked row by row."""
    rows = [
        _tntp_row(line.strip(), number, source, meta["NUMBER OF NODES"])
        for number, line in enumerate(lines[first:], start=first + 1)
        if line.strip() and not line.strip().startswith("~")
    ]
    if len(rows) != meta["NUMBER OF LINKS"]:
        raise FeedError(
            source,
            f"<NUMBER OF LINKS> is {meta['NUMBER OF LINKS']} but the table has {len(rows)} rows "
            "(truncated file?)",
            line=len(lines),
        )
    return np.asarray(rows, float).reshape(-1, len(_TNTP_FIELDS))


def _tntp_row(text: str, number: int, source: str, n_nodes: int) -> list[float]:
    expected = f"{len(_TNTP_FIELDS)} numbers ({', '.join(_TNTP_FIELDS)}) and ';'"
    if not text.endswith(";"):
        raise FeedError(source, f"row not terminated by ';' (truncated?): {text!r}", line=number)
    fields = text[:-1].split()
    try:
        values = [float(v) for v in fields]
    except ValueError:
        raise FeedError(source, f"expected {expected}, got {fields}", line=number) from None
    if len(values) != len(_TNTP_FIELDS):
        raise FeedError(source, f"expected {expected}, got {len(values)} fields", line=number)
    if not all(v.is_integer() and 1 <= v <= n_nodes for v in values[:2]):
        raise FeedError(source, f"link ends {fields[:2]} must be nodes 1…{n_nodes}", line=number)
    return values


def _sibling_node_file(path: Path) -> Path | None:
    candidate = path.with_name(path.name.replace("_net.tntp", "_node.tntp"))
    return candidate if candidate != path and candidate.is_file() else None


def _tntp_nodes(path: Path, n_nodes: int) -> dict[int, tuple[float, float]]:
    """``node  x  y  ;`` rows (a header line and ``~`` comments are skipped)."""
    xy: dict[int, tuple[float, float]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        fields = line.replace(";", " ").split()
        if not fields or fields[0].startswith("~") or not fields[0].lstrip("-").isdigit():
            continue
        try:
            node, x, y = int(fields[0]), float(fields[1]), float(fields[2])
        except (ValueError, IndexError):
            raise FeedError(
                str(path), f"expected 'node x y', got {line.strip()!r}", line=number
            ) from None
        if not 1 <= node <= n_nodes:
            raise FeedError(str(path), f"node {node} outside 1…{n_nodes}", line=number)
        xy[node] = (x, y)
    return xy


def _tntp_link_frame(
    table: NDArray[np.float64],
    xy: dict[int, tuple[float, float]],
    length_to_m: float,
    speed_to_kmh: float,
    crs: str | None,
) -> gpd.GeoDataFrame:
    column = dict(zip(_TNTP_FIELDS, table.T, strict=True))
    tail, head = column["init_node"].astype(np.int64), column["term_node"].astype(np.int64)
    link_type = column["link_type"].astype(np.int64)
    frame = pd.DataFrame(
        {
            "link_id": [str(i) for i in range(1, len(table) + 1)],
            "from_node": tail.astype(str),
            "to_node": head.astype(str),
            "length_m": column["length"] * length_to_m,
            "lanes": np.zeros(len(table), np.int64),
            "free_speed_kmh": column["speed"] * speed_to_kmh,
            "capacity_veh_h": column["capacity"],
            "road_class": [f"type_{t}" for t in link_type],
            "name": "",
            "free_flow_time": column["free_flow_time"],
            "b": column["b"],
            "power": column["power"],
            "toll": column["toll"],
            "link_type": link_type,
        }
    )
    return gpd.GeoDataFrame(frame, geometry=_tntp_lines(tail.tolist(), head.tolist(), xy), crs=crs)


def _tntp_lines(
    tail: list[int], head: list[int], xy: dict[int, tuple[float, float]]
) -> NDArray[np.object_]:
    lines = [
        shapely.LineString([xy[a], xy[b]]) if a in xy and b in xy else None
        for a, b in zip(tail, head, strict=True)
    ]
    return np.asarray(lines, dtype=object)


def read_tntp_trips(path: str | Path) -> NDArray[np.float64]:
    """The OD demand matrix (zones × zones, row = origin) of a TNTP ``_trips.tntp`` file.

    After the metadata header, each ``Origin k`` line is followed by ``destination : trips;``
    items. Zone k is row/column k − 1.

    Raises
    ------
    FeedError
        Naming file and line, for a missing ``<NUMBER OF ZONES>``, a zone outside 1…zones, an
        item before the first ``Origin`` line, or totals that differ from ``<TOTAL OD FLOW>``.
    """
    source = str(path)
    text = Path(path).read_text(encoding="utf-8-sig")
    zones, total, body_start = _trips_header(text, source)
    matrix = np.zeros((zones, zones))
    origin = 0
    for number, line in enumerate(text.splitlines()[body_start:], start=body_start + 1):
        origin = _trips_line(line, number, source, matrix, origin)
    if total is not None and not np.isclose(matrix.sum(), total, rtol=1e-6, atol=1e-3):
        raise FeedError(source, f"trips sum to {matrix.sum():.6g}, <TOTAL OD FLOW> is {total}")
    return matrix


def _trips_header(text: str, source: str) -> tuple[int, float | None, int]:
    lines = text.splitlines()
    zones_match = re.search(r"<NUMBER OF ZONES>\s*([0-9]+)", text)
    end = next((i for i, line in enumerate(lines) if "<END OF METADATA>" in line.upper()), None)
    if zones_match is None or end is None:
        raise FeedError(source, "expected <NUMBER OF ZONES> and <END OF METADATA> in the header")
    total_match = re.search(r"<TOTAL OD FLOW>\s*([0-9.eE+-]+)", text)
    total = float(total_match.group(1)) if total_match else None
    return int(zones_match.group(1)), total, end + 1


def _trips_line(
    line: str, number: int, source: str, matrix: NDArray[np.float64], origin: int
) -> int:
    """Store one line's items in ``matrix``; returns the origin zone in force after the line."""
    text = line.split("~", 1)[0].strip()
    if not text:
        return origin
    zones = len(matrix)
    head = re.match(r"origin\s+([0-9]+)\s*$", text, flags=re.IGNORECASE)
    if head:
        origin = int(head.group(1))
        if not 1 <= origin <= zones:
            raise FeedError(source, f"origin {origin} outside zones 1…{zones}", line=number)
        return origin
    items = re.findall(r"([0-9]+)\s*:\s*([0-9.eE+-]+)\s*;?", text)
    if not items or origin == 0:
        raise FeedError(
            source,
            f"expected 'Origin k' or 'destination : trips;' items, got {text!r}",
            line=number,
        )
    for destination, trips in items:
        if not 1 <= int(destination) <= zones:
            raise FeedError(source, f"destination {destination} outside 1…{zones}", line=number)
        matrix[origin - 1, int(destination) - 1] = float(trips)
    return origin


def read_tntp_flows(path: str | Path) -> pd.DataFrame:
    """A TNTP best-known solution ``_flow.tntp``: columns ``from, to, volume, cost``.

    Raises
    ------
    FeedError
        When the file is not a whitespace table of four numeric columns after a header line.
    """
    try:
        frame = pd.read_csv(path, sep=r"\s+", skiprows=1, header=None, usecols=[0, 1, 2, 3])
    except (ValueError, pd.errors.ParserError) as error:
        raise FeedError(str(path), f"expected 'From To Volume Cost' rows: {error}") from None
    frame.columns = ["from", "to", "volume", "cost"]
    if not all(pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns):
        raise FeedError(str(path), "expected four numeric columns From, To, Volume, Cost")
    return frame.astype({"from": np.int64, "to": np.int64, "volume": float, "cost": float})
