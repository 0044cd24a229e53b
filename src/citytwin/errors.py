"""Domain errors. They know nothing about HTTP or terminals; callers map them.

::

    CitytwinError
    ├── ConfigurationError         a setting, URL or registry name is wrong
    │   └── UnknownBackendError    a name that no registry knows (lists the valid ones)
    ├── ValidationError            a model or value breaks its contract
    ├── FeedError                  an input file cannot be read at all (names file and position)
    │   └── MappingError           a declarative feed mapping is invalid
    └── StoreError                 the store refused an operation
        └── IdentityConflictError  two natural keys map to the same identifier

Every message names the input, the position and what was expected.
"""

from __future__ import annotations


class CitytwinError(Exception):
    """Base class of every error citytwin raises on purpose."""


class ConfigurationError(CitytwinError):
    """A setting, URL or registry name is wrong."""


class UnknownBackendError(ConfigurationError):
    """A registry was asked for a name it does not know."""

    def __init__(self, kind: str, name: str, valid: list[str]) -> None:
        self.kind, self.name, self.valid = kind, name, valid
        super().__init__(f"unknown {kind} {name!r}; expected one of: {', '.join(sorted(valid))}")


class ValidationError(CitytwinError):
    """A value breaks its model's contract."""


class FeedError(CitytwinError):
    """An input cannot be read at all. Row-level problems are quarantined instead."""

    def __init__(self, source: str, message: str, *, line: int | None = None) -> None:
        self.source, self.line = source, line
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")


class MappingError(FeedError):
    """A declarative feed mapping file is invalid."""


class StoreError(CitytwinError):
    """The store refused an operation."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached right now (a server restart, a failover, an idle timeout).

    Transient: the same call may succeed later, and every write is idempotent, so callers may
    retry it (:func:`citytwin.ingest.retry.call_with_retry` does, then gives up with one).
    """


class IdentityConflictError(StoreError):
    """Two different natural keys hash to the same identifier (astronomically rare)."""
