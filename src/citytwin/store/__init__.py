"""Stores, chosen by URL through a lazy registry (argument > settings > embedded default).

>>> with open_store("memory://") as store:
...     type(store).__name__
'MemoryStore'
"""

from __future__ import annotations

import importlib
from urllib.parse import urlparse

from citytwin.config import DEFAULT_STORE_URL
from citytwin.errors import UnknownBackendError
from citytwin.store.base import (
    AGGREGATE_SCHEMA,
    FeatureBatch,
    FeedStats,
    ObservationFrame,
    QuarantineRecord,
    Store,
    WriteResult,
)

# scheme -> "module:Class"; imported only when asked for, so no backend loads at import time
STORES: dict[str, str] = {
    "memory": "citytwin.store.memory:MemoryStore",
    "duckdb": "citytwin.store.duckdb_:DuckDBStore",
    "postgresql": "citytwin.store.postgres:PostgresStore",
    "postgres": "citytwin.store.postgres:PostgresStore",
}


def open_store(url: str | None = None) -> Store:
    """Open the store a URL names: ``memory://``, ``duckdb:///path/city.duckdb``, ``duckdb://``,
    ``postgresql://user:password@host:5432/dbname[?schema=name]`` (or ``postgres://``)."""
    url = url or DEFAULT_STORE_URL
    scheme = urlparse(url).scheme
    try:
        target = STORES[scheme]
    except KeyError:
        raise UnknownBackendError("store scheme", scheme or url, list(STORES)) from None
    module_name, class_name = target.split(":")
    cls: type[Store] = getattr(importlib.import_module(module_name), class_name)
    return cls.from_url(url)


__all__ = [
    "AGGREGATE_SCHEMA",
    "STORES",
    "FeatureBatch",
    "FeedStats",
    "ObservationFrame",
    "QuarantineRecord",
    "Store",
    "WriteResult",
    "open_store",
]
