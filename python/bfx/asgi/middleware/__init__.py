"""The cross-cutting concerns of the request pipeline, one file each, in the order a
request meets them (outermost first). :func:`assemble` lists them for an app's settings;
a concern that is switched off is left out rather than run as a no-op (authentication
with ``--auth off``, tracing without ``OTEL_EXPORTER_OTLP_ENDPOINT``, the request
counters with ``--no-metrics``).

Adding a concern: an ``Around``, a ``Before`` or a ``wrap(next_) -> handle`` factory
(``bfx.asgi.pipeline``) in its own file here, one line in :func:`assemble`. No handler
changes.
"""

from __future__ import annotations

from typing import Any

from bfx.asgi.metrics import RequestMetrics
from bfx.asgi.middleware.access_log import AccessLog, access_log, open_access_log
from bfx.asgi.middleware.auth import authenticate
from bfx.asgi.middleware.body import body
from bfx.asgi.middleware.body_deadline import BodyDeadlines
from bfx.asgi.middleware.cors import Cors, cors
from bfx.asgi.middleware.errors import errors
from bfx.asgi.middleware.freshness import freshness
from bfx.asgi.middleware.metrics import metrics
from bfx.asgi.middleware.rate_limit import rate_limit
from bfx.asgi.middleware.routing import routing
from bfx.asgi.pipeline import Middleware
from bfx.asgi.router import Router
from bfx.ratelimit import Limiter
from bfx.security.auth import Authenticator, KeyAuthenticator
from bfx.security.tokens import JwtAuthenticator, external_issuer
from bfx.settings import Settings

__all__ = ["assemble"]


def key_authenticators(store: Any) -> list[KeyAuthenticator]:
    """The authenticators of ``--auth required``: API keys in the store's key map."""
    return [KeyAuthenticator(store, store.key_secret)]


def authenticators(settings: Settings, store: Any) -> list[Authenticator]:
    """API keys, then JWTs: bfx's own (checked against the store's users) and an
    external issuer's when one is configured (docs/security.md)."""
    external = external_issuer(
        settings.jwt_public_key, settings.jwt_jwks, settings.jwt_issuer, settings.jwt_audience
    )
    secret = settings.jwt_secret.encode() or store.jwt_secret
    return [*key_authenticators(store), JwtAuthenticator(secret, lambda: store.users, external)]


def assemble(
    settings: Settings,
    *,
    router: Router,
    store: Any,
    counters: RequestMetrics,
    deadlines: BodyDeadlines,
    tracer: Any = None,
    log: AccessLog | None = None,
) -> list[Middleware]:
    """``tracer``: the worker's OpenTelemetry tracer when tracing is on (``bfx.tracing``);
    ``log``: the access log to write to when the settings have it on (None: one is made
    here)."""
    chain: list[Middleware] = []
    if tracer is not None:  # outermost: the request span covers everything below
        from bfx.asgi.middleware.tracing import tracing  # the otel extra: only when on

        chain.append(tracing(tracer))
    if not settings.access_log:
        log = None
    elif log is None:
        log = open_access_log(settings)
    if settings.metrics:  # with the log: one middleware, one call per request for both
        chain.append(metrics(counters, log))
    elif log is not None:
        chain.append(access_log(log))
    policy = Cors(settings.cors_origins)
    if policy.enabled:
        chain.append(cors(policy))
    chain += [errors(), routing(router)]
    if store.durable:  # only a durable store has other writers to catch up with
        chain.append(freshness(store, creates_too=settings.auth == "required"))
    if settings.auth == "required":  # before the body: an anonymous body is never read
        chain.append(authenticate(authenticators(settings, store), counters))
    chain.append(body(settings, deadlines))
    if settings.rate_limit:  # after body: a batch's cost is known (rate_limit.py)
        chain.append(
            rate_limit(Limiter(settings.rate_limit, settings.rate_limit_storage), counters)
        )
    return chain
