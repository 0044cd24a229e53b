"""The ingest's array work between parsing and storing: duplicate rows in a batch and the unpivot
of wide readings into long observation frames (:class:`~citytwin.store.base.ObservationFrame`).

Pure numpy on :class:`~citytwin.ingest.base.Readings` (no store, no threads), so
:mod:`citytwin.ingest.pipeline` keeps only the orchestration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from citytwin.ingest.base import Readings
from citytwin.ingest.source import Reject
from citytwin.model.quality import Flag
from citytwin.store.base import ObservationFrame


def settle_duplicates(
    readings: Readings, line_text: Callable[[int], str] | None
) -> tuple[Readings, int, list[Reject]]:
    """Same (thing, time) twice in one batch: identical rows are duplicates; differing rows
    are quarantined (the first one stays, flagged DUPLICATE)."""
    same = np.r_[
        False,
        (readings.thing_index[1:] == readings.thing_index[:-1])
        & (readings.time[1:] == readings.time[:-1]),
    ]
    if not same.any():
        return readings, 0, []
    group_first = np.maximum.accumulate(np.where(~same, np.arange(len(same)), 0))
    differs = np.zeros(len(same), bool)
    for values in readings.values.values():
        a, b = values, values[group_first]
        differs |= ~((a == b) | (np.isnan(a) & np.isnan(b)))
    identical = same & ~differs
    conflict = same & differs
    duplicate_values = sum(
        int(np.count_nonzero(~np.isnan(v[identical]))) for v in readings.values.values()
    )
    rows = np.flatnonzero(conflict)
    # one reject per line: a line holds several readings in some feeds (a day's 24 hours)
    _, first_of_line = np.unique(readings.line[rows], return_index=True)
    rejects = [
        Reject(
            int(readings.line[i]),
            line_text(int(readings.line[i])) if line_text else "",
            f"same sensor and time as line {int(readings.line[group_first[i]])} "
            "but different values; the first is kept",
        )
        for i in rows[np.sort(first_of_line)]
    ]
    flagged_first = np.zeros(len(same), bool)
    flagged_first[group_first[conflict]] = True
    kept = readings.take(~same)
    if flagged_first.any():
        kept.source_flags = dict(kept.source_flags)
        kept.source_flags["__duplicate__"] = flagged_first[~same]
    return kept, duplicate_values, rejects


def to_frame(
    readings: Readings,
    flags: dict[str, NDArray[np.int32]],
    ids: dict[str, NDArray[np.int64]],
    keys: Sequence[str] | None = None,
) -> ObservationFrame:
    """Unpivot the wide readings of properties ``keys`` (default all) into one long frame,
    property by property. Readings are ordered by (thing, time), so each property's part is
    grouped by datastream and ordered by time, which lets the store skip a sort; frames of
    different properties share no identity."""
    thing, time = readings.thing_index, readings.time
    duplicate = readings.source_flags.get("__duplicate__")
    duplicate_bits = (
        None if duplicate is None else np.where(duplicate, np.int32(Flag.DUPLICATE), np.int32(0))
    )
    values = {key: readings.values[key] for key in (readings.values if keys is None else keys)}
    kept = {key: present_rows(v) for key, v in values.items()}
    total = sum(len(values[key]) if index is None else len(index) for key, index in kept.items())
    out = ObservationFrame(
        np.empty(total, np.int64),
        np.empty(total, np.int64),
        np.empty(total, np.float64),
        np.empty(total, np.int32),
    )
    start = 0
    for key, column in values.items():
        index = kept[key]
        end = start + (len(column) if index is None else len(index))
        part = slice(start, end)
        quality = flags[key]
        if duplicate_bits is not None:
            quality = quality | duplicate_bits
        if index is None:
            np.take(ids[key], thing, out=out.datastream_id[part])
            out.phenomenon_time[part] = time
            out.result[part] = column
            out.quality[part] = quality
        else:
            np.take(ids[key], thing[index], out=out.datastream_id[part])
            np.take(time, index, out=out.phenomenon_time[part])
            np.take(column, index, out=out.result[part])
            np.take(quality, index, out=out.quality[part])
        start = end
    return out


def present_rows(values: NDArray[np.float64]) -> NDArray[np.intp] | None:
    """Indices of the non-NaN values, or ``None`` when all are present."""
    missing = np.isnan(values)
    return np.flatnonzero(~missing) if missing.any() else None
