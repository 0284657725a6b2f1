"""PostgreSQL: one database shared by several bfx processes on several machines.

Same schema, same change log, same write path as SQLite (``base.SqlStore``). The
differences: writers serialise on ``SELECT ... FROM bfx_head FOR UPDATE``; a full load
and an export read one ``REPEATABLE READ`` snapshot through a server-side cursor; and
the per-request freshness check is ``SELECT seq FROM bfx_head`` (one round trip).

LISTEN/NOTIFY is not used for that check: a notification reaches the other backends
asynchronously, after the writer's COMMIT has returned, so a client that writes
through one node and reads through another at once could beat it. Reading the
sequence is what makes read-your-writes hold on the very next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

from bfx import errors
from bfx.storage.base import SqlStore

__all__ = ["PostgresStore"]

log = logging.getLogger("bfx.storage")

#: ``pg_advisory_xact_lock`` key that serialises schema migrations across nodes.
_MIGRATION_LOCK = 0x62667831


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        raise errors.StorageError(
            "PostgreSQL storage needs psycopg: pip install 'psycopg[binary]'", {}
        ) from None
    return psycopg


def _where(url: str) -> str:
    """``host:port/dbname`` of a connection URL, without user or password."""
    psycopg = _psycopg()
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "PostgreSQL (unparseable URL)"
    host = info.get("host") or "localhost"
    return f"PostgreSQL {host}:{info.get('port') or 5432}/{info.get('dbname') or ''}"


class PostgresStore(SqlStore):
    dialect = "postgresql"
    check_is_round_trip = True
    _param = "%s"
    _hex = "to_hex({})"
    _false_bytes = "'\\x'::bytea"

    def __init__(
        self, url: str, *, connect_timeout: float = 5.0, export_connections: int = 4
    ) -> None:
        super().__init__()
        self._url = url
        self._where = _where(url)
        self._connect_timeout = connect_timeout
        if export_connections < 1:
            raise errors.StorageError(
                "export_connections must be at least 1", {"value": export_connections}
            )
        self._export_connections = export_connections
        #: The freshness probe's connection on each event loop (:meth:`probe_on_loop`);
        #: a closed loop's is closed by the next probe on another loop, or by close().
        self._loop_probes: dict[Any, Any] = {}
        #: Exports' connections (``psycopg_pool``), opened on the first export.
        self._pool: Any = None
        self._pool_lock = threading.Lock()
        try:
            self._conn = self._connect()
            self._migrate()
        except BaseException:
            self.close()
            raise

    def _connect(self) -> Any:
        psycopg = _psycopg()
        try:
            return psycopg.connect(
                self._url, autocommit=True, connect_timeout=max(1, int(self._connect_timeout))
            )
        except psycopg.Error as exc:
            raise errors.StorageError(
                f"cannot connect to {self._where}: {str(exc).strip()}",
                {"cause": type(exc).__name__},
            ) from None

    def describe(self) -> str:
        return self._where

    def _usable(self) -> None:
        """A connection the server dropped (a restart, a failover, an idle timeout)
        is marked broken by psycopg: open a new one, bounded by the connect timeout.
        The arena needs nothing: what was committed meanwhile is in the change log,
        which the write (or the next catch-up) reads from the cursor on."""
        conn = self._conn
        if conn is None:
            raise errors.StorageError(f"{self.describe()}: the store is closed", {})
        if not (conn.broken or conn.closed):
            return
        with contextlib.suppress(Exception):
            conn.close()
        self._conn = self._connect()
        log.warning("storage: reconnected to %s", self._where)

    # ---- dialect hooks ----

    def _tables(self) -> set[str]:
        rows = self._conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
        return {r[0] for r in rows}

    def _begin_migration(self) -> None:
        self._conn.execute("BEGIN")
        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))

    def _begin_write(self, nowait: bool = False) -> int:
        with self._conn.pipeline():  # BEGIN and the lock in one round trip
            self._conn.execute("BEGIN")
            cur = self._conn.execute("SELECT seq FROM bfx_head FOR UPDATE")
        return cur.fetchone()[0]

    def _pipelined(self) -> Any:
        return self._conn.pipeline()

    def _begin_read(self) -> None:
        self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def _begin_read_on(self, conn: Any) -> None:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def _stream(self, conn: Any, query: str) -> Any:
        # A server-side cursor: a million rows are not pulled into memory at once.
        cur = conn.cursor(name="bfx_stream")
        cur.itersize = 8192
        cur.execute(query)
        return cur

    def _changed(self) -> bool:
        return self._conn.execute("SELECT seq FROM bfx_head").fetchone()[0] != self._seq

    def _reader(self) -> Any:
        return self._connect()

    async def probe_on_loop(self) -> bool:
        """Reads the committed head on the running event loop (libpq's non-blocking
        calls, the socket watched by the loop: no thread, no GIL handed over) and says
        whether the arena is behind it, so that only then a thread runs
        :meth:`refresh`. A connection of its own per loop; one query at a time on it
        (the caller's :class:`~bfx.asgi.middleware.freshness.SharedCheck` sends one at
        a time). A failure closes it (reopened next time) and raises the store's error."""
        loop = asyncio.get_running_loop()
        conn = self._loop_probes.get(loop)
        try:
            if conn is None:
                for gone in [other for other in self._loop_probes if other.is_closed()]:
                    with contextlib.suppress(Exception):
                        self._loop_probes.pop(gone).close()
                conn = await loop.run_in_executor(None, self._connect)
                self._loop_probes[loop] = conn
            head = await _query_head(loop, conn.pgconn, self._connect_timeout)
        except errors.BfxError:
            raise
        except Exception as exc:
            dropped = self._loop_probes.pop(loop, None)
            if dropped is not None:
                with contextlib.suppress(Exception):
                    dropped.close()
            raise self._storage_error("could not check the change log", exc) from exc
        return head > max(self._seq, self._pending_head)

    def _probed_head(self, probe: Any) -> int:
        # Through libpq directly: psycopg's cursor costs about 26 µs of Python per query
        # (3 µs this way, the round trip's wait alike), and this query runs for every
        # batch of concurrent requests (bfx.asgi.middleware.freshness). The connection
        # is in autocommit, so the statement reads the latest committed head.
        return _head_of(probe.pgconn.exec_(b"SELECT seq FROM bfx_head"))

    def _export_conn(self) -> Any:
        """A pooled connection: a long export holds one of its own (never the write or
        the probe connection), at most ``export_connections`` at once; one checked
        before it is handed out, so a connection the server dropped is replaced."""
        from psycopg_pool import ConnectionPool, PoolTimeout

        with self._pool_lock:
            if self._conn is None:
                raise errors.StorageError(f"{self._where}: the store is closed", {})
            if self._pool is None:
                self._pool = ConnectionPool(
                    self._url,
                    kwargs={
                        "autocommit": True,
                        "connect_timeout": max(1, int(self._connect_timeout)),
                    },
                    min_size=0,
                    max_size=self._export_connections,
                    open=True,
                    check=ConnectionPool.check_connection,
                    name="bfx-export",
                    num_workers=1,
                    timeout=self._connect_timeout,
                )
            pool = self._pool
        try:
            return pool.getconn()
        except PoolTimeout:
            raise errors.OverloadedError(
                f"all {self._export_connections} export connections to {self._where} are "
                "busy; retry shortly",
                {"export_connections": self._export_connections},
                retry_after=1,
            ) from None
        except _psycopg().Error as exc:
            raise self._storage_error("could not open an export connection", exc) from exc

    def _export_done(self, conn: Any) -> None:
        with self._pool_lock:
            pool = self._pool
        if pool is None:
            conn.close()
        else:
            pool.putconn(conn)

    def close(self) -> None:
        self._close_probe()
        for conn in list(self._loop_probes.values()):
            with contextlib.suppress(Exception):
                conn.close()
        self._loop_probes.clear()
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(Exception):
                pool.close(timeout=self._connect_timeout)
        with self._lock:
            conn, self._conn = self._conn, None
            self._arena = None
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()


