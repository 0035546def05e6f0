// Live: the SDK against a running cloud and reference terminal (sdk/run-tests.sh starts both
// and sets the variables below). The steps run in order and build on each other: pairing, a
// purchase, its refund, a cancel, errors, the event log, webhooks.
//
//   EFTCLOUD_BASE_URL      the cloud, e.g. http://127.0.0.1:8080
//   EFTCLOUD_API_KEY       a merchant key with pos:transact, pos:read, pos:refund, webhooks:manage
//   EFTCLOUD_PAIRING_CODE  the code the terminal shows
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { after, before, describe, it } from 'node:test';

import {
  AuthenticationError,
  ConflictError,
  EftcloudClient,
  InvalidRequestError,
  NotFoundError,
  RateLimitError,
  WebhookSignatureError,
  constructEvent,
  verifySignature,
} from '../dist/index.js';

const { EFTCLOUD_BASE_URL: baseUrl, EFTCLOUD_API_KEY: apiKey, EFTCLOUD_PAIRING_CODE: pairingCode } = process.env;
const skip = baseUrl
  ? false
  : 'no live cloud: set EFTCLOUD_BASE_URL, EFTCLOUD_API_KEY and EFTCLOUD_PAIRING_CODE (sdk/run-tests.sh does)';

/** An amount the card simulator approves (README "Simulator test amounts"). */
const APPROVED_AMOUNT = 1000;
/** An amount the simulator approves only after --slow-secs: time to cancel it. */
const SLOW_AMOUNT = 1053;

