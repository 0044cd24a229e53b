"""The depressions of a DEM and how they nest: D8 basins, their saddles and the merge tree.

Method
    Every cell drains to its steepest-descent neighbour (D8, O'Callaghan & Mark 1984); a cell with
    no lower neighbour is a pit, and the cells that drain to one pit (touching pits of equal height
    are one pit) form a *basin*. Two basins connect once water rises to their *saddle*, the lowest
    ``max(z_i, z_j)`` over the pairs of touching cells ``i``, ``j`` across their border; the DEM's
    edge is an outlet at the height of each border cell (the "ocean" of Barnes, Lehman & Mulla 2014,
    *Priority-flood*, Computers & Geosciences 62). Merging basins across saddles in increasing
    order (Kruskal's algorithm with a union-find) gives the *depression hierarchy* of Barnes,
    Callaghan & Wickert (2020), *Computing water flow through complex landscapes, part 2:
    finding hierarchies in depressions and morphological segmentations*, Earth Surface Dynamics 8:
    leaves are basins, each inner node is the lake that forms when its two children join at its
    saddle, and a node that reaches the edge is a root whose overflow leaves the DEM.

    The capacity of a node is the volume it holds up to the level where it stops being separate
    (its parent's saddle, or its outlet to the edge): ``area · Σ (top − z)`` over its cells below
    ``top``. Every cell below a level drains along a descending path to a pit under that level, so
    the cells of a node below its top are exactly the ones its lake covers.

Cost
    Everything per cell is vectorised numpy (D8 by array shifts, basins by pointer jumping,
    saddles by a sort, capacities by binary lifting up the tree); only the merge loop runs in
    Python, once per basin border, not per cell.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

logger = logging.getLogger(__name__)

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

#: Row and column steps of the eight D8 neighbours.
_D8 = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
#: Half of them: every unordered pair of touching cells is seen once.
_HALF = ((0, 1), (1, -1), (1, 0), (1, 1))


@dataclass(frozen=True)
class DepressionTree:
    """Basins of a DEM and their merge tree; nodes ``0 … leaves-1`` are the basins themselves.

    Attributes
    ----------
    labels
        Basin of each cell (``grid.shape``); ``-1`` where the cell drains straight off the edge.
    leaves
        Number of basins. Inner nodes follow in the order they form, so a child's index is
        always below its parent's.
    parent
        Parent of each node; a root (a node whose overflow leaves the DEM) is its own parent.
    children
        The two merged nodes of each inner node (``-1`` for a basin).
    entries
        The basins on either side of an inner node's saddle: overflow of one child enters the
        other through the basin on its side.
    level, top
        Height of the saddle that formed the node (``-inf`` for a basin) and of the one where it
        stops being separate (its parent's level or its outlet to the edge).
    capacity
        Volume (m³) the node holds when full to ``top``.
    """

    labels: I64
    leaves: int
    parent: I64
    children: I64
    entries: I64
    level: F64
    top: F64
    capacity: F64

    @property
    def base(self) -> F64:
        """Volume (m³) a node holds at its own ``level``: both children full (0 for a basin)."""
        inner = self.children[:, 0] >= 0
        base = np.zeros(len(self.parent))
        base[inner] = self.capacity[self.children[inner]].sum(axis=1)
        return base


def build_depression_tree(heights: F64, cell: float) -> DepressionTree:
    """Basins, saddles and merge tree of a finite DEM with square cells of ``cell`` metres.

    Examples
    --------
    Two pits (heights 1 and 2) behind a saddle of 3 inside a wall of 9 with an outlet at 4:

    >>> z = np.full((3, 6), 9.0)
    >>> z[1, 1:5] = [1, 3, 2, 2]
    >>> z[1, 5] = 4
    >>> tree = build_depression_tree(z, 1.0)
    >>> tree.leaves, tree.level[2].item(), tree.top.tolist()
    (2, 3.0, [3.0, 3.0, 4.0])
    >>> tree.capacity.tolist()  # 2 m³ in each pit up to the saddle, 3 + 1 + 2 + 2 to the outlet
    [2.0, 2.0, 8.0]
    """
    labels, leaves = label_basins(heights, cell)
    low, high, saddle = basin_saddles(heights, labels, leaves)
    parent, children, entries, level, top = _merge(leaves, low, high, saddle)
    capacity = _capacities(heights, labels, parent, children, top, cell * cell)
    logger.debug("%d basins, %d merges, %d roots", leaves, len(parent) - leaves, _roots(parent))
    return DepressionTree(labels, leaves, parent, children, entries, level, top, capacity)


def label_basins(heights: F64, cell: float) -> tuple[I64, int]:
    """Basin of each cell by D8 steepest descent, and the number of basins.

    Cells that drain to a pit on the DEM's border get ``-1``: their water leaves the DEM.

    Examples
    --------
    The pit at 1 keeps the west half; the east half runs to the 0 in the corner and off the DEM:

    >>> z = np.array([[5.0, 5, 5, 5], [5, 1, 2, 5], [5, 5, 5, 0]])
    >>> labels, count = label_basins(z, 1.0)
    >>> count, labels.tolist()
    (1, [[0, 0, -1, -1], [0, 0, -1, -1], [0, 0, -1, -1]])
    """
    receiver = d8_receivers(heights, cell)
    index = np.arange(heights.size)
    pit = (receiver == index).reshape(heights.shape)
    border = np.ones(heights.shape, dtype=bool)
    border[1:-1, 1:-1] = False
    components, count = ndimage.label(pit & ~border, structure=np.ones((3, 3), dtype=bool))
    pit_label = components.ravel().astype(np.int64) - 1
    while True:  # pointer jumping: log2(longest flow path) passes
        jumped = receiver[receiver]
        if np.array_equal(jumped, receiver):
            break
        receiver = jumped
    return pit_label[receiver].reshape(heights.shape), int(count)


def d8_receivers(heights: F64, cell: float) -> I64:
    """Flat index of each cell's steepest-descent neighbour (D8); a pit is its own receiver.

    Examples
    --------
    >>> d8_receivers(np.array([[3.0, 2.0], [2.0, 0.0]]), 1.0).tolist()
    [3, 3, 3, 3]
    """
    rows, cols = heights.shape
    padded = np.pad(heights, 1, constant_values=np.inf)
    index = np.pad(np.arange(heights.size).reshape(rows, cols), 1, constant_values=-1)
    best_slope = np.zeros(heights.shape)
    receiver = np.arange(heights.size).reshape(rows, cols)
    for dr, dc in _D8:
        neighbour = padded[1 + dr : 1 + dr + rows, 1 + dc : 1 + dc + cols]
        slope = (heights - neighbour) / (cell * np.hypot(dr, dc))
        steeper = slope > best_slope
        best_slope = np.where(steeper, slope, best_slope)
        receiver = np.where(
            steeper, index[1 + dr : 1 + dr + rows, 1 + dc : 1 + dc + cols], receiver
        )
    flat: I64 = receiver.ravel().astype(np.int64)
    return flat


def basin_saddles(heights: F64, labels: I64, leaves: int) -> tuple[I64, I64, F64]:
    """Every pair of touching basins ``(low, high)`` with its saddle height; the edge is ``leaves``.

    Examples
    --------
    >>> z = np.array([[9.0, 9, 9, 9], [9, 1, 3, 2], [9, 9, 9, 9]])
    >>> labels = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]])
    >>> low, high, saddle = basin_saddles(z, labels, 2)
    >>> low.tolist(), high.tolist(), saddle.tolist()
    ([0, 0, 1], [1, 2, 2], [3.0, 9.0, 2.0])
    """
    ocean = np.where(labels < 0, leaves, labels)
    rows, cols = heights.shape
    pairs_a, pairs_b, heights_ab = [], [], []
    for dr, dc in _HALF:
        first = (slice(0, rows - dr), slice(max(0, -dc), cols - max(0, dc)))
        second = (slice(dr, rows), slice(max(0, dc), cols - max(0, -dc)))
        a, b = ocean[first], ocean[second]
        differ = a != b
        pairs_a.append(a[differ])
        pairs_b.append(b[differ])
        heights_ab.append(np.maximum(heights[first], heights[second])[differ])
    border = np.ones(heights.shape, dtype=bool)
    border[1:-1, 1:-1] = False
    pairs_a.append(ocean[border])
    pairs_b.append(np.full(int(border.sum()), leaves))
    heights_ab.append(heights[border])
    a, b, saddle = np.concatenate(pairs_a), np.concatenate(pairs_b), np.concatenate(heights_ab)
    keep = a != b
    low, high, saddle = np.minimum(a, b)[keep], np.maximum(a, b)[keep], saddle[keep]
    key = low * (leaves + 1) + high
    order = np.lexsort((saddle, key))
    _, first_of_key = np.unique(key[order], return_index=True)
    chosen = order[first_of_key]
    return low[chosen].astype(np.int64), high[chosen].astype(np.int64), saddle[chosen]


def _merge(leaves: int, low: I64, high: I64, saddle: F64) -> tuple[I64, I64, I64, F64, F64]:
    """Kruskal over the basin graph: ``parent, children, entries, level, top`` of every node.

    The edge is node ``leaves`` of the basin graph; a component that reaches it joins it for
    good, and its node becomes a root whose ``top`` is that saddle.
    """
    order = np.argsort(saddle, kind="stable")
    union = list(range(leaves + 1))
    node_of = list(range(leaves + 1))
    parent, top = list(range(leaves)), [np.inf] * leaves
    children, entries, level = [(-1, -1)] * leaves, [(-1, -1)] * leaves, [-np.inf] * leaves

    def find(item: int) -> int:
        root = item
        while union[root] != root:
            root = union[root]
        while union[item] != root:
            union[item], item = root, union[item]
        return root

    for a, b, z in zip(
        low[order].tolist(), high[order].tolist(), saddle[order].tolist(), strict=False
    ):
        root_a, root_b = find(a), find(b)
        if root_a == root_b:
            continue
        if leaves in (root_a, root_b):  # a component reaches the edge: a root of the tree
            inner = root_a if root_b == leaves else root_b
            top[node_of[inner]] = z
            union[inner] = leaves
            continue
        new = len(parent)
        for child in (node_of[root_a], node_of[root_b]):
            parent[child], top[child] = new, z
        parent.append(new)
        top.append(np.inf)
        children.append((node_of[root_a], node_of[root_b]))
        entries.append((a, b))
        level.append(z)
        union[root_b], node_of[root_a] = root_a, new
    return (
        np.asarray(parent, dtype=np.int64),
        np.asarray(children, dtype=np.int64).reshape(-1, 2),
        np.asarray(entries, dtype=np.int64).reshape(-1, 2),
        np.asarray(level, dtype=np.float64),
        np.asarray(top, dtype=np.float64),
    )


def _capacities(
    heights: F64, labels: I64, parent: I64, children: I64, top: F64, area: float
) -> F64:
    """Volume of each node up to its top: count and height sum of its cells below the top.

    A cell counts for the lowest ancestor of its basin whose top is above it and, through the
    subtree sums, for every ancestor above that one (tops never fall going up the tree).
    """
    inside = labels.ravel() >= 0
    z = heights.ravel()[inside]
    owner = _lowest_ancestor_above(labels.ravel()[inside], z, parent, top)
    valid = owner >= 0
    count = np.bincount(owner[valid], minlength=len(parent)).astype(np.float64)
    total = np.bincount(owner[valid], weights=z[valid], minlength=len(parent))
    leaves = int(np.count_nonzero(children[:, 0] < 0))
    for node in range(leaves, len(parent)):  # children before parents
        first, second = children[node]
        count[node] += count[first] + count[second]
        total[node] += total[first] + total[second]
    capacity: F64 = area * np.maximum(count * top - total, 0.0)
    return capacity


def _lowest_ancestor_above(start: I64, z: F64, parent: I64, top: F64) -> I64:
    """For each cell, the lowest ancestor of ``start`` (inclusive) with ``top > z``, else ``-1``.

    Binary lifting: jump tables of 1, 2, 4 … generations, then descend from the longest jump.
    """
    jumps = [parent]
    while True:
        further = jumps[-1][jumps[-1]]
        if np.array_equal(further, jumps[-1]):
            break
        jumps.append(further)
    current = start.copy()
    below = top[current] <= z
    for jump in reversed(jumps):
        ahead = jump[current]
        move = below & (top[ahead] <= z)
        current = np.where(move, ahead, current)
    current = np.where(below, parent[current], current)
    owner: I64 = np.where(top[current] > z, current, -1)
    return owner


def _roots(parent: I64) -> int:
    return int(np.count_nonzero(parent == np.arange(len(parent))))
