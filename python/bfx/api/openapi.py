"""The OpenAPI 3.1 document, generated from the operation table and its msgspec types.

Every operation carries its scope (``security`` and ``x-bfx-scope``), its rate-limit cost
(``x-bfx-cost``) and, with a body, a working example.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from bfx.api import types as s
from bfx.api.operations import AUTHENTICATED, OPERATIONS, SCOPES, Operation

__all__ = ["build"]

_REF = "#/components/schemas/{name}"
_ID_PATTERN = "^(0[xX])?[0-9a-fA-F]{1,16}$"
_ID_TEXT = (
    "a 64-bit id: 1-16 hex digits, optional 0x, any case; answers spell it 0x + 16 upper-case "
    "digits (the same number as the record's `identity`, an unsigned 64-bit integer)"
)

_STATUS_TEXT = {
    101: "Switching Protocols: a WebSocket",
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Malformed JSON or id",
    401: "No valid credential (with --auth required); for login, a wrong name or password",
    403: "The credential lacks the operation's scope",
    404: "Unknown id or route",
    405: "Method not allowed",
    409: "Duplicate or collision",
    410: "The change feed no longer holds changes after since (changes_pruned)",
    413: "Body over the limit",
    415: "Body is not JSON",
    426: "Upgrade Required: a WebSocket route asked without the WebSocket handshake",
    422: "Validation failed",
    429: "Too many requests or failed logins (Retry-After)",
    500: "A bug",
    503: "Not ready: the store does not answer; overloaded (Retry-After)",
}
_IMPORT_BODY = s.ImportDocument


def build(version: str, routes: Iterable[Operation] = OPERATIONS) -> dict[str, Any]:
    routes = list(routes)
    models: list[Any] = [s.ErrorBody, _IMPORT_BODY]
    for r in routes:
        for t in (r.body, r.response):
            if t is not None and t is not bytes and t not in models:
                models.append(t)
    refs, components = msgspec.json.schema_components(models, ref_template=_REF)
    ref_of = dict(zip(models, refs, strict=True))
    error = {"content": {"application/json": {"schema": ref_of[s.ErrorBody]}}}

    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: dict[str, Any] = {
            "operationId": r.name,
            "summary": r.summary,
            "tags": [r.tag],
            "x-bfx-scope": r.scope,
            "x-bfx-cost": r.cost,
            # Whether a client may resend it after a lost answer (the table's `idempotent`).
            "x-bfx-idempotent": r.idempotent,
            # Public operations need no credential; the rest take a key or a token.
            "security": _security(r.scope),
        }
        if r.items is not None:
            op["x-bfx-cost-per-item"] = r.items
        if r.live is not None:
            # A live stream (sse, ws): not in the generated clients (docs/observability.md).
            op["x-bfx-live"] = r.live
        params = [
            {
                "name": n,
                "in": "path",
                "required": True,
                "schema": (
                    {"type": "string", "pattern": _ID_PATTERN} if is_id else {"type": "string"}
                ),
                **({"description": _ID_TEXT} if is_id else {}),
            }
            for n, is_id in zip(r.param_names, r.id_params, strict=True)
        ]
        if r.query is not None:
            params += _query_params(r.query)
        if params:
            op["parameters"] = params
        responses: dict[str, Any] = {}
        if r.status == 204:
            responses["204"] = {"description": _STATUS_TEXT[204]}
        else:
            content = {
                ct: {"schema": ref_of[r.response]}
                if ct == "application/json"
                else {"schema": {"type": "string"}}
                for ct in r.content_types
            }
            responses[str(r.status)] = {"description": _STATUS_TEXT[r.status], "content": content}
        codes = set(r.errors)
        if r.body is not None:
            op["requestBody"] = _request_body(r, ref_of)
            codes |= {400, 413, 415, 422}
        if r.query is not None:
            codes.add(422)
        if r.scope is not None:
            codes |= {401} if r.scope == AUTHENTICATED else {401, 403}
        for code in sorted(codes):
            responses[str(code)] = {"description": _STATUS_TEXT[code], **error}
        op["responses"] = responses
        paths.setdefault(r.path, {})[r.method.lower()] = op

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "bfx",
            "version": version,
            "description": (
                "A registry of small mathematical expressions (substrates) with stable "
                "64-bit ids, a typed relationship graph and arithmetic operators. Every "
                "error answer is `{error, message, details}`."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Key",
                    "description": "an API key; scopes: " + ", ".join(SCOPES),
                },
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API key, or a JWT access token (from POST /auth/login or an external issuer)",
                },
            },
        },
    }


def _security(scope: str | None) -> list[dict[str, list[str]]]:
    # Public operations need no credential; the rest take a key or a token (any valid
    # one for AUTHENTICATED, which names no scope).
    if scope is None:
        return []
    wanted = [] if scope == AUTHENTICATED else [scope]
    return [{"apiKey": wanted}, {"bearer": wanted}]


def _request_body(r: Operation, ref_of: dict[Any, Any]) -> dict[str, Any]:
    if r.body is bytes:
        content = {
            "application/json": {"schema": ref_of[_IMPORT_BODY], "example": r.example},
            "application/x-ndjson": {
                "schema": {
                    "type": "string",
                    "description": "one exported record per line, with `kind`",
                }
            },
        }
        return {"required": True, "content": content}
    # A body whose every field is optional may be left out (read as {}).
    required = any(f.required for f in msgspec.structs.fields(r.body))
    # Every body has a working example (api/examples.py): Swagger's "Try it out" sends it.
    media = {"schema": ref_of[r.body], "example": r.example}
    return {"required": required, "content": {"application/json": media}}


def _query_params(kind: type[msgspec.Struct]) -> list[dict[str, Any]]:
    _, defs = msgspec.json.schema_components([kind], ref_template=_REF)
    schema = defs[kind.__name__]
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
        if "description" in prop:
            param["description"] = prop.pop("description")
        param["schema"] = prop
        out.append(param)
    return out
