// The client scenario list (issue 17) against a real `bfx serve`, and the retry policy
// against tiny loopback servers. Run by tests/test_client_typescript.py:
//   BFX_TS_CLIENT=<built dist>/index.js BFX_URL=http://127.0.0.1:PORT \
//   [BFX_AUTH_URL=... BFX_ADMIN_KEY=... BFX_READ_KEY=...] node --test scenarios.test.mjs
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { test } from "node:test";
import { pathToFileURL } from "node:url";

const sdk = await import(pathToFileURL(process.env.BFX_TS_CLIENT ?? new URL("../dist/index.js", import.meta.url).pathname).href);
const { Client, OPERATIONS, parseJson, stringifyJson } = sdk;
const URL_ = process.env.BFX_URL;
assert.ok(URL_, "BFX_URL is required");
const client = new Client({ baseUrl: URL_ + "/api/v1/", timeout: 60_000 });
const unique = `${process.pid}-${Date.now()}`;
// Ids are content hashes: a term unique to this run keeps a rerun from meeting its own records.
const salt = unique.replace(/\D/g, "");

test("every operation of the table is a method, every paged list has an iterator", () => {
  const names = Object.keys(OPERATIONS);
  assert.ok(names.length >= 35, `only ${names.length} operations`);
  for (const [name, op] of Object.entries(OPERATIONS)) {
    assert.equal(typeof client[name], "function", name);
    const it = name.replace(/^list(?=[A-Z])/, "");
    if (op.paged) assert.equal(typeof client["iter" + it[0].toUpperCase() + it.slice(1)], "function", name);
  }
  for (const name of ["createSubstrate", "getSubstrate", "invoke", "createRelationship", "traverse", "shortestPath", "pagerank", "createKey"]) {
    assert.ok(names.includes(name), name);
  }
});

test("the JSON reader keeps 64-bit integers exact, the writer writes bigints", () => {
  const v = parseJson('{"a": 18446744073709551615, "b": 9007199254740993, "c": 42, "d": -1.5e3, "e": ["x\\"y", true, null]}');
  assert.equal(v.a, 18446744073709551615n);
  assert.equal(v.b, 9007199254740993n);
  assert.equal(v.c, 42);
  assert.equal(v.d, -1500);
  assert.deepEqual(v.e, ['x"y', true, null]);
  assert.equal(stringifyJson({ n: 18446744073709551615n, s: "q", u: undefined }), '{"n":18446744073709551615,"s":"q"}');
  assert.throws(() => parseJson("{1}"), SyntaxError);
});

test("create, get, invoke", async () => {
  const made = await client.createSubstrate({ expression_type: "lambda", expression_code: `lambda x: x * 3 + 1 + 0 * ${salt}`, metadata: { name: `triple-${unique}` } });
  assert.match(made.substrate_id, /^0x[0-9A-F]{16}$/);
  assert.equal(typeof made.identity, "bigint");
  assert.equal(made.identity, BigInt(made.substrate_id));
  const got = await client.getSubstrate(made.substrate_id.toLowerCase());
  assert.deepEqual(got, made);
  const byNumber = await client.getSubstrate(made.identity);
  assert.equal(byNumber.substrate_id, made.substrate_id);
  const out = await client.invoke(made.substrate_id, { parameters: { x: 4 } });
  assert.equal(out.result, 13);
  assert.equal(out.substrate_id, made.substrate_id);
  // A result past 2^53 arrives exact, as a bigint.
  const big = await client.createSubstrate({ expression_type: "lambda", expression_code: `lambda: 2 ** 70 + 1 + 0 * ${salt}` });
  assert.equal((await client.invoke(big.substrate_id)).result, 2n ** 70n + 1n);
});

test("relate, outgoing, traverse, shortest path", async () => {
  const [a, b, c] = await Promise.all(
    ["1", "2", "3"].map((n) => client.createSubstrate({ expression_type: "constant", expression_code: `${n}${salt}` })),
  );
  const ab = await client.createRelationship({ rel_type: "DEPENDENCY", source_id: a.substrate_id, target_id: b.substrate_id });
  await client.createRelationship({ rel_type: "DEPENDENCY", source_id: b.substrate_id, target_id: c.substrate_id });
  assert.equal(ab.source_id, a.substrate_id);
  assert.deepEqual(await client.getRelationship(ab.relationship_id), ab);
  const out = await client.outgoing(a.substrate_id);
  assert.equal(out.count, 1);
  assert.equal(out.relationships[0].target_id, b.substrate_id);
  const walk = await client.traverse({ start_substrate_id: a.substrate_id, max_depth: 5, include_substrates: true });
  assert.deepEqual(walk.nodes.map((n) => n.substrate_id), [a.substrate_id, b.substrate_id, c.substrate_id]);
  assert.deepEqual(walk.nodes.map((n) => n.depth), [0, 1, 2]);
  assert.equal(typeof walk.nodes[2].substrate.identity, "bigint");
  assert.deepEqual(walk.paths[2], [a.substrate_id, b.substrate_id, c.substrate_id]);
  const path = await client.shortestPath(a.substrate_id, c.substrate_id);
  assert.equal(path.length, 2);
  assert.deepEqual(path.path, [a.substrate_id, b.substrate_id, c.substrate_id]);
});

