"""The CPS service catalog: which department's problem uses which part of citytwin.

The Seoul Institute report on a cyber-physical system (CPS) for Seoul asks for a *linkage table*
(연계테이블) that maps each department's problem onto the seven CPS functions — real problem
(현실문제), real data (현실데이터), real modelling (현실모델링), data transfer (데이터전달), virtual
model (가상모델), decision-making (의사결정) and autonomous control (자율제어). The catalog is that
table's source: a YAML file of services, each naming the feeds, observed properties, city layers,
protocols, twin views, analyses, simulations, rules and actuators it relies on (see
``docs/linkage.md`` for the format; the shipped one is ``services/presets/catalog.yaml``).

A catalog is checked against what is configured (:class:`Configuration`: the code's registries,
an optional store and an optional control file): a name that does not exist is a
:class:`Problem` naming the service, the field and the name — so deleting a feed that a service
needs fails the check with the feed's name.

>>> from citytwin.control.config import load_control
>>> catalog = load_catalog(DEFAULT_CATALOG)
>>> [service.id for service in catalog.services][:2]
['fine-dust', 'heat-wave']
>>> check_catalog(catalog, Configuration.gather(control=load_control(DEMO_CONTROL)))
[]
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from citytwin.control.config import ControlConfig
from citytwin.errors import ValidationError
from citytwin.store.base import Store

logger = logging.getLogger(__name__)

DEFAULT_CATALOG = Path(str(resources.files("citytwin.services") / "presets" / "catalog.yaml"))
DEMO_CONTROL = Path(str(resources.files("citytwin.control") / "presets" / "demo.yaml"))

Function = Literal[
    "problem",
    "real_data",
    "real_modelling",
    "data_transfer",
    "virtual_model",
    "decision_making",
    "autonomous_control",
]
FUNCTIONS: tuple[Function, ...] = get_args(Function)
# the catalog fields that hold each function's references (the problem is text, not references)
FUNCTION_FIELDS: dict[Function, tuple[str, ...]] = {
    "problem": (),
    "real_data": ("feeds", "properties"),
    "real_modelling": ("layers",),
    "data_transfer": ("protocols",),
    "virtual_model": ("views",),
    "decision_making": ("analyses", "simulations"),
    "autonomous_control": ("rules", "actuators"),
}
REFERENCE_FIELDS = tuple(name for names in FUNCTION_FIELDS.values() for name in names)


class Labels(BaseModel):
    """A text in Korean and English."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ko: str = Field(min_length=1)
    en: str = Field(min_length=1)

    def text(self, lang: str) -> str:
        """The text in ``lang`` (``ko`` or ``en``)."""
        return self.ko if lang == "ko" else self.en


# what the server speaks (data transfer) and shows (virtual model): fixed by the API's routes
PROTOCOLS: dict[str, Labels] = {
    "sta": Labels(ko="SensorThings API v1.1", en="SensorThings API v1.1"),
    "sta-mqtt": Labels(ko="SensorThings MQTT", en="SensorThings MQTT"),
    "ogc-features": Labels(ko="OGC API - Features", en="OGC API - Features"),
    "ngsi-ld": Labels(ko="NGSI-LD", en="NGSI-LD"),
    "websocket": Labels(ko="웹소켓", en="WebSocket"),
    "mqtt-ingest": Labels(ko="MQTT 기기 수집", en="MQTT device ingest"),
    "sta-tasking": Labels(ko="SensorThings 태스킹", en="SensorThings Tasking"),
}
VIEWS: dict[str, Labels] = {
    "sensors": Labels(ko="센서 현황 (/twin/sensors)", en="sensors (/twin/sensors)"),
    "districts": Labels(ko="행정구역 집계 (/twin/districts)", en="districts (/twin/districts)"),
    "objects": Labels(ko="도시 객체 (/twin/objects)", en="city objects (/twin/objects)"),
    "3d-tiles": Labels(ko="3D Tiles 내보내기", en="3D Tiles export"),
    "cityjson": Labels(ko="CityJSON", en="CityJSON"),
}


