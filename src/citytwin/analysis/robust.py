"""Robust statistics over sensors × times matrices: NaN-aware medians, robust z-scores, runs.

The building blocks of :mod:`citytwin.analysis.anomalies`, vectorised over whole matrices:

- :func:`nan_median` — a median that ignores NaN without numpy's all-NaN warning;
- :func:`robust_z` — departure from a trailing median in units of 1.4826 × the trailing MAD (the
  robust standard deviation of Leys et al., 2013, *Detecting outliers: do not use standard
  deviation around the mean, use absolute deviation around the median*, JESP 49, 764–766), with
  the per-sensor scale clipped to a band around the network's median scale;
- runs of True along each row: :func:`run_lengths`, :func:`run_spans` and :func:`runs_touching`
  (hysteresis thresholding along time, Canny 1986, *A computational approach to edge detection*,
  IEEE PAMI 8, 679–698);
- :func:`stuck_runs` — runs of identical readings while the neighbours' consensus moves.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

Floats = NDArray[np.float64]
Bools = NDArray[np.bool_]
Ints = NDArray[np.int64]

_MAD_SD = 1.4826  # MAD → standard deviation of a normal distribution
_SCALE_FLOOR = 0.1  # a sensor's scale is at least this share of the network's median scale …
_SCALE_CAP = 2.0  # … and at most this multiple: a long fault (drift) inflates its own MAD


def nan_median(a: Floats, *, axis: int) -> Floats:
    """Median along ``axis`` ignoring NaN (NaN where all are NaN), without numpy's warning.

    >>> nan_median(np.array([[1.0, np.nan, 3.0, 10.0], [np.nan] * 4]), axis=1).tolist()
    [3.0, nan]
    """
    ordered = np.sort(a, axis=axis)  # NaN sort last
    count = np.sum(~np.isnan(a), axis=axis, keepdims=True)
    low = np.take_along_axis(ordered, np.maximum(count - 1, 0) // 2, axis=axis)
    high = np.take_along_axis(ordered, count // 2 - (count == 0), axis=axis)
    out: Floats = np.squeeze(0.5 * (low + high), axis=axis)
    return out


def _trailing_median(a: Floats, window: int) -> Floats:
    """Median of each row over the trailing ``window`` columns; warm-up columns share the first
    full window's median (pandas' skip-list rolling median, NaN ignored)."""
    rolled = pd.DataFrame(a.T).rolling(window, min_periods=1).median().to_numpy().T.copy()
    full = min(window, a.shape[1]) - 1
    rolled[:, :full] = rolled[:, full : full + 1]
    out: Floats = rolled
    return out


def robust_z(a: Floats, window: int) -> Floats:
    """(a − trailing median) / (1.4826 × trailing MAD), each row its own scale, clipped to
    :data:`_SCALE_FLOOR`–:data:`_SCALE_CAP` × the network's median scale: a quantised, quiet
    sensor stays finite, and a drift that fills much of the window cannot hide by inflating
    its own scale (sensors of one model share their noise, so honest scales differ less).

    >>> a = np.tile([0.0, 1.0, -1.0, 0.5, -0.5], (2, 4))
    >>> a[1, -1] = 12.0
    >>> robust_z(a, 100)[:, -1].round(1).tolist()
    [-0.7, 16.2]
    """
    centre = _trailing_median(a, window)
    scale = _MAD_SD * _trailing_median(np.abs(a - centre), window)
    typical = float(np.nan_to_num(nan_median(scale.ravel(), axis=0)))
    floor = max(_SCALE_FLOOR * typical, 1e-12)
    out: Floats = (a - centre) / np.clip(
        np.nan_to_num(scale, nan=floor), floor, _SCALE_CAP * typical
    )
    return out


def _run_ids(mask: Bools) -> Ints:
    """Id of each cell's run of True along its row (False cells carry a neighbour's id)."""
    start = mask.copy()
    start[:, 1:] &= ~mask[:, :-1]
    out: Ints = np.cumsum(start.ravel(), dtype=np.int64).reshape(mask.shape)
    return out


def run_lengths(mask: Bools) -> Ints:
    """Length of the run of True each True cell belongs to (0 for False cells).

    >>> run_lengths(np.array([[True, True, False, True], [False, True, True, True]])).tolist()
    [[2, 2, 0, 1], [0, 3, 3, 3]]
    """
    ids = _run_ids(mask)
    length = np.bincount(ids.ravel(), weights=mask.ravel()).astype(np.int64)
    out: Ints = np.where(mask, length[ids], 0)
    return out


def runs_touching(candidate: Bools, core: Bools) -> Bools:
    """Candidate cells whose run of candidates (along the row) holds a core cell: hysteresis
    thresholding (Canny 1986) along time.

    >>> candidate = np.array([[True, True, False, True, True]])
    >>> core = np.array([[False, True, False, False, False]])
    >>> runs_touching(candidate, core).astype(int).tolist()
    [[1, 1, 0, 0, 0]]
    """
    ids = _run_ids(candidate)
    has = np.bincount(ids.ravel(), weights=(candidate & core).ravel()) > 0
    out: Bools = candidate & has[ids]
    return out


def run_spans(mask: Bools) -> tuple[Ints, Ints, Ints]:
    """Sensor, first and last time index of every run of True along each row.

    >>> mask = np.array([[False, True, True, False], [True, False, False, True]])
    >>> [index.tolist() for index in run_spans(mask)]
    [[0, 1, 1], [1, 0, 3], [2, 0, 3]]
    """
    edge = np.diff(np.pad(mask.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    row, first = np.nonzero(edge == 1)
    _, after = np.nonzero(edge == -1)
    return row.astype(np.int64), first.astype(np.int64), after.astype(np.int64) - 1


def stuck_runs(y: Floats, consensus: Floats, length: int) -> Bools:
    """Readings in runs of ≥ ``length`` identical values while the neighbours' consensus moves.

    >>> y = np.array([[1.0, 2, 2, 2, 2, 3], [1, 2, 2, 2, 2, 3]])
    >>> moving = np.array([[0.0, 1, 2, 3, 4, 5], [0, 1, 1, 1, 1, 5]])
    >>> stuck_runs(y, moving, 4).astype(int).tolist()
    [[0, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0]]
    """
    n, steps = y.shape
    same = np.zeros((n, steps + 1), bool)
    same[:, 1:steps] = y[:, 1:] == y[:, :-1]
    edge = np.diff(same.astype(np.int8), axis=1, prepend=0)
    row, first = np.nonzero(edge == 1)  # first repeat; the run starts one reading earlier
    _, after = np.nonzero(edge == -1)
    start = first - 1
    moved = np.cumsum(np.r_["1", np.zeros((n, 1)), np.abs(np.diff(np.nan_to_num(consensus)))], 1)
    changes = moved[row, after - 1] - moved[row, start]
    keep = (after - start >= length) & (changes > 0)
    out = np.zeros(n * steps + 1, np.int64)
    np.add.at(out, row[keep] * steps + start[keep], 1)
    np.add.at(out, row[keep] * steps + after[keep], -1)
    stuck: Bools = np.cumsum(out[:-1]).reshape(n, steps) > 0
    return stuck


__all__ = ["nan_median", "robust_z", "run_lengths", "run_spans", "runs_touching", "stuck_runs"]
