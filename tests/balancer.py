"""A tiny TCP load balancer for the multi-node tests and benchmarks: round-robin per
connection over a few loopback backends, in a thread of its own.

Each new client connection goes to the next backend in turn, so a client that opens a
new connection per request sends consecutive requests to different nodes (the
read-your-writes tests rely on that). It records which backend each client connection
went to, by the client's local port (:meth:`Balancer.node_of`). Bounded: at most
``max_connections`` client connections at once (more are closed at once), a connection
idle for ``idle_timeout`` seconds is closed, reads are 64 KiB at most. Loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import OrderedDict

HOST = "127.0.0.1"
CHUNK = 64 * 1024
#: How many client ports :meth:`Balancer.node_of` remembers (the oldest are forgotten).
REMEMBERED = 100_000


class Balancer:
    def __init__(
        self, ports: list[int], max_connections: int = 512, idle_timeout: float = 30.0
    ) -> None:
        if not ports:
            raise ValueError("a balancer needs at least one backend")
        self.ports = list(ports)
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.accepted = [0] * len(ports)  # connections sent to each backend
        self._next = 0
        self._open = 0
        self._served: OrderedDict[int, int] = OrderedDict()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise TimeoutError("the balancer did not start")
        self.port: int = self._server.sockets[0].getsockname()[1]

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, HOST, 0, backlog=1024)
        )
        ready.set()
        self._loop.run_forever()

    def node_of(self, client_port: int) -> int | None:
        """The index of the backend the client connection from ``client_port`` went to."""
        with self._lock:
            return self._served.get(client_port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= self.max_connections:
            writer.close()
            return
        self._open += 1
        node = self._next
        self._next = (self._next + 1) % len(self.ports)
        self.accepted[node] += 1
        with self._lock:
            self._served[writer.get_extra_info("peername")[1]] = node
            if len(self._served) > REMEMBERED:
                self._served.popitem(last=False)
        upstream = None
        try:
            up_reader, upstream = await asyncio.wait_for(
                asyncio.open_connection(HOST, self.ports[node]), self.idle_timeout
            )
            await asyncio.gather(self._pipe(reader, upstream), self._pipe(up_reader, writer))
        except (OSError, TimeoutError):
            pass  # a backend that refused or went away: the client sees its connection end
        except asyncio.CancelledError:
            pass  # the balancer is closing: end quietly (asyncio logs a cancelled handler)
        finally:
            self._open -= 1
            for w in (writer, upstream):
                if w is not None:
                    w.close()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await asyncio.wait_for(src.read(CHUNK), self.idle_timeout):
                dst.write(data)
                await dst.drain()
        except (OSError, TimeoutError):
            pass
        finally:
            # One side ended: end the other, so neither waits for the idle timeout.
            with contextlib.suppress(OSError):
                if dst.can_write_eof():
                    dst.write_eof()
                else:
                    dst.close()

    def close(self) -> None:
        """Stop listening and end every open connection (both sides closed)."""

        async def shutdown() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()
