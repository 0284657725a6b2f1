"""Export and import of the whole registry, as one JSON document or NDJSON lines.

Export streams: records are pulled from the registry lazily and sent in ~64 KiB chunks,
so an export never holds the whole registry as one bytes object. Import validates every
record against the export's own types first (a 422 names the record and field), then
hands the records to the registry in one call.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from bfx.asgi import schemas as s
from bfx.asgi.base import JSON, NDJSON, PREFIX, Request, Response, encode
from bfx.asgi.errors import MalformedJsonError, UnsupportedMediaTypeError, field_error
from bfx.asgi.router import Route

BASE = f"{PREFIX}/substrates"
_CHUNK = 64 * 1024
NDJSON_TYPES = frozenset(
    {
        b"application/x-ndjson",
        b"application/ndjson",
        b"application/jsonl",
        b"application/x-jsonlines",
    }
)


def _ndjson(recs: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    buf = bytearray()
    for rec in recs:
        buf += encode(rec)
        buf += b"\n"
        if len(buf) >= _CHUNK:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)


def _document(recs: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    # {"substrates":[...],"relationships":[...]} written incrementally; the registry
    # yields every substrate before the first relationship.
    buf = bytearray(b'{"substrates":[')
    section = "substrate"
    first = True
    for rec in recs:
        kind = rec.get("kind")
        if kind != section:
            if section == "relationship":
                raise RuntimeError("export yielded a substrate after a relationship")
            buf += b'],"relationships":['
            section = "relationship"
            first = True
        if not first:
            buf += b","
        first = False
        buf += encode({k: v for k, v in rec.items() if k != "kind"})
        if len(buf) >= _CHUNK:
            yield bytes(buf)
            buf.clear()
    if section == "substrate":
        buf += b'],"relationships":['
    buf += b"]}"
    yield bytes(buf)


def export(req: Request) -> Response:
    q: s.ExportQuery = req.query(s.ExportQuery)
    recs = req.registry.export_records()
    if q.format == "ndjson":
        return Response(200, content_type=NDJSON, stream=_ndjson(recs))
    return Response(200, content_type=JSON, stream=_document(recs))


_doc_decoder = msgspec.json.Decoder(s.ImportDocument)
_line_decoder = msgspec.json.Decoder(s.ImportLine)


def _plain(obj: msgspec.Struct, kind: str) -> dict[str, Any]:
    rec: dict[str, Any] = {"kind": kind}
    for name in obj.__struct_fields__:
        value = getattr(obj, name)
        if value is not msgspec.UNSET:
            rec[name] = value
    return rec


def _from_document(body: bytes) -> list[dict[str, Any]]:
    try:
        doc = _doc_decoder.decode(body or b"{}")
    except msgspec.ValidationError as exc:
        raise field_error(exc) from None
    return [_plain(x, "substrate") for x in doc.substrates] + [
        _plain(x, "relationship") for x in doc.relationships
    ]


def _from_lines(body: bytes) -> list[dict[str, Any]]:
    recs = []
    for n, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            item = _line_decoder.decode(line)
        except msgspec.ValidationError as exc:
            raise field_error(exc, prefix=f"line {n}: ") from None
        except msgspec.DecodeError as exc:
            raise MalformedJsonError(f"line {n} is not valid JSON: {exc}", {"line": n}) from None
        kind = "substrate" if isinstance(item, s.ImportSubstrateLine) else "relationship"
        recs.append(_plain(item, kind))
    return recs


def import_(req: Request) -> Response:
    ctype = req.content_type
    if ctype is None or ctype == JSON:
        recs = _from_document(req.body)
    elif ctype in NDJSON_TYPES:
        recs = _from_lines(req.body)
    else:
        raise UnsupportedMediaTypeError(
            "import takes application/json or application/x-ndjson",
            {"content_type": ctype.decode("latin-1")},
        )
    r = req.registry.import_records(recs)
    return Response(
        200,
        encode(
            s.ImportResult(
                imported_substrates=r["imported_substrates"],
                imported_relationships=r["imported_relationships"],
                skipped=r["skipped"],
            )
        ),
    )


def routes() -> list[Route]:
    t = "transfer"
    return [
        Route(
            "GET",
            f"{BASE}/export",
            export,
            summary="Export everything (json or ndjson)",
            tag=t,
            query=s.ExportQuery,
            response=s.ExportDocument,
            errors=(422,),
            offload=True,
            content_types=("application/json", "application/x-ndjson"),
        ),
        Route(
            "POST",
            f"{BASE}/import",
            import_,
            summary="Import an export (json or ndjson)",
            tag=t,
            body=bytes,
            response=s.ImportResult,
            errors=(400, 404, 409, 415, 422),
            offload=True,
            body_limit="import_body_limit",
            content_types=("application/json", "application/x-ndjson"),
        ),
    ]
