"""GeoDataFrame ↔ store feature layers (ids, JSON-able properties, WKB in the city CRS)."""

from __future__ import annotations

import math
from typing import Any

import geopandas as gpd
import numpy as np
import shapely

from citytwin.store.base import FeatureBatch


def to_batch(frame: gpd.GeoDataFrame, *, id_column: str = "key") -> FeatureBatch:
    """A GeoDataFrame (already in the city CRS) as a store feature batch."""
    columns = [c for c in frame.columns if c not in (id_column, frame.geometry.name)]
    records = frame[columns].to_dict("records")
    return FeatureBatch(
        [str(i) for i in frame[id_column]],
        [{k: _plain(v) for k, v in record.items()} for record in records],
        list(shapely.to_wkb(frame.geometry.values)),
    )


def to_frame(batch: FeatureBatch, *, crs: str, id_column: str = "key") -> gpd.GeoDataFrame:
    """A store feature batch as a GeoDataFrame in ``crs``."""
    frame = gpd.GeoDataFrame(
        batch.properties,
        geometry=shapely.from_wkb(np.asarray(batch.wkb, dtype=object)) if len(batch) else [],
        crs=crs,
    )
    frame.insert(0, id_column, batch.ids)
    return frame


def _plain(value: Any) -> Any:
    """numpy scalars and NaN → JSON-able Python values (NaN becomes None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
