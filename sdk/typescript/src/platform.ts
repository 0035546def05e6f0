/**
 * The few things the SDK needs from its platform, each working in browsers and in Node >= 18:
 * HMAC-SHA256 (WebCrypto in browsers, `node:crypto` in Node) and random UUIDs. Node-only
 * modules are loaded only after checking that this is Node, so bundles for browsers never run
 * them.
 */

/** HMAC-SHA256 of `message` under `key`: the 32-byte MAC. */
export type HmacSha256 = (key: Uint8Array, message: Uint8Array) => Promise<Uint8Array>;

/** HMAC-SHA256 through WebCrypto (`crypto.subtle`): browsers, Deno, Node >= 19. */
export const webCryptoHmacSha256: HmacSha256 = async (key, message) => {
  const subtle = globalThis.crypto?.subtle;
  if (subtle === undefined) {
    throw new Error('WebCrypto (crypto.subtle) is not available here: use a secure context (https)');
  }
  // Copies typed as backed by an ArrayBuffer, as WebCrypto's signature asks.
  const cryptoKey = await subtle.importKey('raw', new Uint8Array(key), { name: 'HMAC', hash: 'SHA-256' }, false, [
    'sign',
  ]);
  return new Uint8Array(await subtle.sign('HMAC', cryptoKey, new Uint8Array(message)));
};

/** HMAC-SHA256 through `node:crypto`. */
export const nodeHmacSha256: HmacSha256 = async (key, message) => {
  const { createHmac } = await import('node:crypto');
  return new Uint8Array(createHmac('sha256', key).update(message).digest());
};

/** The platform's HMAC-SHA256: `node:crypto` in Node, WebCrypto elsewhere. */
export function hmacSha256(): HmacSha256 {
  return isNode() ? nodeHmacSha256 : webCryptoHmacSha256;
}

/**
 * Compares two byte strings in time that depends only on their lengths (which are public: a
 * MAC is always 32 bytes), so a forger learns nothing from how long a refusal took.
 */
export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a[i]! ^ b[i]!;
  return difference === 0;
}

/** A random (version 4) UUID. */
export async function randomUuid(): Promise<string> {
  if (typeof globalThis.crypto?.randomUUID === 'function') return globalThis.crypto.randomUUID();
  if (isNode()) return (await import('node:crypto')).randomUUID();
  throw new Error('crypto.randomUUID is not available here: use a secure context (https)');
}

function isNode(): boolean {
  const process = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof process?.versions?.node === 'string';
}
