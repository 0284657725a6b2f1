"""Every request body in OpenAPI has an example, and every example works as written:
Swagger's "Try it out" sends exactly this, so a prefilled body must never be a 422."""

from __future__ import annotations

import msgspec
import pytest

from asgi_driver import finish, started
from bfx.api.examples import DOUBLE_ID, EXAMPLES, SUBSTRATES
from bfx.security.keys import now_us
from bfx.security.users import new_user

API = "/api/v1"


@pytest.fixture
def client():
    driver = started()
    yield driver
    finish(driver)


def _operations(doc):
    # Creation first: the other examples name what it creates.
    ops = [
        (path, method, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if "requestBody" in op
    ]
    return sorted(ops, key=lambda o: (o[0] != f"{API}/substrates", o[0]))


def test_every_body_has_an_example_that_matches_its_schema(client):
    doc = client.get(f"{API}/openapi.json").json()
    ops = _operations(doc)
    assert len(ops) >= 15
    for path, method, op in ops:
        for ctype, media in op["requestBody"]["content"].items():
            if ctype == "application/json":
                assert "example" in media, (method, path)
    # Each example decodes into its request type, unknown fields forbidden.
    for name, example in EXAMPLES.items():
        kind = next(
            r.body for r in client.app.router.routes if getattr(r.body, "__name__", "") == name
        )
        msgspec.convert(example, kind)


def test_every_example_succeeds_as_written(client):
    doc = client.get(f"{API}/openapi.json").json()
    for record, sid in SUBSTRATES[1:]:
        r = client.post(f"{API}/substrates", record)
        assert r.json()["substrate_id"] == sid
    # The login example's user.
    login = EXAMPLES["Login"]
    user = new_user(login["username"], ["substrates:read"], login["password"], now_us())
    client.app.registry.store.add_user(user)
    answered = {}
    for path, method, op in _operations(doc):
        example = op["requestBody"]["content"]["application/json"]["example"]
        url = path.replace("{id}", DOUBLE_ID).replace("{name}", "doubler")
        r = client.request(method.upper(), url, json=example)
        answered[f"{method.upper()} {path}"] = r.status
        assert 200 <= r.status < 300, (method, path, r)
        if path == f"{API}/substrates":
            assert r.json()["substrate_id"] == DOUBLE_ID
    # Batch items succeed too, not just the envelope.
    r = client.post(f"{API}/substrates/batch/invoke", EXAMPLES["BatchInvoke"])
    assert [i["status"] for i in r.json()["results"]] == [200, 200, 200]
    assert [i["result"] for i in r.json()["results"]] == [42, 10, 21]
    assert len(answered) >= 15
