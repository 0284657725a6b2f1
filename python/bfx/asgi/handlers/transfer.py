"""Export and import of the whole registry, as one JSON document or NDJSON lines.

Export streams: records are pulled lazily and sent in ~64 KiB chunks. Import decodes and
validates records one at a time as the registry consumes them (a 422 names the record,
and for NDJSON its line); formats live in :mod:`bfx.transfer`.
"""

from __future__ import annotations

from bfx.api import types as s
from bfx.asgi.base import Response
from bfx.asgi.pipeline import Input
from bfx.services import Services
from bfx.services.interfaces import EXPORT_MEDIA_TYPES


def export(svc: Services, inp: Input) -> Response:
    fmt = inp.query.format
    return Response(
        200, content_type=EXPORT_MEDIA_TYPES[fmt].encode(), stream=svc.transfer.export(fmt)
    )


def import_records(svc: Services, inp: Input) -> s.ImportResult:
    return svc.transfer.import_records(inp.raw, inp.content_type)
