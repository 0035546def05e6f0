/**
 * The client of the POS API: pairing, transactions, polling, lookup, cancel, the timeline,
 * register status, a payment's follow-ups, orders, receipts and terminal actions
 * (docs/pos-api.md), with `client.events` and `client.webhookEndpoints` for the `/v1` routes.
 */

import { RateLimitError, RequestTimeoutError } from './errors.js';
import { EventsApi } from './events.js';
import { API_VERSION, normalizeBaseUrl, send, sleep, type HttpSettings, type QueryValue } from './http.js';
import { randomUuid } from './platform.js';
import type {
  Amount,
  DisplayResult,
  Order,
  Payment,
  ReceiptDeliveries,
  RegisterIdentity,
  RegisterStatus,
  Timeline,
  Transaction,
  TransactionType,
} from './types.js';
import { WebhookEndpointsApi } from './webhook-endpoints.js';

/** Options of {@link EftcloudClient}. */
export interface ClientOptions {
  /**
   * The cloud's base URL (`https://pay.example.com`). A SmartConnect-style environment URL
   * ending in `/POS` is taken too.
   */
  baseUrl: string;
  /** This POS register: sent with every POS request. Needed for every method but the `/v1` ones. */
  register?: RegisterIdentity;
  /** An API key (`eftk_...`), sent as `Authorization: Bearer`. Keyless SmartConnect mode without. */
  apiKey?: string;
  /** `Eftcloud-Version` (default {@link API_VERSION}). */
  apiVersion?: string;
  /** Per-request timeout in milliseconds (default 30 000); long-polls get their `wait` on top. */
  timeoutMs?: number;
  /**
   * Automatic retries of a request that is safe to repeat after a network error, a timeout or
   * a 5xx (default 2; 0 turns them off). Transaction starts are safe: see {@link TransactionFields.posReference}.
   */
  maxRetries?: number;
  /** The `fetch` to use (default: the global one). */
  fetch?: typeof fetch;
}

/** What the operator types in with the pairing code (`PUT /POS/Pairing/{code}`). */
export interface PairingDetails {
  /** `POSRegisterName`: shown on the device. */
  registerName: string;
  contactName?: string;
  address?: string;
  city?: string;
  state?: string;
  zipCode?: string;
  email?: string;
  phone?: string;
}

/** Fields every request that starts something on a device may carry. */
export interface StartOptions {
  /**
   * `PosReference`, the request's idempotency key (at most 128 printable characters): the same
   * register and reference always answer the one original transaction, and the device is never
   * asked twice. When omitted the SDK generates a UUID, and reuses it for its own automatic
   * retries, so a retry after a lost answer can never charge twice. Give your own (the sale's
   * id) to be able to retry across process restarts and to {@link EftcloudClient.lookup} by it.
   */
  posReference?: string;
  /** `PosNotificationCallbackUrl`: where the completed envelope is POSTed, signed. */
  callbackUrl?: string;
  /** ISO 4217 (`AUD`, `JPY`); amounts are in its minor units. Default: the merchant's. */
  currency?: string;
  /** Other request fields by their wire names (`{"SaleData": ...}`), sent as given. */
  fields?: Record<string, unknown>;
}

/** Fields of `POST /POS/Transaction` (which ones a function needs: docs/pos-api.md §7). */
export interface TransactionFields extends StartOptions {
  amountTotal?: Amount;
  amountCash?: Amount;
  amountAuth?: Amount;
  amountFinal?: Amount;
  /** `TransactionReference` of `Card.Authorise` / `Card.Finalise`. */
  transactionReference?: string;
  /** `Date` of `Acquirer.Settlement.Inquiry`, `yyyyMMdd`. */
  date?: string;
  /** `SaleData`: the basket (`{"version": "1.0.0", "saleData": {...}}`), as an object or its JSON text. */
  saleData?: string | Record<string, unknown>;
  /** `OrderId`: a tender of this order. */
  orderId?: string;
  /** `OriginalTransactionId`: the payment a `Card.Refund` or `Card.Finalise` refers to. */
  originalTransactionId?: string;
  /** `OriginalPosReference`: the payment a `Card.Refund` or `Card.Finalise` refers to, by its reference. */
  originalPosReference?: string;
}

