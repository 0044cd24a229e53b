"""3D Tiles export benchmark: 100,000 synthetic LoD1 buildings through ``write_3dtiles``.

Generates seeded rectangles and L-shapes (random size, orientation and height) over a 10 × 10 km
square of EPSG:5186 around Seoul City Hall, then, in the same run on the same frame:

- **citytwin**: ``write_3dtiles`` — extrusion, triangulation, ECEF/ENU placement, quadtree,
  ``.glb`` with EXT_mesh_features + EXT_structural_metadata, ``tileset.json``;
- **baseline**: ``extrude_footprints`` alone (the LoD1 solids every exporter starts from), to show
  what share of the time the 3D Tiles writing itself takes.

The goal is ≥ 5,000 buildings/s; the published reference is pg2b3dm at ≈ 1,400 buildings/s.
Each is run ``--repeat`` times; the best time counts. Results go to ``bench/out/tiles.json``.

Usage: ``python bench/tiles.py [--buildings 100000] [--repeat 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from numpy.typing import NDArray

from _timing import best_of
from citytwin.space.io.tiles3d import write_3dtiles
from citytwin.space.lod1 import extrude_footprints

OUT = Path(__file__).parent / "out"
CENTRE = (198_056.0, 551_885.0)  # Seoul City Hall in EPSG:5186
GOAL = 5_000.0
PG2B3DM = 1_400.0  # published pg2b3dm throughput, buildings/s


def synthetic_buildings(count: int, *, seed: int = 5186, extent: float = 10_000.0) -> Any:
    """``count`` rectangles (70 %) and L-shapes (30 %), 8–40 m wide, 3–120 m tall."""
    rng = np.random.default_rng(seed)
    width, depth = rng.uniform(8, 40, count), rng.uniform(8, 40, count)
    l_shape = rng.random(count) < 0.3
    outlines = [
        _outline(width[~l_shape], depth[~l_shape], rng, l_shape=False),
        _outline(width[l_shape], depth[l_shape], rng, l_shape=True),
    ]
    geometry = np.concatenate([_place(points, rng, extent) for points in outlines])
    height = np.clip(rng.gamma(2.0, 9.0, count), 3.0, 120.0)
    return gpd.GeoDataFrame(
        {
            "key": [f"synthetic:{i}" for i in range(count)],
            "height": height,
            "use": rng.choice(["residential", "commercial", "office", ""], count),
            "min_height": np.zeros(count),
        },
        geometry=geometry,
        crs="EPSG:5186",
    )


def _outline(
    width: NDArray[np.float64], depth: NDArray[np.float64], rng: Any, *, l_shape: bool
) -> NDArray[np.float64]:
    """N×V×2 counter-clockwise outlines centred on the origin."""
    zero = np.zeros_like(width)
    if l_shape:
        notch_x, notch_y = width * rng.uniform(0.3, 0.7, len(width)), depth * 0.5
        xs = [zero, width, width, notch_x, notch_x, zero]
        ys = [zero, zero, notch_y, notch_y, depth, depth]
    else:
        xs, ys = [zero, width, width, zero], [zero, zero, depth, depth]
    points = np.stack([np.stack(xs, axis=1), np.stack(ys, axis=1)], axis=2)
    centred: NDArray[np.float64] = points - np.stack([width, depth], axis=1)[:, None, :] / 2
    return centred


def _place(points: NDArray[np.float64], rng: Any, extent: float) -> NDArray[Any]:
    """Rotate each outline randomly and scatter it over the square around ``CENTRE``."""
    angle = rng.uniform(0, np.pi, len(points))
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    x = cos * points[..., 0] - sin * points[..., 1]
    y = sin * points[..., 0] + cos * points[..., 1]
    offset = rng.uniform(-extent / 2, extent / 2, (len(points), 2)) + CENTRE
    coords = np.stack([x + offset[:, :1], y + offset[:, 1:]], axis=2)
    closed = np.concatenate([coords, coords[:, :1]], axis=1)
    polygons: NDArray[Any] = shapely.polygons(closed)
    return polygons


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--buildings", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--max-per-tile", type=int, default=256)
    args = parser.parse_args()
    frame = synthetic_buildings(args.buildings)
    scratch = Path(tempfile.mkdtemp(prefix="citytwin-tiles-"))
    try:
        seconds, report = best_of(
            args.repeat,
            lambda: write_3dtiles(
                frame, scratch / "tiles", max_buildings_per_tile=args.max_per_tile
            ),
        )
        geoms = np.asarray(frame.geometry.values, dtype=object)
        baseline, _ = best_of(args.repeat, lambda: extrude_footprints(geoms, frame["height"]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rate = report.buildings / seconds
    results = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "buildings": report.buildings,
        "skipped": len(report.skipped),
        "tiles": report.tiles,
        "content_tiles": report.content_tiles,
        "triangles": report.triangles,
        "megabytes": round(report.bytes / 1e6, 1),
        "seconds": round(seconds, 3),
        "buildings_per_second": round(rate),
        "goal_buildings_per_second": GOAL,
        "pg2b3dm_buildings_per_second": PG2B3DM,
        "extrusion_only_seconds": round(baseline, 3),
    }
    print(
        f"write_3dtiles: {report.buildings:,} buildings, {report.triangles:,} triangles, "
        f"{report.content_tiles} .glb / {report.tiles} tiles, {report.bytes / 1e6:.1f} MB "
        f"in {seconds:.2f} s → {rate:,.0f} buildings/s"
    )
    print(
        f"goal ≥ {GOAL:,.0f}/s: {'met' if rate >= GOAL else 'NOT met'} ({rate / GOAL:.2f}×); "
        f"pg2b3dm (published) ≈ {PG2B3DM:,.0f}/s: {rate / PG2B3DM:.1f}×"
    )
    print(
        f"same-run baseline, extrude_footprints alone: {baseline:.2f} s "
        f"({baseline / seconds:.0%} of the export)"
    )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "tiles.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
