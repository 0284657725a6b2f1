"""Export and import of the whole registry, as one JSON document or NDJSON lines.

Export streams: records are pulled from the registry lazily and sent in ~64 KiB chunks.
Import decodes and validates records one at a time as the registry consumes them (a
422 names the record and field); formats live in :mod:`bfx.transfer`.
"""

from __future__ import annotations

from bfx import transfer
from bfx.api import types as s
from bfx.asgi.base import JSON, NDJSON, PREFIX, Request, Response, encode
from bfx.asgi.errors import UnsupportedMediaTypeError

BASE = f"{PREFIX}/substrates"
NDJSON_TYPES = frozenset(
    {
        b"application/x-ndjson",
        b"application/ndjson",
        b"application/jsonl",
        b"application/x-jsonlines",
    }
)


def export(req: Request) -> Response:
    q: s.ExportQuery = req.query(s.ExportQuery)
    recs = req.registry.export_records()
    if q.format == "ndjson":
        return Response(200, content_type=NDJSON, stream=transfer.write_ndjson(recs))
    return Response(200, content_type=JSON, stream=transfer.write_document(recs))


def import_records(req: Request) -> Response:
    ctype = req.content_type
    if ctype is None or ctype == JSON:
        recs = transfer.read_document(req.body)
    elif ctype in NDJSON_TYPES:
        recs = transfer.read_ndjson(req.body.split(b"\n"))
    else:
        raise UnsupportedMediaTypeError(
            "import takes application/json or application/x-ndjson",
            {"content_type": ctype.decode("latin-1")},
        )
    # An import that stops at an NDJSON record names its line next to its index.
    r = transfer.import_records(req.registry, recs)
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