/** Options of a follow-up of a payment (docs/pos-api.md §9.9) and of a terminal job. */
export interface FollowUpOptions extends StartOptions {
  /** Hold the answer up to this many seconds (at most 60) until it completes. */
  wait?: number;
}

/** Options of {@link EftcloudClient.waitForCompletion}. */
export interface WaitOptions {
  /** Give up (with {@link RequestTimeoutError}) after this many milliseconds (default 180 000). */
  timeoutMs?: number;
  /** Each long-poll's `wait` in seconds (default 30, at most 60). */
  waitSeconds?: number;
}

/** A line of the cart on the customer's screen. */
export interface CartLine {
  description: string;
  quantity?: string | number;
  unitPrice?: Amount;
  amount: Amount;
  [key: string]: unknown;
}

/** A line of a printed slip (docs/pos-api.md §9.12). */
export type PrintLine =
  | { kind: 'text'; text: string; bold?: boolean; align?: 'left' | 'centre' | 'right'; large?: boolean }
  | { kind: 'qr'; data: string }
  | { kind: 'barcode'; symbology: 'code128' | 'ean13'; data: string }
  | { kind: 'feed'; lines: number }
  | { kind: 'cut' };

/** `InputKind` of a customer input request. */
export type InputKind = 'signature' | 'email' | 'phone' | 'number' | 'text' | 'selection' | 'confirmation';

/** Options of {@link EftcloudClient.requestInput}. */
export interface InputOptions extends FollowUpOptions {
  /** What the customer is asked (1 to 200 characters). */
  prompt: string;
  /** 5 to 600 seconds (default: the device's configured timeout). */
  timeoutSeconds?: number;
  minLength?: number;
  maxLength?: number;
  min?: number;
  max?: number;
  decimals?: number;
  /** The choices of a `selection` (2 to 12). */
  options?: string[];
}

/** A transaction as far as polling needs it: its id and polling token. */
export type TransactionRef = Pick<Transaction, 'transactionId' | 'merchantAccessToken'>;

/** Wire names of the camelCase options that map one to one onto request fields. */
const WIRE_NAMES: Record<string, string> = {
  amountTotal: 'AmountTotal',
  amountCash: 'AmountCash',
  amountAuth: 'AmountAuth',
  amountFinal: 'AmountFinal',
  amountTip: 'AmountTip',
  amountTax: 'AmountTax',
  transactionReference: 'TransactionReference',
  date: 'Date',
  saleData: 'SaleData',
  callbackUrl: 'PosNotificationCallbackUrl',
  currency: 'Currency',
  orderId: 'OrderId',
  originalTransactionId: 'OriginalTransactionId',
  originalPosReference: 'OriginalPosReference',
  posReference: 'PosReference',
  email: 'Email',
  phone: 'Phone',
  copy: 'Copy',
  prompt: 'Prompt',
  timeoutSeconds: 'TimeoutSeconds',
  minLength: 'MinLength',
  maxLength: 'MaxLength',
  min: 'Min',
  max: 'Max',
  decimals: 'Decimals',
  options: 'Options',
  caption: 'Caption',
  lines: 'Lines',
  clear: 'Clear',
  reverse: 'Reverse',
};

/** A client of one cloud, for one register. Stateless: share one instance. */
export class EftcloudClient {
  /** This register, as configured. */
  readonly register: RegisterIdentity | undefined;
  /** `/v1/events`. */
  readonly events: EventsApi;
  /** `/v1/webhook-endpoints`. */
  readonly webhookEndpoints: WebhookEndpointsApi;
  private readonly http: HttpSettings;

