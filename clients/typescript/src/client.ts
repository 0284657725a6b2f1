// The request layer under the generated methods: URL, headers, body, timeouts, retries,
// answers (bigint-aware) and errors. It knows no route: all of that is in OPERATIONS.

import { ApiError, BfxError, ConnectionFailedError, RequestTimeoutError, errorFor } from "./errors.js";
import { Id, OPERATIONS, OperationName, OperationSpec, Operations, RequestOptions } from "./generated.js";
import { coerce, parse, stringify } from "./json.js";

export interface ClientOptions {
  /** The service root, with or without `/api/v1` (e.g. `http://127.0.0.1:8000`). */
  baseUrl: string;
  /** Sent as `X-API-Key`. */
  apiKey?: string;
  /** An access token (or a key), sent as `Authorization: Bearer`. */
  token?: string;
  /** Milliseconds per attempt, answer body included (default 30000). */
  timeout?: number;
  /** Times a request is sent at most (default 4); 1 turns retrying off. */
  attempts?: number;
  /** First backoff in ms (default 200), doubled per attempt, a random half dropped. */
  backoff?: number;
  /** Longest backoff in ms (default 10000). */
  maxBackoff?: number;
  /** A longer `Retry-After` (ms, default 60000) is not waited for: the error is thrown. */
  maxRetryAfter?: number;
  /** Headers on every request. */
  headers?: Record<string, string>;
  /** A fetch to use instead of the global one (tests, proxies). */
  fetch?: typeof fetch;
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", stop);
      resolve();
    }, ms);
    const stop = (): void => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", stop, { once: true });
  });

/** `Retry-After`: seconds or an HTTP date; null when absent or unreadable. */
function retryAfter(value: string | null): number | null {
  if (value === null) return null;
  const s = Number(value);
  if (Number.isFinite(s)) return Math.max(0, s);
  const when = Date.parse(value);
  return Number.isNaN(when) ? null : Math.max(0, (when - Date.now()) / 1000);
}

/** A 64-bit id for a URL path: hex text as given, a bigint as `0x` + 16 hex digits. */
function pathId(id: Id): string {
  if (typeof id === "bigint") {
    if (id < 0n || id >= 1n << 64n) throw new RangeError(`${id} is not an unsigned 64-bit id`);
    return "0x" + id.toString(16).toUpperCase().padStart(16, "0");
  }
  return encodeURIComponent(id);
}

/** Failures while connecting: the service never saw the request, resending is harmless. */
const NEVER_SENT = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "UND_ERR_CONNECT_TIMEOUT"]);

/**
 * The bfx client: `new Client({ baseUrl, apiKey })`, one method per operation (camelCase of
 * the operation table's names), `iterX` for every paged list.
 *
 * Retries (the Python client's policy, docs/clients.md): a request is sent again after a
 * connection that could not be made, after a 429 or 503 (refused before any work; waiting
 * its `Retry-After`), and after a connection that broke once the request was out (or a
 * timeout) only when the table marks the operation `idempotent`. A retried create that
 * answers 409 throws `DuplicateError` with `attempts > 1`: an earlier attempt wrote it.
 */
export class Client extends Operations {
  readonly baseUrl: string;
  private readonly opts: Required<Pick<ClientOptions, "timeout" | "attempts" | "backoff" | "maxBackoff" | "maxRetryAfter">>;
  private readonly headers: Record<string, string>;
  private readonly fetchImpl: typeof fetch;

  constructor(options: ClientOptions) {
    super();
    this.baseUrl = options.baseUrl.replace(/\/+$/, "").replace(/\/api\/v1$/, "");
    this.opts = {
      timeout: options.timeout ?? 30_000,
      attempts: options.attempts ?? 4,
      backoff: options.backoff ?? 200,
      maxBackoff: options.maxBackoff ?? 10_000,
      maxRetryAfter: options.maxRetryAfter ?? 60_000,
    };
    this.headers = { accept: "application/json", ...options.headers };
    if (options.apiKey !== undefined) this.headers["x-api-key"] = options.apiKey;
    if (options.token !== undefined) this.headers["authorization"] = `Bearer ${options.token}`;
    const f = options.fetch ?? globalThis.fetch;
    if (typeof f !== "function") throw new TypeError("no fetch: Node 18+ or a browser, or pass options.fetch");
    this.fetchImpl = f;
  }

