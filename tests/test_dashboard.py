"""The dashboard (/api/v1/dashboard) in a real headless browser (Debian's ``chromium``,
driven over the DevTools protocol: tests/cdp.py) against a real ``bfx serve``: the page
loads without a console error or an exception, its numbers follow the traffic sent, it
asks for a credential when the server requires one, and it fetches nothing from the
network. Without a browser these tests skip (and fail with BFX_REQUIRE_CHROMIUM=1)."""

from __future__ import annotations

import json
import os
import re
from importlib import resources

import pytest

import cdp
from bfx_server import Server
from test_e2e_auth import keys_cli

API = "/api/v1"
CHANGES = f"{API}/changes"


@pytest.fixture(scope="module")
def browser():
    if cdp.find() is None:
        reason = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("BFX_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"Chromium is required here (BFX_REQUIRE_CHROMIUM=1): {reason}")
        pytest.skip(f"dashboard browser tests skipped: {reason}")
    chromium = cdp.Chromium.start()
    assert chromium is not None
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dashboard")
    server = Server(tmp, "--data-dir", str(tmp / "data"), "--workers", "2")
    yield server
    server.stop()


def problems(browser, server):
    """What the page logged as errors (exceptions, console errors, failed requests)."""
    return list(browser.problems())


def number(text: str) -> float:
    return float(text.replace(",", "").rstrip("%"))


def open_page(browser, server):
    browser.events.clear()
    browser.navigate(f"http://127.0.0.1:{server.port}{API}/dashboard")
    browser.wait_for("document.getElementById('status')?.textContent === 'live'")


def test_the_page_loads_without_errors_and_its_numbers_follow_the_traffic(browser, served):
    open_page(browser, served)
    before = number(browser.wait_for("document.getElementById('total-requests').textContent"))
    # No credential asked for: the form is not shown (not only marked hidden).
    assert browser.evaluate("getComputedStyle(document.getElementById('key-form')).display") == (
        "none"
    )
    # Both workers' counters, once the second has written its first (a second at most).
    browser.wait_for("document.getElementById('workers').textContent === '2'")
    assert browser.text("substrates") == "0"
    # Traffic: substrates created, one invoked, a few 404s.
    made = []
    for n in range(5):
        status, body = served.json(
            "POST", f"{API}/substrates", {"expression_type": "constant", "expression_code": str(n)}
        )
        assert status == 201
        made.append(body["substrate_id"])
    for _ in range(6):
        assert served.json("POST", f"{API}/substrates/{made[0]}/invoke", {})[0] == 200
    for _ in range(4):
        assert served.call("GET", f"{API}/substrates/0x7")[0] == 404
    # The page shows them within a few ticks.
    browser.wait_for("document.getElementById('substrates').textContent === '5'")
    browser.wait_for(
        f"Number(document.getElementById('total-requests').textContent.replace(/,/g, ''))"
        f" >= {before + 15}"
    )
    browser.wait_for(
        f"document.getElementById('top-invoked').textContent.includes({json.dumps(made[0])})"
    )
    assert number(browser.text("invocations")) >= 6
    assert number(browser.text("error-rate")) > 0
    for tile in ("p50", "p95", "p99", "rate"):
        assert re.fullmatch(r"[0-9][0-9,.]*", browser.text(tile)), tile
    assert problems(browser, served) == []


def test_recent_changes_appear_as_substrates_are_created(browser, served):
    open_page(browser, served)
    browser.wait_for("document.getElementById('changes-status').textContent.includes('live')")
    status, body = served.json(
        "POST", f"{API}/substrates", {"expression_type": "constant", "expression_code": "4242"}
    )
    assert status == 201
    browser.wait_for(
        f"document.getElementById('changes').textContent.includes({json.dumps(body['substrate_id'])})"
        " || document.getElementById('changes').textContent.includes('substrate created')"
    )
    rows = browser.evaluate("[...document.querySelectorAll('#changes tr')].map(r => r.textContent)")
    assert any("substrate created" in row for row in rows), rows
    assert problems(browser, served) == []


def test_with_auth_required_the_page_asks_for_a_key_and_then_goes_live(browser, tmp_path):
    data = tmp_path / "data"
    made = json.loads(
        keys_cli(data, "create", "--name", "dash", "--scopes", "metrics:read", "--json")
    )
    server = Server(tmp_path, "--data-dir", str(data), "--auth", "required")
    try:
        browser.events.clear()
        browser.navigate(f"http://127.0.0.1:{server.port}{API}/dashboard")
        browser.wait_for("getComputedStyle(document.getElementById('key-form')).display !== 'none'")
        assert browser.text("status") == "credential needed"
        browser.evaluate(
            f"document.getElementById('key').value = {json.dumps(made['secret'])};"
            "document.getElementById('key-form').requestSubmit(); 1"
        )
        browser.wait_for("document.getElementById('status').textContent === 'live'")
        assert (
            browser.evaluate("getComputedStyle(document.getElementById('key-form')).display")
            == "none"
        )
        # The stream carried the key as ?access_token= (its scope: metrics:read only).
        assert browser.text("workers") == "1"
        # The probe's 401 before the key was given is the one expected error; the
        # change feed (missing here, or refused to a metrics-only key) the other.
        left = [
            ev
            for ev in browser.problems()
            if not (
                ev["method"] == "Log.entryAdded"
                and ev["params"]["entry"].get("source") == "network"
                and (
                    ev["params"]["entry"].get("url", "").endswith(f"{API}/metrics")
                    or CHANGES in ev["params"]["entry"].get("url", "")
                )
            )
        ]
        assert left == []
    finally:
        browser.evaluate("sessionStorage.clear(); 1")
        server.stop()


def test_the_page_and_its_files_fetch_nothing_from_the_network():
    static = resources.files("bfx.asgi").joinpath("static")
    for name in ("dashboard.html", "dashboard.js", "dashboard.css"):
        text = static.joinpath(name).read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), name
        assert "@import" not in text, name
        assert "@font-face" not in text, name
