/**
 * Typed errors. Every failure the SDK reports is an {@link EftcloudError}; its subclasses say
 * what kind of failure it was, so callers can `catch` by kind:
 *
 * | class | when |
 * |---|---|
 * | {@link InvalidRequestError} | 400, 413, 422: a field is missing or invalid (the message names it) |
 * | {@link AuthenticationError} | 401: no key, a wrong or revoked key, an invalid or expired polling token |
 * | {@link PermissionDeniedError} | 403: the key lacks the scope, or belongs to another vendor |
 * | {@link NotFoundError} | 404: unknown route, transaction, event or endpoint (or one the key may not see) |
 * | {@link ConflictError} | 409: a reused `PosReference`, a completed transaction, a refund beyond what is refundable |
 * | {@link RateLimitError} | 429: device busy, polling too fast, too many attempts (`retryAfter`) |
 * | {@link ServerError} | 5xx: the cloud could not answer now (`retryAfter` when it said) |
 * | {@link NetworkError} | no HTTP answer at all (connection refused, reset, DNS) |
 * | {@link RequestTimeoutError} | no answer in time (a {@link NetworkError}) |
 * | {@link WebhookSignatureError} | a webhook or callback whose signature does not verify |
 */

/** What an error carries besides its message. */
export interface ErrorDetails {
  /** The HTTP status, when the cloud answered. */
  status?: number;
  /** The parsed JSON body of the answer (`{"error": "..."}` and any extra keys), if any. */
  body?: unknown;
  /** `Retry-After` of the answer, in seconds, when it had one. */
  retryAfter?: number;
  /** The underlying error (a network failure). */
  cause?: unknown;
}

/** The base of every error this SDK throws. */
export class EftcloudError extends Error {
  override name = 'EftcloudError';
  /** The HTTP status, when the cloud answered. */
  readonly status: number | undefined;
  /** The parsed JSON body of the answer, if any. */
  readonly body: unknown;

  constructor(message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.status = details.status;
    this.body = details.body;
  }
}

/** 400, 413 or 422: the request was refused as it is; change it before sending it again. */
export class InvalidRequestError extends EftcloudError {
  override name = 'InvalidRequestError';
}

/** 401: no credential, a wrong, revoked or expired key, an invalid or expired polling token. */
export class AuthenticationError extends EftcloudError {
  override name = 'AuthenticationError';
}

/** 403: the credential is valid but may not do this (a missing scope, another vendor). */
export class PermissionDeniedError extends EftcloudError {
  override name = 'PermissionDeniedError';
}

/** 404: nothing there, or nothing this credential may see (answered alike, so ids cannot be probed). */
export class NotFoundError extends EftcloudError {
  override name = 'NotFoundError';
}

/**
 * 409: the request contradicts the state: a `PosReference` reused for a different request, a
 * cancel of a completed transaction, a follow-up that does not fit its payment, a tender over
 * what its order has left, a device without the capability the request needs.
 */
export class ConflictError extends EftcloudError {
  override name = 'ConflictError';

  /** On a refused refund: what is still refundable, in minor units (`amountRefundable`). */
  get amountRefundable(): string | undefined {
    return stringMember(this.body, 'amountRefundable');
  }

  /** On a refused tender: what the order has left to pay, in minor units (`amountRemaining`). */
  get amountRemaining(): string | undefined {
    return stringMember(this.body, 'amountRemaining');
  }
}

/** 429: too many requests, or the device is busy with another transaction. */
export class RateLimitError extends EftcloudError {
  override name = 'RateLimitError';
  /** Seconds to wait before asking again (`Retry-After`), when the cloud said. */
  readonly retryAfter: number | undefined;

  constructor(message: string, details: ErrorDetails = {}) {
    super(message, details);
    this.retryAfter = details.retryAfter;
  }
}

/** 5xx: the cloud could not answer now (nothing was stored on a 503); safe to retry the same request. */
export class ServerError extends EftcloudError {
  override name = 'ServerError';
  /** Seconds to wait before asking again (`Retry-After`), when the cloud said. */
  readonly retryAfter: number | undefined;

  constructor(message: string, details: ErrorDetails = {}) {
    super(message, details);
    this.retryAfter = details.retryAfter;
  }
}

/** No HTTP answer: the connection failed or broke. The request may or may not have arrived. */
export class NetworkError extends EftcloudError {
  override name = 'NetworkError';
}

/** No answer within the timeout (or a transaction still pending when a wait for it ended). */
export class RequestTimeoutError extends NetworkError {
  override name = 'RequestTimeoutError';
}

/** Why a webhook signature was refused. */
export type SignatureFailure =
  /** The `Eftcloud-Signature` header is missing or not `t=<unix seconds>,v1=<64 hex digits>[,v1=...]`. */
  | 'malformed_header'
  /** No `v1` value is the HMAC of this payload under this secret: forged, altered, or another secret. */
  | 'no_matching_signature'
  /** Correctly signed, but `t` is further from now than the tolerance: possibly a replay. */
  | 'timestamp_outside_tolerance';

/** A webhook delivery or completion callback whose signature does not verify: do not trust its body. */
export class WebhookSignatureError extends EftcloudError {
  override name = 'WebhookSignatureError';
  /** Which check failed. */
  readonly reason: SignatureFailure;

  constructor(reason: SignatureFailure, message: string) {
    super(message);
    this.reason = reason;
  }
}

/**
 * The error for an HTTP answer with a non-2xx `status`: the class by status, the message from
 * the body's `error` (or the status line when the body is not eftcloud's JSON).
 *
 * @param bodyText the raw answer body
 * @param retryAfterHeader the `Retry-After` header, if any
 */
export function errorFromResponse(status: number, bodyText: string, retryAfterHeader: string | null): EftcloudError {
  const body = parseJson(bodyText);
  const message = stringMember(body, 'error') ?? `HTTP ${status}${describeText(bodyText)}`;
  const details: ErrorDetails = { status, body, retryAfter: parseRetryAfter(retryAfterHeader) };
  switch (status) {
    case 400:
    case 413:
    case 422:
      return new InvalidRequestError(message, details);
    case 401:
      return new AuthenticationError(message, details);
    case 403:
      return new PermissionDeniedError(message, details);
    case 404:
      return new NotFoundError(message, details);
    case 409:
      return new ConflictError(message, details);
    case 429:
      return new RateLimitError(message, details);
    default:
      return status >= 500 ? new ServerError(message, details) : new EftcloudError(message, details);
  }
}

/**
 * `Retry-After` in seconds: a number of seconds or an HTTP date (counted from now, at least 0);
 * undefined when absent or unreadable.
 */
export function parseRetryAfter(header: string | null, nowMs: number = Date.now()): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  const text = header.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - nowMs) / 1000));
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** A short hint of a non-JSON body (a proxy's error page, say) for the message. */
function describeText(text: string): string {
  const trimmed = text.trim();
  if (trimmed === '') return '';
  return `: ${trimmed.length > 200 ? `${trimmed.slice(0, 200)}…` : trimmed}`;
}

function stringMember(value: unknown, key: string): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const member = (value as Record<string, unknown>)[key];
  return typeof member === 'string' ? member : undefined;
}
