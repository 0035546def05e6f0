/**
 * The shapes of the POS API's answers, as `/openapi.json` and docs/pos-api.md describe them.
 * Answers are returned as parsed, never rebuilt: every key the cloud sends is there, including
 * ones newer than this SDK.
 */

/** A register: the triple a paired POS names itself by, compared exactly by the cloud. */
export interface RegisterIdentity {
  /** `POSRegisterID`: unique across the vendor's customers (a UUID is typical). */
  registerId: string;
  /** `POSBusinessName`. */
  businessName: string;
  /** `POSVendorName`. */
  vendorName: string;
}

/** An amount in minor units (cents): `500` or `"500"` is 5.00. */
export type Amount = number | string;

/** `TransactionType`: one of the functions of docs/pos-api.md §7 (and the terminal jobs). */
export type TransactionType =
  | 'Card.Purchase'
  | 'Card.Refund'
  | 'Card.PurchasePlusCash'
  | 'Card.CashAdvance'
  | 'Card.Authorise'
  | 'Card.Finalise'
  | 'QR.Merchant.Purchase'
  | 'QR.Consumer.Purchase'
  | 'QR.Refund'
  | 'Acquirer.Logon'
  | 'Acquirer.Settlement.Inquiry'
  | 'Acquirer.Settlement.Cutover'
  | 'Journal.ReprintReceipt'
  | 'Journal.GetTransResult'
  | 'Terminal.GetStatus'
  | 'Terminal.ReadCard';

/**
 * `data` of a transaction envelope: PascalCase keys, every value a string. The common keys are
 * listed; functions add their own (`Status`, `ReferenceId`, `InputValue`, ...).
 */
export interface TransactionData {
  [key: string]: string | undefined;
  Function?: string;
  DeviceID?: string;
  PollingUrl?: string;
  PosReference?: string;
  /** `OK-ACCEPTED`, `OK-DECLINED`, `CANCELLED`, `FAILED`, `OK-DELAYED`, ... (empty while pending). */
  TransactionResult?: string;
  /** `OK`, `CANCELLED`, `FAILED-INTERFACE`, `DELAYED-TRANSACTION`, ... (empty while pending). */
  Result?: string;
  ResultText?: string;
  /** The prompt the device shows, while pending. */
  DisplayText?: string;
  AmountTotal?: string;
  AmountTip?: string;
  AmountSurcharge?: string;
  AuthId?: string;
  Receipt?: string;
  OriginalTransactionId?: string;
  Currency?: string;
}

/** One copy of a receipt as data. */
export interface Receipt {
  header?: string[];
  fields: { label: string; value: string }[];
  footer?: string[];
}

/** The envelope of `POST /POS/Transaction`, of every poll, lookup, cancel and follow-up. */
export interface Transaction {
  transactionId: string;
  /** UTC `yyyyMMddHHmmss` and four fractional-second digits. */
  transactionTimeStamp: string;
  merchantId: string;
  deviceId: string;
  transactionStatus: 'PENDING' | 'COMPLETED';
  data: TransactionData;
  /** The polling token (the credential of `data.PollingUrl`). */
  merchantAccessToken: string;
  /** The merchant's and the customer's receipts as data, once the device reported them. */
  receipts?: { merchant?: Receipt; customer?: Receipt };
}

/** `GET /pos/register`: what a POS wants to know before it starts a sale. */
export interface RegisterStatus {
  paired: boolean;
  registerName?: string;
  deviceId?: string;
  online: boolean;
  busy: boolean;
  activeTransactionId?: string;
  /** RFC 3339, UTC. */
  lastSeen?: string;
}

/** One entry of a transaction's timeline. */
export interface TimelineEntry {
  /** RFC 3339, UTC, milliseconds. */
  at: string;
  /** `received`, `offered`, `accepted`, `started`, `prompt`, `result`, `completed`, ... */
  event: string;
  detail: string;
}

/** `GET /pos/transaction/{id}/events`. */
export interface Timeline {
  transactionId: string;
  transactionStatus: 'PENDING' | 'COMPLETED';
  events: TimelineEntry[];
}

/** `GET /pos/transaction/{id}/payment`: what a payment comes to with its follow-ups. */
export interface Payment {
  transactionId: string;
  function: string;
  currency: string;
  approved: boolean;
  amountTotal: string;
  amountTip: string;
  amountRefunded: string;
  amountRefunding: string;
  amountRefundable: string;
  voided: boolean;
  settled: boolean;
  amountAuthorised: string;
  amountCaptured: string;
  amountReleased: string;
  followUps: { transactionId: string; function: string; amount: string; state: string; result: string }[];
}

