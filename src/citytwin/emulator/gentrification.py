"""A demo per-dong yearly panel with planted gentrification, for the gentrification analysis.

Each dong follows one trajectory, set by a planted intensity ``g``:

============  =====  ============  ===================================================
trajectory    stage  ``g`` range   what moves
============  =====  ============  ===================================================
declining     0      −1.5 … −0.7   rents lag, shops close, young adults leave, ageing
stable        0      −0.3 … 0.3    city-wide trends only (Seoul 2015–2024 magnitudes)
early         1      0.7 … 1.3     the gentrification signals below, weakly
progressing   2      1.7 … 2.3     … clearly
advanced      3      2.7 … 3.3     … strongly
============  =====  ============  ===================================================

Gentrification pressure ``p(t)`` rises linearly for three years from an onset year in the first
third of the span, scaled so that its mean over the span is ``EFFECT · g``; an effect of 1 moves
an indicator's trend by one between-dong SD. It raises rent and land-price growth, business growth
and churn (openings and closures), the franchise share, the 20–39 share and residents' out-moves,
and lowers the 65+ share and household size — the signals the KRIHS and AURI diagnostics and the
Seoul commercial-district service track (see :mod:`citytwin.analysis.gentrification`). Baselines
are of Seoul's order: ~22,000 residents and ~1,000 shops per administrative dong, commercial rent
~45 thousand KRW/m²/month, 14 % of residents moving out a year, 20–39 share ~30 %, 65+ ~15 %.
With a districts frame the gentrifying dong cluster around one or two hotspots (gentrification
spreads to neighbours, as from 홍대 to 연남·망원); with plain ids they are drawn at random.

Columns follow the Seoul Open Data commercial-district service's naming (``행정동_코드``,
``점포_수``, ``개업_점포_수`` …); the ``demo`` preset of the analysis maps them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import geopandas as gpd
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from citytwin.errors import ValidationError

F64 = NDArray[np.float64]

DEFAULT_YEARS: Final = tuple(range(2015, 2025))
#: pressure per unit of ``g``, in SDs of the dong's own trends: observed indicators also carry
#: yearly noise and the stable dongs' small ``g``, which widen their spread by about this factor,
#: so a dong of intensity ``g`` ends up about ``g`` robust SDs from the median (measured).
EFFECT: Final = 1.6
#: trajectory → (stage, g low, g high, share of dongs)
TRAJECTORIES: Final = {
    "declining": (0, -1.5, -0.7, 0.15),
    "stable": (0, -0.3, 0.3, 0.0),  # the remainder
    "early": (1, 0.7, 1.3, 0.15),
    "progressing": (2, 1.7, 2.3, 0.10),
    "advanced": (3, 2.7, 3.3, 0.10),
}
COLUMNS: Final = {
    "dong": "행정동_코드",
    "name": "행정동_코드_명",
    "year": "기준_년_코드",
    "business_count": "점포_수",
    "business_openings": "개업_점포_수",
    "business_closures": "폐업_점포_수",
    "franchise_count": "프랜차이즈_점포_수",
    "rent_per_m2": "임대료_천원_m2",
    "land_price": "공시지가_원_m2",
    "population": "총_인구_수",
    "population_20_39": "인구_20_39세",
    "population_65_plus": "인구_65세_이상",
    "households": "세대_수",
    "residents_moved_out": "전출_인구_수",
}


def generate_panel(
    dongs: Sequence[str] | gpd.GeoDataFrame,
    *,
    years: Sequence[int] = DEFAULT_YEARS,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A yearly per-dong panel and the planted truth.

    Parameters
    ----------
    dongs
        Dong ids (used as code and name), or a districts frame (its ``level == "dong"`` rows'
        ``code`` and ``name``; gentrifying dong then cluster in space).
    years
        Two or more distinct years, ascending.
    seed
        Same seed, same panel.

    Returns
    -------
    panel, truth
        ``panel``: one row per dong and year in :data:`COLUMNS`. ``truth``: indexed by dong code,
        columns ``trajectory``, ``stage`` (0–3), ``intensity`` (``g``) and ``onset`` (year).

    Examples
    --------
    >>> panel, truth = generate_panel([f"d{i}" for i in range(20)], seed=1)
    >>> len(panel), sorted(truth["stage"].unique().tolist())
    (200, [0, 1, 2, 3])
    """
    codes, names, order = _dong_ids(dongs, seed)
    year_array = np.asarray(years, dtype=np.int64)
    if year_array.size < 2 or np.any(np.diff(year_array) <= 0):
        raise ValidationError(f"years={list(years)}: expected two or more ascending years")
    rng = np.random.default_rng([seed, 7])
    truth = _plant(codes, order, year_array, rng)
    pressure = _pressure(truth, year_array)
    columns = {**_commerce(pressure, rng), **_residents(pressure, rng)}
    n, t = pressure.shape
    frame = {
        COLUMNS["dong"]: np.repeat(codes, t),
        COLUMNS["name"]: np.repeat(names, t),
        COLUMNS["year"]: np.tile(year_array, n),
    }
    frame.update({COLUMNS[key]: values.ravel() for key, values in columns.items()})
    return pd.DataFrame(frame), truth


