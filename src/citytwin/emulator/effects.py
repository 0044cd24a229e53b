"""What the live city's actuators do: one handler per task command, and the traffic they steer.

A task reaches :meth:`citytwin.emulator.live.LiveCity.apply` for one actuator, named
``<kind>:<target>``; :data:`EFFECTS` maps the task's ``command`` to the actuator kind it needs and
the handler that changes :class:`ActuatorState`:

===============  ======================  ==================================================
command          actuator                effect
===============  ======================  ==================================================
``spray``        ``spray-truck:<dong>``  PM2.5 −20 %, PM10 −25 % at once in the dong,
                                         recovering with an e-folding time of 60 min
``purify``       ``shelter:<sensor>``    that sensor's PM −50 % while the purifier runs
                                         (``{"minutes": 60}`` by default)
``show``         ``vms:<id>``            the sign shows ``{"text": ...}`` (``LiveCity.signs``)
``signal_plan``  ``signal:<node>``       ``{"links": [[a, b], ...], "factor": f}``: those
                                         links' capacity becomes f × the base capacity
===============  ======================  ==================================================

Magnitudes: sweeping followed by washing lowered ambient PM10 by up to 24.4 %, and sweeping's
effect lasted 2–3 h (Chou et al. 2007, *Int. J. Environment and Pollution* 31(3/4), 431); in
Cracow sweeping plus intensive washing lowered PM10 by 14–20.4 % and PM2.5 by 20.8–33.3 %
(Krylow & Generowicz 2019, *Rocznik Ochrona Środowiska* 21(1), 691); in Barcelona the 24 h mean
PM10 fell by 7–10 % (Amato et al. 2009, *Atmos. Environ.* 43, 4472). Others saw no significant
PM2.5 change (Lin et al. 2023, *Aerosol Air Qual. Res.* 23, 220338; review: Amato et al. 2010,
*Sci. Total Environ.* 408, 3070). The emulator takes the upper end — PM10 −25 %, PM2.5 −20 % at
once — so the demo loop shows a clear effect, and a 60 min e-folding time (−3 % left after 2 h)
after the 2–3 h duration. The shelter purifier's −50 % is an assumption (an enclosed smart
shelter with a HEPA unit), as is a signal plan acting on capacity alone (BPR: Bureau of Public
Roads 1964).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Final, NamedTuple

import numpy as np
from numpy.typing import NDArray

from citytwin.emulator.processes import random_stream
from citytwin.errors import ValidationError

if TYPE_CHECKING:  # the solver (scipy.optimize) loads only when traffic is assigned
    from citytwin.simulate.assignment import AssignmentNetwork

logger = logging.getLogger(__name__)

F64 = NDArray[np.float64]
SPRAY_PM25_FRACTION: Final = 0.20
SPRAY_PM10_FRACTION: Final = 0.25
SPRAY_TAU_MINUTES: Final = 60.0
PURIFIER_FRACTION: Final = 0.50
PURIFIER_MINUTES: Final = 60.0


class EffectRefused(ValidationError):
    """The actuator cannot do what the task asks; the message is the reason it acknowledges."""


@dataclass(frozen=True)
class PmReduction:
    """PM at ``sensors`` lowered by a fraction from minute ``start``.

    With ``tau`` the reduction decays as ``exp(-(t - start) / tau)``; otherwise it holds for
    ``duration`` minutes and then stops.
    """

    sensors: NDArray[np.intp]
    start: float
    pm25: float
    pm10: float
    tau: float | None = None
    duration: float = math.inf

    def weight(self, minute: float) -> float:
        """The share of the full reduction acting at ``minute`` (0 before the start)."""
        age = minute - self.start
        if age < 0 or age >= self.duration:
            return 0.0
        return 1.0 if self.tau is None else math.exp(-age / self.tau)


@dataclass(frozen=True)
class SignMessage:
    """What a variable message sign shows, since when."""

    text: str
    since: datetime


@dataclass
class ActuatorState:
    """Everything the actuators change; :class:`~citytwin.emulator.live.LiveCity` reads it."""

    sensor_ids: tuple[str, ...]
    dong_codes: NDArray[np.str_]
    traffic: LiveTraffic | None = None
    reductions: list[PmReduction] = field(default_factory=list)
    signs: dict[str, SignMessage] = field(default_factory=dict)

    def pm_factors(self, minute: float) -> tuple[F64, F64]:
        """Multipliers of PM2.5 and PM10 per sensor at ``minute`` (1 where nothing acts)."""
        pm25, pm10 = np.ones(len(self.sensor_ids)), np.ones(len(self.sensor_ids))
        for cut in self.reductions:
            weight = cut.weight(minute)
            if weight:
                pm25[cut.sensors] *= 1.0 - cut.pm25 * weight
                pm10[cut.sensors] *= 1.0 - cut.pm10 * weight
        return pm25, pm10


Handler = Callable[[ActuatorState, str, Mapping[str, object], float, datetime], str]


class Effect(NamedTuple):
    """A command: the actuator kind it needs and the handler that acts."""

    kind: str
    handler: Handler


def _spray(state: ActuatorState, dong: str, params: Mapping[str, object], minute: float,
           at: datetime) -> str:  # fmt: skip
    sensors = np.flatnonzero(state.dong_codes == dong)
    if not len(sensors):
        raise EffectRefused(f"spray-truck:{dong}: no dong {dong!r} with sensors in the live city")
    state.reductions.append(
        PmReduction(sensors, minute, SPRAY_PM25_FRACTION, SPRAY_PM10_FRACTION, SPRAY_TAU_MINUTES)
    )
    return f"sprayed dong {dong} ({len(sensors)} sensors): PM2.5 -20 %, PM10 -25 %, tau 60 min"


def _purify(state: ActuatorState, sensor: str, params: Mapping[str, object], minute: float,
            at: datetime) -> str:  # fmt: skip
    if sensor not in state.sensor_ids:
        raise EffectRefused(f"shelter:{sensor}: no sensor {sensor!r} in the live city")
    minutes = _number(params, "minutes", PURIFIER_MINUTES)
    where = np.array([state.sensor_ids.index(sensor)], np.intp)
    state.reductions.append(
        PmReduction(where, minute, PURIFIER_FRACTION, PURIFIER_FRACTION, duration=minutes)
    )
    return f"purifier at {sensor} on for {minutes:g} min: PM -50 %"


def _show(state: ActuatorState, sign: str, params: Mapping[str, object], minute: float,
          at: datetime) -> str:  # fmt: skip
    text = params.get("text")
    if not isinstance(text, str) or not text.strip():
        raise EffectRefused(
            f"vms:{sign}: parameter 'text' must be a non-empty string, got {text!r}"
        )
    state.signs[sign] = SignMessage(text, at)
    return f"sign {sign} shows {text!r}"


def _signal_plan(state: ActuatorState, node: str, params: Mapping[str, object], minute: float,
                 at: datetime) -> str:  # fmt: skip
    if state.traffic is None:
        raise EffectRefused(f"signal:{node}: the live city has no traffic model")
    links, factor = params.get("links"), _number(params, "factor", math.nan)
    if (
        not isinstance(links, list)
        or not links
        or not all(isinstance(pair, (list, tuple)) and len(pair) == 2 for pair in links)
    ):
        raise EffectRefused(f"signal:{node}: 'links' must be [[from, to], ...], got {links!r}")
    pairs = [(str(a), str(b)) for a, b in links]
    try:
        state.traffic.set_capacity(pairs, factor=factor, minute=minute)
    except ValidationError as exc:
        raise EffectRefused(f"signal:{node}: {exc}") from None
    return f"signal plan at node {node}: capacity x{factor:g} on {len(pairs)} link(s)"


def _number(params: Mapping[str, object], name: str, default: float) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EffectRefused(f"parameter {name!r} must be a positive number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise EffectRefused(f"parameter {name!r} must be a positive number, got {value!r}")
    return float(value)


EFFECTS: Final[dict[str, Effect]] = {
    "spray": Effect("spray-truck", _spray),
    "purify": Effect("shelter", _purify),
    "show": Effect("vms", _show),
    "signal_plan": Effect("signal", _signal_plan),
}


def act(state: ActuatorState, actuator: str, command: object, parameters: object,
        *, minute: float, at: datetime) -> str:  # fmt: skip
    """Run ``command`` on ``actuator``; the detail to acknowledge, or :class:`EffectRefused`."""
    effect = EFFECTS.get(command) if isinstance(command, str) else None
    if effect is None:
        raise EffectRefused(
            f"unknown command {command!r}; expected one of: {', '.join(sorted(EFFECTS))}"
        )
    kind, _, target = actuator.partition(":")
    if kind != effect.kind or not target:
        raise EffectRefused(
            f"command {command!r} needs an actuator '{effect.kind}:<id>', got {actuator!r}"
        )
    if not isinstance(parameters, Mapping):
        raise EffectRefused(f"parameters must be an object, got {parameters!r}")
    return effect.handler(state, target, parameters, minute, at)


class LiveTraffic:
    """User-equilibrium link speeds of a network whose capacities signal plans change.

    Demand is ``base_demand × traffic(hour)`` (the emulator's diurnal profile). Speed is
    ``free_flow_speed × t0 / t`` with BPR time ``t`` from :func:`~citytwin.simulate.assignment.
    assign`, so the network's length and time units do not matter. A capacity plan holds from the
    minute it was applied; assignments are cached by (demand scale, capacities).
    """

    def __init__(self, network: AssignmentNetwork, base_demand: F64, *,
                 free_flow_speed: float = 50.0, gap: float = 1e-4) -> None:  # fmt: skip
        self.network, self.base_demand = network, np.asarray(base_demand, np.float64)
        self.free_flow_speed, self.gap = free_flow_speed, gap
        self._plans: list[tuple[float, NDArray[np.int64], float]] = []
        self._cache: dict[tuple[float, bytes], F64] = {}

    def set_capacity(self, pairs: list[tuple[str, str]], *, factor: float, minute: float) -> None:
        """From ``minute`` on, links ``pairs`` carry ``factor`` × their base capacity."""
        from citytwin.simulate.assignment_whatif import with_capacity

        with_capacity(self.network, pairs, factor=factor)  # validates pairs and factor
        self._plans.append((minute, self.network.find_links(list(pairs)), factor))

    def capacity_factors(self, minute: float) -> F64:
        """Per link: the factor of the latest plan applied at or before ``minute``."""
        factors = np.ones(self.network.n_links)
        for start, links, factor in self._plans:
            if start <= minute:
                factors[links] = factor
        return factors

    def speeds(self, minute: float, scale: float) -> F64:
        """Link speeds (km/h) at ``minute`` with demand ``scale`` × the base demand."""
        from citytwin.simulate.assignment import assign

        factors = self.capacity_factors(minute)
        key = (round(scale, 3), factors.tobytes())
        if key not in self._cache:
            if len(self._cache) > 512:
                self._cache.clear()
            network = replace(self.network, capacity=self.network.capacity * factors)
            time = assign(network, self.base_demand * key[0], gap=self.gap).time
            ratio = np.divide(network.free_flow_time, time, out=np.ones_like(time), where=time > 0)
            self._cache[key] = self.free_flow_speed * ratio
        return self._cache[key]

    def link_names(self) -> list[str]:
        """``<from>-<to>`` node ids of each link, as the readings' ``road_link`` names them."""
        tail, head = self.network.link_labels()
        return [f"{a}-{b}" for a, b in zip(tail.tolist(), head.tolist(), strict=True)]


def grid_traffic(
    bounds: tuple[float, float, float, float], *, size: int = 4, seed: int = 0
) -> tuple[LiveTraffic, F64, F64]:
    """A ``size`` × ``size`` street grid over ``bounds`` (lon/lat) and the lon, lat of its nodes.

    Nodes ``1`` … ``size²`` row by row from the south-west; two-way links between neighbours,
    500 m at 50 km/h, 1,800 veh/h east–west and 1,200 veh/h north–south, BPR b = 0.15, power 4
    (the TNTP defaults). Every node is a zone; each OD pair gets 60–200 veh/h at daytime traffic,
    so the busiest links run near capacity, where a signal plan shows.

    >>> traffic, lon, lat = grid_traffic((127.0, 37.5, 127.1, 37.6), size=3)
    >>> traffic.network.n_links, traffic.link_names()[:2]
    (24, ['1-2', '1-4'])
    """
    from citytwin.simulate.assignment import AssignmentNetwork

    index = np.arange(size * size).reshape(size, size)
    east = np.c_[index[:, :-1].ravel(), index[:, 1:].ravel()]
    north = np.c_[index[:-1, :].ravel(), index[1:, :].ravel()]
    pairs = np.concatenate([east, east[:, ::-1], north, north[:, ::-1]])
    capacity = np.repeat([1800.0, 1200.0], 2 * len(east))
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    n = len(pairs)
    network = AssignmentNetwork(
        node_ids=tuple(str(k + 1) for k in range(size * size)), tail=pairs[order, 0],
        head=pairs[order, 1], capacity=capacity[order], free_flow_time=np.full(n, 0.6),
        b=np.full(n, 0.15), power=np.full(n, 4.0), length=np.full(n, 500.0), toll=np.zeros(n),
        n_zones=size * size, source=f"live city grid {size}x{size}",
    )  # fmt: skip
    demand = random_stream(seed, 40).uniform(60.0, 200.0, (size * size, size * size))
    np.fill_diagonal(demand, 0.0)
    west, south, east_lon, north_lat = bounds
    column, row = np.divmod(np.arange(size * size), size)[::-1]
    lon = west + (east_lon - west) * (column + 0.5) / size
    lat = south + (north_lat - south) * (row + 0.5) / size
    return LiveTraffic(network, demand), lon, lat
