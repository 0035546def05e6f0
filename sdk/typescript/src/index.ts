/**
 * eftcloud's client SDK: the POS API (pairing, transactions, polling, lookup, cancel, the
 * timeline, register status, follow-ups, orders, receipts, terminal actions), events, webhook
 * endpoints, and verification of webhook signatures.
 *
 * @packageDocumentation
 */

export { EftcloudClient } from './client.js';
export type {
  CartLine,
  ClientOptions,
  FollowUpOptions,
  InputKind,
  InputOptions,
  PairingDetails,
  PrintLine,
  StartOptions,
  TransactionFields,
  TransactionRef,
  WaitOptions,
} from './client.js';
export { EventsApi } from './events.js';
export type { IterateEventsOptions, ListEventsOptions } from './events.js';
export { WebhookEndpointsApi } from './webhook-endpoints.js';
export type { NewWebhookEndpoint, WebhookEndpointChanges } from './webhook-endpoints.js';
export {
  DEFAULT_TOLERANCE_SECONDS,
  SIGNATURE_HEADER,
  constructEvent,
  signPayload,
  verifySignature,
} from './webhooks.js';
export type { Payload, VerifyOptions } from './webhooks.js';
export { API_VERSION } from './http.js';
export {
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
  WebhookSignatureError,
  errorFromResponse,
} from './errors.js';
export type { ErrorDetails, SignatureFailure } from './errors.js';
export type * from './types.js';