def _dong_ids(
    dongs: Sequence[str] | gpd.GeoDataFrame, seed: int
) -> tuple[NDArray[np.str_], NDArray[np.str_], NDArray[np.intp]]:
    """Codes, names and the order in which dong are offered to the gentrifying trajectories."""
    rng = np.random.default_rng([seed, 3])
    if isinstance(dongs, gpd.GeoDataFrame):
        rows = dongs[dongs["level"] == "dong"] if "level" in dongs.columns else dongs
        codes = rows["code"].astype(str).to_numpy()
        names = rows["name"].astype(str).to_numpy() if "name" in rows.columns else codes
        centres = rows.geometry.representative_point()
        xy = np.c_[centres.x.to_numpy(), centres.y.to_numpy()]
        order = _clustered_order(xy, rng)
    else:
        codes = np.asarray([str(d) for d in dongs])
        names, order = codes, rng.permutation(codes.size)
    if codes.size < 5 or np.unique(codes).size != codes.size:
        raise ValidationError(f"dongs: expected at least 5 distinct ids, got {codes.size}")
    return codes.astype(np.str_), np.asarray(names, dtype=np.str_), order.astype(np.intp)


def _clustered_order(xy: F64, rng: np.random.Generator) -> NDArray[np.intp]:
    """Dong sorted by distance to the nearer of two random hotspots, with some shuffling."""
    hotspots = xy[rng.choice(len(xy), size=min(2, len(xy)), replace=False)]
    distance = np.min(np.hypot(*(xy[:, None, :] - hotspots[None, :, :]).transpose(2, 0, 1)), 1)
    spread = float(np.median(distance)) or 1.0
    return np.argsort(distance / spread + rng.normal(0.0, 0.3, len(xy)), kind="stable")


