"""Authentication and authorization in process (DESIGN.md §7, docs/security.md): the key
format and its hash, the middleware alone with a stub for the rest, the whole app with
``auth="required"`` over every operation of the table, a property over the table, the
key routes, the metrics. The real server (Granian, two workers, SQLite) is
``test_e2e_auth.py``; the command line is ``test_cli_keys.py``."""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgi_driver import finish, started
from bfx import errors
from bfx.api import types as t
from bfx.api.examples import DOUBLE_ID, IMPORT_EXAMPLE
from bfx.api.operations import AUTHENTICATED, BY_NAME, OPERATIONS, SCOPES
from bfx.asgi.base import Response
from bfx.asgi.metrics import RequestMetrics
from bfx.asgi.middleware.auth import authenticate
from bfx.asgi.pipeline import Call
from bfx.asgi.router import Route
from bfx.security.auth import KeyAuthenticator, Principal
from bfx.security.keys import KeyRecord, digest, new_key, now_us, parse_key_id, parse_scopes
from bfx.services.keys import LocalKeys
from bfx.storage import MemoryStore

API = "/api/v1"
PUBLIC = {"health", "health_ready", "openapi", "docs", "redoc", "static", "login", "dashboard"}
SAMPLE_PARAMS = {
    "id": DOUBLE_ID,
    "rid": "0x1",
    "src": DOUBLE_ID,
    "dst": "0x2",
    "key_id": "0123456789abcdef",
    "name": "swagger-init.js",
    "version_id": DOUBLE_ID,
}


def request_of(op):
    """A request each operation can decode: its example body (or {}), its path filled."""
    path = op.path
    for name in op.param_names:
        path = path.replace("{" + name + "}", SAMPLE_PARAMS[name])
    body = None
    if op.body is bytes:
        body = msgspec.json.encode(IMPORT_EXAMPLE)
    elif op.body is not None:
        body = msgspec.json.encode(op.example if op.example is not None else {})
    return op.method, path, body


def send(driver, op, key=None, *, bearer=False):
    method, path, body = request_of(op)
    headers = []
    if key is not None:
        headers.append(("authorization", f"Bearer {key}") if bearer else ("x-api-key", key))
    if body is not None:
        headers.append(("content-type", "application/json"))
    return driver.request(method, path, body=body, headers=headers, content_type=None)


def make_key(store, scopes, *, expires_us=None, name="t"):
    key_id, key = new_key()
    store.add_key(
        KeyRecord(key_id, name, tuple(scopes), digest(store.key_secret, key), now_us(), expires_us)
    )
    return key_id, key


def other_scope(scope):
    return next(s for s in SCOPES if s not in (scope, "admin"))


def assert_unauthorized(resp):
    assert resp.status == 401, resp
    assert resp.headers["www-authenticate"] == "Bearer"
    assert resp.json() == {
        "error": "unauthorized",
        "message": "a valid credential is required (X-API-Key or Authorization: Bearer)",
        "details": {},
    }


def assert_forbidden(resp, scope):
    assert resp.status == 403, resp
    body = resp.json()
    assert body["error"] == "forbidden"
    assert body["details"] == {"required_scope": scope}


# --- keys ----------------------------------------------------------------------------------


def test_a_key_carries_its_id_and_256_bits_and_only_its_hash_is_kept():
    key_id, key = new_key()
    assert key.startswith(f"bfx_{key_id}_")
    assert len(key) == 64
    assert parse_key_id(key) == key_id
    # 43 url-safe base64 characters: 32 random bytes.
    assert len(key[len(f"bfx_{key_id}_") :]) == 43
    assert len({new_key()[1] for _ in range(1000)}) == 1000
    store = MemoryStore()
    made = LocalKeys(lambda: store).create("ci", ["graph:read"])
    (record,) = store.list_keys()
    assert record.key_id == made.key_id
    assert made.secret not in repr(record)
    keyed = hashlib.blake2b(made.secret.encode(), key=store.key_secret, digest_size=32)
    assert record.digest == keyed.digest()


