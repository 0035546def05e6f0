// Offline: HTTP answers to typed errors.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  AuthenticationError,
  ConflictError,
  EftcloudError,
  InvalidRequestError,
  NetworkError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  RequestTimeoutError,
  ServerError,
  errorFromResponse,
} from '../dist/index.js';
import { parseRetryAfter } from '../dist/errors.js';

describe('errorFromResponse', () => {
  const cases = [
    [400, InvalidRequestError],
    [413, InvalidRequestError],
    [422, InvalidRequestError],
    [401, AuthenticationError],
    [403, PermissionDeniedError],
    [404, NotFoundError],
    [409, ConflictError],
    [429, RateLimitError],
    [500, ServerError],
    [503, ServerError],
    [418, EftcloudError],
  ];
  for (const [status, kind] of cases) {
    it(`${status} → ${kind.name}`, () => {
      const error = errorFromResponse(status, '{"error":"what went wrong"}', null);
      assert.equal(error.constructor, kind);
      assert.ok(error instanceof EftcloudError);
      assert.equal(error.name, kind.name);
      assert.equal(error.status, status);
      assert.equal(error.message, 'what went wrong');
      assert.deepEqual(error.body, { error: 'what went wrong' });
    });
  }

  it('429 carries Retry-After', () => {
    const error = errorFromResponse(
      429,
      '{"error":"Polling too fast: poll this transaction at most every 2.0 s"}',
      '2',
    );
    assert.ok(error instanceof RateLimitError);
    assert.equal(error.retryAfter, 2);
  });

  it('503 carries Retry-After', () => {
    const error = errorFromResponse(503, '{"error":"storage unavailable, retry later"}', '1');
    assert.ok(error instanceof ServerError);
    assert.equal(error.retryAfter, 1);
  });

  it('409 exposes amountRefundable and amountRemaining', () => {
    const error = errorFromResponse(
      409,
      '{"error":"refund of 5.00 exceeds what is refundable: 4.00","amountRefundable":"400"}',
      null,
    );
    assert.ok(error instanceof ConflictError);
    assert.equal(error.amountRefundable, '400');
    assert.equal(error.amountRemaining, undefined);
  });

  it('a body that is not JSON still gives the status and a hint', () => {
    const error = errorFromResponse(502, '<html>Bad gateway</html>', null);
    assert.ok(error instanceof ServerError);
    assert.equal(error.message, 'HTTP 502: <html>Bad gateway</html>');
    assert.equal(error.body, undefined);
  });

  it('an empty body gives the status', () => {
    assert.equal(errorFromResponse(404, '', null).message, 'HTTP 404');
  });

  it('a timeout is a network error', () => {
    assert.ok(new RequestTimeoutError('late') instanceof NetworkError);
  });
});

describe('parseRetryAfter', () => {
  it('reads seconds', () => assert.equal(parseRetryAfter('7'), 7));
  it('reads an HTTP date', () => {
    const now = Date.parse('2026-12-04T18:00:00Z');
    assert.equal(parseRetryAfter('Fri, 04 Dec 2026 18:00:30 GMT', now), 30);
  });
  it('ignores what it cannot read', () => {
    assert.equal(parseRetryAfter(null), undefined);
    assert.equal(parseRetryAfter('soon'), undefined);
  });
});
