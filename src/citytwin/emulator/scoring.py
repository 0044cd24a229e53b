"""QC flags scored against the injected faults: recall and precision per fault kind.

:func:`label_rows` finds the reading that holds each label and :func:`score_flags` compares the
flags of ``check_quality`` with them, so the QC checks of :mod:`citytwin.ingest.qc` are tuned and
tested on ground truth rather than by eye.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from citytwin.emulator.faults import FaultLabels
from citytwin.emulator.processes import F64, I64
from citytwin.ingest.base import Readings
from citytwin.model.quality import Flag

VALUE_FLAGS: Final = int(Flag.RANGE | Flag.SPIKE | Flag.STEP | Flag.STUCK | Flag.DRIFT | Flag.GAP)
KIND_FLAGS: Final = {
    "spike": int(Flag.SPIKE),
    "stuck": int(Flag.STUCK),
    "range": int(Flag.RANGE),
    "drift": int(Flag.DRIFT),
    "gap": int(Flag.GAP),
    "source": int(Flag.SOURCE),
}


def label_rows(labels: FaultLabels, thing_keys: Sequence[str], readings: Readings) -> I64:
    """The row of ``readings`` (sorted by thing, then time) that holds each label, -1 if none.

    ``thing_keys[i]`` is the thing key of sensor *i* of the labels, e.g. ``"sdot:" + serial``.
    """
    position = {thing.key: number for number, thing in enumerate(readings.things)}
    thing = np.array([position.get(key, -1) for key in thing_keys], np.int64)[labels.sensor]
    t0 = int(min(readings.time.min(initial=0), labels.time.min(initial=0)))
    span = int(max(readings.time.max(initial=0), labels.time.max(initial=0))) - t0 + 1
    key = readings.thing_index * span + (readings.time - t0)
    wanted = thing * span + (labels.time - t0)
    row = np.minimum(np.searchsorted(key, wanted), max(len(key) - 1, 0))
    found = (thing >= 0) & (len(key) > 0) & (key[row] == wanted)
    out: I64 = np.where(found, row, -1)
    return out


@dataclass(frozen=True)
class QcScore:
    """How QC flags match the injected faults of one kind (or ``all`` kinds).

    ``recall`` counts detectable labelled values carrying any value flag (range, spike, step,
    stuck, drift, gap); ``recall_matching`` those carrying the kind's own flag. ``precision``
    is the share of values carrying the kind's flag (any value flag for ``all``) that are
    labelled faults of any kind — including drift below the detectability tolerance, which is
    a fault even if QC is not asked to find it.
    """

    kind: str
    labelled: int
    recall: float
    recall_matching: float
    flagged: int
    precision: float


def score_flags(
    labels: FaultLabels, rows: I64, flags: dict[str, NDArray[np.int32]], values: dict[str, F64]
) -> dict[str, QcScore]:
    """Recall and precision of QC ``flags`` per fault kind and overall (key ``all``).

    Parameters
    ----------
    labels
        Ground truth from a writer.
    rows
        :func:`label_rows` of the labels.
    flags
        ``check_quality`` output for the same readings.
    values
        The readings' values (only present values count).
    """
    labelled = {p: np.zeros(len(f), bool) for p, f in flags.items()}
    bits = np.zeros(len(labels), np.int64)
    for prop, f in flags.items():
        mine = (labels.prop == prop) & (rows >= 0)
        labelled[prop][rows[mine]] = True
        bits[mine] = f[rows[mine]]
    out: dict[str, QcScore] = {}
    for kind, flag in [("all", VALUE_FLAGS), *KIND_FLAGS.items()]:
        target = labels.detectable & (rows >= 0) & ((labels.kind == kind) | (kind == "all"))
        hits = [(flags[p] & flag != 0) & ~np.isnan(values[p]) for p in flags]
        flagged = sum(int(h.sum()) for h in hits)
        true = sum(int((h & labelled[p]).sum()) for h, p in zip(hits, flags, strict=True))
        if not target.any() and not flagged:
            continue
        count = max(int(target.sum()), 1)
        own = flag if kind != "all" else VALUE_FLAGS
        out[kind] = QcScore(
            kind,
            int(target.sum()),
            int((bits[target] & VALUE_FLAGS != 0).sum()) / count,
            int((bits[target] & own != 0).sum()) / count,
            flagged,
            true / max(flagged, 1),
        )
    return out
