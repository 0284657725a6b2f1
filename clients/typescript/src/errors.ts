// Every failure the client reports: one class per error code of the API (the codes of
// python/bfx/errors.py and the HTTP layer), a base class per status for codes this
// version does not know, and ConnectionFailedError/RequestTimeoutError when no answer
// came (the names and codes of the Python client's).

/**
 * Base of every error the client throws: `status` (the HTTP status received, or what a
 * gateway would answer when none came), `code` (the API's `error` field), `details`, and
 * `attempts`: how many times the call was sent. A `DuplicateError` with `attempts > 1` on a
 * create means an earlier attempt whose answer was lost most likely wrote the record: its
 * id is in `details` (`substrate_id` / `relationship_id`). The same holds for a
 * `NotFoundError` with `attempts > 1` on a delete.
 */
export class BfxError extends Error {
  status: number;
  code: string;
  details: Record<string, unknown>;
  attempts = 1;

  constructor(message: string, options: { status?: number; code?: string; details?: Record<string, unknown>; cause?: unknown } = {}) {
    super(message);
    this.name = new.target.name;
    this.status = options.status ?? 0;
    this.code = options.code ?? "client_error";
    this.details = options.details ?? {};
    if ("cause" in options) (this as { cause?: unknown }).cause = options.cause;
  }
}

/** The service answered with an error: `{error, message, details}` and its HTTP status. */
export class ApiError extends BfxError {
  /** seconds, from `Retry-After` (429, 503), else null */
  readonly retryAfter: number | null;

  constructor(status: number, code: string, message: string, details: Record<string, unknown> = {}, retryAfter: number | null = null) {
    super(`${status} ${code}: ${message}`, { status, code, details });
    this.retryAfter = retryAfter;
  }
}

export class BadRequestError extends ApiError {} // 400
export class MalformedJsonError extends BadRequestError {}
export class UnauthorizedError extends ApiError {} // 401
export class ForbiddenError extends ApiError {} // 403
export class NotFoundError extends ApiError {} // 404
export class NoPathError extends NotFoundError {}
export class MethodNotAllowedError extends ApiError {} // 405
export class ConflictError extends ApiError {} // 409
export class DuplicateError extends ConflictError {}
export class CollisionError extends ConflictError {}
export class PayloadTooLargeError extends ApiError {} // 413
export class BodyTooLargeError extends PayloadTooLargeError {}
export class TooManyItemsError extends PayloadTooLargeError {}
export class UnsupportedMediaTypeError extends ApiError {} // 415
export class ValidationError extends ApiError {} // 422
export class InvalidIdError extends ValidationError {} // 400 in a path, 422 in a body
export class InvalidRelationshipTypeError extends ValidationError {}
export class SandboxRejectedError extends ValidationError {}
export class InvocationError extends ValidationError {}
export class LimitExceededError extends ValidationError {}
export class ResultTooLargeError extends ValidationError {}
export class BatchFailedError extends ValidationError {}
export class RateLimitedError extends ApiError {} // 429
export class ServerError extends ApiError {} // 500: a bug
export class UnavailableError extends ApiError {} // 503
export class OverloadedError extends UnavailableError {}
export class StorageError extends UnavailableError {}
export class RateLimitUnavailableError extends UnavailableError {}

/**
 * No answer: the service could not be reached, or the connection broke before an answer
 * (refused, reset, DNS...). `status` 503, code `connection_failed`, as a gateway would say.
 */
export class ConnectionFailedError extends BfxError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { status: 503, code: "connection_failed", ...options });
  }
}
/** No answer within the client's timeout (per attempt): `status` 504, `request_timeout`. */
export class RequestTimeoutError extends ConnectionFailedError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.status = 504;
    this.code = "request_timeout";
  }
}

type ApiErrorClass = new (...args: ConstructorParameters<typeof ApiError>) => ApiError;

const BY_CODE: Record<string, ApiErrorClass> = {
  malformed_json: MalformedJsonError,
  unauthorized: UnauthorizedError,
  forbidden: ForbiddenError,
  not_found: NotFoundError,
  no_path: NoPathError,
  method_not_allowed: MethodNotAllowedError,
  conflict: ConflictError,
  duplicate: DuplicateError,
  collision: CollisionError,
  body_too_large: BodyTooLargeError,
  too_many_items: TooManyItemsError,
  unsupported_media_type: UnsupportedMediaTypeError,
  validation_error: ValidationError,
  invalid_id: InvalidIdError,
  invalid_relationship_type: InvalidRelationshipTypeError,
  sandbox_rejected: SandboxRejectedError,
  invocation_error: InvocationError,
  limit_exceeded: LimitExceededError,
  result_too_large: ResultTooLargeError,
  batch_failed: BatchFailedError,
  rate_limited: RateLimitedError,
  overloaded: OverloadedError,
  storage_error: StorageError,
  rate_limit_unavailable: RateLimitUnavailableError,
};

const BY_STATUS: Record<number, ApiErrorClass> = {
  400: BadRequestError,
  401: UnauthorizedError,
  403: ForbiddenError,
  404: NotFoundError,
  405: MethodNotAllowedError,
  409: ConflictError,
  413: PayloadTooLargeError,
  415: UnsupportedMediaTypeError,
  422: ValidationError,
  429: RateLimitedError,
  503: UnavailableError,
};

/** The error for an answer's status and body (any body: a proxy's HTML page too). */
export function errorFor(status: number, body: unknown, retryAfter: number | null): ApiError {
  const b = (body !== null && typeof body === "object" ? body : {}) as Record<string, unknown>;
  const code = typeof b.error === "string" ? b.error : `http_${status}`;
  const message = typeof b.message === "string" ? b.message : typeof body === "string" ? body.slice(0, 200) : "";
  const details = b.details !== null && typeof b.details === "object" ? (b.details as Record<string, unknown>) : {};
  const Kind = BY_CODE[code] ?? BY_STATUS[status] ?? (status >= 500 ? ServerError : ApiError);
  return new Kind(status, code, message, details, retryAfter);
}
