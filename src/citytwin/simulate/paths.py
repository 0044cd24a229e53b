"""Shortest paths and all-or-nothing loading for traffic assignment (pure numpy/scipy).

The road graph is rewritten once so that one scipy Dijkstra call per iteration honours two TNTP
conventions without per-origin graphs:

- *first thru node*: a node numbered below ``<FIRST THRU NODE>`` is a zone centroid that traffic
  may start or end at but not pass through. Each such node is split: arcs into it keep the node
  (a sink), arcs out of it leave from a copy that serves as the search source.
- *parallel links*: scipy sums duplicate matrix entries, so a second link between the same two
  nodes is routed through a dummy vertex with a zero-cost arc.

Loading walks every OD pair's predecessor chain back to its origin, all pairs in step, so the
Python loop runs once per arc of the longest path, never once per pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.sparse.csgraph import dijkstra

from citytwin.errors import ValidationError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class RoutingGraph:
    """A CSR graph over nodes, split zone copies and dummy vertices; arcs map back to links."""

    n_vertices: int
    indptr: IntArray
    indices: IntArray
    keys: IntArray
    arc_link: IntArray
    zone_source: IntArray
    n_links: int


@dataclass(frozen=True)
class ODPairs:
    """The OD pairs with positive demand: origin zone, destination zone, flow."""

    origin: IntArray
    destination: IntArray
    flow: FloatArray

    @classmethod
    def from_matrix(cls, demand: FloatArray) -> ODPairs:
        """Off-diagonal positive cells of a zones × zones matrix."""
        positive = demand > 0
        np.fill_diagonal(positive, False)
        origin, destination = np.nonzero(positive)
        return cls(origin.astype(np.int64), destination.astype(np.int64), demand[positive])


def build_routing_graph(
    tail: IntArray, head: IntArray, *, n_nodes: int, n_zones: int, first_thru_node: int
) -> RoutingGraph:
    """The search graph of a link list (0-based node indices), see the module docstring.

    >>> g = build_routing_graph(np.array([0, 1, 1]), np.array([1, 2, 2]), n_nodes=3,
    ...                         n_zones=1, first_thru_node=2)
    >>> g.n_vertices, g.zone_source.tolist(), sorted(g.arc_link.tolist())
    (5, [3], [-1, 0, 1, 2])
    """
    blocked = np.arange(n_nodes) < first_thru_node - 1
    copy_of = np.full(n_nodes, -1, np.int64)
    copy_of[blocked] = n_nodes + np.arange(int(blocked.sum()))
    arc_tail = np.where(blocked[tail], copy_of[tail], tail)
    arc_head = head.astype(np.int64).copy()
    n_vertices = n_nodes + int(blocked.sum())
    order = np.lexsort((np.arange(len(tail)), arc_head, arc_tail))
    pair = arc_tail[order] * n_vertices + arc_head[order]
    repeated = np.zeros(len(tail), bool)
    repeated[order[1:]] = pair[1:] == pair[:-1]
    dummies = n_vertices + np.arange(int(repeated.sum()))
    final_head = arc_head[repeated].copy()
    arc_head[repeated] = dummies
    tails = np.concatenate([arc_tail, dummies])
    heads = np.concatenate([arc_head, final_head])
    links = np.concatenate([np.arange(len(tail)), np.full(len(dummies), -1)])
    n_vertices += len(dummies)
    keys = tails * n_vertices + heads
    sort = np.argsort(keys, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(tails, minlength=n_vertices))])
    sources = np.arange(n_zones)
    zone_source = np.where(blocked[sources], copy_of[sources], sources)
    return RoutingGraph(
        n_vertices, indptr.astype(np.int64), heads[sort], keys[sort], links[sort],
        zone_source.astype(np.int64), len(tail),
    )  # fmt: skip


def shortest_trees(
    graph: RoutingGraph, link_cost: FloatArray, origins: IntArray
) -> tuple[FloatArray, NDArray[np.int32]]:
    """Dijkstra (1959) distances and predecessors from each origin zone, by scipy's csgraph."""
    arc_cost = np.where(graph.arc_link >= 0, link_cost[graph.arc_link], 0.0)
    shape = (graph.n_vertices, graph.n_vertices)
    matrix = sp.csr_matrix((arc_cost, graph.indices, graph.indptr), shape=shape)
    dist, pred = dijkstra(
        matrix, directed=True, indices=graph.zone_source[origins], return_predecessors=True
    )
    return dist, pred


def all_or_nothing(
    graph: RoutingGraph, link_cost: FloatArray, pairs: ODPairs
) -> tuple[FloatArray, float]:
    """Link volumes with every OD flow on its cheapest path, and the shortest-path total cost.

    Raises
    ------
    ValidationError
        Naming the first OD pairs (1-based zones) that have demand but no path.

    >>> g = build_routing_graph(np.array([0, 0, 1]), np.array([1, 2, 2]), n_nodes=3,
    ...                         n_zones=3, first_thru_node=1)
    >>> pairs = ODPairs(np.array([0]), np.array([2]), np.array([5.0]))
    >>> volume, sptt = all_or_nothing(g, np.array([1.0, 3.0, 1.0]), pairs)
    >>> volume.tolist(), sptt
    ([5.0, 0.0, 5.0], 10.0)
    """
    origins, row = np.unique(pairs.origin, return_inverse=True)
    dist, pred = shortest_trees(graph, link_cost, origins)
    cost = dist[row, pairs.destination]
    _check_reachable(cost, pairs)
    return _load_paths(graph, pred, row, pairs), float(pairs.flow @ cost)


def _check_reachable(cost: FloatArray, pairs: ODPairs) -> None:
    missing = np.flatnonzero(~np.isfinite(cost))
    if missing.size:
        shown = ", ".join(
            f"{pairs.origin[i] + 1}->{pairs.destination[i] + 1} ({pairs.flow[i]:g})"
            for i in missing[:5]
        )
        raise ValidationError(
            f"demand: {missing.size} OD pair(s) with demand have no path through the network, "
            f"e.g. zones {shown}; expected every pair with demand to be connected "
            "(was a link closure too much?)"
        )


def _load_paths(
    graph: RoutingGraph, pred: NDArray[np.int32], row: IntArray, pairs: ODPairs
) -> FloatArray:
    """Sum each pair's flow over its predecessor chain, all pairs advancing one arc per step."""
    stop = graph.zone_source[np.unique(pairs.origin)][row]
    current, flow = pairs.destination, pairs.flow
    positions: list[IntArray] = []
    weights: list[FloatArray] = []
    while current.size:
        previous = pred[row, current].astype(np.int64)
        positions.append(np.searchsorted(graph.keys, previous * graph.n_vertices + current))
        weights.append(flow)
        going = previous != stop
        row, current, flow, stop = row[going], previous[going], flow[going], stop[going]
    arc_volume = np.bincount(
        np.concatenate(positions), np.concatenate(weights), minlength=len(graph.keys)
    )
    real = graph.arc_link >= 0
    volume = np.bincount(graph.arc_link[real], arc_volume[real], minlength=graph.n_links)
    return volume.astype(np.float64)
