"""An append-only, hash-chained audit log of every control decision, and its verification.

Each decision (a rule fired, a task created, approved, rejected, sent, acknowledged, expired, a
write denied …) becomes one line of a JSON Lines file. An entry carries its sequence number, UTC
time, kind, actor, subject ids and a JSON payload (the inputs it saw, the simulation result, the
command, the reason), plus ``prev`` — the hash of the entry before it (64 zeros for the first) —
and ``hash``, the SHA-256 of the entry's canonical JSON without ``hash``. This is the hash chain of
Haber & Stornetta (1991, "How to time-stamp a digital document", J. Cryptology 3(2)) as used by
RFC 6962-style transparency logs: editing any entry breaks its own hash; deleting or reordering
entries breaks the next entry's ``prev``.

Lines must also be byte-for-byte canonical, so *any* one-byte edit is detected, even one that
leaves the JSON meaning unchanged. What a chain alone cannot detect is losing the newest entries
(or rewriting the whole file): for that an operator records :meth:`AuditLog.head` somewhere else
and passes it back as ``verify(expected_head=...)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from citytwin.errors import StoreError, ValidationError

if sys.platform != "win32":
    import fcntl

logger = logging.getLogger(__name__)

GENESIS = "0" * 64
"""``prev`` of the first entry."""

_KIND = re.compile(r"^[a-z][a-z0-9_.-]*$")
_FIELDS = ("seq", "time", "kind", "actor", "subject", "payload", "prev", "hash")


def canonical_json(value: object) -> bytes:
    """Sorted keys, no whitespace, raw UTF-8 (``ensure_ascii=False``), no NaN: one byte form."""
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


@dataclass(frozen=True)
class Entry:
    """One audit record. ``hash`` covers every other field, ``prev`` links it to the one before."""

    seq: int
    time: str
    kind: str
    actor: str
    subject: dict[str, str]
    payload: dict[str, object]
    prev: str
    hash: str

    def body(self) -> dict[str, object]:
        """The hashed content: every field but ``hash``."""
        content = asdict(self)
        del content["hash"]
        return content

    def compute_hash(self) -> str:
        return hashlib.sha256(canonical_json(self.body())).hexdigest()

    def to_line(self) -> bytes:
        return canonical_json(asdict(self)) + b"\n"


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :meth:`AuditLog.verify`.

    ``entries_checked`` counts the entries found good before the first problem; ``sequence`` and
    ``line`` (1-based) name the first bad entry, ``problem`` says what is wrong with it.
    """

    ok: bool
    entries_checked: int
    head_hash: str
    problem: str | None = None
    sequence: int | None = None
    line: int | None = None

    @property
    def message(self) -> str:
        if self.ok:
            return f"{self.entries_checked} entries, chain intact, head {self.head_hash}"
        where = f"entry {self.sequence}" + (f" (line {self.line})" if self.line else "")
        return f"{where}: {self.problem}; {self.entries_checked} entries before it are intact"


class _BadLine(Exception):
    """A stored line that is not a well-formed entry."""