test("errors: 404, 422, 409 duplicate, 400 invalid id", async () => {
  const missing = await client.getSubstrate("0x1").catch((e) => e);
  assert.ok(missing instanceof sdk.NotFoundError, String(missing));
  assert.equal(missing.status, 404);
  assert.equal(missing.code, "not_found");
  const bad = await client.createSubstrate({ expression_type: "lambda", expression_code: "lambda: __import__('os')" }).catch((e) => e);
  assert.ok(bad instanceof sdk.ValidationError, String(bad));
  assert.equal(bad.status, 422);
  const body = { expression_type: "expression", expression_code: `7 * ${Date.now()}` };
  const first = await client.createSubstrate(body);
  const dup = await client.createSubstrate(body).catch((e) => e);
  assert.ok(dup instanceof sdk.DuplicateError && dup instanceof sdk.ConflictError, String(dup));
  assert.equal(dup.status, 409);
  assert.equal(dup.attempts, 1);
  assert.equal(dup.details.substrate_id, first.substrate_id);
  const badId = await client.getSubstrate("not-hex").catch((e) => e);
  assert.ok(badId instanceof sdk.InvalidIdError, String(badId));
  assert.equal(badId.status, 400);
  const other = await client.createSubstrate({ expression_type: "expression", expression_code: `8 * ${Date.now()}` });
  const noPath = await client.shortestPath(first.substrate_id, other.substrate_id).catch((e) => e);
  assert.ok(noPath instanceof sdk.NoPathError && noPath instanceof sdk.NotFoundError, String(noPath));
});

test("pagination to the end of 2,500 records", async () => {
  const made = new Set();
  for (let start = 0; start < 2500; start += 500) {
    const substrates = Array.from({ length: 500 }, (_, k) => ({ expression_type: "expression", expression_code: `${start + k} + 0.5 * ${salt}` }));
    const { results } = await client.createSubstrates({ substrates });
    for (const r of results) {
      assert.equal(r.status, 201, JSON.stringify(r));
      made.add(r.substrate_id);
    }
  }
  assert.equal(made.size, 2500);
  const total = (await client.listSubstrates({ limit: 1 })).count;
  assert.ok(total >= 2500);
  const seen = new Set();
  let previous = -1n;
  for await (const record of client.iterSubstrates({ limit: 100 })) {
    assert.ok(record.identity > previous, "ids ascend");
    previous = record.identity;
    seen.add(record.substrate_id);
  }
  assert.equal(seen.size, total);
  for (const id of made) assert.ok(seen.has(id), id);
  // A walk may start from a cursor the caller holds: the rest of the list, no repeats.
  const first = await client.listSubstrates({ limit: 100 });
  let rest = 0;
  for await (const record of client.iterSubstrates({ limit: 250, cursor: first.next_cursor })) {
    assert.ok(!first.substrates.some((s) => s.substrate_id === record.substrate_id));
    rest++;
  }
  assert.equal(rest, total - 100);
  // A body-paged list (query) and a query-paged one (search) walk to the end too.
  // Without a limit an iterator asks for pages of 1000: three requests for ~2,500 matches.
  const urls = [];
  const counted = new Client({ baseUrl: URL_, fetch: (url, init) => (urls.push(String(url)), fetch(url, init)) });
  let queried = 0;
  for await (const r of counted.iterQuery({ filters: { expression_type: "expression" } })) queried += r.expression_type === "expression" ? 1 : 0;
  assert.ok(queried >= 2500, String(queried));
  assert.equal(urls.length, Math.ceil(queried / 1000));
});

