"""Monthly range partitions of ``observations``, created on demand before a write needs them.

Why monthly: a month of a large city (10 000 sensors, one reading a minute) is ~430 M rows, a size
PostgreSQL vacuums, indexes and drops comfortably; retention is ``DETACH``/``DROP`` of whole months
instead of a DELETE. Rows no partition takes (years outside 1–9999, or more new months in one
write than :data:`MAX_NEW_PARTITIONS`) land in the DEFAULT partition; when their month's partition
is created later, they move into it (PostgreSQL refuses to create a partition over rows DEFAULT
holds).
"""

from __future__ import annotations

import logging
import re
from typing import Any, cast

import numpy as np
import psycopg
from numpy.typing import NDArray
from psycopg import sql

from citytwin.store.postgres_sql import lock_ddl

logger = logging.getLogger(__name__)
MAX_NEW_PARTITIONS = 240  # per write: a frame spanning centuries is bad data, not 3000 tables
_SPAN = "phenomenon_time >= %s::timestamp AND phenomenon_time < %s::timestamp"


def months_of(times: NDArray[np.int64]) -> NDArray[np.int64]:
    """Distinct months (counted from 1970-01) of µs-since-epoch times.

    >>> months_of(np.array([0, 2_678_400_000_000, 2_678_400_000_001])).tolist()  # Jan, Feb 1970
    [0, 1]
    """
    return np.unique(times.view("datetime64[us]").astype("datetime64[M]").astype(np.int64))


def partition_name(month: int) -> str | None:
    """``observations_YYYY_MM`` for a month from 1970-01, or None outside years 1–9999 (those
    rows stay in the DEFAULT partition).

    >>> partition_name(602), partition_name(-24_000)
    ('observations_2020_03', None)
    """
    year, index = divmod(month, 12)
    if not 1 <= 1970 + year <= 9999:
        return None
    return f"observations_{1970 + year:04d}_{index + 1:02d}"


def partition_bounds(month: int) -> tuple[str, str]:
    """The month's [first day, first day of the next month) as timestamp literals.

    >>> partition_bounds(611)
    ('2020-12-01', '2021-01-01')
    """
    year, index = divmod(month, 12)
    nyear, nindex = divmod(month + 1, 12)
    return f"{1970 + year:04d}-{index + 1:02d}-01", f"{1970 + nyear:04d}-{nindex + 1:02d}-01"


def month_of_partition(name: str) -> int | None:
    """The inverse of :func:`partition_name` (None for other tables)."""
    found = re.fullmatch(r"observations_(\d{4})_(\d{2})", name)
    return (int(found[1]) - 1970) * 12 + int(found[2]) - 1 if found else None


class MonthlyPartitions:
    """The months of ``observations`` that have a partition, kept in step with the server.

    Remembers which months exist so that a write into known months costs no query; another
    process creating a month is harmless (``IF NOT EXISTS`` under an advisory lock).

    Creating a partition locks the whole table briefly, so it waits for queries running on it;
    rather than stall ingest (and every query queued behind it) on a long report, it gives up
    after :attr:`lock_timeout_ms` and the rows wait in DEFAULT (moved on a later try).
    """

    lock_timeout_ms: int = 2000

    def __init__(self, con: psycopg.Connection[Any]) -> None:
        self._con = con
        rows = con.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'observations'::regclass"
        ).fetchall()
        self.months = {m for (name,) in rows if (m := month_of_partition(name)) is not None}

    def ensure(self, times: NDArray[np.int64]) -> None:
        """Create the partitions of the months ``times`` (µs since the epoch) fall in."""
        low, high = months_of(times[[int(times.argmin()), int(times.argmax())]])[[0, -1]].tolist()
        if high - low < 64 and all(m in self.months for m in range(low, high + 1)):
            return  # the common case, without sorting a million times
        missing = [
            m for m in months_of(times).tolist() if m not in self.months and partition_name(m)
        ]
        if not missing:
            return
        if len(missing) > MAX_NEW_PARTITIONS:
            logger.warning(
                "a write spans %d new months; creating %d partitions, the rest go to the "
                "DEFAULT partition",
                len(missing),
                MAX_NEW_PARTITIONS,
            )
            missing = missing[:MAX_NEW_PARTITIONS]
        try:
            with self._con.transaction():
                self._con.execute(f"SET LOCAL lock_timeout = {int(self.lock_timeout_ms)}")
                lock_ddl(self._con)
                for month in missing:
                    self._create(month)
        except psycopg.errors.LockNotAvailable:
            logger.warning(
                "observations is busy (a long query holds it); the rows of %d new month(s) go "
                "to the DEFAULT partition until a later write creates their partition",
                len(missing),
            )
            return
        self.months.update(missing)

    def _create(self, month: int) -> None:
        """One month's partition, taking over that month's rows from DEFAULT if it has any."""
        name = sql.Identifier(cast(str, partition_name(month)))
        low, high = partition_bounds(month)
        stray = self._con.execute(
            f"SELECT EXISTS (SELECT 1 FROM observations_default WHERE {_SPAN})",
            [low, high],
        ).fetchone()
        moving = bool(stray and stray[0])
        if moving:
            self._con.execute(
                "CREATE TEMP TABLE moved_observations (LIKE observations) ON COMMIT DROP"
            )
            self._con.execute(
                f"WITH gone AS (DELETE FROM observations_default WHERE {_SPAN} RETURNING *) "
                "INSERT INTO moved_observations SELECT * FROM gone",
                [low, high],
            )
        self._con.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF observations "
                "FOR VALUES FROM ({}) TO ({})"
            ).format(name, sql.Literal(low), sql.Literal(high))
        )
        if moving:
            logger.info("moved the rows of %s from the DEFAULT partition to its own", low[:7])
            self._con.execute("INSERT INTO observations SELECT * FROM moved_observations")
            self._con.execute("DROP TABLE moved_observations")
