"""Generate ``src/generated.ts`` (types, operation table, typed methods) from openapi.json.

    python clients/typescript/generate.py                 # from this checkout's bfx
    python clients/typescript/generate.py openapi.json    # from a saved document
    python clients/typescript/generate.py --check         # exit 1 when the file is stale

Everything route-specific in the TypeScript client comes from here; the hand-written files
(``src/client.ts``, ``src/json.ts``, ``src/errors.ts``) know no route. Standard library only.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "src" / "generated.ts"
_REF = "#/components/schemas/"


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def iter_name(name: str) -> str:
    """The iterator of a paged list, named as the Python client's: ``iter`` + the name
    without ``list_`` (``list_substrates`` -> ``iterSubstrates``, ``search`` -> ``iterSearch``)."""
    return "iter" + pascal(name.removeprefix("list_"))


def pascal(name: str) -> str:
    c = camel(name)
    return c[:1].upper() + c[1:]


def ts_type(s: dict[str, Any]) -> str:
    """The TypeScript type of a JSON schema (the subset msgspec emits)."""
    if "$ref" in s:
        return s["$ref"].removeprefix(_REF)
    if "enum" in s:
        return " | ".join(json.dumps(v) for v in s["enum"])
    if "anyOf" in s:
        kinds = [x.get("type") for x in s["anyOf"]]
        # integer-or-float values may be integers past 2^53: the reader gives those as bigint.
        if sorted(k for k in kinds if k) == ["integer", "number"]:
            rest = [x for x in s["anyOf"] if x.get("type") not in ("integer", "number")]
            return " | ".join(["Numeric", *(ts_type(x) for x in rest)])
        return " | ".join(dict.fromkeys(ts_type(x) for x in s["anyOf"]))
    kind = s.get("type")
    if kind == "integer":
        return "bigint" if s.get("format") == "uint64" else "number"
    if kind == "number":
        return "number"
    if kind == "string":
        return "string"
    if kind == "boolean":
        return "boolean"
    if kind == "null":
        return "null"
    if kind == "array":
        inner = ts_type(s.get("items", {}))
        return f"({inner})[]" if " | " in inner else f"{inner}[]"
    if kind == "object":
        if "properties" in s:
            return "{ " + " ".join(f"{k}: {ts_type(v)};" for k, v in s["properties"].items()) + " }"
        extra = s.get("additionalProperties")
        return f"Record<string, {ts_type(extra)}>" if isinstance(extra, dict) else "JsonObject"
    return "unknown"


def doc(text: str | None, indent: str = "") -> list[str]:
    if not text:
        return []
    lines = text.strip().replace("*/", "* /").splitlines()
    return [f"{indent}/** {lines[0]}", *(f"{indent} * {x}" for x in lines[1:]), f"{indent} */"]


def interface(name: str, schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", ()))
    out = [*doc(schema.get("description")), f"export interface {name} {{"]
    for prop, s in schema.get("properties", {}).items():
        out += doc(s.get("description") or _inner_description(s), "  ")
        opt = "" if prop in required else "?"
        out.append(f"  {prop}{opt}: {ts_type(s)};")
    return [*out, "}", ""]


def _inner_description(s: dict[str, Any]) -> str | None:
    return next((x["description"] for x in s.get("anyOf", ()) if "description" in x), None)


def uint64_shapes(schemas: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per schema holding a uint64 somewhere: field -> "u64", a schema name, or [name].

    The client walks an answer with these to turn those fields into bigint (a small
    integer parses as a number; a uint64 field is a bigint whatever its size)."""

    def target(s: dict[str, Any]) -> Any:
        alts = [x for x in s.get("anyOf", ()) if x.get("type") != "null"]
        if len(alts) == 1:  # an optional field: X | null
            return target(alts[0])
        if s.get("type") == "integer" and s.get("format") == "uint64":
            return "u64"
        if "$ref" in s:
            return s["$ref"].removeprefix(_REF)
        if s.get("type") == "array" and "$ref" in s.get("items", {}):
            return [s["items"]["$ref"].removeprefix(_REF)]
        return None

    shapes: dict[str, dict[str, Any]] = {}
    changed = True
    while changed:  # a fixed point: schemas referring to schemas that hold a uint64
        changed = False
        for name, schema in schemas.items():
            fields = {}
            for prop, s in schema.get("properties", {}).items():
                t = target(s)
                ref = t[0] if isinstance(t, list) else t
                if t == "u64" or (ref is not None and ref in shapes):
                    fields[prop] = t
            if fields and shapes.get(name) != fields:
                shapes[name] = fields
                changed = True
    return dict(sorted(shapes.items()))


