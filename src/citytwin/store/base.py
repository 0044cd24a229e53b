"""The store contract: a small synchronous interface every backend implements.

A store keeps the SensorThings entities (Things, Datastreams …), the observations and the
quarantine. Observations travel in bulk as an :class:`ObservationFrame` (parallel numpy arrays):
the contract is columnar because a city sends millions of readings an hour.

Why synchronous: DuckDB and the PostgreSQL COPY path are blocking libraries, ingestion is
CPU-bound, and a web layer can call a sync store from a thread pool. One contract, no colour.

Rules every backend keeps (checked by ``tests/store/test_contract.py`` against each):

- an observation's identity is (datastream id, phenomenon time start): writing it again is a no-op
  and is counted as a duplicate;
- entities are upserted by ``@iot.id`` (ids derive from natural keys, see ``stable_id``);
- deletion never cascades: :meth:`Store.delete` removes exactly the entities named and
  :meth:`Store.delete_observations` exactly the rows named; what else must go with them (OGC
  18-088 section 10.4's integrity constraints) is the caller's decision;
- times are int64 microseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal, Self, TypeVar

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from citytwin.model.quality import flag_names
from citytwin.model.sensing import Datastream, Entity, Observation
from citytwin.store.entities import EntityRows

E = TypeVar("E", bound=Entity)
Bucket = Literal["hour", "day"]
BUCKET_MICROS: dict[str, int] = {"hour": 3_600_000_000, "day": 86_400_000_000}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_micros(value: datetime) -> int:
    """Aware datetime → int64 µs since epoch (UTC)."""
    if value.tzinfo is None:
        raise ValueError(f"{value!r} is naive; citytwin needs timezone-aware times")
    # integer arithmetic: total_seconds() * 1e6 is a float and misses by 1 µs for ~1 % of times
    return (value - _EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    """int64 µs since epoch → aware UTC datetime."""
    return datetime.fromtimestamp(value / 1_000_000, tz=UTC)


@dataclass(frozen=True, slots=True)
class ObservationFrame:
    """Observations as columns. Row *i* is one observation."""

    datastream_id: NDArray[np.int64]
    phenomenon_time: NDArray[np.int64]
    result: NDArray[np.float64]
    quality: NDArray[np.int32]

    ARROW_SCHEMA: ClassVar[pa.Schema] = pa.schema(
        [
            ("datastream_id", pa.int64()),
            ("phenomenon_time", pa.timestamp("us")),
            ("result", pa.float64()),
            ("quality", pa.int32()),
        ]
    )

    def __len__(self) -> int:
        return int(self.datastream_id.shape[0])

    @classmethod
    def empty(cls) -> ObservationFrame:
        return cls.from_arrays([], [], [], [])

    @classmethod
    def from_arrays(
        cls,
        datastream_id: Sequence[int] | NDArray[np.int64],
        phenomenon_time: Sequence[int] | NDArray[np.int64],
        result: Sequence[float] | NDArray[np.float64],
        quality: Sequence[int] | NDArray[np.int32] | None = None,
    ) -> ObservationFrame:
        """Build a frame, coercing dtypes and checking the columns line up."""
        ds = np.asarray(datastream_id, dtype=np.int64)
        q = np.zeros(ds.shape[0], np.int32) if quality is None else quality
        frame = cls(
            ds,
            np.asarray(phenomenon_time, dtype=np.int64),
            np.asarray(result, dtype=np.float64),
            np.asarray(q, dtype=np.int32),
        )
        lengths = {len(frame.phenomenon_time), len(frame.result), len(frame.quality), len(ds)}
        if len(lengths) != 1:
            raise ValueError(f"observation columns differ in length: {sorted(lengths)}")
        return frame

    @classmethod
    def concat(cls, frames: Sequence[ObservationFrame]) -> ObservationFrame:
        if not frames:
            return cls.empty()
        return cls(*(np.concatenate([getattr(f, name) for f in frames]) for name in cls.__slots__))

    def take(self, index: NDArray[np.intp] | NDArray[np.bool_]) -> ObservationFrame:
        """Rows selected by an integer index or a boolean mask."""
        return type(self)(*(getattr(self, name)[index] for name in self.__slots__))

    def sorted(self) -> ObservationFrame:
        """Rows ordered by (datastream, time): the storage order."""
        return self.take(np.lexsort((self.phenomenon_time, self.datastream_id)))

    def to_arrow(self) -> pa.Table:
        return pa.Table.from_arrays(
            [
                pa.array(self.datastream_id),
                pa.array(self.phenomenon_time).cast(pa.timestamp("us")),
                pa.array(self.result),
                pa.array(self.quality),
            ],
            schema=self.ARROW_SCHEMA,
        )

    @classmethod
    def from_arrow(cls, table: pa.Table) -> ObservationFrame:
        def col(name: str, dtype: type) -> NDArray[np.generic]:
            column = table.column(name)
            if pa.types.is_timestamp(column.type):
                column = column.cast(pa.timestamp("us")).cast(pa.int64())
            return np.asarray(column.to_numpy(zero_copy_only=False), dtype=dtype)

        return cls.from_arrays(
            col("datastream_id", np.int64),  # type: ignore[arg-type]
            col("phenomenon_time", np.int64),  # type: ignore[arg-type]
            col("result", np.float64),  # type: ignore[arg-type]
            col("quality", np.int32),  # type: ignore[arg-type]
        )

    def to_observations(self) -> list[Observation]:
        """Row objects; for small results (an API page), not for bulk work."""
        return [
            Observation(
                phenomenon_time=from_micros(int(t)),
                result=float(r),
                result_quality=flag_names(int(q)) or None,
                datastream_id=int(d),
            )
            for d, t, r, q in zip(
                self.datastream_id, self.phenomenon_time, self.result, self.quality, strict=True
            )
        ]


def first_of_identity(frame: ObservationFrame) -> NDArray[np.bool_]:
    """True for the first row of each identity (datastream, phenomenon time), in row order.

    >>> f = ObservationFrame.from_arrays([1, 2, 1, 1], [5, 5, 5, 6], [0.0] * 4)
    >>> first_of_identity(f).tolist()
    [True, True, False, True]
    """
    first = np.zeros(len(frame), dtype=bool)
    if not len(frame):
        return first
    order = np.lexsort((frame.phenomenon_time, frame.datastream_id))  # stable: ties keep order
    ds, t = frame.datastream_id[order], frame.phenomenon_time[order]
    first[order] = np.r_[True, (ds[1:] != ds[:-1]) | (t[1:] != t[:-1])]
    return first


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a bulk write did: new rows stored, rows already present (no-ops)."""

    inserted: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    """A record that could not become an observation, with where it came from and why."""

    feed: str
    source: str
    line: int | None
    raw: str
    reason: str
    recorded_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class FeatureBatch:
    """City features of one layer: ids, properties and WKB geometries in the city CRS.

    The store keeps geometry as it is given; the city CRS (``Settings.city_crs``, EPSG:5186 for
    Korea) is the convention, converted at the edges by :mod:`citytwin.space`.
    """

    ids: list[str]
    properties: list[dict[str, Any]]
    wkb: list[bytes]

    def __len__(self) -> int:
        return len(self.ids)

    def __post_init__(self) -> None:
        if not len(self.ids) == len(self.properties) == len(self.wkb):
            raise ValueError("feature ids, properties and geometries differ in length")


