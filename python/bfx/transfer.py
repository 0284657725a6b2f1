"""Export and import formats, read and written as streams.

Two formats (``docs/storage.md``):

* ``json``: ``{"substrates": [...], "relationships": [...]}``. bfx writes one record
  per line, so that a bfx export is read back a line at a time; a JSON document laid
  out any other way is decoded whole.
* ``ndjson``: one ``{"kind": "substrate"|"relationship", ...}`` object per line.

Readers validate each record against the HTTP API's import types (a 422 names the
record and field) and yield plain dicts for :meth:`bfx.Registry.import_records`;
writers take :meth:`bfx.Registry.export_records` dicts and yield ~64 KiB chunks.
Neither ever holds the whole data set.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import IO, Any

import msgspec

from bfx.asgi import schemas as s
from bfx.asgi.errors import MalformedJsonError, field_error

__all__ = [
    "FORMATS",
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
_relationship_decoder = msgspec.json.Decoder(s.ImportRelationship)

# The layout write_document produces, line by line.
_OPEN = b'{"substrates":['
_SWITCH = b'],"relationships":['
_CLOSE = b"]}"
#: A first line that opens a document rather than holding an NDJSON record.
_DOCUMENT_START = re.compile(rb'^\s*(\{\s*("substrates"|"relationships")|\{\s*$|$)')


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
    """The JSON document, one record per line; every substrate must come before
    the first relationship (as export_records yields them)."""
    buf = bytearray(_OPEN)
    section = "substrate"
    first = True
    for rec in records:
        kind = rec.get("kind")
        if kind != section:
            if section == "relationship":
                raise RuntimeError("export yielded a substrate after a relationship")
            buf += b"\n" + _SWITCH
            section = "relationship"
            first = True
        buf += b"\n" if first else b",\n"
        first = False
        buf += _encode({k: v for k, v in rec.items() if k != "kind"})
        if len(buf) >= _CHUNK:
            yield bytes(buf)
            buf.clear()
    if section == "substrate":
        buf += b"\n" + _SWITCH
    buf += b"\n" + _CLOSE + b"\n"
    yield bytes(buf)


# ---- reading ---------------------------------------------------------------------


def _plain(obj: msgspec.Struct, kind: str) -> dict[str, Any]:
    rec: dict[str, Any] = {"kind": kind}
    for name in obj.__struct_fields__:
        value = getattr(obj, name)
        if value is not msgspec.UNSET:
            rec[name] = value
    return rec


def read_document(body: bytes) -> Iterator[dict[str, Any]]:
    """A whole JSON document (already in memory, e.g. a request body)."""
    try:
        doc = _doc_decoder.decode(body or b"{}")
    except msgspec.ValidationError as exc:
        raise field_error(exc) from None
    except msgspec.DecodeError as exc:
        raise MalformedJsonError(f"the document is not valid JSON: {exc}") from None
    for x in doc.substrates:
        yield _plain(x, "substrate")
    for y in doc.relationships:
        yield _plain(y, "relationship")


def _decode_line(decoder: msgspec.json.Decoder[Any], line: bytes, n: int) -> Any:
    """One record of line ``n``: a 422 naming the line and field, or a 400."""
    try:
        return decoder.decode(line)
    except msgspec.ValidationError as exc:
        raise field_error(exc, prefix=f"line {n}: ") from None
    except msgspec.DecodeError as exc:
        raise MalformedJsonError(f"line {n} is not valid JSON: {exc}", {"line": n}) from None


def read_ndjson(lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        item = _decode_line(_line_decoder, line, n)
        kind = "substrate" if isinstance(item, s.ImportSubstrateLine) else "relationship"
        yield _plain(item, kind)


def read_json_stream(first: bytes, rest: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """A JSON document in write_document's layout, a line at a time (``first`` is
    its first line, already read)."""
    decoder = _substrate_decoder
    kind = "substrate"
    closed = False
    for n, raw in enumerate(rest, start=2):
        line = raw.strip()
        if not line:
            continue
        if closed:
            raise MalformedJsonError(f"line {n}: data after the end of the document", {"line": n})
        if line == _SWITCH and kind == "substrate":
            decoder, kind = _relationship_decoder, "relationship"
            continue
        if line == _CLOSE:
            closed = True
            continue
        if line.endswith(b","):
            line = line[:-1]
        yield _plain(_decode_line(decoder, line, n), kind)
    if not closed:
        raise MalformedJsonError("the document ends before its closing ]}", {})


def read_stream(stream: IO[bytes], fmt: str = "auto") -> Iterator[dict[str, Any]]:
    """Records from a binary file: NDJSON and bfx's own JSON layout are streamed;
    other JSON is read whole. ``auto`` tells the two formats apart by the first line."""
    first = stream.readline()
    if fmt == "auto":
        fmt = "json" if _DOCUMENT_START.match(first) else "ndjson"
    if fmt == "ndjson":
        yield from read_ndjson(_chain(first, stream))
    elif first.strip() == _OPEN:
        yield from read_json_stream(first, stream)
    else:
        yield from read_document(first + stream.read())


def _chain(first: bytes, rest: Iterable[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest
