"""The local version, alias and lens services (DESIGN §9): the answers of
:mod:`bfx.domain.versions`, :mod:`bfx.domain.aliases` and :mod:`bfx.domain.lenses`."""

from __future__ import annotations

from typing import Any

import msgspec

from bfx.api import types as s
from bfx.domain.aliases import Aliases
from bfx.domain.lenses import Lenses
from bfx.domain.versions import Versions
from bfx.identity import field_id as body_id
from bfx.identity import format_id
from bfx.models import from_micros
from bfx.services import records
from bfx.storage.catalog import AliasRecord, Chain, LensRecord

__all__ = ["LocalAliases", "LocalLenses", "LocalVersions", "alias_answer", "chain_answer"]


def chain_answer(chain: Chain) -> s.VersionList:
    return s.VersionList(
        chain_id=format_id(chain.chain_id),
        head=format_id(chain.head),
        versions=[
            s.VersionEntry(
                version=m.version,
                substrate_id=format_id(m.substrate),
                change_description=m.change_description,
                created_at=from_micros(m.created_us),
            )
            for m in chain.members
        ],
        history=[
            s.HeadMove(
                entry=h.entry,
                head=format_id(h.head),
                action=h.action,  # type: ignore[arg-type]
                created_at=from_micros(h.created_us),
            )
            for h in chain.history
        ],
    )


class LocalVersions:
    def __init__(self, versions: Versions) -> None:
        self._versions = versions

    def create(
        self, substrate_id: int, expression_code: str, change_description: str | None = None
    ) -> s.VersionCreated:
        """``create_version``: NotFoundError, SandboxError, DuplicateError (``details.
        version`` when the code is already a member of the chain)."""
        entry, row = self._versions.create_version(
            substrate_id, expression_code, change_description
        )
        record = records.substrate_row(row)
        chain = self._versions.store.catalog.chain_for(row.identity)  # type: ignore[arg-type]
        return s.VersionCreated(
            **msgspec.structs.asdict(record),
            version=entry.version,
            chain_id=format_id(chain.chain_id if chain else substrate_id),
            change_description=entry.change_description,
        )

    def list(self, substrate_id: int) -> s.VersionList:
        """``versions``: the chain of any member (a chain of one for a substrate in none)."""
        return chain_answer(self._versions.chain(substrate_id))

    def rollback(self, substrate_id: int, version_id: int) -> s.VersionList:
        """``rollback``: ValidationError (422, ``reason: not_in_chain``) for a substrate
        outside the chain."""
        return chain_answer(self._versions.rollback(substrate_id, version_id))


def alias_answer(aliases: Aliases, record: AliasRecord) -> s.AliasRecord:
    target = aliases.target(record)
    return s.AliasRecord(
        name=record.name,
        substrate_id=format_id(record.substrate),
        target_id=None if target is None else format_id(target),
        created_at=from_micros(record.created_us),
    )


class LocalAliases:
    def __init__(self, aliases: Aliases) -> None:
        self._aliases = aliases

    def put(self, name: str, substrate_id: str) -> s.AliasRecord:
        """``put_alias``: ValidationError for a malformed name or id, NotFoundError for
        an unknown substrate."""
        record = self._aliases.put(name, body_id(substrate_id, "substrate_id"))
        return alias_answer(self._aliases, record)

    def get(self, name: str) -> s.AliasRecord:
        return alias_answer(self._aliases, self._aliases.get(name))

    def delete(self, name: str) -> None:
        self._aliases.delete(name)

    def invoke(self, name: str, parameters: dict[str, Any] | None = None) -> s.InvokeResponse:
        """``invoke_alias``: like ``invoke``; AliasTargetDeletedError (404) when the
        alias's substrate was deleted."""
        inv = self._aliases.invoke(name, parameters)
        return s.InvokeResponse(
            substrate_id=format_id(inv.substrate),
            result=inv.result,
            invocation_time_ms=inv.elapsed_ms,
        )


def lens_answer(record: LensRecord) -> s.LensRecord:
    return s.LensRecord(
        name=record.name,
        expression_code=record.expression_code,
        parameters=msgspec.json.decode(record.parameters),
        description=record.description,
        builtin=record.builtin,
        created_at=None if record.builtin else from_micros(record.created_us),
    )


class LocalLenses:
    def __init__(self, lenses: Lenses) -> None:
        self._lenses = lenses

    def create(
        self,
        name: str,
        expression_code: str,
        parameters: dict[str, Any] | None = None,
        description: str | None = None,
    ) -> s.LensRecord:
        """``create_lens``: SandboxError (422) for code the sandbox refuses, DuplicateError
        for a name taken (a built-in's included)."""
        return lens_answer(self._lenses.create(name, expression_code, parameters, description))

    def list(self) -> s.LensList:
        return s.LensList(lenses=[lens_answer(r) for r in self._lenses.all()])

    def get(self, name: str) -> s.LensRecord:
        return lens_answer(self._lenses.get(name))

    def delete(self, name: str) -> None:
        """``delete_lens``: ConflictError (409) for a built-in."""
        self._lenses.delete(name)

    def apply(
        self,
        substrate_id: int,
        lens_name: str,
        parameters: dict[str, Any] | None = None,
        dimension: int | None = None,
        substrate_parameters: dict[str, Any] | None = None,
    ) -> s.LensApplied:
        done = self._lenses.apply(
            substrate_id, lens_name, parameters, dimension, substrate_parameters
        )
        return s.LensApplied(
            substrate_id=format_id(done.substrate_id),
            lens_name=done.lens_name,
            value=done.value,
            result=done.result,
        )
