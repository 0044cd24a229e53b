"""Group commit for single-Observation creates (``POST /v1.1/Observations`` and friends).

A one-row write costs a DuckDB transaction (several milliseconds, mostly the commit), so writing
each POST on its own caps the API at a few hundred requests per second whatever the CPU. Instead
each request validates its body on the event loop and hands (datastream, time, result) to the
:class:`ObservationBatcher`; one writer drains everything queued, in arrival order, and writes
the whole batch with one :meth:`~citytwin.store.base.Store.write_new_observations` (two SQL
statements on DuckDB) in a worker thread, while the loop goes on reading the next requests.
Each request then gets its own :class:`Outcome`.

No fixed wait: a lone request is written at once (after the few event-loop iterations that let
requests already received join it); requests that arrive while a write is in flight form the
next batch. Every queued row has a request awaiting it, so a server shutting down
(which lets in-flight requests finish) writes everything that was accepted.

Within a batch, the first of two rows with the same identity (datastream, phenomenon time) wins
and the second is a duplicate: the order of sequential writes.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from citytwin.api.sta import StoreAccess
from citytwin.model.sensing import Datastream
from citytwin.store.base import ObservationFrame

MAX_BATCH = 4096  # rows per write: bounds one transaction while a flood is queued
# loop iterations the writer lets pass before taking a batch: requests already received reach
# the queue in ~3 (read, parse, route); microseconds when idle, ~1.5× larger batches under load
GATHER_ITERATIONS = 3


class Outcome(enum.Enum):
    """What became of one queued Observation."""

    CREATED = "created"
    DUPLICATE = "duplicate"  # its (datastream, phenomenon time) is stored already
    NO_DATASTREAM = "no datastream"


@dataclass(frozen=True, slots=True)
class _Queued:
    datastream_id: int
    phenomenon_time: int
    result: float
    future: asyncio.Future[Outcome]


def write_new(access: StoreAccess, frame: ObservationFrame) -> list[Outcome]:
    """Write the rows of ``frame`` whose datastream exists and whose identity is new.

    One store call under the store lock when every row is written (the common case), a second
    one to tell an unknown datastream from a duplicate when some are not.
    """
    with access.lock:
        store = access.store()
        created = store.write_new_observations(frame)
        exists = created.copy()
        if not created.all():
            refused = np.unique(frame.datastream_id[~created]).tolist()
            known = [d.id or 0 for d in store.entities(Datastream, refused)]
            exists |= np.isin(frame.datastream_id, np.asarray(known, dtype=np.int64))
    return [
        Outcome.CREATED if c else Outcome.DUPLICATE if e else Outcome.NO_DATASTREAM
        for c, e in zip(created.tolist(), exists.tolist(), strict=True)
    ]


class ObservationBatcher:
    """Queues single Observations and writes them in batches (see the module docstring).

    ``published`` receives every written frame (from the writer thread), e.g. the app bus.
    """

    def __init__(
        self,
        access: StoreAccess,
        *,
        published: Callable[[ObservationFrame], None] | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.access = access
        self.published = published
        self.max_batch = max_batch
        self._queue: list[_Queued] = []
        self._writer: asyncio.Task[None] | None = None

    async def create(self, datastream_id: int, phenomenon_time: int, result: float) -> Outcome:
        """Queue one Observation (times in µs) and wait until its batch is written."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._queue.append(_Queued(datastream_id, phenomenon_time, result, future))
        writer = self._writer
        if writer is None or writer.done() or writer.get_loop() is not loop:
            self._writer = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        for _ in range(GATHER_ITERATIONS):
            await asyncio.sleep(0)
        while self._queue:
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
            try:
                outcomes = await asyncio.to_thread(self._write, batch)
            except Exception as exc:  # a store failure fails this batch's requests (a 500)
                for queued in batch:
                    if not queued.future.done():
                        queued.future.set_exception(exc)
                continue
            except BaseException:  # the loop is going away: nobody is left to answer
                for queued in batch + self._queue:
                    queued.future.cancel()
                raise
            for queued, outcome in zip(batch, outcomes, strict=True):
                if not queued.future.done():  # its request may have gone (client disconnected)
                    queued.future.set_result(outcome)

    def _write(self, batch: list[_Queued]) -> list[Outcome]:
        frame = ObservationFrame.from_arrays(
            [q.datastream_id for q in batch],
            [q.phenomenon_time for q in batch],
            [q.result for q in batch],
        )
        outcomes = write_new(self.access, frame)
        if self.published is not None:
            created = np.asarray([o is Outcome.CREATED for o in outcomes], dtype=bool)
            if created.any():
                self.published(frame.take(created))
        return outcomes
