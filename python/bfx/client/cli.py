"""The command-line client: ``bfx create|get|delete|invoke|list|query|relate|outgoing|
traverse|path|pagerank ...`` and ``bfx call OPERATION ...`` against a running service.

Every command is an operation of the table (:mod:`bfx.api.operations`) sent through
:class:`bfx.client.Client`: its path ids are positional arguments, its body or query
fields options made from the field types (``--max-depth 2``, ``--bidirectional``,
``--metadata JSON``, ``--param k=v``). The short commands name the common operations
(DESIGN.md §10) and may take some fields positionally (``bfx create TYPE CODE``);
``bfx call`` reaches every operation by its name. Output: tables for people (Rich),
``--json`` for scripts. Exit 0 ok, 1 the service answered an error or could not be
reached, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

import msgspec

from bfx.api.operations import Operation
from bfx.client._surface import PAGED, iterator_name
from bfx.client._wire import CLIENT_OPERATIONS

__all__ = ["COMMANDS", "add_parsers"]

DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    operation: str
    #: Body or query fields taken positionally, after the path ids.
    positional: tuple[str, ...] = ()


#: The short commands (DESIGN.md §10); ``bfx call`` has every operation.
COMMANDS: tuple[Command, ...] = (
    Command("create", "create_substrate", ("expression_type", "expression_code")),
    Command("get", "get_substrate"),
    Command("delete", "delete_substrate"),
    Command("invoke", "invoke"),
    Command("list", "list_substrates"),
    Command("search", "search", ("name",)),
    Command("query", "query"),
    Command("relate", "create_relationship", ("rel_type", "source_id", "target_id")),
    Command("outgoing", "outgoing"),
    Command("incoming", "incoming"),
    Command("traverse", "traverse", ("start_substrate_id",)),
    Command("path", "shortest_path"),
    Command("cycles", "cycles"),
    Command("components", "components"),
    Command("pagerank", "pagerank"),
    Command("health", "health"),
)

#: Options of every client command: a field of the same name gets ``--field-<name>``.
_RESERVED = frozenset({"--url", "--api-key", "--token", "--timeout", "--json", "--all", "--help"})

#: Dict fields that also take one ``--<singular> KEY=VALUE`` at a time.
_SINGULAR = {"parameters": "param", "filters": "filter"}


# --- options from field types ------------------------------------------------------------


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # a bare word is a string: --param name=ada


def _json_of(kind: str) -> Any:
    def parse(text: str) -> Any:
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
        if kind == "object" and not isinstance(value, dict):
            raise argparse.ArgumentTypeError("not a JSON object")
        return value

    parse.__name__ = f"JSON {kind}"
    return parse


def _pair(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, _json_value(value)


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _list_or_csv(text: str) -> list[Any]:
    """A JSON list, or comma-separated words (``dependency,lineage``)."""
    if text.lstrip().startswith("["):
        value = _json_of("list")(text)
        return value  # type: ignore[no-any-return]
    return [_json_value(x.strip()) for x in text.split(",") if x.strip()]


def _bare(info: Any) -> Any:
    """The type under its annotations (description, bounds)."""
    while isinstance(info, msgspec.inspect.Metadata):
        info = info.type
    return info


def _shape(kind: Any) -> tuple[str, Any]:
    """(what, parser) for a field type: bool, choice, number, text, list or object."""
    info = _bare(msgspec.inspect.type_info(kind))
    if isinstance(info, msgspec.inspect.UnionType):
        types = [_bare(x) for x in info.types if not isinstance(x, msgspec.inspect.NoneType)]
        if all(isinstance(x, msgspec.inspect.IntType | msgspec.inspect.FloatType) for x in types):
            return "number", _number
        info = types[0] if len(types) == 1 else info
    if isinstance(info, msgspec.inspect.BoolType):
        return "bool", None
    if isinstance(info, msgspec.inspect.LiteralType):
        return "choice", info.values
    if isinstance(info, msgspec.inspect.IntType):
        return "number", int
    if isinstance(info, msgspec.inspect.FloatType):
        return "number", float
    if isinstance(info, msgspec.inspect.StrType):
        return "text", str
    if isinstance(info, msgspec.inspect.ListType):
        return "list", _list_or_csv
    if isinstance(info, msgspec.inspect.DictType):
        return "object", _json_of("object")
    return "value", _json_value  # a time, an id...: JSON when it parses, else the text


def _fields(op: Operation) -> list[msgspec.structs.FieldInfo]:
    kind = op.body if op.body not in (None, bytes) else op.query
    if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
        return list(msgspec.structs.fields(kind))
    return []


def _add_operation(p: argparse.ArgumentParser, op: Operation, positional: tuple[str, ...]) -> None:
    for name in op.param_names:
        p.add_argument(name, metavar=name.upper(), help="an id (hex, 0x optional)")
    if op.body is bytes:  # import_records
        p.add_argument("data", metavar="FILE", help="an export file (JSON or NDJSON)")
        p.add_argument("--format", choices=("json", "ndjson"), default="json")
    for f in _fields(op):
        what, parse = _shape(f.type)
        if f.name in positional:
            optional = {} if f.required else {"nargs": "?", "default": None}
            if what == "choice":
                p.add_argument(f.name, metavar=f.name.upper(), choices=parse, **optional)
            else:
                p.add_argument(f.name, metavar=f.name.upper(), type=parse, **optional)
            continue
        flag = "--" + f.name.replace("_", "-")
        if flag in _RESERVED:  # a field named like a service option keeps a flag of its own
            flag = "--field-" + f.name.replace("_", "-")
        default_text = "" if f.required else f" (service default: {f.default!r})"
        if what == "bool":
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        elif what == "choice":
            p.add_argument(flag, dest=f.name, choices=parse, default=None, help=default_text)
        else:
            metavar = {"object": "JSON", "list": "LIST"}.get(what, what.upper())
            p.add_argument(
                flag, dest=f.name, type=parse, default=None, metavar=metavar,
                required=f.required and what != "object", help=f"{what}{default_text}",
            )  # fmt: skip
        if f.name in _SINGULAR:
            p.add_argument(
                "--" + _SINGULAR[f.name], dest=f"{f.name}__pairs", action="append", type=_pair,
                default=[], metavar="KEY=VALUE",
                help=f"one entry of --{f.name} (VALUE read as JSON, else text); repeatable",
            )  # fmt: skip
    if op.name in PAGED:
        p.add_argument(
            "--all", dest="_all", action="store_true",
            help=f"every page ({iterator_name(op.name)}); --limit is then the page size",
        )  # fmt: skip
    p.set_defaults(func=_run, _op=op.name)


def _connection_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("service (a running bfx serve)")
    g.add_argument(
        "--url", default=os.environ.get("BFX_URL") or DEFAULT_URL,
        help=f"its address, with or without /api/v1 (env BFX_URL; default {DEFAULT_URL})",
    )  # fmt: skip
    g.add_argument(
        "--api-key", default=os.environ.get("BFX_API_KEY") or None,
        help="sent as X-API-Key (env BFX_API_KEY)",
    )  # fmt: skip
    g.add_argument(
        "--token", default=os.environ.get("BFX_TOKEN") or None,
        help="sent as Authorization: Bearer (env BFX_TOKEN)",
    )  # fmt: skip
    g.add_argument("--timeout", type=float, default=30.0, help="seconds per attempt (default 30)")
    g.add_argument("--json", dest="_json", action="store_true", help="print JSON for scripts")
    return common


def add_parsers(sub: Any) -> None:
    """Register the short commands and ``bfx call`` on the ``bfx`` subparsers."""
    common = _connection_options()
    for cmd in COMMANDS:
        op = CLIENT_OPERATIONS[cmd.operation]
        p = sub.add_parser(
            cmd.name, parents=[common], help=f"{op.summary} ({cmd.operation})",
            description=f"{op.summary}: {op.method} {op.path} (operation {cmd.operation}).",
        )  # fmt: skip
        _add_operation(p, op, cmd.positional)
    call = sub.add_parser(
        "call",
        help="any operation of the API by its name (bfx call --help lists them)",
        description="Call one operation of the v1 API by its name; its path ids are "
        "arguments, its fields options.",
    )
    ops = call.add_subparsers(dest="operation", metavar="OPERATION", required=True)
    for op in CLIENT_OPERATIONS.values():
        p = ops.add_parser(
            op.name, parents=[common], help=op.summary,
            description=f"{op.summary}: {op.method} {op.path}.",
        )  # fmt: skip
        _add_operation(p, op, ())


# --- running and printing ----------------------------------------------------------------


def _arguments(op: Operation, args: argparse.Namespace) -> dict[str, Any]:
    given: dict[str, Any] = {name: getattr(args, name) for name in op.param_names}
    if op.body is bytes:
        given["data"], given["format"] = args.data, args.format
    for f in _fields(op):
        value = getattr(args, f.name)
        pairs = getattr(args, f"{f.name}__pairs", [])
        if pairs:
            value = {**(value or {}), **dict(pairs)}
        if value is not None:
            given[f.name] = value
    return given


def _run(args: argparse.Namespace) -> int:
    from bfx import errors
    from bfx.client import Client

    op = CLIENT_OPERATIONS[args._op]
    try:
        client = Client(args.url, timeout=args.timeout, api_key=args.api_key, token=args.token)
    except ValueError as exc:
        print(f"bfx: error: {exc}", file=sys.stderr)
        return 2
    try:
        with client:
            given = _arguments(op, args)
            if getattr(args, "_all", False):
                items = getattr(client, iterator_name(op.name))(**given)
                _print_items(items, args._json)
            else:
                _print(getattr(client, op.name)(**given), args._json)
    except errors.BfxError as exc:
        if args._json:
            print(json.dumps(exc.to_dict()), file=sys.stderr)
        else:
            status = (
                f"HTTP {exc.status}"
                if not isinstance(exc, errors.ConnectionFailedError)
                else "no answer"
            )
            details = f" {json.dumps(exc.details)}" if exc.details else ""
            print(f"bfx: {exc.code} ({status}): {exc.message}{details}", file=sys.stderr)
        return 1
    except OSError as exc:  # an import file that cannot be read
        print(f"bfx: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _plain(value: Any) -> Any:
    """A JSON-ready value (Raw stored JSON decoded, Structs as dicts)."""
    return msgspec.json.decode(msgspec.json.encode(value))


def _print_items(items: Any, as_json: bool) -> None:
    """Every item of a paged walk: JSON Lines, or one table."""
    if as_json:
        for item in items:
            sys.stdout.write(msgspec.json.encode(item).decode() + "\n")
        return
    rows = [_plain(item) for item in items]
    _table(rows, title=f"{len(rows)} items")


def _print(result: Any, as_json: bool) -> None:
    if as_json:
        if result is not None:
            sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
        return
    if result is None:
        print("done")
        return
    plain = _plain(result)
    if not isinstance(plain, dict):
        print(plain)
        return
    lists = {
        k: v
        for k, v in plain.items()
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)
    }
    rest = {k: v for k, v in plain.items() if k not in lists}
    if rest:
        _pairs(rest)
    for name, rows in lists.items():
        _table(rows, title=name)


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _console() -> Any:
    from rich.console import Console

    # Not a terminal (a pipe, a test): wide enough that an id is never folded.
    return Console(width=None if sys.stdout.isatty() else 200, soft_wrap=False)


def _pairs(values: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in values.items():
        table.add_row(key, _cell(value))
    _console().print(table)


def _table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.table import Table

    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    table = Table(title=title, title_justify="left")
    for name in columns:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row[c]) if c in row else "" for c in columns))
    _console().print(table)
