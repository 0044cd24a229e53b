"""Twin state: what every sensor says now, which city object it belongs to, and rollups.

Bindings come from ``citytwin bind`` (Thing properties ``gu_code``, ``dong_code``, ``building``,
``road_link``); values from the store. Rollups leave out suspect values — flagged ``RANGE``,
``SPIKE``, ``STUCK``, ``DRIFT`` or ``FUTURE`` by QC — unless asked otherwise: a broken sensor must
not paint its district red.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import numpy as np
import pandas as pd

from citytwin.model.quality import Flag, flag_names
from citytwin.model.sensing import Datastream, Location, ObservedProperty, Thing
from citytwin.store.base import Bucket, Store

SUSPECT = int(Flag.RANGE | Flag.SPIKE | Flag.STUCK | Flag.DRIFT | Flag.FUTURE)
Level = Literal["gu", "dong"]
BINDINGS = ("gu_code", "gu", "dong_code", "dong", "building", "road_link")


class Twin:
    """Read-side view of the city over a store.

    >>> from citytwin.store import open_store
    >>> Twin(open_store("memory://")).latest().empty
    True
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def catalogue(self) -> pd.DataFrame:
        """One row per datastream: ids, thing key and name, property, unit, position, bindings."""
        things = {t.id: t for t in self.store.entities(Thing)}
        places = {loc.thing_id: loc.location.coordinates for loc in self.store.entities(Location)}
        # feeds record the vocabulary key on the datastream; API clients link an ObservedProperty
        # of their own, known here by its name
        named = {p.id: p.name for p in self.store.entities(ObservedProperty)}
        rows = []
        for ds in self.store.entities(Datastream):
            thing = things.get(ds.thing_id)
            lon, lat = (places.get(ds.thing_id) or [np.nan, np.nan])[:2]
            props = thing.properties if thing else {}
            rows.append(
                {
                    "datastream_id": ds.id,
                    "thing_id": ds.thing_id,
                    "thing": thing.key if thing else None,
                    "name": thing.name if thing else None,
                    "observed_property": ds.properties.get("observedProperty")
                    or named.get(ds.observed_property_id),
                    "unit": ds.unit_of_measurement.symbol,
                    "lon": lon,
                    "lat": lat,
                    **{b: props.get(b) for b in BINDINGS},
                }
            )
        columns = [
            "datastream_id",
            "thing_id",
            "thing",
            "name",
            "observed_property",
            "unit",
            "lon",
            "lat",
            *BINDINGS,
        ]
        return pd.DataFrame(rows, columns=columns)

    def latest(
        self,
        *,
        observed_property: str | None = None,
        bbox: tuple[float, float, float, float] | None = None,
    ) -> pd.DataFrame:
        """The latest value of every datastream (WGS84 ``bbox`` = west, south, east, north)."""
        catalogue = self.catalogue()
        if observed_property is not None:
            catalogue = catalogue[catalogue["observed_property"] == observed_property]
        if bbox is not None:
            west, south, east, north = bbox
            inside = catalogue["lon"].between(west, east) & catalogue["lat"].between(south, north)
            catalogue = catalogue[inside]
        frame = self.store.latest(catalogue["datastream_id"].astype(int).tolist())
        values = pd.DataFrame(
            {
                "datastream_id": frame.datastream_id,
                "time": pd.to_datetime(frame.phenomenon_time, unit="us", utc=True),
                "value": frame.result,
                "quality": frame.quality,
            }
        )
        merged = catalogue.merge(values, on="datastream_id", how="inner")
        merged["flags"] = [flag_names(int(q)) for q in merged["quality"]]
        return merged.sort_values(["thing", "observed_property"]).reset_index(drop=True)

    def sensors_of(self, key: str, *, observed_property: str | None = None) -> pd.DataFrame:
        """Latest values of the sensors bound to a city object.

        ``key`` is a district (``gu:11240``, ``dong:1124075``), a building (``osm:way/…``) or a
        road link key, as the city layers store them.
        """
        latest = self.latest(observed_property=observed_property)
        level, _, code = key.partition(":")
        if level in ("gu", "dong") and code.isdigit():
            return latest[latest[f"{level}_code"] == code].reset_index(drop=True)
        return latest[(latest["building"] == key) | (latest["road_link"] == key)].reset_index(
            drop=True
        )

    def rollup(
        self,
        level: Level,
        *,
        observed_property: str | None = None,
        bucket: Bucket | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        exclude_flags: int = SUSPECT,
    ) -> pd.DataFrame:
        """Mean, max and count per district and observed property.

        ``bucket=None``: the current state (each sensor's latest value); ``"hour"``/``"day"``:
        time buckets over [start, end) from the store.
        """
        code = f"{level}_code"
        if bucket is None:
            latest = self.latest(observed_property=observed_property)
            usable = latest[(latest["quality"] & exclude_flags) == 0].dropna(subset=[code])
            grouped = usable.groupby([code, "observed_property"])["value"]
            out = grouped.agg(["mean", "max", "count"]).reset_index()
            return out.rename(columns={code: "district"})
        table: pd.DataFrame = self.store.aggregate(
            bucket=bucket,
            by=f"thing.{code}",
            start=start,
            end=end,
            observed_property=observed_property,
            exclude_flags=exclude_flags,
        ).to_pandas()
        table = table.rename(columns={"group": "district"})
        table["bucket"] = pd.to_datetime(table["bucket"]).dt.tz_localize("UTC")
        return table[["district", "observed_property", "bucket", "mean", "max", "count"]]

    def history(
        self,
        thing: str,
        *,
        observed_property: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        """All observations of one thing (by key) in [start, end), oldest first."""
        catalogue = self.catalogue()
        streams = catalogue[catalogue["thing"] == thing]
        if observed_property is not None:
            streams = streams[streams["observed_property"] == observed_property]
        frame = self.store.observations(
            datastream_ids=streams["datastream_id"].astype(int).tolist(), start=start, end=end
        )
        out = pd.DataFrame(
            {
                "datastream_id": frame.datastream_id,
                "time": pd.to_datetime(frame.phenomenon_time, unit="us", utc=True),
                "value": frame.result,
                "quality": frame.quality,
            }
        ).merge(streams[["datastream_id", "observed_property"]], on="datastream_id")
        return out.sort_values(["observed_property", "time"]).reset_index(drop=True)
