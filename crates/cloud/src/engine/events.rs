//! Reading the event catalogue: pages from a cursor within the reader's audience, held open
//! (long-poll) until an event arrives. Writes that log events wake the readers here, and other
//! nodes' writes through the bus; a reader also looks again every second, so an event whose
//! announcement was lost (or that logs without one: a configuration acknowledgement, an update
//! step) is seen within a second.

use super::{Engine, StoreError};
use crate::domain::events::{Audience, Cursor, Event, EventId, TypeFilter};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Longest page.
pub const MAX_LIMIT: u32 = 500;
/// Page size when none is asked for.
pub const DEFAULT_LIMIT: u32 = 100;
/// Longest long-poll.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// How often a held read looks again without a wake-up.
const RECHECK: Duration = Duration::from_secs(1);

/// What a reader asks for.
#[derive(Debug, Clone)]
pub struct EventsQuery {
    pub after: Cursor,
    pub types: TypeFilter,
    /// 1 to [`MAX_LIMIT`].
    pub limit: u32,
    /// Zero: answer at once.
    pub wait: Duration,
}

/// A page of events.
#[derive(Debug, Clone)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// Where the next page starts: the last event's cursor, or the query's when none came.
    pub next: Cursor,
    /// Whether more events are there already (the page was full).
    pub has_more: bool,
}

impl Engine {
    /// Wakes this node's readers and webhook dispatcher: events were logged here or elsewhere.
    pub(crate) fn events_logged_here(&self) {
        self.inner
            .events_logged
            .send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Events were logged here: wake readers here and on other nodes.
    pub(crate) async fn events_logged(&self) {
        self.events_logged_here();
        self.bus().announce_events().await;
    }

    /// A receiver that changes whenever events may have been logged.
    pub(crate) fn events_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.events_logged.subscribe()
    }

    /// A page of the log for `audience`, held up to `q.wait` for a first event (released
    /// early, empty, by `shutdown`).
    pub async fn read_events(
        &self,
        audience: &Audience,
        q: &EventsQuery,
        shutdown: &CancellationToken,
    ) -> Result<EventPage, StoreError> {
        // Subscribed before the first read, so an event logged in between wakes us.
        let mut watch = self.events_watch();
        let types = if q.types.is_all() {
            Vec::new()
        } else {
            q.types.types()
        };
        let deadline = tokio::time::Instant::now() + q.wait.min(MAX_WAIT);
        let limit = q.limit.clamp(1, MAX_LIMIT);
        loop {
            watch.borrow_and_update();
            let events = self
                .store()
                .log_after(&q.after, audience, &types, limit)
                .await?;
            let now = tokio::time::Instant::now();
            if !events.is_empty() || now >= deadline {
                let next = events.last().map_or(q.after, |e| e.cursor);
                let has_more = events.len() == limit as usize;
                return Ok(EventPage {
                    events,
                    next,
                    has_more,
                });
            }
            let nap = (deadline - now).min(RECHECK);
            tokio::select! {
                _ = watch.changed() => {}
                _ = tokio::time::sleep(nap) => {}
                _ = shutdown.cancelled() => {
                    return Ok(EventPage { events: Vec::new(), next: q.after, has_more: false });
                }
            }
        }
    }

    /// One event, if `audience` sees it.
    pub async fn event(
        &self,
        audience: &Audience,
        id: &EventId,
    ) -> Result<Option<Event>, StoreError> {
        Ok(self
            .store()
            .logged_event(id)
            .await?
            .filter(|e| audience.sees(&e.event)))
    }
}
