"""The pipeline's writer thread: store work runs in order on one thread, counts stay exact, and
an error in the store reaches the caller."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import datetime

import numpy as np
import pytest

from citytwin.emulator import WrittenFeed, load_sites, write_sdot_2020
from citytwin.errors import StoreError
from citytwin.ingest import pipeline, read_feed
from citytwin.ingest.base import FeedBatch
from citytwin.ingest.pipeline import FeedSummary, Ingestor, ingest
from citytwin.model.sensing import Datastream, Entity
from citytwin.store.base import ObservationFrame, QuarantineRecord, WriteResult
from citytwin.store.entities import EntityRows
from citytwin.store.memory import MemoryStore

START = datetime(2020, 3, 15)  # KST


class RecordingStore(MemoryStore):
    """A memory store that logs each call (and its thread), and can fail the n-th write."""

    def __init__(self, fail_on_write: int | None = None) -> None:
        super().__init__()
        self.calls: list[tuple[str, int]] = []  # (method, rows or entities)
        self.streams: list[set[int]] = []  # datastreams of each observation write
        self.threads: set[str] = set()
        self.fail_on_write = fail_on_write

    def _log(self, method: str, size: int) -> None:
        self.calls.append((method, size))
        self.threads.add(threading.current_thread().name)

    def register(self, entities: Sequence[Entity | EntityRows]) -> None:
        self._log("register", sum(len(e) if isinstance(e, EntityRows) else 1 for e in entities))
        super().register(entities)

    def write_observations(self, frame: ObservationFrame) -> WriteResult:
        self._log("write_observations", len(frame))
        if self.fail_on_write == sum(c[0] == "write_observations" for c in self.calls):
            raise StoreError("disk full (injected)")
        self.streams.append(set(frame.datastream_id.tolist()))
        return super().write_observations(frame)

    def write_quarantine(self, records: Sequence[QuarantineRecord]) -> None:
        self._log("write_quarantine", len(records))
        super().write_quarantine(records)


@pytest.fixture(scope="module")
def sdot_file(tmp_path_factory: pytest.TempPathFactory) -> WrittenFeed:
    """Six hours of 30 sensors: 5,400 rows, ~100,000 values."""
    path = tmp_path_factory.mktemp("pipeline") / "ALLDATA.csv"
    return write_sdot_2020(path, load_sites(None, 30, seed=3), START, 6, seed=3)


def _batches(written: WrittenFeed, chunk_bytes: int = 100_000) -> list[FeedBatch]:
    return list(read_feed("sdot", str(written.path), chunk_bytes=chunk_bytes))


def test_writer_thread_counts_match_the_synchronous_path(
    sdot_file: WrittenFeed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "FRAME_VALUES", 20_000)  # several frames per batch
    batches = _batches(sdot_file)
    assert len(batches) > 3
    threaded = RecordingStore()
    seen: list[tuple[str, int]] = []

    def on_batch(batch: FeedBatch, summary: FeedSummary) -> None:
        seen.append((threading.current_thread().name, summary.stored))

    summary = ingest(iter(batches), threaded, on_batch=on_batch).feeds["sdot"]
    inline = RecordingStore()
    ingestor = Ingestor(inline)
    expected = FeedSummary("sdot")
    for batch in batches:
        expected.add(ingestor.write(batch))
    assert (summary.rows, summary.read, summary.stored) == (
        sdot_file.rows,
        sdot_file.values,
        sdot_file.values,
    )
    assert (summary.duplicates, summary.flagged, summary.quarantined) == (
        expected.duplicates,
        expected.flagged,
        expected.quarantined,
    )
    assert summary.files == 1
    assert threaded.calls == inline.calls  # same store calls, in the same order
    assert threaded.threads == {"citytwin-writer"}  # the caller never touched the store
    assert [name for name, _ in seen] == ["citytwin-writer"] * len(batches)
    assert sum(stored for _, stored in seen) == sdot_file.values
    frame, again = threaded.observations(), inline.observations()
    assert np.array_equal(frame.quality, again.quality)
    assert np.array_equal(frame.result, again.result)


def test_a_batch_is_written_in_frames_of_whole_properties(
    sdot_file: WrittenFeed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "FRAME_VALUES", 20_000)
    store = RecordingStore()
    (batch,) = _batches(sdot_file, chunk_bytes=10**9)
    first = ingest([batch], store).feeds["sdot"]
    writes = [size for method, size in store.calls if method == "write_observations"]
    per_frame = 20_000 // len(batch.readings)  # properties of 5,400 readings: 3 a frame
    assert len(writes) == -(-len(batch.readings.values) // per_frame)
    assert sum(writes) == first.stored == sdot_file.values
    # no two frames share a datastream, so none shares an identity with another
    assert sum(map(len, store.streams)) == len(set().union(*store.streams))
    assert set().union(*store.streams) == set(store.observations().datastream_id.tolist())
    assert store.calls[0][0] == "register"  # entities before their observations
    again = ingest([batch], store).feeds["sdot"]
    assert (again.stored, again.duplicates) == (0, sdot_file.values)


def test_a_store_error_reaches_the_caller_and_stops_the_ingest(sdot_file: WrittenFeed) -> None:
    batches = _batches(sdot_file)
    store = RecordingStore(fail_on_write=2)
    read: list[int] = []

    def reading() -> Iterator[FeedBatch]:
        for batch in batches:
            read.append(len(batch.readings))
            yield batch

    with pytest.raises(StoreError, match="disk full"):
        ingest(reading(), store)
    writes = [c for c in store.calls if c[0] == "write_observations"]
    assert len(writes) == 2  # nothing written after the failure
    assert len(read) < len(batches)  # and reading stopped soon after it
    assert len(store.observations()) == writes[0][1]  # the first batch landed whole


def test_a_reader_error_keeps_the_batches_before_it(sdot_file: WrittenFeed) -> None:
    batches = _batches(sdot_file)
    store = RecordingStore()

    def failing() -> Iterator[FeedBatch]:
        yield from batches[:2]
        raise ValueError("reader bug (injected)")

    with pytest.raises(ValueError, match="reader bug"):
        ingest(failing(), store)
    stored = sum(batch.readings.value_count for batch in batches[:2])
    assert len(store.observations()) == stored
    assert [c[0] for c in store.calls].count("write_quarantine") == 2


def test_datastreams_are_registered_once_per_ingestor(sdot_file: WrittenFeed) -> None:
    batches = _batches(sdot_file)
    store = RecordingStore()
    ingestor = Ingestor(store)
    ingest(iter(batches), store, ingestor=ingestor)
    streams = store.entities(Datastream)
    registered = [size for method, size in store.calls if method == "register"]
    assert len(streams) == len({(s.thing_id, s.properties["observedProperty"]) for s in streams})
    assert registered[0] > registered[-1]  # later batches only re-send the things
    assert all(stream.id is not None for stream in streams)
