"""The HTTP layer itself: routing, errors, bodies, CORS, lifespan, docs, health, metrics."""

from __future__ import annotations

from datetime import datetime

import msgspec
import pytest

import bfx
from asgi_driver import Driver, finish, started
from bfx import errors
from bfx.api.operations import Operation
from bfx.asgi import App, Settings
from bfx.asgi.errors import MethodNotAllowedError, RouteNotFoundError
from bfx.asgi.router import Route, Router
from bfx.settings import parse_size, split_origins

API = "/api/v1"
LAMBDA = {"expression_type": "lambda", "expression_code": "lambda x, y=2: x * y"}


@pytest.fixture
def api():
    driver = started()
    yield driver
    finish(driver)


def assert_error(res, status: int, code: str) -> dict:
    assert res.status == status, res
    body = res.json()
    assert set(body) == {"error", "message", "details"}, body
    assert body["error"] == code
    assert isinstance(body["message"], str)
    assert body["message"]
    assert isinstance(body["details"], dict)
    assert res.headers["content-type"] == "application/json"
    return body


# --- router -----------------------------------------------------------------------------


def _h(req):
    return None


def _route(method, path):
    return Route(Operation(f"{method} {path}", method, path, "", "", None), _h)


def test_router_prefers_fixed_segments_and_answers_405_for_fixed_paths():
    router = Router(
        [
            _route("GET", "/s/{id}"),
            _route("POST", "/s/batch"),
            _route("POST", "/s/batch/invoke"),
            _route("POST", "/s/{id}/invoke"),
        ]
    )
    route, values = router.match("GET", "/s/abc")
    assert (route.path, values) == ("/s/{id}", (0xABC,))  # ids parsed (hex)
    assert router.match("POST", "/s/batch")[0].path == "/s/batch"
    assert router.match("POST", "/s/batch/invoke")[0].path == "/s/batch/invoke"
    assert router.match("POST", "/s/ab/invoke")[1] == (0xAB,)
    with pytest.raises(MethodNotAllowedError) as info:
        router.match("GET", "/s/batch")
    assert info.value.allow == ("OPTIONS", "POST")
    with pytest.raises(RouteNotFoundError):
        router.match("GET", "/s/abc/nothing")
    with pytest.raises(RouteNotFoundError):
        router.match("GET", "/s/")
    # HEAD is served by the GET route.
    assert router.match("HEAD", "/s/1")[0].method == "GET"


def test_router_remembers_recent_matches_within_a_bound():
    from bfx.asgi import router as router_module

    router = Router([_route("GET", "/s/{id}")])
    for n in range(router_module._RECENT + 10):
        assert router.match("GET", f"/s/{n}")[1] == (int(str(n), 16),)
        assert len(router._recent) <= router_module._RECENT
    assert router.match("GET", "/s/7")[1] == (7,)
    with pytest.raises(errors.UrlIdError):  # a malformed id is refused, never remembered
        router.match("GET", "/s/nothex")
    assert "/s/nothex" not in router._recent
    with pytest.raises(RouteNotFoundError):
        router.match("GET", "/nothing/here")
    assert "/nothing/here" not in router._recent


def test_router_rejects_duplicate_routes():
    with pytest.raises(ValueError, match="duplicate"):
        Router([_route("GET", "/a"), _route("GET", "/a")])


# --- routing errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/api/v1",
        "/api/v1/nothing",
        "/api/v2/health",
        "/api/v1/health/",
        "/api/v1/substrates/0x1/nothing",
    ],
)
def test_unknown_routes_are_404(api, path):
    body = assert_error(api.get(path), 404, "not_found")
    assert body["details"]["path"] == path


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/api/v1/health", "GET, HEAD, OPTIONS"),
        ("GET", "/api/v1/substrates/batch", "OPTIONS, POST"),
        ("GET", "/api/v1/substrates/batch/invoke", "OPTIONS, POST"),
        ("GET", "/api/v1/substrates/multiply", "OPTIONS, POST"),
        ("PUT", "/api/v1/substrates/0x1", "DELETE, GET, HEAD, OPTIONS, PATCH"),
        ("GET", "/api/v1/substrates/0x1/invoke", "OPTIONS, POST"),
        ("POST", "/api/v1/relationships/stats", "GET, HEAD, OPTIONS"),
        ("PATCH", "/api/v1/relationships", "GET, HEAD, OPTIONS, POST"),
        ("POST", "/api/v1/substrates/export", "GET, HEAD, OPTIONS"),
        ("GET", "/api/v1/substrates/import", "OPTIONS, POST"),
    ],
)
def test_wrong_method_is_405_with_allow(api, method, path, allow):
    res = api.request(method, path)
    body = assert_error(res, 405, "method_not_allowed")
    assert res.headers["allow"] == allow
    assert body["details"]["allow"] == allow.split(", ")


def test_options_lists_the_methods(api):
    res = api.request("OPTIONS", f"{API}/substrates/0xAB")
    assert res.status == 204
    assert res.headers["allow"] == "DELETE, GET, HEAD, OPTIONS, PATCH"
    assert not any(k.startswith("access-control") for k in res.headers)
    assert_error(api.request("OPTIONS", f"{API}/nowhere"), 404, "not_found")


def test_head_has_headers_and_no_body(api):
    res = api.request("HEAD", f"{API}/health")
    assert res.status == 200
    assert res.body == b""
    assert int(res.headers["content-length"]) > 0


@pytest.mark.parametrize(
    "bad",
    ["xyz", "0x", "0x0x1", "11111111111111111", "-1", "+1", "1_0", "%20", "0xG", "\uff11\uff12"],
)
@pytest.mark.parametrize(
    ("method", "template"),
    [
        ("GET", "/api/v1/substrates/{}"),
        ("DELETE", "/api/v1/substrates/{}"),
        ("POST", "/api/v1/substrates/{}/invoke"),
        ("POST", "/api/v1/substrates/{}/divide"),
        ("GET", "/api/v1/relationships/{}"),
        ("GET", "/api/v1/relationships/outgoing/{}"),
        ("GET", "/api/v1/relationships/incoming/{}"),
    ],
)
def test_malformed_path_ids_are_400(api, method, template, bad):
    from urllib.parse import unquote

    res = api.request(method, template.format(unquote(bad)), json={})
    body = assert_error(res, 400, "invalid_id")
    assert body["details"]["value"] == unquote(bad)


@pytest.mark.parametrize("good", ["0x00000000000000FF", "ff", "0XfF", "FF", "00ff"])
def test_path_ids_accept_any_case_and_prefix(api, good):
    assert_error(api.get(f"{API}/substrates/{good}"), 404, "not_found")


# --- bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", [b"{", b"{'a': 1}", b"nope", b"{}}", b"\xff\xfe", b"[1,]", b'{"expression_type": NaN}']
)
def test_malformed_json_is_400(api, raw):
    res = api.post(f"{API}/substrates", body=raw, content_type="application/json")
    assert_error(res, 400, "malformed_json")


@pytest.mark.parametrize(
    "ctype",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
    ],
)
def test_non_json_content_type_is_415(api, ctype):
    res = api.post(f"{API}/substrates", body=b'{"a": 1}', content_type=ctype)
    body = assert_error(res, 415, "unsupported_media_type")
    assert body["details"]["content_type"] == ctype.split(";")[0]


@pytest.mark.parametrize(
    "ctype",
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "application/vnd.bfx+json",
    ],
)
def test_json_and_missing_content_types_are_read_as_json(api, ctype):
    res = api.post(f"{API}/substrates", json=LAMBDA, content_type=ctype)
    assert res.status == 201, res


def test_body_over_limit_is_413_by_content_length_before_reading():
    driver = started(body_limit=64)
    try:
        payload = {**LAMBDA, "metadata": {"pad": "x" * 100}}
        body = assert_error(driver.post(f"{API}/substrates", json=payload), 413, "body_too_large")
        assert body["details"]["limit"] == 64
        # A lying Content-Length is caught while reading.
        raw = msgspec.json.encode(payload)
        res = driver.request(
            "POST",
            f"{API}/substrates",
            body=raw,
            headers=[("content-length", "10")],
            content_type="application/json",
        )
        assert_error(res, 413, "body_too_large")
        # A streamed body without Content-Length is counted as it arrives.
        res = driver.request(
            "POST",
            f"{API}/substrates",
            chunks=[raw[:40], raw[40:]],
            content_type="application/json",
        )
        assert_error(res, 413, "body_too_large")
        # At the limit is fine.
        small = msgspec.json.encode({"expression_type": "constant", "expression_code": "1"})
        assert len(small) <= 64
        assert driver.post(f"{API}/substrates", body=small).status == 201
    finally:
        finish(driver)


def test_default_body_limit_is_one_mebibyte(api):
    big = {**LAMBDA, "metadata": {"pad": "x" * (1024 * 1024)}}
    assert_error(api.post(f"{API}/substrates", json=big), 413, "body_too_large")


def test_streamed_body_within_limit_is_assembled(api):
    raw = msgspec.json.encode(LAMBDA)
    res = api.request("POST", f"{API}/substrates", chunks=[raw[:5], raw[5:20], raw[20:]])
    assert res.status == 201, res


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"expression_code": "1"}, "expression_type"),
        ({"expression_type": "constant"}, "expression_code"),
        ({"expression_type": "constant", "expression_code": 1}, "expression_code"),
        ({"expression_type": "nope", "expression_code": "1"}, "expression_type"),
        ({"expression_type": "constant", "expression_code": "1", "metadata": []}, "metadata"),
        ({"expression_type": "constant", "expression_code": "1", "colour": "red"}, "colour"),
    ],
)
def test_validation_errors_are_422_naming_the_field(api, payload, field):
    body = assert_error(api.post(f"{API}/substrates", json=payload), 422, "validation_error")
    assert body["details"]["field"] == field
    assert field in body["message"]


def test_validation_error_paths_reach_into_lists(api):
    payload = {"substrates": [LAMBDA, {"expression_type": "lambda", "expression_code": 5}]}
    body = assert_error(api.post(f"{API}/substrates/batch", json=payload), 422, "validation_error")
    assert body["details"]["field"] == "substrates[1].expression_code"


def test_a_json_body_must_be_an_object(api):
    body = assert_error(api.post(f"{API}/substrates", json=[1, 2]), 422, "validation_error")
    assert "object" in body["message"]


def test_query_parameters_are_validated(api):
    body = assert_error(
        api.get(f"{API}/substrates", query={"limit": "many"}), 422, "validation_error"
    )
    assert body["details"]["location"] == "query"
    assert body["details"]["field"] == "limit"
    assert_error(api.get(f"{API}/substrates", query={"limit": 0}), 422, "validation_error")
    assert_error(api.get(f"{API}/substrates", query={"limit": 1001}), 422, "validation_error")
    assert_error(api.get(f"{API}/substrates", query={"cursor": "zz"}), 400, "invalid_id")
    # Unknown query parameters are ignored (cache busters and the like).
    assert api.get(f"{API}/substrates", query={"_": "123"}).status == 200


# --- health, metrics, docs ----------------------------------------------------------------


def test_health(api):
    res = api.get(f"{API}/health")
    assert res.status == 200
    body = res.json()
    assert body["status"] == "healthy"
    assert body["version"] == bfx.__version__
    assert body["timestamp"].endswith("Z")
    assert datetime.fromisoformat(body["timestamp"]).utcoffset().total_seconds() == 0


def test_metrics_count_requests_errors_and_invocations(api):
    sid = api.post(f"{API}/substrates", json=LAMBDA).json()["substrate_id"]
    for x in range(3):
        assert (
            api.post(f"{API}/substrates/{sid}/invoke", json={"parameters": {"x": x}}).status == 200
        )
    assert api.post(f"{API}/substrates/{sid}/invoke", json={}).status == 422
    assert api.get(f"{API}/nowhere").status == 404
    m = api.get(f"{API}/metrics").json()
    for key in ("total_substrates", "total_relationships", "uptime_seconds", "version"):
        assert key in m
    assert m["total_substrates"] == 1
    assert m["version"] == bfx.__version__
    assert m["total_requests"] == 6  # the /metrics request itself is not yet counted
    assert m["errors_by_status_class"] == {"4xx": 2, "5xx": 0}
    assert m["total_errors"] == 2
    assert m["error_rate"] == pytest.approx(2 / 6, abs=1e-5)
    assert m["responses_by_status"] == {"200": 3, "201": 1, "404": 1, "422": 1}
    assert m["total_invocations"] == 3
    assert m["failed_invocations"] == 1
    assert m["total_creations"] == 1
    assert m["most_invoked_substrates"] == [{"substrate_id": sid, "invocations": 3}]
    assert m["avg_response_time_ms"] > 0
    assert m["p50_response_time_ms"] <= m["p95_response_time_ms"] <= m["p99_response_time_ms"]
    assert m["memory_usage_mb"] > 1
    assert m["cpu_usage_percent"] >= 0
    assert m["requests_per_second"] > 0


