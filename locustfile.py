"""A mixed bfx workload for locust.

    bfx serve &
    locust -f locustfile.py --headless -u 20 -r 10 -t 30s --host http://127.0.0.1:8000 --only-summary

Proportions come from ``BFX_MIX`` (default
``get=50,invoke=25,create=10,outgoing=10,relate=5``); ``BFX_SEED_SUBSTRATES``
(default 200) substrates are created before the run so reads have targets.
Only point it at a server you run yourself (loopback).
"""

from __future__ import annotations

import itertools
import os
import random

from locust import HttpUser, between, events, task

API = "/api/v1"
DEFAULT_MIX = "get=50,invoke=25,create=10,outgoing=10,relate=5"
_counter = itertools.count()
_ids: list[str] = []


def _mix() -> dict[str, int]:
    pairs = (part.split("=") for part in os.environ.get("BFX_MIX", DEFAULT_MIX).split(","))
    return {name.strip(): int(weight) for name, weight in pairs}


@events.test_start.add_listener
def seed(environment, **_kwargs) -> None:
    import http.client
    import json
    from urllib.parse import urlsplit

    url = urlsplit(environment.host)
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)
    count = int(os.environ.get("BFX_SEED_SUBSTRATES", "200"))
    items = [
        {
            "expression_type": "lambda",
            "expression_code": f"lambda **kw: kw.get('x', 0) * {n} + kw.get('y', 1)",
            "metadata": {"name": f"seed-{n}"},
        }
        for n in range(count)
    ]
    conn.request(
        "POST",
        f"{API}/substrates/batch",
        json.dumps({"substrates": items}),
        {"Content-Type": "application/json"},
    )
    body = json.loads(conn.getresponse().read())
    for item in body.get("results", []):
        if "substrate_id" in item:
            _ids.append(item["substrate_id"])
    conn.close()


class BfxUser(HttpUser):
    wait_time = between(0, 0.01)

    def on_start(self) -> None:
        self.rng = random.Random()
        weights = _mix()
        self.ops = [getattr(self, name) for name in weights]
        self.weights = list(weights.values())

    def pick(self) -> str:
        return self.rng.choice(_ids)

    @task
    def mixed(self) -> None:
        """One operation per iteration, drawn with the BFX_MIX weights."""
        self.rng.choices(self.ops, self.weights)[0]()

    def get(self) -> None:
        self.client.get(f"{API}/substrates/{self.pick()}", name="GET /substrates/{id}")

    def invoke(self) -> None:
        self.client.post(
            f"{API}/substrates/{self.pick()}/invoke",
            json={"parameters": {"x": self.rng.randint(0, 1000), "y": 3}},
            name="POST /substrates/{id}/invoke",
        )

    def create(self) -> None:
        n = next(_counter)
        with self.client.post(
            f"{API}/substrates",
            json={
                "expression_type": "expression",
                "expression_code": f"x * {self.rng.randint(1, 10**9)} + {n}",
                "metadata": {"name": f"load-{n}"},
            },
            name="POST /substrates",
            catch_response=True,
        ) as response:
            if response.status_code == 409:  # a repeat of a random formula is fine
                response.success()
            elif response.status_code == 201:
                _ids.append(response.json()["substrate_id"])

    def outgoing(self) -> None:
        self.client.get(
            f"{API}/relationships/outgoing/{self.pick()}?limit=20",
            name="GET /relationships/outgoing/{id}",
        )

    def relate(self) -> None:
        with self.client.post(
            f"{API}/relationships",
            json={"rel_type": "DEPENDENCY", "source_id": self.pick(), "target_id": self.pick()},
            name="POST /relationships",
            catch_response=True,
        ) as response:
            if response.status_code == 409:
                response.success()
