"""Gentrification: a per-dong indicator panel → a composite index and a stage (안정/초기/진행/심화).

Seed 001's third task of the Seoul Urban Data Science Lab is the analysis of gentrification
(젠트리피케이션 현상분석). This module follows the indicator-based early-warning diagnostics used
for Seoul: KRIHS's index (이진희, 2019, 국토정책 Brief *젠트리피케이션 지표 개발과 활용 방안*:
population, income, openings and closures, trading period, franchises and footfall combined in a
weighted score, staged 초기 → 주의 → 경계 → 위험), AURI's commercial-gentrification diagnostic
(심경미·이상민, 2019, auri brief 197: rents, franchise share, business turnover as core
indicators) and 진장익 (2021, 부동산분석 7(3):135, land-price growth as the price signal), and the
academic neighbourhood-change measures — Freeman (2005, *Urban Affairs Review* 40(4):463) scores
price and population-composition *changes* over an intercensal span, and the Urban Displacement
Project typology (Chapple & Zuk, 2016, *Cityscape* 18(3):109) separates early, ongoing and
advanced gentrification.

Any per-dong table with two or more periods per dong is read through a
:class:`GentrificationMapping` (YAML; a ``demo`` preset maps the emulator's panel). Raw keys:

``business_count``, ``business_openings``, ``business_closures``, ``franchise_count`` or
``franchise_share``, ``rent_per_m2``, ``land_price``, ``population``, ``population_20_39`` or
``share_20_39``, ``population_65_plus`` or ``share_65_plus``, ``households``,
``residents_moved_out``. Shares are fractions (0–1). A mapping needs a price column
(``rent_per_m2`` or ``land_price``) and inputs for at least two scored indicators.

Derived indicators over the span (:func:`indicator_panel`), each a per-dong trend fitted by least
squares over *all* periods, not two end points, so one noisy year does not decide it:

==========================  ==========  ====  ======  =========================================
indicator                   unit        sign  weight  from
==========================  ==========  ====  ======  =========================================
rent_growth                 %/yr        +     2/9     log-linear trend of rent_per_m2
land_price_growth           %/yr        +     1/9     log-linear trend of land_price
business_growth             %/yr        +     1/9     log-linear trend of business_count
business_turnover           %/yr        +     1/9     mean of (openings + closures) / count
franchise_share_change      pp/yr       +     1/9     trend of franchise share
young_adult_share_change    pp/yr       +     1/9     trend of the 20–39 share
elderly_share_change        pp/yr       −     1/9     trend of the 65+ share
out_migration_rate          %/yr        +     1/9     mean of moved-out / population
population_change           %/yr        −     0       log-linear trend of population
household_size_change       %/yr        −     0       log-linear trend of population / households
==========================  ==========  ====  ======  =========================================

Weights: one third to each of the three dimensions the Korean diagnostics share — price (rent
twice land price: rent is what displaces tenants, 공시지가 lags the market), commerce and
residents — and equal weights within a dimension, the default of the OECD/JRC *Handbook on
Constructing Composite Indicators* (2008) when no empirical weighting is defensible. Population
and household-size change are reported but unscored: their sign is ambiguous (a shrinking
population is displacement in 연남동 and plain decline elsewhere).

Index (:func:`gentrification_index`): each indicator becomes a robust z-score across dongs,
``(x − median) / (1.4826 · MAD)`` (Iglewicz & Hoaglin, 1993; the mean absolute deviation × 1.2533
when the MAD is 0), winsorised at ±3 so that no single indicator carries a dong alone (OECD/JRC
2008, outlier treatment), and signed by its direction. The index is the weighted mean of the
available signed scores (weights renormalised per dong; below ``min_coverage`` of the total weight
the index is missing). Its unit is "robust standard deviations above the typical dong", so it is
*relative*: a city where every dong gentrifies equally shows none — the same property as the
KRIHS and UDP classifications, which rank areas against their region.

Stages, by the index's thresholds 0.5, 1.25 and 2.0 (:data:`THRESHOLDS`):

=====  ===========  =====  ========================================================  =====
stage  name         한글    meaning                                                   KRIHS
=====  ===========  =====  ========================================================  =====
0      stable       안정    below 0.5: no consistent lean away from the typical dong  초기
1      early        초기    ≥ 0.5: a consistent lean — activation; watch              주의
2      progressing  진행    ≥ 1.25: more than one robust SD out on average            경계
3      advanced     심화    ≥ 2.0: prices, shops and residents all far out            위험
=====  ===========  =====  ========================================================  =====

Why these numbers: a dong whose indicators all sit *k* robust SDs out has index *k*, but the mean
of noisy, imperfectly correlated scores shrinks towards 0 and each score is capped at 3, so the
cuts sit below the single-score conventions of 1, 2 and 3 SDs. An index of 2 (a single normal
score's 98th percentile) needs nearly every indicator to be extreme at once: the KRIHS 위험
stage. The cuts were checked against :mod:`citytwin.emulator.gentrification`, which plants the
stages (see the tests for the recovery figures). The map and GeoJSON helpers are at the end.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Final, NamedTuple

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import shapely.geometry
import yaml
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch, PathPatch
from matplotlib.path import Path as MplPath
from numpy.typing import NDArray
from pyproj import Transformer

from citytwin.errors import MappingError, ValidationError

logger = logging.getLogger(__name__)
F64 = NDArray[np.float64]

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
DEFAULT_WEIGHTS: Final = {name: spec.weight for name, spec in INDICATORS.items() if spec.weight}
STAGES: Final = (
    ("stable", "안정"),
    ("early", "초기"),
    ("progressing", "진행"),
    ("advanced", "심화"),
)
THRESHOLDS: Final = (0.5, 1.25, 2.0)
CLIP: Final = 3.0
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


def indicator_panel(table: pd.DataFrame, mapping: GentrificationMapping) -> pd.DataFrame:
    """Per-dong derived indicators over the table's span (see the module table for units).

    A trend is NaN for a dong with fewer than two usable periods of its inputs, a mean for one
    with none; ``coverage`` is the share of the scored indicators a dong has. Bad cells raise
    :class:`~citytwin.errors.ValidationError` naming the column and the row (0-based position).
    Rates are least-squares trends over all periods (log-linear for levels), as in Freeman's
    (2005) change measures.

    Examples
    --------
    >>> table = pd.DataFrame({"id": ["a", "a", "b", "b"], "year": [2020, 2021] * 2,
    ...                       "rent": [100.0, 110.0, 100.0, 100.0], "shops": [50, 50, 40, 44]})
    >>> mapping = GentrificationMapping(
    ...     dong="id", period="year", indicators={"rent_per_m2": "rent", "business_count": "shops"})
    >>> panel = indicator_panel(table, mapping)
    >>> panel["rent_growth"].round(6).tolist(), panel["business_growth"].round(6).tolist()
    ([10.0, 0.0], [0.0, 10.0])
    """
    raw = _read_table(table, mapping)
    rows = _row_measures(raw)
    growth = {"rent_growth": "rent_per_m2", "land_price_growth": "land_price",
              "business_growth": "business_count", "population_change": "population",
              "household_size_change": "household_size"}  # fmt: skip
    trend = {"franchise_share_change": "franchise_share", "young_adult_share_change":
             "share_20_39", "elderly_share_change": "share_65_plus"}  # fmt: skip
    level = {"business_turnover": "turnover", "out_migration_rate": "moved_out"}
    dongs = pd.Index(pd.unique(raw["dong"]), name="dong")
    panel = pd.DataFrame(index=dongs)
    if mapping.dong_name is not None:
        panel["dong_name"] = raw.groupby("dong", sort=False)["dong_name"].first()
    spans = raw.groupby("dong", sort=False)["period"]
    panel["first_period"], panel["last_period"] = spans.min(), spans.max()
    for name in INDICATORS:
        source = growth.get(name) or trend.get(name) or level[name]
        if source not in rows:
            panel[name] = np.nan
        elif name in growth:
            panel[name] = 100.0 * np.expm1(_slopes(rows, source, log=True))
        elif name in trend:
            panel[name] = 100.0 * _slopes(rows, source, log=False)
        else:
            panel[name] = 100.0 * rows.groupby("dong", sort=False)[source].mean()
    scored = list(DEFAULT_WEIGHTS)
    panel["coverage"] = panel[scored].notna().mean(axis=1)
    return panel


def _read_table(table: pd.DataFrame, mapping: GentrificationMapping) -> pd.DataFrame:
    """The mapped columns as ``dong``, ``period`` (decimal years) and numeric raw keys."""
    wanted = {"dong": mapping.dong, "period": mapping.period, **mapping.indicators}
    if mapping.dong_name is not None:
        wanted["dong_name"] = mapping.dong_name
    absent = [f"{key} → {col!r}" for key, col in wanted.items() if col not in table.columns]
    if absent:
        raise MappingError(
            f"gentrification mapping {mapping.name!r}",
            f"columns not in the table: {', '.join(absent)}; table columns: "
            f"{', '.join(map(str, table.columns))}",
        )
    raw = pd.DataFrame({"dong": table[mapping.dong].astype(str).to_numpy()})
    if mapping.dong_name is not None:
        raw["dong_name"] = table[mapping.dong_name].astype(str).to_numpy()
    problems: list[str] = []
    raw["period"] = _years(table[mapping.period], problems)
    for key, column in mapping.indicators.items():
        raw[key] = _numbers(table[column], f"{key} ({column!r})", key in SHARE_KEYS, problems)
    duplicated = raw.duplicated(["dong", "period"]).to_numpy()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        problems.append(f"row {row}: dong {raw['dong'].iat[row]!r} repeats a period")
    if not problems and raw.groupby("dong")["period"].nunique().max() < 2:
        problems.append("no dong has two or more periods; change needs a span")
    if problems:
        raise ValidationError("gentrification table: " + "; ".join(problems))
    return raw.sort_values(["dong", "period"], kind="stable")


def _years(column: pd.Series, problems: list[str]) -> pd.Series:
    """Years as numbers (2015) or dates (→ decimal years)."""
    if pd.api.types.is_datetime64_any_dtype(column):
        dates = pd.DatetimeIndex(column)
        return pd.Series(dates.year + (dates.day_of_year - 1) / 365.25, dtype=float)
    years = pd.to_numeric(column, errors="coerce").astype(float).reset_index(drop=True)
    bad = np.flatnonzero(years.isna().to_numpy())
    if bad.size:
        problems.append(f"period ({column.name!r}) row {bad[0]}: expected a year or a date")
    return years


def _numbers(column: pd.Series, label: str, share: bool, problems: list[str]) -> F64:
    """Numeric values; empty cells become NaN, text, negatives and shares above 1 are errors."""
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    text = np.flatnonzero(np.isnan(values) & column.notna().to_numpy())
    negative = np.flatnonzero(values < 0)
    above = np.flatnonzero(values > 1) if share else np.array([], dtype=int)
    for rows, expected in ((text, "a number"), (negative, ">= 0"), (above, "a fraction <= 1")):
        if rows.size:
            problems.append(f"{label} row {rows[0]} ({column.iat[rows[0]]!r}): expected {expected}")
    return values


def _row_measures(raw: pd.DataFrame) -> pd.DataFrame:
    """Per-row quantities the indicators are trends or means of (NaN where inputs are absent)."""

    def ratio(top: str, bottom: str) -> pd.Series | float:
        if top not in raw or bottom not in raw:
            return np.nan
        with np.errstate(divide="ignore", invalid="ignore"):
            return (raw[top] / raw[bottom]).where(raw[bottom] > 0)

    rows = raw[["dong", "period"]].copy()
    for key in ("rent_per_m2", "land_price", "business_count"):
        rows[key] = raw.get(key, np.nan)
    pairs = (("franchise_share", "franchise_count", "business_count"),
             ("share_20_39", "population_20_39", "population"),
             ("share_65_plus", "population_65_plus", "population"))  # fmt: skip
    for share, count, total in pairs:
        rows[share] = raw[share] if share in raw else ratio(count, total)
    rows["population"] = raw.get("population", np.nan)
    rows["household_size"] = ratio("population", "households")
    rows["moved_out"] = ratio("residents_moved_out", "population")
    if {"business_openings", "business_closures"} <= set(raw):
        raw = raw.assign(churn=raw["business_openings"] + raw["business_closures"])
    rows["turnover"] = ratio("churn", "business_count")
    return rows.dropna(axis=1, how="all")


def _slopes(rows: pd.DataFrame, column: str, *, log: bool) -> pd.Series:
    """Per-dong least-squares slope of ``column`` (or its log) on the period, in units per year."""
    frame = rows[["dong", "period", column]].dropna()
    if log:
        frame = frame[frame[column] > 0].assign(**{column: lambda f: np.log(f[column])})
    groups = frame.groupby("dong", sort=False)
    dt = frame["period"] - groups["period"].transform("mean")
    dy = frame[column] - groups[column].transform("mean")
    sums = pd.DataFrame({"dong": frame["dong"], "sxy": dt * dy, "sxx": dt * dt})
    totals = sums.groupby("dong", sort=False)[["sxy", "sxx"]].sum()
    return (totals["sxy"] / totals["sxx"]).where(totals["sxx"] > 0)


def gentrification_index(
    panel: pd.DataFrame,
    *,
    weights: dict[str, float] | None = None,
    thresholds: tuple[float, float, float] = THRESHOLDS,
    min_coverage: float = 0.5,
) -> pd.DataFrame:
    """The composite index, each indicator's contribution and the stage of every dong.

    Robust z-scores across dongs (Iglewicz & Hoaglin, 1993), winsorised at ±3 and signed, are
    averaged with ``weights`` (default :data:`DEFAULT_WEIGHTS`), renormalised over the
    indicators a dong has (OECD/JRC, 2008). ``<indicator>_contribution`` columns sum to
    ``index``; ``stage`` is 0–3 by ``thresholds`` (see the module docstring), missing where
    less than ``min_coverage`` of the weight is available.

    Examples
    --------
    >>> panel = pd.DataFrame({"rent_growth": [0.0, 1.0, 2.0, 3.0, 12.0]},
    ...                      index=pd.Index(list("abcde"), name="dong"))
    >>> result = gentrification_index(panel, weights={"rent_growth": 1.0})
    >>> result["index"].round(3).tolist(), result["stage_name"].tolist()
    ([-1.349, -0.674, 0.0, 0.674, 3.0], ['stable', 'stable', 'stable', 'early', 'advanced'])
    """
    chosen = _check_weights(weights, thresholds, panel)
    names = list(chosen)
    values = panel.reindex(columns=names).to_numpy(dtype=np.float64)
    signs = np.array([INDICATORS[n].direction for n in names], dtype=np.float64)
    scores = np.clip(_robust_z(values), -CLIP, CLIP) * signs
    weight = np.where(np.isnan(scores), 0.0, np.array([chosen[n] for n in names]))
    available = weight.sum(axis=1)
    coverage = available / sum(chosen.values())
    with np.errstate(invalid="ignore", divide="ignore"):
        parts = np.where(weight > 0, weight * np.nan_to_num(scores), 0.0) / available[:, None]
    index = np.where(coverage >= min_coverage, parts.sum(axis=1), np.nan)
    stage = pd.array(np.searchsorted(thresholds, index, side="right"), dtype="Int64")
    stage[np.isnan(index)] = pd.NA
    result = pd.DataFrame(index=panel.index)
    if "dong_name" in panel:
        result["dong_name"] = panel["dong_name"]
    result["index"], result["stage"], result["weight_coverage"] = index, stage, coverage
    result["stage_name"] = stage.map(dict(enumerate(s[0] for s in STAGES)))
    result["stage_ko"] = stage.map(dict(enumerate(s[1] for s in STAGES)))
    for k, name in enumerate(names):
        result[f"{name}_contribution"] = np.where(np.isnan(index), np.nan, parts[:, k])
    return result


def _check_weights(
    weights: dict[str, float] | None, thresholds: tuple[float, float, float], panel: pd.DataFrame
) -> dict[str, float]:
    """Positive weights of known indicators present in ``panel``; increasing thresholds."""
    chosen = dict(DEFAULT_WEIGHTS if weights is None else weights)
    problems = [f"weights: unknown indicator {n!r}" for n in chosen if n not in INDICATORS]
    problems += [f"weights[{n!r}] = {w}: expected >= 0" for n, w in chosen.items() if not w >= 0]
    if not problems and not any(chosen.get(n, 0) > 0 for n in panel.columns):
        problems.append(f"panel has no indicator with a positive weight; columns {list(panel)}")
    if len(thresholds) != len(STAGES) - 1 or np.any(np.diff(thresholds) <= 0):
        problems.append(f"thresholds {thresholds}: expected three increasing numbers")
    if problems:
        valid = ", ".join(INDICATORS)
        raise ValidationError("gentrification index: " + "; ".join(problems) + f" ({valid})")
    return {n: float(w) for n, w in chosen.items() if w > 0}


def _robust_z(values: F64) -> F64:
    """Column-wise ``(x − median) / (1.4826 · MAD)``; MeanAD × 1.2533 when the MAD is 0.

    A column with fewer than three values, or no spread at all, scores 0 (no evidence).
    """
    z = np.full_like(values, np.nan)
    for k in range(values.shape[1]):  # a handful of indicator columns, each vectorised
        column = values[:, k]
        present = column[~np.isnan(column)]
        if present.size < 3:
            logger.info("indicator %d has %d values; not scored", k, present.size)
            continue
        centre = np.median(present)
        spread = 1.4826 * np.median(np.abs(present - centre))
        spread = spread or 1.2533 * np.mean(np.abs(present - centre))
        z[:, k] = (
            (column - centre) / spread if spread > 0 else np.where(np.isnan(column), np.nan, 0)
        )
    return z


# --- maps ----------------------------------------------------------------------------------------

STAGE_COLOURS: Final = ("#d9ead3", "#ffd966", "#f6a04d", "#cc2929")
NO_DATA_COLOUR: Final = "#f2f2f2"
_CJK_FONTS: Final = ("CJK", "Nanum", "Malgun", "AppleGothic", "UnDotum", "Baekmuk")


def render_gentrification_map(
    path: str | Path,
    districts: gpd.GeoDataFrame,
    result: pd.DataFrame,
    *,
    key: str = "code",
    title: str = "Gentrification stage by dong",
) -> Path:
    """A PNG choropleth of the stages, with a legend; dongs without a stage are pale grey.

    ``districts`` are dong polygons (a ``level`` column, if any, selects ``"dong"``) whose ``key``
    column matches ``result``'s index. Labels are Korean only when a CJK font is installed.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "stages.png"
    >>> render_gentrification_map(path, _SQUARES, _SQUARE_RESULT).stat().st_size > 5_000
    True
    """
    joined = _join(districts, result, key)
    korean = _korean_font()
    figure = Figure(figsize=(9, 6), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colours = [STAGE_COLOURS[int(s)] if pd.notna(s) else NO_DATA_COLOUR for s in joined["stage"]]
    patches = [PathPatch(_mpl_path(geometry)) for geometry in joined.geometry]
    axes.add_collection(PatchCollection(patches, facecolors=colours, edgecolors="#555555", lw=0.4))
    minx, miny, maxx, maxy = joined.total_bounds
    axes.set_xlim(minx, maxx)
    axes.set_ylim(miny, maxy)
    axes.set_aspect("equal")
    axes.set_axis_off()
    labels = [f"{ko} {en}" if korean else en for en, ko in STAGES] + ["no data"]
    handles = [
        Patch(facecolor=c, edgecolor="#555555", label=label)
        for c, label in zip((*STAGE_COLOURS, NO_DATA_COLOUR), labels, strict=True)
    ]
    font = {"family": korean} if korean else None
    axes.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), prop=font, title="stage"
    )
    axes.set_title(title)
    target = Path(path)
    figure.savefig(target, format="png", bbox_inches="tight")
    return target


def gentrification_geojson(
    districts: gpd.GeoDataFrame, result: pd.DataFrame, *, key: str = "code"
) -> dict[str, object]:
    """A GeoJSON FeatureCollection (RFC 7946: WGS84 lon/lat, counter-clockwise shells).

    Properties: the dong ``key`` and ``name`` (if any), ``index``, ``stage``, ``stage_name``,
    ``stage_ko`` and ``weight_coverage`` (``null`` where missing).

    Examples
    --------
    >>> collection = gentrification_geojson(_SQUARES, _SQUARE_RESULT)
    >>> [f["properties"]["stage_name"] for f in collection["features"]]
    ['stable', 'advanced']
    >>> square = shapely.geometry.shape(collection["features"][0]["geometry"])
    >>> tuple(round(edge, 4) for edge in square.bounds)
    (127.0, 38.0, 127.0114, 38.009)
    """
    joined = _join(districts, result, key)
    lonlat = Transformer.from_crs(joined.crs, "EPSG:4326", always_xy=True)
    shapes = shapely.orient_polygons(
        shapely.transform(
            np.asarray(joined.geometry.array), lambda xy: np.c_[lonlat.transform(*xy.T)]
        )
    )
    columns = [c for c in (key, "name", "index", "stage", "stage_name", "stage_ko",
                           "weight_coverage") if c in joined]  # fmt: skip
    features = [
        {"type": "Feature", "geometry": shapely.geometry.mapping(shape),
         "properties": {c: _plain(v) for c, v in zip(columns, row, strict=True)}}
        for shape, row in zip(shapes, joined[columns].itertuples(index=False), strict=True)
    ]  # fmt: skip
    return {"type": "FeatureCollection", "features": features}


def _plain(value: object) -> object:
    """A JSON-ready scalar: numpy numbers as Python ones, missing values as ``None``."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _join(districts: gpd.GeoDataFrame, result: pd.DataFrame, key: str) -> gpd.GeoDataFrame:
    """Dong polygons with the result's columns, matched on ``districts[key]`` = result index."""
    if key not in districts.columns or districts.crs is None:
        raise ValidationError(
            f"districts: expected a CRS and a {key!r} column; columns {list(districts.columns)}, "
            f"crs {districts.crs}"
        )
    dongs = districts[districts["level"] == "dong"] if "level" in districts else districts
    ids = result.index.astype(str)
    columns = result.drop(columns=[c for c in result.columns if c in dongs.columns])
    joined = dongs.merge(columns.set_axis(ids), left_on=dongs[key].astype(str), right_index=True,
                         how="left")  # fmt: skip
    matched = int(dongs[key].astype(str).isin(ids).sum())
    if matched == 0:
        raise ValidationError(
            f"districts[{key!r}]: no value matches the result's dong ids "
            f"(e.g. {list(ids[:3])} versus {list(dongs[key].astype(str)[:3])})"
        )
    logger.info("gentrification map: %d of %d dong have a result", matched, len(dongs))
    return joined


def _mpl_path(geometry: shapely.Geometry) -> MplPath:
    """A compound matplotlib path of a (multi)polygon, holes included."""
    rings = [
        np.asarray(ring.coords)
        for polygon in shapely.get_parts(geometry)
        for ring in (polygon.exterior, *polygon.interiors)
    ]
    return MplPath.make_compound_path(*(MplPath(ring, closed=True) for ring in rings))


def _korean_font() -> str | None:
    """The name of an installed font with Hangul, if any."""
    for font in font_manager.fontManager.ttflist:
        if any(mark in font.name for mark in _CJK_FONTS):
            return str(font.name)
    return None


# two 1-km squares at EPSG:5186's origin (127° E, 38° N), for the examples above
_SQUARES = gpd.GeoDataFrame(
    {"code": ["a", "b"]},
    geometry=[
        shapely.box(200_000, 600_000, 201_000, 601_000),
        shapely.box(201_000, 600_000, 202_000, 601_000),
    ],
    crs="EPSG:5186",
)
_SQUARE_RESULT = pd.DataFrame(
    {"index": [0.1, 2.5], "stage": pd.array([0, 3], dtype="Int64"),
     "stage_name": ["stable", "advanced"]}, index=["a", "b"]
)  # fmt: skip
