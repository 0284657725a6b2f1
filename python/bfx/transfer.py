"""Export and import formats, read and written as streams.

Two formats (``docs/storage.md``):

* ``json``: ``{"substrates": [...], "relationships": [...], "chains": [...],
  "aliases": [...], "lenses": [...]}`` (the last three since schema 4; an older
  document without them imports as before). bfx writes one record per line, so that
  a bfx export is read back a line at a time; a JSON document laid out any other way
  is decoded whole.
* ``ndjson``: one ``{"kind": "substrate"|"relationship"|"chain"|"alias"|"lens", ...}``
  object per line.

Readers validate each record against the HTTP API's import types (a 422 names the
record and field) and yield :class:`Record` dicts for
:meth:`bfx.Registry.import_records`, each knowing the input line it came from;
:func:`import_records` puts that line (``details.line``) next to the ``index`` of the
record an import stops at. Writers take :meth:`bfx.Registry.export_records` dicts
and yield ~64 KiB chunks. Neither ever holds the whole data set.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator
from typing import IO, Any

import msgspec

from bfx import errors
from bfx.api import types as s
from bfx.api.decoding import MalformedJsonError, field_error

__all__ = [
    "FORMATS",
    "Record",
    "import_records",
    "read_document",
    "read_json_stream",
    "read_ndjson",
    "read_stream",
    "write_document",
    "write_ndjson",
]

FORMATS = ("json", "ndjson")
_CHUNK = 64 * 1024
_encode = msgspec.json.Encoder().encode
_doc_decoder = msgspec.json.Decoder(s.ImportDocument)
_line_decoder = msgspec.json.Decoder(s.ImportLine)
_substrate_decoder = msgspec.json.Decoder(s.ImportSubstrate)
#: The sections of a document, in the order they are written, and their records' types.
_SECTIONS = (
    ("substrate", "substrates", s.ImportSubstrate),
    ("relationship", "relationships", s.ImportRelationship),
    ("chain", "chains", s.ImportChain),
    ("alias", "aliases", s.ImportAlias),
    ("lens", "lenses", s.ImportLens),
)
_DECODERS = {kind: msgspec.json.Decoder(t) for kind, _, t in _SECTIONS}
#: The line that opens each section after the first.
_SWITCHES = {f'],"{plural}":['.encode(): kind for kind, plural, _ in _SECTIONS[1:]}
_ORDER = [kind for kind, _, _ in _SECTIONS]
_LINE_KINDS = {
    s.ImportSubstrateLine: "substrate",
    s.ImportRelationshipLine: "relationship",
    s.ImportChainLine: "chain",
    s.ImportAliasLine: "alias",
    s.ImportLensLine: "lens",
}

# The layout write_document produces, line by line.
_OPEN = b'{"substrates":['
_SWITCH = b'],"relationships":['
_CLOSE = b"]}"
#: A first line that opens a document rather than holding an NDJSON record.
_DOCUMENT_START = re.compile(rb'^\s*\{\s*("substrates"|"relationships"|$)')
#: How each format is described when an input turns out to be in the other one.
_EXPECTED = {
    "json": 'a JSON document {"substrates": [...], "relationships": [...]}',
    "ndjson": 'NDJSON, one {"kind": "substrate"|"relationship", ...} record per line',
}
#: Keys that make a one-line object an NDJSON record rather than a document.
_RECORD_KEYS = frozenset({"kind", "expression_type", "expression_code", "rel_type", "source_id"})
#: The records an import may still be checking when it fails: the registry writes in
#: chunks of 2,048 records, so a failure names one of the last ones read.
_LINES_KEPT = 4096


# ---- writing ---------------------------------------------------------------------


def write_ndjson(records: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    buf = bytearray()
    for rec in records:
        buf += _encode(rec)
        buf += b"\n"
        if len(buf) >= _CHUNK:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)


def write_document(records: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """The JSON document, one record per line; records must come section by section
    (substrates, relationships, chains, aliases, lenses), as export_records yields
    them. The first two sections are always written; the others only when they hold
    a record (so a registry without any reads exactly as before schema 4)."""
    buf = bytearray(_OPEN)
    section = 0
    first = True
    for rec in records:
        kind = _ORDER.index(rec.get("kind"))  # type: ignore[arg-type]
        if kind < section:
            raise RuntimeError(f"export yielded a {_ORDER[kind]} after a {_ORDER[section]}")
        if kind > section:
            if section == 0 and kind > 1:
                buf += b"\n" + _SWITCH
            section = kind
            buf += b"\n" + f'],"{_SECTIONS[section][1]}":['.encode()
            first = True
        buf += b"\n" if first else b",\n"
        first = False
        buf += _encode({k: v for k, v in rec.items() if k != "kind"})
        if len(buf) >= _CHUNK:
            yield bytes(buf)
            buf.clear()
    if section == 0:
        buf += b"\n" + _SWITCH
    buf += b"\n" + _CLOSE + b"\n"
    yield bytes(buf)


# ---- reading ---------------------------------------------------------------------


class Record(dict):  # type: ignore[type-arg]
    """An import record (a plain dict to the registry) with ``line``: the input line
    it was read from, or ``None`` (a document decoded whole)."""

    __slots__ = ("line",)

    def __init__(self, kind: str, line: int | None) -> None:
        super().__init__(kind=kind)
        self.line = line


def _plain(obj: msgspec.Struct, kind: str, line: int | None = None) -> Record:
    rec = Record(kind, line)
    for name in obj.__struct_fields__:
        value = getattr(obj, name)
        if value is not msgspec.UNSET:
            if type(value) is list and value and isinstance(value[0], msgspec.Struct):
                value = msgspec.to_builtins(value)  # a chain's versions and history
            rec[name] = value
    return rec


def _first_line(text: bytes) -> bytes:
    """The first non-blank line of ``text`` (without splitting all of it)."""
    start = 0
    while start < len(text):
        end = text.find(b"\n", start)
        end = len(text) if end < 0 else end
        line = text[start:end].strip()
        if line:
            return line
        start = end + 1
    return b""


def _looks_like(line: bytes) -> str | None:
    """What a first non-blank line says about its input: ``json`` (a document
    opens), ``ndjson`` (one whole record object), ``array`` or ``None`` (not JSON)."""
    if _DOCUMENT_START.match(line):
        return "json"
    if line.lstrip().startswith(b"["):
        return "array"
    try:
        obj = msgspec.json.decode(line)
    except msgspec.DecodeError:
        return None
    return "ndjson" if isinstance(obj, dict) and not _RECORD_KEYS.isdisjoint(obj) else None


def _found(kind: str | None) -> str:
    return {
        "json": "a JSON document",
        "ndjson": "NDJSON (a whole record on its first line)",
        "array": "a JSON array",
    }.get(kind or "", "neither")


def format_mismatch(expected: str, found: str | None, line: int = 1) -> MalformedJsonError:
    """The input is in another format than the one it was read as (a 400)."""
    return MalformedJsonError(
        f"expected {_EXPECTED[expected]}, but found {_found(found)} at line {line}",
        {"expected": expected, "found": found or "unknown", "line": line},
    )


def read_document(body: bytes) -> Iterator[Record]:
    """A whole JSON document (already in memory, e.g. a request body)."""
    try:
        doc = _doc_decoder.decode(body or b"{}")
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        found = _looks_like(_first_line(body))
        if found in ("ndjson", "array"):
            raise format_mismatch("json", found) from None
        if isinstance(exc, msgspec.ValidationError):
            raise field_error(exc) from None
        raise MalformedJsonError(f"the document is not valid JSON: {exc}") from None
    for kind, plural, _ in _SECTIONS:
        for x in getattr(doc, plural):
            yield _plain(x, kind)


def _decode_line(
    decoder: msgspec.json.Decoder[Any], line: bytes, n: int, index: int, prefix: str = ""
) -> Any:
    """One record of line ``n`` (the ``index``-th record): a 422 naming the line,
    record and field, or a 400."""
    try:
        return decoder.decode(line)
    except msgspec.ValidationError as exc:
        err = field_error(exc, prefix=prefix)
        err.message = f"line {n}: {err.message}"
        err.details.update(line=n, index=index)
        raise err from None
    except msgspec.DecodeError as exc:
        raise MalformedJsonError(
            f"line {n} is not valid JSON: {exc}", {"line": n, "index": index}
        ) from None


def read_ndjson(lines: Iterable[bytes], start: int = 1) -> Iterator[Record]:
    """Records of NDJSON lines, the first being line ``start``."""
    index = 0
    for n, line in enumerate(lines, start=start):
        if not line.strip():
            continue
        if index == 0 and _DOCUMENT_START.match(line):
            raise format_mismatch("ndjson", "json", n)
        item = _decode_line(_line_decoder, line, n, index)
        yield _plain(item, _LINE_KINDS[type(item)], n)
        index += 1


def read_json_stream(first: bytes, rest: Iterable[bytes], start: int = 1) -> Iterator[Record]:
    """A JSON document in write_document's layout, a line at a time (``first`` is
    its first line, line ``start``, already read)."""
    decoder = _substrate_decoder
    kind = "substrate"
    closed = False
    index = position = 0
    for n, raw in enumerate(rest, start=start + 1):
        line = raw.strip()
        if not line:
            continue
        if closed:
            raise MalformedJsonError(f"line {n}: data after the end of the document", {"line": n})
        switch = _SWITCHES.get(line)
        if switch is not None and _ORDER.index(switch) > _ORDER.index(kind):
            decoder, kind, position = _DECODERS[switch], switch, 0
            continue
        if line == _CLOSE:
            closed = True
            continue
        if line.endswith(b","):
            line = line[:-1]
        prefix = f"{kind}s[{position}]."
        yield _plain(_decode_line(decoder, line, n, index, prefix), kind, n)
        index += 1
        position += 1
    if not closed:
        raise MalformedJsonError("the document ends before its closing ]}", {})


def read_stream(stream: IO[bytes], fmt: str = "auto") -> Iterator[Record]:
    """Records from a binary file: NDJSON and bfx's own JSON layout are streamed;
    other JSON is read whole. ``auto`` tells the two formats apart by the first
    non-blank line; with ``json`` or ``ndjson``, an input in the other format is a
    400 saying which was expected and what was found. An input with no records
    at all (empty, or only blank lines) is a 422: an export always holds something."""
    first, start = b"", 1
    for start, first in enumerate(stream, start=1):  # noqa: B007 - used after the loop
        if first.strip():
            break
    else:
        raise errors.ValidationError(
            "empty input: there is nothing to import (an export of an empty registry "
            'is {"substrates": [], "relationships": []})',
            {"reason": "empty"},
        )
    found = _looks_like(first)
    if fmt == "auto":
        fmt = "json" if found == "json" else "ndjson"
        if found == "array":
            raise MalformedJsonError(
                f"found a JSON array at line {start}; bfx imports {_EXPECTED['json']} "
                f"or {_EXPECTED['ndjson']}",
                {"found": "array", "line": start},
            )
    elif fmt == "json" and found in ("ndjson", "array"):
        raise format_mismatch("json", found, start)
    elif fmt == "ndjson" and found in ("json", "array"):
        raise format_mismatch("ndjson", found, start)
    if fmt == "ndjson":
        yield from read_ndjson(_chain(first, stream), start)
    elif first.strip() == _OPEN:
        yield from read_json_stream(first, stream, start)
    else:
        yield from read_document(first + stream.read())


def _chain(first: bytes, rest: Iterable[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


# ---- importing ---------------------------------------------------------------------


class _Lines:
    """Passes records through, remembering the input lines of the last ones. A
    record that cannot be read ends the iteration (so the registry writes what it
    holds, as it does before any invalid record) and is raised by :func:`import_records`."""

    def __init__(self, records: Iterable[Any]) -> None:
        self._records = records
        self._lines: deque[tuple[int, int | None]] = deque(maxlen=_LINES_KEPT)
        self.unreadable: errors.BfxError | None = None

    def __iter__(self) -> Iterator[Any]:
        index = 0
        try:
            for rec in self._records:
                self._lines.append((index, getattr(rec, "line", None)))
                yield rec
                index += 1
        except errors.BfxError as exc:
            exc.details.setdefault("index", index)
            self.unreadable = exc

    def line_of(self, index: Any) -> int | None:
        for i, line in reversed(self._lines):
            if i == index:
                return line
        return None


def import_records(registry: Any, records: Iterable[Any]) -> dict[str, int]:
    """``registry.import_records(records)``; when it stops at a record read from a
    line of input, the error's details carry that ``line`` next to its ``index``
    (a position inside the record's code moves to ``code_line``/``code_col``).
    A record that cannot be decoded stops the import like an invalid one: the
    records before it are imported."""
    lines = _Lines(records)
    try:
        counts: dict[str, int] = registry.import_records(iter(lines))
    except errors.BfxError as exc:
        line = lines.line_of(exc.details.get("index"))
        if line is not None:
            # The registry's own "line"/"col" (a sandbox position) are inside the
            # record's code: they move aside for the line of input.
            for key in ("line", "col"):
                if key in exc.details:
                    exc.details[f"code_{key}"] = exc.details.pop(key)
            exc.details["line"] = line
        raise
    if lines.unreadable is not None:
        raise lines.unreadable
    return counts
