"""``--no-metrics`` (docs/observability.md "Switching metrics off"): the metrics
middleware is left out of the pipeline, the request counters stay at zero, and the
metrics routes still answer."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from asgi_driver import finish, started
from bfx.asgi.metrics import RequestMetrics
from bfx.asgi.middleware import assemble
from bfx.asgi.middleware.body_deadline import BodyDeadlines
from bfx.asgi.middleware.metrics import metrics
from bfx.asgi.router import Router
from bfx.settings import Settings

LAMBDA = {"expression_type": "lambda", "expression_code": "lambda x: x * 2"}


def _chain(settings: Settings) -> list:
    class Store:
        durable = False

    return assemble(
        settings,
        router=Router([]),
        store=Store(),
        counters=RequestMetrics(),
        deadlines=BodyDeadlines(10.0),
    )


def test_the_metrics_middleware_is_assembled_only_when_on() -> None:
    assert any(isinstance(m, metrics) for m in _chain(Settings()))
    assert not any(isinstance(m, metrics) for m in _chain(Settings(metrics=False)))


@pytest.mark.parametrize(("value", "on"), [("0", False), ("false", False), ("1", True)])
def test_bfx_metrics_sets_it(value: str, on: bool) -> None:
    assert Settings.from_env({"BFX_METRICS": value}).metrics is on
    assert Settings(metrics=on).to_env()["BFX_METRICS"] == ("1" if on else "0")


def test_bfx_metrics_refuses_what_is_not_a_switch() -> None:
    with pytest.raises(ValueError, match="BFX_METRICS"):
        Settings.from_env({"BFX_METRICS": "sometimes"})


def test_with_metrics_off_requests_are_served_and_not_counted(monkeypatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    for on in (True, False):
        d = started(storage="memory", access_log=False, metrics=on)
        try:
            sid = d.post("/api/v1/substrates", json=LAMBDA).json()["substrate_id"]
            for _ in range(3):
                assert d.get(f"/api/v1/substrates/{sid}").status == 200
            answer = d.post(f"/api/v1/substrates/{sid}/invoke", json={"parameters": {"x": 4}})
            assert answer.json()["result"] == 8
            figures = d.get("/api/v1/metrics")
            assert figures.status == 200
            body = figures.json()
            # The metrics request itself is counted after its answer is built.
            assert body["total_requests"] == (5 if on else 0)
            assert body["total_invocations"] == (1 if on else 0)
            assert body["total_substrates"] == 1  # the registry's, counted either way
            text = d.get("/metrics").body.decode()
            families = {f.name: f for f in text_string_to_metric_families(text)}
            requests = families.get("bfx_http_requests")  # no series until one is counted
            counted = sum(
                s.value for s in (requests.samples if requests else ()) if s.name.endswith("_total")
            )
            assert counted == (6 if on else 0)
        finally:
            finish(d)