def _plant(
    codes: NDArray[np.str_],
    order: NDArray[np.intp],
    years: NDArray[np.int64],
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Trajectories: most intense first along ``order``; declining dong from the far end."""
    n = codes.size
    counts = {name: max(1, round(share * n)) for name, (_, _, _, share) in TRAJECTORIES.items()}
    labels = np.full(n, "stable", dtype=object)
    start = 0
    for name in ("advanced", "progressing", "early"):
        labels[order[start : start + counts[name]]] = name
        start += counts[name]
    labels[order[n - counts["declining"] :]] = "declining"
    stage = np.array([TRAJECTORIES[str(label)][0] for label in labels])
    low = np.array([TRAJECTORIES[str(label)][1] for label in labels])
    high = np.array([TRAJECTORIES[str(label)][2] for label in labels])
    span = int(years[-1] - years[0])
    onset = years[0] + rng.integers(0, max(1, span // 3) + 1, n)
    return pd.DataFrame(
        {"trajectory": labels, "stage": stage, "intensity": rng.uniform(low, high), "onset": onset},
        index=pd.Index(codes, name="dong"),
    )


def _pressure(truth: pd.DataFrame, years: NDArray[np.int64]) -> F64:
    """``g · ramp / mean(ramp)``: 0 before onset, rising linearly for three years.

    Scaled so that its mean over the span is ``g``: a dong's average shift is ``g`` between-dong
    SDs whatever its onset.
    """
    onset = truth["onset"].to_numpy(dtype=np.float64)[:, None]
    ramp = np.clip((years[None, :] - onset) / 3.0, 0.0, 1.0)
    ramp /= np.maximum(ramp.mean(axis=1, keepdims=True), 1e-9)
    pressure: F64 = EFFECT * truth["intensity"].to_numpy(dtype=np.float64)[:, None] * ramp
    return pressure


def _walk(start: F64, rate: F64, noise: float, rng: np.random.Generator) -> F64:
    """``start · exp(cumulative sum of yearly log-growth)``; the first year is ``start``."""
    steps = rate[:, 1:] + rng.normal(0.0, noise, (rate.shape[0], rate.shape[1] - 1))
    log_level = np.c_[np.zeros(len(start)), np.cumsum(steps, axis=1)]
    level: F64 = start[:, None] * np.exp(log_level)
    return level


def _spread(mean: float, sd: float, n: int, rng: np.random.Generator) -> F64:
    """One value per dong (a column): dong differ in their trends even without gentrification."""
    values: F64 = rng.normal(mean, sd, (n, 1))
    return values


def _rounded(values: F64, decimals: int = 0) -> F64:
    out: F64 = np.round(values, decimals).astype(np.float64)
    return out


def _commerce(p: F64, rng: np.random.Generator) -> dict[str, F64]:
    """Shops, churn, franchises, rent and land price; each effect is ``p`` × the between-dong SD."""
    n = int(p.shape[0])
    shop_trend = _spread(0.005, 0.01, n, rng) + 0.01 * p
    shops = _rounded(_walk(rng.lognormal(np.log(1000), 0.4, n), shop_trend, 0.01, rng))
    churn = _spread(0.10, 0.012, n, rng) + 0.02 * np.maximum(p, 0.0)
    closing = churn - 0.005 + 0.02 * np.maximum(-p, 0.0)  # decline closes shops
    share = _spread(0.14, 0.025, n, rng) + np.cumsum(_spread(0.0, 0.002, n, rng) + 0.002 * p, 1)
    rent_trend = _spread(0.015, 0.012, n, rng) + 0.012 * p
    land_trend = _spread(0.045, 0.01, n, rng) + 0.01 * p
    one = np.float64(1.0)
    return {
        "business_count": shops,
        "business_openings": rng.poisson(shops * np.clip(churn, 0.01, 1)).astype(np.float64),
        "business_closures": rng.poisson(shops * np.clip(closing, 0.01, 1)).astype(np.float64),
        "franchise_count": rng.binomial(shops.astype(np.int64), np.clip(share, 0, 0.9)) * one,
        "rent_per_m2": _rounded(_walk(rng.lognormal(np.log(45), 0.3, n), rent_trend, 0.01, rng), 2),
        "land_price": _rounded(_walk(rng.lognormal(15.4, 0.5, n), land_trend, 0.005, rng), -3),
    }  # fmt: skip


def _residents(p: F64, rng: np.random.Generator) -> dict[str, F64]:
    """Population, its 20–39 and 65+ shares, households and out-moves."""
    n = int(p.shape[0])
    people_trend = _spread(-0.005, 0.008, n, rng) - 0.004 * np.abs(p)
    people = _rounded(_walk(rng.uniform(12_000, 35_000, n), people_trend, 0.005, rng))
    young = _spread(0.29, 0.03, n, rng) + np.cumsum(_spread(0.0, 0.002, n, rng) + 0.002 * p, 1)
    old = _spread(0.15, 0.025, n, rng) + np.cumsum(_spread(0.004, 0.0015, n, rng) - 0.0015 * p, 1)
    size = _walk(rng.uniform(2.1, 2.6, n), _spread(-0.008, 0.004, n, rng) - 0.004 * p, 0.004, rng)
    moved = _spread(0.14, 0.017, n, rng) + 0.02 * np.maximum(p, 0.0) + rng.normal(0, 0.005, p.shape)
    return {
        "population": people,
        "population_20_39": _rounded(people * np.clip(young, 0.05, 0.7)),
        "population_65_plus": _rounded(people * np.clip(old, 0.02, 0.5)),
        "households": _rounded(people / size),
        "residents_moved_out": _rounded(people * np.clip(moved, 0.0, 1.0)),
    }