@pytest.mark.parametrize(
    "text",
    ["", "bfx_", "bfx_0123456789abcdef_short", "xyz_" + "a" * 60, "bfx_0123456789ABCDEF_" + "a" * 43,
     "bfx_0123456789abcdef_" + "a" * 42 + "!", "bfx_0123456789abcdef_" + "a" * 44],
)  # fmt: skip
def test_malformed_keys_carry_no_id(text):
    assert parse_key_id(text) is None


def test_scopes_are_checked_against_the_design_list():
    assert parse_scopes(["graph:read", "admin", "graph:read"]) == ("graph:read", "admin")
    assert tuple(t.Scope.__args__) == SCOPES
    with pytest.raises(errors.ValidationError, match="unknown scope root"):
        parse_scopes(["root"])
    with pytest.raises(errors.ValidationError, match="at least one scope"):
        parse_scopes([" "])


def test_the_service_refuses_a_past_or_naive_expiry_and_unknown_ids():
    svc = LocalKeys(lambda: MemoryStore())
    with pytest.raises(errors.ValidationError, match="in the future"):
        svc.create("x", ["admin"], datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(errors.ValidationError, match="time zone"):
        svc.create("x", ["admin"], datetime(2999, 1, 1))
    with pytest.raises(errors.NotFoundError):
        svc.revoke("0123456789abcdef")
    with pytest.raises(errors.NotFoundError):
        svc.revoke("../../etc")


# --- the middleware alone --------------------------------------------------------------------


def _call(headers=(), op="get_substrate"):
    async def receive():
        return {"type": "http.disconnect"}

    call = Call("GET", "/x", b"", list(headers), ("10.0.0.1", 1), receive)
    call.route = Route(BY_NAME[op], lambda svc, inp: None)
    return call


async def _ok(call):
    return Response(200, b"{}", value=None)


class _Fixed:
    """An authenticator that claims everything and names one principal."""

    def __init__(self, principal):
        self.principal = principal

    def authenticate(self, credential):
        return self.principal


class _Declines:
    def authenticate(self, credential):
        return None


def test_middleware_sets_the_principal_and_checks_the_scope_with_a_stub_next():
    counters = RequestMetrics()
    mw = authenticate(
        [_Declines(), _Fixed(Principal("k1", frozenset({"substrates:read"})))], counters
    )
    handle = mw(_ok)
    call = _call([(b"x-api-key", b"anything")])
    assert asyncio.run(handle(call)).status == 200
    assert call.principal == "k1"
    call = _call([(b"x-api-key", b"anything")], op="delete_substrate")
    resp = asyncio.run(handle(call))
    assert resp.status == 403
    assert msgspec.json.decode(resp.body)["details"] == {"required_scope": "substrates:write"}
    # No authenticator claims it: 401, and the principal stays anonymous.
    call = _call([(b"authorization", b"Bearer abc")])
    resp = asyncio.run(authenticate([_Declines()], counters)(_ok)(call))
    assert resp.status == 401
    assert call.principal == "-"
    events = counters.security_events
    assert (events["unauthorized"], events["forbidden"], events["rate_limited"]) == (1, 1, 0)
    # A public operation needs nothing, and is not even looked at.
    assert asyncio.run(authenticate([])(_ok)(_call(op="health"))).status == 200


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"authorization", b"Basic dXNlcjpwYXNz")],
        [(b"authorization", b"Bearer")],
        [(b"authorization", b"Bearer ")],
        [(b"x-api-key", b"")],
        [(b"x-api-key", b"\xff\xfe")],
        [(b"x-api-key", b"bfx_" + b"a" * 5000)],
    ],
)
def test_missing_or_unreadable_credentials_are_401(headers):
    store = MemoryStore()
    resp = asyncio.run(
        authenticate([KeyAuthenticator(store, store.key_secret)])(_ok)(_call(headers))
    )
    assert resp.status == 401
    assert (b"www-authenticate", b"Bearer") in resp.headers


def test_an_unknown_key_id_and_a_wrong_secret_for_a_known_one_are_the_same_401():
    store = MemoryStore()
    key_id, key = make_key(store, ["admin"])
    auth = KeyAuthenticator(store, store.key_secret)
    assert auth.authenticate(key) == Principal(key_id, frozenset({"admin"}))
    wrong_secret = key[:-1] + ("A" if key[-1] != "A" else "B")
    unknown_id = new_key()[1]
    answers = []
    for credential in (wrong_secret, unknown_id):
        with pytest.raises(errors.UnauthorizedError) as caught:
            auth.authenticate(credential)
        answers.append(caught.value.to_dict())
    assert answers[0] == answers[1]
    # Not a key at all: left for another authenticator (a JWT one) to claim.
    assert auth.authenticate("eyJhbGciOiJIUzI1NiJ9.e30.sig") is None


