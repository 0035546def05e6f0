// The part of `node:crypto` the SDK uses (it loads it only in Node), declared here so that the
// library compiles without @types/node.
declare module 'node:crypto' {
  interface Hmac {
    update(data: Uint8Array): Hmac;
    digest(): Uint8Array;
  }
  export function createHmac(algorithm: 'sha256', key: Uint8Array): Hmac;
  export function randomUUID(): string;
}