class Gap(BaseModel):
    """A function a service knowingly lacks (or only partly has), and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    function: Function
    reason: Labels


class Service(BaseModel):
    """One city service: a department's problem and what of citytwin it uses, per function."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9-]{0,63}$")
    name: Labels
    department: tuple[str, ...] = Field(min_length=1)
    problem: Labels
    feeds: tuple[str, ...] = ()
    properties: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()
    protocols: tuple[str, ...] = ()
    views: tuple[str, ...] = ()
    analyses: tuple[str, ...] = ()
    simulations: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    actuators: tuple[str, ...] = ()
    gaps: tuple[Gap, ...] = ()

    @field_validator("department", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    def references(self, function: Function) -> dict[str, tuple[str, ...]]:
        """The names this service gives for ``function``, by field."""
        return {name: getattr(self, name) for name in FUNCTION_FIELDS[function]}

    def gap(self, function: Function) -> Gap | None:
        """The explained gap of ``function``, if the catalog gives one."""
        return next((gap for gap in self.gaps if gap.function == function), None)


class Catalog(BaseModel):
    """Departments (key → labels) and the services they run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    departments: dict[str, Labels]
    services: tuple[Service, ...] = Field(min_length=1)

    def department_label(self, service: Service, lang: str) -> str:
        """The service's department(s) in ``lang``, joined with `` · ``."""
        return " · ".join(self.departments[key].text(lang) for key in service.department)


def load_catalog(path: str | Path) -> Catalog:
    """The service catalog in a YAML file; every problem names the file, service and field.

    Unknown departments, duplicate service ids and two gaps for one function are refused here;
    names of feeds, layers, models, rules and actuators are checked by :func:`check_catalog`.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ValidationError(f"{path}: cannot read the service catalog: {error}") from None
    try:
        catalog = Catalog.model_validate(data)
    except pydantic.ValidationError as error:
        raise ValidationError(f"{path}: " + "; ".join(_describe(data, error))) from None
    problems = _structure_problems(catalog)
    if problems:
        raise ValidationError(f"{path}: " + "; ".join(problems))
    logger.info("%s: %d services", path, len(catalog.services))
    return catalog


def _describe(data: Any, error: pydantic.ValidationError) -> list[str]:
    """Pydantic errors as ``services[2] (id 'x'): field: message``."""
    out = []
    for item in error.errors():
        loc = list(item["loc"])
        where = ".".join(str(part) for part in loc) or "(top level)"
        if len(loc) >= 2 and loc[0] == "services" and isinstance(loc[1], int):
            entry = (data or {}).get("services", [])[loc[1]] if isinstance(data, dict) else None
            ident = entry.get("id") if isinstance(entry, dict) else None
            rest = ".".join(str(part) for part in loc[2:]) or "(entry)"
            where = f"services[{loc[1]}] (id {ident!r}): {rest}"
        out.append(f"{where}: {str(item['msg']).removeprefix('Value error, ')}")
    return out


def _structure_problems(catalog: Catalog) -> list[str]:
    problems = []
    seen: set[str] = set()
    for index, service in enumerate(catalog.services):
        where = f"services[{index}] (id {service.id!r})"
        if service.id in seen:
            problems.append(f"{where}: id: duplicate service id; ids must be unique")
        seen.add(service.id)
        for key in service.department:
            if key not in catalog.departments:
                known = ", ".join(sorted(catalog.departments))
                problems.append(f"{where}: department: unknown {key!r}; expected one of {known}")
        functions = [gap.function for gap in service.gaps]
        for twice in sorted({f for f in functions if functions.count(f) > 1}):
            problems.append(f"{where}: gaps: {twice!r} is explained twice")
    return problems


#: What ``citytwin analyze`` and ``citytwin simulate`` run (the CLI is a layer above services, so
#: the names are kept here; a test checks they equal the commands).
ANALYSES = frozenset(
    {"map", "hotspots", "anomalies", "noise", "backtest", "forecast", "traffic", "gentrification"}
)
SIMULATIONS = frozenset({"assignment", "city-traffic", "release", "sunlight", "flood"})


def available_models() -> dict[str, frozenset[str]]:
    """The analyses and simulations citytwin runs: the commands, and for simulations also the
    scenario models (:data:`citytwin.simulate.scenario.MODELS`).

    >>> sorted(available_models()["simulation"])
    ['assignment', 'city-traffic', 'flood', 'plume', 'release', 'sunlight']
    """
    from citytwin.simulate.scenario import MODELS

    return {"analysis": ANALYSES, "simulation": SIMULATIONS | frozenset(MODELS)}


def code_feeds() -> frozenset[str]:
    """Feed names the code can ingest: the reader registry, the bundled generic-feed presets
    (``topis``, ``airkorea``) and MQTT device ingest.

    >>> {"sdot", "kma", "noise", "topis", "mqtt"} <= code_feeds()
    True
    """
    from citytwin.ingest import FEEDS
    from citytwin.ingest.mapping import load_mapping, preset_names
    from citytwin.mqtt.messages import FEED as MQTT_FEED

    presets = {load_mapping(name).feed for name in preset_names()}
    return frozenset(FEEDS) | frozenset(presets) | {MQTT_FEED}


def code_layers() -> frozenset[str]:
    """The city layers the importers write (``districts``, ``buildings``, road nodes/links)."""
    from citytwin.space.city import BUILDINGS, DISTRICTS, ROAD_LINKS, ROAD_NODES

    return frozenset({DISTRICTS, BUILDINGS, ROAD_NODES, ROAD_LINKS})


@dataclass(frozen=True)
class Configuration:
    """What exists to be named: feeds, properties, layers, models, protocols, views, control.

    ``control`` is None when no control file is configured: then no rule or actuator exists.
    """

    feeds: frozenset[str]
    properties: frozenset[str]
    layers: frozenset[str]
    analyses: frozenset[str]
    simulations: frozenset[str]
    protocols: frozenset[str] = frozenset(PROTOCOLS)
    views: frozenset[str] = frozenset(VIEWS)
    control: ControlConfig | None = None
    store_feeds: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def gather(
        cls, *, store: Store | None = None, control: ControlConfig | None = None
    ) -> Configuration:
        """The configuration of the code, plus the feeds and layers a store holds and the rules
        and actuators of a control file."""
        from citytwin.model.vocabulary import property_keys

        models = available_models()
        layers, seen = code_layers(), frozenset[str]()
        if store is not None:
            layers |= frozenset(store.layers())
            seen = store_feed_names(store)
        return cls(
            feeds=code_feeds() | seen,
            properties=frozenset(property_keys()),
            layers=layers,
            analyses=models["analysis"],
            simulations=models["simulation"],
            control=control,
            store_feeds=seen,
        )

    def without(self, **names: Iterable[str]) -> Configuration:
        """A copy with some names removed, e.g. ``without(feeds=["sdot"])`` (what-if checks)."""
        return replace(self, **{k: getattr(self, k) - frozenset(v) for k, v in names.items()})

    def known(self, field_name: str) -> frozenset[str]:
        """The names that exist for one catalog field (rules/actuators: from the control file)."""
        if field_name == "rules":
            return frozenset(r.name for r in self.control.rules) if self.control else frozenset()
        if field_name == "actuators":
            return (
                frozenset(a.match for a in self.control.actuators) if self.control else frozenset()
            )
        known: frozenset[str] = getattr(self, field_name)
        return known

    def exists(self, field_name: str, name: str) -> bool:
        """Whether ``name`` exists for ``field_name`` (an actuator: matches an entry's pattern)."""
        if field_name == "actuators":
            patterns = self.known("actuators")
            return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
        return name in self.known(field_name)


def store_feed_names(store: Store) -> frozenset[str]:
    """Feeds with Things in a store: each Thing key's prefix before ``:``."""
    from citytwin.auth import feed_of
    from citytwin.model.sensing import Thing

    return frozenset(f for f in (feed_of(t.key) for t in store.entities(Thing)) if f is not None)


@dataclass(frozen=True)
class Problem:
    """A catalog reference to something that does not exist."""

    service: str
    field: str
    name: str
    message: str

    def __str__(self) -> str:
        return f"service {self.service!r}: {self.field}: {self.message}"


_SINGULAR = {
    "feeds": "feed",
    "properties": "observed property",
    "layers": "layer",
    "protocols": "protocol",
    "views": "twin view",
    "analyses": "analysis",
    "simulations": "simulation",
    "rules": "rule",
    "actuators": "actuator",
}


def check_catalog(catalog: Catalog, configuration: Configuration) -> list[Problem]:
    """Every reference of the catalog that names nothing configured, as a :class:`Problem`."""
    return [
        _problem(service.id, field_name, name, configuration)
        for service in catalog.services
        for field_name in REFERENCE_FIELDS
        for name in getattr(service, field_name)
        if not configuration.exists(field_name, name)
    ]


def _problem(service: str, field_name: str, name: str, configuration: Configuration) -> Problem:
    what = _SINGULAR[field_name]
    if field_name in ("rules", "actuators") and configuration.control is None:
        return Problem(service, field_name, name, f"{what} {name!r}: no control file configured")
    known = ", ".join(sorted(configuration.known(field_name))) or "none"
    expected = "matching one of" if field_name == "actuators" else "expected one of"
    return Problem(service, field_name, name, f"unknown {what} {name!r}; {expected}: {known}")


def labels_of(field_name: str) -> Mapping[str, Labels]:
    """Display labels of protocol and view keys (other names are shown as they are)."""
    return {"protocols": PROTOCOLS, "views": VIEWS}.get(field_name, {})


__all__ = [
    "DEFAULT_CATALOG",
    "DEMO_CONTROL",
    "FUNCTIONS",
    "FUNCTION_FIELDS",
    "PROTOCOLS",
    "VIEWS",
    "Catalog",
    "Configuration",
    "Function",
    "Gap",
    "Labels",
    "Problem",
    "Service",
    "available_models",
    "check_catalog",
    "code_feeds",
    "code_layers",
    "load_catalog",
    "store_feed_names",
]
