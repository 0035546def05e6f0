"""``/v1/events``: the events visible to the API key, replayed from a cursor (scope ``pos:read``)."""

from __future__ import annotations

from typing import Iterator, Optional, Sequence, cast

from ._http import HttpSettings, path_segment, send
from .models import Event, EventPage

__all__ = ["Events"]


class Events:
    """The events routes. Reached as ``client.events``."""

    def __init__(self, http: HttpSettings) -> None:
        self._http = http

    def list(
        self,
        *,
        after: Optional[str] = None,
        types: Optional[Sequence[str]] = None,
        limit: Optional[int] = None,
        wait: Optional[int] = None,
    ) -> EventPage:
        """One page of events, oldest first.

        :param after: only events strictly after this cursor (omitted: from the oldest retained)
        :param types: only these types: exact (``transaction.completed``) or a prefix ending in
            ``.*`` (``transaction.*``)
        :param limit: at most this many (1 to 500; the cloud's default is 100)
        :param wait: with nothing after the cursor, hold the request up to this many whole
            seconds (0 to 60) for an event
        """
        query = {
            "after": after,
            "types": ",".join(types) if types else None,
            "limit": limit,
            "wait": wait,
        }
        return cast(
            EventPage,
            send(self._http, "GET", "/v1/events", query=query, retryable=True, wait=wait),
        )

    def get(self, event_id: str) -> Event:
        """One event by its id (``evt_...``)."""
        return cast(
            Event,
            send(
                self._http,
                "GET",
                f"/v1/events/{path_segment(event_id)}",
                retryable=True,
            ),
        )

    def iterate(
        self,
        *,
        after: Optional[str] = None,
        types: Optional[Sequence[str]] = None,
        limit: Optional[int] = None,
        follow: bool = False,
        wait: int = 30,
    ) -> Iterator[Event]:
        """Every event after ``after``, page by page, following ``nextCursor``: each event once,
        in order. Store the ``cursor`` of the last event handled to resume there later::

            for event in client.events.iterate(after=saved, types=["transaction.*"]):
                handle(event)
                saved = event["cursor"]

        :param follow: keep going once caught up, long-polling (``wait`` seconds at a time) for
            new events, until the loop is left; without it the iteration ends at the newest event
        """
        cursor = after
        while True:
            page = self.list(after=cursor, types=types, limit=limit, wait=wait if follow else None)
            yield from page["events"]
            cursor = page["nextCursor"]
            if not page["hasMore"] and not follow:
                return
