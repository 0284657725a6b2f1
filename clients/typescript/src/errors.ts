// Every failure the client reports: one class per error code of the API (the codes of
// python/bfx/errors.py and the HTTP layer), a base class per status for codes this
// version does not know, and ConnectionError/TimeoutError when no answer came.

/** Base of every error the client throws. */
export class BfxError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message);
    this.name = new.target.name;
    if (options && "cause" in options) (this as { cause?: unknown }).cause = options.cause;
  }
}

/** The service answered with an error: `{error, message, details}` and its HTTP status. */
export class ApiError extends BfxError {
  readonly status: number;
  readonly code: string;
  readonly details: Record<string, unknown>;
  /** seconds, from `Retry-After` (429, 503), else null */
  readonly retryAfter: number | null;
  /**
   * How many times this call was sent. A `DuplicateError` with `attempts > 1` on a create
   * means an earlier attempt whose answer was lost most likely wrote the record: its id is
   * in `details` (`substrate_id` / `relationship_id`).
   */
  attempts = 1;

  constructor(status: number, code: string, message: string, details: Record<string, unknown> = {}, retryAfter: number | null = null) {
    super(`${status} ${code}: ${message}`);
    this.status = status;
    this.code = code;
    this.details = details;
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
export class RequestTimeoutError extends ApiError {} // 408: the body came in too slowly
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

/** No answer: the connection failed or was cut (the request may or may not have run). */
export class ConnectionError extends BfxError {
  attempts = 1;
}
/** No answer within the timeout (per attempt). */
export class TimeoutError extends ConnectionError {}

type ApiErrorClass = new (...args: ConstructorParameters<typeof ApiError>) => ApiError;

const BY_CODE: Record<string, ApiErrorClass> = {
  malformed_json: MalformedJsonError,
  unauthorized: UnauthorizedError,
  forbidden: ForbiddenError,
  not_found: NotFoundError,
  no_path: NoPathError,
  method_not_allowed: MethodNotAllowedError,
  request_timeout: RequestTimeoutError,
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
  408: RequestTimeoutError,
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