test("identity above 2^53 round-trips as bigint exactly", async () => {
  let found = null;
  for await (const r of client.iterSubstrates({ limit: 1000 })) {
    if (r.identity > 2n ** 53n + 1n && r.identity % 2n === 1n) {
      found = r;
      break;
    }
  }
  assert.ok(found, "no id above 2^53 among the records");
  assert.equal(typeof found.identity, "bigint");
  assert.equal(found.identity, BigInt(found.substrate_id));
  // Number() of it would round: the client must not have gone through a JS number.
  assert.notEqual(BigInt(Number(found.identity)), found.identity);
  const again = await client.getSubstrate(found.identity);
  assert.equal(again.identity, found.identity);
  assert.equal(again.substrate_id, found.substrate_id);
  const exported = await client.export();
  const same = exported.substrates.find((s) => s.substrate_id === found.substrate_id);
  assert.equal(same.identity, found.identity);
  // NDJSON is answered as text; its line holds the exact digits.
  const ndjson = await client.export({ format: "ndjson" });
  assert.equal(typeof ndjson, "string");
  const line = ndjson.split("\n").find((l) => l.includes(found.substrate_id));
  assert.ok(line.includes(`"identity":${found.identity}`), line);
  // Streamed into a sink, chunk by chunk: the same bytes as the whole answer.
  const chunks = [];
  const written = await client.exportTo({ write: async (c) => void chunks.push(c) }, { format: "ndjson" });
  const streamed = Buffer.concat(chunks);
  assert.equal(written, streamed.length);
  assert.ok(streamed.toString("utf8").includes(`"identity":${found.identity}`));
  assert.equal(streamed.toString("utf8").split("\n").length, ndjson.split("\n").length);
  await assert.rejects(() => new Client({ baseUrl: URL_, attempts: 1 }).exportTo({ write() {} }, { format: "xml" }), sdk.ValidationError);
});

