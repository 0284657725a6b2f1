"""The local :class:`~bfx.services.interfaces.ChangeService`: the change feed."""

from __future__ import annotations

from bfx.api import types as s
from bfx.domain.changes import ChangeFeed
from bfx.services import records

__all__ = ["LocalChanges"]

_DEFAULT = s.ChangesQuery()


class LocalChanges:
    def __init__(self, feed: ChangeFeed) -> None:
        self.feed = feed

    def read(self, query: s.ChangesQuery | None = None) -> s.ChangePage:
        query = query or _DEFAULT
        return records.change_page(self.feed.read(query.since, query.limit))