/** An order paid by split tenders (`/pos/orders`). */
export interface Order {
  orderId: string;
  currency: string;
  amountTotal: string;
  amountPaid: string;
  amountInFlight: string;
  amountRemaining: string;
  /** `open`, `paid`, `cancelled`. */
  state: string;
  tenders: Record<string, unknown>[];
  [key: string]: unknown;
}

/** One receipt delivery by email or SMS. */
export interface ReceiptDelivery {
  id: string;
  channel: 'email' | 'sms';
  /** Masked: `a***@example.com`, `+61******678`. */
  address: string;
  copy: 'customer' | 'merchant';
  state: 'pending' | 'sent' | 'failed';
  attempts: number;
  lastError: string | null;
  createdAt: string;
  nextAttemptAt: string | null;
  sentAt: string | null;
  replayed?: boolean;
}

/** `POST` or `GET /pos/transaction/{id}/receipt`. */
export interface ReceiptDeliveries {
  transactionId: string;
  deliveries: ReceiptDelivery[];
  receipts?: { merchant?: Receipt; customer?: Receipt };
  receiptText?: string;
}

/** `POST /pos/register/display`. */
export interface DisplayResult {
  deviceId: string;
  /** The same cart again is the same version. */
  version: number;
  /** False: the device is offline and is shown the latest cart when it reconnects. */
  delivered: boolean;
  cart: Record<string, unknown>;
}

/** Event types of `/v1/events` and webhooks (others may be added; match unknown ones loosely). */
export type EventType =
  | 'transaction.created'
  | 'transaction.completed'
  | 'refund.completed'
  | 'void.completed'
  | 'adjustment.completed'
  | 'settlement.completed'
  | 'device.connected'
  | 'device.disconnected'
  | 'pairing.paired'
  | 'pairing.unpaired'
  | 'config.applied'
  | 'update.step'
  | (string & {});

/** `data` of `transaction.*`, `refund.*`, `void.*`, `adjustment.*` and `settlement.*` events. */
export interface TransactionEventData {
  transactionId: string;
  deviceId: string;
  function: string;
  registerId: string;
  businessName: string;
  vendorName: string;
  posReference: string | null;
  transactionStatus: 'PENDING' | 'COMPLETED';
  result?: string;
  transactionResult?: string;
  /** Minor units as a decimal string, or null. */
  amountTotal?: string | null;
  [key: string]: unknown;
}

/** An event of `/v1/events`, and the body of a webhook delivery. */
export interface EftcloudEvent<Data = Record<string, unknown>> {
  /** `evt_...`: receivers dedupe by it. */
  id: string;
  /** Opaque: pass it as `after` to continue after this event. */
  cursor: string;
  type: EventType;
  /** RFC 3339, UTC. */
  createdAt: string;
  schemaVersion: number;
  merchantId: string | null;
  data: Data;
}

/** `GET /v1/events`. */
export interface EventPage {
  events: EftcloudEvent[];
  /** The cursor of the last event returned (or the `after` given when none came). */
  nextCursor: string;
  /** More events are available right now after `nextCursor`. */
  hasMore: boolean;
}

/** A webhook endpoint (`/v1/webhook-endpoints`). */
export interface WebhookEndpoint {
  /** `we_...`. */
  id: string;
  url: string;
  /** `["*"]`: every type. */
  eventTypes: string[];
  description: string;
  enabled: boolean;
  merchantId: string | null;
  vendor: string | null;
  createdAt: string;
  failingSince: string | null;
  disabledReason: string | null;
  /** Attempts at the event at the head of its queue (0 while healthy). */
  attempts?: number;
  /** While a rotated secret still signs beside the new one: until when. */
  previousSecretExpiresAt?: string | null;
}

/** A webhook endpoint as created: with its signing secret, shown only here and on rotation. */
export interface CreatedWebhookEndpoint extends WebhookEndpoint {
  /** `whsec_...`: the key of `Eftcloud-Signature` (keep it secret). */
  secret: string;
}

/** `POST /v1/webhook-endpoints/{id}/rotate-secret`. */
export interface RotatedSecret {
  secret: string;
  /** RFC 3339: until then deliveries carry a second `v1=` made with the old secret. */
  previousSecretExpiresAt: string;
}

/** One delivery attempt of an event to an endpoint. */
export interface WebhookDelivery {
  eventId: string;
  eventType: string;
  attempt: number;
  delivered: boolean;
  responseCode: number | null;
  error: string | null;
  at: string;
}