def test_surrounding_whitespace_is_ignored_and_the_bearer_scheme_is_case_insensitive():
    store = MemoryStore()
    key_id, key = make_key(store, ["substrates:read"])
    handle = authenticate([KeyAuthenticator(store, store.key_secret)])(_ok)
    for headers in ([(b"x-api-key", f" {key}\t".encode())],
                    [(b"authorization", f"bearer  {key} ".encode())]):  # fmt: skip
        call = _call(headers)
        assert asyncio.run(handle(call)).status == 200
        assert call.principal == key_id


def test_an_expired_key_is_refused_from_the_moment_it_expires():
    store = MemoryStore()
    _, key = make_key(store, ["admin"], expires_us=now_us() + 200_000)
    auth = KeyAuthenticator(store, store.key_secret)
    assert auth.authenticate(key) is not None
    time.sleep(0.25)
    with pytest.raises(errors.UnauthorizedError):
        auth.authenticate(key)


def test_a_remembered_key_is_refused_once_revoked_and_guesses_are_never_remembered():
    store = MemoryStore()
    key_id, key = make_key(store, ["admin"])
    auth = KeyAuthenticator(store, store.key_secret)
    assert auth.authenticate(key).name == key_id  # verified, and now remembered
    assert auth.authenticate(key).name == key_id  # the short path
    wrong = key[:-1] + ("A" if key[-1] != "A" else "B")
    for _ in range(2):  # a wrong secret is hashed and refused every time
        with pytest.raises(errors.UnauthorizedError):
            auth.authenticate(wrong)
    assert store.revoke_key(key_id, now_us())
    with pytest.raises(errors.UnauthorizedError):
        auth.authenticate(key)


def test_x_api_key_wins_over_authorization_wherever_it_comes():
    store = MemoryStore()
    key_id, key = make_key(store, ["substrates:read"])
    handle = authenticate([KeyAuthenticator(store, store.key_secret)])(_ok)
    call = _call([(b"authorization", b"Bearer not-a-key"), (b"x-api-key", key.encode())])
    assert asyncio.run(handle(call)).status == 200
    assert call.principal == key_id


# --- the whole app, every operation ----------------------------------------------------------


@pytest.fixture(scope="module")
def app():
    driver = started(auth="required")
    store = driver.app.registry.store
    admin = make_key(store, ["admin"], name="admin")[1]
    # Every example names these substrates: create them so that the right scope succeeds.
    for body in ({"expression_type": "lambda", "expression_code": "lambda x, y=2: x * y"},
                 {"expression_type": "constant", "expression_code": "21"}):  # fmt: skip
        created = driver.post(f"{API}/substrates", body, headers=[("x-api-key", admin)])
        assert created.status == 201, created
    by_scope = {s: make_key(store, [s], name=s)[1] for s in SCOPES}
    yield driver, store, by_scope
    finish(driver)


# Operations needing a real scope (``me`` admits any credential: tests/test_login.py).
# An SSE stream admitted never ends, which this driver waits for: tests/test_streams.py
# checks the streams' auth on a real server.
SCOPED = [
    op
    for op in OPERATIONS
    if op.scope is not None and op.scope != AUTHENTICATED and op.live != "sse"
]


def test_public_operations_are_exactly_health_and_the_docs():
    assert {op.name for op in OPERATIONS if op.scope is None} == PUBLIC


@pytest.mark.parametrize("op", [op for op in OPERATIONS if op.scope is None], ids=lambda o: o.name)
def test_public_operations_answer_without_a_credential(app, op):
    driver, _, _ = app
    resp = send(driver, op)
    # Login is public, and refuses the example's unknown user with its own 401.
    assert resp.status == (401 if op.name == "login" else 200), resp


