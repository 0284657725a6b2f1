// JSON text <-> values without losing 64-bit integers.
//
// JSON.parse turns 18446744073709551615 into 18446744073709552000, and Node 20 has no
// reviver access to the source text, so answers are read by this small parser: an integer
// literal that is not a safe JS integer becomes a bigint, everything else is what
// JSON.parse gives. `stringify` writes bigints as bare integer literals.

import { UINT64_FIELDS } from "./generated.js";

export function parse(text: string): unknown {
  let i = 0;
  const fail = (what: string): never => {
    throw new SyntaxError(`invalid JSON at ${i}: ${what}`);
  };
  const ws = (): void => {
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      i++;
    }
  };
  const value = (): unknown => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const out: Record<string, unknown> = {};
      ws();
      if (text[i] === "}") {
        i++;
        return out;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a key");
        const key = str();
        ws();
        if (text[i++] !== ":") fail("expected ':'");
        // defineProperty: a "__proto__" key stays a plain field.
        Object.defineProperty(out, key, { value: value(), enumerable: true, writable: true, configurable: true });
        ws();
        const sep = text[i++];
        if (sep === "}") return out;
        if (sep !== ",") fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const out: unknown[] = [];
      ws();
      if (text[i] === "]") {
        i++;
        return out;
      }
      for (;;) {
        out.push(value());
        ws();
        const sep = text[i++];
        if (sep === "]") return out;
        if (sep !== ",") fail("expected ',' or ']'");
      }
    }
    if (c === '"') return str();
    if (text.startsWith("true", i)) return (i += 4), true;
    if (text.startsWith("false", i)) return (i += 5), false;
    if (text.startsWith("null", i)) return (i += 4), null;
    return num();
  };
  const str = (): string => {
    // The string's own text, escapes included, is valid JSON: JSON.parse decodes it.
    const start = i++;
    while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    if (i >= text.length) fail("unterminated string");
    return JSON.parse(text.slice(start, ++i)) as string;
  };
  const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
  const num = (): number | bigint => {
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (m === null) return fail("unexpected character");
    i = NUMBER.lastIndex;
    const raw = m[0] as string;
    const n = Number(raw);
    if (m[1] === undefined && m[2] === undefined && !Number.isSafeInteger(n)) return BigInt(raw);
    return n;
  };
  const out = value();
  ws();
  if (i !== text.length) fail("trailing characters");
  return out;
}

/** JSON text of a value; bigints are written as integers (JSON.stringify throws on them). */
export function stringify(value: unknown): string {
  if (typeof value === "bigint") return value.toString();
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isFinite(value)) {
      throw new TypeError(`${value} is not a JSON number`);
    }
    return JSON.stringify(value) ?? "null";
  }
  if (typeof (value as { toJSON?: unknown }).toJSON === "function") {
    return stringify((value as { toJSON(): unknown }).toJSON());
  }
  if (Array.isArray(value)) {
    return "[" + value.map((v) => (v === undefined || typeof v === "function" ? "null" : stringify(v))).join(",") + "]";
  }
  const parts: string[] = [];
  for (const [k, v] of Object.entries(value)) {
    if (v === undefined || typeof v === "function") continue;
    parts.push(JSON.stringify(k) + ":" + stringify(v));
  }
  return "{" + parts.join(",") + "}";
}

/** Turn the schema's uint64 fields into bigint (a small one parsed as a number). */
export function coerce(value: unknown, schema: string | null): unknown {
  const shape = schema === null ? undefined : UINT64_FIELDS[schema];
  if (shape === undefined || value === null || typeof value !== "object") return value;
  const record = value as Record<string, unknown>;
  for (const [field, kind] of Object.entries(shape)) {
    const v = record[field];
    if (v === undefined || v === null) continue;
    if (kind === "u64") {
      if (typeof v === "number") record[field] = BigInt(v);
    } else if (typeof kind === "string") {
      coerce(v, kind);
    } else if (Array.isArray(v)) {
      for (const item of v) coerce(item, kind[0] ?? null);
    }
  }
  return value;
}
