"""Static user-equilibrium traffic assignment with BPR link costs (Wardrop 1952, Beckmann 1956).

Each OD flow uses only paths of least generalised cost; equivalently the link volumes minimise
the Beckmann objective ``Σ_a ∫_0^{x_a} c_a(w) dw``. Link travel time follows the Bureau of Public
Roads curve ``t = t0 · (1 + b · (x / capacity)^power)`` with TNTP's per-link ``b`` and ``power``;
generalised cost adds ``toll_factor · toll + distance_factor · length`` (the weights each TNTP
network README lists). Zones numbered below ``<FIRST THRU NODE>`` are never passed through.

The solver is the bi-conjugate Frank-Wolfe method (Mitradjieva & Lindberg 2013, *Transportation
Science* 47(2)), as AequilibraE implements it, in :mod:`.equilibrium`; shortest paths are in
:mod:`.paths`. The relative gap is ``(TSTT − SPTT) / TSTT`` on generalised cost, as TNTP and
AequilibraE define it. What-ifs (closures, capacity, new links, demand) are in
:mod:`.assignment_whatif`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from citytwin.errors import UnknownBackendError, ValidationError
from citytwin.simulate.equilibrium import ALGORITHMS, CostModel, solve_equilibrium
from citytwin.simulate.paths import ODPairs, build_routing_graph
from citytwin.space.io.tntp import read_tntp_trips
from citytwin.space.roads import RoadNetwork, load_tntp_network

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
_POSITIVE = ("capacity",)
_NON_NEGATIVE = ("free_flow_time", "b", "length", "toll")


@dataclass(frozen=True)
class AssignmentNetwork:
    """Directed links as arrays (0-based ``tail``/``head`` into ``node_ids``) with BPR parameters.

    Nodes ``node_ids[:n_zones]`` are the zones (row/column order of the demand matrix); nodes at
    positions below ``first_thru_node − 1`` may be origins or destinations but not passed through.
    Construction checks every array and raises one :class:`ValidationError` listing each problem.
    """

    node_ids: tuple[str, ...]
    tail: IntArray
    head: IntArray
    capacity: FloatArray
    free_flow_time: FloatArray
    b: FloatArray
    power: FloatArray
    length: FloatArray
    toll: FloatArray
    n_zones: int
    first_thru_node: int = 1
    source: str = "links"

    def __post_init__(self) -> None:
        problems = _validate_network(self)
        if problems:
            raise ValidationError(f"assignment network from {self.source}: " + "; ".join(problems))

    @property
    def n_links(self) -> int:
        """Number of directed links."""
        return len(self.tail)

    def link_labels(self) -> tuple[NDArray[np.str_], NDArray[np.str_]]:
        """Node ids at each link's tail and head."""
        ids = np.asarray(self.node_ids, dtype=str)
        return ids[self.tail], ids[self.head]

    def find_links(self, pairs: list[tuple[str | int, str | int]]) -> IntArray:
        """Positions of the links ``(from, to)`` (node ids); unknown pairs raise, naming them."""
        index = {node: i for i, node in enumerate(self.node_ids)}
        key = self.tail * len(self.node_ids) + self.head
        found: list[int] = []
        missing: list[str] = []
        for a, b in pairs:
            i, j = index.get(str(a), -1), index.get(str(b), -1)
            hits: IntArray = np.flatnonzero(key == i * len(self.node_ids) + j)
            if min(i, j) >= 0 and len(hits):
                found.extend(int(h) for h in hits)
            else:
                missing.append(f"{a}-{b}")
        if missing:
            raise ValidationError(
                f"{self.source}: no link {', '.join(missing)}; expected (from, to) node ids of "
                "existing links"
            )
        return np.asarray(found, np.int64)


def _validate_network(net: AssignmentNetwork) -> list[str]:
    problems: list[str] = []
    n, n_nodes = len(net.tail), len(net.node_ids)
    columns = ("head", *_POSITIVE, *_NON_NEGATIVE, "power")
    for name in columns:
        if len(getattr(net, name)) != n:
            problems.append(f"{name} has {len(getattr(net, name))} values, expected {n}")
    if problems:
        return problems
    ends = np.concatenate([net.tail, net.head])
    if n and (ends.min() < 0 or ends.max() >= n_nodes):
        problems.append(f"link ends must index the {n_nodes} nodes")
    for name in (*_POSITIVE, *_NON_NEGATIVE, "power"):
        values = np.asarray(getattr(net, name), float)
        low = 1.0 if name == "power" else 0.0
        bad = ~np.isfinite(values) | (values <= low if name in _POSITIVE else values < low)
        if bad.any():
            problems.append(
                _bad_links(net, name, bad, "> 0" if name in _POSITIVE else f">= {low:g}")
            )
    if not 0 < net.n_zones <= n_nodes:
        problems.append(f"n_zones is {net.n_zones}, expected 1…{n_nodes}")
    return problems