  constructor(options: ClientOptions) {
    const fetchImpl = options.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== 'function') throw new TypeError('No fetch: pass options.fetch (Node >= 18 has one)');
    this.http = {
      baseUrl: normalizeBaseUrl(options.baseUrl),
      apiKey: options.apiKey?.trim() || undefined,
      apiVersion: options.apiVersion ?? API_VERSION,
      timeoutMs: options.timeoutMs ?? 30_000,
      maxRetries: options.maxRetries ?? 2,
      // Called unbound, as browsers require of the global fetch.
      fetch: (input, init) => fetchImpl(input, init),
    };
    this.register = options.register;
    this.events = new EventsApi(this.http);
    this.webhookEndpoints = new WebhookEndpointsApi(this.http);
  }

  // ---- Pairing -------------------------------------------------------------------------

  /**
   * Pairs this register with the device showing `code` (8 digits; spaces and dashes are
   * dropped). Codes are single-use: this request is never retried automatically.
   */
  async pair(code: string, details: PairingDetails): Promise<{ result: string }> {
    const digits = code.replace(/[\s-]/g, '');
    return send(this.http, {
      method: 'PUT',
      path: `/POS/Pairing/${encodeURIComponent(digits)}`,
      body: {
        ...this.registerFields(),
        POSRegisterName: details.registerName,
        ContactName: details.contactName,
        Address: details.address,
        City: details.city,
        State: details.state,
        ZipCode: details.zipCode,
        Email: details.email,
        Phone: details.phone,
      },
      retryable: false,
    });
  }

  // ---- Transactions --------------------------------------------------------------------

  /**
   * Starts a transaction of any function (`POST /POS/Transaction`, async mode); the answer is
   * `PENDING`: follow it with {@link waitForCompletion} or {@link poll}. Idempotent by
   * `PosReference`, generated when not given (see {@link StartOptions.posReference}).
   */
  async startTransaction(type: TransactionType, fields: TransactionFields = {}): Promise<Transaction> {
    return this.start('/POS/Transaction', { TransactionMode: 'ASYNC', TransactionType: type }, fields);
  }

  /** Starts a `Card.Purchase` of `amountTotal` (minor units). */
  purchase(amountTotal: Amount, fields: TransactionFields = {}): Promise<Transaction> {
    return this.startTransaction('Card.Purchase', { ...fields, amountTotal });
  }

  /**
   * Starts a `Card.Refund` of `amountTotal`: unreferenced (SmartConnect's), or of a payment
   * with `originalTransactionId` / `originalPosReference`. For a refund of a payment by its id
   * there is also {@link refundPayment}.
   */
  refund(amountTotal: Amount, fields: TransactionFields = {}): Promise<Transaction> {
    return this.startTransaction('Card.Refund', { ...fields, amountTotal });
  }

  /**
   * Polls a transaction once by its id and token; with `wait` (seconds, at most 60) a
   * long-poll that answers as soon as it completes. Polls without `wait` closer together than
   * the cloud's minimum interval (2 s) are refused with {@link RateLimitError}.
   */
  poll(transaction: TransactionRef, options: { wait?: number } = {}): Promise<Transaction> {
    return send(this.http, {
      method: 'GET',
      path: `/pos/transaction/${encodeURIComponent(transaction.transactionId)}`,
      query: { merchantAccessToken: transaction.merchantAccessToken, wait: options.wait },
      retryable: true,
      waitSeconds: options.wait,
    });
  }

  /**
   * Long-polls until the transaction is `COMPLETED` and returns it; throws
   * {@link RequestTimeoutError} if it is still pending after `timeoutMs` (then look it up later:
   * {@link lookup}).
   */
  async waitForCompletion(transaction: Transaction, options: WaitOptions = {}): Promise<Transaction> {
    const deadline = Date.now() + (options.timeoutMs ?? 180_000);
    const waitSeconds = Math.min(options.waitSeconds ?? 30, 60);
    let current = transaction;
    while (current.transactionStatus !== 'COMPLETED') {
      const remaining = Math.floor((deadline - Date.now()) / 1000);
      if (remaining <= 0) {
        throw new RequestTimeoutError(
          `Transaction ${transaction.transactionId} is still ${current.transactionStatus} after ${options.timeoutMs ?? 180_000} ms`,
        );
      }
      try {
        current = await this.poll(current, { wait: Math.min(waitSeconds, remaining) });
      } catch (error) {
        if (!(error instanceof RateLimitError)) throw error;
        await sleep((error.retryAfter ?? 2) * 1000);
      }
    }
    return current;
  }

  /**
   * Finds a transaction of this register by its `PosReference` or id, for the whole retention
   * period (long after its polling token expired); `wait` long-polls.
   */
  lookup(
    query: { posReference: string; transactionId?: never } | { transactionId: string; posReference?: never },
    options: { wait?: number } = {},
  ): Promise<Transaction> {
    return this.get(
      '/pos/lookup',
      {
        PosReference: query.posReference,
        TransactionId: query.transactionId,
        wait: options.wait,
      },
      options.wait,
    );
  }

  /**
   * Asks to cancel a transaction of this register: `CANCELLED` at once if its device had not
   * started it, otherwise the device is asked and its real outcome stands (`wait` holds the
   * answer until it is known). A completed transaction: {@link ConflictError}.
   */
  cancel(transactionId: string, options: { wait?: number } = {}): Promise<Transaction> {
    return this.post(
      `/pos/transaction/${encodeURIComponent(transactionId)}/cancel`,
      {},
      {
        retryable: false,
        wait: options.wait,
      },
    );
  }

  /** What happened to a transaction, with timestamps, oldest first. */
  timeline(transactionId: string): Promise<Timeline> {
    return this.get(`/pos/transaction/${encodeURIComponent(transactionId)}/events`, {});
  }

  /** Whether this register is paired, and its device online and busy. */
  registerStatus(): Promise<RegisterStatus> {
    return this.get('/pos/register', {});
  }

  // ---- A payment's life by reference (docs/pos-api.md §9.9) -----------------------------

  /** Refunds `amountTotal` of an approved payment, from this register (any of its merchant's). */
  refundPayment(transactionId: string, amountTotal: Amount, options: FollowUpOptions = {}): Promise<Transaction> {
    return this.followUp(transactionId, 'refund', { amountTotal }, options);
  }

  /** Reverses an approved payment before its device settles; once. */
  voidPayment(transactionId: string, options: FollowUpOptions = {}): Promise<Transaction> {
    return this.followUp(transactionId, 'void', {}, options);
  }

  /** Sets the tip of an approved purchase (0 removes it), before settlement. */
  adjustTip(transactionId: string, amountTip: Amount, options: FollowUpOptions = {}): Promise<Transaction> {
    return this.followUp(transactionId, 'adjust', { amountTip }, options);
  }

  /** Tops up an approved `Card.Authorise` by `amountTotal`. */
  incrementAuthorisation(
    transactionId: string,
    amountTotal: Amount,
    options: FollowUpOptions = {},
  ): Promise<Transaction> {
    return this.followUp(transactionId, 'increment', { amountTotal }, options);
  }

  /** Completes a pre-authorisation for `amountFinal` (up to what is authorised). */
  capturePayment(transactionId: string, amountFinal: Amount, options: FollowUpOptions = {}): Promise<Transaction> {
    return this.followUp(transactionId, 'capture', { amountFinal }, options);
  }

  /** Releases a pre-authorisation. */
  releaseAuthorisation(transactionId: string, options: FollowUpOptions = {}): Promise<Transaction> {
    return this.followUp(transactionId, 'release', {}, options);
  }

  /** What a payment comes to with its follow-ups: refunded, refundable, voided, captured. */
  payment(transactionId: string): Promise<Payment> {
    return this.get(`/pos/transaction/${encodeURIComponent(transactionId)}/payment`, {});
  }

  // ---- Orders with split tenders (§9.10) -----------------------------------------------

  /**
   * Creates an order of `amountTotal`, to be paid by tenders (`purchase(..., { orderId })`) on
   * any device of the merchant. Idempotent by `PosReference`, generated when not given.
   */
  async createOrder(amountTotal: Amount, options: Omit<StartOptions, 'callbackUrl'> = {}): Promise<Order> {
    const fields: TransactionFields = { ...options, amountTotal };
    return this.start('/pos/orders', {}, fields);
  }

  /** An order with its tenders. */
  order(orderId: string): Promise<Order> {
    return this.get(`/pos/orders/${encodeURIComponent(orderId)}`, {});
  }

  /** Cancels an order; with `reverse` every approved tender is voided or refunded. */
  cancelOrder(orderId: string, options: { reverse?: boolean } = {}): Promise<Order> {
    return this.post(`/pos/orders/${encodeURIComponent(orderId)}/cancel`, wire(options), { retryable: true });
  }

  // ---- Receipts by email or SMS (§9.11) ------------------------------------------------

  /** Queues the receipt of a completed transaction to `email` and/or `phone` (idempotent per address). */
  sendReceipt(
    transactionId: string,
    to: { email?: string; phone?: string; copy?: 'customer' | 'merchant' },
  ): Promise<ReceiptDeliveries> {
    return this.post(`/pos/transaction/${encodeURIComponent(transactionId)}/receipt`, wire(to), { retryable: true });
  }

  /** A transaction's receipts as data and the state of each delivery. */
  receipt(transactionId: string): Promise<ReceiptDeliveries> {
    return this.get(`/pos/transaction/${encodeURIComponent(transactionId)}/receipt`, {});
  }

  // ---- Terminal actions (§9.12) --------------------------------------------------------

  /** Shows the cart on the customer's screen (`clear: true` clears it); the same cart again changes nothing. */
  display(cart: {
    lines?: CartLine[];
    amountTotal?: Amount;
    amountTax?: Amount;
    currency?: string;
    clear?: boolean;
  }): Promise<DisplayResult> {
    return this.post('/pos/register/display', wire(cart), { retryable: true });
  }

  /** Asks the customer for input on the device: a job, answered like a transaction start. */
  requestInput(kind: InputKind, options: InputOptions): Promise<Transaction> {
    const { wait, ...fields } = options;
    return this.start('/pos/register/input', { InputKind: kind }, fields, wait);
  }

  /** Prints a slip on the device's printer: a job, answered like a transaction start. */
  printSlip(lines: PrintLine[], options: FollowUpOptions = {}): Promise<Transaction> {
    const { wait, ...fields } = options;
    return this.start('/pos/register/print', { Lines: lines }, fields, wait);
  }

  /** Shows a QR code on the device: a job, answered like a transaction start. */
  showQr(
    qrData: string,
    options: FollowUpOptions & { caption?: string; timeoutSeconds?: number } = {},
  ): Promise<Transaction> {
    const { wait, ...fields } = options;
    return this.start('/pos/register/qr', { QrData: qrData }, fields, wait);
  }

  // ---- Plumbing ------------------------------------------------------------------------

  private followUp(
    transactionId: string,
    action: string,
    amounts: Record<string, Amount>,
    options: FollowUpOptions,
  ): Promise<Transaction> {
    const { wait, ...fields } = options;
    return this.start(
      `/pos/transaction/${encodeURIComponent(transactionId)}/${action}`,
      {},
      { ...fields, ...amounts },
      wait,
    );
  }

  /**
   * POSTs a request that starts something on a device, with its `PosReference` (generated when
   * not given), so that the automatic retries of {@link send} are answered with the original.
   */
  private async start<T>(
    path: string,
    fixed: Record<string, unknown>,
    fields: StartOptions,
    wait?: number,
  ): Promise<T> {
    const posReference = fields.posReference ?? (await randomUuid());
    return this.post(path, { ...fixed, ...wire({ ...fields, posReference }) }, { retryable: true, wait });
  }

  private async post<T>(
    path: string,
    body: Record<string, unknown>,
    options: { retryable: boolean; wait?: number },
  ): Promise<T> {
    return send(this.http, {
      method: 'POST',
      path,
      query: { wait: options.wait },
      body: { ...this.registerFields(), ...body },
      retryable: options.retryable,
      waitSeconds: options.wait,
    });
  }

  private async get<T>(path: string, query: Record<string, QueryValue>, wait?: number): Promise<T> {
    return send(this.http, {
      method: 'GET',
      path,
      query: { ...this.registerFields(), ...query },
      retryable: true,
      waitSeconds: wait,
    });
  }

  private registerFields(): Record<string, string> {
    if (this.register === undefined) {
      throw new TypeError('This call needs the register: pass options.register to the EftcloudClient');
    }
    return {
      POSRegisterID: this.register.registerId,
      POSBusinessName: this.register.businessName,
      POSVendorName: this.register.vendorName,
    };
  }
}

/**
 * Request fields from camelCase options: known names mapped to their wire names, amounts as
 * strings, undefined left out, `fields` merged in as given.
 */
function wire(options: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options)) {
    if (value === undefined || key === 'fields') continue;
    const name = WIRE_NAMES[key];
    if (name === undefined) throw new TypeError(`Unknown option '${key}': pass it in 'fields' by its wire name`);
    out[name] = typeof value === 'number' && key.startsWith('amount') ? String(value) : value;
  }
  return { ...out, ...(options as { fields?: Record<string, unknown> }).fields };
}
