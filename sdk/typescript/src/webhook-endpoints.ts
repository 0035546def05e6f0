/**
 * `/v1/webhook-endpoints`: where the cloud POSTs events, each signed with the endpoint's secret
 * (scope `webhooks:manage`). Verify deliveries with `constructEvent` of this package.
 */

import { send, type HttpSettings } from './http.js';
import type { CreatedWebhookEndpoint, EventType, RotatedSecret, WebhookDelivery, WebhookEndpoint } from './types.js';

/** What {@link WebhookEndpointsApi.create} takes. */
export interface NewWebhookEndpoint {
  /** Where deliveries are POSTed. */
  url: string;
  /** The types to deliver (exact, or `prefix.*`); omitted: every type (`["*"]`). */
  eventTypes?: EventType[];
  description?: string;
  /** Installation keys only: the merchant whose events the endpoint receives. */
  merchantId?: string;
  /** Installation keys only: the POS vendor whose registers' events the endpoint receives. */
  vendor?: string;
}

/** What {@link WebhookEndpointsApi.update} may change. */
export interface WebhookEndpointChanges {
  url?: string;
  eventTypes?: EventType[];
  description?: string;
  enabled?: boolean;
}

/**
 * The webhook endpoint routes. Reached as `client.webhookEndpoints`. Changes are not retried
 * automatically (a repeated create would create a second endpoint); reads are.
 */
export class WebhookEndpointsApi {
  constructor(private readonly http: HttpSettings) {}

  /** Creates an endpoint; the answer carries its `secret`, shown only here and on rotation. */
  create(endpoint: NewWebhookEndpoint): Promise<CreatedWebhookEndpoint> {
    return send(this.http, { method: 'POST', path: '/v1/webhook-endpoints', body: { ...endpoint }, retryable: false });
  }

  /** Every endpoint the key may see. */
  async list(): Promise<WebhookEndpoint[]> {
    const page = await send<{ endpoints: WebhookEndpoint[] }>(this.http, {
      method: 'GET',
      path: '/v1/webhook-endpoints',
      retryable: true,
    });
    return page.endpoints;
  }

  /** One endpoint (`we_...`). */
  get(endpointId: string): Promise<WebhookEndpoint> {
    return send(this.http, { method: 'GET', path: endpointPath(endpointId), retryable: true });
  }

  /** Changes the given settings; the others stay. */
  update(endpointId: string, changes: WebhookEndpointChanges): Promise<WebhookEndpoint> {
    return send(this.http, { method: 'PATCH', path: endpointPath(endpointId), body: { ...changes }, retryable: false });
  }

  /** Deletes the endpoint: nothing more is delivered to it. */
  async delete(endpointId: string): Promise<void> {
    await send(this.http, { method: 'DELETE', path: endpointPath(endpointId), retryable: false });
  }

  /**
   * A new secret. For `graceSeconds` (the cloud's default: a day) deliveries are signed with
   * both, so receivers can switch over without missing one.
   */
  rotateSecret(endpointId: string, options: { graceSeconds?: number } = {}): Promise<RotatedSecret> {
    return send(this.http, {
      method: 'POST',
      path: `${endpointPath(endpointId)}/rotate-secret`,
      body: { ...options },
      retryable: false,
    });
  }

  /** The latest delivery attempts to the endpoint, newest first. */
  async deliveries(endpointId: string, options: { limit?: number } = {}): Promise<WebhookDelivery[]> {
    const page = await send<{ deliveries: WebhookDelivery[] }>(this.http, {
      method: 'GET',
      path: `${endpointPath(endpointId)}/deliveries`,
      query: { limit: options.limit },
      retryable: true,
    });
    return page.deliveries;
  }

  /** Queues one event (`evt_...`) for delivery to the endpoint again. */
  redeliver(endpointId: string, eventId: string): Promise<{ queued: number }> {
    return send(this.http, {
      method: 'POST',
      path: `${endpointPath(endpointId)}/redeliver`,
      body: { eventId },
      retryable: false,
    });
  }
}

function endpointPath(endpointId: string): string {
  return `/v1/webhook-endpoints/${encodeURIComponent(endpointId)}`;
}
