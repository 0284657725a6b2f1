"""bfx: a registry of small mathematical expressions ("substrates") with stable
64-bit content identities, a typed relationship graph and arithmetic operators.

    >>> from bfx import Registry
    >>> reg = Registry()
    >>> s = reg.create("lambda", "lambda x, y=2: x * y")
    >>> reg.invoke(s.identity, {"x": 21}).result
    42
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bfx import errors
from bfx._core import __version__

if TYPE_CHECKING:
    from bfx.models import Invocation, Relationship, Substrate
    from bfx.registry import Registry

__all__ = ["Invocation", "Registry", "Relationship", "Substrate", "__version__", "errors"]


def __getattr__(name: str) -> Any:
    # Imported on first use so `import bfx` (and the CLI's start-up) stays
    # cheap and the sandbox is only loaded by code that needs it.
    if name == "Registry":
        from bfx.registry import Registry

        return Registry
    if name in ("Substrate", "Relationship", "Invocation"):
        from bfx import models

        return getattr(models, name)
    raise AttributeError(f"module 'bfx' has no attribute {name!r}")
