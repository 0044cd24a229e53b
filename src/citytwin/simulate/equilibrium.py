"""Frank-Wolfe family solvers of the Beckmann program: plain, conjugate and bi-conjugate.

Each iteration loads the demand all-or-nothing on current costs (the linearised subproblem),
builds a search direction and takes an exact line search along it. Conjugate (CFW) and
bi-conjugate (BFW) directions combine the new all-or-nothing point with the previous one or two
directions so that successive directions are conjugate with respect to the Hessian
``diag(t'(x))`` (Mitradjieva & Lindberg 2013, *Transportation Science* 47(2):280–293); the
formulas and restart rules follow AequilibraE's ``linear_approximation.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import brentq

from citytwin.simulate.paths import ODPairs, RoutingGraph, all_or_nothing

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
ALGORITHMS = ("bfw", "cfw", "fw")
_MAX_CONJUGATE = 1.0 - 1e-6


@dataclass(frozen=True)
class CostModel:
    """BPR travel time plus a fixed (toll and distance) part of generalised cost, per link."""

    free_flow_time: FloatArray
    capacity: FloatArray
    b: FloatArray
    power: FloatArray
    fixed: FloatArray

    def cost(self, volume: FloatArray) -> FloatArray:
        """Generalised cost ``t0 (1 + b (x/c)^p) + fixed``."""
        ratio = volume / self.capacity
        return self.free_flow_time * (1.0 + self.b * ratio**self.power) + self.fixed

    def derivative(self, volume: FloatArray) -> FloatArray:
        """``dt/dx``, the diagonal of the Beckmann objective's Hessian."""
        ratio = volume / self.capacity
        slope = self.free_flow_time * self.b * self.power / self.capacity
        return slope * ratio ** (self.power - 1.0)


@dataclass
class Solution:
    """Link volumes, the gap they reach and the gap of every iteration."""

    volume: FloatArray
    relative_gap: float
    iterations: int
    history: list[float] = field(default_factory=list)


@dataclass
class _Directions:
    """The previous one and two direction points and the last step (BFW memory)."""

    previous: FloatArray | None = None
    before: FloatArray | None = None
    step: float = 0.0
    depth: int = 0


def solve_equilibrium(
    graph: RoutingGraph,
    pairs: ODPairs,
    model: CostModel,
    *,
    gap: float,
    max_iterations: int,
    algorithm: str,
    on_progress: Callable[[int, float], None] | None = None,
) -> Solution:
    """Iterate until the relative gap ``(TSTT − SPTT) / TSTT`` is at most ``gap``."""
    volume, _ = all_or_nothing(graph, model.cost(np.zeros(graph.n_links)), pairs)
    memory, history = _Directions(), []
    max_depth = {"fw": 0, "cfw": 1, "bfw": 2}[algorithm]
    for iteration in range(1, max_iterations + 1):
        cost = model.cost(volume)
        target, sptt = all_or_nothing(graph, cost, pairs)
        tstt = float(volume @ cost)
        relative_gap = (tstt - sptt) / tstt if tstt > 0 else 0.0
        history.append(relative_gap)
        if on_progress is not None:
            on_progress(iteration, relative_gap)
        if relative_gap <= gap:
            return Solution(volume, relative_gap, iteration, history)
        volume = _advance(model, volume, target, memory, max_depth)
    return Solution(volume, history[-1], max_iterations, history)


def _advance(
    model: CostModel, volume: FloatArray, target: FloatArray, memory: _Directions, max_depth: int
) -> FloatArray:
    """One step: direction (FW, CFW or BFW by memory depth), exact line search, restart rules."""
    point = _direction_point(model, volume, target, memory, min(memory.depth, max_depth))
    step = _line_search(model, volume, point - volume)
    if step is None and memory.depth > 0:
        point, memory.depth = target, 0
        step = _line_search(model, volume, point - volume)
    if step is None:
        step = 1e-6
    memory.before, memory.previous, memory.step = memory.previous, point, step
    memory.depth = 0 if step >= _MAX_CONJUGATE else memory.depth + 1
    return volume + step * (point - volume)


def _direction_point(
    model: CostModel, volume: FloatArray, target: FloatArray, memory: _Directions, depth: int
) -> FloatArray:
    if depth == 0 or memory.previous is None:
        return target
    hessian = model.derivative(volume)
    previous = memory.previous
    if depth == 1 or memory.before is None:
        numerator = np.sum(hessian * (previous - volume) * (target - volume))
        denominator = np.sum(hessian * (previous - volume) * (target - previous))
        alpha = numerator / denominator if denominator != 0 else 0.0
        alpha = min(max(alpha, 0.0), _MAX_CONJUGATE)
        return alpha * previous + (1.0 - alpha) * target
    return _biconjugate_point(hessian, volume, target, memory)


def _biconjugate_point(
    hessian: FloatArray, volume: FloatArray, target: FloatArray, memory: _Directions
) -> FloatArray:
    """``β0 y + β1 s_{k−1} + β2 s_{k−2}`` with ``β`` from Mitradjieva & Lindberg's eq. (13)."""
    assert memory.previous is not None
    assert memory.before is not None
    step, previous, before = memory.step, memory.previous, memory.before
    combined = step * previous + (1.0 - step) * before - volume
    to_target = target - volume
    to_previous = previous - volume
    mu_denominator = np.sum(hessian * combined * (before - previous))
    mu = (
        0.0
        if mu_denominator == 0
        else max(0.0, -np.sum(hessian * combined * to_target) / mu_denominator)
    )
    nu_denominator = np.sum(hessian * to_previous * to_previous)
    nu = 0.0
    if nu_denominator != 0:
        nu = -np.sum(hessian * to_previous * to_target) / nu_denominator + mu * step / (1.0 - step)
        nu = max(0.0, nu)
    beta0 = 1.0 / (1.0 + mu + nu)
    return beta0 * target + beta0 * nu * previous + beta0 * mu * before


def _line_search(model: CostModel, volume: FloatArray, direction: FloatArray) -> float | None:
    """The step in [0, 1] minimising the Beckmann objective along ``direction`` (None: ascent).

    The objective is convex, so its directional derivative ``Σ c(x + λd)·d`` is monotone and
    Brent's root finder on it is exact to ``xtol``.
    """

    def slope(step: float) -> float:
        return float(model.cost(volume + step * direction) @ direction)

    if slope(0.0) >= 0.0:
        return None
    if slope(1.0) <= 0.0:
        return 1.0
    return float(brentq(slope, 0.0, 1.0, xtol=1e-15, rtol=1e-15, maxiter=200))
