"""Reading raw feed files robustly: size limits, encoding detection, line-exact CSV parsing.

Korean public data arrives as UTF-8, UTF-8 with a BOM, or CP949/EUC-KR (CP949 is a superset of
EUC-KR, so one decoder serves both). Everything is handed on as UTF-8 bytes; a line that is
valid in neither encoding is quarantined, and the rest of the file still lands.

CSV is parsed by Arrow (multithreaded, typed) on the fast path. Only when a file is dirty —
wrong column counts, non-numeric cells — does it take the exact path, which recovers line numbers
and raw text for every rejected row. A clean file never pays for the dirty-file machinery.
"""

from __future__ import annotations

import csv
import logging
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from numpy.typing import NDArray

from citytwin.errors import FeedError

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 8 * 1024**3
CHUNK_BYTES = 128 * 1024**2  # ~1.5M S-DoT rows, ~30M observations: a few GB of working memory
UTF8_BOM = b"\xef\xbb\xbf"
_NON_SPACE = re.compile(rb"\S")
_INTEGER = r"^\s*[-+]?\d{1,18}\s*$"  # fits int64 without overflow
_NUMBER = r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$"


@dataclass(frozen=True)
class Reject:
    """A line that could not be read, and why."""

    line: int | None
    raw: str
    reason: str


@dataclass
class Source:
    """A raw input decoded to UTF-8 bytes."""

    name: str
    data: bytes
    encoding: str
    rejects: list[Reject] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.data)

    @cached_property
    def _lines(self) -> list[bytes]:
        return self.data.split(b"\n")

    def line_text(self, line: int) -> str:
        """Raw text of a 1-based physical line (dirty-file path only)."""
        lines = self._lines
        return (
            lines[line - 1].rstrip(b"\r").decode("utf-8", "replace") if line <= len(lines) else ""
        )


def normalize_name(name: str) -> str:
    """Header normal form: NFKC (㎍→μg, ℃→°C), no spaces, lower case, no BOM.

    >>> normalize_name(" 초미세먼지 (㎍/㎥)") == normalize_name("초미세먼지(μg/m3)")
    True
    """
    text = unicodedata.normalize("NFKC", name.replace("\ufeff", ""))
    return re.sub(r"\s+", "", text).lower().replace("μ", "µ").replace("µ", "u")


def check_file(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> int:
    """The size of an input file, after checking it exists, is a file and is within the limit."""
    path = Path(path)
    if not path.exists():
        raise FeedError(str(path), "no such file")
    if not path.is_file():
        raise FeedError(str(path), "is not a regular file; expected a data file")
    size = path.stat().st_size
    if size > max_bytes:
        raise FeedError(
            str(path), f"is {size:,} bytes; the limit is {max_bytes:,} (max_input_bytes)"
        )
    return size


def load_source(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Source:
    """Read a file and decode it to UTF-8 (UTF-8, UTF-8+BOM or CP949/EUC-KR)."""
    check_file(path, max_bytes)
    return decode_bytes(str(path), Path(path).read_bytes())


def decode_bytes(name: str, raw: bytes) -> Source:
    """Detect the encoding of ``raw`` and return it as UTF-8 bytes."""
    if raw.startswith(UTF8_BOM):
        raw, bom = raw[len(UTF8_BOM) :], True
    else:
        bom = False
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return Source(name, raw.decode("utf-16").encode("utf-8"), "utf-16")
        except UnicodeDecodeError as exc:  # a BOM, then an odd byte count or a lone surrogate
            raise FeedError(
                name, f"starts with a UTF-16 byte-order mark but is not UTF-16 text ({exc.reason})"
            ) from None
    if is_utf8(raw):
        return Source(name, raw, "utf-8-sig" if bom else "utf-8")
    try:
        return Source(name, raw.decode("cp949").encode("utf-8"), "cp949")
    except UnicodeDecodeError:
        return _decode_by_line(name, raw)


def is_utf8(raw: bytes) -> bool:
    """Whether ``raw`` is valid UTF-8, checked by Arrow's SIMD validator (~15× Python's decode)."""
    offsets = pa.array([0, len(raw)], pa.int64()).buffers()[1]
    blob = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(raw)])
    try:
        blob.cast(pa.large_string())
    except pa.ArrowInvalid:
        return False
    return True