async def _query_head(loop: asyncio.AbstractEventLoop, pgconn: Any, timeout: float) -> int:
    """``SELECT seq FROM bfx_head`` without blocking the loop: sent, then the answer
    read as the socket becomes readable; no answer within ``timeout`` seconds fails as
    a lost connection would."""
    pgconn.send_query(b"SELECT seq FROM bfx_head")
    while pgconn.flush():  # the query not fully sent yet (a full socket buffer)
        await _socket_ready(loop, pgconn.socket, timeout, writing=True)
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            break
        await _socket_ready(loop, pgconn.socket, timeout, writing=False)
    result = pgconn.get_result()
    while pgconn.get_result() is not None:  # the end of this query's results
        pass
    return _head_of(result)


def _head_of(result: Any) -> int:
    """The head from libpq's answer to ``SELECT seq FROM bfx_head``, or the error."""
    from psycopg import pq

    if result is None or result.status != pq.ExecStatus.TUPLES_OK:
        message = b"no answer" if result is None else (result.error_message or b"no answer")
        raise _psycopg().OperationalError(message.decode("utf-8", "replace").strip())
    return int(result.get_value(0, 0))


async def _socket_ready(
    loop: asyncio.AbstractEventLoop, fd: int, timeout: float, *, writing: bool
) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    (loop.add_writer if writing else loop.add_reader)(fd, wake)
    try:
        await asyncio.wait_for(ready, timeout)
    finally:
        (loop.remove_writer if writing else loop.remove_reader)(fd)
