"""User-equilibrium assignment against TNTP's best-known solutions and Braess's closed form."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from citytwin.errors import FeedError, UnknownBackendError, ValidationError
from citytwin.simulate.assignment import (
    AssignmentNetwork,
    assign,
    beckmann_objective,
    bpr_time,
    load_tntp_case,
    network_from_tntp,
)
from citytwin.simulate.assignment_whatif import (
    add_link,
    close_links,
    compare,
    scale_demand,
    with_capacity,
)
from citytwin.space.io.tntp import read_tntp_flows, read_tntp_trips

# Objective of the best-known flows as PROVENANCE.md / the SiouxFalls README quote them.
BEST_KNOWN = {"SiouxFalls": 4_231_335.287, "Anaheim": 1_286_032.171}
BRAESS_DEMAND = np.array([[0.0, 6.0], [0.0, 0.0]])


@pytest.fixture(scope="module")
def tntp(shared_data: Path) -> Path:
    return shared_data / "tntp"


@pytest.fixture(scope="module")
def braess(tntp: Path) -> AssignmentNetwork:
    return network_from_tntp(tntp / "Braess-Example")


@pytest.fixture(scope="module")
def sioux_falls(tntp: Path) -> tuple[AssignmentNetwork, np.ndarray]:
    return load_tntp_case(tntp / "SiouxFalls")


@pytest.mark.parametrize("name", ["SiouxFalls", "Anaheim"])
def test_equilibrium_matches_best_known_objective(tntp: Path, name: str) -> None:
    network, demand = load_tntp_case(tntp / name)
    best = read_tntp_flows(tntp / name / f"{name}_flow.tntp")
    tail, head = network.link_labels()
    assert (best["from"].astype(str).to_numpy() == tail).all()
    assert (best["to"].astype(str).to_numpy() == head).all()
    best_volume = best["volume"].to_numpy()
    best_objective = beckmann_objective(network, best_volume)
    # pins the convention: Beckmann integral of BPR time, in the file's units
    assert best_objective == pytest.approx(BEST_KNOWN[name], rel=1e-9)
    # the file's cost column is BPR time at the best-known volumes
    np.testing.assert_allclose(bpr_time(network, best_volume), best["cost"], rtol=1e-9)

    result = assign(network, demand, gap=1e-5)
    assert result.converged
    assert result.relative_gap <= 1e-5
    assert result.objective == pytest.approx(best_objective, rel=1e-5)
    assert result.objective >= best_objective * (1 - 1e-9)  # the best-known is the optimum
    # link volumes are unique at equilibrium: close to the best-known ones overall
    error = np.abs(result.volume - best_volume).sum() / best_volume.sum()
    assert error < 1e-2
    assert result.tstt == pytest.approx(float(best_volume @ best["cost"]), rel=1e-3)


def test_trips_reader_totals(tntp: Path) -> None:
    sioux = read_tntp_trips(tntp / "SiouxFalls" / "SiouxFalls_trips.tntp")
    anaheim = read_tntp_trips(tntp / "Anaheim" / "Anaheim_trips.tntp")
    assert sioux.shape == (24, 24)
    assert sioux.sum() == pytest.approx(360_600.0)  # <TOTAL OD FLOW> and README
    assert sioux[0, 1] == 100.0
    assert sioux[0, 9] == 1300.0  # "Origin 1 ... 10 : 1300.0;"
    assert anaheim.shape == (38, 38)
    assert anaheim.sum() == pytest.approx(104_694.40)
    assert anaheim[0, 1] == 1365.90


def test_trips_reader_names_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad_trips.tntp"
    path.write_text("<NUMBER OF ZONES> 2\n<END OF METADATA>\nOrigin 1\n  3 : 5.0;\n")
    with pytest.raises(FeedError, match=r"bad_trips.tntp:4: destination 3 outside 1…2"):
        read_tntp_trips(path)


def test_braess_equilibrium_and_paradox(braess: AssignmentNetwork) -> None:
    # Braess (1968): link costs 10x, 50+x, 10+x; 6 trips use 3 routes of 2 each, cost 92
    result = assign(braess, BRAESS_DEMAND, gap=1e-10)
    np.testing.assert_allclose(result.volume, [4, 2, 2, 2, 4], atol=1e-4)
    assert result.tstt == pytest.approx(6 * 92, rel=1e-6)
    # without the middle link each route carries 3 at cost 10*3 + 50 + 3 = 83: everyone gains
    without = assign(close_links(braess, [("3", "4")]), BRAESS_DEMAND, gap=1e-10)
    assert without.tstt == pytest.approx(6 * 83, rel=1e-6)
    delta = compare(result, without)
    closed = delta[(delta["from"] == "3") & (delta["to"] == "4")]
    assert closed["volume_variant"].item() == 0.0
    assert closed["volume_change"].item() == pytest.approx(-2.0, abs=1e-4)
    assert delta.attrs["tstt_change"] == pytest.approx(6 * 83 - 6 * 92, rel=1e-6)
    # adding the link back restores the paradox
    restored = add_link(
        close_links(braess, [(3, 4)]), 3, 4, capacity=1.0, free_flow_time=10.0, b=0.1, power=1.0
    )
    assert assign(restored, BRAESS_DEMAND, gap=1e-10).tstt == pytest.approx(6 * 92, rel=1e-6)


def test_distance_factor_enters_generalised_cost(braess: AssignmentNetwork) -> None:
    # every link is 100 long: the 3-link route costs 100 more, at 83 + 200 < 30 + 10 + 30 + 300
    # the middle link is no longer used and the routes split 3/3
    result = assign(braess, BRAESS_DEMAND, gap=1e-10, distance_factor=1.0)
    np.testing.assert_allclose(result.volume, [3, 3, 3, 0, 3], atol=1e-4)
    np.testing.assert_allclose(result.cost - result.time, braess.length)
    assert result.tstt == pytest.approx(6 * 83, rel=1e-6)  # tstt stays BPR time


def test_toll_factor_shifts_flow(braess: AssignmentNetwork) -> None:
    tolled = AssignmentNetwork(**{**braess.__dict__, "toll": np.array([0, 0, 0, 50.0, 0])})
    free = assign(tolled, BRAESS_DEMAND, gap=1e-10)
    priced = assign(tolled, BRAESS_DEMAND, gap=1e-10, toll_factor=1.0)
    np.testing.assert_allclose(free.volume, [4, 2, 2, 2, 4], atol=1e-4)  # factor 0: ignored
    np.testing.assert_allclose(priced.volume, [3, 3, 3, 0, 3], atol=1e-4)
    np.testing.assert_allclose(priced.cost - priced.time, [0, 0, 0, 50, 0])


def test_closing_a_used_link_raises_total_travel_time(
    sioux_falls: tuple[AssignmentNetwork, np.ndarray],
) -> None:
    network, demand = sioux_falls
    base = assign(network, demand, gap=1e-5)
    tail, head = network.link_labels()
    busiest = int(np.argmax(base.volume))
    pair = (tail[busiest], head[busiest])
    variant = assign(close_links(network, [pair]), demand, gap=1e-5)
    delta = compare(base, variant)
    assert delta.attrs["tstt_change"] > 0
    assert len(delta) == network.n_links
    row = delta[(delta["from"] == pair[0]) & (delta["to"] == pair[1])]
    assert row["volume_variant"].item() == 0.0
    assert row["volume_base"].item() == pytest.approx(base.volume[busiest])
    # more capacity on the same link lowers its travel time and the system's
    wider = assign(with_capacity(network, [pair], factor=2.0), demand, gap=1e-5)
    assert wider.tstt < base.tstt
    # a uniform demand increase raises TSTT more than proportionally (congestion)
    heavier = assign(network, scale_demand(demand, factor=1.1), gap=1e-5)
    assert heavier.tstt > 1.1 * base.tstt


def test_disconnecting_closure_names_the_pair(braess: AssignmentNetwork) -> None:
    cut = close_links(braess, [("1", "3"), ("1", "4")])
    with pytest.raises(ValidationError, match=r"no path.*zones 1->2 \(6\)"):
        assign(cut, BRAESS_DEMAND)
    with pytest.raises(ValidationError, match="no link 2-1"):
        close_links(braess, [("2", "1")])


def test_invalid_links_and_demand_are_named(braess: AssignmentNetwork) -> None:
    fields = braess.__dict__
    capacity = np.array([1.0, -5.0, 1.0, 0.0, 1.0])
    with pytest.raises(ValidationError, match=r"capacity.*2 link\(s\).*link 2 \(1-4\) = -5"):
        AssignmentNetwork(**{**fields, "capacity": capacity})
    with pytest.raises(ValidationError, match=r"free_flow_time.*link 5 \(4-2\)"):
        AssignmentNetwork(**{**fields, "free_flow_time": np.array([1.0, 1, 1, 1, -1])})
    with pytest.raises(ValidationError, match=r"demand has shape \(3, 3\), expected \(2, 2\)"):
        assign(braess, np.zeros((3, 3)))
    with pytest.raises(ValidationError, match=r"zones 2->1 = -1"):
        assign(braess, np.array([[0.0, 6.0], [-1.0, 0.0]]))
    with pytest.raises(UnknownBackendError, match="bfw, cfw, fw"):
        assign(braess, BRAESS_DEMAND, algorithm="tapas")


def test_first_thru_node_is_not_passed_through(tmp_path: Path, tntp: Path) -> None:
    # Braess with FIRST THRU NODE 4: node 3 may not be passed through, so only 1-4-2 is left
    text = (tntp / "Braess-Example" / "Braess_net.tntp").read_text()
    (tmp_path / "Braess_net.tntp").write_text(
        text.replace("<FIRST THRU NODE> 1", "<FIRST THRU NODE> 4")
    )
    network = network_from_tntp(tmp_path / "Braess_net.tntp")
    assert network.first_thru_node == 4
    result = assign(network, BRAESS_DEMAND, gap=1e-10)
    np.testing.assert_allclose(result.volume, [0, 6, 0, 0, 6], atol=1e-9)
    assert result.tstt == pytest.approx(6 * (50 + 6 + 10 * 6), rel=1e-6)


def test_algorithms_agree_and_report_progress(
    sioux_falls: tuple[AssignmentNetwork, np.ndarray],
) -> None:
    network, demand = sioux_falls
    seen: list[tuple[int, float]] = []
    bfw = assign(network, demand, gap=1e-4, on_progress=lambda i, g: seen.append((i, g)))
    cfw = assign(network, demand, gap=1e-4, algorithm="cfw")
    assert [i for i, _ in seen] == list(range(1, bfw.iterations + 1))
    assert seen[-1][1] == bfw.relative_gap == bfw.gap_history[-1]
    assert cfw.objective == pytest.approx(BEST_KNOWN["SiouxFalls"], rel=1e-4)
    stopped = assign(network, demand, gap=1e-9, algorithm="fw", max_iterations=20)
    assert not stopped.converged
    assert stopped.iterations == 20
    assert stopped.relative_gap > bfw.relative_gap


def test_flow_frame_for_the_cli(braess: AssignmentNetwork) -> None:
    frame = assign(braess, BRAESS_DEMAND, gap=1e-10).to_frame()
    assert list(frame.columns) == ["from", "to", "volume", "cost", "time"]
    assert frame[["from", "to"]].to_numpy().tolist() == [
        ["1", "3"], ["1", "4"], ["3", "2"], ["3", "4"], ["4", "2"],
    ]  # fmt: skip
    assert frame["cost"].iloc[0] == pytest.approx(40.0, rel=1e-6)  # 10 · 4 trips
