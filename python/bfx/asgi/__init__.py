"""The v1 HTTP API: a small msgspec-based ASGI application, served by Granian.

``create_app`` is the factory Granian imports (``bfx.asgi:create_app``); it reads its
settings from ``BFX_*`` environment variables.
"""

from bfx.asgi.app import App, create_app
from bfx.settings import Settings

__all__ = ["App", "Settings", "create_app"]
