"""The ``bfx`` command line.

``bfx serve`` runs the HTTP API under Granian; ``export``, ``import`` and ``backup``
work on the same storage (``--data-dir``, ``--database-url`` or ``--memory``, read
the same way by every command); ``capacity`` measures what a machine holds. Each
subcommand is one ``_add_<name>`` function registering a parser and its handler. The
client commands (``create``, ``get``, ``list``, ..., ``call``) talk to a running service:
:mod:`bfx.client.cli`.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bfx.settings import Settings

__all__ = ["main"]

_LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
#: ``bfx serve`` flags that map one to one onto Settings fields of the same name.
_ADMISSION_FLAGS = (
    "max_batch_items",
    "max_answer_bytes",
    "batch_time_budget",
    "max_body_depth",
    "heavy_threads",
    "heavy_queue",
    "export_connections",
    "metrics",
    "access_log",
    "log_format",
    "access_log_buffer",
    "result_cache_size",
    "pipeline_max_depth",
    "changes_retention",
    "stream_clients",
    "stream_poll",
)


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _port(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return int(text)


def _size(text: str) -> int:
    from bfx.settings import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _pipeline_depth(text: str) -> int:
    from bfx.settings import parse_pipeline_depth

    try:
        return parse_pipeline_depth(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cache_size(text: str) -> int:
    from bfx.settings import parse_cache_size

    try:
        return parse_cache_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    from bfx.settings import parse_seconds

    try:
        return parse_seconds(text)
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
    _add_storage_arguments(p, allow_memory=True)
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
    p.add_argument(
        "--interface",
        choices=("rsgi", "asgi"),
        default=None,
        help="Granian's interface to the app: rsgi (its own, faster) or asgi; the same "
        "pipeline behind both (env BFX_INTERFACE; default rsgi)",
    )
    p.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default=None,
        help="each worker's event loop: uvloop (faster) or the standard library's asyncio "
        "(env BFX_LOOP; default uvloop)",
    )
    g = p.add_argument_group(
        "slow and idle clients (docs/http.md, Limits; each also read from its BFX_* variable)"
    )
    g.add_argument(
        "--header-timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="close a connection whose request headers take longer, and an idle kept-alive "
        "connection after as long (env BFX_HEADER_TIMEOUT; default 10)",
    )
    g.add_argument(
        "--body-timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="answer 408 when a request body takes longer to arrive (env BFX_BODY_TIMEOUT; "
        "default 10)",
    )
    g.add_argument(
        "--max-connections",
        type=_positive_int,
        default=None,
        metavar="N",
        help="open connections per worker; more wait in the listen backlog "
        "(env BFX_MAX_CONNECTIONS; default 4096, lowered to fit the open-files limit)",
    )
    g.add_argument(
        "--backlog",
        type=_positive_int,
        default=None,
        metavar="N",
        help="connections the kernel queues before they are accepted (env BFX_BACKLOG; "
        "default 4096)",
    )
    g.add_argument(
        "--no-keep-alive",
        dest="keep_alive",
        action="store_false",
        default=None,
        help="close every HTTP/1.1 connection after its response (env BFX_KEEP_ALIVE=0)",
    )
    p.add_argument(
        "--no-shared-arena",
        dest="shared_arena",
        action="store_false",
        default=None,
        help="let each worker load its own arena instead of sharing the one the main "
        "process loads (env BFX_SHARED_ARENA=0; default: shared, docs/storage.md)",
    )
    _add_admission_arguments(p)
    _add_change_feed_arguments(p)
    _add_rate_limit_arguments(p)
    g = p.add_argument_group("security (docs/security.md)")
    auth = g.add_mutually_exclusive_group()
    auth.add_argument(
        "--auth",
        choices=("off", "required"),
        default=None,
        help="required: an API key with the operation's scope on every route but health and "
        "the docs (env BFX_AUTH; default off, allowed on a loopback address only)",
    )
    auth.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="serve a non-loopback address without authentication (anyone reaching it "
        "may create, delete and run code)",
    )
    from bfx.security.cli import add_serve_arguments

    add_serve_arguments(p)
    p.set_defaults(func=_serve)


def _whole(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(text)


def _add_change_feed_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("change feed (docs/observability.md, Change feed)")
    g.add_argument(
        "--changes-retention",
        type=_whole,
        default=None,
        metavar="N",
        help="change-log entries kept; older ones are pruned, a feed asking for them is a "
        "410 and a process behind them reloads in full; 0 keeps all (env "
        "BFX_CHANGES_RETENTION; default 1000000)",
    )
    g.add_argument(
        "--stream-clients",
        type=_positive_int,
        default=None,
        metavar="N",
        help="open streams per worker, of each kind (/changes/stream; metrics SSE and "
        "WebSocket together); past it a 503 overloaded (env BFX_STREAM_CLIENTS; default 64)",
    )
    g.add_argument(
        "--stream-poll",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="how often a change stream looks for new changes (env BFX_STREAM_POLL; default 0.5)",
    )


def _add_admission_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "admission and logging (docs/http.md, Limits; each also read from its BFX_* variable)"
    )
    g.add_argument(
        "--max-batch-items",
        type=_positive_int,
        default=None,
        metavar="N",
        help="items per batch request (create, relate, invoke); more is a 413 "
        "(env BFX_MAX_BATCH_ITEMS; default 1000)",
    )
    g.add_argument(
        "--max-answer-bytes",
        type=_size,
        default=None,
        metavar="SIZE",
        help="bytes of a batch invoke's answer; computing stops past it with a 422 "
        "(env BFX_MAX_ANSWER_BYTES; default 16M)",
    )
    g.add_argument(
        "--result-cache-size",
        type=_cache_size,
        default=None,
        metavar="SIZE",
        help="bytes of invocation results each worker keeps (LRU); 0 turns it off "
        "(env BFX_RESULT_CACHE_SIZE; default 64M; docs/domain.md)",
    )
    g.add_argument(
        "--pipeline-max-depth",
        type=_pipeline_depth,
        default=None,
        metavar="N",
        help="how deeply pipelines may nest, 1-64 (env BFX_PIPELINE_MAX_DEPTH; default 8; "
        "docs/domain.md)",
    )
    g.add_argument(
        "--batch-time-budget",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="time one batch invoke may spend in all (env BFX_BATCH_TIME_BUDGET; default 5)",
    )
    g.add_argument(
        "--max-body-depth",
        type=_positive_int,
        default=None,
        metavar="N",
        help="nesting depth of a JSON body; deeper is a 422 (env BFX_MAX_BODY_DEPTH; default 32)",
    )
    g.add_argument(
        "--heavy-threads",
        type=_positive_int,
        default=None,
        metavar="N",
        help="threads per worker for batches, search, query, graph algorithms, export and "
        "import (env BFX_HEAVY_THREADS; default 2)",
    )
    g.add_argument(
        "--heavy-queue",
        type=_whole,
        default=None,
        metavar="N",
        help="heavy requests that may wait for a thread; past it a 503 overloaded "
        "(env BFX_HEAVY_QUEUE; default 16)",
    )
    g.add_argument(
        "--export-connections",
        type=_positive_int,
        default=None,
        metavar="N",
        help="PostgreSQL connections per worker for exports (a pool); one more export "
        "waits up to 5 s, then 503 overloaded (env BFX_EXPORT_CONNECTIONS; default 4)",
    )
    g.add_argument(
        "--no-metrics",
        dest="metrics",
        action="store_false",
        default=None,
        help="do not count requests: the metrics middleware is not assembled and the "
        "request counters of /metrics and /api/v1/metrics stay at zero (env BFX_METRICS=0)",
    )
    g.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        default=None,
        help="no access-log line per request (env BFX_ACCESS_LOG=0)",
    )
    g.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=None,
        help="access log as text or JSON lines (env BFX_LOG_FORMAT; default text)",
    )
    g.add_argument(
        "--access-log-buffer",
        type=_size,
        default=None,
        metavar="SIZE",
        help="bytes of access-log lines that may wait for a slow reader of stderr; past "
        "it lines are dropped and counted, requests never wait (env "
        "BFX_ACCESS_LOG_BUFFER; default 4M)",
    )


def _checked(parse: Callable[[str], str]) -> Callable[[str], str]:
    def check(text: str) -> str:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return check


def _add_rate_limit_arguments(p: argparse.ArgumentParser) -> None:
    from bfx.ratelimit import parse_rate, parse_rate_storage

    g = p.add_argument_group(
        "rate limits (docs/security.md; each also read from its BFX_* variable)"
    )
    g.add_argument(
        "--rate-limit",
        type=_checked(parse_rate),
        default=None,
        metavar="RATE",
        help="per principal (key, user, else client address), e.g. 600/minute; a batch "
        "costs per item, graph algorithms more; over it a 429 (env BFX_RATE_LIMIT; "
        "default: off)",
    )
    g.add_argument(
        "--rate-limit-storage",
        type=_checked(parse_rate_storage),
        default=None,
        metavar="memory|redis://...",
        help="where the limit is counted: memory (each worker process on its own) or a "
        "Redis URL (exact across workers and nodes) (env BFX_RATE_LIMIT_STORAGE; "
        "default memory)",
    )


def _add_storage_arguments(p: argparse.ArgumentParser, *, allow_memory: bool) -> None:
    from bfx.settings import DEFAULT_DATA_DIR

    g = p.add_argument_group(
        "storage (give at most one of "
        + ("--memory, " if allow_memory else "")
        + "--database-url, --data-dir; a flag wins over the environment, where "
        "BFX_DATABASE_URL wins over BFX_DATA_DIR)"
    )
    # One store per command: contradictory flags are refused (exit 2) rather than
    # one silently winning. Defaults stay None so that only given flags conflict.
    where = g.add_mutually_exclusive_group()
    where.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help=f"directory of the embedded SQLite store (env BFX_DATA_DIR; default ./{DEFAULT_DATA_DIR})",
    )
    where.add_argument(
        "--database-url",
        default=None,
        metavar="URL",
        help="postgresql://user:password@host:port/dbname, shared by several bfx nodes "
        "(env BFX_DATABASE_URL)",
    )
    g.add_argument(
        "--sqlite-sync",
        choices=("normal", "full"),
        default=os.environ.get("BFX_SQLITE_SYNC", "normal"),
        help="SQLite synchronous mode: normal survives a killed process, full also a power "
        "cut (env BFX_SQLITE_SYNC; default normal)",
    )
    if allow_memory:
        where.add_argument(
            "--memory",
            action="store_true",
            help="keep everything in memory: nothing survives a restart (for tests)",
        )


def _locator(args: argparse.Namespace) -> str:
    """The store the flags name (argparse refuses two of them), else the one the
    environment names (BFX_DATABASE_URL before BFX_DATA_DIR), else ./bfx-data."""
    from bfx.settings import DEFAULT_DATA_DIR

    if getattr(args, "memory", False):
        return "memory"
    if args.database_url is not None:
        return str(args.database_url)
    if args.data_dir is not None:
        return os.path.abspath(args.data_dir)
    if os.environ.get("BFX_DATABASE_URL"):
        return os.environ["BFX_DATABASE_URL"]
    return os.path.abspath(os.environ.get("BFX_DATA_DIR") or DEFAULT_DATA_DIR)


def _fail(message: str) -> int:
    print(f"bfx: error: {message}", file=sys.stderr)
    return 1


def _open_registry(args: argparse.Namespace) -> object:
    from bfx.settings import Settings, parse_whole

    # A command that writes (bfx import) prunes the change log as a server would: with
    # the same variable, so that it never cuts a log the servers keep longer.
    options: dict[str, int] = {}
    retention = os.environ.get("BFX_CHANGES_RETENTION", "").strip()
    if retention:
        try:
            options["changes_retention"] = parse_whole(retention)
        except ValueError as exc:
            print(f"bfx: error: BFX_CHANGES_RETENTION: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    settings = Settings(storage=_locator(args), sqlite_synchronous=args.sqlite_sync, **options)
    return settings.open_registry()


def _serve(args: argparse.Namespace) -> int:
    import msgspec

    import bfx
    from bfx.errors import StorageError
    from bfx.settings import Settings, split_origins

    try:
        base = Settings.from_env()
    except ValueError as exc:  # a BFX_* variable that cannot be read: a usage error
        print(f"bfx: error: {exc}", file=sys.stderr)
        return 2
    changes: dict[str, object] = {
        "log_level": args.log_level,
        "storage": _locator(args),
        "sqlite_synchronous": args.sqlite_sync,
    }
    if args.cors_origin is not None:
        changes["cors_origins"] = split_origins(",".join(args.cors_origin))
    if args.body_limit is not None:
        changes["body_limit"] = args.body_limit
    if args.import_limit is not None:
        changes["import_body_limit"] = args.import_limit
    for name in (
        "header_timeout",
        "body_timeout",
        "max_connections",
        "backlog",
        "keep_alive",
        "shared_arena",
    ):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    for name in (*_ADMISSION_FLAGS, "rate_limit", "rate_limit_storage"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.auth is not None:
        changes["auth"] = args.auth
    if args.interface is not None:
        changes["interface"] = args.interface
    if args.loop is not None:
        changes["loop"] = args.loop
    from bfx.security.cli import jwt_problem, serve_changes, serve_problem

    changes.update(serve_changes(args))
    settings = msgspec.structs.replace(base, **changes)
    refused = serve_problem(args.host, settings.auth, args.insecure_no_auth, settings.storage)
    refused = refused or jwt_problem(settings)
    if refused is not None:
        print(f"bfx: {refused}", file=sys.stderr)
        return 2
    if args.workers > 1 and not settings.shares_state_across_processes:
        # Each worker is its own process: with an in-memory registry every
        # worker would answer from a different registry (the prototype's bug).
        print(
            "bfx: --workers > 1 needs storage shared between processes; --memory keeps "
            "each worker's registry in its own memory, so run one worker",
            file=sys.stderr,
        )
        return 2
    # Refuse a port that another server (a second bfx, or anything else) listens on:
    # Granian binds with SO_REUSEPORT and would silently share it.
    problem = _claim_port(args.host, args.port)
    if problem is not None:
        return _fail(problem)
    # Open the store once before any worker starts: a foreign or damaged data
    # directory, a newer schema or an unreachable database stops here, with the
    # reason and a non-zero exit, and the schema is migrated once.
    try:
        store = settings.open_store()
    except StorageError as exc:
        return _fail(exc.message)
    description = store.describe()
    keys = len(store.list_keys())
    users = len(store.list_users())
    store.close()
    if settings.rate_limit:
        from bfx.ratelimit import check_storage

        problem = check_storage(settings.rate_limit_storage)
        if problem is not None:
            return _fail(problem)
    settings = _fit_open_files(settings)
    if settings.shared_arena and settings.shares_state_across_processes:
        # Loaded once here, before Granian forks its workers: they share its pages.
        from bfx.storage import inherit

        try:
            loaded = inherit.load(settings)
        except StorageError as exc:
            return _fail(exc.message)
        arena = loaded.arena
        print(
            f"bfx: arena loaded in the main process ({len(arena)} substrates, "
            f"{arena.relationship_count} relationships, {loaded.seconds:.1f} s); the workers "
            "share it",
            flush=True,
        )
    # Workers are separate processes that build the app from the environment.
    os.environ.update(settings.to_env())

    host = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"bfx {bfx.__version__}: serving http://{host}:{args.port}/api/v1 "
        f"({args.workers} worker{'s' if args.workers != 1 else ''})",
        flush=True,
    )
    print(f"bfx: storage: {description}", flush=True)
    print(f"bfx: Granian interface: {settings.interface}, loop: {settings.loop}", flush=True)
    origins = ", ".join(settings.cors_origins) or "none"
    print(f"bfx: body limit {settings.body_limit} bytes, CORS origins: {origins}", flush=True)
    if settings.auth == "required":
        hint = "" if keys else "; make one with `bfx keys create --name admin --scopes admin`"
        print(f"bfx: auth required: {keys} API key{'s' if keys != 1 else ''}{hint}", flush=True)
        issuer = settings.jwt_issuer or "none"
        print(
            f"bfx: {users} user{'s' if users != 1 else ''} (tokens valid "
            f"{settings.jwt_ttl}s), external token issuer: {issuer}",
            flush=True,
        )
    else:
        print("bfx: auth off: every caller may do everything", flush=True)
    print(
        f"bfx: header timeout {settings.header_timeout:g}s, body timeout "
        f"{settings.body_timeout:g}s, keep-alive {'on' if settings.keep_alive else 'off'}, "
        f"{settings.max_connections} connections per worker, backlog {settings.backlog}",
        flush=True,
    )
    if settings.rate_limit:
        where = settings.rate_limit_storage
        shared = "per worker process" if where == "memory" else "shared through Redis"
        print(f"bfx: rate limit {settings.rate_limit} per principal ({shared})", flush=True)
    if not settings.metrics:
        print("bfx: request metrics off (--no-metrics): request counters stay at zero", flush=True)
    _announce_tracing()

    # The workers' Prometheus counters meet in a directory of this server's own: any
    # files left there by another run would be summed into ours (docs/observability.md).
    import shutil
    import tempfile

    from bfx.asgi import multiproc

    # Named with our pid, so a later server can tell a directory whose server was
    # killed before it could remove it (and removes it).
    metrics_dir = tempfile.mkdtemp(prefix=f"{multiproc.PREFIX}{os.getpid()}-")
    multiproc.remove_stale(os.path.dirname(metrics_dir))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    print(f"bfx: Prometheus metrics at /metrics (workers' files in {metrics_dir})", flush=True)
    try:
        _granian(args, settings)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _announce_tracing() -> None:
    """Says whether the workers will trace (docs/observability.md "Tracing"): asked for
    with OTEL_EXPORTER_OTLP_ENDPOINT but without the otel extra is a message, not a
    failure."""
    from bfx import tracing

    where = tracing.endpoint()
    if not where:
        return
    problem = tracing.missing_extra()
    if problem is None:
        print(f"bfx: tracing: spans exported over OTLP/HTTP to {where}", flush=True)
    else:
        print(
            f"bfx: OTEL_EXPORTER_OTLP_ENDPOINT is set but tracing is off: {problem}",
            file=sys.stderr,
            flush=True,
        )


def _granian(args: argparse.Namespace, settings: Settings) -> None:
    from granian import Granian
    from granian.constants import Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    rsgi = settings.interface == "rsgi"
    if multiprocessing.get_start_method() != "fork":
        # Workers must be forked to share the arena loaded here (a spawned worker
        # starts empty and loads its own).
        multiprocessing.set_start_method("fork", force=True)
    server = Granian(
        # Both factories build the same App; RSGI skips ASGI's message dicts (docs/http.md).
        "bfx.asgi.rsgi:create_app" if rsgi else "bfx.asgi:create_app",
        factory=True,
        interface=Interfaces.RSGI if rsgi else Interfaces.ASGI,
        # uvloop: the loop's own work per request (the ready queue, the selector, futures
        # completed from threads) is a fraction of asyncio's (docs/http.md, Speed).
        loop=Loops.uvloop if settings.loop == "uvloop" else Loops.asyncio,
        address=args.host,
        port=args.port,
        workers=args.workers,
        log_level=LogLevels(args.log_level),
        # The live metrics stream over WebSocket (/api/v1/metrics/ws, bfx.asgi.live).
        websockets=True,
        # Granian holds one permit per open connection (idle kept-alive ones included):
        # its default, backlog / workers = 1024, let 1,024 idle clients lock everyone out.
        backpressure=settings.max_connections,
        backlog=settings.backlog,
        http1_settings=HTTP1Settings(
            header_read_timeout=int(settings.header_timeout * 1000),
            keep_alive=settings.keep_alive,
        ),
        # A worker that dies (a crash, an OOM kill) is replaced; one that dies again
        # within seconds of its replacement makes Granian give up (a crash loop).
        respawn_failed_workers=True,
        # A worker that does not stop within this many seconds of a shutdown or a
        # respawn is killed; without it, a stuck worker kept `bfx serve` (and the port)
        # alive forever after Ctrl-C.
        workers_kill_timeout=10,
    )
    from bfx.asgi.worker_signals import capture_worker_signals, keep_early_worker_signals

    # Live streams end on a worker's shutdown signal before Granian's own shutdown runs
    # (bfx.asgi.worker_signals.chain_shutdown_signals); under uvloop only through this.
    capture_worker_signals()
    # A stop signal that reaches a worker before its own handlers are in is not lost.
    keep_early_worker_signals(server)
    # The objects made so far are never collected: the collector then never writes
    # to their pages, which stay shared with the forked workers.
    gc.freeze()
    try:
        server.serve()
    finally:
        gc.unfreeze()


def _claim_port(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be served, or None when it is free.

    A plain bind without SO_REUSEPORT fails while any other socket listens there
    (SO_REUSEADDR only lets it past connections lingering in TIME_WAIT). The socket is
    closed again before Granian binds: a short race, not a guarantee."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot bind to --host {host!r}: {exc.strerror}"
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            where = f"{'[' + host + ']' if ':' in host else host}:{port}"
            if exc.errno != errno.EADDRINUSE:
                return f"cannot listen on {where}: {exc.strerror}"
            other = _bfx_version_at(host, port)
            who = f"another bfx {other} server" if other else "another program"
            return (
                f"{where} is already in use by {who}; stop it or choose another --port "
                "(two servers on one port would split requests between them)"
            )
    return None


def _bfx_version_at(host: str, port: int) -> str | None:
    """The version a bfx server listening at host:port reports, if it is one."""
    import http.client

    import msgspec

    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("GET", "/api/v1/health")
        answer = msgspec.json.decode(conn.getresponse().read())
        if isinstance(answer, dict) and answer.get("status") == "healthy":
            return str(answer.get("version", ""))
    except Exception:  # anything else is "not a bfx"
        return None
    finally:
        conn.close()
    return None


def _fit_open_files(settings: Settings) -> Settings:
    """Raise the soft open-files limit toward the hard one (the workers inherit it), and
    lower ``max_connections`` when a worker's connections would not fit under it."""
    import resource

    import msgspec

    spare = 256  # the store, the log, Granian's own descriptors
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = settings.max_connections + spare
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < want:
        fitted = max(1, soft - spare)
        print(
            f"bfx: the open-files limit is {soft}: {fitted} connections per worker, "
            f"not {settings.max_connections}",
            file=sys.stderr,
            flush=True,
        )
        return msgspec.structs.replace(settings, max_connections=fitted)
    return settings


