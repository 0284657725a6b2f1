"""The command-line client through ``subprocess`` against a real ``bfx serve``: exit
codes 0 (ok) / 1 (the service said no, or could not be reached) / 2 (usage), ``--json``
output, tables for people, ``BFX_URL``/``BFX_API_KEY``, and ``bfx call`` reaching every
operation of the table."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bfx.api.operations import OPERATIONS
from bfx.cli import build_parser
from bfx_server import HOST, Server, free_port

pytestmark = pytest.mark.e2e

MUL_CODE, MUL_ID = "lambda x, y=2: x * y", "0x0D20BC49950301AD"


def bfx(*argv: str, url: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BFX_")}
    if url is not None:
        clean["BFX_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "bfx.cli", *argv],
        capture_output=True, text=True, env={**clean, **env}, timeout=60, check=False,
    )  # fmt: skip


def ok_json(*argv: str, url: str) -> object:
    done = bfx(*argv, "--json", url=url)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("cli-client"), "--memory")
    yield f"http://{HOST}:{srv.port}/api/v1"  # the prefix in the URL is not doubled
    srv.stop()


def test_create_invoke_relate_traverse_page(url):
    made = ok_json("create", "lambda", MUL_CODE, "--metadata", '{"name": "mul"}', url=url)
    assert made["substrate_id"] == MUL_ID
    assert made["metadata"] == {"name": "mul"}  # the stored JSON, embedded as it is
    assert ok_json("invoke", MUL_ID, "--param", "x=21", url=url)["result"] == 42
    assert ok_json("invoke", MUL_ID, "--parameters", '{"x": 2, "y": 5}', url=url)["result"] == 10
    seven = ok_json("create", "constant", "7", url=url)["substrate_id"]
    rel = ok_json("relate", "dependency", MUL_ID, seven, "--constraints", '{"w": 2}', url=url)
    assert (rel["rel_type"], rel["constraints"]) == ("DEPENDENCY", {"w": 2})
    assert ok_json("outgoing", MUL_ID, url=url)["count"] == 1
    walked = ok_json("traverse", MUL_ID, "--max-depth", "2", url=url)
    assert walked["paths"] == [[MUL_ID], [MUL_ID, seven]]
    assert ok_json("path", MUL_ID, seven, url=url)["length"] == 1
    ranks = ok_json("pagerank", url=url)
    assert abs(sum(x["score"] for x in ranks["scores"]) - 1) < 1e-6
    assert ok_json("query", "--filter", "metadata.name=mul", url=url)["count"] == 1
    assert ok_json("search", "MUL", url=url)["substrates"][0]["substrate_id"] == MUL_ID
    assert ok_json("search", url=url)["count"] >= 2  # NAME is optional
    # --all walks every page; --json then prints one item per line.
    for code in range(100, 105):
        bfx("create", "constant", str(code), url=url)
    done = bfx("list", "--all", "--limit", "2", "--json", url=url)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    total = ok_json("list", "--limit", "1", url=url)["count"]
    assert len(lines) == len({x["substrate_id"] for x in lines}) == total >= 7
    # bfx call: any operation by its table name.
    assert ok_json("call", "multiply", "--dimension-values", "2,3", url=url)["unity_value"] == 6
    assert ok_json("call", "relationship_stats", url=url)["total_relationships"] >= 1


def test_tables_for_people(url):
    done = bfx("create", "constant", "4242", url=url)
    assert done.returncode == 0, done.stderr
    sid = next(line.split()[1] for line in done.stdout.splitlines() if "substrate_id" in line)
    listed = bfx("list", "--limit", "1000", url=url)
    assert listed.returncode == 0
    assert sid in listed.stdout
    assert "expression_code" in listed.stdout  # a column header
    assert bfx("delete", sid, url=url).stdout.strip() == "done"


def test_errors_are_exit_1(url):
    dup = bfx("create", "constant", "31337", url=url)
    assert dup.returncode == 0
    again = bfx("create", "constant", "31337", url=url)
    assert again.returncode == 1
    assert again.stderr.startswith("bfx: duplicate (HTTP 409)")
    missing = bfx("get", "0x1", "--json", url=url)
    assert missing.returncode == 1
    assert json.loads(missing.stderr)["error"] == "not_found"
    bad = bfx("create", "expression", "__import__('os')", url=url)
    assert (bad.returncode, "sandbox_rejected" in bad.stderr) == (1, True)
    down = bfx("health", url=f"http://{HOST}:{free_port()}")
    assert down.returncode == 1
    assert "connection_failed" in down.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["get"],  # the id is missing
        ["invoke", "0x1", "--param", "x"],  # not KEY=VALUE
        ["create", "constant", "1", "--metadata", "[1]"],  # not a JSON object
        ["create", "cubic", "1"],  # not an expression type
        ["traverse", "0x1", "--max-depth", "two"],
        ["call", "no_such_operation"],
        ["get", "0x1", "--url", "ftp://example"],
    ],
)
def test_usage_errors_are_exit_2(url, argv):
    done = bfx(*argv, url=url)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr


def test_every_operation_has_a_call_command():
    parser = build_parser()
    call = next(
        a
        for a in parser._subparsers._group_actions[0].choices["call"]._actions  # type: ignore[union-attr]
        if a.dest == "operation"
    )
    assert set(call.choices) == {op.name for op in OPERATIONS if op.client}
    # The server-side commands are still there, unchanged.
    for command in ("serve", "export", "import", "backup", "capacity", "keys"):
        assert command in parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]


def test_api_key_from_the_environment(tmp_path):
    data = tmp_path / "data"
    made = bfx(
        "keys", "create", "--data-dir", str(data), "--name", "cli", "--scopes", "admin", "--json"
    )
    assert made.returncode == 0, made.stderr
    secret = json.loads(made.stdout)["secret"]
    srv = Server(tmp_path, "--data-dir", str(data), "--auth", "required")
    try:
        url = f"http://{HOST}:{srv.port}"
        refused = bfx("list", url=url)
        assert (refused.returncode, "unauthorized (HTTP 401)" in refused.stderr) == (1, True)
        assert bfx("list", "--json", url=url, BFX_API_KEY=secret).returncode == 0
        assert bfx("list", "--json", "--token", secret, url=url).returncode == 0
    finally:
        srv.stop()
