"""Benchmark: citytwin user-equilibrium assignment vs AequilibraE on the same TNTP networks.

Both solve SiouxFalls and Anaheim (../shared/data/tntp) to the same relative gap with
bi-conjugate Frank-Wolfe, in the same run; the table shows wall time (best of ``--repeat``),
iterations, achieved gap, Beckmann objective (computed by the same citytwin function from each
tool's link volumes), its relative error against TNTP's best-known flows, and the time ratio.
AequilibraE is a bench-only dependency (``pip install aequilibrae``); it is not imported by
citytwin. Run: ``.venv/bin/python bench/assignment.py [--gap 1e-5] [--repeat 3]``.
"""

from __future__ import annotations

import os

# AequilibraE's Cython kernels use OpenMP; on a shared machine its default busy-waiting made it
# ~7x slower (measured: SiouxFalls 10 s vs 1.5 s). Passive waiting is its best case.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import logging
import time
from functools import partial
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

from _timing import best_of
from citytwin.simulate.assignment import (
    AssignmentNetwork,
    assign,
    beckmann_objective,
    load_tntp_case,
)
from citytwin.space.io.tntp import read_tntp_flows

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tntp"
NETWORKS = ("SiouxFalls", "Anaheim")


def aequilibrae_assignment(
    network: AssignmentNetwork, demand: np.ndarray, *, gap: float, algorithm: str
) -> tuple[float, np.ndarray, int, float]:
    """Build graph and matrix in memory (no project), then time only AequilibraE's ``execute``.

    Graph and matrix preparation are left out of the time (conservative for citytwin, whose time
    includes building its routing graph).
    """
    from aequilibrae.matrix import AequilibraeMatrix
    from aequilibrae.paths import (
        Graph,
        TrafficAssignment,
        TrafficClass,
    )

    zones = network.n_zones
    frame = pd.DataFrame(
        {
            "link_id": np.arange(1, network.n_links + 1),
            "a_node": network.tail + 1,
            "b_node": network.head + 1,
            "direction": np.ones(network.n_links, np.int8),
            "free_flow_time": network.free_flow_time,
            "capacity": network.capacity,
            "b": network.b,
            "power": network.power,
        }
    )
    graph = Graph()
    graph.network = frame
    graph.prepare_graph(np.arange(1, zones + 1, dtype=np.int64))
    graph.set_graph("free_flow_time")
    # TNTP: zones below the first thru node may not be passed through
    graph.set_blocked_centroid_flows(network.first_thru_node > 1)

    matrix = AequilibraeMatrix()
    matrix.create_empty(zones=zones, matrix_names=["demand"], memory_only=True)
    matrix.index[:] = np.arange(1, zones + 1)
    matrix.matrix["demand"][:, :] = demand
    matrix.computational_view(["demand"])

    assignment = TrafficAssignment()
    assignment.set_classes([TrafficClass("car", graph, matrix)])
    assignment.set_vdf("BPR")
    assignment.set_vdf_parameters({"alpha": "b", "beta": "power"})
    assignment.set_capacity_field("capacity")
    assignment.set_time_field("free_flow_time")
    assignment.set_algorithm(algorithm)
    assignment.max_iter = 5000
    assignment.rgap_target = gap
    start = time.perf_counter()
    assignment.execute()
    seconds = time.perf_counter() - start
    flows = assignment.results().sort_index()
    volume = flows["PCE_tot"].to_numpy(float)
    report = assignment.report()
    return seconds, volume, int(report["iteration"].max()), float(assignment.assignment.rgap)


def run(gap: float, repeat: int) -> pd.DataFrame:
    rows = []
    for name in NETWORKS:
        network, demand = load_tntp_case(DATA / name)
        best = read_tntp_flows(DATA / name / f"{name}_flow.tntp")["volume"].to_numpy()
        best_objective = beckmann_objective(network, best)
        ours_time, ours = best_of(repeat, partial(assign, network, demand, gap=gap))
        runs = [
            aequilibrae_assignment(network, demand, gap=gap, algorithm="bfw") for _ in range(repeat)
        ]
        theirs_time = min(r[0] for r in runs)
        _, volume, iterations, achieved = runs[-1]
        theirs_objective = beckmann_objective(network, volume)
        for tool, seconds, its, reached, objective in (
            ("citytwin bfw", ours_time, ours.iterations, ours.relative_gap, ours.objective),
            ("aequilibrae bfw", theirs_time, iterations, achieved, theirs_objective),
        ):
            rows.append(
                {
                    "network": name,
                    "tool": tool,
                    "seconds": seconds,
                    "iterations": its,
                    "gap": reached,
                    "objective": objective,
                    "objective_error": (objective - best_objective) / best_objective,
                    "speedup_vs_aequilibrae": theirs_time / seconds,
                }
            )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gap", type=float, default=1e-5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ["AEQ_SHOW_PROGRESS"] = "FALSE"  # its progress bars would cost AequilibraE time
    import aequilibrae  # noqa: F401  (configures its logger on import; quieten it after)

    logging.getLogger("aequilibrae").setLevel(logging.ERROR)
    print(f"relative gap target {args.gap:g}; aequilibrae {version('aequilibrae')}")
    table = run(args.gap, args.repeat)
    with pd.option_context("display.width", 200, "display.float_format", "{:.6g}".format):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