def operations(doc_: dict[str, Any]) -> list[dict[str, Any]]:
    ops = []
    schemas = doc_["components"]["schemas"]
    for path, methods in doc_["paths"].items():
        for method, op in methods.items():
            scope = op.get("x-bfx-scope")
            params = op.get("parameters", [])
            status, answer = next(iter(op["responses"].items()))
            content = answer.get("content", {})
            response = content.get("application/json", {}).get("schema", {}).get("$ref")
            response = response and response.removeprefix(_REF)
            body = op.get("requestBody")
            body_json = body and body["content"]["application/json"]["schema"]["$ref"]
            body_json = body_json and body_json.removeprefix(_REF)
            query = [p for p in params if p["in"] == "query"]
            cursor_in = (
                "query"
                if any(p["name"] == "cursor" for p in query)
                else "body"
                if body_json and "cursor" in schemas[body_json].get("properties", {})
                else None
            )
            items = None
            # Whether the paging fields' owner (query or body) has a page size.
            owner = (
                {p["name"] for p in query}
                if cursor_in == "query"
                else set(schemas[body_json]["properties"])
                if cursor_in
                else set()
            )
            if cursor_in and response:
                props = schemas[response]["properties"]
                if "next_cursor" in props:
                    arrays = [k for k, v in props.items() if v.get("type") == "array"]
                    items = arrays[0] if len(arrays) == 1 else None
            m = method.upper()
            ops.append(
                {
                    "name": op["operationId"],
                    "method": m,
                    "path": path,
                    "summary": op["summary"],
                    "scope": scope,
                    "status": int(status),
                    "pathParams": [p["name"] for p in params if p["in"] == "path"],
                    # A 64-bit id parameter carries the id pattern; others (a key id) are text.
                    "idParams": [
                        p["name"] for p in params if p["in"] == "path" and "pattern" in p["schema"]
                    ],
                    "query": query,
                    "body": body_json,
                    "raw_body": bool(body) and len(body["content"]) > 1,
                    "body_required": bool(body and body.get("required")),
                    "response": response,
                    "text": [ct for ct in content if ct != "application/json"],
                    # The table's word: whether resending after a lost answer is harmless.
                    "idempotent": op["x-bfx-idempotent"],
                    "paged": (
                        {"cursorIn": cursor_in, "items": items, "limit": "limit" in owner}
                        if items
                        else None
                    ),
                    # Pages and their files are not API calls; nor is a live event
                    # stream (an EventSource reads it, not a request/answer method).
                    "client": not (
                        content
                        and set(content)
                        <= {"text/html", "text/javascript", "text/css", "text/event-stream"}
                    )
                    and op["operationId"] != "openapi"
                    # Live streams (SSE, WebSocket): read with EventSource or WebSocket.
                    and "x-bfx-live" not in op,
                }
            )
    return ops


def render(doc_: dict[str, Any]) -> str:
    schemas = doc_["components"]["schemas"]
    ops = [o for o in operations(doc_) if o["client"]]
    out = [
        "// GENERATED by clients/typescript/generate.py from openapi.json: do not edit.",
        "// Regenerate after changing the operation table (a test fails while this is stale).",
        "/* eslint-disable */",
        "",
        "/** A JSON object whose fields the API does not fix (metadata, parameters, ...). */",
        "export type JsonObject = { [key: string]: unknown };",
        "/** An integer or float; an integer past 2^53 arrives as a bigint, never rounded. */",
        "export type Numeric = number | bigint;",
        "/** A 64-bit id: hex text (`0x` + 16 digits in answers) or the number as a bigint. */",
        "export type Id = string | bigint;",
        "",
    ]
    for name, schema in schemas.items():
        out += interface(name, schema)
    for o in ops:
        if o["query"]:
            fields = {
                "type": "object",
                "properties": {p["name"]: p["schema"] for p in o["query"]},
                "required": [p["name"] for p in o["query"] if p["required"]],
            }
            for p in o["query"]:
                if "description" in p:
                    fields["properties"][p["name"]] = {
                        **p["schema"],
                        "description": p["description"],
                    }
            out += interface(pascal(o["name"]) + "Query", fields)

    table = {
        camel(o["name"]): {
            "method": o["method"],
            "path": o["path"],
            "pathParams": o["pathParams"],
            "query": [p["name"] for p in o["query"]],
            "body": "raw" if o["raw_body"] else ("json" if o["body"] else None),
            "status": o["status"],
            "response": o["response"],
            "text": o["text"],
            "idempotent": o["idempotent"],
            "paged": o["paged"],
            "scope": o["scope"],
        }
        for o in ops
    }
    out += [
        "/** Every client operation of the API (openapi.json), by its camelCase name. */",
        "export const OPERATIONS = " + json.dumps(table, indent=2) + " as const;",
        "export type OperationName = keyof typeof OPERATIONS;",
        "export interface OperationSpec {",
        "  method: string; path: string; pathParams: readonly string[]; query: readonly string[];",
        '  body: "json" | "raw" | null; status: number; response: string | null;',
        "  text: readonly string[]; idempotent: boolean; scope: string | null;",
        '  paged: { cursorIn: "query" | "body"; items: string; limit: boolean } | null;',
        "}",
        "",
        "/** Fields to read as bigint, per schema: `u64`, a nested schema, or [schema] for a list. */",
        "export const UINT64_FIELDS: Record<string, Record<string, string | readonly string[]>> = "
        + json.dumps(uint64_shapes(schemas), indent=2)
        + ";",
        "",
        "/** Per-call options: a timeout, an AbortSignal, extra headers. */",
        "export interface RequestOptions {",
        "  /** milliseconds for each attempt; overrides the client's `timeout` */",
        "  timeout?: number;",
        "  signal?: AbortSignal;",
        "  headers?: Record<string, string>;",
        "  /** `import_records` only: the body's media type (`application/x-ndjson` for ndjson) */",
        "  contentType?: string;",
        "}",
        "",
        "/** The typed surface: one method per operation, an iterator for every paged list. */",
        "export abstract class Operations {",
        "  protected abstract call(",
        "    name: OperationName, path: readonly Id[], body: unknown, query: object | undefined,",
        "    options: RequestOptions | undefined,",
        "  ): Promise<unknown>;",
        "  protected abstract pages(",
        "    name: OperationName, path: readonly Id[], body: object | undefined,",
        "    query: object | undefined, options: RequestOptions | undefined,",
        "  ): AsyncGenerator<unknown, void, undefined>;",
        "",
    ]
    for o in ops:
        out += method(o, schemas)
    out += ["}", ""]
    return "\n".join(out)