  protected async call(
    name: OperationName,
    path: readonly Id[],
    body: unknown,
    query: object | undefined,
    options: RequestOptions | undefined,
  ): Promise<unknown> {
    const op: OperationSpec = OPERATIONS[name];
    let i = 0;
    const url = new URL(this.baseUrl + op.path.replace(/\{[^}]+\}/g, () => pathId(path[i++] as Id)));
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v !== undefined && v !== null) url.searchParams.set(k, String(v));
    }
    const headers: Record<string, string> = { ...this.headers, ...options?.headers };
    let payload: string | Uint8Array | undefined;
    if (body !== undefined) {
      payload = typeof body === "string" || body instanceof Uint8Array ? body : stringify(body);
      headers["content-type"] = options?.contentType ?? "application/json";
    }

    for (let attempt = 1; ; attempt++) {
      const last = attempt >= this.opts.attempts;
      let status: number;
      let text: string;
      let contentType: string;
      let wait: number | null;
      try {
        ({ status, text, contentType, wait } = await this.send(op.method, url, headers, payload, options));
      } catch (err) {
        if (!(err instanceof ConnectionFailedError)) throw err; // the caller's own abort
        err.attempts = attempt;
        const neverSent = NEVER_SENT.has(String(err.details.cause_code));
        if (last || !(neverSent || op.idempotent)) throw err;
        await sleep(this.delay(attempt, null), options?.signal);
        continue;
      }
      if (status >= 200 && status < 300) {
        if (status === 204 || text === "") return undefined;
        // application/json (or +json) is parsed; NDJSON and other text come back as text.
        const media = contentType.split(";")[0]?.trim().toLowerCase() ?? "";
        if (media !== "application/json" && !media.endsWith("+json")) return text;
        return coerce(parse(text), op.response);
      }
      let answer: unknown = text;
      try {
        answer = parse(text);
      } catch {
        // not JSON (a proxy's page): the error keeps the text
      }
      const error: ApiError = errorFor(status, answer, wait);
      error.attempts = attempt;
      // 429 and 503 are answered before any work is done: resending is harmless.
      if (last || (status !== 429 && status !== 503)) throw error;
      if (wait !== null && wait * 1000 > this.opts.maxRetryAfter) throw error; // too long to wait
      await sleep(this.delay(attempt, wait), options?.signal);
    }
  }

  /**
   * The n-th wait: min(maxBackoff, backoff * 2^(n-1)) with a random part of its half
   * dropped (jitter: clients refused together do not return together), after the whole
   * `Retry-After` when there is one.
   */
  private delay(attempt: number, wait: number | null): number {
    const step = Math.min(this.opts.maxBackoff, this.opts.backoff * 2 ** (attempt - 1));
    return (wait ?? 0) * 1000 + step / 2 + (Math.random() * step) / 2;
  }

  /** One attempt: the answer's status and text, or a ConnectionFailedError. */
  private async send(
    method: string,
    url: URL,
    headers: Record<string, string>,
    body: string | Uint8Array | undefined,
    options: RequestOptions | undefined,
  ): Promise<{ status: number; text: string; contentType: string; wait: number | null }> {
    const controller = new AbortController();
    const user = options?.signal;
    const relay = (): void => controller.abort(user?.reason);
    if (user?.aborted) throw user.reason;
    user?.addEventListener("abort", relay, { once: true });
    let timedOut = false;
    const ms = options?.timeout ?? this.opts.timeout;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, ms);
    try {
      const res = await this.fetchImpl(url, { method, headers, body, signal: controller.signal });
      const text = await res.text();
      return {
        status: res.status,
        text,
        contentType: res.headers.get("content-type") ?? "",
        wait: retryAfter(res.headers.get("retry-after")),
      };
    } catch (err) {
      if (user?.aborted) throw user.reason;
      if (timedOut) throw new RequestTimeoutError(`${method} ${url.pathname}: no answer in ${ms} ms`, { cause: err });
      // Node's fetch (undici) names the system error in cause.code; browsers say nothing.
      const code = (err as { cause?: { code?: string } }).cause?.code;
      const failed = new ConnectionFailedError(`${method} ${url.origin}${url.pathname}: ${code ?? (err as Error).message}`, { cause: err });
      if (code !== undefined) failed.details.cause_code = code;
      throw failed;
    } finally {
      clearTimeout(timer);
      user?.removeEventListener("abort", relay);
    }
  }

  /**
   * The export streamed into `sink`, chunk by chunk as the service sends it — the whole
   * document is never held in memory: `fs.createWriteStream(path)` or a `FileHandle` in
   * Node, a `WritableStreamDefaultWriter` in a browser. Each chunk is awaited when
   * `write` returns a promise. Resolves to the bytes written. Not retried: bytes may
   * already be in the sink when a connection breaks (call it again with a fresh sink).
   */
  async exportTo(
    sink: { write(chunk: Uint8Array): unknown },
    query?: { format?: "json" | "ndjson" },
    options?: RequestOptions,
  ): Promise<number> {
    const op: OperationSpec = OPERATIONS.export;
    const url = new URL(this.baseUrl + op.path);
    if (query?.format !== undefined) url.searchParams.set("format", query.format);
    const headers: Record<string, string> = { ...this.headers, ...options?.headers };
    let res: Response;
    try {
      res = await this.fetchImpl(url, { method: op.method, headers, signal: options?.signal });
    } catch (err) {
      if (options?.signal?.aborted) throw options.signal.reason;
      throw new ConnectionFailedError(`GET ${url.origin}${url.pathname}: ${(err as Error).message}`, { cause: err });
    }
    if (res.status < 200 || res.status >= 300 || res.body === null) {
      const text = await res.text();
      let answer: unknown = text;
      try {
        answer = parse(text);
      } catch {
        // not JSON: the error keeps the text
      }
      throw errorFor(res.status, answer, retryAfter(res.headers.get("retry-after")));
    }
    const reader = res.body.getReader();
    let written = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return written;
      await sink.write(value);
      written += value.byteLength;
    }
  }

  protected async *pages(
    name: OperationName,
    path: readonly Id[],
    body: object | undefined,
    query: object | undefined,
    options: RequestOptions | undefined,
  ): AsyncGenerator<unknown, void, undefined> {
    const paged = OPERATIONS[name].paged;
    if (paged === null) throw new TypeError(`${name} is not a paged list`);
    const seen = new Set<string>();
    // A cursor the caller passed is where the walk starts.
    const start = (paged.cursorIn === "query" ? query : body) as { cursor?: string | null } | undefined;
    let cursor: string | null | undefined = start?.cursor;
    for (;;) {
      // Pages of 1000 (the most the service gives) unless the caller says otherwise.
      const size = paged.limit ? { limit: 1000 } : {};
      const page = (await (paged.cursorIn === "query"
        ? this.call(name, path, undefined, { ...size, ...query, cursor }, options)
        : this.call(name, path, { ...size, ...body, cursor }, undefined, options))) as Record<string, unknown>;
      yield* page[paged.items] as unknown[];
      const next = page.next_cursor as string | null;
      if (next === null || next === undefined) return;
      // The walk ends: a cursor never comes back unless the service is broken.
      if (seen.has(next)) throw new BfxError(`${name} returned cursor ${next} twice: stopped`);
      seen.add(next);
      cursor = next;
    }
  }
}