def _decode_by_line(name: str, raw: bytes) -> Source:
    """Mixed or broken bytes: decode line by line, quarantine what fits no encoding."""
    lines = raw.split(b"\n")
    decoded: list[bytes] = []
    rejects: list[Reject] = []
    failures = {"utf-8": 0, "cp949": 0}
    for line in lines:
        for encoding in failures:
            try:
                line.decode(encoding)
            except UnicodeDecodeError:
                failures[encoding] += 1
    primary = min(failures, key=lambda e: failures[e])
    for number, line in enumerate(lines, start=1):
        try:
            decoded.append(line.decode(primary).encode("utf-8"))
        except UnicodeDecodeError as exc:
            rejects.append(
                Reject(
                    number,
                    line.decode(primary, "backslashreplace"),
                    f"bytes {line[exc.start : exc.start + 4]!r} at column {exc.start + 1} are not "
                    f"valid {primary.upper()} (the file's encoding) nor any other supported one",
                )
            )
            decoded.append(b"")  # keep the line count so later line numbers stay true
    logger.warning("%s: %d undecodable line(s), decoded as %s", name, len(rejects), primary)
    return Source(name, b"\n".join(decoded), primary, rejects)


def read_header(source: Source) -> tuple[list[str], int]:
    """The header's column names and the 1-based line it stands on (first non-blank line)."""
    offset = 0
    for number, line in enumerate(_first_lines(source.data, 50), start=1):
        text = line.decode("utf-8", "replace").strip()
        if text:
            try:
                return next(csv.reader([text])), number
            except csv.Error as exc:
                raise FeedError(
                    source.name, f"header is not a CSV line ({exc})", line=number
                ) from None
        offset += len(line) + 1
    raise FeedError(source.name, "is empty; expected a header line", line=1)


def _first_lines(data: bytes, count: int) -> list[bytes]:
    """``data.split(b"\\n", count)[:count]`` without copying the rest of a large file."""
    end = 0
    for _ in range(count):
        end = data.find(b"\n", end) + 1
        if not end:
            end = len(data)
            break
    return data[:end].split(b"\n")[:count]


@dataclass
class Table:
    """Parsed rows: typed columns, the physical line of each row, and rejected lines.

    Text columns are dictionary-encoded: ``columns[name]`` holds codes into ``labels[name]``
    (-1 for an empty cell), so that 600,000 serial numbers are hashed once, not sorted as strings.
    """

    columns: dict[str, NDArray[Any]]
    line: NDArray[np.int64]
    rejects: list[Reject]
    labels: dict[str, list[str]] = field(default_factory=dict)
    size: int = 0  # bytes of source text this table was parsed from

    def __len__(self) -> int:
        return int(self.line.shape[0])

    def take(self, index: NDArray[np.bool_] | NDArray[np.intp]) -> Table:
        return Table(
            {k: v[index] for k, v in self.columns.items()},
            self.line[index],
            self.rejects,
            self.labels,
            self.size,
        )

    def text(self, name: str) -> NDArray[np.object_]:
        """A text column decoded to strings ('' for empty cells)."""
        labels = np.asarray([*self.labels[name], ""], dtype=object)
        decoded: NDArray[np.object_] = labels[self.columns[name]]  # code -1 picks the last ""
        return decoded


def read_table(
    source: Source,
    *,
    names: list[str],
    header_line: int,
    types: dict[str, pa.DataType],
) -> Table:
    """Parse the whole CSV body as one table (see :func:`read_tables`)."""
    return next(
        read_tables(
            source,
            names=names,
            header_line=header_line,
            types=types,
            chunk_bytes=len(source.data) + 1,
        )
    )