def test_openapi_lists_every_route_with_schemas(api):
    res = api.get(f"{API}/openapi.json")
    assert res.status == 200
    spec = res.json()
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["version"] == bfx.__version__
    app: App = api.app
    for route in app.router.routes:
        op = spec["paths"][route.path][route.method.lower()]
        assert op["responses"], route.path
    schemas = spec["components"]["schemas"]
    for name in (
        "CreateSubstrate",
        "SubstrateRecord",
        "ErrorBody",
        "InvokeResponse",
        "RelationshipRecord",
        "BatchResult",
        "Metrics",
    ):
        assert name in schemas
    create = spec["paths"]["/api/v1/substrates"]["post"]
    assert create["requestBody"]["required"] is True
    assert "201" in create["responses"]
    assert "409" in create["responses"]
    invoke = spec["paths"]["/api/v1/substrates/{id}/invoke"]["post"]
    assert invoke["requestBody"]["required"] is False
    assert invoke["parameters"][0]["in"] == "path"
    params = {p["name"] for p in spec["paths"]["/api/v1/substrates"]["get"]["parameters"]}
    assert params == {"limit", "cursor"}
    # Every $ref resolves.
    text = res.body.decode()
    for ref in set(part.split('"')[0] for part in text.split('"$ref":"')[1:]):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


@pytest.mark.parametrize(
    ("page", "needle"), [("docs", b"swagger-ui-bundle.js"), ("redoc", b"redoc.standalone.js")]
)
def test_docs_pages_load_only_local_files(api, page, needle):
    res = api.get(f"{API}/{page}")
    assert res.status == 200
    assert res.headers["content-type"].startswith("text/html")
    assert needle in res.body
    assert b"http://" not in res.body
    assert b"https://" not in res.body
    for src in [p.split(b'"')[0] for p in res.body.split(b'src="')[1:]] + [
        p.split(b'"')[0] for p in res.body.split(b'href="')[1:]
    ]:
        asset = api.get(f"{API}/{src.decode()}")
        assert asset.status == 200, src
        assert len(asset.body) > 100
    init = api.get(f"{API}/static/swagger-init.js")
    assert b"validatorUrl: null" in init.body


def test_static_files_are_a_fixed_list(api):
    assert api.get(f"{API}/static/swagger-ui.css").headers["content-type"].startswith("text/css")
    assert_error(api.get(f"{API}/static/LICENSE.redoc"), 404, "not_found")
    assert_error(api.get(f"{API}/static/..%2Fapp.py"), 404, "not_found")


# --- CORS --------------------------------------------------------------------------------


def test_no_cors_headers_unless_configured(api):
    res = api.get(f"{API}/health", headers=[("origin", "http://evil.example")])
    assert res.status == 200
    assert not any(k.startswith("access-control") for k in res.headers)
    pre = api.request(
        "OPTIONS",
        f"{API}/substrates",
        headers=[("origin", "http://evil.example"), ("access-control-request-method", "POST")],
    )
    assert pre.status == 204
    assert not any(k.startswith("access-control") for k in pre.headers)


def test_cors_for_configured_origins():
    driver = started(cors_origins=("http://app.example",))
    try:
        ok = driver.get(f"{API}/health", headers=[("origin", "http://app.example")])
        assert ok.headers["access-control-allow-origin"] == "http://app.example"
        assert ok.headers["vary"] == "origin"
        other = driver.get(f"{API}/health", headers=[("origin", "http://evil.example")])
        assert "access-control-allow-origin" not in other.headers
        # Errors carry the header too, so the browser can read them.
        err = driver.get(f"{API}/nowhere", headers=[("origin", "http://app.example")])
        assert err.headers["access-control-allow-origin"] == "http://app.example"
        pre = driver.request(
            "OPTIONS",
            f"{API}/substrates",
            headers=[
                ("origin", "http://app.example"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "content-type"),
            ],
        )
        assert pre.status == 204
        assert pre.headers["access-control-allow-origin"] == "http://app.example"
        assert "POST" in pre.headers["access-control-allow-methods"]
        assert pre.headers["access-control-allow-headers"] == "content-type"
        wrong = driver.request(
            "OPTIONS",
            f"{API}/substrates",
            headers=[("origin", "http://app.example"), ("access-control-request-method", "DELETE")],
        )
        assert "access-control-allow-origin" not in wrong.headers
    finally:
        finish(driver)


