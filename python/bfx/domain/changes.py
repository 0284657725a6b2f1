"""The change feed: the store's change log as public changes (DESIGN.md §8).

Every write is logged with a sequence number (``bfx.storage.base``); the feed reads the
entries after a cursor (``since``) in sequence order. Only the ops of :data:`OP_NAMES`
are published: API-key and user records (ops 5 and 7) carry no substrate data and would
show admin activity, so they are left out, and their numbers are skipped. ``seq`` is
therefore strictly increasing but not contiguous; what the feed guarantees is that no
published change after ``since`` is ever left out, in every worker and node.
"""

from __future__ import annotations

import msgspec

from bfx import errors
from bfx.rows import ChangeRow
from bfx.storage import Store
from bfx.storage.base import (
    OP_ADD_RELATIONSHIP,
    OP_ADD_SUBSTRATE,
    OP_DELETE_RELATIONSHIP,
    OP_DELETE_SUBSTRATE,
    OP_UPDATE_SUBSTRATE,
)
from bfx.storage.catalog import OP_ALIAS, OP_CHAIN, OP_LENS

__all__ = ["OP_NAMES", "PUBLIC_OPS", "ChangeFeed", "FeedPage"]

#: The published ops and their names in the feed: adding an op to the feed is one line.
OP_NAMES: dict[int, str] = {
    OP_ADD_SUBSTRATE: "substrate_created",
    OP_DELETE_SUBSTRATE: "substrate_deleted",
    OP_UPDATE_SUBSTRATE: "substrate_updated",
    OP_ADD_RELATIONSHIP: "relationship_created",
    OP_DELETE_RELATIONSHIP: "relationship_deleted",
    # DESIGN.md §9's records: ``id`` is the chain's id (its version 1), or for an alias
    # or a lens the 64-bit BLAKE2b of its name (``bfx.storage.catalog.name_id``).
    OP_CHAIN: "version_chain_changed",
    OP_ALIAS: "alias_changed",
    OP_LENS: "lens_changed",
}
PUBLIC_OPS = frozenset(OP_NAMES)


class FeedPage(msgspec.Struct, frozen=True, gc=False):
    """Published changes after a cursor, and the cursor to ask with next."""

    changes: list[ChangeRow]
    #: The last change's ``seq`` when the page is full, else the log's head when it
    #: was read (the numbers of unpublished entries are skipped too; a ``since`` past
    #: the head comes back to it).
    next_since: int


class ChangeFeed:
    """Reads the change log of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def read(self, since: int, limit: int) -> FeedPage:
        """At most ``limit`` published changes with ``seq > since``, oldest first.
        ChangesPrunedError when entries after ``since`` are no longer kept."""
        found = self.store.changes(since, limit, PUBLIC_OPS)
        if since < found.floor:
            raise errors.ChangesPrunedError(
                f"changes after {since} were pruned (the log keeps the last "
                f"{self.store.retention or 'all'} entries); start again from "
                f"since={found.floor} or later after reading the current state",
                {"since": since, "oldest_since": found.floor, "head": found.head},
            )
        rows = found.changes
        # Past the head (a database restored from an older backup, or a caller asking
        # for "now"), the cursor comes back to the head: nothing after it is missed.
        next_since = rows[-1].seq if len(rows) == limit else found.head
        return FeedPage(rows, next_since)