describe('live: the SDK against a running cloud', { skip, timeout: 90_000 }, () => {
  const register = { registerId: randomUUID(), businessName: 'SDK Toys', vendorName: 'SdkTests' };
  const client = new EftcloudClient({ baseUrl, apiKey, register });
  /** What earlier steps leave for later ones. */
  const state = {};
  const need = (key) => {
    assert.ok(state[key], `needs the ${key} of an earlier step, which failed`);
    return state[key];
  };

  it('pairs the register and reports it paired and online', async () => {
    assert.ok(pairingCode, 'EFTCLOUD_PAIRING_CODE is not set');
    assert.deepEqual(await client.pair(pairingCode, { registerName: 'SDK TypeScript till' }), { result: 'success' });
    const status = await client.registerStatus();
    assert.equal(status.paired, true);
    assert.equal(status.registerName, 'SDK TypeScript till');
    assert.equal(status.online, true);
    assert.ok(status.deviceId);
  });

  it('runs a purchase to an approved result, idempotent by its generated PosReference', async () => {
    const started = await client.purchase(APPROVED_AMOUNT);
    const posReference = started.data.PosReference;
    assert.ok(posReference, 'the SDK generates a PosReference');
    const done = await client.waitForCompletion(started);
    assert.equal(done.transactionId, started.transactionId);
    assert.equal(done.transactionStatus, 'COMPLETED');
    assert.equal(done.data.TransactionResult, 'OK-ACCEPTED');
    assert.equal(done.data.Result, 'OK');
    state.purchase = done;

    const replay = await client.purchase(APPROVED_AMOUNT, { posReference });
    assert.equal(replay.transactionId, done.transactionId, 'the same reference answers the original');
    const found = await client.lookup({ posReference });
    assert.equal(found.transactionId, done.transactionId);
    const timeline = await client.timeline(done.transactionId);
    assert.deepEqual(
      ['received', 'completed'].filter((e) => timeline.events.some((t) => t.event === e)),
      ['received', 'completed'],
    );
  });

  it('refunds the purchase by reference, never beyond what was paid', async () => {
    const purchase = need('purchase');
    const refund = await client.waitForCompletion(
      await client.refundPayment(purchase.transactionId, 400, { wait: 30 }),
    );
    assert.equal(refund.data.Function, 'Card.Refund');
    assert.equal(refund.data.OriginalTransactionId, purchase.transactionId);
    assert.equal(refund.data.TransactionResult, 'OK-ACCEPTED');
    state.refund = refund;

    const payment = await client.payment(purchase.transactionId);
    assert.equal(payment.amountRefunded, '400');
    assert.equal(payment.amountRefundable, String(APPROVED_AMOUNT - 400));
    await assert.rejects(client.refundPayment(purchase.transactionId, APPROVED_AMOUNT), (error) => {
      assert.ok(error instanceof ConflictError, `${error}`);
      assert.equal(error.status, 409);
      assert.equal(error.amountRefundable, String(APPROVED_AMOUNT - 400));
      return true;
    });
  });

  it('cancels a transaction the device is still running', async () => {
    const started = await client.purchase(SLOW_AMOUNT);
    const cancelled = await client.cancel(started.transactionId, { wait: 20 });
    assert.equal(cancelled.transactionStatus, 'COMPLETED');
    assert.equal(cancelled.data.TransactionResult, 'CANCELLED');
  });

  it('types the errors of the POS routes', async () => {
    const badKey = new EftcloudClient({ baseUrl, register, apiKey: 'eftk_bogus_bogus' });
    await assert.rejects(badKey.registerStatus(), (error) => {
      assert.ok(error instanceof AuthenticationError, `${error}`);
      assert.equal(error.status, 401);
      return true;
    });
    await assert.rejects(client.lookup({ posReference: `never-used-${randomUUID()}` }), NotFoundError);
    // The version header is sent: one the cloud does not serve is refused.
    const unversioned = new EftcloudClient({ baseUrl, apiKey, register, apiVersion: '1999-01-01' });
    await assert.rejects(unversioned.registerStatus(), {
      name: 'InvalidRequestError',
      message: /Unknown API version '1999-01-01'/,
    });
    await assert.rejects(client.purchase(0), (error) => {
      assert.ok(error instanceof InvalidRequestError, `${error}`);
      assert.match(error.message, /AmountTotal/);
      return true;
    });
    const unpaired = new EftcloudClient({ baseUrl, apiKey, register: { ...register, registerId: randomUUID() } });
    await assert.rejects(unpaired.purchase(APPROVED_AMOUNT), { name: 'InvalidRequestError', message: /not paired/ });
    // Two plain polls of one transaction within the cloud's minimum interval (2 s).
    const purchase = need('purchase');
    await client.poll(purchase).catch((error) => {
      if (!(error instanceof RateLimitError)) throw error;
    });
    await assert.rejects(client.poll(purchase), (error) => {
      assert.ok(error instanceof RateLimitError, `${error}`);
      assert.ok(error.retryAfter > 0, `retryAfter ${error.retryAfter}`);
      return true;
    });
  });

  it('refuses /v1/events without a valid key', async () => {
    const badKey = new EftcloudClient({ baseUrl, apiKey: 'eftk_bogus_bogus' });
    await assert.rejects(badKey.events.list(), AuthenticationError);
    const keyless = new EftcloudClient({ baseUrl });
    await assert.rejects(keyless.events.list(), (error) => {
      assert.ok(error instanceof AuthenticationError, `${error}`);
      assert.equal(error.status, 401);
      assert.match(error.message, /API key/);
      return true;
    });
  });

  it('replays events from a cursor: every transaction once, nothing repeated after nextCursor', async () => {
    const ids = [need('purchase').transactionId, need('refund').transactionId];
    const replayed = [];
    for await (const event of client.events.iterate({ types: ['transaction.*', 'refund.*'], limit: 3 })) {
      replayed.push(event);
    }
    assert.equal(new Set(replayed.map((e) => e.id)).size, replayed.length, 'no event twice');
    const find = (type, transactionId) =>
      replayed.find((e) => e.type === type && e.data.transactionId === transactionId);
    for (const id of ids) {
      assert.ok(find('transaction.created', id), `transaction.created of ${id}`);
      assert.ok(find('transaction.completed', id), `transaction.completed of ${id}`);
      assert.ok(
        replayed.indexOf(find('transaction.created', id)) < replayed.indexOf(find('transaction.completed', id)),
      );
    }
    const refundCompleted = find('refund.completed', ids[1]);
    assert.ok(refundCompleted, 'refund.completed of the refund');
    assert.deepEqual(await client.events.get(refundCompleted.id), refundCompleted);

    // From the purchase's creation on: what followed it, and not it.
    const created = find('transaction.created', ids[0]);
    const fromCreated = await client.events.list({ after: created.cursor, types: ['transaction.*'], limit: 500 });
    assert.ok(!fromCreated.events.some((e) => e.id === created.id));
    assert.ok(fromCreated.events.some((e) => e.id === find('transaction.completed', ids[0]).id));

    // Continuing from the end: nothing seen again (a long-poll of 1 s that finds nothing).
    const last = replayed.at(-1).cursor;
    const rest = await client.events.list({ after: last, types: ['transaction.*', 'refund.*'], wait: 1 });
    const seen = new Set(replayed.map((e) => e.id));
    assert.ok(
      rest.events.every((e) => !seen.has(e.id)),
      'nothing repeated after nextCursor',
    );
    if (rest.events.length === 0) assert.equal(rest.nextCursor, last);
  });

  describe('webhooks', () => {
    /** Deliveries received, and who waits for one. */
    const deliveries = [];
    let waiter;
    let server;
    before(async () => {
      server = createServer((request, response) => {
        const chunks = [];
        request.on('data', (c) => chunks.push(c));
        request.on('end', () => {
          deliveries.push({ headers: request.headers, body: Buffer.concat(chunks) });
          response.writeHead(200).end();
          waiter?.();
        });
      });
      await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    });
    after(() => server.close());

    /** The delivery of the event about `transactionId` (the endpoint takes transaction.completed only). */
    const deliveryOf = async (transactionId, ms = 20_000) => {
      const deadline = Date.now() + ms;
      for (;;) {
        const found = deliveries.find((d) => JSON.parse(d.body.toString('utf8')).data?.transactionId === transactionId);
        if (found) return found;
        assert.ok(
          Date.now() < deadline,
          `no delivery about ${transactionId} within ${ms} ms (${deliveries.length} received)`,
        );
        await new Promise((resolve) => {
          waiter = resolve;
          setTimeout(resolve, 250);
        });
      }
    };

    it('delivers a signed event: genuine passes; forged, stale and malformed fail typed', async () => {
      const url = `http://127.0.0.1:${server.address().port}/hooks/eftcloud`;
      const endpoint = await client.webhookEndpoints.create({
        url,
        eventTypes: ['transaction.completed'],
        description: 'SDK live test',
      });
      state.endpoint = endpoint;
      assert.match(endpoint.secret, /^whsec_/);
      assert.deepEqual(endpoint.eventTypes, ['transaction.completed']);

      const status = await client.waitForCompletion(await client.startTransaction('Terminal.GetStatus'));
      const received = await deliveryOf(status.transactionId);
      const header = received.headers['eftcloud-signature'];
      const event = await constructEvent(received.body, header, endpoint.secret);
      assert.equal(event.type, 'transaction.completed');
      assert.equal(received.headers['eftcloud-event-id'], event.id);
      assert.equal(received.headers['eftcloud-event-type'], 'transaction.completed');

      const refused = async (reason, verify) =>
        assert.rejects(verify, (error) => {
          assert.ok(error instanceof WebhookSignatureError, `${error}`);
          assert.equal(error.reason, reason);
          return true;
        });
      await refused('no_matching_signature', verifySignature(received.body, header, 'whsec_forged'));
      const altered = Buffer.from(
        received.body.toString('utf8').replace('transaction.completed', 'transaction.created'),
      );
      await refused('no_matching_signature', verifySignature(altered, header, endpoint.secret));
      const t = Number(/t=(\d+)/.exec(header)[1]);
      await refused(
        'timestamp_outside_tolerance',
        verifySignature(received.body, header, endpoint.secret, { now: t + 301 }),
      );
      await refused('malformed_header', verifySignature(received.body, header.replace(/v1=/g, 'v1:'), endpoint.secret));
      await refused('malformed_header', verifySignature(received.body, undefined, endpoint.secret));
    });

    it('signs with both secrets during a rotation', async () => {
      const endpoint = need('endpoint');
      const rotated = await client.webhookEndpoints.rotateSecret(endpoint.id, { graceSeconds: 60 });
      assert.match(rotated.secret, /^whsec_/);
      assert.notEqual(rotated.secret, endpoint.secret);
      const status = await client.waitForCompletion(await client.startTransaction('Terminal.GetStatus'));
      const received = await deliveryOf(status.transactionId);
      const header = received.headers['eftcloud-signature'];
      assert.equal(header.match(/v1=/g)?.length, 2, header);
      await verifySignature(received.body, header, rotated.secret);
      await verifySignature(received.body, header, endpoint.secret);
    });

    it('manages the endpoint: list, get, update, deliveries, delete', async () => {
      const endpoint = need('endpoint');
      assert.ok((await client.webhookEndpoints.list()).some((e) => e.id === endpoint.id));
      assert.equal((await client.webhookEndpoints.get(endpoint.id)).url, endpoint.url);
      const updated = await client.webhookEndpoints.update(endpoint.id, { description: 'renamed', enabled: false });
      assert.equal(updated.description, 'renamed');
      assert.equal(updated.enabled, false);
      const attempts = await client.webhookEndpoints.deliveries(endpoint.id, { limit: 10 });
      assert.ok(
        attempts.filter((a) => a.delivered && a.responseCode === 200).length >= 2,
        'the deliveries are on record',
      );
      await client.webhookEndpoints.delete(endpoint.id);
      await assert.rejects(client.webhookEndpoints.get(endpoint.id), NotFoundError);
    });
  });
});
