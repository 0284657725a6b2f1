"""Tracing with OpenTelemetry (the ``bfx[otel]`` extra): a worker's tracer and the
child spans of the work a request does (docs/observability.md "Tracing").

Tracing is on in a worker when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set and the extra is installed: :func:`setup`,
called by each worker's start-up (after fork or spawn: a ``TracerProvider`` and its
exporting thread do not survive a fork), builds a provider exporting over OTLP/HTTP
through a ``BatchSpanProcessor``; :func:`shutdown` flushes it when the worker stops.
Everything else the standard ``OTEL_*`` variables say (headers, timeout, sampler,
batch sizes, resource attributes, service name) is the SDK's to read.

:func:`span` is what the domain code calls around sandbox compile and evaluation, store
writes and graph algorithms. With tracing off it answers one shared object whose
``with`` does nothing (no allocation, no OpenTelemetry import); the hot paths (invoke, a
single create) do not even call it then: they test :data:`tracer` first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

__all__ = [
    "COMPILE",
    "EVALUATE",
    "STORE_WRITE",
    "configured",
    "endpoint",
    "install",
    "missing_extra",
    "setup",
    "shutdown",
    "span",
    "tracer",
]

log = logging.getLogger("bfx.tracing")

#: Child span names (the request span is named by its route: ``GET /api/v1/...``).
COMPILE = "bfx.sandbox.compile"
EVALUATE = "bfx.sandbox.evaluate"
STORE_WRITE = "bfx.store.write"
#: A shutting-down worker waits at most this long for its last spans to be sent.
FLUSH_MILLIS = 5000


class _Off:
    """The span of tracing switched off: ``with`` it does nothing, ``as`` gives None."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_OFF = _Off()
#: The worker's tracer (an ``opentelemetry.trace.Tracer``), or None: tracing off. The
#: hottest paths (an invocation, a single create) test it before reaching for
#: :func:`span`: one attribute read, where even the no-op ``with`` costs two calls.
tracer: Any = None
_provider: Any = None


def span(name: str) -> Any:
    """A child span of the current one, named ``name``, as a context manager whose
    ``as`` target is the span (to add attributes) — or None when tracing is off. An
    exception leaving it is recorded on the span with an error status."""
    current = tracer
    if current is None:
        return _OFF
    return current.start_as_current_span(name)


def install(new: Any) -> None:
    """Makes ``new`` (a tracer; None: tracing off) the one :func:`span` uses in this
    process."""
    global tracer
    tracer = new


def endpoint(environ: Mapping[str, str] | None = None) -> str:
    """Where spans go, per the standard variables ('' when tracing is not asked for)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ""
    traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        return traces
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return base.rstrip("/") + "/v1/traces" if base else ""


def missing_extra() -> str | None:
    """Why the ``otel`` extra cannot be used (its message), or None when it can."""
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError as exc:
        return f"{exc} (install it with: pip install 'bfx[otel]')"
    return None


def configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether a worker started with this environment traces."""
    return bool(endpoint(environ)) and missing_extra() is None


def setup() -> Any:
    """This worker's tracer, exporting over OTLP/HTTP, or None when tracing is not
    configured (no endpoint) or cannot be (the extra missing: logged, not raised).
    Also installs it for :func:`span`."""
    global _provider
    if not endpoint():
        return None
    problem = missing_extra()
    if problem is not None:
        log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but tracing is off: %s", problem)
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # service.name is bfx unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES name it.
    named = "service.name" in OTELResourceDetector().detect().attributes
    resource = Resource.create({} if named else {"service.name": "bfx"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    shutdown()  # a provider left by an earlier start-up of this process
    _provider = provider
    made = provider.get_tracer("bfx")
    install(made)
    return made


def shutdown() -> None:
    """Sends the spans still queued (at most :data:`FLUSH_MILLIS`) and stops exporting."""
    global _provider
    provider, _provider = _provider, None
    install(None)
    if provider is not None:
        provider.force_flush(FLUSH_MILLIS)
        provider.shutdown()
