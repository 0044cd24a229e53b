"""Run a feed over files: what the CLI and the demo call.

One bad file never stops the others: a file that cannot be read at all is reported in
``IngestReport.failed`` and quarantined as a whole-file record with its reason. A store that
stays unreachable through the pipeline's retries (:mod:`citytwin.ingest.retry`) is not a bad
file: it stops the run with its :class:`~citytwin.errors.StoreUnavailableError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from citytwin.config import Settings
from citytwin.errors import CitytwinError
from citytwin.ingest import read_feed
from citytwin.ingest.base import FeedBatch
from citytwin.ingest.pipeline import FeedSummary, Ingestor, IngestReport, ingest, sources_in
from citytwin.ingest.retry import is_transient
from citytwin.store import QuarantineRecord, open_store

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]


def ingest_paths(
    feed: str,
    paths: list[str],
    settings: Settings,
    *,
    options: dict[str, str] | None = None,
    on_progress: Progress | None = None,
    debug: bool = False,
) -> IngestReport:
    """Ingest every file below ``paths`` with one feed reader into the configured store.

    ``on_progress(bytes_done, bytes_total, file_name)`` is called as batches land.
    """
    files = sources_in(paths)
    sizes = {f: Path(f).stat().st_size if Path(f).is_file() else 0 for f in files}
    total, finished = sum(sizes.values()), 0
    report = IngestReport()  # rows appear per feed name a batch reports (generic: the mapping's)
    with open_store(settings.store_url) as store:
        ingestor = Ingestor(store)
        for path in files:
            name, in_file = Path(path).name, 0

            def advance(
                batch: FeedBatch,
                _: FeedSummary,
                base: int = finished,
                size: int = sizes[path],
                name: str = name,
            ) -> None:
                nonlocal in_file
                in_file += batch.bytes_read
                if on_progress:
                    on_progress(base + min(in_file, size), total, name)

            if on_progress:
                on_progress(finished, total, name)
            try:
                batches = read_feed(
                    feed, path, max_bytes=settings.max_input_bytes, **(options or {})
                )
                for summary in ingest(
                    batches, store, ingestor=ingestor, on_batch=advance
                ).feeds.values():
                    report.add(summary)
            except CitytwinError as exc:
                if debug or is_transient(exc):
                    raise
                _fail(report, ingestor, feed, path, str(exc))
            except Exception as exc:  # a reader bug must not hide the other files' results
                if debug:
                    raise
                logger.exception("unexpected error reading %s", path)
                _fail(report, ingestor, feed, path, f"unexpected {type(exc).__name__}: {exc}")
            finished += sizes[path]
        if on_progress:
            on_progress(finished, total, "done")
    return report


def _fail(report: IngestReport, ingestor: Ingestor, feed: str, path: str, reason: str) -> None:
    report.failed.append((path, reason))
    record = QuarantineRecord(feed, path, None, "", f"file not ingested: {reason}")
    ingestor.retrying(
        lambda: ingestor.store.write_quarantine([record]), what=f"quarantining file {path}"
    )