def _add_export(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "export",
        help="write every substrate and relationship as JSON or NDJSON",
        description="Export the store (one consistent snapshot, streamed; a server may "
        "be running on it).",
    )
    _add_storage_arguments(p, allow_memory=False)
    p.add_argument("--format", choices=("json", "ndjson"), default="json")
    p.add_argument("-o", "--output", default="-", help="file to write (default: stdout)")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from bfx import transfer
    from bfx.errors import BfxError
    from bfx.registry import export_record
    from bfx.storage import open_store

    try:
        # Export only reads: a data directory without a database is a mistake (a
        # typo in --data-dir), not an empty registry to create there.
        store = open_store(_locator(args), create=False)
    except BfxError as exc:
        if exc.details.get("cause") == "missing":
            return _fail(f"{exc.message} (name an existing store with --data-dir or BFX_DATA_DIR)")
        return _fail(exc.message)
    try:
        rows = store.export_rows()
        assert rows is not None  # a database store always has rows to read
        records = (export_record(row) for row in rows)
        chunks = (transfer.write_ndjson if args.format == "ndjson" else transfer.write_document)(
            records
        )
        out = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")  # noqa: SIM115
        try:
            for chunk in chunks:
                out.write(chunk)
            out.flush()
        finally:
            if out is not sys.stdout.buffer:
                out.close()
    except BfxError as exc:
        return _fail(exc.message)
    except OSError as exc:
        return _fail(f"cannot write {args.output}: {exc.strerror or exc}")
    finally:
        store.close()
    return 0