def check_layer_name(layer: str) -> str:
    """Layer names become SQL identifiers: lower-case letters, digits, underscores."""
    if not _LAYER_NAME.fullmatch(layer):
        raise ValueError(
            f"invalid layer name {layer!r}: expected lower-case letters, digits and underscores, "
            "starting with a letter (e.g. 'districts', 'buildings', 'road_links')"
        )
    return layer


_LAYER_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


@dataclass(frozen=True, slots=True)
class FeedStats:
    """One row of ``citytwin stats``: observations per feed and observed property."""

    feed: str
    observed_property: str
    datastreams: int
    observations: int
    flagged: int
    first: datetime | None
    last: datetime | None


AGGREGATE_SCHEMA = pa.schema(
    [
        ("group", pa.string()),
        ("observed_property", pa.string()),
        ("bucket", pa.timestamp("us")),
        ("mean", pa.float64()),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("count", pa.int64()),
    ]
)


class Store(ABC):
    """The contract. Implementations: ``memory://`` (fake), ``duckdb://`` (embedded default),
    ``postgresql://`` (production: PostgreSQL 15 + PostGIS, :mod:`citytwin.store.postgres`).

    Grouping keys for :meth:`aggregate`: ``"datastream"``, ``"observed_property"``, or
    ``"thing.<name>"`` for any key of the Thing's ``properties`` (e.g. ``thing.district``).
    """

    scheme: ClassVar[str]
    persistent: ClassVar[bool] = False  # survives close()/reopen
    spatial: ClassVar[bool] = False  # can answer geometry predicates natively

    @classmethod
    @abstractmethod
    def from_url(cls, url: str) -> Self:
        """Open the store a URL names (the registry calls this)."""

    # -- entities -------------------------------------------------------------------------
    @abstractmethod
    def register(self, entities: Sequence[Entity | EntityRows]) -> None:
        """Insert or replace entities by id (idempotent): models, or many of a kind at once as
        :class:`~citytwin.store.entities.EntityRows`."""

    @abstractmethod
    def entities(self, kind: type[E], ids: Sequence[int] | None = None) -> list[E]:
        """Entities of one kind, all or those with the given ids."""

    @abstractmethod
    def delete(self, kind: type[Entity], ids: Sequence[int]) -> int:
        """Remove the entities of one kind with the given ids; return how many existed.

        Ids that name nothing are ignored. Nothing else is removed (no cascade).
        """

    # -- observations ---------------------------------------------------------------------
    @abstractmethod
    def write_observations(self, frame: ObservationFrame) -> WriteResult:
        """Store new observations; rows whose identity exists already are skipped."""

    @abstractmethod
    def observations(
        self,
        *,
        datastream_ids: Sequence[int] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ObservationFrame:
        """Observations in [start, end), ordered by (datastream, time)."""

    @abstractmethod
    def delete_observations(
        self,
        *,
        datastream_ids: Sequence[int] | None = None,
        identities: ObservationFrame | None = None,
    ) -> int:
        """Remove observations; return how many rows went.

        A row goes when its datastream is in ``datastream_ids`` or its identity (datastream id,
        phenomenon time) is a row of ``identities`` (whose other columns are ignored). At least
        one of the two is required, so that no call removes everything by accident.
        An update is a delete followed by :meth:`write_observations`.
        """

    def existing(self, frame: ObservationFrame) -> NDArray[np.bool_]:
        """Which rows of ``frame`` name an identity (datastream, phenomenon time) already stored.

        What :meth:`write_observations` would skip, asked beforehand (an API answers 409 for
        those). This default asks :meth:`observations` once per datastream; backends override it
        with one query.
        """
        stored = np.zeros(len(frame), dtype=bool)
        for datastream in np.unique(frame.datastream_id).tolist():
            rows = frame.datastream_id == datastream
            times = frame.phenomenon_time[rows]
            start = _EPOCH + timedelta(microseconds=int(times.min()))
            found = self.observations(datastream_ids=[datastream], start=start)
            stored[rows] = np.isin(times, found.phenomenon_time)
        return stored

    def write_new_observations(self, frame: ObservationFrame) -> NDArray[np.bool_]:
        """Store the rows of ``frame`` whose Datastream is registered and whose identity is new
        (stored neither before nor by an earlier row of ``frame``); return which rows were.

        What an API's create needs: a row that is not stored is refused, and the caller asks
        :meth:`entities` why (no such Datastream, or a duplicate) only when some were.
        This default asks :meth:`entities` and :meth:`existing`, then writes; backends may do
        it in one statement.
        """
        asked = np.unique(frame.datastream_id).tolist()
        known = np.asarray([d.id for d in self.entities(Datastream, asked)], dtype=np.int64)
        new = np.isin(frame.datastream_id, known) & first_of_identity(frame)
        new[new] = ~self.existing(frame.take(new))
        if new.any():
            self.write_observations(frame.take(new))
        return new

    @abstractmethod
    def latest(self, datastream_ids: Sequence[int] | None = None) -> ObservationFrame:
        """The most recent observation of each datastream."""

    @abstractmethod
    def aggregate(
        self,
        *,
        bucket: Bucket = "hour",
        by: str = "datastream",
        start: datetime | None = None,
        end: datetime | None = None,
        observed_property: str | None = None,
        exclude_flags: int = 0,
    ) -> pa.Table:
        """Mean/min/max/count per (group, observed property, time bucket), AGGREGATE_SCHEMA."""

    # -- city features ----------------------------------------------------------------------
    @abstractmethod
    def write_features(self, layer: str, batch: FeatureBatch) -> WriteResult:
        """Insert or replace features by id; ``duplicates`` counts ids that existed already."""

    @abstractmethod
    def features(
        self, layer: str, *, bbox: tuple[float, float, float, float] | None = None
    ) -> FeatureBatch:
        """Features of a layer (ordered by id), optionally those intersecting a city-CRS bbox."""

    @abstractmethod
    def layers(self) -> dict[str, int]:
        """Feature layers and their sizes."""

    # -- quarantine and housekeeping -------------------------------------------------------
    @abstractmethod
    def write_quarantine(self, records: Sequence[QuarantineRecord]) -> None:
        """Keep records that could not be parsed, with their reason.

        A record with a line number is a place in a file: writing the same (feed, source,
        line, raw text, reason) again — a file ingested twice — adds nothing. A record without
        one (an MQTT message, a file that could not be read) is an event and is always kept.
        """

    @abstractmethod
    def quarantined(
        self, *, feed: str | None = None, limit: int | None = None
    ) -> list[QuarantineRecord]:
        """Quarantined records, oldest first."""

    @abstractmethod
    def stats(self) -> list[FeedStats]:
        """Counts per feed and observed property."""

    @abstractmethod
    def close(self) -> None:
        """Release files and connections. Idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_observation_selection(
    datastream_ids: Sequence[int] | None, identities: ObservationFrame | None
) -> None:
    """Refuse a :meth:`Store.delete_observations` call that names no observations."""
    if datastream_ids is None and identities is None:
        raise ValueError(
            "delete_observations needs datastream_ids or identities; "
            "neither was given (refusing to delete every observation)"
        )


def check_group_key(by: str) -> str | None:
    """Validate an aggregate grouping key; return the Thing property name if any."""
    if by in ("datastream", "observed_property"):
        return None
    if by.startswith("thing.") and by[6:].replace("_", "").isalnum():
        return by[6:]
    raise ValueError(
        f"cannot group by {by!r}; expected 'datastream', 'observed_property' or 'thing.<name>'"
    )