def test_cors_wildcard():
    driver = started(cors_origins=("*",))
    try:
        res = driver.get(f"{API}/health", headers=[("origin", "http://any.example")])
        assert res.headers["access-control-allow-origin"] == "*"
        assert "vary" not in res.headers
    finally:
        finish(driver)


# --- lifespan and settings ---------------------------------------------------------------


class _Spy(bfx.Registry):
    """An in-memory registry that says whether it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def close(self):
        super().close()
        self.closed = True


def test_lifespan_creates_and_closes_the_registry():
    made: list[_Spy] = []

    def factory(settings):
        made.append(_Spy())
        return made[-1]

    app = App(Settings(), registry_factory=factory)
    driver = Driver(app)
    try:
        assert driver.startup() == {"type": "lifespan.startup.complete"}
        assert app.registry is made[0]
        assert driver.shutdown() == {"type": "lifespan.shutdown.complete"}
        assert made[0].closed
        assert app.registry is None
    finally:
        driver.close()


def test_lifespan_reports_a_failed_startup():
    def factory(settings):
        raise RuntimeError("disk on fire")

    driver = Driver(App(Settings(), registry_factory=factory))
    try:
        msg = driver.startup()
        assert msg["type"] == "lifespan.startup.failed"
        assert "disk on fire" in msg["message"]
    finally:
        driver.close()


def test_without_lifespan_the_registry_is_made_on_first_request():
    driver = Driver(App(Settings()))
    try:
        assert driver.get(f"{API}/metrics").status == 200
    finally:
        driver.close()


def test_a_bug_is_a_500_without_internals(caplog):
    class Broken(bfx.Registry):
        def stats(self):
            raise KeyError("secret internals")

    driver = Driver(App(Settings(), registry_factory=lambda s: Broken()))
    try:
        driver.startup()
        body = assert_error(driver.get(f"{API}/metrics"), 500, "internal_error")
        assert "secret" not in body["message"]
        assert "unhandled error" in caplog.text
    finally:
        driver.close()


def test_settings_from_env():
    s = Settings.from_env(
        {
            "BFX_BODY_LIMIT": "2M",
            "BFX_CORS_ORIGINS": "http://a, http://b/",
            "BFX_DATA_DIR": "/tmp/x",
            "BFX_LOG_LEVEL": "DEBUG",
            "BFX_IMPORT_BODY_LIMIT": "512k",
        }
    )
    assert s.body_limit == 2 * 1024 * 1024
    assert s.import_body_limit == 512 * 1024
    assert s.cors_origins == ("http://a", "http://b")
    assert s.storage == "/tmp/x"
    assert s.log_level == "debug"
    assert Settings.from_env(s.to_env()) == s
    # The service's default is the embedded store in ./bfx-data, not memory.
    assert Settings.from_env({}) == Settings(storage="bfx-data")
    both = {"BFX_DATA_DIR": "/tmp/x", "BFX_DATABASE_URL": "postgresql://h/db"}
    assert Settings.from_env(both).storage == "postgresql://h/db"
    assert Settings.from_env({**both, "BFX_STORAGE": "memory"}).storage == "memory"
    assert Settings.from_env({"BFX_SQLITE_SYNC": "FULL"}).sqlite_synchronous == "full"


@pytest.mark.parametrize(
    ("text", "size"),
    [("10", 10), ("1K", 1024), ("1 MiB", 1 << 20), ("3mb", 3 << 20), ("1G", 1 << 30)],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "-1", "0", "1.5M", "ten", "1T"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def test_split_origins():
    assert split_origins("*") == ("*",)
    assert split_origins("http://a http://b,https://c/") == ("http://a", "http://b", "https://c")


def test_websocket_is_refused_where_no_route_speaks_it(api):
    sent: list[dict] = []

    async def receive():
        return {"type": "websocket.connect"}

    async def send(msg):
        sent.append(msg)

    # A server without the websocket.http.response extension: a bare close (HTTP 403).
    api.loop.run_until_complete(api.app({"type": "websocket", "path": "/"}, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1008}]
    # With it: the error answer itself, as the handshake's HTTP answer.
    sent.clear()
    scope = {"type": "websocket", "path": "/nowhere", "headers": [(b"upgrade", b"websocket")],
             "extensions": {"websocket.http.response": {}}}  # fmt: skip
    api.loop.run_until_complete(api.app(scope, receive, send))
    assert sent[0]["type"] == "websocket.http.response.start"
    assert sent[0]["status"] == 404
    assert msgspec.json.decode(sent[1]["body"])["error"] == "not_found"
