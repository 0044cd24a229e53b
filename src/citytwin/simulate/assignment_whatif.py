"""What-ifs on an assignment: close links, change capacity, add a link, change demand, compare.

Every edit returns a new :class:`~citytwin.simulate.assignment.AssignmentNetwork` (or demand
matrix) and leaves its input untouched, so a base and any number of variants can be assigned and
compared link by link. Links are named by their ``(from, to)`` node ids, as TNTP and the CLI do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from citytwin.errors import ValidationError
from citytwin.simulate.assignment import AssignmentNetwork, AssignmentResult

FloatArray = NDArray[np.float64]
LinkPair = tuple[str | int, str | int]
_LINK_ARRAYS = ("tail", "head", "capacity", "free_flow_time", "b", "power", "length", "toll")


def close_links(network: AssignmentNetwork, pairs: Iterable[LinkPair]) -> AssignmentNetwork:
    """The network without the links ``(from, to)`` (a closure: road works, a lost bridge).

    >>> from citytwin.simulate.assignment import _doctest_braess
    >>> close_links(_doctest_braess(), [("3", "4")]).n_links
    4
    """
    keep = np.ones(network.n_links, bool)
    keep[network.find_links(list(pairs))] = False
    return _with_links(network, {name: getattr(network, name)[keep] for name in _LINK_ARRAYS})


def with_capacity(
    network: AssignmentNetwork, pairs: Iterable[LinkPair], *, factor: float
) -> AssignmentNetwork:
    """The network with the capacity of links ``(from, to)`` multiplied by ``factor`` (> 0).

    A lane closure on a two-lane road is ``factor=0.5``; use :func:`close_links` for zero.

    >>> from citytwin.simulate.assignment import _doctest_braess
    >>> with_capacity(_doctest_braess(), [(1, 4)], factor=2.0).capacity.tolist()
    [1.0, 2.0, 1.0, 1.0, 1.0]
    """
    if not np.isfinite(factor) or factor <= 0:
        raise ValidationError(f"capacity factor is {factor}; expected > 0 (close_links for 0)")
    capacity = network.capacity.copy()
    capacity[network.find_links(list(pairs))] *= factor
    return replace(network, capacity=capacity)


def add_link(
    network: AssignmentNetwork,
    from_node: str | int,
    to_node: str | int,
    *,
    capacity: float,
    free_flow_time: float,
    b: float = 0.15,
    power: float = 4.0,
    length: float = 0.0,
    toll: float = 0.0,
) -> AssignmentNetwork:
    """The network with one more directed link between existing nodes (BPR defaults 0.15, 4).

    >>> from citytwin.simulate.assignment import _doctest_braess
    >>> add_link(_doctest_braess(), 1, 2, capacity=1.0, free_flow_time=100.0).n_links
    6
    """
    index = {node: i for i, node in enumerate(network.node_ids)}
    missing = [str(n) for n in (from_node, to_node) if str(n) not in index]
    if missing:
        raise ValidationError(
            f"add_link: node(s) {', '.join(missing)} not in {network.source}; expected existing "
            "node ids"
        )
    new = {
        "tail": index[str(from_node)], "head": index[str(to_node)], "capacity": capacity,
        "free_flow_time": free_flow_time, "b": b, "power": power, "length": length, "toll": toll,
    }  # fmt: skip
    arrays = {
        name: np.append(
            getattr(network, name), np.asarray(new[name]).astype(getattr(network, name).dtype)
        )
        for name in _LINK_ARRAYS
    }
    return _with_links(network, arrays)


def _with_links(network: AssignmentNetwork, arrays: dict[str, NDArray[Any]]) -> AssignmentNetwork:
    """``network`` with new link arrays (validated again by the constructor)."""
    return replace(
        network, tail=arrays["tail"], head=arrays["head"], capacity=arrays["capacity"],
        free_flow_time=arrays["free_flow_time"], b=arrays["b"], power=arrays["power"],
        length=arrays["length"], toll=arrays["toll"],
    )  # fmt: skip


def scale_demand(
    demand: FloatArray, *, factor: float, origins: Iterable[int] | None = None
) -> FloatArray:
    """Demand with every trip (or only trips from ``origins``, 1-based zones) times ``factor``.

    >>> scale_demand(np.array([[0.0, 6.0], [2.0, 0.0]]), factor=1.5, origins=[1]).tolist()
    [[0.0, 9.0], [2.0, 0.0]]
    """
    if not np.isfinite(factor) or factor < 0:
        raise ValidationError(f"demand factor is {factor}; expected a finite value >= 0")
    scaled = np.array(demand, dtype=float)
    rows = np.arange(len(scaled)) if origins is None else np.asarray(list(origins), int) - 1
    if rows.size and (rows.min() < 0 or rows.max() >= len(scaled)):
        raise ValidationError(f"origins {list(rows + 1)}: expected zones 1…{len(scaled)}")
    scaled[rows] *= factor
    return scaled


def compare(base: AssignmentResult, variant: AssignmentResult) -> pd.DataFrame:
    """Per-link change from ``base`` to ``variant``: volume, travel time and their deltas.

    Links are matched by ``(from, to)``; a closed link has variant volume 0 and time NaN, an added
    one base volume 0. ``frame.attrs`` holds ``tstt_base``, ``tstt_variant`` and ``tstt_change``
    (total system travel time, ``Σ volume · time``).
    """
    keys = ["from", "to", "parallel"]
    merged = pd.merge(
        _keyed(base), _keyed(variant), on=keys, how="outer", suffixes=("_base", "_variant"),
        sort=False,
    ).drop(columns="parallel")  # fmt: skip
    for name in ("volume_base", "volume_variant"):
        merged[name] = merged[name].fillna(0.0)
    merged["volume_change"] = merged["volume_variant"] - merged["volume_base"]
    merged["time_change"] = merged["time_variant"] - merged["time_base"]
    merged.attrs.update(
        tstt_base=base.tstt, tstt_variant=variant.tstt, tstt_change=variant.tstt - base.tstt
    )
    return merged


def _keyed(result: AssignmentResult) -> pd.DataFrame:
    """Link rows keyed by ``(from, to, n-th parallel link)`` so parallel links match one to one."""
    frame = result.to_frame()[["from", "to", "volume", "time"]]
    return frame.assign(parallel=frame.groupby(["from", "to"]).cumcount())
