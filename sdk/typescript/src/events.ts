/** `/v1/events`: the events visible to the API key, replayed from a cursor (scope `pos:read`). */

import { send, type HttpSettings } from './http.js';
import type { EftcloudEvent, EventPage, EventType } from './types.js';

/** Options of {@link EventsApi.list}. */
export interface ListEventsOptions {
  /** Only events strictly after this cursor (omitted: from the oldest retained). */
  after?: string;
  /** Only these types: exact (`transaction.completed`) or a prefix ending in `.*` (`transaction.*`). */
  types?: EventType[];
  /** At most this many (1 to 500; the cloud's default is 100). */
  limit?: number;
  /** With nothing after the cursor, hold the request up to this many whole seconds (0 to 60) for an event. */
  wait?: number;
}

/** Options of {@link EventsApi.iterate}. */
export interface IterateEventsOptions extends Omit<ListEventsOptions, 'wait'> {
  /**
   * Keep going once caught up, long-polling for new events, until the loop is left (`break`).
   * Without it the iteration ends at the newest event.
   */
  follow?: boolean;
  /** The long-poll of `follow`, in seconds (default 30). */
  wait?: number;
}

/** The events routes. Reached as `client.events`. */
export class EventsApi {
  constructor(private readonly http: HttpSettings) {}

  /** One page of events after `options.after`, oldest first. */
  list(options: ListEventsOptions = {}): Promise<EventPage> {
    return send<EventPage>(this.http, {
      method: 'GET',
      path: '/v1/events',
      query: {
        after: options.after,
        types: options.types?.join(','),
        limit: options.limit,
        wait: options.wait,
      },
      retryable: true,
      waitSeconds: options.wait,
    });
  }

  /** One event by its id (`evt_...`). */
  get(eventId: string): Promise<EftcloudEvent> {
    return send<EftcloudEvent>(this.http, {
      method: 'GET',
      path: `/v1/events/${encodeURIComponent(eventId)}`,
      retryable: true,
    });
  }

  /**
   * Every event after `options.after`, page by page, following `nextCursor`: each event once,
   * in order. Store the `cursor` of the last event handled to resume there later.
   *
   * ```ts
   * for await (const event of client.events.iterate({ after: saved, types: ['transaction.*'] })) {
   *   handle(event);
   *   saved = event.cursor;
   * }
   * ```
   */
  async *iterate(options: IterateEventsOptions = {}): AsyncGenerator<EftcloudEvent, void, undefined> {
    const wait = options.follow ? (options.wait ?? 30) : undefined;
    let after = options.after;
    for (;;) {
      const page = await this.list({ after, types: options.types, limit: options.limit, wait });
      yield* page.events;
      after = page.nextCursor;
      if (!page.hasMore && !options.follow) return;
    }
  }
}
