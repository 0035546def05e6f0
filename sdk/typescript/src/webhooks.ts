/**
 * Verifying `Eftcloud-Signature`, the header of webhook deliveries (and of completion
 * callbacks and SMS webhook requests, which are signed the same way):
 *
 *     Eftcloud-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">[,v1=<...>]
 *
 * keyed with the UTF-8 bytes of the secret string (`whsec_` prefix included). During a secret
 * rotation's grace period a second `v1` made with the old secret follows; a delivery is genuine
 * when any `v1` matches and `t` is within the tolerance (300 s) of now.
 */

import { WebhookSignatureError } from './errors.js';
import { hmacSha256, timingSafeEqual } from './platform.js';
import type { EftcloudEvent } from './types.js';

/** How far `t` may be from now, in seconds, by default. */
export const DEFAULT_TOLERANCE_SECONDS = 300;

/** The header the cloud signs deliveries with. */
export const SIGNATURE_HEADER = 'Eftcloud-Signature';

/** Options of {@link verifySignature} and {@link constructEvent}. */
export interface VerifyOptions {
  /** Largest accepted |now − t| in seconds (default 300). */
  toleranceSeconds?: number;
  /** Now, in unix seconds (default: the clock). */
  now?: number;
}

/** The raw body, exactly as received: a string (taken as UTF-8) or its bytes. */
export type Payload = string | Uint8Array;

/**
 * Checks that `payload` was signed by the holder of `secret`, and recently.
 *
 * @param payload the raw request body, exactly as received (not re-serialised JSON)
 * @param header the `Eftcloud-Signature` header's value
 * @param secret the endpoint's `whsec_...` secret (or the callback secret for callbacks)
 * @throws {WebhookSignatureError} `malformed_header`, `no_matching_signature` or
 *   `timestamp_outside_tolerance`
 */
export async function verifySignature(
  payload: Payload,
  header: string | null | undefined,
  secret: string,
  options: VerifyOptions = {},
): Promise<void> {
  const { timestamp, signatures } = parseSignatureHeader(header);
  const expected = await sign(payload, secret, timestamp);
  // Every value is compared in constant time; which one matched is no secret.
  if (!signatures.some((candidate) => timingSafeEqual(candidate, expected))) {
    throw new WebhookSignatureError(
      'no_matching_signature',
      'No v1 signature of Eftcloud-Signature matches the payload: not signed with this secret, or altered',
    );
  }
  const now = options.now ?? Math.floor(Date.now() / 1000);
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  if (Math.abs(now - Number(timestamp)) > tolerance) {
    throw new WebhookSignatureError(
      'timestamp_outside_tolerance',
      `Eftcloud-Signature timestamp ${timestamp} is more than ${tolerance} s from now (${now})`,
    );
  }
}

/**
 * Verifies the signature (as {@link verifySignature}) and parses the body: the event of a
 * webhook delivery (or, with `T`, the envelope of a completion callback).
 */
export async function constructEvent<T = EftcloudEvent>(
  payload: Payload,
  header: string | null | undefined,
  secret: string,
  options: VerifyOptions = {},
): Promise<T> {
  await verifySignature(payload, header, secret, options);
  return JSON.parse(typeof payload === 'string' ? payload : new TextDecoder().decode(payload)) as T;
}

/**
 * The `Eftcloud-Signature` value the cloud would send for `payload` at `timestamp` (unix
 * seconds, default now): for testing a receiver.
 */
export async function signPayload(
  payload: Payload,
  secret: string,
  timestamp: number = Math.floor(Date.now() / 1000),
): Promise<string> {
  const t = String(Math.trunc(timestamp));
  return `t=${t},v1=${toHex(await sign(payload, secret, t))}`;
}

async function sign(payload: Payload, secret: string, timestamp: string): Promise<Uint8Array> {
  const encoder = new TextEncoder();
  const body = typeof payload === 'string' ? encoder.encode(payload) : payload;
  const prefix = encoder.encode(`${timestamp}.`);
  const message = new Uint8Array(prefix.length + body.length);
  message.set(prefix);
  message.set(body, prefix.length);
  return hmacSha256()(encoder.encode(secret), message);
}

/**
 * Reads `t=<digits>` (exactly once) and every `v1=<64 hex digits>` (at least one); other
 * schemes are ignored, so that a future `v2` does not break today's receivers.
 */
function parseSignatureHeader(header: string | null | undefined): {
  timestamp: string;
  signatures: Uint8Array[];
} {
  const malformed = (why: string) =>
    new WebhookSignatureError('malformed_header', `Malformed Eftcloud-Signature header: ${why}`);
  if (typeof header !== 'string' || header.trim() === '') throw malformed('missing or empty');
  let timestamp: string | undefined;
  const signatures: Uint8Array[] = [];
  for (const item of header.split(',')) {
    const equals = item.indexOf('=');
    if (equals < 0) throw malformed(`'${item.trim()}' is not key=value`);
    const key = item.slice(0, equals).trim();
    const value = item.slice(equals + 1).trim();
    if (key === 't') {
      if (timestamp !== undefined) throw malformed('more than one t');
      if (!/^\d{1,15}$/.test(value)) throw malformed('t is not a number of unix seconds');
      timestamp = value;
    } else if (key === 'v1') {
      if (!/^[0-9a-fA-F]{64}$/.test(value)) throw malformed('a v1 value is not 64 hex digits');
      signatures.push(fromHex(value));
    }
  }
  if (timestamp === undefined) throw malformed('no t');
  if (signatures.length === 0) throw malformed('no v1 signature');
  return { timestamp, signatures };
}

function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function fromHex(hex: string): Uint8Array {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}
