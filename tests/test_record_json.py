"""The core's JSON of a substrate record (``Arena.get_json``, what ``GET
/substrates/{id}`` answers) against msgspec's encoding of the same record, byte for
byte: a client cannot tell which of the two built its answer."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bfx import errors
from bfx._core import Arena
from bfx.asgi.base import encode
from bfx.services import records

_TYPES = st.sampled_from(["lambda", "constant", "expression", "pipeline"])
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
_METADATA = st.just(b"") | st.dictionaries(st.text(), _JSON, max_size=4).map(msgspec.json.encode)


def _msgspec_answer(arena: Arena, identity: int, invocations: int) -> bytes:
    return encode(records.substrate(arena.get(identity), invocations))


@given(
    kind=_TYPES,
    code=st.text(),
    same=st.booleans(),
    canonical=st.text(),
    metadata=_METADATA,
    created_at=st.integers(-(2**63), 2**63 - 1),
    invocations=st.integers(0, 2**64 - 1),
)
def test_get_json_is_msgspecs_encoding_of_the_record(
    kind, code, same, canonical, metadata, created_at, invocations
):
    arena = Arena()
    identity = arena.insert(kind, code, code if same else canonical, metadata, created_at)
    assert arena.get_json(identity, invocations) == _msgspec_answer(arena, identity, invocations)


@pytest.mark.parametrize(
    "text",
    [
        "".join(map(chr, range(0x80))),  # every ASCII character, controls and DEL included
        "\u2028\u2029\ufeff é ☃ \U0001f600",
        '\\"\\\\',
    ],
)
def test_every_escape_matches(text):
    arena = Arena()
    identity = arena.insert("expression", text, text, b"", 0)
    got = arena.get_json(identity, 0)
    assert got == _msgspec_answer(arena, identity, 0)
    assert msgspec.json.decode(got)["expression_code"] == text


def test_unknown_id_is_the_typed_not_found():
    arena = Arena()
    with pytest.raises(errors.NotFoundError):
        arena.get_json(12345, 0)
    with pytest.raises(OverflowError):
        arena.get_json(1, -1)  # a count is never negative
