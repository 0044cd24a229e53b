"""What the analysis reads from the twin: one property's values at the sensors, as a snapshot
(one value per sensor over a time window) or as a panel (sensors × hours), in the city CRS.

These are the only bridges from the store to :mod:`citytwin.analysis`, whose functions take
arrays and frames: the CLI and the API call them, then hand the results to the analysis.
Suspect readings (QC flags ``RANGE``, ``SPIKE``, ``STUCK``, ``DRIFT``, ``FUTURE``) are left out
unless asked otherwise, and decibels are averaged energetically.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import geopandas as gpd
import numpy as np
import pandas as pd

from citytwin.errors import ValidationError
from citytwin.model.vocabulary import PROPERTIES
from citytwin.space.crs import DEFAULT_CITY_CRS, to_city
from citytwin.space.layers import to_frame
from citytwin.store.base import Store
from citytwin.twin.state import SUSPECT, Twin

DISTRICTS = "districts"
HOUR_MICROS = 3_600_000_000


@dataclass(frozen=True)
class SensorField:
    """One observed property at the sensors over ``[start, end)``.

    ``sensors`` is a GeoDataFrame of points in ``crs`` with ``thing``, ``name``, ``value`` (the
    window's mean: energetic for decibels), ``count`` and the sensor's ``gu``/``dong`` bindings.
    """

    observed_property: str
    unit: str
    start: datetime
    end: datetime
    sensors: gpd.GeoDataFrame


def is_decibel(unit: str) -> bool:
    """Whether values in ``unit`` are levels in dB (to be averaged as energies)."""
    return unit.replace(" ", "").lower() in ("db", "db(a)", "dba", "db[a]")


def known_properties() -> list[str]:
    """The vocabulary's observed-property keys (for error messages and CLI help)."""
    return [p.key for p in PROPERTIES]


def sensor_field(
    twin: Twin,
    observed_property: str,
    *,
    at: datetime | None = None,
    window: timedelta = timedelta(hours=1),
    exclude_flags: int = SUSPECT,
    crs: str = DEFAULT_CITY_CRS,
) -> SensorField:
    """Each located sensor's mean of ``observed_property`` over the ``window`` ending at ``at``
    (default: the latest reading of that property anywhere in the store)."""
    streams = _located_streams(twin, observed_property)
    ids = streams["datastream_id"].astype(int).tolist()
    end = _window_end(twin.store, ids, at)
    start = end - window
    frame = twin.store.observations(datastream_ids=ids, start=start, end=end)
    usable = (frame.quality & exclude_flags) == 0
    readings = pd.DataFrame(
        {"datastream_id": frame.datastream_id[usable], "value": frame.result[usable]}
    ).dropna()
    unit = str(streams["unit"].iloc[0])
    if is_decibel(unit):
        readings["value"] = 10.0 ** (readings["value"] / 10.0)
    means = readings.groupby("datastream_id")["value"].agg(["mean", "count"]).reset_index()
    if is_decibel(unit):
        means["mean"] = 10.0 * np.log10(means["mean"])
    merged = streams.merge(means, on="datastream_id").rename(columns={"mean": "value"})
    if merged.empty:
        raise ValidationError(
            f"no usable {observed_property} readings in [{start.isoformat()}, {end.isoformat()}); "
            "choose another --at or a longer window"
        )
    return SensorField(observed_property, unit, start, end, _points(merged, crs))


def sensor_panel(
    twin: Twin,
    observed_property: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    exclude_flags: int = SUSPECT,
    crs: str = DEFAULT_CITY_CRS,
) -> tuple[pd.DataFrame, gpd.GeoDataFrame]:
    """Hourly means as a ``sensors × hours`` table (index ``thing``, UTC hour columns, NaN where
    a sensor had no usable reading), and the sensors as points in ``crs`` (same order)."""
    streams = _located_streams(twin, observed_property)
    table = twin.store.aggregate(
        bucket="hour",
        by="datastream",
        start=start,
        end=end,
        observed_property=observed_property,
        exclude_flags=exclude_flags,
    ).to_pandas()
    table["datastream_id"] = table["group"].astype(np.int64)
    table["bucket"] = pd.to_datetime(table["bucket"]).dt.tz_localize(UTC)
    table = table.merge(streams[["datastream_id", "thing"]], on="datastream_id")
    if table.empty:
        raise ValidationError(f"no usable {observed_property} readings between {start} and {end}")
    wide = table.pivot_table(index="thing", columns="bucket", values="mean", aggfunc="mean")
    hours = pd.date_range(wide.columns.min(), wide.columns.max(), freq="h")
    wide = wide.reindex(columns=hours)
    located = streams.drop_duplicates("thing").set_index("thing").loc[wide.index].reset_index()
    return wide, _points(located, crs)


def district_outlines(
    store: Store, *, level: str = "gu", crs: str = DEFAULT_CITY_CRS
) -> gpd.GeoDataFrame | None:
    """The store's district polygons of one level (``gu`` or ``dong``), or ``None`` if none."""
    if not store.layers().get(DISTRICTS):
        return None
    frame = to_frame(store.features(DISTRICTS), crs=crs)
    if "level" in frame.columns:
        frame = frame[frame["level"] == level]
    return frame.reset_index(drop=True) if len(frame) else None


def _located_streams(twin: Twin, observed_property: str) -> pd.DataFrame:
    catalogue = twin.catalogue()
    streams = catalogue[catalogue["observed_property"] == observed_property]
    if streams.empty:
        present = sorted(set(catalogue["observed_property"].dropna()))
        raise ValidationError(
            f"observed property {observed_property!r}: no datastream in the store; "
            f"present: {', '.join(present) or 'none'}"
        )
    located = streams.dropna(subset=["lon", "lat"])
    if located.empty:
        raise ValidationError(f"observed property {observed_property!r}: no located sensors")
    return located.reset_index(drop=True)


def _window_end(store: Store, ids: list[int], at: datetime | None) -> datetime:
    if at is not None:
        if at.tzinfo is None:
            raise ValidationError(f"time {at.isoformat()}: expected a timezone (e.g. +09:00 or Z)")
        return at.astimezone(UTC)
    latest = store.latest(ids)
    if not len(latest):
        raise ValidationError("no readings stored for these sensors yet")
    minute = 60_000_000  # the window ends at the minute after the newest reading, to include it
    newest = int(latest.phenomenon_time.max())
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
        microseconds=(newest // minute + 1) * minute
    )


def _points(frame: pd.DataFrame, crs: str) -> gpd.GeoDataFrame:
    x, y = to_city(frame["lon"].to_numpy(float), frame["lat"].to_numpy(float), crs)
    keep = [
        c
        for c in ("thing", "name", "value", "count", "gu", "gu_code", "dong", "dong_code")
        if c in frame.columns
    ]
    return gpd.GeoDataFrame(frame[keep].copy(), geometry=gpd.points_from_xy(x, y), crs=crs)


@dataclass(frozen=True)
class SensorReadings:
    """Raw readings of one property on a regular time axis: ``values`` and ``quality`` (the QC
    flag bits) are ``sensors × times`` (NaN / 0 where a sensor sent nothing), ``sensors`` the
    points in the city CRS in the same order."""

    observed_property: str
    unit: str
    times: pd.DatetimeIndex
    values: np.ndarray
    quality: np.ndarray
    sensors: gpd.GeoDataFrame


def sensor_readings(
    twin: Twin,
    observed_property: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    step: timedelta | None = None,
    crs: str = DEFAULT_CITY_CRS,
) -> SensorReadings:
    """Every reading of ``observed_property`` in ``[start, end)``, flags included, on a time axis
    of ``step`` (default: the most common interval between a sensor's readings)."""
    streams = _located_streams(twin, observed_property)
    ids = streams["datastream_id"].astype(np.int64).to_numpy()
    frame = twin.store.observations(datastream_ids=ids.tolist(), start=start, end=end)
    if not len(frame):
        raise ValidationError(f"no {observed_property} readings between {start} and {end}")
    step_us = _step_micros(frame.datastream_id, frame.phenomenon_time, step)
    first = int(frame.phenomenon_time.min()) // step_us * step_us
    column = (frame.phenomenon_time - first) // step_us
    row = np.searchsorted(np.sort(ids), frame.datastream_id)
    order = np.argsort(ids)
    shape = (len(ids), int(column.max()) + 1)
    values = np.full(shape, np.nan)
    quality = np.zeros(shape, np.int64)
    values[order[row], column] = frame.result
    quality[order[row], column] = frame.quality
    times = pd.date_range(
        pd.Timestamp(first, unit="us", tz=UTC), periods=shape[1], freq=pd.Timedelta(step_us, "us")
    )
    unit = str(streams["unit"].iloc[0])
    return SensorReadings(observed_property, unit, times, values, quality, _points(streams, crs))


def _step_micros(datastreams: np.ndarray, times: np.ndarray, step: timedelta | None) -> int:
    if step is not None:
        return int(step / timedelta(microseconds=1))
    same = datastreams[1:] == datastreams[:-1]
    gaps = np.diff(times)[same]
    gaps = gaps[gaps > 0]
    if not len(gaps):
        return HOUR_MICROS
    found, counts = np.unique(gaps, return_counts=True)
    return int(found[np.argmax(counts)])