def method(o: dict[str, Any], schemas: dict[str, Any]) -> list[str]:
    name = camel(o["name"])
    args = [f"{p}: {'Id' if p in o['idParams'] else 'string'}" for p in o["pathParams"]]
    body_arg = "undefined"
    if o["raw_body"]:
        args.append(f"body: {o['body']} | string | Uint8Array")
        body_arg = "body"
    elif o["body"]:
        args.append(f"body{'' if o['body_required'] else '?'}: {o['body']}")
        body_arg = "body"
    query_arg = "undefined"
    if o["query"]:
        required = any(p["required"] for p in o["query"])
        args.append(f"query{'' if required else '?'}: {pascal(o['name'])}Query")
        query_arg = "query"
    args.append("options?: RequestOptions")
    answer = o["response"] or "void"
    # A raw-body operation lists its body's media types as its answer's too (the table has
    # one list); its answer is JSON. Elsewhere another media type is a text answer (ndjson).
    if o["text"] and not o["raw_body"]:
        answer += " | string"
    path = "[" + ", ".join(o["pathParams"]) + "]"
    where = f"{o['method']} {o['path']}; scope {o['scope'] or 'none'}"
    out = [
        f"  /** {o['summary']} ({where}). */",
        f"  {name}({', '.join(args)}): Promise<{answer}> {{",
        f'    return this.call("{name}", {path}, {body_arg}, {query_arg}, options)'
        f" as Promise<{answer}>;",
        "  }",
    ]
    if o["paged"]:
        items = schemas[o["response"]]["properties"][o["paged"]["items"]]
        item = ts_type(items["items"])
        # Only the paging fields' owner (query or body) is passed on; a body-paged list
        # (query) takes its body, a query-paged one its query.
        src = "query" if o["paged"]["cursorIn"] == "query" else "body"
        it_args = [a for a in args if not a.startswith("options")]
        it_args = [re.sub(r"^(body|query):", r"\1?:", a) for a in it_args]
        out += [
            f"  /** Every item of {name}, page after page (follows `next_cursor`). */",
            f"  {iter_name(o['name'])}({', '.join([*it_args, 'options?: RequestOptions'])}):"
            f" AsyncGenerator<{item}, void, undefined> {{",
            f'    return this.pages("{name}", {path}, '
            f"{'body' if src == 'body' else 'undefined'}, "
            f"{'query' if src == 'query' else 'undefined'}, options)"
            f" as AsyncGenerator<{item}, void, undefined>;",
            "  }",
        ]
    return [*out, ""]


def load(argv: list[str]) -> dict[str, Any]:
    if argv:
        return json.loads(Path(argv[0]).read_text())
    from bfx import __version__
    from bfx.api.openapi import build

    return build(__version__)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    text = render(load([a for a in argv if a != "--check"]))
    if check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is stale: run python clients/typescript/generate.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
