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
:class:`~citytwin.analysis.gentrification_mapping.GentrificationMapping` (YAML; a ``demo`` preset
maps the emulator's panel); the raw keys it may name are listed in
:mod:`citytwin.analysis.gentrification_mapping`.

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
stages (see the tests for the recovery figures). The map and GeoJSON are in
:mod:`citytwin.analysis.gentrification_maps`.
"""

from __future__ import annotations

import logging
from typing import Final

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from citytwin.analysis.gentrification_mapping import (
    INDICATORS,
    SHARE_KEYS,
    GentrificationMapping,
)
from citytwin.errors import MappingError, ValidationError

logger = logging.getLogger(__name__)
F64 = NDArray[np.float64]

DEFAULT_WEIGHTS: Final = {name: spec.weight for name, spec in INDICATORS.items() if spec.weight}
STAGES: Final = (
    ("stable", "안정"),
    ("early", "초기"),
    ("progressing", "진행"),
    ("advanced", "심화"),
)
THRESHOLDS: Final = (0.5, 1.25, 2.0)
CLIP: Final = 3.0


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
