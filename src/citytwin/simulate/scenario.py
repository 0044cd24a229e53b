"""Versioned what-if scenarios: base data + changes + model + parameters + seed.

A :class:`Scenario` is a small declarative document (YAML or JSON) that names a model from the
registry (:data:`MODELS`), the base data it reads, a list of typed changes and the model's
parameters. Running it without its changes gives the *baseline*; running it with them gives the
*variant*; :meth:`ModelAdapter.compare` turns the two into a table of deltas. Runs are
deterministic (sorted outputs, fixed seeds), so a stored run can be re-run to bit-identical files
— the reproducibility contract of scenario-based planning support (Batty 2013, *The New Science
of Cities*, ch. 11; Sandve et al. 2013, "Ten simple rules for reproducible computational
research", *PLoS Comput. Biol.* 9(10)).

The adapters live next to their models: :mod:`.scenario_assignment` (traffic assignment with
closures, capacity, new links, demand) and :mod:`.scenario_plume` (a hazardous-gas release with a
different rate, height or wind). Storing runs with provenance is the job of
:mod:`citytwin.services.scenarios`.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Protocol, Self, TypeVar

import geopandas as gpd
import numpy as np
import pandas as pd
import pydantic
import yaml
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, model_validator

from citytwin.analysis.grid import Grid
from citytwin.errors import ValidationError

#: Scenario names become folder names, so they are short, ASCII and start with a letter or digit
#: (names starting with ``_`` are reserved for stored baselines).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
#: The model registry: name → ``module:factory`` of its adapter, imported on first use.
MODELS: dict[str, str] = {
    "assignment": "citytwin.simulate.scenario_assignment:AssignmentAdapter",
    "plume": "citytwin.simulate.scenario_plume:PlumeAdapter",
}
PartT = TypeVar("PartT", bound=BaseModel)
Progress = Callable[[int, float], None]
Summary = dict[str, float | int | str | bool | None]


class SpecPart(BaseModel):
    """A piece of a scenario spec: unknown keys are errors, values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class OneChange(SpecPart):
    """A change that names exactly one of its fields (``close:``, ``wind:`` …)."""

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        given = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(given) != 1:
            kinds = ", ".join(type(self).model_fields)
            raise ValueError(f"expected exactly one of {kinds}; got {given or 'none'}")
        return self


class Scenario(BaseModel):
    """One what-if: ``model`` run on ``base`` with ``changes`` and ``parameters``.

    ``base``, ``changes`` and ``parameters`` are checked by the model's adapter
    (:func:`load_scenario` does both steps); paths in ``base`` are absolute once created.

    Examples
    --------
    >>> spec = load_scenario({"name": "demo", "model": "assignment",
    ...     "base": {"network": "/data/Braess"}, "changes": [{"close": [[3, 4]]}]})
    >>> spec.name, spec.changes[0]
    ('demo', {'close': [[3, 4]]})
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
    model: str
    description: str = ""
    base: dict[str, JsonValue]
    changes: list[dict[str, JsonValue]] = Field(default_factory=list)
    parameters: dict[str, JsonValue] = Field(default_factory=dict)
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 0

    def canonical_json(self) -> str:
        """The spec as canonical JSON (sorted keys, no spaces): what its sha256 is taken over."""
        return canonical_json(self.model_dump(mode="json"))

    def sha256(self) -> str:
        """sha256 of :meth:`canonical_json`."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def baseline(self) -> Scenario:
        """The same scenario without its changes (what the variant is compared with)."""
        return self.model_copy(update={"name": "baseline", "changes": [], "description": ""})


@dataclass(frozen=True)
class ScenarioResult:
    """What one run of a model produced.

    ``table`` is the model's main table (assignment: one row per link ``from, to, volume, cost,
    time``; plume: one row per AEGL zone); ``grid``/``raster`` a field on the city grid and
    ``layer`` polygons (plume: the zones), when the model has them; ``summary`` the headline
    figures (iterations, gap, objective, TSTT; plume peak and zone areas).
    """

    model: str
    summary: Summary
    table: pd.DataFrame
    grid: Grid | None = None
    raster: NDArray[np.float32] | None = None
    layer: gpd.GeoDataFrame | None = None


@dataclass(frozen=True)
class ScenarioComparison:
    """Deltas ``variant − base``: a table (per link or per zone) and headline figures."""

    model: str
    table: pd.DataFrame
    summary: Summary
    extra: dict[str, Any] = field(default_factory=dict)