def _bad_links(net: AssignmentNetwork, name: str, bad: NDArray[np.bool_], expected: str) -> str:
    where = np.flatnonzero(bad)
    ids = np.asarray(net.node_ids, dtype=str)
    shown = ", ".join(
        f"link {i + 1} ({ids[net.tail[i]]}-{ids[net.head[i]]}) = {getattr(net, name)[i]:g}"
        for i in where[:5]
    )
    return f"{name} must be finite and {expected}: {where.size} link(s), e.g. {shown}"


def network_from_roads(network: RoadNetwork) -> AssignmentNetwork:
    """The assignment view of a :class:`~citytwin.space.roads.RoadNetwork` (e.g. from TNTP).

    Uses the link columns ``capacity_veh_h``, ``free_flow_time``, ``b``, ``power``, ``length_m``
    and ``toll``; zones are the first ``network.zones`` nodes (all nodes when unknown).
    """
    tail, head = network.edge_index()
    links = network.links

    def column(name: str) -> FloatArray:
        values: FloatArray = links[name].to_numpy(dtype=np.float64)
        return values

    return AssignmentNetwork(
        node_ids=tuple(network.nodes["node_id"].astype(str)),
        tail=tail, head=head, capacity=column("capacity_veh_h"),
        free_flow_time=column("free_flow_time"), b=column("b"), power=column("power"),
        length=column("length_m"), toll=column("toll"),
        n_zones=network.zones or len(network.nodes),
        first_thru_node=network.first_thru_node or 1, source=network.source,
    )  # fmt: skip


def network_from_tntp(path: str | Path) -> AssignmentNetwork:
    """The network of a TNTP ``_net.tntp`` file, or of the one in directory ``path``."""
    return network_from_roads(load_tntp_network(_tntp_file(Path(path), "_net.tntp")))


def load_tntp_case(path: str | Path) -> tuple[AssignmentNetwork, FloatArray]:
    """Network and demand matrix of a TNTP directory (``*_net.tntp`` and ``*_trips.tntp``)."""
    net_file = _tntp_file(Path(path), "_net.tntp")
    trips = net_file.with_name(net_file.name.replace("_net.tntp", "_trips.tntp"))
    return network_from_tntp(net_file), read_tntp_trips(_tntp_file(trips, "_trips.tntp"))


def _tntp_file(path: Path, suffix: str) -> Path:
    if path.is_dir():
        found = sorted(path.glob(f"*{suffix}"))
        if len(found) != 1:
            raise ValidationError(
                f"{path}: expected exactly one *{suffix} file, found {len(found)}"
            )
        return found[0]
    if not path.is_file():
        raise ValidationError(f"{path}: no such TNTP file; expected a *{suffix} file or directory")
    return path


def _doctest_braess() -> AssignmentNetwork:
    """Braess's (1968) paradox network as TNTP's Braess-Example gives it (doctests only)."""
    return AssignmentNetwork(
        node_ids=("1", "2", "3", "4"), tail=np.array([0, 0, 2, 2, 3]),
        head=np.array([2, 3, 1, 3, 1]), capacity=np.ones(5),
        free_flow_time=np.array([1e-8, 50, 50, 10, 1e-8]), b=np.array([1e9, 0.02, 0.02, 0.1, 1e9]),
        power=np.ones(5), length=np.full(5, 100.0), toll=np.zeros(5), n_zones=2,
    )  # fmt: skip


def bpr_time(network: AssignmentNetwork, volume: FloatArray) -> FloatArray:
    """BPR travel time ``t0 (1 + b (x/c)^p)`` (Bureau of Public Roads 1964) per link."""
    ratio = volume / network.capacity
    return network.free_flow_time * (1.0 + network.b * ratio**network.power)


def beckmann_objective(network: AssignmentNetwork, volume: FloatArray) -> float:
    """``Σ ∫_0^x t(w) dw`` of BPR travel time (the value TNTP's best-known solutions quote).

    >>> net = _doctest_braess()
    >>> round(beckmann_objective(net, np.full(5, 2.0)), 6)  # 2 × (20 + 102) + 22
    266.0
    """
    ratio = volume / network.capacity
    extra = network.b * network.capacity * ratio ** (network.power + 1) / (network.power + 1)
    return float(np.sum(network.free_flow_time * (volume + extra)))


