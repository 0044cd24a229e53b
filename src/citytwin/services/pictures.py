"""Pictures of the analyses that are not maps by nature: anomalies on the sensor map, noise
levels per station, a forecast after its history, a backtest's error per horizon."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap

from citytwin.analysis.anomalies import EVENT, FAULT, AnomalyResult
from citytwin.analysis.backtest import BacktestResult
from citytwin.analysis.charts import render_curves, render_series
from citytwin.analysis.render import render_choropleth
from citytwin.errors import ValidationError
from citytwin.services.series import SeriesForecast
from citytwin.space.crs import DEFAULT_CITY_CRS, to_city
from citytwin.store.base import Store
from citytwin.twin.state import Twin

HISTORY_SHOWN = pd.Timedelta(days=7)
FAULTY_SHARE = 0.05  # a sensor with ≥ 5 % faulty readings in the window is faulty, not glitchy
STATE_COLOURS = {"event": "#7b3294", "faulty": "#d7191c", "glitch": "#fdae61", "normal": "#bababa"}


def anomaly_picture(result: AnomalyResult, sensors: gpd.GeoDataFrame, out: Path) -> Path:
    """The sensors coloured by what they did in the window: part of an event, faulty (at least
    :data:`FAULTY_SHARE` of their readings), an occasional glitch, or normal."""
    labels = np.asarray(result.labels)
    fault_share = (labels == FAULT).mean(axis=1)
    state = np.select(
        [(labels == EVENT).any(axis=1), fault_share >= FAULTY_SHARE, fault_share > 0],
        ["event", "faulty", "glitch"],
        "normal",
    )
    frame = sensors[["thing", "geometry"]].copy()
    frame["state"] = state
    counts = pd.Series(state).value_counts().to_dict()
    title = ", ".join(f"{counts.get(name, 0):,} {name}" for name in STATE_COLOURS)
    palette = ListedColormap([STATE_COLOURS[name] for name in sorted(set(state))])
    return render_choropleth(
        out, frame, "state", title=title, unit="sensors", categorical=True, cmap=palette
    )


def noise_picture(
    report: pd.DataFrame, store: Store, out: Path, *, crs: str = DEFAULT_CITY_CRS
) -> Path:
    """Stations coloured by their composite level (Lden, or Ldn for the Korean periods)."""
    level = next((c for c in ("Lden", "Ldn") if c in report.columns), None)
    if level is None or "day" in report.columns:
        raise ValidationError("noise picture: expected the overall report (not --daily)")
    places = Twin(store).catalogue().drop_duplicates("thing").set_index("thing")[["lon", "lat"]]
    located = report.join(places, on="thing").dropna(subset=["lon", "lat", level])
    x, y = to_city(located["lon"].to_numpy(), located["lat"].to_numpy(), crs)
    frame = gpd.GeoDataFrame(located[["thing", level]], geometry=gpd.points_from_xy(x, y), crs=crs)
    title = f"{level} per station ({len(frame):,} with a complete level)"
    return render_choropleth(out, frame, level, title=title, unit="dB", cmap="magma_r")


def forecast_picture(result: SeriesForecast, out: Path, *, unit: str = "") -> Path:
    """The last week of the hourly history and the forecast after it."""
    recent = result.history[result.history.index >= result.history.index[-1] - HISTORY_SHOWN]
    return render_series(
        out,
        {"observed (hourly mean)": recent, "forecast": result.forecast},
        title=f"{result.observed_property} forecast for {result.subject}",
        unit=unit or result.observed_property,
        divide_at=result.history.index[-1],
    )


def backtest_picture(result: BacktestResult, out: Path, *, name: str) -> Path:
    """MAE per horizon of the model and both baselines."""
    table = result.table
    return render_curves(
        out,
        table.index.to_numpy(),
        {
            "model": table["model_mae"].to_numpy(),
            "persistence": table["persistence_mae"].to_numpy(),
            "seasonal naive": table["seasonal_naive_mae"].to_numpy(),
        },
        title=f"{name}: rolling-origin backtest, {len(result.origins):,} origins",
        xlabel="horizon (hours ahead)",
        ylabel="mean absolute error",
    )