def _add_import(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "import",
        help="load an export (JSON or NDJSON); existing ids are skipped",
        description="Import records, streamed: code is validated again and every id "
        "checked against its content. Stops at the first invalid record; those before it "
        "are imported.",
    )
    _add_storage_arguments(p, allow_memory=False)
    p.add_argument("input", help="file to read ('-' for stdin)")
    p.add_argument("--format", choices=("auto", "json", "ndjson"), default="auto")
    p.set_defaults(func=_import)


def _import(args: argparse.Namespace) -> int:
    import itertools
    import json

    from bfx import transfer
    from bfx.errors import BfxError

    try:
        source = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")  # noqa: SIM115
    except OSError as exc:
        return _fail(f"cannot read {args.input}: {exc.strerror}")
    name = "stdin" if args.input == "-" else args.input
    try:
        records = transfer.read_stream(source, args.format)
        # The first record is read before the store is opened: an empty input or
        # one in the wrong format is refused without creating anything.
        first = next(records, None)
        registry = _open_registry(args)
        try:
            head = [] if first is None else [first]
            counts = transfer.import_records(registry, itertools.chain(head, records))
        finally:
            registry.close()  # type: ignore[attr-defined]
    except BfxError as exc:
        return _fail(_import_failure(name, args.format, exc))
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    print(json.dumps(counts))
    return 0


