"""Rainfall ponding on a DEM by fill-and-spill: where water stands after a storm, and how deep.

Method
    Rain of depth ``R = intensity × duration`` (times a runoff coefficient: the share that does
    not infiltrate) falls on every cell and runs downhill (D8) into the basin of a pit. Each
    depression fills; once full to its spill level the excess pours over the saddle into the
    neighbouring depression, and when both are full they merge into one lake that rises
    together; water that reaches the DEM's edge is lost. This is the fill-spill-merge model of
    Barnes, Callaghan & Wickert (2021), *Computing water flow through complex landscapes,
    part 3: fill-spill-merge*, Earth Surface Dynamics 9, run on the depression hierarchy of
    :mod:`.depressions` (part 2, 2020). Like theirs it is the steady end state of one storm:
    no flow velocities, no timing, no drainage network, no infiltration after the rain.

    Water is handed up the hierarchy in the order the lakes form. At each merge, a child that
    holds more than its capacity pours the excess into its sibling through the basin on the
    sibling's side of the saddle; the sibling passes it down its own sub-tree the same way.
    Then each final lake's level solves ``V(h) = water`` exactly on the sorted heights of its
    cells (``V`` is piecewise linear in ``h``), so the ponded volume equals the water stored and
    the balance ``rain = infiltrated + ponded + outflow`` closes to rounding.

Outputs
    Ponding depth per cell (water level − ground where positive) and the volumes in m³.
    :mod:`.flood_impacts` turns the depths into flooded buildings and road links.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from citytwin.analysis.grid import Grid
from citytwin.errors import ValidationError
from citytwin.simulate.dem import validate_dem
from citytwin.simulate.depressions import DepressionTree, build_depression_tree

logger = logging.getLogger(__name__)

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

#: Stages reported through ``on_progress(done, STAGES)``.
STAGES = 5


@dataclass(frozen=True)
class PondingResult:
    """Where the water stands after the storm, and the water balance (volumes in m³).

    Attributes
    ----------
    grid
        The DEM's grid.
    depth
        Ponding depth (m) of each cell, ``grid.shape``; 0 where dry.
    rain_m3
        Rain fallen on the DEM: ``R × cell area × cells``.
    infiltrated_m3
        The share the runoff coefficient keeps out of the depressions.
    ponded_m3
        Water standing in depressions: ``Σ depth × cell area``.
    outflow_m3
        Water that left over the DEM's edge.
    depressions, lakes
        Basins of the DEM, and the lakes of the end state that hold water.
    """

    grid: Grid
    depth: F64
    rain_m3: float
    infiltrated_m3: float
    ponded_m3: float
    outflow_m3: float
    depressions: int
    lakes: int

    @property
    def balance_error_m3(self) -> float:
        """``rain − infiltrated − ponded − outflow``: zero up to rounding."""
        return self.rain_m3 - self.infiltrated_m3 - self.ponded_m3 - self.outflow_m3

    def flooded_area_m2(self, *, threshold: float = 0.1) -> float:
        """Area (m²) where the water stands at least ``threshold`` metres deep."""
        return float(np.count_nonzero(self.depth >= threshold)) * self.grid.cell**2


def simulate_ponding(
    grid: Grid,
    heights: ArrayLike,
    *,
    intensity_mm_h: float,
    duration_h: float,
    runoff_coefficient: float | ArrayLike = 1.0,
    on_progress: Callable[[int, int], None] | None = None,
) -> PondingResult:
    """Ponding depth after ``intensity_mm_h`` of rain for ``duration_h`` hours (fill-and-spill).

    Parameters
    ----------
    grid, heights
        The DEM: heights in metres, ``grid.shape``, finite everywhere (see
        :func:`~citytwin.simulate.dem.read_dem` for reading and filling a GeoTIFF).
    intensity_mm_h, duration_h
        Mean rain intensity (mm/h) and duration (h); the rain depth is their product.
    runoff_coefficient
        Share of the rain that runs off, in [0, 1]: one number or one per cell (about 0.9 for
        roofs and asphalt, 0.1–0.3 for parks; Chow, Maidment & Mays 1988, Table 15.1.1).
    on_progress
        Called as ``on_progress(done, total)`` after each of the ``STAGES`` stages.

    Examples
    --------
    Two pits (floors 1 and 2, 1 m cells) behind a saddle of 3, an outlet at 4 in the east wall:
    500 mm of rain on 18 cells (9 m³) merge them into one lake full to the outlet (8 m³), and
    the last cubic metre runs out:

    >>> z = np.full((3, 6), 9.0)
    >>> z[1, 1:] = [1, 3, 2, 2, 4]
    >>> grid = Grid(west=0.0, north=3.0, cell=1.0, width=6, height=3)
    >>> result = simulate_ponding(grid, z, intensity_mm_h=50, duration_h=10)
    >>> result.depth[1].tolist(), result.rain_m3, result.ponded_m3, result.outflow_m3
    ([0.0, 3.0, 1.0, 2.0, 2.0, 0.0], 9.0, 8.0, 1.0)
    """
    values = validate_dem(grid, heights)
    effective = _rain_depths(grid, intensity_mm_h, duration_h, runoff_coefficient)
    progress = _Progress(on_progress)
    tree = build_depression_tree(values, grid.cell)
    progress.step("depression hierarchy")
    area = grid.cell**2
    inside = tree.labels >= 0
    inflow = area * np.bincount(
        tree.labels[inside], weights=effective[inside], minlength=len(tree.parent)
    ).astype(np.float64)
    inflow[tree.leaves :] = 0.0
    water, lost_at_roots = _fill_and_spill(tree, inflow)
    progress.step("fill and spill")
    lake_of = _lakes(tree, water)
    progress.step("lakes")
    depth = _depths(values, tree.labels, lake_of, water, area)
    progress.step("water levels")
    rain = float(intensity_mm_h * duration_h / 1000.0) * area * grid.size
    runoff = float(effective.sum()) * area
    drained = runoff - float(inflow.sum())  # fell on cells that drain straight off the edge
    result = PondingResult(
        grid=grid,
        depth=depth,
        rain_m3=rain,
        infiltrated_m3=rain - runoff,
        ponded_m3=float(depth.sum()) * area,
        outflow_m3=drained + lost_at_roots,
        depressions=tree.leaves,
        lakes=int(np.count_nonzero(water[np.unique(lake_of[lake_of >= 0])] > 0)),
    )
    progress.step("balance")
    _check_balance(result)
    return result


def _rain_depths(
    grid: Grid, intensity_mm_h: float, duration_h: float, runoff_coefficient: float | ArrayLike
) -> F64:
    """Effective rain depth (m) per cell, after checking every input and naming the bad ones."""
    problems = [
        f"{name}={value!r}; expected a finite number >= 0"
        for name, value in (("intensity_mm_h", intensity_mm_h), ("duration_h", duration_h))
        if not (np.isfinite(value) and value >= 0)
    ]
    coefficient = np.asarray(runoff_coefficient, dtype=np.float64)
    if coefficient.shape not in ((), grid.shape):
        problems.append(
            f"runoff_coefficient of shape {coefficient.shape}; expected one number or {grid.shape}"
        )
        coefficient = np.zeros(grid.shape)
    coefficient = np.broadcast_to(coefficient, grid.shape)
    bad = ~((coefficient >= 0) & (coefficient <= 1))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        problems.append(
            f"runoff_coefficient {coefficient[row, col]} at row {row}, column {col} "
            f"({int(bad.sum())} cell(s)); expected a share in [0, 1]"
        )
    if problems:
        raise ValidationError("ponding simulation: " + "; ".join(problems))
    depths: F64 = coefficient * (intensity_mm_h * duration_h / 1000.0)
    return depths


def _fill_and_spill(tree: DepressionTree, inflow: F64) -> tuple[F64, float]:
    """Water (m³) held by each node of the hierarchy, and the overflow lost at the roots.

    Nodes are visited in the order they form; a node's water is the sum of its children's. At
    a merge whose children together hold less than both capacities, the one above capacity keeps
    its capacity and pours the rest into the other (:class:`_Pouring`).
    """
    pouring = _Pouring(tree, inflow)
    water, capacity, base = pouring.water, pouring.capacity, pouring.base
    for node in range(tree.leaves, len(water)):
        first, second = pouring.children[node]
        total = water[first] + water[second]
        if total < base[node]:
            for full, other, side in ((first, second, 1), (second, first, 0)):
                excess = water[full] - capacity[full]
                if excess > 0:
                    water[full] = capacity[full]
                    pouring.pour(pouring.entries[node][side], other, excess)
        water[node] = total
    held = np.asarray(water)
    roots = np.flatnonzero(tree.parent == np.arange(len(tree.parent)))
    lost = np.maximum(held[roots] - tree.capacity[roots], 0.0)
    held[roots] = np.minimum(held[roots], tree.capacity[roots])
    return held, float(lost.sum())


class _Pouring:
    """The hierarchy as Python lists (scalar access in the loops is ~10× faster than numpy)."""

    def __init__(self, tree: DepressionTree, inflow: F64) -> None:
        self.water: list[float] = inflow.astype(np.float64).tolist()
        self.capacity: list[float] = tree.capacity.tolist()
        self.base: list[float] = tree.base.tolist()
        self.parent: list[int] = tree.parent.tolist()
        self.children: list[list[int]] = tree.children.tolist()
        self.entries: list[list[int]] = tree.entries.tolist()

    def pour(self, leaf: int, stop: int, amount: float) -> None:
        """Add ``amount`` at basin ``leaf`` and carry it up to node ``stop``, spilling on the way.

        Below ``stop`` every merge is settled; where one is still split (its children hold less
        than its ``base``), a child pushed over its capacity pours the excess into its sibling's
        sub-tree through the basin on the sibling's side of the saddle.
        """
        water, capacity, base, parent = self.water, self.capacity, self.base, self.parent
        pending = [(leaf, stop, amount)]
        while pending:
            node, end, volume = pending.pop()
            water[node] += volume
            while node != end:
                above = parent[node]
                if water[above] < base[above]:
                    excess = water[node] - capacity[node]
                    if excess > 0:
                        water[node] = capacity[node]
                        first, _second = self.children[above]
                        side = 1 if first == node else 0
                        pending.append(
                            (self.entries[above][side], self.children[above][side], excess)
                        )
                water[above] += volume
                node = above


def _lakes(tree: DepressionTree, water: F64) -> I64:
    """The node whose lake covers each node's cells: the highest merged node above it.

    Going down from each root, the first node that holds at least its ``base`` (both children
    full, or a basin) is one lake with one level; below a split node each child decides alone.
    """
    # a node at its capacity is full to its top, one lake, even when rounding puts base above it
    merged = (water >= np.minimum(tree.base, tree.capacity)).tolist()
    parent = tree.parent.tolist()
    lake_of = [-1] * len(parent)
    for node in range(len(parent) - 1, -1, -1):  # parents before children
        above = parent[node]
        if above != node and lake_of[above] >= 0:
            lake_of[node] = lake_of[above]
        elif merged[node]:
            lake_of[node] = node
    return np.asarray(lake_of, dtype=np.int64)


def _depths(heights: F64, labels: I64, lake_of: I64, water: F64, area: float) -> F64:
    """Ponding depth per cell: each lake's level solves ``V(h) = water`` on its sorted cells.

    With a lake's heights sorted ``z₁ ≤ … ≤ zₘ``, ``V(z_k) = area·(k·z_k − Σ_{j≤k} z_j)``; the
    level lies between the last ``z_k`` with ``V(z_k) ≤ water`` and the next, where
    ``h = (water/area + Σ_{j≤k} z_j) / k``.
    """
    depth = np.zeros(heights.shape)
    cells = np.flatnonzero(labels.ravel() >= 0)
    if len(cells) == 0:  # every cell drains off the edge
        return depth
    lake = lake_of[labels.ravel()[cells]]
    z = heights.ravel()[cells]
    order = np.lexsort((z, lake))
    lake, z, cells = lake[order], z[order], cells[order]
    starts = np.flatnonzero(np.r_[True, lake[1:] != lake[:-1]])
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(lake)]))
    rank = np.arange(len(lake)) - starts[group] + 1
    cumulative = np.cumsum(z)
    below = cumulative - np.r_[0.0, cumulative][starts][group]
    held = water[lake] / area
    filled = rank * z - below <= held
    filled[starts] = True  # V(z₁) = 0, whatever the rounding of the running sums says
    k = np.bincount(group, weights=filled).astype(np.int64)
    last = starts + k - 1
    level = (held[starts] + below[last]) / k
    depth.ravel()[cells] = np.maximum(level[group] - z, 0.0)
    return depth


def _check_balance(result: PondingResult) -> None:
    error = abs(result.balance_error_m3)
    if error > 1e-9 * max(result.rain_m3, 1.0):
        logger.warning("ponding: water balance off by %.3g m³ of %.3g", error, result.rain_m3)


class _Progress:
    """Calls ``on_progress(done, STAGES)`` and logs each stage's duration."""

    def __init__(self, callback: Callable[[int, int], None] | None) -> None:
        self.callback, self.done, self.started = callback, 0, time.perf_counter()

    def step(self, stage: str) -> None:
        self.done += 1
        logger.debug("ponding: %s after %.2f s", stage, time.perf_counter() - self.started)
        if self.callback is not None:
            self.callback(self.done, STAGES)
