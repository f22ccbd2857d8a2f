"""Bounded, streaming reading of untrusted input files (posts and fact-checks alike).

A file is read a physical line at a time, each line at most `max_row_bytes` long
(a longer line is skipped in chunks, never held whole), so one hostile row
costs bounded memory and is set aside with its line number while the rest of
the file goes in. Every decoded JSON value is checked before anything else
touches it: nesting depth, finite numbers, strings that are valid Unicode (no
lone surrogates) and a size bound. CSV records are framed by the `csv` module
over the same bounded lines; a quoted field that never closes is detected and
set aside from the line where it opened, and the rows after it are read again
instead of being swallowed.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

CHUNK = 1 << 16


@dataclass(frozen=True)
class InputLimits:
    """Per-row and per-field bounds for input files (settings `ingest_max_*`)."""

    max_row_bytes: int = 1_000_000
    max_text_chars: int = 100_000
    max_depth: int = 20
    max_document_bytes: int = 50_000_000

    @classmethod
    def from_settings(cls, settings: Any) -> InputLimits:
        return cls(
            max_row_bytes=int(settings.ingest_max_row_bytes),
            max_text_chars=int(settings.ingest_max_text_chars),
            max_depth=int(settings.ingest_max_depth),
            max_document_bytes=int(settings.ingest_max_document_bytes),
        )


DEFAULT_LIMITS = InputLimits()


class RowError(Exception):
    """One row cannot be read: `line` (1-based) and `reason`, maybe `field`."""

    def __init__(self, line: int, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason
        self.field = field


class RowTooLong(RowError):
    pass


class LineSource:
    """Physical lines of a binary file as text, each at most `max_row_bytes`, with line numbers.

    A longer line raises `RowTooLong` after its rest was skipped chunk by chunk (the next
    call goes on with the next line). `max_record_bytes` bounds several lines of one
    record (a quoted CSV field with line breaks); `start_record()` resets that count.
    Lines can be pushed back to be read again (`replay`), with their numbers.
    """

    def __init__(self, handle: IO[bytes], limits: InputLimits, strip_bom: bool = True) -> None:
        self._handle = handle
        self._limit = limits.max_row_bytes
        self._pending: deque[tuple[int, str]] = deque()
        self._bom = strip_bom
        self.line = 0  # number of the line last returned
        self.record_lines: list[tuple[int, str]] = []
        self._record_bytes = 0
        self._physical = 0

    def start_record(self) -> None:
        self.record_lines = []
        self._record_bytes = 0

    def replay(self, lines: list[tuple[int, str]]) -> None:
        self._pending.extendleft(reversed(lines))

    def _raw_line(self) -> tuple[int, str] | None:
        if self._pending:
            return self._pending.popleft()
        data = self._handle.readline(self._limit + 1)
        if not data:
            return None
        self._physical += 1
        number = self._physical
        if self._bom and number == 1 and data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        if len(data) > self._limit and not data.endswith(b"\n"):
            while True:  # skip the rest of the line without holding it
                rest = self._handle.readline(CHUNK)
                if not rest or rest.endswith(b"\n"):
                    break
            raise RowTooLong(number, f"row longer than {self._limit:,} bytes (ingest_max_row_bytes)")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RowError(number, f"not UTF-8 text (byte {exc.start} of the line)") from exc
        return number, text

    def __iter__(self) -> LineSource:
        return self

    def __next__(self) -> str:
        got = self._raw_line()
        if got is None:
            raise StopIteration
        number, text = got
        self.line = number
        self._record_bytes += len(text)
        self.record_lines.append((number, text))
        if self._record_bytes > self._limit:
            first = self.record_lines[0][0]
            raise RowTooLong(first, f"row from line {first} to {number} longer than {self._limit:,} bytes (ingest_max_row_bytes)")
        return text


def iter_json_lines(handle: IO[bytes], limits: InputLimits) -> Iterator[tuple[int, Any | RowError, str]]:
    """(line, value or RowError, raw text) per non-blank line of a JSON Lines file."""
    source = LineSource(handle, limits)
    while True:
        source.start_record()
        try:
            text = next(source)
        except StopIteration:
            return
        except RowError as exc:
            yield exc.line, exc, ""
            continue
        if not text.strip():
            continue
        yield source.line, parse_json(text, source.line, limits), text


def parse_json(text: str, line: int, limits: InputLimits) -> Any | RowError:
    """A checked JSON value, or the RowError that says why it cannot be used."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return RowError(line + exc.lineno - 1, f"invalid JSON: {exc.msg} (column {exc.colno})")
    except RecursionError:
        return RowError(line, f"JSON nested deeper than {limits.max_depth} levels (ingest_max_depth)")
    problem = check_value(value, limits)
    if problem is not None:
        return RowError(line, problem[1], problem[0])
    return value


