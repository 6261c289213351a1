"""Reading documents and labels from files, and opening output streams.

This is the only module that touches the file system. Every problem with the
input becomes a typed :class:`~dedup.errors.InputError` whose message names the
file and, where it applies, the line (or row), so the CLI can print it as is.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import json
import os
import sys
import types
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from dedup.errors import (
    ConfigError,
    DedupError,
    DuplicateIdError,
    EmptyDocumentError,
    FieldError,
    InputError,
)
from dedup.records import Document, parse_published

PathArg = str | os.PathLike[str]

_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
_STDIN_NAME = "<stdin>"
_METADATA_NAME = "metadata.jsonl"
_OPTIONAL_STR_FIELDS = ("title", "source", "url", "lang")


@dataclasses.dataclass(frozen=True)
class FieldMap:
    """Which record field holds each :class:`~dedup.records.Document` attribute.

    A field that differs from its default was named on purpose, so it must
    exist in every record; a default optional field may be absent.
    """

    id: str = "id"
    text: str = "text"
    title: str = "title"
    source: str = "source"
    published: str = "published"
    url: str = "url"
    lang: str = "lang"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if not getattr(self, f.name):
                raise ConfigError(f"empty field name for {f.name!r}")

    # Cached: asked once per record, and a million records are read in a run.
    @functools.cached_property
    def _remapped(self) -> Mapping[str, str]:
        return types.MappingProxyType(
            {
                f.name: getattr(self, f.name)
                for f in dataclasses.fields(self)
                if getattr(self, f.name) != f.default
            }
        )

    @functools.cached_property
    def _record_keys(self) -> frozenset[str]:
        return frozenset(getattr(self, f.name) for f in dataclasses.fields(self))

    def remapped(self) -> Mapping[str, str]:
        """Attribute -> record field, for the fields that differ from the default."""
        return self._remapped

    def record_keys(self) -> frozenset[str]:
        """The record fields this map consumes; every other field goes to ``extra``."""
        return self._record_keys


def iter_documents(
    paths: PathArg | Sequence[PathArg],
    *,
    fields: FieldMap | None = None,
    allow_empty: bool = False,
    stdin: BinaryIO | None = None,
) -> Iterator[Document]:
    """Stream documents from files, directories of ``.txt`` files, or stdin.

    Parameters
    ----------
    paths : path or sequence of paths
        Directories (their ``*.txt`` files, plus an optional ``metadata.jsonl``),
        ``.txt``, ``.jsonl``/``.ndjson``/``.json`` (JSON Lines), ``.csv``,
        ``.parquet`` files, or ``"-"`` for JSON Lines on standard input.
    fields : FieldMap, optional
        Record field names; remapped fields are required in every record.
    allow_empty : bool
        Keep documents whose text is empty or blank (with text ``""``)
        instead of raising :class:`EmptyDocumentError`.
    stdin : binary stream, optional
        Read ``"-"`` from here instead of ``sys.stdin.buffer``.

    Yields
    ------
    Document
        In input order; ``origin`` is ``"path:line"``.

    Raises
    ------
    InputError
        Or a subclass, for any unreadable input, bad field or duplicate id.
    """
    fields = fields or FieldMap()
    # A str is itself a Sequence, so a single path must be caught first.
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise InputError("no input paths given")
    seen: dict[str, str] = {}  # id -> origin of its first occurrence
    for path in items:
        for doc, shown, line in _iter_path(path, fields, allow_empty, stdin):
            _register(seen, doc.id, shown, line)
            yield doc


def read_documents(
    paths: PathArg | Sequence[PathArg],
    *,
    fields: FieldMap | None = None,
    allow_empty: bool = False,
    stdin: BinaryIO | None = None,
) -> list[Document]:
    """Read every document into a list; see :func:`iter_documents`."""
    return list(iter_documents(paths, fields=fields, allow_empty=allow_empty, stdin=stdin))


def read_labels(
    path: PathArg, *, id_field: str = "id", label_field: str = "cluster"
) -> dict[str, str]:
    """Read ``{id, label}`` JSON Lines (any extension) into ``{id: label}``, for scoring.

    Integer ids and labels become strings. A missing or null field, or an id
    listed twice, raises a :class:`~dedup.errors.FieldError` or
    :class:`~dedup.errors.DuplicateIdError` located at its line.
    """
    shown = str(path)
    labels: dict[str, str] = {}
    seen: dict[str, str] = {}
    with _open_binary(path) as handle:
        for line, record in _json_records(_iter_lines(handle, shown), shown):
            for key in (id_field, label_field):
                if record.get(key) is None:
                    raise FieldError(f"missing field {key!r}", shown, line)
            doc_id = _as_key(record[id_field], id_field, shown, line)
            _register(seen, doc_id, shown, line)
            labels[doc_id] = _as_key(record[label_field], label_field, shown, line)
    if not labels:
        raise InputError("empty file", shown)
    return labels


@contextlib.contextmanager
def open_output(path: PathArg | None) -> Iterator[TextIO]:
    """Open ``path`` for writing UTF-8 text with ``"\\n"`` line ends.

    ``None`` or ``"-"`` yields ``sys.stdout``, which is left open.
    """
    if path is None or str(path) == "-":
        yield sys.stdout
        return
    try:
        handle = open(path, "w", encoding="utf-8", newline="\n")  # noqa: SIM115
    except OSError as exc:
        raise DedupError(f"{path}: cannot write: {exc.strerror or exc}") from exc
    with handle:
        yield handle


def _register(seen: dict[str, str], key: str, shown: str, line: int) -> None:
    """Remember where ``key`` was first seen; seeing it again is a DuplicateIdError."""
    if key in seen:
        raise DuplicateIdError(f"duplicate id {key!r} (first seen at {seen[key]})", shown, line)
    seen[key] = f"{shown}:{line}"


def _iter_path(
    path: PathArg, fields: FieldMap, allow_empty: bool, stdin: BinaryIO | None
) -> Iterator[tuple[Document, str, int]]:
    """Documents of one input, each with the shown path and line for messages."""
    if str(path) == "-":
        handle = stdin if stdin is not None else sys.stdin.buffer
        records = _json_records(_iter_lines(handle, _STDIN_NAME), _STDIN_NAME)
        yield from _map_records(records, fields, allow_empty, _STDIN_NAME, "stdin")
        return
    p, shown = Path(path), str(path)
    if p.is_dir():
        yield from _read_directory(p, fields, allow_empty)
        return
    if not p.exists():
        raise InputError("no such file or directory", shown)
    suffix = p.suffix.lower()
    if suffix == ".txt":
        yield _txt_document(p, allow_empty, None), shown, 1
        return
    if suffix in _JSONL_SUFFIXES:
        records = _jsonl_file_records(p)
    elif suffix == ".csv":
        records = _csv_records(p)
    elif suffix == ".parquet":
        records = _parquet_records(p)
    else:
        raise InputError(
            f"unsupported input type {suffix or '(no extension)'!r}; expected a directory, "
            ".txt, .jsonl, .ndjson, .json, .csv, .parquet or -",
            shown,
        )
    yield from _map_records(records, fields, allow_empty, shown, p.name)


def _map_records(
    records: Iterable[tuple[int, Mapping[str, Any]]],
    fields: FieldMap,
    allow_empty: bool,
    shown: str,
    name: str,
) -> Iterator[tuple[Document, str, int]]:
    count = 0
    for line, record in records:
        count += 1
        yield _record_to_document(record, fields, allow_empty, shown, line, name), shown, line
    if count == 0:
        raise InputError("empty file", shown)


def _open_binary(path: PathArg) -> BinaryIO:
    try:
        return open(path, "rb")  # noqa: SIM115 - callers close it
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", str(path)) from exc


def _decode(data: bytes, shown: str, first_line: int = 1) -> str:
    """Strict UTF-8 decoding that reports the line (and column) of the first bad byte."""
    nul = data.find(b"\0")
    if nul >= 0:
        # NUL never occurs in text, so this is most likely a binary or UTF-16 file.
        line = first_line + data.count(b"\n", 0, nul)
        raise InputError("binary file, expected UTF-8 text", shown, line)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + data.count(b"\n", 0, exc.start)
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        msg = f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at column {column})"
        raise InputError(msg, shown, line) from None
    return text[1:] if first_line == 1 and text.startswith("\ufeff") else text


def _iter_lines(handle: BinaryIO, shown: str) -> Iterator[str]:
    """Decode a binary stream line by line, keeping line ends, so memory stays flat.

    Splitting on ``b"\\n"`` is safe: that byte never occurs inside a multi-byte
    UTF-8 sequence, and unlike ``str.splitlines`` it ignores U+2028 and friends.
    """
    for number, raw in enumerate(handle, start=1):
        yield _decode(raw, shown, number)


def _json_records(lines: Iterable[str], shown: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"malformed JSON: {exc.msg} (column {exc.colno})", shown, number
            ) from None
        if not isinstance(value, dict):
            raise InputError(f"expected a JSON object, got {_type_name(value)}", shown, number)
        yield number, value


def _jsonl_file_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with _open_binary(path) as handle:
        yield from _json_records(_iter_lines(handle, str(path)), str(path))


def _csv_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    shown = str(path)
    with _open_binary(path) as handle:
        reader = csv.reader(_iter_lines(handle, shown))
        try:
            header = next(reader, None)
            if header is None:
                return  # no rows at all; the caller reports the empty file
            dupes = sorted({name for name in header if header.count(name) > 1})
            if dupes:
                raise InputError(f"duplicate column {dupes[0]!r} in header", shown, 1)
            start = reader.line_num + 1
            for row in reader:
                if row:  # csv yields [] for a blank line
                    if len(row) != len(header):
                        msg = f"expected {len(header)} columns, got {len(row)}"
                        raise InputError(msg, shown, start)
                    # CSV has no null, so an empty cell means "absent".
                    yield start, {k: v or None for k, v in zip(header, row, strict=True)}
                start = reader.line_num + 1
        except csv.Error as exc:
            raise InputError(f"malformed CSV: {exc}", shown, reader.line_num) from None


def _parquet_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow as pa  # imported here: only Parquet input needs it
    import pyarrow.parquet as pq

    shown = str(path)
    if path.stat().st_size == 0:
        return  # the caller reports the empty file
    row = 0
    try:
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches():
            # datetime holds microseconds at most, and without pandas pyarrow
            # refuses to convert nanosecond timestamps, so truncate them.
            columns = [
                c.cast(pa.timestamp("us", tz=c.type.tz), safe=False)
                if pa.types.is_timestamp(c.type) and c.type.unit == "ns"
                else c
                for c in batch.columns
            ]
            for record in pa.RecordBatch.from_arrays(columns, names=batch.schema.names).to_pylist():
                row += 1
                yield row, record
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(f"cannot read Parquet file: {exc}", shown) from None


def _read_directory(
    directory: Path, fields: FieldMap, allow_empty: bool
) -> Iterator[tuple[Document, str, int]]:
    txt_files = sorted(
        (p for p in directory.iterdir() if p.suffix.lower() == ".txt" and p.is_file()),
        key=lambda p: p.name,
    )
    if not txt_files:
        raise InputError("no .txt files in directory", str(directory))
    # Check the metadata before yielding anything, so a bad line fails fast.
    metadata = _read_metadata(directory / _METADATA_NAME, fields, {p.stem for p in txt_files})
    for txt in txt_files:
        yield _txt_document(txt, allow_empty, metadata.get(txt.stem)), str(txt), 1


def _read_metadata(path: Path, fields: FieldMap, stems: set[str]) -> dict[str, dict[str, Any]]:
    """Optional per-document fields from ``metadata.jsonl``, by id."""
    if not path.is_file():
        return {}
    shown = str(path)
    found: dict[str, dict[str, Any]] = {}
    seen: dict[str, str] = {}
    for line, record in _jsonl_file_records(path):
        if record.get(fields.id) is None:
            raise FieldError(f"missing field {fields.id!r}", shown, line)
        doc_id = _as_key(record[fields.id], fields.id, shown, line)
        if doc_id not in stems:
            raise InputError(f"metadata for id {doc_id!r} has no {doc_id}.txt file", shown, line)
        _register(seen, doc_id, shown, line)
        found[doc_id] = _optional_fields(record, fields, shown, line)
    return found


def _txt_document(path: Path, allow_empty: bool, metadata: dict[str, Any] | None) -> Document:
    """One document from a text file: id is the stem, title the first non-blank line."""
    shown = str(path)
    with _open_binary(path) as handle:
        text = _decode(handle.read(), shown)
    title = next((line.strip() for line in text.splitlines() if line.strip()), None)
    meta = dict(metadata or {})
    if meta.get("title") is None:
        meta["title"] = title
    return Document(
        id=path.stem,
        text=_checked_text(text, path.stem, allow_empty, shown, 1),
        origin=f"{shown}:1",
        **meta,
    )


def _record_to_document(
    record: Mapping[str, Any], fields: FieldMap, allow_empty: bool, shown: str, line: int, name: str
) -> Document:
    for key in fields.remapped().values():
        if key not in record:
            have = ", ".join(map(str, list(record)[:10]))
            raise FieldError(f"unknown field {key!r} (record has: {have})", shown, line)
    if fields.text not in record:
        raise FieldError(f"missing field {fields.text!r}", shown, line)
    raw_id = record.get(fields.id)
    doc_id = f"{name}:{line}" if raw_id is None else _as_key(raw_id, fields.id, shown, line)
    text = record[fields.text]
    if text is not None and not isinstance(text, str):
        msg = f"field {fields.text!r} must be a string, got {_type_name(text)}"
        raise InputError(msg, shown, line)
    return Document(
        id=doc_id,
        text=_checked_text(text or "", doc_id, allow_empty, shown, line),
        origin=f"{shown}:{line}",
        **_optional_fields(record, fields, shown, line),
    )


def _checked_text(text: str, doc_id: str, allow_empty: bool, shown: str, line: int) -> str:
    if text.strip():
        return text
    if not allow_empty:
        raise EmptyDocumentError(f"empty text in document {doc_id!r}", shown, line)
    return ""


def _optional_fields(
    record: Mapping[str, Any], fields: FieldMap, shown: str, line: int
) -> dict[str, Any]:
    """Title, source, url, lang, published and extra, as Document keyword arguments."""
    out: dict[str, Any] = {
        attr: _as_optional_str(
            record.get(getattr(fields, attr)), getattr(fields, attr), shown, line
        )
        for attr in _OPTIONAL_STR_FIELDS
    }
    out["published"] = _parse_published(record.get(fields.published), shown, line)
    used = fields.record_keys()
    out["extra"] = {k: v for k, v in record.items() if k not in used}
    return out


def _as_key(value: Any, key: str, shown: str, line: int) -> str:
    """An id or label: a non-empty string, or an integer turned into one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        msg = f"field {key!r} must be a string or integer, got {_type_name(value)}"
        raise InputError(msg, shown, line)
    if not value.strip():
        raise FieldError(f"empty value in field {key!r}", shown, line)
    return value


