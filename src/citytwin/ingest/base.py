"""What every feed reader produces: a :class:`FeedBatch` of wide readings plus their metadata.

A reader turns one file into rows of (thing, time, value per observed property) — the shape
almost every city feed has — together with what it knows of each thing (name, position), the
records it had to reject, and notes for the operator (ignored columns, unknown sensors).
The pipeline (``pipeline.py``) does the rest the same way for every feed: register STA entities,
run QC, store, report. Adding a feed means writing one ``read_*`` function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from citytwin.ingest.source import Reject


@dataclass(frozen=True)
class ThingSpec:
    """What a feed knows about one sensor or station."""

    key: str  # natural key, "<feed>:<source id>", e.g. "sdot:V02Q1940612"
    name: str
    description: str = ""
    lon: float | None = None
    lat: float | None = None
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SensorSpec:
    """The instrument model behind a feed's datastreams."""

    key: str
    name: str
    description: str = ""
    metadata: str = ""


@dataclass
class Readings:
    """Wide readings: row *i* is thing ``things[thing_index[i]]`` at ``time[i]``.

    ``values`` maps observed-property keys (see ``citytwin.model.vocabulary``) to float arrays in
    the vocabulary's unit, NaN where the row has no value. ``source_flags`` carries the source's
    own suspect marks (e.g. KMA QC flags) per property, as booleans.
    """

    things: list[ThingSpec]
    thing_index: NDArray[np.int64]
    time: NDArray[np.int64]
    values: dict[str, NDArray[np.float64]]
    line: NDArray[np.int64]
    period: str | None = None  # ISO 8601 duration each value averages over, e.g. "PT1H"
    source_flags: dict[str, NDArray[np.bool_]] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.time.shape[0])

    def take(self, index: NDArray[np.bool_] | NDArray[np.intp]) -> Readings:
        return Readings(
            self.things,
            self.thing_index[index],
            self.time[index],
            {k: v[index] for k, v in self.values.items()},
            self.line[index],
            self.period,
            {k: v[index] for k, v in self.source_flags.items()},
        )

    @property
    def value_count(self) -> int:
        """Non-missing values: the observations these readings hold."""
        return sum(int(np.count_nonzero(~np.isnan(v))) for v in self.values.values())


@dataclass
class FeedBatch:
    """One reader's output for (part of) one file."""

    feed: str
    source: str
    sensor: SensorSpec
    readings: Readings
    rejects: list[Reject] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    bytes_read: int = 0
    line_text: Callable[[int], str] | None = None  # raw text of a source line, for quarantine


class FeedReader(Protocol):
    """A feed: ``read(path, **options)`` yields batches. Registered in ``ingest.FEEDS``."""

    def __call__(self, path: str, /, **options: Any) -> Iterator[FeedBatch]: ...


def reject_rows(
    mask: NDArray[np.bool_], line: NDArray[np.int64], text: Any, reason: str
) -> list[Reject]:
    """Rejects for the rows ``mask`` selects; ``text(line)`` gives a line's raw text."""
    return [Reject(int(n), text(int(n)), reason) for n in line[mask]]