def _import_failure(name: str, fmt: str, exc: BaseException) -> str:
    """One line for a failed import: where it stopped (line, record index), why."""
    import re

    details: dict = getattr(exc, "details", {})
    message: str = getattr(exc, "message", str(exc))
    line, index = details.get("line"), details.get("index")
    if "expected" in details and fmt != "auto":
        return f"{name}: {message} (--format {fmt}; leave --format out to detect the format)"
    if index is None:
        return f"{name}: {message}"
    where = f"{name}, line {line}" if line is not None else name
    reason = re.sub(rf"^line {line}(: | is )", "", message) if line is not None else message
    done = {0: "nothing was", 1: "the 1 record before it was"}.get(
        index, f"the {index} records before it were"
    )
    return f"{where} (record index {index}): {reason}; {done} imported, nothing after it"


def _add_backup(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "backup",
        help="consistent online copy of the SQLite store",
        description="Copy the SQLite database while it is in use (SQLite's online backup) "
        "and check the copy. Restore by putting the file in a new data directory as bfx.db. "
        "For PostgreSQL, use pg_dump.",
    )
    _add_storage_arguments(p, allow_memory=False)
    p.add_argument("output", help="file to create (refuses to overwrite)")
    p.set_defaults(func=_backup)


def _backup(args: argparse.Namespace) -> int:
    from bfx.errors import BfxError
    from bfx.storage.sqlite import backup

    data_dir = _locator(args)
    if data_dir.startswith(("postgresql://", "postgres://")):
        return _fail("bfx backup copies the embedded SQLite store; for PostgreSQL use pg_dump")
    try:
        size = backup(data_dir, args.output)
    except BfxError as exc:
        return _fail(exc.message)
    print(f"bfx: backup of {data_dir} written to {args.output} ({size} bytes)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bfx", description="bfx: a registry of small math expressions."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_serve(sub)
    _add_export(sub)
    _add_import(sub)
    _add_backup(sub)
    from bfx import capacity

    capacity.add_parser(sub)
    from bfx.security import cli as security_cli

    security_cli.add_parser(sub)
    # The command-line client of a running service (docs/clients.md).
    from bfx.client import cli as client_cli

    client_cli.add_parsers(sub)

    from bfx.security import users_cli

    users_cli.add_parser(sub)
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
