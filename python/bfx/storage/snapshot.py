"""Arena snapshots: a fast start for the embedded store.

Reading a million rows through Python's sqlite3 takes seconds; the arena's own
dump (``Arena.dump``, checksummed, every id re-verified on load) reloads far faster.
A snapshot is that dump plus a header saying which store and which point of its
change log it reflects. It is a cache, never the record: at start-up it is used
only if it belongs to this store and the log still holds the entry it ends at (so a
database restored from a backup, or edited, makes it stale), and then the log after
it is replayed. Anything wrong means a full load from the database.

Written atomically (temporary file + rename) after a full load and when a registry
closes; a ``kill -9`` leaves the last one, and the log covers the rest. The dump is
streamed to and from the file by the core (a load in two streams on two threads), so
a server's peak memory while it starts or stops is the arena plus small buffers and,
while its id indices are rebuilt, the ids grouped for them (12 bytes a record), not
the arena plus a copy of its dump.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import msgspec

from bfx import errors
from bfx._core import Arena

__all__ = ["SNAPSHOT_NAME", "Snapshot", "read", "write"]

log = logging.getLogger("bfx.storage")

SNAPSHOT_NAME = "arena.snapshot"
_MAGIC = b"BFXSNAP1\n"


class Snapshot(msgspec.Struct, frozen=True):
    store_id: str
    #: The last change-log entry the arena reflects, and that entry's (op, id).
    seq: int
    last_change: tuple[int, int] | None


def write(data_dir: Path, arena: Arena, header: Snapshot) -> None:
    path = data_dir / SNAPSHOT_NAME
    tmp = data_dir / f"{SNAPSHOT_NAME}.{uuid.uuid4().hex[:12]}.tmp"
    head = msgspec.json.encode(header)
    try:
        with open(tmp, "wb") as f:
            f.write(_MAGIC)
            f.write(len(head).to_bytes(4, "little"))
            f.write(head)
        # Streams the dump after the header and syncs: never a second copy in memory.
        arena.dump_file(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not write the arena snapshot %s: %s", path, exc)
        tmp.unlink(missing_ok=True)


def read_header(data_dir: Path) -> tuple[Snapshot, int] | None:
    """The header and the offset of the dump, or None when absent or unreadable."""
    path = data_dir / SNAPSHOT_NAME
    try:
        with open(path, "rb") as f:
            if f.read(len(_MAGIC)) != _MAGIC:
                return None
            size = int.from_bytes(f.read(4), "little")
            header = msgspec.json.decode(f.read(size), type=Snapshot)
            return header, len(_MAGIC) + 4 + size
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def read(data_dir: Path, offset: int) -> Arena | None:
    try:
        return Arena.load_file(data_dir / SNAPSHOT_NAME, offset)
    except (OSError, errors.BfxError) as exc:
        log.warning("ignoring the arena snapshot in %s: %s", data_dir, exc)
        return None
