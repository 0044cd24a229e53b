"""What every benchmark times with: the best wall time of a few runs (the least disturbed by
whatever else the machine does), and the last run's result."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any


def best_of(repeat: int, run: Callable[[], Any], label: str = "") -> tuple[float, Any]:
    """Best wall time of ``repeat`` runs and the last run's result; with ``label``, every run's
    time goes to stderr as progress."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    if label:
        print(f"  {label}: {', '.join(f'{t:.3f}' for t in times)} s", file=sys.stderr, flush=True)
    return min(times), result
