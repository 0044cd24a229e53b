"""Charts that are not maps: time series (history and forecast) and curves (error per horizon).

Same conventions as :mod:`.render` (a ``Figure`` on the Agg canvas, no pyplot state, 150 dpi),
1200 × 600 px: a chart is wider than tall.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from citytwin.analysis.render import new_figure, save_figure
from citytwin.errors import ValidationError

_SIZE_INCHES = (8.0, 4.0)  # 1200 × 600 px at 150 dpi


def render_series(
    path: str | Path,
    series: Mapping[str, pd.Series],
    *,
    title: str,
    unit: str,
    divide_at: pd.Timestamp | None = None,
) -> Path:
    """Time series as lines, one per entry (e.g. ``{"observed": history, "forecast": ahead}``);
    ``divide_at`` draws a vertical line (e.g. the forecast origin).

    Examples
    --------
    >>> import tempfile
    >>> t = pd.date_range("2024-01-01", periods=48, freq="h", tz="UTC")
    >>> lines = {"observed": pd.Series(np.sin(np.arange(48) / 4), index=t)}
    >>> render_series(tempfile.mkdtemp() + "/s.png", lines, title="T", unit="°C").name
    's.png'
    """
    if not series:
        raise ValidationError("chart: expected at least one series to draw")
    figure, axes = new_figure(title, size=_SIZE_INCHES)
    for name, values in series.items():
        if not isinstance(values.index, pd.DatetimeIndex):
            raise ValidationError(f"chart series {name!r}: expected a DatetimeIndex")
        axes.plot(values.index.tz_localize(None) if values.index.tz else values.index,
                  values.to_numpy(float), label=name, linewidth=1.2)  # fmt: skip
    if divide_at is not None:
        stamp = divide_at.tz_localize(None) if divide_at.tzinfo else divide_at
        axes.axvline(stamp, color="0.4", linestyle="--", linewidth=0.8)
    zone = pd.DatetimeIndex(next(iter(series.values())).index).tz
    axes.set_xlabel(f"time ({zone or 'naive'})")
    axes.set_ylabel(unit)
    axes.legend(loc="best")
    axes.grid(alpha=0.3)
    figure.autofmt_xdate()
    return save_figure(figure, path)


def render_curves(
    path: str | Path,
    x: Sequence[float] | ArrayLike,
    curves: Mapping[str, ArrayLike],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
) -> Path:
    """Lines of several methods over one axis, e.g. MAE per forecast horizon.

    Examples
    --------
    >>> import tempfile
    >>> render_curves(tempfile.mkdtemp() + "/c.png", [1, 2, 3], {"model": [1, 2, 2.5]},
    ...               title="MAE", xlabel="horizon (h)", ylabel="°C").name
    'c.png'
    """
    xs = np.asarray(x, dtype=np.float64)
    figure, axes = new_figure(title, size=_SIZE_INCHES)
    for name, values in curves.items():
        ys = np.asarray(values, dtype=np.float64)
        if ys.shape != xs.shape:
            raise ValidationError(f"curve {name!r}: {ys.shape[0]} values for {xs.shape[0]} x")
        axes.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, label=name)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.legend(loc="best")
    axes.grid(alpha=0.3)
    return save_figure(figure, path)
