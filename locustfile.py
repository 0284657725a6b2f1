"""A mixed bfx workload for locust.

    bfx serve --memory --port 8000 &
    locust -f locustfile.py --headless -u 20 -r 10 -t 30s --host http://127.0.0.1:8000 --only-summary

or ``make bench-locust`` (starts a server on a free loopback port, runs this, stops it).

Operations and their weights come from ``BFX_MIX`` (default
``get=40,invoke=25,create=10,outgoing=10,incoming=5,relate=5,traverse=5``):

* ``get``       GET  /substrates/{id}
* ``invoke``    POST /substrates/{id}/invoke
* ``create``    POST /substrates
* ``outgoing``  GET  /relationships/outgoing/{id}
* ``incoming``  GET  /relationships/incoming/{id}
* ``relate``    POST /relationships
* ``traverse``  POST /relationships/traverse (depth 2)
* ``multiply``  POST /substrates/multiply (an operator; not in the default mix)

A weight of 0 leaves an operation out. ``BFX_SEED_SUBSTRATES`` (default 1000)
substrates with three relationships each are created before the run, so reads
have targets. At the end a markdown summary (throughput, latency percentiles and
failures per operation) is printed after locust's own. Only point it at a server
you run yourself: the host must be loopback.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import random
import sys
import time
from urllib.parse import urlsplit

from locust import events, task
from locust.contrib.fasthttp import FastHttpUser

API = "/api/v1"
DEFAULT_MIX = "get=40,invoke=25,create=10,outgoing=10,incoming=5,relate=5,traverse=5"
OPERATIONS = ("get", "invoke", "create", "outgoing", "incoming", "relate", "traverse", "multiply")
REL_TYPES = ("DEPENDENCY", "COMPOSITION", "LINEAGE", "SIBLING", "ADJACENCY", "EMBEDDING")
_counter = itertools.count()
_ids: list[str] = []
_seeded = [0]


def parse_mix(text: str) -> dict[str, int]:
    """``"get=50,invoke=25"`` -> {"get": 50, "invoke": 25}; unknown names and bad weights
    are errors (a typo must not silently change the workload)."""
    mix: dict[str, int] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, weight = part.partition("=")
        name = name.strip()
        if not sep or name not in OPERATIONS:
            raise ValueError(
                f"BFX_MIX: {part.strip()!r} is not <operation>=<weight> with an operation among "
                f"{', '.join(OPERATIONS)}"
            )
        try:
            value = int(weight)
        except ValueError:
            raise ValueError(f"BFX_MIX: weight of {name} is not an integer: {weight!r}") from None
        if value < 0:
            raise ValueError(f"BFX_MIX: weight of {name} is negative")
        mix[name] = value
    mix = {k: v for k, v in mix.items() if v}
    if not mix:
        raise ValueError("BFX_MIX: no operation has a positive weight")
    return mix


def _mix() -> dict[str, int]:
    return parse_mix(os.environ.get("BFX_MIX", DEFAULT_MIX))


def _check_loopback(host: str) -> tuple[str, int]:
    url = urlsplit(host)
    name = url.hostname or ""
    try:
        ok = name == "localhost" or ipaddress.ip_address(name).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise SystemExit(f"locustfile: refusing a non-loopback host: {host}")
    return name, url.port or 80


def _call(conn, method: str, path: str, body: object) -> dict:
    conn.request(method, path, json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status >= 300:
        raise SystemExit(
            f"locustfile: seeding failed: {method} {path} -> {resp.status} {data[:300]!r}"
        )
    return json.loads(data)


@events.init.add_listener
def _validate(environment, **_kwargs) -> None:
    try:
        _mix()
    except ValueError as exc:
        sys.exit(f"locustfile: {exc}")


@events.test_start.add_listener
def seed(environment, **_kwargs) -> None:
    import http.client

    host, port = _check_loopback(environment.host or "")
    conn = http.client.HTTPConnection(host, port, timeout=60)
    count = int(os.environ.get("BFX_SEED_SUBSTRATES", "1000"))
    nonce = time.time_ns() % 10**12  # a rerun against the same server makes new records
    try:
        for start in range(0, count, 500):
            items = [
                {
                    "expression_type": "lambda",
                    "expression_code": f"lambda **kw: kw.get('x', 0) * {nonce + n} + kw.get('y', 1)",
                    "metadata": {"name": f"seed-{n}"},
                }
                for n in range(start, min(count, start + 500))
            ]
            body = _call(conn, "POST", f"{API}/substrates/batch", {"substrates": items})
            _ids.extend(r["substrate_id"] for r in body["results"] if "substrate_id" in r)
        if not _ids:
            raise SystemExit("locustfile: seeding created no substrates")
        rels = [
            {
                "rel_type": REL_TYPES[k],
                "source_id": s,
                "target_id": _ids[(i * 31 + k * 7919 + 1) % len(_ids)],
            }
            for i, s in enumerate(_ids)
            for k in range(3)
        ]
        for start in range(0, len(rels), 500):
            _call(
                conn,
                "POST",
                f"{API}/relationships/batch",
                {"relationships": rels[start : start + 500]},
            )
    finally:
        conn.close()
    _seeded[0] = len(_ids)


@events.quitting.add_listener
def summary(environment, **_kwargs) -> None:
    """A markdown summary after locust's own tables."""
    stats = environment.stats
    total = stats.total
    if not total.num_requests:
        return
    elapsed = max(1e-9, (total.last_request_timestamp or 0) - (total.start_time or 0))
    mix = ", ".join(f"{k}={v}" for k, v in _mix().items())
    runner = environment.runner
    users = runner.target_user_count if runner is not None else "?"
    lines = [
        "",
        f"bfx locust summary: {users} users, mix {mix}; {_seeded[0]:,} seeded substrates, "
        f"{len(_ids) - _seeded[0]:,} created during the run",
        "",
        "| operation | requests | failures | req/s | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in sorted(stats.entries.values(), key=lambda e: -e.num_requests):
        lines.append(_row(entry, entry.name, elapsed))
    lines.append(_row(total, "**all**", elapsed))
    print("\n".join(lines), flush=True)


def _row(e, name: str, elapsed: float) -> str:
    pct = e.get_response_time_percentile
    return (
        f"| {name} | {e.num_requests:,} | {e.num_failures:,} | {e.num_requests / elapsed:,.0f} | "
        f"{pct(0.5):,.0f} | {pct(0.95):,.0f} | {pct(0.99):,.0f} | {e.max_response_time or 0:,.0f} |"
    )


class BfxUser(FastHttpUser):
    # No think time: each user sends its next request as soon as the last is answered.
    def on_start(self) -> None:
        self.rng = random.Random()
        weights = _mix()
        self.ops = [getattr(self, f"op_{name}") for name in weights]
        self.weights = list(weights.values())

    def pick(self) -> str:
        return self.rng.choice(_ids)

    @task
    def mixed(self) -> None:
        """One operation per iteration, drawn with the BFX_MIX weights."""
        self.rng.choices(self.ops, self.weights)[0]()

    def op_get(self) -> None:
        self.client.get(f"{API}/substrates/{self.pick()}", name="get GET /substrates/{id}")

    def op_invoke(self) -> None:
        self.client.post(
            f"{API}/substrates/{self.pick()}/invoke",
            json={"parameters": {"x": self.rng.randint(0, 1000), "y": 3}},
            name="invoke POST /substrates/{id}/invoke",
        )

    def op_create(self) -> None:
        n = next(_counter)
        with self.client.post(
            f"{API}/substrates",
            json={
                "expression_type": "expression",
                "expression_code": f"x * {self.rng.randint(1, 10**9)} + {n}",
                "metadata": {"name": f"load-{n}"},
            },
            name="create POST /substrates",
            catch_response=True,
        ) as response:
            if response.status_code == 409:  # a repeat of a random formula is fine
                response.success()
            elif response.status_code == 201:
                _ids.append(response.json()["substrate_id"])

    def op_outgoing(self) -> None:
        self.client.get(
            f"{API}/relationships/outgoing/{self.pick()}?limit=20",
            name="outgoing GET /relationships/outgoing/{id}",
        )

    def op_incoming(self) -> None:
        self.client.get(
            f"{API}/relationships/incoming/{self.pick()}?limit=20",
            name="incoming GET /relationships/incoming/{id}",
        )

    def op_relate(self) -> None:
        with self.client.post(
            f"{API}/relationships",
            json={
                "rel_type": self.rng.choice(REL_TYPES),
                "source_id": self.pick(),
                "target_id": self.pick(),
            },
            name="relate POST /relationships",
            catch_response=True,
        ) as response:
            if response.status_code == 409:  # the same typed edge again is fine
                response.success()

    def op_traverse(self) -> None:
        self.client.post(
            f"{API}/relationships/traverse",
            json={"start_substrate_id": self.pick(), "direction": "outgoing", "max_depth": 2},
            name="traverse POST /relationships/traverse",
        )

    def op_multiply(self) -> None:
        self.client.post(
            f"{API}/substrates/multiply",
            json={"dimension_values": [self.rng.randint(1, 100) for _ in range(9)]},
            name="multiply POST /substrates/multiply",
        )
