"""The local :class:`~bfx.services.interfaces.TransferService`: export and import of a
whole registry, as one JSON document or NDJSON lines (formats: :mod:`bfx.transfer`),
through the domain's :class:`~bfx.domain.transfer.Transfer`.

Export is lazy: records are pulled from the store as the chunks are consumed. Import
decodes and checks records one at a time as the domain consumes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from bfx import errors, transfer
from bfx.api import types as s

if TYPE_CHECKING:
    from bfx.domain.transfer import Transfer

__all__ = ["JSON_TYPES", "NDJSON_TYPES", "LocalTransfer"]

JSON_TYPES = frozenset({b"application/json"})
NDJSON_TYPES = frozenset(
    {
        b"application/x-ndjson",
        b"application/ndjson",
        b"application/jsonl",
        b"application/x-jsonlines",
    }
)


class LocalTransfer:
    def __init__(self, transfer: Transfer) -> None:
        self._transfer = transfer

    def export(self, format: str = "json") -> Iterator[bytes]:
        recs = self._transfer.export_records()
        if format == "ndjson":
            return transfer.write_ndjson(recs)
        return transfer.write_document(recs)

    def import_records(self, body: bytes, content_type: bytes | None = None) -> s.ImportResult:
        if content_type is None or content_type in JSON_TYPES:
            recs = transfer.read_document(body)
        elif content_type in NDJSON_TYPES:
            recs = transfer.read_ndjson(body.split(b"\n"))
        else:
            raise errors.UnsupportedMediaTypeError(
                "import takes application/json or application/x-ndjson",
                {"content_type": content_type.decode("latin-1")},
            )
        # An import that stops at an NDJSON record names its line next to its index.
        r = transfer.import_records(self._transfer, recs)
        return s.ImportResult(
            imported_substrates=r["imported_substrates"],
            imported_relationships=r["imported_relationships"],
            skipped=r["skipped"],
            imported_chains=r.get("imported_chains", 0),
            imported_aliases=r.get("imported_aliases", 0),
            imported_lenses=r.get("imported_lenses", 0),
        )
