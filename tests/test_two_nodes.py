"""Two ``bfx serve --workers 2`` nodes on one PostgreSQL behind a load balancer
(tests/balancer.py: round-robin per connection), end to end, every request on a new
connection so that consecutive requests land on different nodes: read-your-writes across
the nodes (create, then at once get, invoke, patch, delete through the other node), a
key revoked through one node refused on the very next request through the other, a
rate limit shared through Redis exact across both, and the change feed identical
through either node and equal to the database's log."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import traceback
from collections import Counter
from collections.abc import Iterator

import msgspec
import pytest

from balancer import Balancer
from bfx_server import HOST, Server
from test_e2e_changes import _feed_through, _published, _workload

pytestmark = pytest.mark.e2e

API = "/api/v1"


class Answer(msgspec.Struct, frozen=True):
    status: int
    body: object
    node: int  # which backend the balancer sent the request's connection to


def call(lb: Balancer, method: str, path: str, body: object = None, key: str | None = None):
    """One request through the balancer on a new connection."""
    conn = http.client.HTTPConnection(HOST, lb.port, timeout=30)
    try:
        headers = {} if key is None else {"x-api-key": key}
        data = None if body is None else msgspec.json.encode(body)
        if data is not None:
            headers["content-type"] = "application/json"
        conn.request(method, f"{API}{path}", body=data, headers=headers)
        port = conn.sock.getsockname()[1]
        resp = conn.getresponse()
        raw = resp.read()
        # Looked up once answered: the balancer records the connection before it
        # forwards a byte of it.
        node = lb.node_of(port)
        assert node is not None
        return Answer(resp.status, msgspec.json.decode(raw) if raw else None, node)
    finally:
        conn.close()


@contextlib.contextmanager
def two_nodes(tmp_path, url: str, *args: str) -> Iterator[tuple[list[Server], Balancer]]:
    nodes: list[Server] = []
    lb = None
    try:
        for _ in range(2):
            nodes.append(Server(tmp_path, "--database-url", url, "--workers", "2", *args))
        lb = Balancer([n.port for n in nodes])
        yield nodes, lb
    finally:
        if lb is not None:
            lb.close()
        for node in nodes:
            node.stop()


@pytest.fixture(scope="module")
def plain(tmp_path_factory, postgres):
    url = postgres.new_database()
    with two_nodes(tmp_path_factory.mktemp("nodes"), url) as (nodes, lb):
        yield url, nodes, lb


def test_every_acknowledged_write_is_seen_through_the_other_node(plain):
    """Four clients at once, each create followed at once by a get, an invoke, a
    metadata patch and a get of it, a delete and a get: never a 404 for something
    acknowledged, never a stale answer, whichever node each request reached."""
    _, _, lb = plain
    misses: list[tuple[str, str, Answer]] = []
    crossings = Counter()  # requests answered by the other node than the one before
    done: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(w: int) -> None:
        try:
            rounds(w)
        except BaseException:  # reported by the test, not lost in the thread
            errors.append(traceback.format_exc())

    def rounds(w: int) -> None:
        tag = random.getrandbits(40)
        for i in range(30):
            made = call(lb, "POST", "/substrates", {
                "expression_type": "lambda", "expression_code": f"lambda x: x * {tag} + {i}",
            })  # fmt: skip
            assert made.status == 201, made.body
            sid = made.body["substrate_id"]
            steps = [
                ("get", call(lb, "GET", f"/substrates/{sid}"), 200),
                ("invoke", call(lb, "POST", f"/substrates/{sid}/invoke",
                                {"parameters": {"x": 2}}), 200),
                ("patch", call(lb, "PATCH", f"/substrates/{sid}",
                               {"metadata": {"round": i}}), 200),
                ("get patched", call(lb, "GET", f"/substrates/{sid}"), 200),
                ("delete", call(lb, "DELETE", f"/substrates/{sid}"), 204),
                ("get deleted", call(lb, "GET", f"/substrates/{sid}"), 404),
            ]  # fmt: skip
            previous = made.node
            with lock:
                for name, got, want in steps:
                    crossings[got.node != previous] += 1
                    previous = got.node
                    if got.status != want:
                        misses.append((sid, name, got))
            assert steps[1][1].body["result"] == 2 * tag + i
            assert steps[3][1].body["metadata"] == {"round": i}
            assert steps[5][1].body["error"] == "not_found"
        done.append(w)

    threads = [threading.Thread(target=client, args=(w,), daemon=True) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
        assert not t.is_alive()
    assert errors == []
    assert sorted(done) == [0, 1, 2, 3]
    assert misses == []
    # Round-robin per connection: both nodes answered, and many a request was answered
    # by the other node than the request just before it.
    assert min(lb.accepted) > 100, lb.accepted
    assert crossings[True] > 100, crossings


def test_the_change_feed_is_the_same_through_either_node(plain):
    import psycopg

    url, nodes, lb = plain
    writes = _workload([lb.port], random.Random(18), 120)
    assert writes == 120
    feeds = []
    for node in nodes:
        conn = http.client.HTTPConnection(HOST, node.port, timeout=10)
        try:
            feeds.append(_feed_through(conn))
        finally:
            conn.close()
    # And page by page through the balancer: each page from the other node.
    through: list[dict] = []
    since = 0
    for _ in range(10_000):
        page = call(lb, "GET", f"/changes?since={since}&limit=29")
        assert page.status == 200, page.body
        through += page.body["changes"]
        if page.body["next_since"] == since:
            break
        since = page.body["next_since"]
    with psycopg.connect(url) as db:
        rows = db.execute("SELECT seq, op, id FROM changes ORDER BY seq").fetchall()
    assert feeds[0] == feeds[1] == through == _published(rows)
    assert len(rows) >= writes


def _keys_cli(url: str, *argv: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BFX_")}
    done = subprocess.run(
        [sys.executable, "-m", "bfx.cli", "keys", argv[0], "--database-url", url, *argv[1:]],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_key_revoked_through_one_node_is_refused_by_the_other_at_once(tmp_path, postgres):
    url = postgres.new_database()
    admin = json.loads(_keys_cli(url, "create", "--name", "admin", "--scopes", "admin", "--json"))
    with two_nodes(tmp_path, url, "--auth", "required") as (_, lb):
        assert call(lb, "GET", "/substrates").status == 401
        for round_ in range(6):
            made = call(lb, "POST", "/keys",
                        {"name": f"short-{round_}", "scopes": ["substrates:read"]},
                        admin["secret"])  # fmt: skip
            assert made.status == 201, made.body
            secret = made.body["secret"]
            seen = [call(lb, "GET", "/substrates", key=secret) for _ in range(2)]
            assert {a.status for a in seen} == {200}
            assert {a.node for a in seen} == {0, 1}  # valid on both nodes
            revoked = call(lb, "DELETE", f"/keys/{made.body['key_id']}", key=admin["secret"])
            assert revoked.status == 204
            after = [call(lb, "GET", "/substrates", key=secret) for _ in range(2)]
            # The very next request, through the other node: refused; and on the first.
            assert after[0].node != revoked.node
            assert [a.status for a in after] == [401, 401]
            assert after[0].body["error"] == "unauthorized"


def test_a_rate_limit_in_redis_is_exact_across_both_nodes(tmp_path, postgres, redis_url):
    limit = 30
    url = postgres.new_database()
    rate = ("--rate-limit", f"{limit}/minute", "--rate-limit-storage", redis_url)
    with two_nodes(tmp_path, url, *rate) as (_, lb):
        answers: list[Answer] = []
        lock = threading.Lock()
        start = threading.Barrier(6)

        def client() -> None:
            start.wait(timeout=30)
            for _ in range(15):  # 90 in all: 45 per node, each node alone past the limit
                got = call(lb, "GET", "/substrates")
                with lock:
                    answers.append(got)

        threads = [threading.Thread(target=client, daemon=True) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
            assert not t.is_alive()
    assert Counter(a.status for a in answers) == {200: limit, 429: 90 - limit}
    by_node = Counter(a.node for a in answers)
    assert min(by_node[0], by_node[1]) > limit, by_node
    assert all(a.body["error"] == "rate_limited" for a in answers if a.status == 429)
    assert {a.node for a in answers if a.status == 429} == {0, 1}


def test_the_balancer_ends_a_connection_whose_backend_is_gone():
    """The test balancer itself: a backend that refuses ends the client's connection at
    once (no hang), the next connection goes to the next backend, and past
    ``max_connections`` a connection is closed unanswered."""
    import socket
    import time

    from bfx_server import free_port

    with socket.socket() as live:
        live.bind((HOST, 0))
        live.listen(8)
        lb = Balancer([free_port(), live.getsockname()[1]], max_connections=1)
        try:
            started = time.monotonic()
            with socket.create_connection((HOST, lb.port), timeout=5) as dead:
                dead.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                assert _ended(dead)  # nobody listens on the first port
            assert time.monotonic() - started < 5
            held = socket.create_connection((HOST, lb.port), timeout=5)
            peer, _ = live.accept()  # reached the second backend
            with socket.create_connection((HOST, lb.port), timeout=5) as over:
                assert _ended(over)  # one connection at most: closed unanswered
            held.sendall(b"ping")
            assert peer.recv(10) == b"ping"
            peer.close()
            held.close()
            assert lb.accepted == [1, 1]
        finally:
            lb.close()


def _ended(sock) -> bool:
    """The peer closed the connection (an end of stream, or a reset for unread data)."""
    try:
        return sock.recv(10) == b""
    except ConnectionResetError:
        return True
