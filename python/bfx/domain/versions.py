"""Version chains: a substrate's later versions, linked by ``LINEAGE`` edges, with a
stored head that moves forward on a new version and back on a rollback (DESIGN §9).

A substrate in no chain is a chain of one (itself, version 1, its own head); nothing is
stored for it. Its first new version stores the chain, whose id is that first
substrate's id. Every head move is a history entry (``created``, ``version``,
``rollback``). Members of a stored chain cannot be deleted (409 ``in_use``): the chain is
the record of what ran, and an alias may follow it (docs/domain.md, Versions).
"""

from __future__ import annotations

from typing import Any

from bfx import errors
from bfx._core import format_id, now_us, parse_id
from bfx.domain.checks import json_object_bytes
from bfx.domain.substrates import Substrates
from bfx.rows import RelationshipRow, SubstrateRow
from bfx.storage.catalog import Chain, HeadMove, VersionEntry

__all__ = ["MAX_CHANGE_DESCRIPTION", "Versions"]

#: The longest ``change_description`` kept (characters).
MAX_CHANGE_DESCRIPTION = 1_000


class Versions:
    """The chains of one engine's store (its catalog), over the substrates."""

    def __init__(self, substrates: Substrates) -> None:
        self.substrates = substrates
        self.engine = substrates.engine
        self.store = substrates.engine.store
        self.engine.delete_guards.append(self._refuse_member_delete)

    def chain(self, substrate_id: int | str) -> Chain:
        """The chain ``substrate_id`` belongs to (a chain of one when it is in none);
        NotFoundError for an unknown substrate."""
        identity = parse_id(substrate_id)
        found = self.store.catalog.chain_for(identity)
        if found is not None:
            return found
        created = self.engine.substrate(identity).created_us  # NotFoundError
        return Chain(
            identity,
            identity,
            (VersionEntry(identity, 1, None, created),),
            (HeadMove(1, identity, "created", created),),
        )

    def head(self, identity: int) -> int:
        """The head of ``identity``'s chain (itself when in none); no existence check."""
        found = self.store.catalog.chain_for(identity)
        return identity if found is None else found.head

    def create_version(
        self, substrate_id: int | str, expression_code: Any, change_description: Any = None
    ) -> tuple[VersionEntry, SubstrateRow]:
        """A new substrate of the same type and metadata as ``substrate_id`` (any member
        of a chain), linked by ``LINEAGE`` from the chain's latest version and made its
        head. DuplicateError when the code's canonical form is already a substrate
        (``details.version`` when it is a member of this chain)."""
        identity = parse_id(substrate_id)
        if change_description is not None and (
            not isinstance(change_description, str)
            or len(change_description) > MAX_CHANGE_DESCRIPTION
        ):
            raise errors.ValidationError(
                f"change_description must be a string of at most {MAX_CHANGE_DESCRIPTION} "
                "characters",
                {"field": "change_description", "max_length": MAX_CHANGE_DESCRIPTION},
            )
        base = self.engine.substrate(identity)  # NotFoundError
        compiled, _ = self.substrates.prepare(base.expression_type, expression_code, None)
        created = now_us()
        row = SubstrateRow(
            None, base.expression_type, expression_code, compiled.canonical, base.metadata, created
        )
        constraints = json_object_bytes(
            None if change_description is None else {"change_description": change_description},
            "change_description",
        )
        catalog = self.store.catalog
        made: list[VersionEntry] = []

        def latest() -> int:
            # Inside the write, the catalog current: two versions made at once through
            # two workers become versions n+1 and n+2, the second linked from the first.
            chain = catalog.chain_for(identity)
            return identity if chain is None else chain.members[-1].substrate

        def chain_rows(w: Any, new_id: int) -> Any:
            chain = catalog.chain_for(identity)
            if chain is None:
                entry = VersionEntry(new_id, 2, change_description, created)
                new = Chain(
                    identity,
                    new_id,
                    (VersionEntry(identity, 1, None, base.created_us), entry),
                    (
                        HeadMove(1, identity, "created", base.created_us),
                        HeadMove(2, new_id, "version", created),
                    ),
                )
                self.store.save_chain(w, new)
            else:
                entry = VersionEntry(
                    new_id, chain.members[-1].version + 1, change_description, created
                )
                move = HeadMove(len(chain.history) + 1, new_id, "version", created)
                self.store.save_chain_step(w, chain.chain_id, new_id, (entry,), move)
                new = Chain(chain.chain_id, new_id, (*chain.members, entry), (*chain.history, move))
            made.append(entry)
            return lambda: catalog.set_chain(new.chain_id, new)

        edge = RelationshipRow(None, "LINEAGE", identity, 0, False, constraints, created)
        try:
            new_id = self.engine.insert_linked(row, edge, latest, chain_rows)
        except errors.DuplicateError as exc:
            raise self._duplicate(exc, identity) from None
        self.substrates.cache.put(new_id, compiled)
        return made[0], SubstrateRow(
            new_id, row.expression_type, row.expression_code, row.canonical_code,
            row.metadata, row.created_us,
        )  # fmt: skip

    def _duplicate(self, exc: errors.DuplicateError, identity: int) -> errors.BfxError:
        existing = exc.details.get("substrate_id")
        try:
            other = parse_id(existing) if existing is not None else None
        except errors.BfxError:
            other = None
        chain = self.store.catalog.chain_for(identity)
        member = None if other is None else (chain.member(other) if chain else None)
        if member is None and other == identity:
            member = VersionEntry(identity, 1, None, 0)
        if member is not None:
            return errors.DuplicateError(
                f"this code is already version {member.version} of the chain "
                f"({format_id(member.substrate)}); roll back to it instead",
                {**exc.details, "version": member.version},
            )
        return exc

    def rollback(self, substrate_id: int | str, version_id: int | str) -> Chain:
        """Moves the head of ``substrate_id``'s chain to ``version_id``, recording the
        move. NotFoundError for an unknown substrate; ValidationError (422, reason
        ``not_in_chain``) when ``version_id`` is not a member of that chain."""
        identity = parse_id(substrate_id)
        target = parse_id(version_id)
        self.engine.substrate(identity)  # NotFoundError
        catalog = self.store.catalog
        with self.store.write() as w:
            chain = catalog.chain_for(identity)
            if chain is None:
                if target == identity:
                    return self.chain(identity)  # a chain of one: nothing moves
                raise self._not_in_chain(identity, target)
            if chain.member(target) is None:
                raise self._not_in_chain(chain.chain_id, target)
            move = HeadMove(len(chain.history) + 1, target, "rollback", now_us())
            self.store.save_chain_step(w, chain.chain_id, target, (), move)
            new = Chain(chain.chain_id, target, chain.members, (*chain.history, move))
            w.after = lambda: catalog.set_chain(new.chain_id, new)
        return new

    @staticmethod
    def _not_in_chain(chain_id: int, target: int) -> errors.BfxError:
        return errors.ValidationError(
            f"{format_id(target)} is not a version of the chain {format_id(chain_id)}",
            {
                "reason": "not_in_chain",
                "chain_id": format_id(chain_id),
                "version_id": format_id(target),
            },
        )

    def _refuse_member_delete(self, identity: int) -> None:
        chain = self.store.catalog.chain_for(identity)
        if chain is not None:
            entry = chain.member(identity)
            raise errors.InUseError(
                f"{format_id(identity)} is version {entry.version if entry else '?'} of the "
                f"chain {format_id(chain.chain_id)}; chain members cannot be deleted",
                {"chain_id": format_id(chain.chain_id), "substrate_id": format_id(identity)},
            )

    # ---- export / import --------------------------------------------------------------

    def all_chains(self) -> list[Chain]:
        """Every stored chain, by id."""
        chains = self.store.catalog.chains
        return [chains[k] for k in sorted(chains)]

    def import_chain(self, chain: Chain) -> bool:
        """Stores an exported chain; False when the same chain is stored already.
        Every member must exist (NotFoundError) and belong to no other chain
        (ConflictError), the head must be a member."""
        catalog = self.store.catalog
        with self.store.write() as w:
            existing = catalog.chains.get(chain.chain_id)
            if existing is not None:
                if existing == chain:
                    return False
                raise errors.ConflictError(
                    f"the chain {format_id(chain.chain_id)} exists with other content",
                    {"chain_id": format_id(chain.chain_id)},
                )
            for entry in chain.members:
                self.engine.substrate(entry.substrate)  # NotFoundError
                if catalog.chain_for(entry.substrate) is not None:
                    raise errors.ConflictError(
                        f"{format_id(entry.substrate)} is in another chain",
                        {"substrate_id": format_id(entry.substrate)},
                    )
            self.store.save_chain(w, chain)
            w.after = lambda: catalog.set_chain(chain.chain_id, chain)
        return True