@pytest.mark.parametrize("op", SCOPED, ids=lambda o: o.name)
def test_every_scoped_operation_refuses_missing_wrong_expired_and_revoked_keys(app, op):
    driver, store, by_scope = app
    assert_unauthorized(send(driver, op))
    assert_unauthorized(send(driver, op, "bfx_not-a-key"))
    assert_forbidden(send(driver, op, by_scope[other_scope(op.scope)]), op.scope)
    expired = make_key(store, ["admin"], expires_us=now_us() - 1)[1]
    assert_unauthorized(send(driver, op, expired))
    key_id, revoked = make_key(store, [op.scope])
    LocalKeys(lambda: store).revoke(key_id)
    assert_unauthorized(send(driver, op, revoked, bearer=True))


@pytest.mark.parametrize("op", SCOPED, ids=lambda o: o.name)
def test_every_scoped_operation_admits_its_scope_and_admin(app, op):
    driver, _, by_scope = app
    for key, bearer in ((by_scope[op.scope], False), (by_scope["admin"], True)):
        resp = send(driver, op, key, bearer=bearer)
        assert resp.status not in (401, 403), resp
        assert resp.status < 500, resp


@given(
    op=st.sampled_from(SCOPED),
    scopes=st.sets(st.sampled_from(SCOPES), max_size=4),
    how=st.sampled_from(["x-api-key", "bearer", "none", "garbage"]),
)
def test_no_operation_answers_2xx_without_the_scope_it_declares(app, op, scopes, how):
    driver, store, _ = app
    key = None
    if how == "garbage":
        key = "bfx_" + "0" * 60
    elif how != "none" and scopes:
        key = make_key(store, sorted(scopes))[1]
    resp = send(driver, op, key, bearer=how == "bearer")
    allowed = key is not None and how != "garbage" and (op.scope in scopes or "admin" in scopes)
    if allowed:
        assert resp.status not in (401, 403), resp
    else:
        assert not 200 <= resp.status < 300, resp
        assert resp.status == (403 if key is not None and how != "garbage" else 401), resp


def test_cors_preflight_needs_no_credential():
    driver = started(auth="required", cors_origins=("https://app.example",))
    try:
        resp = driver.request(
            "OPTIONS",
            f"{API}/substrates",
            headers=[("origin", "https://app.example"), ("access-control-request-method", "POST"),
                     ("access-control-request-headers", "x-api-key, content-type")],
        )  # fmt: skip
        assert resp.status == 204
        assert resp.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-api-key" in resp.headers["access-control-allow-headers"]
        # The answer to the real request still carries the CORS headers when refused.
        resp = driver.get(f"{API}/substrates", headers=[("origin", "https://app.example")])
        assert resp.status == 401
        assert resp.headers["access-control-allow-origin"] == "https://app.example"
    finally:
        finish(driver)


# --- the key routes --------------------------------------------------------------------------


def test_the_key_routes_create_list_and_revoke(app):
    driver, _, by_scope = app
    admin = [("x-api-key", by_scope["admin"])]
    until = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    r = driver.post(f"{API}/keys", {"name": "ci", "scopes": ["graph:read"], "expires_at": until},
                    headers=admin)  # fmt: skip
    assert r.status == 201, r
    made = r.json()
    assert set(made) == {"key_id", "name", "scopes", "created_at", "expires_at", "secret"}
    assert made["secret"].startswith(f"bfx_{made['key_id']}_")
    listed = driver.get(f"{API}/keys", headers=admin).json()["keys"]
    mine = [k for k in listed if k["key_id"] == made["key_id"]]
    assert mine
    assert "secret" not in mine[0]
    assert mine[0]["scopes"] == ["graph:read"]
    assert all("secret" not in k and "digest" not in k for k in listed)
    new = [("x-api-key", made["secret"])]
    assert driver.get(f"{API}/relationships/cycles", headers=new).status == 200
    assert driver.delete(f"{API}/keys/{made['key_id']}", headers=admin).status == 204
    assert_unauthorized(driver.get(f"{API}/relationships/cycles", headers=new))
    assert made["key_id"] not in {
        k["key_id"] for k in driver.get(f"{API}/keys", headers=admin).json()["keys"]
    }
    assert driver.delete(f"{API}/keys/{made['key_id']}", headers=admin).status == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "scopes": ["root"]}, "scopes"),
        ({"name": "x", "scopes": []}, "scopes"),
        ({"name": "", "scopes": ["admin"]}, "name"),
        ({"scopes": ["admin"]}, "name"),
        ({"name": "x", "scopes": ["admin"], "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "x", "scopes": ["admin"], "expires_at": "2999-01-01T00:00:00"}, "expires_at"),
        ({"name": "x", "scopes": ["admin"], "secret": "mine"}, "secret"),
    ],
)
def test_bad_key_requests_are_422_naming_the_field(app, body, field):
    driver, _, by_scope = app
    r = driver.post(f"{API}/keys", body, headers=[("x-api-key", by_scope["admin"])])
    assert r.status == 422, r
    assert field in r.body.decode()


