"""Identities are stable: published vectors, an independent XXH3, other processes."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from bfx import errors
from bfx._core import REL_TYPES, format_id, parse_id, relationship_id, substrate_id

VECTORS = json.loads((Path(__file__).parent / "identity_vectors.json").read_text("utf-8"))


@pytest.mark.parametrize("vector", VECTORS["substrates"], ids=lambda v: v["canonical_code"][:30])
def test_substrate_vectors(vector):
    got = substrate_id(vector["expression_type"], vector["canonical_code"])
    assert format_id(got) == vector["id"]
    # The documented input bytes are what is hashed.
    data = vector["expression_type"].encode() + b"\0" + vector["canonical_code"].encode()
    assert data.hex() == vector["input_hex"]


@pytest.mark.parametrize("vector", VECTORS["relationships"], ids=lambda v: v["id"])
def test_relationship_vectors(vector):
    got = relationship_id(vector["source_id"], vector["target_id"], vector["rel_type"].lower())
    assert format_id(got) == vector["id"]


@given(st.sampled_from(["lambda", "constant", "expression"]), st.text(max_size=200))
def test_substrate_id_is_xxh3_of_the_documented_bytes(expression_type, code):
    data = expression_type.encode() + b"\0" + code.encode("utf-8", "surrogatepass")
    try:
        got = substrate_id(expression_type, code)
    except UnicodeEncodeError:
        return  # lone surrogates are not valid UTF-8 and cannot be code
    assert got == xxhash.xxh3_64_intdigest(data)


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.sampled_from(REL_TYPES))
def test_relationship_id_is_xxh3_of_the_documented_bytes(source, target, rel_type):
    data = struct.pack("<QQ", source, target) + rel_type.encode()
    assert relationship_id(source, target, rel_type) == xxhash.xxh3_64_intdigest(data)


def test_ids_are_the_same_in_other_processes():
    codes = ["lambda x: x", "x * y + 1", "42", "lambda **kw: kw.get('x', 0)"]
    script = (
        "import json, sys\n"
        "from bfx._core import substrate_id\n"
        "codes = json.loads(sys.argv[1])\n"
        "print(json.dumps([substrate_id('lambda', c) for c in codes]))\n"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", script, json.dumps(codes)],
            capture_output=True,
            text=True,
            check=True,
            # Different hash seeds: CPython's hash() would differ, ours must not.
            env={"PYTHONHASHSEED": str(seed), "PATH": "/usr/bin:/bin"},
        ).stdout
        for seed in (1, 2)
    ]
    here = [substrate_id("lambda", c) for c in codes]
    assert json.loads(runs[0]) == json.loads(runs[1]) == here


@pytest.mark.parametrize(
    ("text", "value"),
    [("0x1A", 26), ("0X1a", 26), ("1a", 26), ("ffffffffffffffff", 2**64 - 1), (7, 7)],
)
def test_parse_id_accepts(text, value):
    assert parse_id(text) == value


@pytest.mark.parametrize("bad", ["", "0x", "g", "1" * 17, "-1", " 1", -1, 2**64, True, 1.5, None])
def test_parse_id_rejects_with_a_typed_error(bad):
    with pytest.raises(errors.InvalidIdError) as info:
        parse_id(bad)
    assert info.value.code == "invalid_id"


def test_format_id():
    assert format_id(26) == "0x000000000000001A"
    assert format_id(2**64 - 1) == "0xFFFFFFFFFFFFFFFF"
