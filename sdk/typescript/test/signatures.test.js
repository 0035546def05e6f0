// Offline: Eftcloud-Signature verification against the vectors shared with the Python SDK
// (sdk/test-vectors/webhook-signatures.json), and both HMAC backends.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

import { EftcloudError, WebhookSignatureError, constructEvent, signPayload, verifySignature } from '../dist/index.js';
import { nodeHmacSha256, timingSafeEqual, webCryptoHmacSha256 } from '../dist/platform.js';

const vectors = JSON.parse(
  readFileSync(new URL('../../test-vectors/webhook-signatures.json', import.meta.url), 'utf8'),
);

describe('verifySignature: the shared vectors', () => {
  for (const v of vectors.cases) {
    it(`${v.name} → ${v.expect}`, async () => {
      const verify = () =>
        verifySignature(v.payload, v.header, v.secret, { now: v.now, toleranceSeconds: v.toleranceSeconds });
      if (v.expect === 'ok') {
        await verify();
      } else {
        await assert.rejects(verify, (error) => {
          assert.ok(error instanceof WebhookSignatureError, `not a WebhookSignatureError: ${error}`);
          assert.ok(error instanceof EftcloudError);
          assert.equal(error.reason, v.expect);
          return true;
        });
      }
    });
  }

  it('takes the payload as bytes as well as a string', async () => {
    const v = vectors.cases[0];
    await verifySignature(new TextEncoder().encode(v.payload), v.header, v.secret, { now: v.now });
  });

  it('refuses a missing header as malformed', async () => {
    const v = vectors.cases[0];
    for (const header of [undefined, null]) {
      await assert.rejects(verifySignature(v.payload, header, v.secret, { now: v.now }), {
        name: 'WebhookSignatureError',
        reason: 'malformed_header',
      });
    }
  });

  it('uses the clock and a 300 s tolerance by default', async () => {
    const { secret, payload } = vectors.signing;
    const now = Math.floor(Date.now() / 1000);
    await verifySignature(payload, await signPayload(payload, secret, now - 290), secret);
    await assert.rejects(verifySignature(payload, await signPayload(payload, secret, now - 310), secret), {
      reason: 'timestamp_outside_tolerance',
    });
  });
});

describe('signPayload and constructEvent', () => {
  it('signs exactly as the vectors say', async () => {
    const { secret, payload, timestamp, header } = vectors.signing;
    assert.equal(await signPayload(payload, secret, timestamp), header);
  });

  it('constructEvent verifies and parses the event', async () => {
    const { secret, payload, timestamp, header } = vectors.signing;
    const event = await constructEvent(payload, header, secret, { now: timestamp });
    assert.equal(event.type, 'transaction.completed');
    assert.equal(event.data.businessName, 'Café Olé');
  });

  it('constructEvent parses nothing it could not verify', async () => {
    const { secret, payload, timestamp, header } = vectors.signing;
    await assert.rejects(constructEvent(payload, header, `${secret}x`, { now: timestamp }), {
      reason: 'no_matching_signature',
    });
  });
});

describe('HMAC-SHA256 backends', () => {
  // RFC 4231, test case 2.
  const key = new TextEncoder().encode('Jefe');
  const data = new TextEncoder().encode('what do ya want for nothing?');
  const expected = '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843';
  const hex = (bytes) => Buffer.from(bytes).toString('hex');

  it('node:crypto', async () => assert.equal(hex(await nodeHmacSha256(key, data)), expected));
  // Node 18 has WebCrypto only as node:crypto's webcrypto, not as the global browsers have.
  const noGlobalWebCrypto = globalThis.crypto?.subtle ? false : 'no global crypto.subtle in this Node';
  it('WebCrypto (crypto.subtle), as in browsers', { skip: noGlobalWebCrypto }, async () =>
    assert.equal(hex(await webCryptoHmacSha256(key, data)), expected),
  );

  it('timingSafeEqual compares whole byte strings', () => {
    assert.equal(timingSafeEqual(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 3])), true);
    assert.equal(timingSafeEqual(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 4])), false);
    assert.equal(timingSafeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2, 3])), false);
  });
});
