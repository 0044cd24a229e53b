"""Ingestion: the outside world → the standard model. One module per feed, one pipeline.

Feeds are looked up by name in :data:`FEEDS` (lazily imported)::

    from citytwin.ingest import read_feed
    for batch in read_feed("sdot", "ALLDATA_20200315.csv", registry="sensors.csv"):
        ...
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

from citytwin.errors import UnknownBackendError
from citytwin.ingest.base import FeedBatch, FeedReader

# feed name -> "module:function"
FEEDS: dict[str, str] = {
    "sdot": "citytwin.ingest.sdot:read_sdot",
    "kma": "citytwin.ingest.kma:read_kma",
    "kma-stations": "citytwin.ingest.kma:read_kma_stations",
    "noise": "citytwin.ingest.noise:read_noise",
    "generic": "citytwin.ingest.generic:read_generic",
}


def get_reader(feed: str) -> FeedReader:
    """The reader function of a feed; the error lists the known feeds."""
    try:
        target = FEEDS[feed]
    except KeyError:
        raise UnknownBackendError("feed", feed, list(FEEDS)) from None
    module, function = target.split(":")
    reader: FeedReader = getattr(importlib.import_module(module), function)
    return reader


def read_feed(feed: str, path: str, /, **options: Any) -> Iterator[FeedBatch]:
    """Batches of one file of one feed."""
    return get_reader(feed)(path, **options)


__all__ = ["FEEDS", "FeedBatch", "get_reader", "read_feed"]
