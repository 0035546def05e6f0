/**
 * One HTTP exchange with the cloud: URL, headers, JSON, the timeout, error typing, and the
 * automatic retries of requests that are safe to repeat.
 */

import { EftcloudError, NetworkError, RequestTimeoutError, ServerError, errorFromResponse } from './errors.js';

/** The API version this SDK is written against, sent as `Eftcloud-Version`. */
export const API_VERSION = '2026-12-01';

/** The settings every request uses (from the client's options). */
export interface HttpSettings {
  /** The cloud's base URL, without a trailing slash. */
  baseUrl: string;
  apiKey: string | undefined;
  apiVersion: string;
  timeoutMs: number;
  maxRetries: number;
  fetch: typeof fetch;
}

/** A value of the query string; `undefined` leaves the key out. */
export type QueryValue = string | number | boolean | undefined;

/** One request. */
export interface HttpRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** The path below the base URL, starting with `/`, its segments already encoded. */
  path: string;
  query?: Record<string, QueryValue>;
  /** Sent as JSON. */
  body?: Record<string, unknown>;
  /**
   * The request may be sent again after a network error or a 5xx: it reads only, or it carries
   * a `PosReference` so that the cloud answers a repeat with the original.
   */
  retryable: boolean;
  /** A long-poll's `wait` in seconds: the timeout is extended by it. */
  waitSeconds?: number;
}

/** First retry delay; it doubles with each retry, unless the cloud says `Retry-After`. */
const RETRY_BASE_DELAY_MS = 500;
/** Longest delay between two retries. */
const RETRY_MAX_DELAY_MS = 5_000;
/** What a long-poll's timeout gets on top of its `wait`. */
const LONG_POLL_MARGIN_MS = 10_000;

/**
 * Sends `request` and returns its parsed JSON body (undefined for an empty body), or throws the
 * typed error. A retryable request is sent again, up to `maxRetries` times, after a
 * {@link NetworkError} (timeouts included) or a {@link ServerError}.
 */
export async function send<T>(settings: HttpSettings, request: HttpRequest): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return (await sendOnce(settings, request)) as T;
    } catch (error) {
      const transient = error instanceof NetworkError || error instanceof ServerError;
      if (!request.retryable || !transient || attempt >= settings.maxRetries) throw error;
      await sleep(retryDelayMs(error, attempt));
    }
  }
}

async function sendOnce(settings: HttpSettings, request: HttpRequest): Promise<unknown> {
  const headers: Record<string, string> = {
    Accept: 'application/json',
    'Eftcloud-Version': settings.apiVersion,
  };
  if (settings.apiKey !== undefined) headers.Authorization = `Bearer ${settings.apiKey}`;
  if (request.body !== undefined) headers['Content-Type'] = 'application/json';

  const timeoutMs =
    settings.timeoutMs + (request.waitSeconds ?? 0) * 1000 + (request.waitSeconds ? LONG_POLL_MARGIN_MS : 0);
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const url = buildUrl(settings.baseUrl, request.path, request.query);
  try {
    let response: Response;
    let text: string;
    try {
      response = await settings.fetch(url, {
        method: request.method,
        headers,
        body: request.body === undefined ? undefined : JSON.stringify(request.body),
        signal: controller.signal,
      });
      text = await response.text();
    } catch (cause) {
      if (controller.signal.aborted) {
        throw new RequestTimeoutError(`${request.method} ${request.path}: no answer within ${timeoutMs} ms`, { cause });
      }
      throw new NetworkError(`${request.method} ${request.path}: ${describe(cause)}`, { cause });
    }
    if (!response.ok) throw errorFromResponse(response.status, text, response.headers.get('Retry-After'));
    if (text === '') return undefined;
    try {
      return JSON.parse(text);
    } catch (cause) {
      throw new EftcloudError(`${request.method} ${request.path}: the answer is not JSON`, {
        status: response.status,
        cause,
      });
    }
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The cloud's base URL without a trailing slash; a SmartConnect-style environment URL
 * (`https://host/POS`) becomes the cloud's (`https://host`).
 */
export function normalizeBaseUrl(baseUrl: string): string {
  const url = new URL(baseUrl.trim());
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new TypeError(`baseUrl must be an http or https URL, not '${baseUrl}'`);
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '').replace(/\/pos$/i, '')}`;
}

/** `{base}{path}?{query}`, leaving out undefined values. */
export function buildUrl(baseUrl: string, path: string, query: Record<string, QueryValue> = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined) params.set(key, String(value));
  }
  const search = params.toString();
  return `${baseUrl}${path}${search === '' ? '' : `?${search}`}`;
}

function retryDelayMs(error: NetworkError | ServerError, attempt: number): number {
  const retryAfter = error instanceof ServerError ? error.retryAfter : undefined;
  if (retryAfter !== undefined) return Math.min(retryAfter * 1000, RETRY_MAX_DELAY_MS);
  return Math.min(RETRY_BASE_DELAY_MS * 2 ** attempt, RETRY_MAX_DELAY_MS);
}

/** Waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function describe(cause: unknown): string {
  if (cause instanceof Error) {
    const inner = cause.cause instanceof Error ? ` (${cause.cause.message})` : '';
    return `${cause.message}${inner}`;
  }
  return String(cause);
}
