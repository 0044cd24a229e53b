"""Gaussian plume benchmark: ground-level concentration on a 10 m grid over all of Seoul.

The grid covers the S-DoT sensors' bounding box in EPSG:5186 (32.7 × 27.9 km → 3,268 × 2,787 =
9.1 million cells). A continuous release at Seoul City Hall is evaluated for ``--winds`` wind
directions (class D, 4 m/s, 20 m release height), in the same run on the same grid:

- **citytwin** ``plume_grid`` — float32, cache-sized blocks of rows, the rotation as two broadcast
  adds, upwind cells skipped, one ``exp`` for the reflected ground-level receptor;
- **baseline** — the textbook formula written straight in numpy: float64 ``meshgrid`` of cell
  centres, rotation, σy/σz and both reflection terms on every cell, then ``where(x > 0)``.

Both use Briggs' urban σ (the city default); ``--dispersion pasquill-gifford`` times the ISC3
curves (logs, tangents and piecewise bands) with rural terrain instead. The figure is receptor
evaluations per second — grid cells delivered per second, upwind cells included, as the caller
sees it; the share actually computed downwind is printed too. The two results are compared
cell by cell. Goal: ≥ 20 million evaluations/s. Each timing is the best of ``--repeat`` runs.
Results go to ``bench/out/plume.json``.

Usage: ``python bench/plume.py [--cell 10] [--winds 4] [--repeat 2] [--dispersion briggs]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from _timing import best_of
from citytwin.analysis.grid import Grid
from citytwin.simulate.dispersion import Dispersion, Terrain, plume_sigmas
from citytwin.simulate.plume import plume_grid

OUT = Path(__file__).parent / "out"
#: The S-DoT sites' bounding box in EPSG:5186 (as in bench/kriging.py).
SEOUL_BOX = (183_090.0, 537_840.0, 215_770.0, 565_710.0)
CITY_HALL = (198_056.0, 551_885.0)
Q, WIND_SPEED, HEIGHT, STABILITY = 100.0, 4.0, 20.0, "D"
GOAL = 20e6


def baseline_plume(
    grid: Grid, wind_direction: float, dispersion: Dispersion, terrain: Terrain
) -> NDArray[np.float64]:
    """The plume formula on every cell, float64, whole-grid arrays — how one writes it first."""
    x, y = grid.centres()
    towards = math.radians(wind_direction + 180.0)
    dx, dy = x - CITY_HALL[0], y - CITY_HALL[1]
    along = dx * math.sin(towards) + dy * math.cos(towards)
    across = -dx * math.cos(towards) + dy * math.sin(towards)
    safe = np.where(along > 0, along, 1.0)
    sy, sz = plume_sigmas(safe, STABILITY, dispersion=dispersion, terrain=terrain)
    c = (
        Q
        / (2 * np.pi * WIND_SPEED * sy * sz)
        * np.exp(-(across**2) / (2 * sy**2))
        * (
            np.exp(-((0.0 - HEIGHT) ** 2) / (2 * sz**2))
            + np.exp(-((0.0 + HEIGHT) ** 2) / (2 * sz**2))
        )
    )
    return np.where(along > 0, c, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cell", type=float, default=10.0)
    parser.add_argument("--winds", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dispersion", choices=["briggs", "pasquill-gifford"], default="briggs")
    parser.add_argument("--workers", type=int, default=1, help="plume_grid threads")
    args = parser.parse_args()
    dispersion: Dispersion = args.dispersion
    terrain: Terrain = "urban" if dispersion == "briggs" else "rural"
    grid = Grid.covering(SEOUL_BOX, cell=args.cell)
    directions = [(250.0 + 360.0 * k / args.winds) % 360.0 for k in range(args.winds)]

    def one_wind(direction: float) -> NDArray[np.float32]:
        return plume_grid(
            CITY_HALL, Q, WIND_SPEED, direction, grid, height=HEIGHT, stability=STABILITY,
            dispersion=dispersion, terrain=terrain, workers=args.workers,
        )  # fmt: skip

    def ours() -> list[NDArray[np.float32]]:
        return [one_wind(d) for d in directions]

    def theirs(direction: float) -> Callable[[], NDArray[np.float64]]:
        return lambda: baseline_plume(grid, direction, dispersion, terrain)

    seconds, fields = best_of(args.repeat, ours)
    base_seconds, worst, downwind = 0.0, 0.0, 0
    for direction, field in zip(directions, fields, strict=True):
        one, reference = best_of(args.repeat, theirs(direction))
        base_seconds += one
        worst = max(worst, float(np.max(np.abs(field - reference)) / reference.max()))
        downwind += int((field > 0).sum())
    evaluations = grid.size * len(directions)
    rate, base_rate = evaluations / seconds, evaluations / base_seconds
    results = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "grid": {"cell_m": args.cell, "width": grid.width, "height": grid.height},
        "dispersion": dispersion,
        "workers": args.workers,
        "terrain": terrain,
        "wind_directions": directions,
        "evaluations": evaluations,
        "nonzero_share": round(downwind / evaluations, 3),
        "seconds": round(seconds, 3),
        "evaluations_per_second": round(rate),
        "baseline_seconds": round(base_seconds, 3),
        "baseline_evaluations_per_second": round(base_rate),
        "speedup": round(rate / base_rate, 1),
        "max_abs_difference_over_peak": worst,
        "goal_evaluations_per_second": GOAL,
    }
    print(
        f"plume_grid ({dispersion}, {terrain}): {len(directions)} winds × {grid.width:,} × "
        f"{grid.height:,} cells = {evaluations:,} receptors in {seconds:.2f} s → "
        f"{rate / 1e6:,.1f} M evaluations/s ({downwind / evaluations:.0%} of cells > 0)"
    )
    print(
        f"goal ≥ {GOAL / 1e6:.0f} M/s: {'met' if rate >= GOAL else 'NOT met'} ({rate / GOAL:.1f}×)"
    )
    print(
        f"same-run baseline, plain float64 numpy: {base_seconds:.2f} s → "
        f"{base_rate / 1e6:,.1f} M/s; citytwin is {rate / base_rate:.1f}× faster; "
        f"max |difference| = {worst:.1e} × peak"
    )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "plume.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