class ModelAdapter(Protocol):
    """What the scenario machinery needs from a model (one adapter per registry name)."""

    name: str
    #: File names of a stored result, in the order their hashes enter ``result_sha256``.
    result_files: tuple[str, ...]
    #: Keys of ``base`` that hold file or folder paths (made absolute when a scenario is created).
    path_keys: tuple[str, ...]

    def check(self, scenario: Scenario) -> list[str]:
        """Problems of ``base``/``changes``/``parameters``, each naming its position."""
        ...

    def inputs(self, scenario: Scenario) -> list[Path]:
        """Every file the run reads (their sha256 go into the provenance)."""
        ...

    def run(self, scenario: Scenario, *, on_progress: Progress | None = None) -> ScenarioResult:
        """Run ``scenario`` (changes applied) deterministically."""
        ...

    def save(self, result: ScenarioResult, folder: Path) -> list[Path]:
        """Write the result files (:attr:`result_files`) with canonical, byte-stable content."""
        ...

    def load(self, folder: Path, summary: Summary) -> ScenarioResult:
        """Read back what :meth:`save` wrote."""
        ...

    def compare(self, variant: ScenarioResult, base: ScenarioResult) -> ScenarioComparison:
        """Deltas from ``base`` to ``variant``."""
        ...

    def picture(
        self, comparison: ScenarioComparison, scenario: Scenario, path: Path
    ) -> Path | None:
        """A difference map of ``comparison`` as PNG, or None when the base data has no places."""
        ...


def get_adapter(model: str) -> ModelAdapter:
    """The adapter registered as ``model``; an unknown name lists the valid ones.

    >>> get_adapter("assignment").name
    'assignment'
    """
    if model not in MODELS:
        raise ValidationError(
            f"scenario model {model!r}: expected one of {', '.join(sorted(MODELS))}"
        )
    module, _, factory = MODELS[model].partition(":")
    adapter: ModelAdapter = getattr(importlib.import_module(module), factory)()
    return adapter


def load_scenario(data: Mapping[str, Any] | str, *, source: str = "scenario") -> Scenario:
    """A validated :class:`Scenario` from a mapping or YAML/JSON text.

    Every problem — of the spec itself and of the model's ``base``, ``changes`` and
    ``parameters`` — is collected and raised once as a :class:`ValidationError` naming each
    position (``changes[1].capacity.factor``) and what was expected.

    >>> load_scenario("name: x\\nmodel: flood\\nbase: {}")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    citytwin.errors.ValidationError: scenario: model: 'flood' is not a scenario model; expected ...
    """
    mapping = _parse_text(data, source) if isinstance(data, str) else dict(data)
    try:
        scenario = Scenario.model_validate(mapping)
    except pydantic.ValidationError as exc:
        raise ValidationError(f"{source}: " + "; ".join(pydantic_problems(exc))) from None
    if scenario.model not in MODELS:
        raise ValidationError(
            f"{source}: model: {scenario.model!r} is not a scenario model; expected one of "
            f"{', '.join(sorted(MODELS))}"
        )
    problems = get_adapter(scenario.model).check(scenario)
    if problems:
        raise ValidationError(f"{source} {scenario.name}: " + "; ".join(problems))
    return scenario


def _parse_text(text: str, source: str) -> dict[str, Any]:
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValidationError(f"{source}: not valid YAML/JSON{where}: {exc}") from None
    if not isinstance(parsed, dict):
        raise ValidationError(
            f"{source}: expected a mapping with name, model, base …, got {type(parsed).__name__}"
        )
    return parsed


def pydantic_problems(error: pydantic.ValidationError, prefix: str = "") -> list[str]:
    """One ``position: message (got value)`` line per pydantic error, position dotted/indexed."""
    problems = []
    for item in error.errors():
        where = prefix
        for part in item["loc"]:
            where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
        got = item.get("input")
        shown = f" (got {got!r})" if got is not None and len(repr(got)) <= 80 else ""
        problems.append(f"{where or 'spec'}: {item['msg']}{shown}")
    return problems


def parse_part(model: type[PartT], value: Any, position: str, problems: list[str]) -> PartT | None:
    """``model`` validated from ``value``; problems are appended (named by ``position``)."""
    try:
        return model.model_validate(value)
    except pydantic.ValidationError as exc:
        problems.extend(pydantic_problems(exc, position))
        return None


def canonical_json(value: Any) -> str:
    """JSON with sorted keys, no whitespace and ``repr`` floats: equal data, equal bytes.

    >>> canonical_json({"b": 0.1, "a": [1, 2]})
    '{"a":[1,2],"b":0.1}'
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def resolve_paths(scenario: Scenario, keys: tuple[str, ...], base_dir: Path) -> Scenario:
    """``scenario`` with the relative paths in ``base[key]`` made absolute against ``base_dir``."""
    base = dict(scenario.base)
    for key in keys:
        value = base.get(key)
        if isinstance(value, str) and not Path(value).is_absolute():
            base[key] = str((base_dir / value).resolve())
    return scenario.model_copy(update={"base": base})
