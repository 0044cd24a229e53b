"""The traffic-assignment scenario model: a TNTP network, its changes, user equilibrium.

A scenario's ``base`` is ``{network: <TNTP folder or *_net.tntp>}`` (the ``*_trips.tntp`` next to
it is the demand); ``changes`` are applied in order with :mod:`.assignment_whatif`::

    changes:
      - close: [[10, 16], [16, 10]]                 # links (from, to) removed
      - capacity: {links: [[1, 2]], factor: 0.5}    # a lane closed
      - add_link: {from: 1, to: 5, capacity: 4000, free_flow_time: 3}
      - demand: {factor: 1.1, origins: [1, 2]}      # 10 % more trips from zones 1 and 2

``parameters`` are those of :func:`.assignment.assign` (``gap``, ``max_iterations``,
``algorithm``, ``toll_factor``, ``distance_factor``). The result is the TNTP flow table; the
comparison gives per-link volume and time deltas and the change in total system travel time.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from numpy.typing import NDArray
from pydantic import BeforeValidator, Field

from citytwin.analysis.render import new_figure, save_figure
from citytwin.errors import ValidationError
from citytwin.simulate import assignment_whatif as whatif
from citytwin.simulate.assignment import AssignmentNetwork, assign, load_tntp_case
from citytwin.simulate.scenario import (
    OneChange,
    Progress,
    Scenario,
    ScenarioComparison,
    ScenarioResult,
    SpecPart,
    Summary,
    parse_part,
)
from citytwin.space.io.tntp import read_tntp_network

logger = logging.getLogger(__name__)

NodeId = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) else v)]
LinkPair = tuple[NodeId, NodeId]
FloatArray = NDArray[np.float64]
#: Links whose volume changes by less than this (vehicles) count as unchanged.
VOLUME_TOLERANCE = 1e-6
_FLOAT_FORMAT = "%.17g"  # round-trips every float64 exactly, so files hash the same on rerun


class AssignmentBase(SpecPart):
    network: str = Field(description="TNTP folder (one *_net.tntp and *_trips.tntp) or _net file")


class CapacityChange(SpecPart):
    links: list[LinkPair] = Field(min_length=1)
    factor: float = Field(gt=0, allow_inf_nan=False)


class NewLink(SpecPart):
    from_node: NodeId = Field(alias="from")
    to_node: NodeId = Field(alias="to")
    capacity: float = Field(gt=0, allow_inf_nan=False)
    free_flow_time: float = Field(ge=0, allow_inf_nan=False)
    b: float = Field(0.15, ge=0)
    power: float = Field(4.0, ge=0)
    length: float = Field(0.0, ge=0)
    toll: float = Field(0.0, ge=0)


class DemandChange(SpecPart):
    factor: float = Field(ge=0, allow_inf_nan=False)
    origins: list[Annotated[int, Field(ge=1)]] | None = None


class AssignmentChange(OneChange):
    """Exactly one of ``close``, ``capacity``, ``add_link``, ``demand``."""

    close: list[LinkPair] | None = Field(None, min_length=1)
    capacity: CapacityChange | None = None
    add_link: NewLink | None = None
    demand: DemandChange | None = None


class AssignmentParameters(SpecPart):
    gap: float = Field(1e-5, gt=0, lt=1)
    max_iterations: int = Field(2000, ge=1, le=100_000)
    algorithm: Literal["bfw", "cfw", "fw"] = "bfw"
    toll_factor: float = Field(0.0, allow_inf_nan=False)
    distance_factor: float = Field(0.0, allow_inf_nan=False)


class AssignmentAdapter:
    """Scenario adapter of :func:`.assignment.assign` (see the module docstring)."""

    name = "assignment"
    result_files = ("links.csv",)
    path_keys = ("network",)

    def check(self, scenario: Scenario) -> list[str]:
        problems: list[str] = []
        parse_part(AssignmentBase, scenario.base, "base", problems)
        for i, change in enumerate(scenario.changes):
            parse_part(AssignmentChange, change, f"changes[{i}]", problems)
        parse_part(AssignmentParameters, scenario.parameters, "parameters", problems)
        return problems

    def inputs(self, scenario: Scenario) -> list[Path]:
        net = network_file(AssignmentBase.model_validate(scenario.base).network)
        return [net, net.with_name(net.name.replace("_net.tntp", "_trips.tntp"))]

    def run(self, scenario: Scenario, *, on_progress: Progress | None = None) -> ScenarioResult:
        base = AssignmentBase.model_validate(scenario.base)
        parameters = AssignmentParameters.model_validate(scenario.parameters)
        network, demand = load_tntp_case(network_file(base.network))
        changes = [AssignmentChange.model_validate(c) for c in scenario.changes]
        network, demand = apply_changes(network, demand, changes)
        result = assign(network, demand, **parameters.model_dump(), on_progress=on_progress)
        summary: Summary = {
            "iterations": result.iterations, "relative_gap": result.relative_gap,
            "objective": result.objective, "tstt": result.tstt, "converged": result.converged,
            "algorithm": result.algorithm, "links": network.n_links,
        }  # fmt: skip
        return ScenarioResult(self.name, summary, result.to_frame())

    def save(self, result: ScenarioResult, folder: Path) -> list[Path]:
        path = folder / "links.csv"
        result.table[["from", "to", "volume", "cost", "time"]].to_csv(
            path, index=False, float_format=_FLOAT_FORMAT, lineterminator="\n"
        )
        return [path]

    def load(self, folder: Path, summary: dict[str, Any]) -> ScenarioResult:
        table = pd.read_csv(folder / "links.csv", dtype={"from": str, "to": str})
        return ScenarioResult(self.name, dict(summary), table)

    def compare(self, variant: ScenarioResult, base: ScenarioResult) -> ScenarioComparison:
        return compare_links(variant, base)

    def picture(
        self, comparison: ScenarioComparison, scenario: Scenario, path: Path
    ) -> Path | None:
        net = network_file(AssignmentBase.model_validate(scenario.base).network)
        nodes = read_tntp_network(net)[0]
        if nodes.geometry.is_empty.any() or nodes.geometry.isna().any():
            logger.info("%s has no node coordinates: no difference map", net)
            return None
        xy = dict(zip(nodes["node_id"], zip(nodes.geometry.x, nodes.geometry.y, strict=True),
                      strict=True))  # fmt: skip
        return draw_link_changes(comparison, xy, path, title=f"{scenario.name}: volume change")


def network_file(network: str) -> Path:
    """The ``*_net.tntp`` file of a TNTP folder (exactly one) or the file itself."""
    path = Path(network)
    found = sorted(path.glob("*_net.tntp")) if path.is_dir() else [path]
    if len(found) != 1 or not found[0].is_file():
        raise ValidationError(
            f"base.network {network}: expected a *_net.tntp file or a folder with exactly one "
            f"(found {len(found) if path.is_dir() else 0})"
        )
    return found[0]


def apply_changes(
    network: AssignmentNetwork, demand: FloatArray, changes: list[AssignmentChange]
) -> tuple[AssignmentNetwork, FloatArray]:
    """``network`` and ``demand`` with ``changes`` applied in order; an error names its change."""
    for i, change in enumerate(changes):
        try:
            if change.close is not None:
                network = whatif.close_links(network, change.close)
            elif change.capacity is not None:
                pairs, factor = change.capacity.links, change.capacity.factor
                network = whatif.with_capacity(network, pairs, factor=factor)
            elif change.add_link is not None:
                new = change.add_link.model_dump()
                network = whatif.add_link(network, new.pop("from_node"), new.pop("to_node"), **new)
            elif change.demand is not None:
                origins, factor = change.demand.origins, change.demand.factor
                demand = whatif.scale_demand(demand, factor=factor, origins=origins)
        except ValidationError as exc:
            kind = next(k for k, v in change.model_dump().items() if v is not None)
            raise ValidationError(f"changes[{i}].{kind}: {exc}") from None
    return network, demand


def compare_links(variant: ScenarioResult, base: ScenarioResult) -> ScenarioComparison:
    """Per-link volume and time change ``variant − base`` (links matched by ``(from, to)``).

    A closed link has variant volume 0 and time NaN, an added one base volume 0; the summary
    holds TSTT (``Σ volume · time``) of both, its change, and the links most changed.
    """
    keys = ["from", "to", "parallel"]
    table = pd.merge(
        _keyed(base), _keyed(variant), on=keys, how="outer", suffixes=("_base", "_variant"),
        sort=False,
    ).drop(columns="parallel")  # fmt: skip
    closed, added = table["volume_variant"].isna(), table["volume_base"].isna()
    for name in ("volume_base", "volume_variant"):
        table[name] = table[name].fillna(0.0)
    table["volume_change"] = table["volume_variant"] - table["volume_base"]
    table["time_change"] = table["time_variant"] - table["time_base"]
    tstt_base, tstt_variant = _tstt(base.table), _tstt(variant.table)
    change = table["volume_change"].to_numpy()
    summary: Summary = {
        "tstt_base": tstt_base, "tstt_variant": tstt_variant,
        "tstt_change": tstt_variant - tstt_base,
        "tstt_change_percent": 100.0 * (tstt_variant - tstt_base) / tstt_base,
        "links_closed": int(closed.sum()), "links_added": int(added.sum()),
        "links_changed": int((np.abs(change) > VOLUME_TOLERANCE).sum()),
        "largest_increase": _link_at(table, int(np.argmax(change))),
        "largest_decrease": _link_at(table, int(np.argmin(change))),
    }  # fmt: skip
    return ScenarioComparison("assignment", table, summary, {"closed": closed.to_numpy()})


def _keyed(result: ScenarioResult) -> pd.DataFrame:
    frame = result.table[["from", "to", "volume", "time"]].astype({"from": str, "to": str})
    return frame.assign(parallel=frame.groupby(["from", "to"]).cumcount())


def _tstt(table: pd.DataFrame) -> float:
    return float(table["volume"].to_numpy() @ table["time"].to_numpy())


def _link_at(table: pd.DataFrame, row: int) -> str:
    change = table["volume_change"].iloc[row]
    return f"{table['from'].iloc[row]}-{table['to'].iloc[row]} ({change:+.1f})"


def draw_link_changes(
    comparison: ScenarioComparison,
    xy: dict[str, tuple[float, float]],
    path: Path,
    *,
    title: str,
) -> Path:
    """Links drawn between their nodes, red for more volume and blue for less; closed dashed.

    The two directions of a road are offset to their right so both stay visible.
    """
    table = comparison.table
    start = np.array([xy[str(n)] for n in table["from"]])
    end = np.array([xy[str(n)] for n in table["to"]])
    extent = float(np.ptp(np.vstack([start, end]), axis=0).max()) or 1.0
    direction = end - start
    norm = np.hypot(direction[:, 0], direction[:, 1])[:, None]
    right = np.column_stack([direction[:, 1], -direction[:, 0]]) / np.where(norm > 0, norm, 1.0)
    offset = right * 0.006 * extent
    segments = np.stack([start + offset, end + offset], axis=1)
    change = table["volume_change"].to_numpy()
    closed = comparison.extra.get("closed", np.zeros(len(table), bool))
    # the scale follows the open links: a closure's own loss would wash out every other change
    limit = float(np.abs(change[~closed]).max(initial=0.0)) or 1.0
    figure, axes = new_figure(title)
    lines = LineCollection(
        list(segments), cmap="RdBu_r", norm=Normalize(-limit, limit),
        linewidths=np.where(closed, 1.0, 2.5),
        linestyles=[(0, (2, 2)) if c else "solid" for c in closed],
    )  # fmt: skip
    lines.set_array(change)
    axes.add_collection(lines)
    axes.autoscale()
    axes.set_aspect("equal")
    figure.colorbar(lines, ax=axes, shrink=0.8).set_label("volume change (veh/h), closed dashed")
    return save_figure(figure, path)