def read_tables(
    source: Source,
    *,
    names: list[str],
    header_line: int,
    types: dict[str, pa.DataType],
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[Table]:
    """Parse the CSV body in chunks of about ``chunk_bytes`` (cut at line ends).

    ``types`` selects and types the columns wanted (float64, int64, string). Numeric cells that
    are empty become NaN (a missing value, not an error); numeric cells that are not numbers
    reject their row with a reason naming the column and the text. Chunks bound memory on large
    files and let callers report progress; line numbers stay those of the whole file.
    """
    data = source.data
    start = 0
    for _ in range(header_line):
        start = data.find(b"\n", start) + 1 or len(data)
    lines_before, carried, counted = header_line, list(source.rejects), 0
    buffer = pa.py_buffer(data)  # zero-copy views of the chunks
    while True:
        end = min(start + chunk_bytes, len(data))
        end = data.find(b"\n", end) + 1 or len(data) if end < len(data) else end
        table = _read_body(source, buffer[start:end], names, types, lines_before, carried)
        table.size, counted = end - counted, end  # the first chunk also counts the header
        yield table
        if end >= len(data):
            return
        lines_before += data.count(b"\n", start, end)
        start, carried = end, []


def _read_body(
    source: Source,
    body: pa.Buffer,
    names: list[str],
    types: dict[str, pa.DataType],
    lines_before: int,
    carried: list[Reject],
) -> Table:
    """One chunk: the fast typed path, else the exact path for a dirty chunk."""
    if _NON_SPACE.search(memoryview(body)) is None:  # nothing but blank lines: typed, empty
        empty = pa.table({name: pa.array([], dtype) for name, dtype in types.items()})
        return _finish(empty, types, lines_before, carried, [])
    try:
        table, bad = _parse(body, names, types, threads=True)
        if not bad:
            return _finish(table, types, lines_before, carried, [])
    except pa.ArrowInvalid:
        pass  # a cell did not convert: take the exact path
    strings = dict.fromkeys(types, pa.string())
    try:
        table, bad = _parse(body, names, strings, threads=False)
    except pa.ArrowInvalid as exc:  # not CSV at all (e.g. a lone BOM): every line is a reject
        return _unparseable(body, types, lines_before, carried, str(exc))
    rejects = [
        Reject(
            r.number + lines_before if r.number is not None else None,
            r.text,
            f"expected {r.expected} columns, found {r.actual}",
        )
        for r in bad
    ]
    return _convert(source, table, types, lines_before, rejects, carried)


def _unparseable(
    body: pa.Buffer,
    types: dict[str, pa.DataType],
    lines_before: int,
    carried: list[Reject],
    problem: str,
) -> Table:
    """A chunk Arrow cannot parse even as text: quarantine each of its non-blank lines."""
    text = body.to_pybytes().decode("utf-8", "replace").split("\n")
    rejects = [
        Reject(lines_before + number, line, f"line cannot be parsed as CSV ({problem})")
        for number, line in enumerate(text, start=1)
        if line.strip()
    ]
    empty = pa.table({name: pa.array([], dtype) for name, dtype in types.items()})
    return _finish(empty, types, lines_before, [*carried, *rejects], [])


@dataclass(frozen=True)
class _BadRow:
    number: int | None
    text: str
    expected: int
    actual: int


def _parse(
    body: pa.Buffer, names: list[str], types: dict[str, pa.DataType], *, threads: bool
) -> tuple[pa.Table, list[_BadRow]]:
    bad: list[_BadRow] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        bad.append(_BadRow(row.number, row.text, row.expected_columns, row.actual_columns))
        return "skip"

    table = pacsv.read_csv(
        pa.BufferReader(body),
        read_options=pacsv.ReadOptions(column_names=names, use_threads=threads),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, ignore_empty_lines=False),
        convert_options=pacsv.ConvertOptions(
            column_types=types,
            include_columns=list(types),
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )
    return table, bad


def _row_lines(n_rows: int, header_line: int, reject_lines: list[int]) -> NDArray[np.int64]:
    """Physical line numbers of parsed rows: every body line except the rejected ones."""
    lines = np.arange(header_line + 1, header_line + 1 + n_rows + len(reject_lines), dtype=np.int64)
    return lines if not reject_lines else np.setdiff1d(lines, reject_lines, assume_unique=True)


def _finish(
    table: pa.Table,
    types: dict[str, pa.DataType],
    header_line: int,
    rejects: list[Reject],
    reject_lines: list[int],
) -> Table:
    lines = _row_lines(table.num_rows, header_line, reject_lines)
    columns: dict[str, NDArray[Any]] = {}
    labels: dict[str, list[str]] = {}
    blank = np.ones(table.num_rows, dtype=bool)
    for name, dtype in types.items():
        column = table.column(name)
        if pa.types.is_floating(dtype):
            columns[name] = _numbers(column, np.float64, float("nan"))
            blank &= np.isnan(columns[name])
        elif pa.types.is_integer(dtype):
            columns[name] = _numbers(column, np.int64, -1)
            blank &= columns[name] == -1
        else:
            encoded = pc.dictionary_encode(pc.if_else(pc.equal(column, ""), None, column))
            encoded = encoded.combine_chunks() if isinstance(encoded, pa.ChunkedArray) else encoded
            columns[name] = encoded.indices.fill_null(-1).to_numpy().astype(np.int64)
            labels[name] = encoded.dictionary.to_pylist()
            blank &= columns[name] == -1
    result = Table(columns, lines, rejects, labels)
    return result.take(~blank) if blank.any() else result


def _numbers(column: pa.ChunkedArray, dtype: type[np.generic], null: float) -> NDArray[Any]:
    """A numeric Arrow column as one numpy array, nulls replaced by ``null``.

    Reads each chunk's value buffer directly: ``ChunkedArray.to_numpy`` is ~6× slower on the
    dozens of chunks a multithreaded CSV read produces.
    """
    width = np.dtype(dtype).itemsize
    parts = []
    for chunk in column.cast(pa.from_numpy_dtype(dtype)).chunks:
        if chunk.null_count:
            chunk = pc.fill_null(chunk, pa.scalar(null, chunk.type))
        parts.append(np.frombuffer(chunk.buffers()[1], dtype, len(chunk), chunk.offset * width))
    return np.concatenate(parts) if parts else np.empty(0, dtype)


def _convert(
    source: Source,
    table: pa.Table,
    types: dict[str, pa.DataType],
    header_line: int,
    rejects: list[Reject],
    carried: list[Reject],
) -> Table:
    """Exact path: all columns arrived as strings; convert, rejecting rows with bad cells.

    ``rejects`` are the rows the parser skipped (they shift line numbers); ``carried`` are
    earlier problems (undecodable lines) reported with this chunk.
    """
    reject_lines = sorted(r.line for r in rejects if r.line is not None)
    lines = _row_lines(table.num_rows, header_line, reject_lines)
    problems: dict[int, list[str]] = {}
    converted: dict[str, pa.Array] = {}
    for name, dtype in types.items():
        column = pc.utf8_trim_whitespace(table.column(name))
        if pa.types.is_string(dtype):
            converted[name] = column
            continue
        integer = pa.types.is_integer(dtype)
        empty = pc.or_kleene(pc.is_null(column), pc.equal(column, ""))
        numeric = pc.match_substring_regex(column, _INTEGER if integer else _NUMBER)
        bad = pc.and_(pc.invert(empty.fill_null(True)), pc.invert(numeric.fill_null(False)))
        expected = "an integer (at most 18 digits)" if integer else "a number"
        for index in np.flatnonzero(bad.to_numpy(zero_copy_only=False)):
            problems.setdefault(int(index), []).append(
                f"column {name!r}: {column[int(index)].as_py()!r} is not {expected}"
            )
        cleaned = pc.if_else(  # Arrow's integer parser refuses a leading '+'
            pc.or_(empty.fill_null(True), bad),
            pa.scalar(None, pa.string()),
            pc.replace_substring_regex(column, r"^\+", ""),
        )
        converted[name] = cleaned.cast(dtype if integer else pa.float64()).cast(dtype)
    out = _finish(pa.table(converted), types, header_line, [*carried, *rejects], reject_lines)
    if problems:
        bad_lines = {int(lines[i]): "; ".join(reasons) for i, reasons in problems.items()}
        out.rejects.extend(Reject(n, source.line_text(n), r) for n, r in sorted(bad_lines.items()))
        keep = ~np.isin(out.line, np.fromiter(bad_lines, np.int64))
        out = out.take(keep)
    return out