def check_value(value: Any, limits: InputLimits, path: str = "", depth: int = 0) -> tuple[str | None, str] | None:
    """(field, reason) of the first part of a decoded JSON value that cannot be stored, or None."""
    if depth > limits.max_depth:
        return path or None, f"JSON nested deeper than {limits.max_depth} levels (ingest_max_depth)"
    if isinstance(value, str):
        if len(value) > limits.max_text_chars:
            return path or None, f"{len(value):,} characters, more than {limits.max_text_chars:,} (ingest_max_text_chars)"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return path or None, f"not valid Unicode (lone surrogate U+{ord(value[exc.start]):04X} at character {exc.start})"
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return path or None, f"number out of range ({value})"
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = f"{path}.{key}" if path else str(key)
            found = check_value(key, limits, name, depth + 1) or check_value(item, limits, name, depth + 1)
            if found:
                return found
    elif isinstance(value, list):
        for n, item in enumerate(value):
            found = check_value(item, limits, f"{path}[{n}]", depth + 1)
            if found:
                return found
    return None


def check_text(value: str, field: str, limits: InputLimits) -> tuple[str, str] | None:
    found = check_value(value, limits, field)
    return None if found is None else (found[0] or field, found[1])


@dataclass
class CSVRecord:
    line: int
    cells: list[str]
    raw: str


def iter_csv_records(handle: IO[bytes], limits: InputLimits, delimiter: str = ",") -> Iterator[CSVRecord | RowError]:
    """Records of a CSV file (the header first), each with the line it starts on.

    A quoted field that spans lines but leaves its record with another number of cells
    than the header, or that is still open at the end of the file, is an unterminated
    quote: the record is set aside from the line where it starts and the lines after
    that line are read again as rows of their own. (A stray quote closed by a later
    one with the same number of cells cannot be told from a field with a line break.)
    """
    # a field is bounded by its row (max_row_bytes), not by the csv module's 128 KiB default
    # (process-wide, so only ever raised)
    if csv.field_size_limit() < limits.max_row_bytes:
        csv.field_size_limit(limits.max_row_bytes)
    source = LineSource(handle, limits)
    reader = csv.reader(source, delimiter=delimiter, strict=True)
    width: int | None = None
    while True:
        source.start_record()
        try:
            cells = next(reader)
        except StopIteration:
            return
        except RowTooLong as exc:
            yield exc
            continue
        except RowError as exc:
            yield exc
            continue
        except csv.Error as exc:
            lines = source.record_lines
            first = lines[0][0] if lines else source.line
            if "unexpected end of data" in str(exc) or (len(lines) > 1 and "expected after" in str(exc)):
                yield RowError(first, "unterminated quote: the quoted field opened here never closes")
                source.replay(lines[1:])
            else:
                yield RowError(first, f"malformed CSV: {exc}")
            continue
        lines = source.record_lines
        if not lines:
            continue
        first = lines[0][0]
        raw = "".join(text for _, text in lines)
        if width is not None and len(lines) > 1 and len(cells) != width:
            yield RowError(first, f"unterminated quote: the quoted field opened here runs over {len(lines)} lines into the following rows")
            source.replay(lines[1:])
            continue
        if not cells or not any(c.strip() for c in cells):
            continue
        if width is None:
            width = len(cells)
        yield CSVRecord(first, cells, raw)


class _Prefixed(io.RawIOBase):
    """`head` (bytes already read) followed by the rest of `rest`."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def peek_head(handle: IO[bytes], size: int) -> tuple[bytes, IO[bytes]]:
    """The first `size` bytes of a stream, and a stream that reads from its start again,
    without seeking (a member of a compressed archive seeks back by decompressing again)."""
    head = handle.read(size)
    return head, io.BufferedReader(_Prefixed(head, handle), buffer_size=CHUNK)


def open_binary(path: str | Path) -> IO[bytes]:
    return open(path, "rb")  # noqa: SIM115 - the caller closes it