def _as_optional_str(value: Any, key: str, shown: str, line: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        msg = f"field {key!r} must be a string, got {_type_name(value)}"
        raise InputError(msg, shown, line)
    return value.strip() or None


def _parse_published(value: Any, shown: str, line: int) -> datetime | None:
    try:
        return parse_published(value)
    except ValueError as err:
        raise InputError(str(err), shown, line) from None


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


# --- pairs for scoring ------------------------------------------------------------


def read_pairs(
    path: PathArg, *, stdin: BinaryIO | None = None
) -> list[tuple[str | None, str, str]]:
    """Read ``{"text1", "text2", "pair_id"?}`` JSON Lines into ``(pair_id, text1, text2)``.

    ``"-"`` reads standard input. An integer ``pair_id`` becomes a string; a
    missing one is ``None``. A missing or non-string text raises a
    :class:`~dedup.errors.FieldError` or :class:`~dedup.errors.InputError`
    located at its line; a file without pairs raises an ``InputError``.
    """
    is_stdin = str(path) == "-"
    shown = _STDIN_NAME if is_stdin else str(path)
    pairs: list[tuple[str | None, str, str]] = []
    if is_stdin:
        opened = contextlib.nullcontext(stdin if stdin is not None else sys.stdin.buffer)
    else:
        opened = _open_binary(path)
    with opened as handle:
        for line, record in _json_records(_iter_lines(handle, shown), shown):
            texts = []
            for key in ("text1", "text2"):
                value = record.get(key)
                if value is None:
                    raise FieldError(f"missing field {key!r}", shown, line)
                if not isinstance(value, str):
                    msg = f"field {key!r} must be a string, got {_type_name(value)}"
                    raise InputError(msg, shown, line)
                texts.append(value)
            raw_id = record.get("pair_id")
            pair_id = None if raw_id is None else _as_key(raw_id, "pair_id", shown, line)
            pairs.append((pair_id, texts[0], texts[1]))
    if not pairs:
        raise InputError("empty file", shown)
    return pairs
