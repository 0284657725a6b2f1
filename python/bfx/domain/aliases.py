"""Aliases: stable names for substrates that follow their version chain's head
(DESIGN §9, docs/domain.md "Aliases").

An alias stores the substrate it was pointed at; each use resolves it to that
substrate's chain head (itself when it is in no chain), so a new version or a rollback
moves every alias of the chain at once. A substrate that is deleted after an alias was
pointed at it is not refused: the alias stays, and using it answers 404
``alias_target_deleted`` until it is pointed elsewhere or removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bfx import errors
from bfx._core import format_id, now_us, parse_id
from bfx.domain.names import check_name
from bfx.domain.substrates import Substrates
from bfx.domain.versions import Versions
from bfx.models import Invocation
from bfx.storage.catalog import AliasRecord

__all__ = ["Aliases"]


class Aliases:
    def __init__(self, substrates: Substrates, versions: Versions) -> None:
        self.substrates = substrates
        self.versions = versions
        self.store = substrates.engine.store

    def put(self, name: Any, substrate_id: int | str) -> AliasRecord:
        """Points ``name`` at a substrate (an existing one: NotFoundError otherwise),
        replacing what it named before."""
        check_name(name, "an alias")
        identity = parse_id(substrate_id)
        catalog = self.store.catalog
        record = AliasRecord(name, identity, now_us())
        with self.store.write() as w:
            self.substrates.engine.substrate(identity)  # NotFoundError, nothing written
            self.store.save_alias(w, record)
            w.after = lambda: catalog.set_alias(name, record)
        return record

    def get(self, name: str) -> AliasRecord:
        record = self.store.catalog.aliases.get(name)
        if record is None:
            raise errors.NotFoundError(f"no alias named {name!r}", {"name": name})
        return record

    def delete(self, name: str) -> None:
        catalog = self.store.catalog
        with self.store.write() as w:
            if name not in catalog.aliases:
                raise errors.NotFoundError(f"no alias named {name!r}", {"name": name})
            self.store.remove_alias(w, name)
            w.after = lambda: catalog.set_alias(name, None)

    def target(self, record: AliasRecord) -> int | None:
        """The substrate the alias answers with now (its chain's head), None when that
        substrate was deleted."""
        head = self.versions.head(record.substrate)
        return head if head in self.substrates.arena else None

    def resolve(self, name: str) -> int:
        """The id an alias stands for now; NotFoundError for an unknown alias,
        AliasTargetDeletedError when its substrate was deleted."""
        record = self.get(name)
        head = self.target(record)
        if head is None:
            raise errors.AliasTargetDeletedError(
                f"the alias {name!r} names {format_id(record.substrate)}, which was deleted",
                {"name": name, "substrate_id": format_id(record.substrate)},
            )
        return head

    def invoke(self, name: str, parameters: Mapping[str, Any] | None = None) -> Invocation:
        return self.substrates.invoke(self.resolve(name), parameters)

    # ---- export / import --------------------------------------------------------------

    def all(self) -> list[AliasRecord]:
        aliases = self.store.catalog.aliases
        return [aliases[k] for k in sorted(aliases)]

    def import_alias(self, record: AliasRecord) -> bool:
        """Stores an exported alias; False when the same one is stored already,
        ConflictError when the name names another substrate."""
        check_name(record.name, "an alias")
        catalog = self.store.catalog
        with self.store.write() as w:
            existing = catalog.aliases.get(record.name)
            if existing is not None:
                if existing.substrate == record.substrate:
                    return False
                raise errors.ConflictError(
                    f"the alias {record.name!r} exists and names another substrate",
                    {"name": record.name, "substrate_id": format_id(existing.substrate)},
                )
            self.substrates.engine.substrate(record.substrate)  # NotFoundError
            self.store.save_alias(w, record)
            w.after = lambda: catalog.set_alias(record.name, record)
        return True
