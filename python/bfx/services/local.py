"""The local services: the nouns composed over the domain parts (:mod:`bfx.domain`) a
:class:`~bfx.Registry` holds, its graph, and its store's keys."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from bfx.services.auth import LocalAuth
from bfx.services.changes import LocalChanges
from bfx.services.interfaces import Services
from bfx.services.keys import LocalKeys
from bfx.services.relationships import LocalGraph, LocalRelationships
from bfx.services.substrates import LocalOperators, LocalSubstrates
from bfx.services.system import Exposition, LocalSystem
from bfx.services.transfer import LocalTransfer
from bfx.services.versions import LocalAliases, LocalLenses, LocalVersions

if TYPE_CHECKING:
    from bfx.registry import Registry

__all__ = ["local_services"]


def local_services(
    registry: Registry,
    *,
    max_answer_bytes: int | None,
    batch_time_budget: float | None,
    request_metrics: Callable[[], Mapping[str, Any]],
    auth: LocalAuth | None = None,
    exposition: Exposition | None = None,
    metrics_ticks: Callable[[], AsyncIterator[str]] | None = None,
) -> Services:
    """Services over ``registry``, in process.

    What only the server knows comes in here: the bounds of a batch invoke
    (``max_answer_bytes``; ``batch_time_budget`` in seconds; None: unbounded) and
    ``request_metrics``, returning this worker's request counters for ``/metrics``
    (``RequestMetrics.snapshot``); ``auth``, login as the server's settings say (the
    token lifetime and secret, the failed-login limits; defaults otherwise);
    and ``exposition``, the Prometheus text of every
    worker (``Exporter.exposition``; None: ``prometheus`` answers 404); and
    ``metrics_ticks``, the worker's live metrics stream (``bfx.asgi.live``; None: the
    stream routes answer 404).
    """
    return Services(
        substrates=LocalSubstrates(
            registry.substrates,
            max_answer_bytes=max_answer_bytes,
            batch_time_budget=batch_time_budget,
        ),
        operators=LocalOperators(registry.operators),
        relationships=LocalRelationships(registry.relationships_domain, registry.graph),
        graph=LocalGraph(registry.graph, registry.substrates.counts),
        transfer=LocalTransfer(registry.transfer),
        system=LocalSystem(registry, request_metrics, exposition, metrics_ticks),
        keys=LocalKeys(lambda: registry.store),
        auth=auth or LocalAuth(lambda: registry.store),
        versions=LocalVersions(registry.versions_domain),
        aliases=LocalAliases(registry.aliases_domain),
        lenses=LocalLenses(registry.lenses_domain),
        changes=LocalChanges(registry.changes),
    )
