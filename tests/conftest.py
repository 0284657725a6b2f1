"""Shared test configuration: hypothesis profiles.

``ci`` (the default) keeps property tests fast; ``slow`` digs deeper:
``HYPOTHESIS_PROFILE=slow pytest``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "slow",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _access_log_written():
    """The access log is written by a thread of the core: a test's last lines are
    waited for before its captured output is read and closed, never left to land in
    the next test's."""
    yield
    from bfx.asgi.middleware.access_log import drain_all

    drain_all(1.0)


# ---- storage backends ------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL server (tests/pg_server.py) for the whole session."""
    import pg_server

    try:
        server = pg_server.start()
    except pg_server.Unavailable as exc:
        if os.environ.get("BFX_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required here (BFX_REQUIRE_POSTGRES=1): {exc}")
        pytest.skip(f"PostgreSQL tests skipped: {exc}")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_locator(request, tmp_path):
    """The locator of a fresh, empty store of each durable backend: the same
    storage suite runs against both."""
    if request.param == "sqlite":
        return str(tmp_path / "data")
    return request.getfixturevalue("postgres").new_database()


# ---- Redis (rate limits) ------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server():
    """A throwaway Redis server (tests/redis_server.py) for the whole session."""
    import redis_server as rs

    try:
        server = rs.start()
    except rs.Unavailable as exc:
        if os.environ.get("BFX_REQUIRE_REDIS") == "1":
            pytest.fail(f"Redis is required here (BFX_REQUIRE_REDIS=1): {exc}")
        pytest.skip(f"Redis tests skipped: {exc}")
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    """The URL of the session's Redis, emptied for this test."""
    with redis_server.client() as client:
        client.flushall()
    return redis_server.url


# ---- Granian interfaces ----------------------------------------------------------


@pytest.fixture(scope="module", params=["rsgi", "asgi"])
def interface(request):
    """Every :class:`bfx_server.Server` started meanwhile serves over this interface:
    the end-to-end suites that use it run once over RSGI (the default) and once over
    ASGI, one pipeline behind both adapters."""
    import bfx_server

    bfx_server.INTERFACE = request.param
    yield request.param
    bfx_server.INTERFACE = None