/** A loopback server answering with `script[i]` for the i-th request; records what came. */
async function scripted(script) {
  const seen = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      seen.push({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() });
      const step = script[Math.min(seen.length, script.length) - 1];
      if (step === "cut") return req.socket.destroy();
      if (step === "hang") return; // never answers: the client's timeout must fire
      const [status, body, headers = {}] = step;
      res.writeHead(status, { "content-type": "application/json", ...headers });
      res.end(body === undefined ? "" : JSON.stringify(body));
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${server.address().port}`;
  return { url, seen, close: () => new Promise((r) => server.close(r)).then(() => server.closeAllConnections?.()) };
}

const HEALTH = { status: "healthy", timestamp: "2026-01-01T00:00:00Z", version: "0" };
const err = (code, message = code, details = {}) => ({ error: code, message, details });
const fast = (url, more = {}) => new Client({ baseUrl: url, backoff: 1, maxBackoff: 2, timeout: 5000, ...more });

test("retries: 503 with Retry-After, then 200", async () => {
  const s = await scripted([[503, err("overloaded"), { "retry-after": "1" }], [200, HEALTH]]);
  try {
    const t0 = Date.now();
    assert.deepEqual(await fast(s.url).health(), HEALTH);
    assert.equal(s.seen.length, 2);
    assert.ok(Date.now() - t0 >= 900, "waited Retry-After");
  } finally {
    await s.close();
  }
});

test("retries: a 429 or a 503 is retried even for a batch (refused before any work)", async () => {
  const ok = { results: [{ index: 0, status: 201, substrate_id: "0x000000000000002A" }] };
  const s = await scripted([[429, err("rate_limited"), { "retry-after": "0" }], [200, ok]]);
  const body = { substrates: [{ expression_type: "constant", expression_code: "42" }] };
  try {
    assert.deepEqual(await fast(s.url).createSubstrates(body), ok);
    assert.equal(s.seen.length, 2);
    assert.deepEqual(JSON.parse(s.seen[1].body), body);
  } finally {
    await s.close();
  }
  const t = await scripted([[503, err("storage_error")], [200, ok]]);
  try {
    assert.deepEqual(await fast(t.url).createSubstrates(body), ok);
    assert.equal(t.seen.length, 2);
  } finally {
    await t.close();
  }
  // A Retry-After longer than maxRetryAfter is not waited for.
  const u = await scripted([[429, err("rate_limited"), { "retry-after": "120" }], [200, ok]]);
  try {
    const e = await fast(u.url).createSubstrates(body).catch((x) => x);
    assert.ok(e instanceof sdk.RateLimitedError, String(e));
    assert.equal(e.retryAfter, 120);
    assert.equal(u.seen.length, 1);
  } finally {
    await u.close();
  }
});

test("retries: a cut connection is retried for a read, not for a non-idempotent write", async () => {
  const s = await scripted(["cut", "cut", [200, HEALTH]]);
  try {
    assert.deepEqual(await fast(s.url).health(), HEALTH);
    assert.equal(s.seen.length, 3);
  } finally {
    await s.close();
  }
  const t = await scripted(["cut", [201, {}]]);
  try {
    const e = await fast(t.url).createKey({ name: "k", scopes: ["admin"] }).catch((x) => x);
    assert.ok(e instanceof sdk.ConnectionFailedError, String(e));
    assert.equal(e.code, "connection_failed");
    assert.equal(e.attempts, 1);
    assert.equal(t.seen.length, 1);
  } finally {
    await t.close();
  }
});

test("retries: a retried create that answers 409 is a DuplicateError with attempts 2", async () => {
  const id = "0x00000000000000FF";
  const s = await scripted(["cut", [409, err("duplicate", "exists", { substrate_id: id })]]);
  try {
    const e = await fast(s.url).createSubstrate({ expression_type: "constant", expression_code: "255" }).catch((x) => x);
    assert.ok(e instanceof sdk.DuplicateError, String(e));
    assert.equal(e.attempts, 2);
    assert.equal(e.details.substrate_id, id);
    assert.equal(s.seen.length, 2);
  } finally {
    await s.close();
  }
});

test("retries stop: attempts are bounded, a timeout is a RequestTimeoutError", async () => {
  const s = await scripted([[503, err("overloaded"), { "retry-after": "0" }]]);
  try {
    const e = await fast(s.url, { attempts: 3 }).health().catch((x) => x);
    assert.ok(e instanceof sdk.OverloadedError, String(e));
    assert.equal(e.attempts, 3);
    assert.equal(s.seen.length, 3);
  } finally {
    await s.close();
  }
  const h = await scripted(["hang"]);
  try {
    const e = await fast(h.url, { attempts: 1 }).health({ timeout: 200 }).catch((x) => x);
    assert.ok(e instanceof sdk.RequestTimeoutError && e instanceof sdk.ConnectionFailedError, String(e));
    assert.equal(e.status, 504);
  } finally {
    await h.close();
  }
});

test("a server that is down is a ConnectionFailedError, retried even for a write", async () => {
  const s = await scripted([[200, HEALTH]]);
  const url = s.url;
  await s.close(); // the port is free now: nothing listens
  const e = await fast(url, { attempts: 2 }).health().catch((x) => x);
  assert.ok(e instanceof sdk.ConnectionFailedError, String(e));
  assert.equal(e.status, 503);
  assert.equal(e.attempts, 2);
  // Refused: the service never saw it, so even a non-idempotent request is sent again.
  const w = await fast(url, { attempts: 3 }).createKey({ name: "k", scopes: ["admin"] }).catch((x) => x);
  assert.ok(w instanceof sdk.ConnectionFailedError, String(w));
  assert.equal(w.details.cause_code, "ECONNREFUSED");
  assert.equal(w.attempts, 3);
});

test("auth: apiKey and token against --auth required", { skip: process.env.BFX_AUTH_URL ? false : "BFX_AUTH_URL not set" }, async () => {
  const base = process.env.BFX_AUTH_URL;
  const anonymous = await new Client({ baseUrl: base }).getSubstrate("0x1").catch((e) => e);
  assert.ok(anonymous instanceof sdk.UnauthorizedError, String(anonymous));
  assert.equal(anonymous.status, 401);
  const admin = new Client({ baseUrl: base, apiKey: process.env.BFX_ADMIN_KEY });
  const made = await admin.createSubstrate({ expression_type: "constant", expression_code: `12345${salt}` });
  assert.equal(made.identity, BigInt(made.substrate_id));
  const bearer = new Client({ baseUrl: base, token: process.env.BFX_ADMIN_KEY });
  assert.equal((await bearer.getSubstrate(made.substrate_id)).substrate_id, made.substrate_id);
  const keys = await admin.listKeys();
  assert.ok(keys.keys.length >= 2);
  const reader = new Client({ baseUrl: base, apiKey: process.env.BFX_READ_KEY });
  assert.equal((await reader.getSubstrate(made.substrate_id)).substrate_id, made.substrate_id);
  const denied = await reader.createSubstrate({ expression_type: "constant", expression_code: `54321${salt}` }).catch((e) => e);
  assert.ok(denied instanceof sdk.ForbiddenError, String(denied));
  assert.equal(denied.status, 403);
  assert.equal(denied.details.required_scope, "substrates:write");
  // A key made and revoked through the client (key_id: a text path parameter).
  const made2 = await admin.createKey({ name: `ts-${unique}`, scopes: ["substrates:read"] });
  const fresh = new Client({ baseUrl: base, apiKey: made2.secret });
  assert.equal((await fresh.getSubstrate(made.substrate_id)).substrate_id, made.substrate_id);
  await admin.revokeKey(made2.key_id);
  const revoked = await fresh.getSubstrate(made.substrate_id).catch((e) => e);
  assert.ok(revoked instanceof sdk.UnauthorizedError, String(revoked));
});