def test_security_events_are_counted_in_the_metrics(app):
    driver, _, by_scope = app
    before = driver.get(f"{API}/metrics", headers=[("x-api-key", by_scope["admin"])]).json()
    driver.get(f"{API}/substrates")
    driver.get(f"{API}/substrates", headers=[("x-api-key", by_scope["graph:read"])])
    # A failed login, and a key revoked over HTTP.
    login = driver.post(f"{API}/auth/login", {"username": "nobody", "password": "wrong"})
    assert login.status == 401
    made = driver.post(
        f"{API}/keys", {"name": "gone", "scopes": ["substrates:read"]},
        headers=[("x-api-key", by_scope["admin"])],
    )  # fmt: skip
    assert made.status == 201
    revoked = driver.delete(
        f"{API}/keys/{made.json()['key_id']}", headers=[("x-api-key", by_scope["admin"])]
    )
    assert revoked.status == 204
    after = driver.get(f"{API}/metrics", headers=[("x-api-key", by_scope["metrics:read"])]).json()
    events, was = after["security_events"], before["security_events"]
    assert events["unauthorized"] == was["unauthorized"] + 1
    assert events["forbidden"] == was["forbidden"] + 1
    assert events["login_failed"] == was["login_failed"] + 1
    assert events["key_revoked"] == was["key_revoked"] + 1


def test_openapi_publishes_the_schemes_and_each_operations_scope(app):
    driver, _, _ = app
    doc = driver.get(f"{API}/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["apiKey"] == {
        **schemes["apiKey"],
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    }
    assert schemes["bearer"]["scheme"] == "bearer"
    for op in OPERATIONS:
        entry = doc["paths"][op.path][op.method.lower()]
        assert entry["x-bfx-scope"] == op.scope
        if op.scope is None:
            assert entry["security"] == []
            # Login's own 401 is a wrong password, not a missing credential.
            assert ("401" in entry["responses"]) == (op.name == "login")
        elif op.scope == AUTHENTICATED:
            assert entry["security"] == [{"apiKey": []}, {"bearer": []}]
            assert "401" in entry["responses"]
            assert "403" not in entry["responses"]
        else:
            assert entry["security"] == [{"apiKey": [op.scope]}, {"bearer": [op.scope]}]
            assert {"401", "403"} <= set(entry["responses"])


def test_auth_off_is_left_out_of_the_pipeline():
    from bfx.asgi.middleware import assemble

    driver = started()
    try:
        assert not any(isinstance(m, authenticate) for m in assemble(
            driver.app.settings, router=driver.app.router, store=driver.app.registry.store,
            counters=driver.app.metrics, deadlines=None))  # fmt: skip
        assert driver.get(f"{API}/keys").status == 200
    finally:
        finish(driver)


def test_the_middleware_lets_a_remembered_key_through_only_while_it_holds():
    store = MemoryStore()
    key_id, key = make_key(store, ["substrates:read"])
    auth = KeyAuthenticator(store, store.key_secret)
    handle = authenticate([auth])(_ok)
    headers = [(b"x-api-key", key.encode())]
    for _ in range(2):  # verified, then taken from what the authenticator remembered
        call = _call(headers)
        assert asyncio.run(handle(call)).status == 200
        assert call.principal == key_id
    assert key in auth.remembered
    # A remembered key still needs the operation's scope.
    assert asyncio.run(handle(_call(headers, op="create_substrate"))).status == 403
    assert store.revoke_key(key_id, now_us())
    assert asyncio.run(handle(_call(headers))).status == 401
    assert key not in auth.remembered
