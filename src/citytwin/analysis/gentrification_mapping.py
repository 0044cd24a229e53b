"""The vocabulary of the gentrification analysis and the mapping of a per-dong table onto it.

Any per-dong table with two or more periods per dong is read through a
:class:`GentrificationMapping` (YAML, :func:`load_mapping`; a ``demo`` preset maps the
emulator's panel). Raw keys (:data:`RAW_KEYS`):

``business_count``, ``business_openings``, ``business_closures``, ``franchise_count`` or
``franchise_share``, ``rent_per_m2``, ``land_price``, ``population``, ``population_20_39`` or
``share_20_39``, ``population_65_plus`` or ``share_65_plus``, ``households``,
``residents_moved_out``. Shares are fractions (0–1). A mapping needs a price column
(``rent_per_m2`` or ``land_price``) and inputs for at least two scored indicators.

:data:`INDICATORS` names the derived indicators, the raw keys each can be computed from, its
direction and its weight; :mod:`citytwin.analysis.gentrification` tabulates their units and
explains the weights, and computes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Final, NamedTuple

import yaml

from citytwin.errors import MappingError

RAW_KEYS: Final = (
    "business_count", "business_openings", "business_closures", "franchise_count",
    "franchise_share", "rent_per_m2", "land_price", "population", "population_20_39",
    "share_20_39", "population_65_plus", "share_65_plus", "households", "residents_moved_out",
)  # fmt: skip
SHARE_KEYS: Final = frozenset({"franchise_share", "share_20_39", "share_65_plus"})
PRICE_KEYS: Final = ("rent_per_m2", "land_price")


class Indicator(NamedTuple):
    """A derived indicator: alternative input sets, sign (+1: more gentrification), weight."""

    inputs: tuple[tuple[str, ...], ...]
    direction: int
    weight: float


INDICATORS: Final = {
    "rent_growth": Indicator((("rent_per_m2",),), 1, 2 / 9),
    "land_price_growth": Indicator((("land_price",),), 1, 1 / 9),
    "business_growth": Indicator((("business_count",),), 1, 1 / 9),
    "business_turnover": Indicator(
        (("business_openings", "business_closures", "business_count"),), 1, 1 / 9
    ),
    "franchise_share_change": Indicator(
        (("franchise_share",), ("franchise_count", "business_count")), 1, 1 / 9
    ),
    "young_adult_share_change": Indicator(
        (("share_20_39",), ("population_20_39", "population")), 1, 1 / 9
    ),
    "elderly_share_change": Indicator(
        (("share_65_plus",), ("population_65_plus", "population")), -1, 1 / 9
    ),
    "out_migration_rate": Indicator((("residents_moved_out", "population"),), 1, 1 / 9),
    "population_change": Indicator((("population",),), -1, 0.0),
    "household_size_change": Indicator((("population", "households"),), -1, 0.0),
}
#: preset name → file in ``citytwin/analysis/presets``
PRESETS: Final = {"demo": "gentrification.yaml"}
_MAPPING_KEYS: Final = ("name", "description", "dong", "dong_name", "period", "indicators")


@dataclass(frozen=True)
class GentrificationMapping:
    """Which columns of a per-dong table hold the dong id, the period and each raw indicator.

    Examples
    --------
    >>> GentrificationMapping(dong="id", period="year", indicators={"rent": "r"})
    Traceback (most recent call last):
    ...
    citytwin.errors.MappingError: gentrification mapping 'custom': indicators: unknown key 'rent'...
    """

    dong: str
    period: str
    indicators: dict[str, str] = field(default_factory=dict)
    dong_name: str | None = None
    name: str = "custom"
    description: str = ""

    def __post_init__(self) -> None:
        problems = [
            f"indicators: unknown key {key!r}; expected one of: {', '.join(RAW_KEYS)}"
            for key in self.indicators
            if key not in RAW_KEYS
        ]
        if not problems and not any(key in self.indicators for key in PRICE_KEYS):
            problems.append(f"indicators: no price column; name one of {', '.join(PRICE_KEYS)}")
        scored = [name for name in self.computable() if INDICATORS[name].weight > 0]
        if not problems and len(scored) < 2:
            problems.append(f"indicators: inputs for only {scored}; at least two scored needed")
        if problems:
            raise MappingError(f"gentrification mapping {self.name!r}", "; ".join(problems))

    def computable(self) -> list[str]:
        """Derived indicators whose inputs this mapping names."""
        keys = set(self.indicators)
        return [n for n, s in INDICATORS.items() if any(set(i) <= keys for i in s.inputs)]


def load_mapping(source: str | Path) -> GentrificationMapping:
    """A mapping from a YAML file, or a bundled preset by name (``"demo"``).

    Examples
    --------
    >>> mapping = load_mapping("demo")
    >>> mapping.dong, mapping.indicators["rent_per_m2"]
    ('행정동_코드', '임대료_천원_m2')
    """
    if isinstance(source, str) and not source.endswith((".yaml", ".yml")) and "/" not in source:
        if source not in PRESETS:
            raise MappingError(source, f"unknown preset; expected one of: {', '.join(PRESETS)}")
        preset = resources.files("citytwin.analysis").joinpath("presets", PRESETS[source])
        text, where = preset.read_text("utf-8"), f"preset {source}"
    else:
        try:
            text, where = Path(source).read_text("utf-8"), str(source)
        except OSError as error:
            raise MappingError(str(source), f"cannot read: {error.strerror}") from error
    document = yaml.safe_load(text)
    if not isinstance(document, dict):
        raise MappingError(where, "expected a mapping of keys dong, period, indicators …")
    unknown = sorted(set(document) - set(_MAPPING_KEYS))
    missing = [key for key in ("dong", "period", "indicators") if key not in document]
    if unknown or missing or not isinstance(document.get("indicators"), dict):
        raise MappingError(
            where, f"unknown keys {unknown}, missing {missing}; expected {', '.join(_MAPPING_KEYS)}"
        )
    fields = {k: str(v) for k, v in document.items() if k != "indicators" and v is not None}
    indicators = {str(k): str(v) for k, v in document["indicators"].items()}
    return GentrificationMapping(**fields, indicators=indicators)
