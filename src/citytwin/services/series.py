"""Decision-support services over the twin, in time: noise indicators and forecasts of one
sensor's or one district's series."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from citytwin.analysis.forecast import forecast
from citytwin.analysis.noise import noise_indicators, station_indicators
from citytwin.errors import ValidationError
from citytwin.store.base import Store
from citytwin.twin.fields import sensor_panel
from citytwin.twin.state import SUSPECT, Twin

MIN_HISTORY_HOURS = 48 + 7 * 24  # the forecaster's lags and daily means, plus a week to fit on


def noise_report(
    store: Store,
    *,
    observed_property: str = "noise",
    thing: str | None = None,
    periods: Literal["eu", "korea"] = "eu",
    daily: bool = False,
) -> pd.DataFrame:
    """Noise indicators (Lday, Levening, Lnight, Lden — or the Korean day/night) per sensor over
    the stored span, or per sensor and evaluation day (``daily``); readings of any step are
    averaged energetically into hours first. Suspect readings (QC) are left out."""
    catalogue = Twin(store).catalogue()
    streams = catalogue[catalogue["observed_property"] == observed_property]
    if thing is not None:
        streams = streams[streams["thing"] == thing]
    if streams.empty:
        what = f"{observed_property} datastream" + (f" of thing {thing!r}" if thing else "")
        raise ValidationError(f"no {what} in the store")
    frame = store.observations(datastream_ids=streams["datastream_id"].astype(int).tolist())
    keep = (frame.quality & SUSPECT) == 0
    readings = pd.DataFrame(
        {
            "station": frame.datastream_id[keep],
            "time": pd.to_datetime(frame.phenomenon_time[keep], unit="us", utc=True),
            "level": frame.result[keep],
        }
    )
    if daily:
        table = pd.concat(
            [
                noise_indicators(_hourly_levels(group), periods=periods)
                .reset_index()
                .assign(station=station)
                for station, group in readings.groupby("station")
            ],
            ignore_index=True,
        )
    else:
        table = station_indicators(readings, periods=periods)
    names = streams.set_index("datastream_id")[["thing", "name"]]
    table = table.join(names, on="station").drop(columns="station")
    first = ["thing", "name", *(["day"] if daily else [])]
    return table[first + [c for c in table.columns if c not in first]]


def _hourly_levels(readings: pd.DataFrame) -> pd.Series[float]:
    """One station's readings as hourly energetic means (hours without readings left out)."""
    energy = pd.Series(10.0 ** (readings["level"].to_numpy() / 10.0), index=readings["time"])
    hourly = energy.resample("h").mean().dropna()
    return pd.Series(10.0 * np.log10(hourly.to_numpy()), index=hourly.index)


@dataclass(frozen=True)
class SeriesForecast:
    """Hourly history of one sensor or district and the forecast after it (UTC hours)."""

    observed_property: str
    subject: str
    history: pd.Series
    forecast: pd.Series


def series_forecast(
    store: Store,
    observed_property: str,
    *,
    thing: str | None = None,
    district: str | None = None,
    horizon: int = 24,
) -> SeriesForecast:
    """Forecast the next ``horizon`` hours of one sensor (``thing``) or of a district's sensor
    mean (``district`` = ``gu:<code>`` or ``dong:<code>``) from its hourly history."""
    if (thing is None) == (district is None):
        raise ValidationError("forecast: name exactly one of a thing or a district")
    panel, sensors = sensor_panel(Twin(store), observed_property)
    if thing is not None:
        if thing not in panel.index:
            raise ValidationError(f"thing {thing!r}: no hourly {observed_property} readings")
        history = panel.loc[thing]
        subject = thing
    else:
        level, _, code = str(district).partition(":")
        column = f"{level}_code"
        if level not in ("gu", "dong") or column not in sensors.columns:
            raise ValidationError(
                f"district {district!r}: expected gu:<code> or dong:<code> of bound sensors "
                "(run `citytwin bind` first)"
            )
        members = sensors.loc[sensors[column].astype(str) == code, "thing"]
        if members.empty:
            raise ValidationError(
                f"district {district!r}: no sensor bound to it (after importing boundaries, "
                "`citytwin bind` places sensors in their districts)"
            )
        history = panel.loc[members].mean(axis=0)
        subject = str(district)
    history = pd.Series(history.to_numpy(float), index=pd.DatetimeIndex(panel.columns))
    present = int(history.notna().sum())
    if present < MIN_HISTORY_HOURS:
        raise ValidationError(
            f"forecast of {subject}: {present} hours of {observed_property} stored; "
            f"the forecaster needs at least {MIN_HISTORY_HOURS} hours (9 days)"
        )
    ahead = forecast(history.rename(subject), horizon=horizon)
    return SeriesForecast(observed_property, subject, history, ahead)
