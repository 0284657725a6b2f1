"""The service interface of bfx, split by noun, and its local implementation.

``bfx.services.interfaces`` holds the Protocols (what handlers and clients depend on);
:func:`local_services` composes them over a :class:`~bfx.Registry` in process.
"""

from __future__ import annotations

from bfx.services.interfaces import (
    AWAITED_METHODS,
    ENCODED_METHODS,
    LIVE_METHODS,
    OPERATION_METHODS,
    AliasService,
    AuthService,
    ChangeService,
    GraphService,
    KeyService,
    LensService,
    OperatorService,
    RelationshipService,
    Services,
    SubstrateService,
    SystemService,
    TransferService,
    VersionService,
)
from bfx.services.local import local_services

__all__ = [
    "AWAITED_METHODS",
    "ENCODED_METHODS",
    "LIVE_METHODS",
    "OPERATION_METHODS",
    "AliasService",
    "AuthService",
    "ChangeService",
    "GraphService",
    "KeyService",
    "LensService",
    "OperatorService",
    "RelationshipService",
    "Services",
    "SubstrateService",
    "SystemService",
    "TransferService",
    "VersionService",
    "local_services",
]
