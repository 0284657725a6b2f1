"""A working example for every request body, by body type: OpenAPI shows them and
Swagger's "Try it out" sends them as they are.

They fit together: ``SUBSTRATES`` are the records the other examples name (their ids are
content hashes, so the same on every server). Create them first — the first example is
one of them — and every other example succeeds as written (tests/test_openapi_examples.py
posts each one to a fresh server).
"""

from __future__ import annotations

from typing import Any

__all__ = ["EXAMPLES", "IMPORT_EXAMPLE", "SUBSTRATES"]

#: ``lambda x, y=2: x * y`` and the constant ``21``, with their ids.
DOUBLE = {"expression_type": "lambda", "expression_code": "lambda x, y=2: x * y"}
DOUBLE_ID = "0x0D20BC49950301AD"
TWENTY_ONE = {"expression_type": "constant", "expression_code": "21"}
TWENTY_ONE_ID = "0xB8006468A3C924E6"
SUBSTRATES = ((DOUBLE, DOUBLE_ID), (TWENTY_ONE, TWENTY_ONE_ID))

EXAMPLES: dict[str, dict[str, Any]] = {
    "CreateKey": {"name": "reporting", "scopes": ["substrates:read", "graph:read"]},
    "Login": {"username": "alice", "password": "correct horse battery staple"},
    "CreateSubstrate": {**DOUBLE, "metadata": {"name": "double"}},
    "InvokeRequest": {"parameters": {"x": 21}},
    "MultiplyRequest": {"dimension_values": [1, 1, 2, 3, 5, 8, 13, 21, 34]},
    "ValueRequest": {"value": 8, "parameters": {"x": 21}},
    "ModulusRequest": {"modulus": 5, "parameters": {"x": 21}},
    "PowerRequest": {"exponent": 3, "parameters": {"x": 21}},
    "RootRequest": {"degree": 2, "parameters": {"x": 21}},
    "UpdateSubstrate": {"metadata": {"name": "doubler", "tags": ["demo"]}},
    # 21, then double it: lambda x, y=2: x * y with x = 21.
    "ComposeRequest": {
        "name": "double 21",
        "pipeline": [{"substrate_id": TWENTY_ONE_ID}, {"substrate_id": DOUBLE_ID, "as": "x"}],
    },
    "PromoteRequest": {"change_description": "add a parameter"},
    "PromoteSequenceRequest": {"deltas": [1, 2, 3]},
    "CreateVersion": {
        "expression_code": "lambda x, y=3: x * y",
        "change_description": "triple by default",
    },
    "PutAlias": {"substrate_id": DOUBLE_ID},
    "CreateLens": {
        "name": "low_nibble",
        "expression_code": "z & m",
        "parameters": {"m": 15},
        "description": "the low four bits",
    },
    "ApplyLens": {
        "lens_name": "mask",
        "parameters": {"mask": 15},
        "substrate_parameters": {"x": 21},
    },
    "BatchCreate": {
        "substrates": [
            {"expression_type": "expression", "expression_code": "x * y + 1"},
            {"expression_type": "constant", "expression_code": "42", "metadata": {"n": 42}},
        ],
        "atomic": False,
    },
    "BatchInvoke": {
        "invocations": [
            {"substrate_id": DOUBLE_ID, "parameters": {"x": 21}},
            {"substrate_id": DOUBLE_ID, "parameters": {"x": 2, "y": 5}},
            {"substrate_id": TWENTY_ONE_ID},
        ]
    },
    "QueryRequest": {
        "filters": {"expression_type": "lambda", "metadata.name": "double"},
        "sort": "-created_at",
        "limit": 10,
    },
    "CreateRelationship": {
        "rel_type": "DEPENDENCY",
        "source_id": DOUBLE_ID,
        "target_id": TWENTY_ONE_ID,
        "bidirectional": False,
        "constraints": {"note": "double depends on 21"},
    },
    "BatchRelate": {
        "relationships": [
            {"rel_type": "SIBLING", "source_id": DOUBLE_ID, "target_id": TWENTY_ONE_ID},
            {"rel_type": "LINEAGE", "source_id": TWENTY_ONE_ID, "target_id": DOUBLE_ID},
        ],
        "atomic": False,
    },
    "TraverseRequest": {
        "start_substrate_id": DOUBLE_ID,
        "direction": "both",
        "max_depth": 2,
        "include_substrates": True,
    },
}

#: ``POST /substrates/import`` reads raw bytes (JSON or NDJSON): an export document.
IMPORT_EXAMPLE: dict[str, Any] = {
    "substrates": [
        {
            "substrate_id": "0x967826A598005656",
            "expression_type": "constant",
            "expression_code": "1",
            "metadata": {"name": "one"},
            "created_at": "2026-01-01T00:00:00Z",
        }
    ],
    "relationships": [],
}