@dataclass(frozen=True)
class AssignmentResult:
    """Equilibrium link volumes and the figures that judge them.

    ``time`` is BPR travel time, ``cost`` generalised cost (time plus weighted toll and length);
    ``objective`` is the Beckmann integral of *time* and ``tstt`` = ``Σ volume · time``.
    """

    network: AssignmentNetwork
    volume: FloatArray
    time: FloatArray
    cost: FloatArray
    iterations: int
    relative_gap: float
    objective: float
    tstt: float
    converged: bool
    algorithm: str
    gap_history: list[float] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        """One row per link: ``from, to, volume, cost, time`` (the TNTP ``_flow.tntp`` columns)."""
        tail, head = self.network.link_labels()
        return pd.DataFrame(
            {"from": tail, "to": head, "volume": self.volume, "cost": self.cost, "time": self.time}
        )


def assign(
    network: AssignmentNetwork,
    demand: FloatArray,
    *,
    gap: float = 1e-5,
    max_iterations: int = 2000,
    algorithm: str = "bfw",
    toll_factor: float = 0.0,
    distance_factor: float = 0.0,
    on_progress: Callable[[int, float], None] | None = None,
) -> AssignmentResult:
    """User-equilibrium link volumes for ``demand`` (zones × zones, row = origin).

    Iterates until the relative gap ``(TSTT − SPTT)/TSTT`` on generalised cost is at most
    ``gap`` or ``max_iterations`` is reached (logged as a warning, ``converged`` False).
    ``algorithm`` is ``"bfw"`` (bi-conjugate Frank-Wolfe, default), ``"cfw"`` (conjugate) or
    ``"fw"`` (plain Frank-Wolfe, LeBlanc et al. 1975). ``on_progress(iteration, gap)`` is called
    after every iteration.

    Raises
    ------
    ValidationError
        Demand of the wrong shape, negative or not finite, or an OD pair with demand but no path.

    >>> net = _doctest_braess()
    >>> result = assign(net, np.array([[0.0, 6.0], [0.0, 0.0]]), gap=1e-9)
    >>> result.volume.round(4).tolist(), round(result.tstt, 3)  # Braess: 3 paths of cost 92
    ([4.0, 2.0, 2.0, 2.0, 4.0], 552.0)
    """
    if algorithm not in ALGORITHMS:
        raise UnknownBackendError("assignment algorithm", algorithm, list(ALGORITHMS))
    pairs = ODPairs.from_matrix(_validate_demand(network, demand))
    fixed = toll_factor * network.toll + distance_factor * network.length
    model = CostModel(network.free_flow_time, network.capacity, network.b, network.power, fixed)
    graph = build_routing_graph(
        network.tail, network.head, n_nodes=len(network.node_ids), n_zones=network.n_zones,
        first_thru_node=network.first_thru_node,
    )  # fmt: skip
    solution = solve_equilibrium(
        graph, pairs, model, gap=gap, max_iterations=max_iterations, algorithm=algorithm,
        on_progress=on_progress,
    )  # fmt: skip
    if solution.relative_gap > gap:
        logger.warning("assignment stopped at gap %.3g > %.3g", solution.relative_gap, gap)
    time = bpr_time(network, solution.volume)
    return AssignmentResult(
        network, solution.volume, time, time + fixed, solution.iterations,
        solution.relative_gap, beckmann_objective(network, solution.volume),
        float(solution.volume @ time), solution.relative_gap <= gap, algorithm,
        solution.history,
    )  # fmt: skip


def _validate_demand(network: AssignmentNetwork, demand: FloatArray) -> FloatArray:
    matrix = np.asarray(demand.toarray() if hasattr(demand, "toarray") else demand, float)
    zones = network.n_zones
    if matrix.shape != (zones, zones):
        raise ValidationError(f"demand has shape {matrix.shape}, expected ({zones}, {zones})")
    bad = np.argwhere(~np.isfinite(matrix) | (matrix < 0))
    if len(bad):
        i, j = bad[0]
        raise ValidationError(
            f"demand: {len(bad)} cell(s) negative or not finite, e.g. zones {i + 1}->{j + 1} = "
            f"{matrix[i, j]}; expected finite trips >= 0"
        )
    return matrix