def _parse(raw: bytes) -> Entry:
    """Decode one stored line into an :class:`Entry`, or raise :class:`_BadLine` saying why."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _BadLine(f"unparseable line ({exc})") from None
    if not isinstance(data, dict) or sorted(data) != sorted(_FIELDS):
        raise _BadLine(f"unparseable line (expected an object with fields {', '.join(_FIELDS)})")
    types = {"seq": int, "time": str, "kind": str, "actor": str, "subject": dict}
    types |= {"payload": dict, "prev": str, "hash": str}
    wrong = [name for name, kind in types.items() if not isinstance(data[name], kind)]
    if wrong or isinstance(data["seq"], bool):
        raise _BadLine(f"unparseable line (wrong type of {', '.join(wrong) or 'seq'})")
    return Entry(**data)


def _check(raw: bytes, expected_seq: int, prev_hash: str) -> tuple[Entry | None, str | None]:
    """The authentic entry on one line (if any) and the first thing wrong (``None``: nothing)."""
    try:
        entry = _parse(raw)
    except _BadLine as exc:
        return None, str(exc)
    # An edited entry's own fields (its seq included) cannot be trusted, so none is returned.
    if entry.compute_hash() != entry.hash:
        return None, "hash mismatch (entry edited)"
    if entry.to_line() != raw + b"\n":
        return None, "line is not in canonical form (entry edited)"
    if entry.prev != prev_hash:
        return entry, (
            f"prev does not match entry {expected_seq - 1}'s hash (entry deleted or reordered)"
        )
    if entry.seq != expected_seq:
        return entry, f"sequence gap (expected {expected_seq}, found {entry.seq})"
    return entry, None


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Tail:
    """What an append needs to know about the file: its size, last sequence and hash."""

    size: int = -1
    seq: int = 0
    hash: str = GENESIS


class AuditLog:
    """An append-only, hash-chained JSON Lines audit log at ``path``.

    Opening an existing log continues its chain. Appends are serialised by a thread lock and, on
    POSIX, an exclusive ``flock`` so several processes may share one file; each append is fsynced
    before it returns.

    Parameters
    ----------
    path
        The JSON Lines file; created on the first append.
    clock
        Returns the current time (timezone-aware); injectable for tests.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> log = AuditLog(Path(tempfile.mkdtemp()) / "audit.jsonl")
    >>> entry = log.append("rule_fired", actor="system", subject={"rule": "heat"}, payload={})
    >>> entry.seq, entry.prev == GENESIS, log.verify().ok
    (1, True, True)
    """

    def __init__(self, path: str | Path, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._tail = _Tail()

    def append(
        self,
        kind: str,
        *,
        actor: str,
        subject: Mapping[str, str] | None = None,
        payload: Mapping[str, object] | None = None,
    ) -> Entry:
        """Record one decision and return the stored entry (with its sequence and hash)."""
        _validate(kind, actor, subject or {})
        with self._lock, open(self.path, "ab") as handle:
            if sys.platform != "win32":
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            self._refresh_tail(handle.seek(0, os.SEEK_END))  # the size once we hold the lock
            entry = self._make_entry(kind, actor, dict(subject or {}), dict(payload or {}))
            line = entry.to_line()
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
            self._tail = _Tail(self._tail.size + len(line), entry.seq, entry.hash)
        logger.debug("audit %s #%d %s by %s", self.path, entry.seq, kind, actor)
        return entry

    def _make_entry(
        self, kind: str, actor: str, subject: dict[str, str], payload: dict[str, object]
    ) -> Entry:
        moment = self._clock()
        if moment.tzinfo is None:
            raise ValidationError(f"audit clock returned naive time {moment!r}; expected UTC")
        time = moment.astimezone(UTC).isoformat(timespec="microseconds")
        body = Entry(self._tail.seq + 1, time, kind, actor, subject, payload, self._tail.hash, "")
        try:
            digest = body.compute_hash()
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"audit {kind!r} payload is not plain JSON: {exc}") from None
        return replace(body, hash=digest)

    def _refresh_tail(self, size: int) -> None:
        """Re-read the last entry on every append: another writer, or an operator's repair, may
        have changed the file since; reading back to the previous newline is cheap."""
        raw = _last_line(self.path, size)
        if raw is None:
            self._tail = _Tail(size)
            return
        try:
            last = _parse(raw)
        except _BadLine as exc:
            raise StoreError(
                f"audit log {self.path}: last line is damaged ({exc}); "
                "run `citytwin audit verify` before appending"
            ) from None
        self._tail = _Tail(size, last.seq, last.hash)

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        if not self.path.exists():
            return
        content = self.path.read_bytes()
        lines = content.split(b"\n")
        if lines[-1] == b"":
            lines.pop()  # the terminating newline of the last entry
        else:
            lines[-1] += b"\0"  # an unterminated last line (torn write) is never canonical
        yield from enumerate(lines, start=1)

    def entries(self) -> list[Entry]:
        """Every entry in file order; a line that is not an entry raises :class:`StoreError`."""
        found = []
        for number, raw in self._lines():
            try:
                found.append(_parse(raw.rstrip(b"\0")))
            except _BadLine as exc:
                raise StoreError(f"audit log {self.path} line {number}: {exc}") from None
        return found

    def head(self) -> tuple[int, str]:
        """``(count, last hash)``: record it elsewhere to detect later loss of the newest entries.

        Raises :class:`StoreError` when the chain is already broken: a damaged log has no head.
        """
        report = self.verify()
        if not report.ok:
            raise StoreError(f"audit log {self.path}: {report.message}")
        return report.entries_checked, report.head_hash

    def verify(self, *, expected_head: tuple[int, str] | None = None) -> VerifyReport:
        """Walk the whole chain and report the first bad entry; never raises on a damaged file.

        ``expected_head`` is a ``(count, hash)`` pair from an earlier :meth:`head`: entry ``count``
        must still exist and still have that hash.
        """
        prev, count = GENESIS, 0
        for number, raw in self._lines():
            entry, problem = _check(raw, count + 1, prev)
            if problem is not None:
                named = entry.seq if entry is not None else count + 1
                return VerifyReport(False, count, prev, problem, named, number)
            assert entry is not None
            if expected_head and expected_head[0] == entry.seq and expected_head[1] != entry.hash:
                problem = "hash differs from the recorded head (log rewritten)"
                return VerifyReport(False, count, prev, problem, count + 1, number)
            prev, count = entry.hash, count + 1
        return _check_head(count, prev, expected_head)


def _check_head(count: int, prev: str, expected_head: tuple[int, str] | None) -> VerifyReport:
    if expected_head is not None and count < expected_head[0]:
        problem = f"missing: the recorded head has {expected_head[0]} entries (log truncated)"
        return VerifyReport(False, count, prev, problem, count + 1, None)
    return VerifyReport(True, count, prev)


def _validate(kind: str, actor: str, subject: Mapping[str, str]) -> None:
    problems = []
    if not _KIND.match(kind):
        problems.append(f"kind {kind!r} must be a lower-case word like 'rule_fired'")
    if not actor:
        problems.append("actor must name a token, role or 'system'")
    bad = [key for key, value in subject.items() if not isinstance(value, str)]
    if bad:
        problems.append(f"subject ids {bad} must be strings")
    if problems:
        raise ValidationError("audit entry: " + "; ".join(problems))


def _last_line(path: Path, size: int) -> bytes | None:
    """The last line of the first ``size`` bytes without reading the whole file."""
    if size == 0:
        return None
    with open(path, "rb") as handle:
        handle.seek(size - 1)
        if handle.read(1) != b"\n":
            return b"\0"  # a torn write: the file does not end with a whole entry
        start, chunk = size - 1, b""
        while start > 0 and b"\n" not in chunk:
            step = min(4096, start)
            start -= step
            handle.seek(start)
            chunk = handle.read(step) + chunk
        return chunk.rsplit(b"\n", 1)[-1] if b"\n" in chunk else chunk
