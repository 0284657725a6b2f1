"""The v1 API as data, free of I/O: its types (:mod:`bfx.api.types`), its operations
(:mod:`bfx.api.operations`), working examples and the OpenAPI document built from them.

The server, the clients, the CLI and import/export all read this package; it imports
none of them.
"""

from bfx.api.operations import BY_NAME, OPERATIONS, PREFIX, SCOPES, Operation

__all__ = ["BY_NAME", "OPERATIONS", "PREFIX", "SCOPES", "Operation"]
