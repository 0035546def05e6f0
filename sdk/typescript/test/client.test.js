// Offline: what the client sends, its automatic retries and the events iterator, over a
// scripted fetch (the live suite, live.test.js, runs against a real cloud).
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { describe, it } from 'node:test';

import {
  API_VERSION,
  AuthenticationError,
  EftcloudClient,
  NetworkError,
  RequestTimeoutError,
  ServerError,
} from '../dist/index.js';

const register = { registerId: 'reg-1', businessName: 'Toys Shop', vendorName: 'Till2Go' };

/** A fetch that answers from `script` in turn (a Response, or an Error to throw) and records each request. */
function scriptedFetch(script) {
  const requests = [];
  const fetch = async (url, init) => {
    requests.push({ url: new URL(url), init, body: init.body === undefined ? undefined : JSON.parse(init.body) });
    const next = script.shift();
    if (next === undefined) throw new Error('unexpected request');
    if (next instanceof Error) throw next;
    return next;
  };
  return { fetch, requests };
}

const json = (status, body, headers = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } });

const pending = { transactionId: 't-1', merchantAccessToken: 'tok', transactionStatus: 'PENDING', data: {} };

describe('requests', () => {
  it('sends the version, the key and the register; maps options to wire names', async () => {
    const { fetch, requests } = scriptedFetch([json(200, pending)]);
    const client = new EftcloudClient({ baseUrl: 'https://pay.example.com/POS/', register, apiKey: 'eftk_a_b', fetch });
    await client.purchase(1250, { posReference: 'sale-1', currency: 'NZD', fields: { Extra: 'x' } });
    const [request] = requests;
    assert.equal(request.url.href, 'https://pay.example.com/POS/Transaction');
    assert.equal(request.init.method, 'POST');
    assert.equal(request.init.headers['Eftcloud-Version'], API_VERSION);
    assert.equal(request.init.headers.Authorization, 'Bearer eftk_a_b');
    assert.deepEqual(request.body, {
      POSRegisterID: 'reg-1',
      POSBusinessName: 'Toys Shop',
      POSVendorName: 'Till2Go',
      TransactionMode: 'ASYNC',
      TransactionType: 'Card.Purchase',
      AmountTotal: '1250',
      Currency: 'NZD',
      PosReference: 'sale-1',
      Extra: 'x',
    });
  });

  it('sends the configured version and no key when none is given', async () => {
    const { fetch, requests } = scriptedFetch([json(200, { paired: false, online: false, busy: false })]);
    const client = new EftcloudClient({ baseUrl: 'http://127.0.0.1:8080', register, apiVersion: '2027-01-01', fetch });
    await client.registerStatus();
    const [request] = requests;
    assert.equal(request.init.headers['Eftcloud-Version'], '2027-01-01');
    assert.equal(request.init.headers.Authorization, undefined);
    assert.equal(request.url.search, '?POSRegisterID=reg-1&POSBusinessName=Toys+Shop&POSVendorName=Till2Go');
  });

  it('generates a UUID PosReference when none is given', async () => {
    const { fetch, requests } = scriptedFetch([json(200, pending), json(200, pending)]);
    const client = new EftcloudClient({ baseUrl: 'http://cloud', register, fetch });
    await client.refundPayment('t-0', 500);
    await client.refundPayment('t-0', 500);
    const [first, second] = requests.map((r) => r.body.PosReference);
    assert.match(first, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.notEqual(first, second, 'each start gets its own reference');
  });

  it('refuses an option it does not know instead of dropping it', async () => {
    const client = new EftcloudClient({ baseUrl: 'http://cloud', register, fetch: scriptedFetch([]).fetch });
    await assert.rejects(client.purchase(100, { amount: 5 }), /Unknown option 'amount'/);
  });
});

describe('automatic retries', () => {
  it('retries a transaction start after a network error with the same PosReference', async () => {
    const { fetch, requests } = scriptedFetch([
      new TypeError('fetch failed'),
      json(503, { error: 'storage unavailable, retry later' }, { 'Retry-After': '0' }),
      json(200, pending),
    ]);
    const client = new EftcloudClient({ baseUrl: 'http://cloud', register, fetch });
    const transaction = await client.purchase(500);
    assert.equal(transaction.transactionId, 't-1');
    assert.equal(requests.length, 3);
    const references = new Set(requests.map((r) => r.body.PosReference));
    assert.equal(references.size, 1, 'one reference across the retries');
  });

  it('gives up after maxRetries with the last error', async () => {
    const { fetch, requests } = scriptedFetch([
      json(500, { error: 'internal error, please retry' }),
      json(500, { error: 'internal error, please retry' }),
    ]);
    const client = new EftcloudClient({ baseUrl: 'http://cloud', register, maxRetries: 1, fetch });
    await assert.rejects(client.purchase(500), ServerError);
    assert.equal(requests.length, 2);
  });

  it('does not retry a refusal', async () => {
    const { fetch, requests } = scriptedFetch([json(400, { error: 'Invalid AmountTotal: must be greater than zero' })]);
    const client = new EftcloudClient({ baseUrl: 'http://cloud', register, fetch });
    await assert.rejects(client.purchase(0), { name: 'InvalidRequestError', message: /AmountTotal/ });
    assert.equal(requests.length, 1);
  });

  it('does not retry a pairing (its code is single-use)', async () => {
    const { fetch, requests } = scriptedFetch([new TypeError('fetch failed')]);
    const client = new EftcloudClient({ baseUrl: 'http://cloud', register, fetch });
    await assert.rejects(client.pair('1234 5678', { registerName: 'Front' }), NetworkError);
    assert.equal(requests.length, 1);
    assert.equal(requests[0].url.pathname, '/POS/Pairing/12345678');
  });

  it('types the final error', async () => {
    const { fetch } = scriptedFetch([
      json(401, { error: 'A valid POS API key is required: Authorization: Bearer <key>' }),
    ]);
    const client = new EftcloudClient({ baseUrl: 'http://cloud', fetch });
    await assert.rejects(client.events.list(), AuthenticationError);
  });
});

describe('events.iterate', () => {
  it('follows nextCursor until hasMore is false', async () => {
    const event = (n) => ({ id: `evt_${n}`, cursor: `c${n}`, type: 'transaction.created', data: {} });
    const { fetch, requests } = scriptedFetch([
      json(200, { events: [event(1), event(2)], nextCursor: 'c2', hasMore: true }),
      json(200, { events: [event(3)], nextCursor: 'c3', hasMore: false }),
    ]);
    const client = new EftcloudClient({ baseUrl: 'http://cloud', apiKey: 'eftk_a_b', fetch });
    const seen = [];
    for await (const e of client.events.iterate({
      after: 'c0',
      types: ['transaction.*', 'refund.completed'],
      limit: 2,
    })) {
      seen.push(e.id);
    }
    assert.deepEqual(seen, ['evt_1', 'evt_2', 'evt_3']);
    assert.deepEqual(
      requests.map((r) => r.url.searchParams.get('after')),
      ['c0', 'c2'],
    );
    assert.equal(requests[0].url.searchParams.get('types'), 'transaction.*,refund.completed');
    assert.equal(requests[0].url.searchParams.get('limit'), '2');
    assert.equal(requests[0].url.searchParams.has('wait'), false);
  });
});

describe('the global fetch against real sockets on this machine', () => {
  const freePort = () =>
    new Promise((resolve) => {
      const probe = createServer();
      probe.listen(0, '127.0.0.1', () => {
        const { port } = probe.address();
        probe.close(() => resolve(port));
      });
    });

  it('nothing listening is a network error', async () => {
    const client = new EftcloudClient({
      baseUrl: `http://127.0.0.1:${await freePort()}`,
      apiKey: 'eftk_a_b',
      maxRetries: 0,
    });
    await assert.rejects(client.events.list(), (error) => {
      assert.ok(error instanceof NetworkError && !(error instanceof RequestTimeoutError), `${error}`);
      return true;
    });
  });

  it('silence is a timeout', async () => {
    const silent = createServer(() => {});
    await new Promise((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const client = new EftcloudClient({
        baseUrl: `http://127.0.0.1:${silent.address().port}`,
        apiKey: 'eftk_a_b',
        timeoutMs: 200,
        maxRetries: 0,
      });
      await assert.rejects(client.events.list(), RequestTimeoutError);
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });
});

describe('configuration errors', () => {
  it('a POS call without a register says so', async () => {
    const client = new EftcloudClient({ baseUrl: 'http://cloud', fetch: scriptedFetch([]).fetch });
    await assert.rejects(client.registerStatus(), /needs the register/);
  });
});
