"""The TypeScript client (clients/typescript): its generated types are current, it builds
with Debian's ``tsc``, and its scenario list passes under Debian's ``node`` against a real
``bfx serve`` (plain and ``--auth required``).

Without node or tsc the Node tests skip with the reason; ``BFX_REQUIRE_NODE=1`` (CI) turns
that into a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bfx import __version__
from bfx.api.openapi import build
from bfx.api.operations import OPERATIONS
from bfx_server import Server

ROOT = Path(__file__).resolve().parent.parent
TS = ROOT / "clients" / "typescript"
SCENARIOS = TS / "test" / "scenarios.test.mjs"
#: Each must pass (not skip): the scenario list of issue 17.
EXPECTED = (
    "every operation of the table is a method",
    "the JSON reader keeps 64-bit integers exact",
    "create, get, invoke",
    "relate, outgoing, traverse, shortest path",
    "errors: 404, 422, 409 duplicate, 400 invalid id",
    "pagination to the end of 2,500 records",
    "identity above 2^53 round-trips as bigint exactly",
    "retries: 503 with Retry-After, then 200",
    "retries: a 429 or a 503 is retried even for a batch",
    "retries: a cut connection is retried for a read",
    "retries: a retried create that answers 409",
    "retries stop: attempts are bounded",
    "a server that is down is a ConnectionFailedError",
    "auth: apiKey and token against --auth required",
)


def _generator():
    spec = importlib.util.spec_from_file_location("bfx_ts_generate", TS / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_types_are_current():
    gen = _generator()
    fresh = gen.render(build(__version__))
    assert gen.OUT.read_text() == fresh, (
        "clients/typescript/src/generated.ts is stale: run python clients/typescript/generate.py"
    )


def test_every_client_operation_has_a_typed_method():
    text = (TS / "src" / "generated.ts").read_text()
    gen = _generator()
    for op in OPERATIONS:
        method = re.search(rf"^  {gen.camel(op.name)}\(", text, re.M)
        assert (method is not None) == op.client, op.name
    # uint64 fields are bigint in the types, never number.
    assert re.search(r"^  identity: bigint;$", text, re.M)


@pytest.fixture(scope="module")
def toolchain():
    node, tsc = shutil.which("node"), shutil.which("tsc")
    missing = [name for name, path in (("nodejs", node), ("node-typescript", tsc)) if not path]
    if missing:
        why = f"TypeScript client tests need {' and '.join(missing)} (apt-get install -y {' '.join(missing)})"
        if os.environ.get("BFX_REQUIRE_NODE") == "1":
            pytest.fail(f"required here (BFX_REQUIRE_NODE=1): {why}")
        pytest.skip(why)
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    assert major >= 18, f"the client needs Node 18+ (fetch), found {version.stdout}"
    return node, tsc


@pytest.fixture(scope="module")
def built(toolchain, tmp_path_factory):
    """The client compiled by tsc into a temporary dist (the tests build it; CI too)."""
    _, tsc = toolchain
    out = tmp_path_factory.mktemp("ts-dist")
    done = subprocess.run(
        [tsc, "-p", str(TS), "--outDir", str(out)],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    # ESM: the emitted .js files need the package's "type": "module" beside them.
    (out / "package.json").write_text(json.dumps({"type": "module"}))
    return out / "index.js"


def _keys_create(data: Path, name: str, scopes: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BFX_")}
    done = subprocess.run(
        [sys.executable, "-m", "bfx.cli", "keys", "create", "--data-dir", str(data),
         "--name", name, "--scopes", scopes, "--json"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["secret"]


@pytest.mark.e2e
def test_scenarios_against_bfx_serve(toolchain, built, tmp_path):
    node, _ = toolchain
    data = tmp_path / "auth-data"
    admin = _keys_create(data, "ts-admin", "admin")
    reader = _keys_create(data, "ts-reader", "substrates:read")
    (tmp_path / "plain").mkdir()
    (tmp_path / "auth").mkdir()
    plain = Server(tmp_path / "plain", "--memory")
    try:
        secured = Server(tmp_path / "auth", "--data-dir", str(data), "--auth", "required")
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("BFX_")}
            env |= {
                "BFX_TS_CLIENT": str(built),
                "BFX_URL": f"http://127.0.0.1:{plain.port}",
                "BFX_AUTH_URL": f"http://127.0.0.1:{secured.port}",
                "BFX_ADMIN_KEY": admin,
                "BFX_READ_KEY": reader,
            }
            done = subprocess.run(
                [node, "--test", "--test-reporter=tap", str(SCENARIOS)],
                capture_output=True, text=True, env=env, timeout=280, check=False, cwd=tmp_path,
            )  # fmt: skip
        finally:
            secured.stop()
    finally:
        plain.stop()
    out = done.stdout + done.stderr
    print(out)
    outcome = {name: status for status, name in re.findall(r"^(ok|not ok) \d+ - (.*)$", out, re.M)}
    for scenario in EXPECTED:
        hits = [(n, s) for n, s in outcome.items() if n.startswith(scenario)]
        assert len(hits) == 1, f"scenario {scenario!r} did not run:\n{out}"
        name, status = hits[0]
        assert status == "ok", f"{name}: {status}\n{out}"
        assert "# SKIP" not in name, f"{name}\n{out}"
    assert done.returncode == 0, out
