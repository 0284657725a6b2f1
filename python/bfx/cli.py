"""The ``bfx`` command line.

``bfx serve`` runs the HTTP API under Granian. Each subcommand is one ``_add_<name>``
function registering a parser and its handler, so later commands (export, import,
backup, capacity) slot in beside it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]

_LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text}")
    return value


def _size(text: str) -> int:
    from bfx.asgi.config import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the HTTP API (Granian)",
        description="Serve the v1 HTTP API under /api/v1.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    p.add_argument("--workers", type=_positive_int, default=1, help="worker processes (default 1)")
    p.add_argument(
        "--data-dir",
        default=os.environ.get("BFX_DATA_DIR"),
        help="directory of the embedded storage (env BFX_DATA_DIR)",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=None,
        metavar="ORIGIN",
        help="allow browser calls from this origin; repeat for more, '*' for any "
        "(env BFX_CORS_ORIGINS, comma separated); default: none",
    )
    p.add_argument(
        "--body-limit",
        type=_size,
        default=None,
        help="largest request body, e.g. 1048576, 512K, 4M (default 1M)",
    )
    p.add_argument(
        "--import-limit",
        type=_size,
        default=None,
        help="largest body for POST /substrates/import (default 64M)",
    )
    p.add_argument("--log-level", choices=_LOG_LEVELS, default="info")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    import msgspec
    from granian import Granian
    from granian.constants import Interfaces
    from granian.log import LogLevels

    import bfx
    from bfx.asgi.app import shares_state_across_processes, storage_description
    from bfx.asgi.config import Settings, split_origins

    base = Settings.from_env()
    changes: dict[str, object] = {"log_level": args.log_level}
    if args.cors_origin is not None:
        changes["cors_origins"] = split_origins(",".join(args.cors_origin))
    if args.body_limit is not None:
        changes["body_limit"] = args.body_limit
    if args.import_limit is not None:
        changes["import_body_limit"] = args.import_limit
    if args.data_dir:
        changes["data_dir"] = os.path.abspath(args.data_dir)
    settings = msgspec.structs.replace(base, **changes)
    if args.workers > 1 and not shares_state_across_processes(settings):
        # Each worker is its own process: with an in-memory registry every
        # worker would answer from a different registry (the prototype's bug).
        print(
            "bfx: --workers > 1 needs storage shared between processes; the registry is "
            "in-memory, so run one worker",
            file=sys.stderr,
        )
        return 2
    # Workers are separate processes that build the app from the environment.
    os.environ.update(settings.to_env())

    host = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"bfx {bfx.__version__}: serving http://{host}:{args.port}/api/v1 "
        f"({args.workers} worker{'s' if args.workers != 1 else ''})",
        flush=True,
    )
    print(f"bfx: {storage_description(settings)}", flush=True)
    origins = ", ".join(settings.cors_origins) or "none"
    print(f"bfx: body limit {settings.body_limit} bytes, CORS origins: {origins}", flush=True)

    Granian(
        "bfx.asgi:create_app",
        factory=True,
        interface=Interfaces.ASGI,
        address=args.host,
        port=args.port,
        workers=args.workers,
        log_level=LogLevels(args.log_level),
        # The app answers websocket handshakes with a close; no need to upgrade.
        websockets=False,
    ).serve()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bfx", description="bfx: a registry of small math expressions."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_serve(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        import bfx

        print(bfx.__version__)
        return 0
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
